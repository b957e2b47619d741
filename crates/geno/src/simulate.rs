//! Simulated genotypes with linkage disequilibrium, and traits with additive,
//! dominance and epistatic genetic variance.
//!
//! Each chromosome of each individual is a mosaic of a few founder
//! haplotypes: along the chromosome, a haplotype switches to a random founder
//! with probability 1 − exp(−G·d) between markers d Morgans apart (a Markov
//! chain of recombination over G generations), so LD decays with distance.
//! Founder alleles are drawn from a U-shaped allele-frequency spectrum, and
//! the founders share LD among themselves: a marker copies its neighbour's
//! founder alleles with a probability that decays with distance.
//!
//! The trait is y = A + D + E + e, each genetic part scaled to its share of
//! the phenotypic variance: A from `qtl` additive effects (share `h2`),
//! D from dominance deviations at the same QTL (share `dominance`), E from
//! additive × additive interactions between pairs of QTL (share
//! `epistasis`), and e Gaussian noise for the rest.

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Binomial, Distribution, StandardNormal};

use crate::error::{GenoError, Result};
use crate::packed::{code_of, Individual, Marker, PackedGenotypes};

/// The simulation's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SimParams {
    pub n: usize,
    pub snps: usize,
    pub chromosomes: usize,
    pub qtl: usize,
    /// Narrow-sense heritability: the additive share of the variance.
    pub h2: f64,
    /// Dominance share of the variance.
    pub dominance: f64,
    /// Additive × additive epistatic share of the variance.
    pub epistasis: f64,
    /// Fraction of calls set missing at random.
    pub missing: f64,
    pub seed: u64,
    /// Founder haplotypes per chromosome.
    pub founders: usize,
    /// Generations of recombination since the founders.
    pub generations: f64,
    /// Scale of the LD among the founder haplotypes: adjacent markers d
    /// Morgans apart share founder alleles with probability exp(−scale·d).
    pub ancestral_generations: f64,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            n: 1000,
            snps: 5000,
            chromosomes: 5,
            qtl: 100,
            h2: 0.5,
            dominance: 0.0,
            epistasis: 0.0,
            missing: 0.0,
            seed: 1,
            founders: 12,
            generations: 10.0,
            ancestral_generations: 500.0,
        }
    }
}

impl SimParams {
    /// Checks the settings once.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(GenoError::Usage(m));
        if self.n < 2 {
            return bad(format!("--n {}: at least 2 individuals are needed", self.n));
        }
        if self.snps == 0 || self.chromosomes == 0 || self.chromosomes > self.snps {
            return bad(format!(
                "--snps {} --chromosomes {}: need at least one marker per chromosome",
                self.snps, self.chromosomes
            ));
        }
        if self.qtl == 0 || self.qtl > self.snps {
            return bad(format!(
                "--qtl {}: expected between 1 and the number of markers ({})",
                self.qtl, self.snps
            ));
        }
        for (name, v) in [
            ("h2", self.h2),
            ("dominance", self.dominance),
            ("epistasis", self.epistasis),
            ("missing", self.missing),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("--{name} {v}: expected a value between 0 and 1"));
            }
        }
        let g = self.h2 + self.dominance + self.epistasis;
        if g > 1.0 + 1e-12 {
            return bad(format!(
                "--h2 + --dominance + --epistasis = {g}: the genetic shares of the variance cannot exceed 1"
            ));
        }
        if self.epistasis > 0.0 && self.qtl < 2 {
            return bad("--epistasis needs at least 2 QTL".into());
        }
        if self.founders < 2 {
            return bad("at least 2 founder haplotypes are needed".into());
        }
        Ok(())
    }
}

/// One simulated QTL.
#[derive(Clone, Debug, PartialEq)]
pub struct Qtl {
    /// Marker index.
    pub marker: usize,
    /// Additive effect per copy of A1, in trait units.
    pub effect: f64,
    /// Dominance deviation of the heterozygote, in trait units.
    pub dominance: f64,
}

