//! `genocnn simulate`

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
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
    /// Narrow-sense heritability: the additive share of the phenotypic
    /// variance; one value, or one per trait with --traits (0.5,0.2).
    #[arg(long, default_value = "0.5", value_name = "H2[,H2…]")]
    pub h2: String,
    /// Traits to simulate. Traits 2… share trait 1's QTL, with additive
    /// effects correlated by --genetic-correlation (and no dominance or
    /// epistasis); PREFIX.pheno.csv then has columns trait1, trait2, ….
    #[arg(long, default_value_t = 1)]
    pub traits: usize,
    /// The genetic correlation of traits 2… with trait 1.
    #[arg(long, default_value_t = 0.0, value_name = "R")]
    pub genetic_correlation: f64,
    /// Share of phenotype records set missing (NA) at random: one value, or
    /// one per trait (0,0.7).
    #[arg(long, default_value = "0", value_name = "F[,F…]")]
    pub missing_rate: String,
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

/// A value per trait from `one` or `one,per,trait`.
fn per_trait(text: &str, k: usize, flag: &str) -> Result<Vec<f64>> {
    let v: Vec<f64> = text
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<f64>()
                .map_err(|_| anyhow::anyhow!("{flag} {text}: '{}' is not a number", x.trim()))
        })
        .collect::<Result<_>>()?;
    match v.len() {
        1 => Ok(vec![v[0]; k]),
        l if l == k => Ok(v),
        l => bail!("{flag} {text}: {l} values for {k} traits (give one, or one per trait)"),
    }
}

pub fn run(a: SimulateArgs) -> Result<()> {
    if a.traits == 0 {
        bail!("--traits must be at least 1");
    }
    let h2 = per_trait(&a.h2, a.traits, "--h2")?;
    let missing_rate = per_trait(&a.missing_rate, a.traits, "--missing-rate")?;
    if let Some(f) = missing_rate.iter().find(|f| !(0.0..1.0).contains(*f)) {
        bail!("--missing-rate {f}: expected a share in [0, 1)");
    }
    if a.traits == 1 && a.genetic_correlation != 0.0 {
        bail!("--genetic-correlation needs --traits 2 or more");
    }
    let params = SimParams {
        n: a.n,
        snps: a.snps,
        chromosomes: a.chromosomes,
        qtl: a.qtl,
        h2: h2[0],
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
    let more = geno::correlated_traits(&sim, &h2[1..], a.genetic_correlation, a.seed)?;
    let mut traits: Vec<&[f64]> = vec![&sim.phenotype];
    traits.extend(more.iter().map(|t| &t.phenotype[..]));
    let names: Vec<String> = if a.traits == 1 {
        vec!["trait".into()]
    } else {
        (1..=a.traits).map(|t| format!("trait{t}")).collect()
    };
    let missing = geno::simulate::missing_records(a.n, &missing_rate, a.seed);
    let mut text = format!("id,{}\n", names.join(","));
    for (i, ind) in g.individuals().iter().enumerate() {
        text.push_str(&ind.iid);
        for (t, y) in traits.iter().enumerate() {
            text.push(',');
            text.push_str(&num((!missing[t][i]).then_some(y[i])));
        }
        text.push('\n');
    }
    write_atomic(with_suffix(&a.out, ".pheno.csv"), text.as_bytes())?;
    let mut text = String::from("marker,chromosome,position,effect,dominance");
    for t in 2..=a.traits {
        write!(text, ",effect_trait{t}")?;
    }
    text.push('\n');
    for (k, q) in sim.qtl.iter().enumerate() {
        let mk = &g.markers()[q.marker];
        write!(
            text,
            "{},{},{},{},{}",
            mk.id,
            mk.chromosome,
            mk.position,
            num(Some(q.effect)),
            num(Some(q.dominance))
        )?;
        for t in &more {
            write!(text, ",{}", num(Some(t.effects[k])))?;
        }
        text.push('\n');
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
                    h2[0], a.dominance, a.epistasis
                )
            ),
            (
                "traits",
                if more.is_empty() {
                    "1".to_string()
                } else {
                    format!(
                        "{}: h2 {:?}, genetic correlation with trait1 {} (realized {})",
                        a.traits,
                        h2,
                        a.genetic_correlation,
                        more.iter()
                            .map(|t| format!("{:.3}", t.realized_rg))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
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
