//! GBLUP without the n × n matrix: the mixed-model equations solved by
//! preconditioned conjugate gradients over the packed genotypes, as BOLT-LMM
//! and the dairy evaluations do.
//!
//! With G = ZZ′/d (Z the dosages centred by 2p, missing calls 0, d =
//! 2Σp(1−p), as [`crate::vanraden`]) and δ = σ²e/σ²g = (1 − h2)/h2, the
//! training individuals' covariance is proportional to V = G + δI. PCG
//! solves V x = b for b = y and b = 1 together (one pass over the genotypes
//! per iteration serves both), each product G v computed as Z(Z′v)/d by
//! decoding the 2-bit store marker by marker, so memory stays at the
//! genotypes plus a few vectors of n and m. The preconditioner is V's
//! diagonal (Jacobi). Then μ = 1′V⁻¹y / 1′V⁻¹1, α = V⁻¹(y − 1μ), the marker
//! effects u = Z′α/d (SNP-BLUP) and every individual's GEBV Zu.
//!
//! h2 is given, or estimated without any decomposition by Haseman–Elston
//! regression ([`he_regression`]): Σᵢ≠ⱼ Gᵢⱼ yᵢyⱼ / Σᵢ≠ⱼ G²ᵢⱼ on the
//! standardized trait, with tr(G²) estimated from random probes
//! (Hutchinson's estimator) and the diagonal terms computed exactly.

use geno::PackedGenotypes;
use rayon::prelude::*;

use crate::grm::{allele_freqs, centred_luts};
use crate::{GblupError, Result};

/// Options of the PCG solver.
#[derive(Clone, Copy, Debug)]
pub struct PcgOptions {
    /// Stop when every residual is below this share of its right-hand side.
    pub tolerance: f64,
    pub max_iterations: usize,
}

impl Default for PcgOptions {
    fn default() -> Self {
        PcgOptions {
            tolerance: 1e-6,
            max_iterations: 1000,
        }
    }
}

/// A GBLUP fit by PCG.
#[derive(Clone, Debug)]
pub struct PcgFit {
    /// The heritability the equations were solved at.
    pub h2: f64,
    pub var_g: f64,
    pub var_e: f64,
    /// The intercept (GLS).
    pub mean: f64,
    /// The training individuals (those with the trait).
    pub train: Vec<usize>,
    /// The GEBV of every individual of the store.
    pub gebv: Vec<f64>,
    /// SNP-BLUP marker effects on centred dosages.
    pub snp_effects: Vec<f64>,
    /// 2p of each marker.
    pub centers: Vec<f64>,
    /// PCG iterations, and the largest relative residual at the end.
    pub iterations: usize,
    pub residual: f64,
}

/// The centred genotypes as a linear operator: products with Z and Z′.
pub struct Genotypes<'a> {
    g: &'a PackedGenotypes,
    luts: Vec<[f32; 4]>,
    /// 2 Σ p(1 − p).
    pub denom: f64,
    pub freqs: Vec<f64>,
    /// G's diagonal, computed on first use (HE, MC-REML and the fit share it).
    diag: std::sync::OnceLock<Vec<f64>>,
}

/// Rows per task of [`Genotypes::z_mul`]: a multiple of 4 (whole bytes).
const ROWS: usize = 1024;

impl<'a> Genotypes<'a> {
    pub fn new(g: &'a PackedGenotypes) -> Self {
        let freqs = allele_freqs(g);
        let denom = freqs.iter().map(|&p| 2.0 * p * (1.0 - p)).sum();
        Genotypes {
            g,
            luts: centred_luts(&freqs),
            denom,
            freqs,
            diag: std::sync::OnceLock::new(),
        }
    }