/// A simulated data set.
#[derive(Clone, Debug)]
pub struct Simulation {
    pub genotypes: PackedGenotypes,
    /// The phenotype of each individual.
    pub phenotype: Vec<f64>,
    /// The total genetic value (A + D + E) of each individual.
    pub genetic_value: Vec<f64>,
    pub qtl: Vec<Qtl>,
    /// The true (unmasked) dosages at the QTL: qtl × n, QTL by QTL.
    pub qtl_dosages: Vec<u8>,
    /// Epistatic pairs (marker a, marker b, effect on (x_a − 1)(x_b − 1)).
    pub epistatic_pairs: Vec<(usize, usize, f64)>,
}

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mu = x.iter().sum::<f64>() / n;
    (mu, x.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / n)
}

/// Removes from `x` its least-squares projection on each of `basis` in turn
/// (Gram–Schmidt; the basis vectors are taken as mutually orthogonal).
fn orthogonalize(x: &mut [f64], basis: &[&[f64]]) {
    for b in basis {
        let (mb, vb) = mean_var(b);
        if vb <= 0.0 {
            continue;
        }
        let (mx, _) = mean_var(x);
        let cov = x
            .iter()
            .zip(b.iter())
            .map(|(u, v)| (u - mx) * (v - mb))
            .sum::<f64>()
            / x.len() as f64;
        let beta = cov / vb;
        for (u, v) in x.iter_mut().zip(b.iter()) {
            *u -= beta * (v - mb);
        }
    }
}

/// Centres a component and scales it to variance `share`; returns the factor.
fn scale_to(x: &mut [f64], share: f64) -> f64 {
    let (mu, var) = mean_var(x);
    let f = if share > 0.0 && var > 0.0 {
        (share / var).sqrt()
    } else {
        0.0
    };
    for v in x.iter_mut() {
        *v = (*v - mu) * f;
    }
    f
}

