//! Subcommands: raw flags are turned into validated library objects here,
//! once, and results are printed for a person here, and nowhere else.

mod bench;
mod convert;
mod cv;
mod explain;
mod gblup;
mod image;
mod output;
mod qc;
pub mod rundir;
mod simulate;
mod train;
mod transfer;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use geno::{DelimitedOptions, Delimiter, GenoFormat, GenoReader, TraitSelector};

/// Genomic prediction with 1D convolutional neural networks, honestly
/// compared with GBLUP.
#[derive(Parser, Debug)]
#[command(name = "genocnn", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Quality control: allele frequencies, missingness and PLINK-style filters.
    Qc(qc::QcArgs),
    /// Convert genotypes between PLINK .bed, PLINK .raw and CSV/TSV matrices.
    Convert(convert::ConvertArgs),
    /// Simulate genotypes with LD and a trait with chosen genetic architecture.
    Simulate(simulate::SimulateArgs),
    /// Cross-validation: CNN, MLP and GBLUP on the same folds, compared honestly.
    Cv(cv::CvArgs),
    /// VanRaden's genomic relationship matrix, written in GCTA's binary format.
    Grm(gblup::GrmArgs),
    /// GBLUP (or RKHS): REML variance components, BLUPs, SNP effects for `predict`.
    Gblup(gblup::GblupArgs),
    /// Train a network (a model config in TOML) on genotypes and a trait.
    Train(train::TrainArgs),
    /// Predict individuals of a genotype file with a saved model.
    Predict(train::PredictArgs),
    /// Which markers drive a model's predictions: attributions, the association scan, known loci.
    Explain(explain::ExplainArgs),
    /// Image classifiers (LeNet-5 on MNIST, VGG-style on CIFAR-10): train, eval, augment-preview.
    Image(image::ImageArgs),
    /// Benchmarks: `io` (genotype input), `kernels` (compute kernels), `train` (the peer genomic case).
    Bench(bench::BenchArgs),
}