    /// Z′V for V of n rows × k columns (row-major): m × k.
    pub fn zt_mul(&self, v: &[f64], k: usize) -> Vec<f64> {
        let (n, m) = (self.g.n_individuals(), self.g.n_markers());
        assert_eq!(v.len(), n * k, "zt_mul: V is n × k");
        let mut out = vec![0f64; m * k];
        out.par_chunks_mut(64 * k).enumerate().for_each_init(
            || vec![0f32; n],
            |z, (t, block)| {
                for (r, row) in block.chunks_mut(k).enumerate() {
                    let j = t * 64 + r;
                    self.g.decode_snp_major(j..j + 1, &self.luts, z);
                    if k == 1 {
                        // Four partial sums: the adds vectorize.
                        let mut acc = [0f64; 4];
                        let (zc, zt) = z.as_chunks::<4>();
                        let (vc, vt) = v.as_chunks::<4>();
                        for (a, b) in zc.iter().zip(vc) {
                            for l in 0..4 {
                                acc[l] += a[l] as f64 * b[l];
                            }
                        }
                        let tail: f64 = zt.iter().zip(vt).map(|(&a, &b)| a as f64 * b).sum();
                        row[0] = acc.iter().sum::<f64>() + tail;
                    } else if k == 2 {
                        let mut acc = [0f64; 2];
                        for (&zi, x) in z.iter().zip(v.as_chunks::<2>().0) {
                            let zi = zi as f64;
                            acc[0] += zi * x[0];
                            acc[1] += zi * x[1];
                        }
                        row.copy_from_slice(&acc);
                    } else {
                        for (i, &zi) in z.iter().enumerate() {
                            let zi = zi as f64;
                            for (o, &x) in row.iter_mut().zip(&v[i * k..(i + 1) * k]) {
                                *o += zi * x;
                            }
                        }
                    }
                }
            },
        );
        out
    }

    /// ZU for U of m rows × k columns (row-major): n × k. With `squared`,
    /// the entries of Z are squared first.
    pub fn z_mul(&self, u: &[f64], k: usize, squared: bool) -> Vec<f64> {
        let (n, m) = (self.g.n_individuals(), self.g.n_markers());
        assert_eq!(u.len(), m * k, "z_mul: U is m × k");
        let mut out = vec![0f64; n * k];
        out.par_chunks_mut(ROWS * k)
            .enumerate()
            .for_each(|(t, rows)| {
                let i0 = t * ROWS;
                let len = rows.len() / k;
                let (b0, b1) = (i0 / 4, (i0 + len).div_ceil(4));
                let mut zbuf = vec![0f64; 4 * (b1 - b0)];
                for j in 0..m {
                    let lut = self.luts[j];
                    let lut = if squared { lut.map(|x| x * x) } else { lut };
                    let mut pair = [[0f64; 2]; 16];
                    for (nib, p) in pair.iter_mut().enumerate() {
                        *p = [lut[nib & 3] as f64, lut[nib >> 2] as f64];
                    }
                    for (quad, &byte) in zbuf.chunks_exact_mut(4).zip(&self.g.snp(j)[b0..b1]) {
                        let lo = pair[(byte & 15) as usize];
                        let hi = pair[(byte >> 4) as usize];
                        quad.copy_from_slice(&[lo[0], lo[1], hi[0], hi[1]]);
                    }
                    let uj = &u[j * k..(j + 1) * k];
                    if k == 1 {
                        let x = uj[0];
                        for (o, &z) in rows.iter_mut().zip(&zbuf[..len]) {
                            *o += z * x;
                        }
                    } else if k == 2 {
                        let (x0, x1) = (uj[0], uj[1]);
                        for (o, &z) in rows.as_chunks_mut::<2>().0.iter_mut().zip(&zbuf[..len]) {
                            o[0] += z * x0;
                            o[1] += z * x1;
                        }
                    } else {
                        for (r, &z) in zbuf[..len].iter().enumerate() {
                            for (o, &x) in rows[r * k..(r + 1) * k].iter_mut().zip(uj) {
                                *o += z * x;
                            }
                        }
                    }
                }
            });
        out
    }

    /// The diagonal of G: Σⱼ z²ᵢⱼ / d (one pass, the first time).
    pub fn g_diagonal(&self) -> &[f64] {
        self.diag.get_or_init(|| {
            let ones = vec![1.0; self.g.n_markers()];
            let scale = self.scale();
            self.z_mul(&ones, 1, true)
                .into_iter()
                .map(|v| v * scale)
                .collect()
        })
    }

    fn scale(&self) -> f64 {
        if self.denom > 0.0 {
            1.0 / self.denom
        } else {
            0.0
        }
    }

    /// G_tt V for the training rows `mask` (V is n × k, zero outside them;
    /// the result is too).
    fn g_mul(&self, v: &[f64], k: usize, mask: &[bool]) -> Vec<f64> {
        let t = self.zt_mul(v, k);
        let scale = self.scale();
        let mut out = self.z_mul(&t, k, false);
        for (i, row) in out.chunks_mut(k).enumerate() {
            for x in row {
                *x = if mask[i] { *x * scale } else { 0.0 };
            }
        }
        out
    }
}

