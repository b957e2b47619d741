//! GBLUP and RKHS baselines for genocnn.
//!
//! [`grm::vanraden`] builds VanRaden's GRM from the packed store;
//! [`reml`] estimates variance components by the spectral method;
//! [`fit`] gives BLUPs for every genotyped individual (training ones and
//! those missing the trait) and SNP-BLUP marker effects, so that a GBLUP
//! fit predicts new genotype files. RKHS uses a Gaussian kernel on genotype
//! distance with its bandwidth chosen by REML likelihood.

pub mod error;
pub mod grm;
pub mod mvreml;
pub mod pcg;
pub mod reml;
pub mod tridiag;

use std::borrow::Cow;

use faer::Mat;
use geno::PackedGenotypes;

pub use error::{GblupError, Result};
pub use grm::{vanraden, Grm, Kinship};
pub use mvreml::{MvFit, MvProblem};
pub use reml::{RemlFit, Spectral};

/// The kernel of the mixed model.
#[derive(Clone, Debug, PartialEq)]
pub enum KernelChoice {
    /// VanRaden's GRM (GBLUP).
    VanRaden,
    /// Gaussian kernel exp(−d²/(θ·median d²)); θ chosen by REML likelihood from the grid.
    Rkhs { thetas: Vec<f64> },
}

impl KernelChoice {
    /// The default RKHS grid.
    pub fn rkhs() -> Self {
        KernelChoice::Rkhs {
            thetas: vec![0.25, 0.5, 1.0, 2.0, 4.0],
        }
    }
}

/// A fitted GBLUP/RKHS model.
#[derive(Clone, Debug)]
pub struct Fit {
    pub reml: RemlFit,
    /// The kernel's bandwidth (RKHS only).
    pub theta: Option<f64>,
    /// The training individuals.
    pub train: Vec<usize>,
    /// û for every individual of the store.
    pub gebv: Vec<f64>,
    /// SNP-BLUP marker effects on centred dosages (VanRaden only).
    pub snp_effects: Option<Vec<f64>>,
    /// Centre of each marker (2p) used by the GRM.
    pub centers: Vec<f64>,
}