/// Runs a command; `resume` is the record of the unfinished run that
/// `genocnn train|cv --resume DIR` continues (its command line is `cli`).
pub fn run(cli: Cli, resume: Option<rundir::RunRecord>) -> Result<()> {
    match cli.command {
        Command::Qc(a) => qc::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Cv(a) => cv::run(a, resume),
        Command::Grm(a) => gblup::run_grm(a),
        Command::Gblup(a) => gblup::run_gblup(a),
        Command::Train(a) => train::run_train(a, resume),
        Command::Predict(a) => train::run_predict(a),
        Command::Explain(a) => explain::run(a),
        Command::Image(a) => image::run(a),
        Command::Bench(a) => bench::run(a),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum YesNo {
    Yes,
    No,
}

impl YesNo {
    fn get(v: Option<YesNo>) -> Option<bool> {
        v.map(|x| matches!(x, YesNo::Yes))
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DelimArg {
    Comma,
    Tab,
    Whitespace,
}

/// Where the genotypes come from.
#[derive(Args, Debug, Clone)]
pub struct GenoArgs {
    /// Genotypes: PLINK .bed (or its prefix), PLINK .raw, VCF (.vcf, .vcf.gz) or BCF, or a CSV/TSV/whitespace dosage matrix.
    #[arg(long, value_name = "PATH")]
    pub geno: PathBuf,
    /// Override the format implied by the extension: plink, raw, csv or vcf.
    #[arg(long, value_name = "FORMAT", value_parser = clap::value_parser!(GenoFormat))]
    pub geno_format: Option<GenoFormat>,
    /// Delimited matrices: the field separator (detected when absent).
    #[arg(long, value_enum)]
    pub geno_delimiter: Option<DelimArg>,
    /// Delimited matrices: whether the first line is a header of marker IDs (detected when absent).
    #[arg(long, value_enum)]
    pub geno_header: Option<YesNo>,
    /// Delimited matrices: whether the first column holds individual IDs (detected when absent).
    #[arg(long, value_enum)]
    pub geno_ids: Option<YesNo>,
    /// VCF/BCF: the FORMAT field read: GT (hard calls, counting ALT) or DS
    /// (imputed ALT dosages, stored as the nearest of 0, 1 and 2).
    #[arg(long, value_enum, default_value = "gt")]
    pub vcf_field: VcfFieldArg,
    /// Only the individuals listed in FILE (FID IID, or IID, per line; PLINK's --keep).
    /// A PLINK .bed is read only where they lie, never copied.
    #[arg(long, value_name = "FILE")]
    pub keep: Option<PathBuf>,
    /// Only the markers listed in FILE (IDs; PLINK's --extract). A PLINK .bed
    /// is read only where they lie, never copied.
    #[arg(long, value_name = "FILE")]
    pub extract: Option<PathBuf>,
    /// How calls are read: additive (0/1/2 copies of A1) or inbred (0/1
    /// are the two homozygotes, read as dosages 0 and 2; in a VCF, haploid
    /// calls 0 and 1 are read as the two homozygotes).
    #[arg(long, value_enum, default_value = "additive")]
    pub coding: Coding,
}

/// The FORMAT field of a VCF or BCF file that holds the calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum VcfFieldArg {
    /// Hard calls.
    #[default]
    #[value(name = "gt", alias = "GT")]
    Gt,
    /// Imputed ALT dosages.
    #[value(name = "ds", alias = "DS")]
    Ds,
}

impl VcfFieldArg {
    pub fn options(self, coding: Coding) -> geno::VcfOptions {
        geno::VcfOptions {
            field: match self {
                VcfFieldArg::Gt => geno::VcfField::Gt,
                VcfFieldArg::Ds => geno::VcfField::Ds,
            },
            haploid: match coding {
                Coding::Additive => geno::HaploidCalls::Refuse,
                Coding::Inbred => geno::HaploidCalls::Homozygous,
            },
        }
    }
}

/// How genotype calls are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Coding {
    /// Dosages 0, 1, 2: copies of A1.
    #[default]
    Additive,
    /// Inbred lines coded 0/1 (BGLR's `wheat.X`): the two homozygotes,
    /// read as dosages 0 and 2.
    Inbred,
}

/// Reads genotypes with `coding`: recodes inbred 0/1 calls, and says how
/// calls that are all 0 or 1 were read when nothing was asked.
pub fn load_genotypes(
    reader: GenoReader,
    path: &std::path::Path,
    coding: Coding,
) -> anyhow::Result<geno::PackedGenotypes> {
    let (mut g, summary) = reader.read_summarized()?;
    if let Some(s) = &summary.vcf {
        report_vcf(path, &g, s);
    }
    report_selection(&g, &summary.chosen);
    match coding {
        // A VCF's diploid calls are already dosages; --coding inbred only
        // said how to read its haploid calls.
        Coding::Inbred if summary.vcf.is_some() => {}
        Coding::Inbred => {
            if let Err((j, i)) = g.recode_inbred() {
                anyhow::bail!(
                    "{}: --coding inbred reads calls 0/1 as the two homozygotes, but individual {} has 2 copies of A1 at marker {}; this file is coded 0/1/2 (drop --coding inbred)",
                    path.display(),
                    g.individuals()[i].iid,
                    g.markers()[j].id
                );
            }
            eprintln!(
                "note: {}: calls 0/1 read as the two homozygotes (dosages 0 and 2), as --coding inbred asks",
                path.display()
            );
        }
        Coding::Additive => {
            if g.calls_are_zero_one() {
                eprintln!(
                    "note: {}: every call is 0 or 1; they are read as dosages 0 and 1 (1 = a heterozygote). If these are inbred lines coded 0/1 (the two homozygotes), give --coding inbred",
                    path.display()
                );
            }
        }
    }
    Ok(g)
}

/// Says how much of `--keep` and `--extract` matched the genotypes.
fn report_selection(g: &geno::PackedGenotypes, chosen: &geno::Chosen) {
    for (flag, m, kept, what) in [
        ("--keep", &chosen.keep, g.n_individuals(), "individuals"),
        ("--extract", &chosen.extract, g.n_markers(), "markers"),
    ] {
        if let Some(m) = m {
            let missing = m.listed - m.found;
            eprintln!(
                "note: {flag} {}: {kept} {what} kept{}",
                m.path.display(),
                if missing > 0 {
                    format!(
                        "; {missing} of its {} IDs are not in the genotypes",
                        m.listed
                    )
                } else {
                    String::new()
                }
            );
        }
    }
}

/// Says what reading a VCF or BCF file kept, skipped and rounded.
fn report_vcf(path: &std::path::Path, g: &geno::PackedGenotypes, s: &geno::VcfSummary) {
    let mut line = format!(
        "note: {}: {} {} read: {} markers × {} samples",
        path.display(),
        s.records,
        if s.bcf { "BCF records" } else { "VCF records" },
        g.n_markers(),
        g.n_individuals()
    );
    if s.multiallelic > 0 {
        line += &format!(
            "; {} multi-allelic site{} skipped",
            s.multiallelic,
            if s.multiallelic == 1 { "" } else { "s" }
        );
    }
    if s.half_missing > 0 {
        line += &format!(
            "; {} calls with one allele missing read as missing",
            s.half_missing
        );
    }
    if s.haploid > 0 {
        line += &format!("; {} haploid calls read as homozygotes", s.haploid);
    }
    if s.rounded > 0 {
        line += &format!(
            "; {} DS dosages rounded to the nearest of 0, 1, 2",
            s.rounded
        );
    }
    eprintln!("{line}");
}

impl GenoArgs {
    /// Reads the genotypes as `--coding` says, only those `--keep` and
    /// `--extract` list.
    pub fn load(&self) -> anyhow::Result<geno::PackedGenotypes> {
        load_genotypes(
            self.reader().select(self.selection()?),
            &self.geno,
            self.coding,
        )
    }

    /// The `--keep` and `--extract` lists, read.
    pub fn selection(&self) -> anyhow::Result<geno::Selection> {
        Ok(geno::Selection {
            keep: self.keep.as_deref().map(geno::KeepList::read).transpose()?,
            extract: self
                .extract
                .as_deref()
                .map(geno::ExtractList::read)
                .transpose()?,
        })
    }

    pub fn reader(&self) -> GenoReader {
        GenoReader::new(&self.geno)
            .format(self.geno_format)
            .vcf(self.vcf_field.options(self.coding))
            .delimited(DelimitedOptions {
                delimiter: self.geno_delimiter.map(|d| match d {
                    DelimArg::Comma => Delimiter::Comma,
                    DelimArg::Tab => Delimiter::Tab,
                    DelimArg::Whitespace => Delimiter::Whitespace,
                }),
                header: YesNo::get(self.geno_header),
                ids: YesNo::get(self.geno_ids),
            })
    }
}

/// Where the phenotype comes from.
#[derive(Args, Debug, Clone)]
pub struct PhenoArgs {
    /// Phenotypes: a table with an ID column, a headerless file in genotype order, or a .fam.
    #[arg(long, value_name = "PATH", requires = "trait_")]
    pub pheno: Option<PathBuf>,
    /// The trait: a column name, or its number among the trait columns counting from 1.
    #[arg(
        long = "trait",
        id = "trait_",
        value_name = "NAME|N",
        requires = "pheno"
    )]
    pub trait_: Option<TraitSelector>,
}
