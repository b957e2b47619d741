//! Choosing a genotype format from a path, and reading or writing any of them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::delim::{read_delimited, read_raw, write_delimited, write_raw, DelimitedOptions};
use crate::error::{GenoError, Result};
use crate::packed::PackedGenotypes;
use crate::plink::{read_plink_selected, write_plink, PlinkPaths};
use crate::select::{Chosen, Selection};
use crate::textio::Delimiter;
use crate::vcf::{read_vcf, VcfOptions, VcfSummary};

/// A genotype file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenoFormat {
    /// PLINK 1 binary: `.bed` + `.bim` + `.fam`.
    Plink,
    /// PLINK `.raw` (`--recode A`).
    Raw,
    /// A delimited dosage matrix (CSV, TSV or whitespace).
    Delimited,
    /// VCF (plain, BGZF or gzip) or BCF.
    Vcf,
}

impl FromStr for GenoFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "plink" | "bed" => Ok(GenoFormat::Plink),
            "raw" => Ok(GenoFormat::Raw),
            "csv" | "tsv" | "txt" | "delimited" | "matrix" => Ok(GenoFormat::Delimited),
            "vcf" | "bcf" => Ok(GenoFormat::Vcf),
            other => Err(format!(
                "unknown genotype format '{other}'; expected plink, raw, csv or vcf"
            )),
        }
    }
}

impl fmt::Display for GenoFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GenoFormat::Plink => "PLINK .bed/.bim/.fam",
            GenoFormat::Raw => "PLINK .raw",
            GenoFormat::Delimited => "delimited matrix",
            GenoFormat::Vcf => "VCF/BCF",
        })
    }
}

impl GenoFormat {
    /// The format a path's extension implies: `.bed`/`.bim`/`.fam` (or a
    /// prefix with a `.bed` beside it) is PLINK, `.raw` is raw, `.vcf`,
    /// `.vcf.gz`, `.vcf.bgz` and `.bcf` are VCF/BCF, anything else is a
    /// delimited matrix.
    pub fn from_path(path: &Path) -> GenoFormat {
        if crate::vcf::is_vcf_path(path) {
            return GenoFormat::Vcf;
        }
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("bed" | "bim" | "fam") => GenoFormat::Plink,
            Some("raw") => GenoFormat::Raw,
            _ if !path.exists() && PlinkPaths::new(path).bed.exists() => GenoFormat::Plink,
            _ => GenoFormat::Delimited,
        }
    }
}

/// Builder-style options for reading genotypes from any supported format.
#[derive(Clone, Debug)]
pub struct GenoReader {
    path: PathBuf,
    format: Option<GenoFormat>,
    delimited: DelimitedOptions,
    vcf: VcfOptions,
    selection: Selection,
}

/// What reading did besides keeping calls: what a VCF or BCF file skipped
/// or rounded, and how much of `--keep`/`--extract` matched.
#[derive(Clone, Debug, Default)]
pub struct ReadSummary {
    pub vcf: Option<VcfSummary>,
    pub chosen: Chosen,
}

impl GenoReader {
    pub fn new(path: impl AsRef<Path>) -> Self {
        GenoReader {
            path: path.as_ref().to_path_buf(),
            format: None,
            delimited: DelimitedOptions::default(),
            vcf: VcfOptions::default(),
            selection: Selection::default(),
        }
    }

    /// Overrides the format implied by the extension.
    pub fn format(mut self, format: Option<GenoFormat>) -> Self {
        self.format = format;
        self
    }

    /// Options for delimited matrices.
    pub fn delimited(mut self, opts: DelimitedOptions) -> Self {
        self.delimited = opts;
        self
    }

    /// Options for VCF and BCF files.
    pub fn vcf(mut self, opts: VcfOptions) -> Self {
        self.vcf = opts;
        self
    }

    /// Only these individuals and markers (PLINK's `--keep`, `--extract`).
    /// A PLINK fileset is read only where they lie; other formats are read
    /// whole, then cut.
    pub fn select(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// The format that will be read.
    pub fn resolved_format(&self) -> GenoFormat {
        self.format
            .unwrap_or_else(|| GenoFormat::from_path(&self.path))
    }

    /// Reads the file into the packed store.
    pub fn read(&self) -> Result<PackedGenotypes> {
        self.read_summarized().map(|(g, _)| g)
    }

    /// Reads the file into the packed store, with what reading a VCF or BCF
    /// file skipped or rounded.
    pub fn read_summarized(&self) -> Result<(PackedGenotypes, ReadSummary)> {
        let format = self.resolved_format();
        if format != GenoFormat::Plink && !self.path.exists() {
            return Err(GenoError::invalid(&self.path, "file not found"));
        }
        let (g, vcf) = match format {
            GenoFormat::Plink => {
                let (g, chosen) = read_plink_selected(&self.path, &self.selection)?;
                return Ok((g, ReadSummary { vcf: None, chosen }));
            }
            GenoFormat::Raw => (read_raw(&self.path)?, None),
            GenoFormat::Delimited => (read_delimited(&self.path, self.delimited)?, None),
            GenoFormat::Vcf => {
                let (g, s) = read_vcf(&self.path, self.vcf)?;
                (g, Some(s))
            }
        };
        if self.selection.is_empty() {
            return Ok((
                g,
                ReadSummary {
                    vcf,
                    chosen: Chosen::default(),
                },
            ));
        }
        let chosen = self.selection.resolve(g.individuals(), g.markers())?;
        let rows: Vec<usize> = chosen
            .rows
            .clone()
            .unwrap_or_else(|| (0..g.n_individuals()).collect());
        let cols: Vec<usize> = chosen
            .cols
            .clone()
            .unwrap_or_else(|| (0..g.n_markers()).collect());
        Ok((g.subset(&rows, &cols), ReadSummary { vcf, chosen }))
    }
}

/// Writes genotypes in the format of `path`'s extension: `.bed` (with
/// `.bim`/`.fam` beside it), `.raw`, `.csv`, `.tsv` or `.txt` (space-separated).
pub fn write_genotypes(g: &PackedGenotypes, path: &Path) -> Result<()> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("bed") => write_plink(g, path, None, None),
        Some("raw") => write_raw(g, path),
        Some("csv") => write_delimited(g, path, Delimiter::Comma),
        Some("tsv") => write_delimited(g, path, Delimiter::Tab),
        Some("txt") => write_delimited(g, path, Delimiter::Whitespace),
        _ => Err(GenoError::Usage(format!(
            "{}: cannot tell the output format; the name must end in .bed, .raw, .csv, .tsv or .txt",
            path.display()
        ))),
    }
}