/// Solves (G_tt + δI) X = B by Jacobi-preconditioned CG, every column at
/// once (B is n × k row-major, zero outside the training rows).
#[allow(clippy::too_many_arguments)]
fn solve(
    z: &Genotypes,
    b: &[f64],
    k: usize,
    mask: &[bool],
    diag: &[f64],
    delta: f64,
    opts: PcgOptions,
    start: Option<Vec<f64>>,
) -> (Vec<f64>, usize, f64) {
    let n = mask.len();
    let precond: Vec<f64> = (0..n)
        .map(|i| {
            if mask[i] {
                1.0 / (diag[i] + delta)
            } else {
                0.0
            }
        })
        .collect();
    let col_dot = |a: &[f64], b: &[f64], c: usize| -> f64 {
        (0..n).map(|i| a[i * k + c] * b[i * k + c]).sum()
    };
    let mut x = start.unwrap_or_else(|| vec![0f64; n * k]);
    let mut r = b.to_vec();
    if x.iter().any(|&v| v != 0.0) {
        let mut ax = z.g_mul(&x, k, mask);
        for (e, v) in ax.iter_mut().enumerate() {
            *v += delta * x[e];
        }
        for (r, a) in r.iter_mut().zip(&ax) {
            *r -= a;
        }
    }
    let mut zr: Vec<f64> = r
        .iter()
        .enumerate()
        .map(|(e, &v)| v * precond[e / k])
        .collect();
    let mut p = zr.clone();
    let bnorm: Vec<f64> = (0..k)
        .map(|c| col_dot(b, b, c).sqrt().max(1e-300))
        .collect();
    let mut rz: Vec<f64> = (0..k).map(|c| col_dot(&r, &zr, c)).collect();
    let mut done = vec![false; k];
    let mut iterations = 0;
    let mut worst = 1.0;
    while iterations < opts.max_iterations {
        worst = (0..k)
            .map(|c| col_dot(&r, &r, c).sqrt() / bnorm[c])
            .fold(0.0, f64::max);
        if worst <= opts.tolerance {
            break;
        }
        let mut ap = z.g_mul(&p, k, mask);
        for (e, v) in ap.iter_mut().enumerate() {
            *v += delta * p[e];
        }
        iterations += 1;
        for c in 0..k {
            if done[c] {
                continue;
            }
            let pap = col_dot(&p, &ap, c);
            if pap <= 0.0 || !pap.is_finite() {
                done[c] = true;
                continue;
            }
            let alpha = rz[c] / pap;
            for i in 0..n {
                x[i * k + c] += alpha * p[i * k + c];
                r[i * k + c] -= alpha * ap[i * k + c];
            }
            if col_dot(&r, &r, c).sqrt() / bnorm[c] <= opts.tolerance {
                done[c] = true;
            }
        }
        for (e, v) in zr.iter_mut().enumerate() {
            *v = r[e] * precond[e / k];
        }
        for c in 0..k {
            let new = col_dot(&r, &zr, c);
            let beta = if rz[c] != 0.0 { new / rz[c] } else { 0.0 };
            rz[c] = new;
            for i in 0..n {
                p[i * k + c] = zr[i * k + c] + beta * p[i * k + c];
            }
        }
    }
    (x, iterations, worst)
}

/// GBLUP of trait `y` (one value per individual of the store, NaN where
/// missing) at heritability `h2`, by PCG.
pub fn fit_pcg(g: &PackedGenotypes, y: &[f64], h2: f64, opts: PcgOptions) -> Result<PcgFit> {
    let z = Genotypes::new(g);
    fit_with(&z, y, h2, opts)
}

fn training(y: &[f64]) -> Result<(Vec<usize>, Vec<bool>)> {
    let train: Vec<usize> = (0..y.len()).filter(|&i| !y[i].is_nan()).collect();
    if train.len() < 3 {
        return Err(GblupError::Data(format!(
            "only {} individuals have the trait; at least 3 are needed",
            train.len()
        )));
    }
    let yt: Vec<f64> = train.iter().map(|&i| y[i]).collect();
    if let Some(value) = crate::error::constant(&yt) {
        return Err(GblupError::ConstantTrait {
            value,
            n: train.len(),
        });
    }
    let mut mask = vec![false; y.len()];
    for &i in &train {
        mask[i] = true;
    }
    Ok((train, mask))
}