/// Runs the simulation.
pub fn simulate(p: &SimParams) -> Result<Simulation> {
    p.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let (n, m) = (p.n, p.snps);
    let width = n.to_string().len();
    let individuals: Vec<Individual> = (1..=n)
        .map(|i| Individual::from_id(format!("ind{i:0width$}")))
        .collect();

    // Markers: spread over chromosomes of 100 Mb, 1 cM per Mb.
    let mut markers = Vec::with_capacity(m);
    let mut chrom_of = Vec::with_capacity(m);
    const BASES: [&str; 4] = ["A", "C", "G", "T"];
    for c in 0..p.chromosomes {
        let k = m / p.chromosomes + usize::from(c < m % p.chromosomes);
        let mut pos: Vec<i64> = sample(&mut rng, 100_000_000, k)
            .into_iter()
            .map(|x| x as i64 + 1)
            .collect();
        pos.sort_unstable();
        for bp in pos {
            let a = rng.gen_range(0..4);
            let b = (a + rng.gen_range(1..4)) % 4;
            markers.push(Marker {
                id: format!("snp{}", markers.len() + 1),
                chromosome: (c + 1).to_string(),
                cm: format!("{:.6}", bp as f64 / 1e6),
                position: bp,
                a1: BASES[a].into(),
                a2: BASES[b].into(),
            });
            chrom_of.push(c);
        }
    }

    let qtl_idx: Vec<usize> = {
        let mut v = sample(&mut rng, m, p.qtl).into_vec();
        v.sort_unstable();
        v
    };
    let mut qtl_slot = vec![usize::MAX; m];
    for (k, &j) in qtl_idx.iter().enumerate() {
        qtl_slot[j] = k;
    }
    let mut qtl_dosage = vec![0u8; p.qtl * n];

    // Genotypes, marker by marker.
    let stride = n.div_ceil(4);
    let mut data = vec![0u8; stride * m];
    let afs = Beta::new(0.6, 0.6).expect("valid beta");
    let mut hap = vec![0u16; 2 * n];
    let mut founder = vec![false; p.founders];
    let mut row = vec![0u8; n];
    for j in 0..m {
        if j == 0 || chrom_of[j] != chrom_of[j - 1] {
            for h in hap.iter_mut() {
                *h = rng.gen_range(0..p.founders) as u16;
            }
        } else {
            let d = (markers[j].position - markers[j - 1].position) as f64 * 1e-8;
            let r = 1.0 - (-p.generations * d).exp();
            let switches = Binomial::new(2 * n as u64, r)
                .expect("valid binomial")
                .sample(&mut rng);
            for _ in 0..switches {
                let h = rng.gen_range(0..2 * n);
                hap[h] = rng.gen_range(0..p.founders) as u16;
            }
        }
        // Founder haplotypes share LD too: a marker copies the previous
        // marker's founder alleles (with rare mutations) with a probability
        // that decays with distance, else draws them afresh.
        let copy = j > 0 && chrom_of[j] == chrom_of[j - 1] && {
            let d = (markers[j].position - markers[j - 1].position) as f64 * 1e-8;
            rng.gen::<f64>() < (-p.ancestral_generations * d).exp()
        };
        if copy {
            for f in founder.iter_mut() {
                if rng.gen::<f64>() < 0.03 {
                    *f = !*f;
                }
            }
        } else {
            let freq: f64 = afs.sample(&mut rng);
            for f in founder.iter_mut() {
                *f = rng.gen::<f64>() < freq;
            }
        }
        let carriers = founder.iter().filter(|&&f| f).count();
        if carriers == 0 || carriers == p.founders {
            let k = rng.gen_range(0..p.founders);
            founder[k] = !founder[k];
        }
        for i in 0..n {
            row[i] =
                u8::from(founder[hap[2 * i] as usize]) + u8::from(founder[hap[2 * i + 1] as usize]);
        }
        if qtl_slot[j] != usize::MAX {
            let k = qtl_slot[j];
            qtl_dosage[k * n..(k + 1) * n].copy_from_slice(&row);
        }
        let out = &mut data[j * stride..(j + 1) * stride];
        for (i, &dose) in row.iter().enumerate() {
            let call = if p.missing > 0.0 && rng.gen::<f64>() < p.missing {
                None
            } else {
                Some(dose)
            };
            out[i / 4] |= code_of(call) << (2 * (i % 4));
        }
    }
    let genotypes = PackedGenotypes::from_packed(individuals, markers, data);

    // Genetic values from the true (unmasked) QTL genotypes.
    let normal = |rng: &mut ChaCha8Rng| -> f64 { rng.sample(StandardNormal) };
    let add_eff: Vec<f64> = (0..p.qtl).map(|_| normal(&mut rng)).collect();
    let dom_eff: Vec<f64> = (0..p.qtl).map(|_| normal(&mut rng)).collect();
    let pairs: Vec<(usize, usize, f64)> = if p.epistasis > 0.0 {
        (0..p.qtl)
            .map(|_| {
                let a = rng.gen_range(0..p.qtl);
                let b = (a + rng.gen_range(1..p.qtl)) % p.qtl;
                (a, b, normal(&mut rng))
            })
            .collect()
    } else {
        Vec::new()
    };
    let x = |k: usize, i: usize| qtl_dosage[k * n + i] as f64;
    let mut a: Vec<f64> = (0..n)
        .map(|i| (0..p.qtl).map(|k| add_eff[k] * x(k, i)).sum())
        .collect();
    let mut d: Vec<f64> = (0..n)
        .map(|i| {
            (0..p.qtl)
                .map(|k| {
                    if qtl_dosage[k * n + i] == 1 {
                        dom_eff[k]
                    } else {
                        0.0
                    }
                })
                .sum()
        })
        .collect();
    let mut e: Vec<f64> = (0..n)
        .map(|i| {
            pairs
                .iter()
                .map(|&(ka, kb, w)| w * (x(ka, i) - 1.0) * (x(kb, i) - 1.0))
                .sum()
        })
        .collect();
    // Dominance and epistatic values are taken as deviations from the
    // additive values (and epistasis also from dominance), so that the
    // variance shares add up.
    orthogonalize(&mut d, &[&a]);
    orthogonalize(&mut e, &[&a, &d]);
    let fa = scale_to(&mut a, p.h2);
    let fd = scale_to(&mut d, p.dominance);
    let fe = scale_to(&mut e, p.epistasis);
    let noise_sd = (1.0 - p.h2 - p.dominance - p.epistasis).max(0.0).sqrt();
    let genetic_value: Vec<f64> = (0..n).map(|i| a[i] + d[i] + e[i]).collect();
    let phenotype = genetic_value
        .iter()
        .map(|g| g + noise_sd * normal(&mut rng))
        .collect();
    let qtl = qtl_idx
        .iter()
        .enumerate()
        .map(|(k, &j)| Qtl {
            marker: j,
            effect: add_eff[k] * fa,
            dominance: dom_eff[k] * fd,
        })
        .collect();
    let epistatic_pairs = pairs
        .iter()
        .map(|&(ka, kb, w)| (qtl_idx[ka], qtl_idx[kb], w * fe))
        .collect();
    Ok(Simulation {
        genotypes,
        phenotype,
        genetic_value,
        qtl,
        qtl_dosages: qtl_dosage,
        epistatic_pairs,
    })
}

