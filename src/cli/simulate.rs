//! `genocnn simulate`

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use geno::{simulate, write_atomic, SimParams};

use super::output::{num, spinner, table};

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Number of individuals.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Number of markers.
    #[arg(long, default_value_t = 5000)]
    pub snps: usize,
    /// Number of chromosomes (markers are spread evenly over them).
    #[arg(long, default_value_t = 5)]
    pub chromosomes: usize,
    /// Number of additive QTL.
    #[arg(long, default_value_t = 100)]
    pub qtl: usize,
    /// Narrow-sense heritability: the additive share of the phenotypic variance.
    #[arg(long, default_value_t = 0.5)]
    pub h2: f64,
    /// Dominance share of the phenotypic variance (at the same QTL).
    #[arg(long, default_value_t = 0.0)]
    pub dominance: f64,
    /// Additive × additive epistatic share of the phenotypic variance (pairs of QTL).
    #[arg(long, default_value_t = 0.0)]
    pub epistasis: f64,
    /// Fraction of genotype calls set missing at random.
    #[arg(long, default_value_t = 0.0)]
    pub missing: f64,
    /// Founder haplotypes per chromosome (fewer gives stronger, longer LD).
    #[arg(long, default_value_t = 12)]
    pub founders: usize,
    /// Generations of recombination since the founders (more gives shorter LD).
    #[arg(long, default_value_t = 10.0)]
    pub generations: f64,
    /// Random seed; the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Skip PREFIX.csv (the dense dosage matrix, large for big sets).
    #[arg(long)]
    pub no_csv: bool,
    /// Output prefix: PREFIX.bed/.bim/.fam, PREFIX.csv, PREFIX.pheno.csv, PREFIX.qtl.csv.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn run(a: SimulateArgs) -> Result<()> {
    let params = SimParams {
        n: a.n,
        snps: a.snps,
        chromosomes: a.chromosomes,
        qtl: a.qtl,
        h2: a.h2,
        dominance: a.dominance,
        epistasis: a.epistasis,
        missing: a.missing,
        seed: a.seed,
        founders: a.founders,
        generations: a.generations,
        ..Default::default()
    };
    params.validate()?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        super::output::ensure_dir(dir)?;
    }
    let pb = spinner(format!("simulating {} × {}", a.n, a.snps));
    let sim = simulate(&params)?;
    let g = &sim.genotypes;
    pb.set_message("writing");
    geno::write_plink(g, &with_suffix(&a.out, ".bed"), None, None)?;
    if !a.no_csv {
        geno::write_genotypes(g, &with_suffix(&a.out, ".csv"))?;
    }
    let mut text = String::from("id,trait\n");
    for (ind, y) in g.individuals().iter().zip(&sim.phenotype) {
        writeln!(text, "{},{}", ind.iid, num(Some(*y)))?;
    }
    write_atomic(with_suffix(&a.out, ".pheno.csv"), text.as_bytes())?;
    let mut text = String::from("marker,chromosome,position,effect,dominance\n");
    for q in &sim.qtl {
        let mk = &g.markers()[q.marker];
        writeln!(
            text,
            "{},{},{},{},{}",
            mk.id,
            mk.chromosome,
            mk.position,
            num(Some(q.effect)),
            num(Some(q.dominance))
        )?;
    }
    write_atomic(with_suffix(&a.out, ".qtl.csv"), text.as_bytes())?;
    if !sim.epistatic_pairs.is_empty() {
        let mut text = String::from("marker_a,marker_b,effect\n");
        for &(ja, jb, w) in &sim.epistatic_pairs {
            writeln!(
                text,
                "{},{},{}",
                g.markers()[ja].id,
                g.markers()[jb].id,
                num(Some(w))
            )?;
        }
        write_atomic(with_suffix(&a.out, ".epistasis.csv"), text.as_bytes())?;
    }
    pb.finish_and_clear();
    let mean = sim.phenotype.iter().sum::<f64>() / a.n as f64;
    let var = |x: &[f64]| {
        let mu = x.iter().sum::<f64>() / x.len() as f64;
        x.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / x.len() as f64
    };
    let vy = var(&sim.phenotype);
    let mut files = vec![".bed/.bim/.fam"];
    if !a.no_csv {
        files.push(".csv");
    }
    files.extend([".pheno.csv", ".qtl.csv"]);
    if !sim.epistatic_pairs.is_empty() {
        files.push(".epistasis.csv");
    }
    print!(
        "{}",
        table(&[
            ("individuals", a.n.to_string()),
            (
                "markers",
                format!("{} on {} chromosomes", a.snps, a.chromosomes)
            ),
            ("QTL", a.qtl.to_string()),
            (
                "variance shares",
                format!(
                    "additive {}, dominance {}, epistasis {}",
                    a.h2, a.dominance, a.epistasis
                )
            ),
            (
                "trait",
                format!(
                    "mean {mean:.3}, variance {vy:.3}, realized H2 {:.3}",
                    var(&sim.genetic_value) / vy
                )
            ),
            (
                "wrote",
                format!("{}{{{}}}", a.out.display(), files.join(","))
            ),
        ])
    );
    Ok(())
}