/// [`fit_pcg`] on an operator already built.
pub fn fit_with(z: &Genotypes, y: &[f64], h2: f64, opts: PcgOptions) -> Result<PcgFit> {
    if !(h2 > 0.0 && h2 < 1.0) {
        return Err(GblupError::Data(format!(
            "h2 = {h2}: the PCG solver needs a heritability strictly between 0 and 1"
        )));
    }
    if z.denom <= 0.0 {
        return Err(GblupError::NoVariation {
            n_markers: z.freqs.len(),
        });
    }
    let n = y.len();
    let (train, mask) = training(y)?;
    let nt = train.len();
    let delta = (1.0 - h2) / h2;
    let diag = z.g_diagonal();
    let mut b = vec![0f64; n * 2];
    for &i in &train {
        b[2 * i] = y[i];
        b[2 * i + 1] = 1.0;
    }
    let (x, iterations, residual) = solve(z, &b, 2, &mask, diag, delta, opts, None);
    let (mut one_vy, mut one_v1) = (0.0, 0.0);
    for &i in &train {
        one_vy += x[2 * i];
        one_v1 += x[2 * i + 1];
    }
    let mean = one_vy / one_v1;
    let mut alpha = vec![0f64; n];
    for &i in &train {
        alpha[i] = x[2 * i] - mean * x[2 * i + 1];
    }
    // σ²g from the profiled REML scale: (y − 1μ)′V⁻¹(y − 1μ) / (n − 1).
    let quad: f64 = train.iter().map(|&i| (y[i] - mean) * alpha[i]).sum();
    let var_g = quad / (nt as f64 - 1.0);
    let scale = 1.0 / z.denom;
    let snp_effects: Vec<f64> = z.zt_mul(&alpha, 1).into_iter().map(|v| v * scale).collect();
    let gebv = z.z_mul(&snp_effects, 1, false);
    Ok(PcgFit {
        h2,
        var_g,
        var_e: var_g * delta,
        mean,
        train,
        gebv,
        snp_effects,
        centers: z.freqs.iter().map(|&p| 2.0 * p).collect(),
        iterations,
        residual,
    })
}