/// Fits the model on individuals `train` (those with a phenotype and all
/// covariates); `covariates` are extra fixed-effect columns, one value per
/// individual of the store. `grm` is VanRaden's GRM of the store.
pub fn fit(
    g: &PackedGenotypes,
    grm: &Grm,
    y: &[f64],
    covariates: &[Vec<f64>],
    train: &[usize],
    kernel: &KernelChoice,
) -> Result<Fit> {
    let train: Vec<usize> = train
        .iter()
        .copied()
        .filter(|&i| !y[i].is_nan() && covariates.iter().all(|c| !c[i].is_nan()))
        .collect();
    if grm.n_polymorphic == 0 || grm.kinship.mean_diagonal().abs() < 1e-12 {
        return Err(GblupError::NoVariation {
            n_markers: grm.freqs.len(),
        });
    }
    let nt = train.len();
    if nt < 3 {
        return Err(GblupError::Data(format!(
            "only {nt} individuals have the trait (and every covariate); at least 3 are needed"
        )));
    }
    let n = grm.kinship.n;
    let yt: Vec<f64> = train.iter().map(|&i| y[i]).collect();
    if let Some(value) = error::constant(&yt) {
        return Err(GblupError::ConstantTrait { value, n: nt });
    }
    let mut xcols = vec![vec![1.0; nt]];
    for (index, c) in covariates.iter().enumerate() {
        let col: Vec<f64> = train.iter().map(|&i| c[i]).collect();
        if let Some(value) = error::constant(&col) {
            return Err(GblupError::ConstantCovariate {
                index: index + 1,
                value,
                n: nt,
            });
        }
        xcols.push(col);
    }
    // Candidate kernels: the GRM, or the Gaussian kernel at each θ.
    let kernels: Vec<(Option<f64>, Cow<Kinship>)> = match kernel {
        KernelChoice::VanRaden => vec![(None, Cow::Borrowed(&grm.kinship))],
        KernelChoice::Rkhs { thetas } => {
            let d2 = grm::squared_distances(grm);
            let med = grm::median_offdiagonal(&d2);
            thetas
                .iter()
                .map(|&t| (Some(t), Cow::Owned(grm::gaussian_kernel(&d2, med, t))))
                .collect()
        }
    };
    // For each kernel, REML from the tridiagonal T = QᵀKQ and Qᵀy, QᵀX,
    // which a two-stage reduction gives without forming Q (module `tridiag`).
    // One n × n buffer for every step on the training kernel: each
    // kernel's REML, then the BLUP (an n × n buffer freed and allocated
    // again need not reuse its memory, and did not: 0.6 GB more at n = 9,000).
    let mut buffer = Some(Mat::<f64>::zeros(nt, nt));
    // The lower triangle of the training kernel (K is symmetric: read along
    // its rows), zeros above.
    let train_kernel = |kt: &mut Mat<f64>, k: &Kinship| {
        for j in 0..nt {
            let row = &k.data[train[j] * k.n..(train[j] + 1) * k.n];
            for i in 0..nt {
                kt[(i, j)] = if j <= i { row[train[i]] as f64 } else { 0.0 };
            }
        }
    };
    let mut vs: Vec<&[f64]> = vec![&yt];
    vs.extend(xcols.iter().map(Vec::as_slice));
    // The last kernel's reduction, kept for the BLUP when that kernel wins.
    let mut last: Option<(usize, tridiag::Reduction)> = None;
    let mut best: Option<(RemlFit, Option<f64>, Cow<Kinship>, usize)> = None;
    for (index, (theta, k)) in kernels.into_iter().enumerate() {
        let mut kt = match last.take() {
            Some((_, r)) => r.into_matrix(),
            None => buffer.take().expect("the buffer"),
        };
        train_kernel(&mut kt, &k);
        let reduction = tridiag::Reduction::new(kt, &vs, tridiag::BAND);
        // The likelihood straight from T = QᵀKQ: an O(n) factorization of
        // T + δI per δ instead of T's eigenvalues (the QL iteration took
        // 1.1 s at n = 9,000 on Zen 4).
        let (d, e) = reduction.tridiagonal();
        let rotated = reduction.rotated();
        let basis = reml::Basis::Tridiagonal(d, e);
        let fit =
            reml::Problem::in_basis(basis, rotated[0].clone(), rotated[1..].to_vec(), &xcols)?
                .fit()?;
        if best.as_ref().is_none_or(|b| fit.loglik > b.0.loglik) {
            best = Some((fit, theta, k, index));
        }
        last = Some((index, reduction));
    }
    let (reml, theta, k, best_index) = best.expect("at least one kernel");
    let (last_index, reduction) = last.expect("at least one kernel");

    // α = (K + δI)⁻¹ (y − Xβ): through the reduction of K when it is the
    // last one made (always so for the GRM), else by a Cholesky factorization.
    let alpha = if last_index == best_index {
        // Qᵀ(y − Xβ) from Qᵀy and QᵀX.
        let rotated = reduction.rotated();
        let qt_r = minus_fixed(&rotated[0], &rotated[1..], &reml.beta);
        let alpha = reduction.solve_shifted(reml.delta, &qt_r)?;
        drop(reduction);
        alpha
    } else {
        let resid = minus_fixed(&yt, &xcols, &reml.beta);
        let mut kt = reduction.into_matrix();
        train_kernel(&mut kt, &k);
        tridiag::solve_shifted_in(kt.as_mut(), reml.delta, &resid)?
    };
    // û_i = Σ_t K(i, t) α_t for every individual.
    let gebv: Vec<f64> = (0..n)
        .map(|i| {
            train
                .iter()
                .zip(&alpha)
                .map(|(&t, a)| k.get(i, t) * a)
                .sum()
        })
        .collect();

    let centers: Vec<f64> = grm.freqs.iter().map(|p| 2.0 * p).collect();
    let snp_effects = match kernel {
        KernelChoice::VanRaden => Some(snp_blup(g, grm, &train, &alpha)),
        KernelChoice::Rkhs { .. } => None,
    };
    Ok(Fit {
        reml,
        theta,
        train,
        gebv,
        snp_effects,
        centers,
    })
}

/// y − Σᵢ βᵢ xᵢ.
fn minus_fixed(y: &[f64], x: &[Vec<f64>], beta: &[f64]) -> Vec<f64> {
    (0..y.len())
        .map(|t| y[t] - x.iter().zip(beta).map(|(c, b)| c[t] * b).sum::<f64>())
        .collect()
}