/// A further trait of a simulation: additive only, on the first trait's QTL.
#[derive(Clone, Debug, PartialEq)]
pub struct CorrelatedTrait {
    pub phenotype: Vec<f64>,
    pub genetic_value: Vec<f64>,
    /// Its additive effect at each QTL (in the order of `Simulation::qtl`).
    pub effects: Vec<f64>,
    /// The correlation of its genetic values with the first trait's
    /// additive values, as realized.
    pub realized_rg: f64,
}

/// Traits correlated with the first through shared QTL: trait t's effect at
/// QTL k is rg·u_k + √(1 − rg²)·z_k, with u the first trait's additive
/// effects standardized and z fresh normal draws, so the genetic
/// correlation is rg in expectation over QTL (LD among the QTL moves the
/// realized value a little; it is reported). Each trait's additive values
/// are scaled to its `h2`, and Gaussian noise makes up the rest.
pub fn correlated_traits(
    sim: &Simulation,
    h2: &[f64],
    rg: f64,
    seed: u64,
) -> Result<Vec<CorrelatedTrait>> {
    if !(-1.0..=1.0).contains(&rg) {
        return Err(GenoError::Usage(format!(
            "--genetic-correlation {rg}: expected a value in [-1, 1]"
        )));
    }
    if let Some(h) = h2.iter().find(|h| !(0.0..=1.0).contains(*h)) {
        return Err(GenoError::Usage(format!(
            "--h2 {h}: each trait's h2 lies in [0, 1]"
        )));
    }
    let k = sim.qtl.len();
    let n = sim.genetic_value.len();
    let ms = sim.qtl.iter().map(|q| q.effect * q.effect).sum::<f64>() / k.max(1) as f64;
    let u: Vec<f64> = sim
        .qtl
        .iter()
        .map(|q| if ms > 0.0 { q.effect / ms.sqrt() } else { 0.0 })
        .collect();
    let x = |q: usize, i: usize| sim.qtl_dosages[q * n + i] as f64;
    let additive = |b: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|i| (0..k).map(|q| b[q] * x(q, i)).sum())
            .collect()
    };
    let first = additive(&u);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7ea1_75ee_d000_0002);
    let mut out = Vec::with_capacity(h2.len());
    for &h in h2 {
        let mut b: Vec<f64> = u
            .iter()
            .map(|&uk| {
                let z: f64 = rng.sample(StandardNormal);
                rg * uk + (1.0 - rg * rg).sqrt() * z
            })
            .collect();
        let mut a = additive(&b);
        let f = scale_to(&mut a, h);
        for v in b.iter_mut() {
            *v *= f;
        }
        let noise = (1.0 - h).max(0.0).sqrt();
        let phenotype = a
            .iter()
            .map(|g| g + noise * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let realized_rg = pearson(&first, &a);
        out.push(CorrelatedTrait {
            phenotype,
            genetic_value: a,
            effects: b,
            realized_rg,
        });
    }
    Ok(out)
}