/// Haseman–Elston regression of the trait `y` (NaN where missing) on G:
/// h2 = Σᵢ≠ⱼ Gᵢⱼ yᵢyⱼ / Σᵢ≠ⱼ G²ᵢⱼ over the standardized trait of the
/// individuals with a record. tr(G²) is estimated from `probes` Rademacher
/// vectors (seeded by `seed`); everything else is exact. Returns the
/// estimate, unclamped.
pub fn he_regression(z: &Genotypes, y: &[f64], probes: usize, seed: u64) -> Result<f64> {
    use rand::{Rng, SeedableRng};
    let n = y.len();
    let (train, mask) = training(y)?;
    let nt = train.len() as f64;
    let mean = train.iter().map(|&i| y[i]).sum::<f64>() / nt;
    let sd = (train.iter().map(|&i| (y[i] - mean).powi(2)).sum::<f64>() / (nt - 1.0)).sqrt();
    let mut ys = vec![0f64; n];
    for &i in &train {
        ys[i] = (y[i] - mean) / sd;
    }
    let diag = z.g_diagonal();
    let gy = z.g_mul(&ys, 1, &mask);
    let ygy: f64 = train.iter().map(|&i| ys[i] * gy[i]).sum();
    let diag_y: f64 = train.iter().map(|&i| diag[i] * ys[i] * ys[i]).sum();
    let k = probes.max(1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut r = vec![0f64; n * k];
    for &i in &train {
        for c in 0..k {
            r[i * k + c] = if rng.gen::<bool>() { 1.0 } else { -1.0 };
        }
    }
    let gr = z.g_mul(&r, k, &mask);
    let tr_g2 = gr.iter().map(|v| v * v).sum::<f64>() / k as f64;
    let diag2: f64 = train.iter().map(|&i| diag[i] * diag[i]).sum();
    let den = tr_g2 - diag2;
    if den <= 0.0 {
        return Err(GblupError::Data(
            "Haseman–Elston regression: the off-diagonal relationships carry no variance".into(),
        ));
    }
    Ok((ygy - diag_y) / den)
}

/// What [`mc_reml`] found.
#[derive(Clone, Debug)]
pub struct McReml {
    pub h2: f64,
    /// (h2, f) at each evaluation: f is the log ratio of the data's
    /// statistic to the simulated ones', zero at the estimate.
    pub history: Vec<(f64, f64)>,
    /// PCG iterations over all evaluations.
    pub pcg_iterations: usize,
}

/// Monte-Carlo REML of h2 (BOLT-REML, Loh et al. 2015, for one variance
/// component), without any decomposition. At the REML estimate the data's
/// y′PGPy / y′PPy equals its expectation, tr(PG)/tr(P), which is estimated
/// from `samples` phenotypes simulated under the current h2 (g = Zb with
/// b ~ N(0, I/d), e ~ N(0, δI); the same draws at every h2). With α = V⁻¹(y −
/// 1μ̂) from PCG, y′PGPy ∝ ‖Z′α‖²/d and y′PPy ∝ ‖α‖². The log ratio of the
/// two sides is driven to zero by the secant method on log δ, starting from
/// `start` (the Haseman–Elston estimate, say).
pub fn mc_reml(z: &Genotypes, y: &[f64], start: f64, samples: usize, seed: u64) -> Result<McReml> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    if z.denom <= 0.0 {
        return Err(GblupError::NoVariation {
            n_markers: z.freqs.len(),
        });
    }
    let n = y.len();
    let m = z.freqs.len();
    let (train, mask) = training(y)?;
    let samples = samples.max(2);
    let k = samples + 2;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let sd_b = (1.0 / z.denom).sqrt();
    let mut b = vec![0f64; m * samples];
    for v in b.iter_mut() {
        let x: f64 = StandardNormal.sample(&mut rng);
        *v = x * sd_b;
    }
    let gsim = z.z_mul(&b, samples, false);
    let mut esim = vec![0f64; n * samples];
    for &i in &train {
        for c in 0..samples {
            esim[i * samples + c] = StandardNormal.sample(&mut rng);
        }
    }
    let diag = z.g_diagonal();
    let opts = PcgOptions {
        tolerance: 1e-5,
        max_iterations: 1000,
    };
    let mut warm: Option<Vec<f64>> = None;
    let mut pcg_iterations = 0;
    let mut history = Vec::new();
    let mut eval = |log_delta: f64, warm: &mut Option<Vec<f64>>| -> f64 {
        let delta = log_delta.exp();
        let mut rhs = vec![0f64; n * k];
        for &i in &train {
            rhs[i * k] = y[i];
            rhs[i * k + 1] = 1.0;
            for c in 0..samples {
                rhs[i * k + 2 + c] = gsim[i * samples + c] + delta.sqrt() * esim[i * samples + c];
            }
        }
        let (x, its, _) = solve(z, &rhs, k, &mask, diag, delta, opts, warm.take());
        pcg_iterations += its;
        // α for y and each sample: x_c − μ_c x_1, μ_c = 1′x_c / 1′x_1.
        let ones: f64 = train.iter().map(|&i| x[i * k + 1]).sum();
        let cols = samples + 1;
        let mut alpha = vec![0f64; n * cols];
        for c in 0..cols {
            let src = if c == 0 { 0 } else { c + 1 };
            let mu = train.iter().map(|&i| x[i * k + src]).sum::<f64>() / ones;
            for &i in &train {
                alpha[i * cols + c] = x[i * k + src] - mu * x[i * k + 1];
            }
        }
        *warm = Some(x);
        let zt = z.zt_mul(&alpha, cols);
        let (mut num, mut den) = (vec![0f64; cols], vec![0f64; cols]);
        for j in 0..m {
            for c in 0..cols {
                num[c] += zt[j * cols + c] * zt[j * cols + c];
            }
        }
        for &i in &train {
            for c in 0..cols {
                den[c] += alpha[i * cols + c] * alpha[i * cols + c];
            }
        }
        let data = num[0] / den[0];
        let sim = num[1..].iter().sum::<f64>() / den[1..].iter().sum::<f64>();
        (data / sim).ln()
    };
    let to_log_delta = |h2: f64| ((1.0 - h2) / h2).ln();
    let lo = to_log_delta(0.999);
    let hi = to_log_delta(0.001);
    let h0 = start.clamp(0.05, 0.95);
    let mut x0 = to_log_delta(h0);
    let mut x1 = to_log_delta(if h0 > 0.5 { h0 - 0.1 } else { h0 + 0.1 });
    let mut f0 = eval(x0, &mut warm);
    history.push((1.0 / (1.0 + x0.exp()), f0));
    let mut f1 = eval(x1, &mut warm);
    history.push((1.0 / (1.0 + x1.exp()), f1));
    for _ in 0..12 {
        if f1 == f0 {
            break;
        }
        let x2 = (x1 - f1 * (x1 - x0) / (f1 - f0)).clamp(lo, hi);
        if (x2 - x1).abs() < 1e-3 {
            x1 = x2;
            break;
        }
        x0 = x1;
        f0 = f1;
        x1 = x2;
        f1 = eval(x1, &mut warm);
        history.push((1.0 / (1.0 + x1.exp()), f1));
    }
    Ok(McReml {
        h2: 1.0 / (1.0 + x1.exp()),
        history,
        pcg_iterations,
    })
}