/// Marker effects a = Zₜᵀ α / (2 Σ p(1 − p)), so that û = Z a for any
/// genotype vector centred by the same 2p.
fn snp_blup(g: &PackedGenotypes, grm: &Grm, train: &[usize], alpha: &[f64]) -> Vec<f64> {
    let luts = grm::centred_luts(&grm.freqs);
    let scale = if grm.denom > 0.0 {
        1.0 / grm.denom
    } else {
        0.0
    };
    (0..g.n_markers())
        .map(|j| {
            let t = &luts[j];
            let s: f64 = train
                .iter()
                .zip(alpha)
                .map(|(&i, &a)| t[g.code(i, j) as usize] as f64 * a)
                .sum();
            s * scale
        })
        .collect()
}

/// A fitted multi-trait GBLUP.
#[derive(Clone, Debug)]
pub struct MultiFit {
    pub mv: MvFit,
    /// The training individuals with a record of every trait.
    pub complete: Vec<usize>,
    /// The training individuals with a record of some trait.
    pub rows: Vec<usize>,
    /// Which records gave Vg and Ve: `all` (every observed record; the
    /// same as `complete` when no record is missing), or `complete` (the
    /// individuals with every trait, past [`mvreml::MAX_OBSERVED`] records).
    pub reml_records: &'static str,
    /// Each trait's univariate REML on its own records, for comparison.
    pub univariate: Vec<RemlFit>,
    /// Genetic values, traits × every individual of the store, from all the
    /// records given (conditional expectation).
    pub gebv: Vec<Vec<f64>>,
    /// Residuals' conditional expectations, traits × individuals: non-zero
    /// for a missing record of an individual with records of correlated traits.
    pub residual: Vec<Vec<f64>>,
    /// Conjugate-gradient iterations of the BLUP.
    pub cg_iterations: usize,
}

impl MultiFit {
    /// Genetic values in each trait's units (intercept + GEBV), traits ×
    /// individuals.
    pub fn predictions(&self) -> Vec<Vec<f64>> {
        self.gebv
            .iter()
            .enumerate()
            .map(|(t, g)| g.iter().map(|v| v + self.mv.beta[t]).collect())
            .collect()
    }

    /// The records' conditional expectations E[y | observed records]
    /// (intercept + GEBV + expected residual), traits × individuals: what
    /// predicts a missing record of an individual with records of
    /// correlated traits (CV2). Without such records it is the GEBV.
    pub fn record_predictions(&self) -> Vec<Vec<f64>> {
        self.predictions()
            .iter()
            .zip(&self.residual)
            .map(|(p, e)| p.iter().zip(e).map(|(a, b)| a + b).collect())
            .collect()
    }
}

/// The kernel's rows and columns `rows`, row-major.
fn sub_kernel(k: &Kinship, rows: &[usize]) -> Vec<f64> {
    rows.iter()
        .flat_map(|&i| rows.iter().map(move |&j| k.get(i, j)))
        .collect()
}