/// Which phenotype records are missing, per trait, at random at each
/// trait's rate: drawn from a stream of their own, so the genotypes and
/// traits do not depend on it.
pub fn missing_records(n: usize, rates: &[f64], seed: u64) -> Vec<Vec<bool>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0a11_5e70_0000_0003);
    rates
        .iter()
        .map(|&f| (0..n).map(|_| f > 0.0 && rng.gen::<f64>() < f).collect())
        .collect()
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let (mx, vx) = mean_var(x);
    let (my, vy) = mean_var(y);
    let c = x
        .iter()
        .zip(y)
        .map(|(a, b)| (a - mx) * (b - my))
        .sum::<f64>()
        / x.len() as f64;
    c / (vx * vy).sqrt()
}

/// The peers' genomic benchmark data (`genomic_data` in
/// `../shared/peers/common.py`), drawn the same way with another generator:
/// n × m dosages drawn independently and uniformly from {0, 1, 2} (no LD,
/// no allele-frequency spectrum); y = Xₛβ + e with Xₛ the column-standardized
/// dosages, β ~ N(0, 1) on `qtl` random markers and 0 elsewhere,
/// e ~ N(0, sd(Xₛβ)²) (h2 ≈ 0.5); then y standardized.
pub fn independent_uniform(
    n: usize,
    m: usize,
    qtl: usize,
    seed: u64,
) -> Result<(PackedGenotypes, Vec<f64>)> {
    if n < 2 || m == 0 || qtl > m {
        return Err(GenoError::Usage(format!(
            "independent_uniform: n = {n} (at least 2), m = {m} (at least 1), qtl = {qtl} (at most m)"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dosages: Vec<u8> = (0..n * m).map(|_| rng.gen_range(0..3u8)).collect();
    let mut beta = vec![0f64; m];
    for j in sample(&mut rng, m, qtl) {
        beta[j] = rng.sample(StandardNormal);
    }
    let mut g = vec![0f64; n];
    for (j, &b) in beta.iter().enumerate() {
        if b == 0.0 {
            continue;
        }
        let col: Vec<f64> = (0..n).map(|i| dosages[i * m + j] as f64).collect();
        let (mu, var) = mean_var(&col);
        let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
        for (gi, x) in g.iter_mut().zip(&col) {
            *gi += (x - mu) / sd * b;
        }
    }
    let (_, var_g) = mean_var(&g);
    let mut y: Vec<f64> = g
        .iter()
        .map(|&gi| gi + var_g.sqrt() * rng.sample::<f64, _>(StandardNormal))
        .collect();
    scale_to(&mut y, 1.0);
    let individuals = (0..n)
        .map(|i| Individual::from_id(format!("i{i}")))
        .collect();
    let markers = (0..m).map(|j| Marker::from_id(format!("m{j}"))).collect();
    let genotypes = PackedGenotypes::from_fn(individuals, markers, |i, j| Some(dosages[i * m + j]));
    Ok((genotypes, y))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The peers' recipe: dosages uniform on {0, 1, 2} with no LD, y
    /// standardized; sizes that cannot be drawn are refused.
    #[test]
    fn independent_uniform_draws_the_peers_data() {
        let (g, y) = independent_uniform(2000, 300, 200, 7).unwrap();
        let mut counts = [0usize; 3];
        for i in 0..2000 {
            for j in 0..300 {
                counts[g.dosage(i, j).unwrap() as usize] += 1;
            }
        }
        for c in counts {
            let share = c as f64 / 600_000.0;
            assert!((share - 1.0 / 3.0).abs() < 0.005, "dosage share {share}");
        }
        let (mu, var) = mean_var(&y);
        assert!(
            mu.abs() < 1e-9 && (var - 1.0).abs() < 1e-9,
            "y: mean {mu}, var {var}"
        );
        // Adjacent markers are independent: their correlation is near 0.
        let r = corr(&dosages(&g, 10), &dosages(&g, 11));
        assert!(r.abs() < 0.1, "adjacent markers correlate: {r}");
        assert!(independent_uniform(1, 10, 1, 0).is_err());
        assert!(independent_uniform(10, 10, 11, 0).is_err());
    }

    fn corr(x: &[f64], y: &[f64]) -> f64 {
        pearson(x, y)
    }

    fn dosages(g: &PackedGenotypes, j: usize) -> Vec<f64> {
        (0..g.n_individuals())
            .map(|i| g.dosage(i, j).unwrap() as f64)
            .collect()
    }

    #[test]
    fn correlated_traits_share_qtl_at_the_genetic_correlation_asked() {
        let p = SimParams {
            n: 2000,
            snps: 2000,
            chromosomes: 4,
            qtl: 400,
            ..Default::default()
        };
        let s = simulate(&p).unwrap();
        for rg in [0.8, 0.0, -0.5] {
            let t = correlated_traits(&s, &[0.3], rg, 5).unwrap();
            let t = &t[0];
            // Independent of the reported figure: correlate the genetic values
            // directly (trait 1 has no dominance here, so its genetic value is
            // additive).
            let r = corr(&s.genetic_value, &t.genetic_value);
            assert!((r - t.realized_rg).abs() < 1e-9);
            assert!((r - rg).abs() < 0.1, "rg {rg}: realized {r}");
            let (_, vg) = mean_var(&t.genetic_value);
            let (_, vy) = mean_var(&t.phenotype);
            assert!((vg - 0.3).abs() < 1e-9 && (vg / vy - 0.3).abs() < 0.05);
        }
        assert!(correlated_traits(&s, &[0.3], 1.5, 5).is_err());
        assert!(correlated_traits(&s, &[1.3], 0.5, 5).is_err());
    }

    #[test]
    fn same_seed_same_data() {
        let p = SimParams {
            n: 50,
            snps: 200,
            chromosomes: 2,
            qtl: 10,
            ..Default::default()
        };
        let a = simulate(&p).unwrap();
        let b = simulate(&p).unwrap();
        assert_eq!(a.genotypes.packed(), b.genotypes.packed());
        assert_eq!(a.phenotype, b.phenotype);
        let c = simulate(&SimParams { seed: 2, ..p }).unwrap();
        assert_ne!(a.genotypes.packed(), c.genotypes.packed());
    }

    #[test]
    fn ld_decays_with_distance() {
        let p = SimParams {
            n: 600,
            snps: 2000,
            chromosomes: 1,
            qtl: 10,
            ..Default::default()
        };
        let s = simulate(&p).unwrap();
        let g = &s.genotypes;
        let mut near = 0.0;
        let mut far = 0.0;
        let k = 200;
        for t in 0..k {
            let j = t * 4;
            near += corr(&dosages(g, j), &dosages(g, j + 1)).powi(2);
            far += corr(&dosages(g, j), &dosages(g, j + 1000)).powi(2);
        }
        let (near, far) = (near / k as f64, far / k as f64);
        eprintln!("r2 adjacent {near}, distant {far}");
        assert!(near > 0.3, "adjacent r2 {near}");
        assert!(far < 0.05, "distant r2 {far}");
    }

    #[test]
    fn variance_shares_hold() {
        let p = SimParams {
            n: 2000,
            snps: 500,
            chromosomes: 2,
            qtl: 20,
            h2: 0.4,
            dominance: 0.1,
            epistasis: 0.2,
            ..Default::default()
        };
        let s = simulate(&p).unwrap();
        let (_, vg) = mean_var(&s.genetic_value);
        let (_, vy) = mean_var(&s.phenotype);
        assert!((vg - 0.7).abs() < 0.05, "genetic variance {vg}");
        assert!((vg / vy - 0.7).abs() < 0.05, "H2 {}", vg / vy);
        assert_eq!(s.epistatic_pairs.len(), 20);
        // Additive values rebuilt from the QTL effects match the simulation's share.
        let a: Vec<f64> = (0..p.n)
            .map(|i| {
                s.qtl
                    .iter()
                    .map(|q| q.effect * s.genotypes.dosage(i, q.marker).unwrap() as f64)
                    .sum()
            })
            .collect();
        assert!((mean_var(&a).1 - 0.4).abs() < 1e-9);
    }
}