/// Multi-trait GBLUP ([`mvreml`]): Vg and Ve by REML on the records of the
/// training individuals `train`, then the genetic values of every
/// individual of the store from every record of `y` (traits × individuals,
/// NaN where missing: hide the test records before calling; in CV2 a test
/// individual's other traits stay). Intercepts only.
///
/// When every training individual has every trait, REML runs in the
/// eigenbasis of the kernel (d × d work per individual). With records
/// missing, it runs on the dense covariance of the observed records (up to
/// [`mvreml::MAX_OBSERVED`] of them), starting from the univariate fits'
/// variances and the complete individuals' correlations; beyond that, on
/// the complete individuals only.
pub fn fit_multi(grm: &Grm, y: &[Vec<f64>], train: &[usize]) -> Result<MultiFit> {
    let d = y.len();
    if d < 2 {
        return Err(GblupError::Data(
            "multi-trait GBLUP needs at least 2 traits".into(),
        ));
    }
    if grm.n_polymorphic == 0 || grm.kinship.mean_diagonal().abs() < 1e-12 {
        return Err(GblupError::NoVariation {
            n_markers: grm.freqs.len(),
        });
    }
    let k = &grm.kinship;
    let rows: Vec<usize> = train
        .iter()
        .copied()
        .filter(|&i| y.iter().any(|t| !t[i].is_nan()))
        .collect();
    let complete: Vec<usize> = rows
        .iter()
        .copied()
        .filter(|&i| y.iter().all(|t| !t[i].is_nan()))
        .collect();
    let univariate = y
        .iter()
        .map(|t| {
            let r: Vec<usize> = train.iter().copied().filter(|&i| !t[i].is_nan()).collect();
            if r.len() < 3 {
                return Err(GblupError::Data(format!(
                    "a trait has {} training records; multi-trait GBLUP needs at least 3 of each",
                    r.len()
                )));
            }
            let yt: Vec<f64> = r.iter().map(|&i| t[i]).collect();
            if let Some(value) = error::constant(&yt) {
                return Err(GblupError::ConstantTrait { value, n: r.len() });
            }
            let e = Spectral::new(&sub_kernel(k, &r), r.len())?;
            reml::Problem::new(&e, &yt, &[vec![1.0; r.len()]])?.fit()
        })
        .collect::<Result<Vec<_>>>()?;
    let nc = complete.len();
    // The complete individuals' fit: the answer when none is missing, and
    // the correlations to start from otherwise.
    let complete_fit = if nc >= 3 * d {
        let eig = Spectral::new(&sub_kernel(k, &complete), nc)?;
        let traits: Vec<Vec<f64>> = y
            .iter()
            .map(|t| complete.iter().map(|&i| t[i]).collect())
            .collect();
        Some(MvProblem::new(&eig, &traits, &[vec![1.0; nc]])?.fit()?)
    } else {
        None
    };
    let n_records: usize = rows
        .iter()
        .map(|&i| y.iter().filter(|t| !t[i].is_nan()).count())
        .sum();
    let (mv, reml_records) = match complete_fit {
        Some(f) if nc == rows.len() => (f, "all"),
        Some(f) if n_records > mvreml::MAX_OBSERVED => (f, "complete"),
        None if n_records > mvreml::MAX_OBSERVED => {
            return Err(GblupError::Data(format!(
                "only {nc} training individuals have a record of all {d} traits, and the {n_records} records are more than the {} that REML over the observed records handles",
                mvreml::MAX_OBSERVED
            )))
        }
        start => {
            // Start: the univariate variances, the complete individuals'
            // correlations (shrunk a little to stay positive definite).
            let mut vg0 = vec![0f64; d * d];
            let mut ve0 = vec![0f64; d * d];
            for (t, u) in univariate.iter().enumerate() {
                let floor = 1e-3 * (u.var_g + u.var_e);
                vg0[t * d + t] = u.var_g.max(floor);
                ve0[t * d + t] = u.var_e.max(floor);
            }
            if let Some(f) = &start {
                let (rg, re) = (f.rg(), f.re());
                for a in 0..d {
                    for b in 0..d {
                        if a != b {
                            let sg = (vg0[a * d + a] * vg0[b * d + b]).sqrt();
                            let se = (ve0[a * d + a] * ve0[b * d + b]).sqrt();
                            vg0[a * d + b] = 0.9 * rg[a * d + b].clamp(-1.0, 1.0) * sg;
                            ve0[a * d + b] = 0.9 * re[a * d + b].clamp(-1.0, 1.0) * se;
                        }
                    }
                }
            }
            let traits: Vec<Vec<f64>> = y
                .iter()
                .map(|t| rows.iter().map(|&i| t[i]).collect())
                .collect();
            let prob = mvreml::ObservedProblem::new(
                sub_kernel(k, &rows),
                rows.len(),
                &traits,
                &[vec![1.0; rows.len()]],
            )?;
            (prob.fit_from(&vg0, &ve0)?, "all")
        }
    };
    let mean: Vec<Vec<f64>> = (0..d).map(|t| vec![mv.beta[t]; k.n]).collect();
    let b = mvreml::blup(k, y, &mean, &mv.vg, &mv.ve)?;
    Ok(MultiFit {
        mv,
        complete,
        rows,
        reml_records,
        univariate,
        gebv: b.genetic,
        residual: b.residual,
        cg_iterations: b.cg_iterations,
    })
}
