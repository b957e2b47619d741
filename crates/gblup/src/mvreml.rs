//! Multi-trait GBLUP (GEMMA's mvLMM, MTG2): Y = XB + G + E with
//! vec(G) ~ N(0, Vg ⊗ K) and vec(E) ~ N(0, Ve ⊗ I), Vg and Ve unstructured
//! d × d covariance matrices over the traits.
//!
//! **REML.** The eigendecomposition K = UΛUᵀ of the training kernel
//! decouples the individuals: the rows of UᵀY are independent, row i with
//! covariance λᵢVg + Ve. The restricted likelihood (B profiled out by GLS)
//! then costs d × d work per individual, and is maximized over the Cholesky
//! factors of Vg and Ve by BFGS, from the univariate REML estimates.
//! The decoupling needs every trait on every individual of the fit, so the
//! variance components are estimated from the training individuals with a
//! record of every trait (under records missing at random this loses
//! information but adds no bias).
//!
//! **BLUP.** Given Vg, Ve and B, the genetic values of every individual,
//! those with some traits or none recorded included, are the conditional
//! expectation E[G | observed records] = (Vg ⊗ K)[·, o] Σ_oo⁻¹ (y_o − μ_o),
//! with Σ = Vg ⊗ K + Ve ⊗ I over the observed records o. Σ_oo⁻¹ is applied
//! by conjugate gradients (one product with K per iteration), so an
//! individual missing one trait still informs the others through both the
//! genetic and the residual covariance (the CV2 scheme).

use crate::error::{GblupError, Result};
use crate::grm::Kinship;
use crate::reml::{Problem, Spectral};

/// A small symmetric positive-definite matrix's Cholesky factor (row-major
/// lower triangle), or None.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// Solves L Lᵀ x = b in place.
fn chol_solve(l: &[f64], d: usize, b: &mut [f64]) {
    for i in 0..d {
        for k in 0..i {
            b[i] -= l[i * d + k] * b[k];
        }
        b[i] /= l[i * d + i];
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            b[i] -= l[k * d + i] * b[k];
        }
        b[i] /= l[i * d + i];
    }
}

fn logdet(l: &[f64], d: usize) -> f64 {
    2.0 * (0..d).map(|i| l[i * d + i].ln()).sum::<f64>()
}

/// The inverse of a symmetric positive-definite matrix from its factor.
fn chol_inverse(l: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0f64; d * d];
    for c in 0..d {
        let mut e = vec![0f64; d];
        e[c] = 1.0;
        chol_solve(l, d, &mut e);
        for r in 0..d {
            inv[r * d + c] = e[r];
        }
    }
    inv
}

/// A multi-trait REML problem in the rotated basis.
pub struct MvProblem<'a> {
    eig: &'a Spectral,
    /// Individuals, traits, fixed effects.
    n: usize,
    d: usize,
    p: usize,
    /// UᵀY, n × d.
    y: Vec<f64>,
    /// UᵀX, n × p.
    x: Vec<f64>,
    logdet_xtx: f64,
    /// The traits one by one, for the starting values.
    traits: Vec<Vec<f64>>,
    xcols: Vec<Vec<f64>>,
}

/// The multi-trait REML solution.
#[derive(Clone, Debug, PartialEq)]
pub struct MvFit {
    pub d: usize,
    /// d × d, row-major.
    pub vg: Vec<f64>,
    pub ve: Vec<f64>,
    /// Fixed effects, p × d (intercepts first).
    pub beta: Vec<f64>,
    pub loglik: f64,
    /// Individuals in the fit.
    pub n: usize,
    pub iterations: usize,
}

impl MvFit {
    /// The genetic correlations Vg[s,t] / √(Vg[s,s] Vg[t,t]), d × d.
    pub fn rg(&self) -> Vec<f64> {
        corr(&self.vg, self.d)
    }

    /// The residual correlations.
    pub fn re(&self) -> Vec<f64> {
        corr(&self.ve, self.d)
    }

    /// Each trait's h2 = Vg[t,t] / (Vg[t,t] + Ve[t,t]).
    pub fn h2(&self) -> Vec<f64> {
        (0..self.d)
            .map(|t| {
                let g = self.vg[t * self.d + t];
                g / (g + self.ve[t * self.d + t])
            })
            .collect()
    }
}

fn corr(v: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0f64; d * d];
    for s in 0..d {
        for t in 0..d {
            out[s * d + t] = v[s * d + t] / (v[s * d + s] * v[t * d + t]).sqrt();
        }
    }
    out
}

impl<'a> MvProblem<'a> {
    /// The rotated problem for `traits` (d vectors over the n individuals
    /// of `eig`, no value missing) and fixed-effect columns `x`.
    pub fn new(eig: &'a Spectral, traits: &[Vec<f64>], x: &[Vec<f64>]) -> Result<Self> {
        let n = eig.values.len();
        let (d, p) = (traits.len(), x.len());
        if d == 0
            || traits
                .iter()
                .any(|t| t.len() != n || t.iter().any(|v| !v.is_finite()))
        {
            return Err(GblupError::Data(format!(
                "multi-trait REML needs every one of the {d} traits on each of the {n} individuals"
            )));
        }
        if n <= p + 1 {
            return Err(GblupError::Data(format!(
                "{n} individuals with every trait are too few for {p} fixed effects"
            )));
        }
        let logdet_xtx = Problem::new(eig, &traits[0], x)?.logdet_xtx;
        let ry: Vec<Vec<f64>> = traits.iter().map(|t| eig.rotate(t)).collect();
        let rx: Vec<Vec<f64>> = x.iter().map(|c| eig.rotate(c)).collect();
        let mut y = vec![0f64; n * d];
        let mut xm = vec![0f64; n * p];
        for i in 0..n {
            for t in 0..d {
                y[i * d + t] = ry[t][i];
            }
            for a in 0..p {
                xm[i * p + a] = rx[a][i];
            }
        }
        Ok(MvProblem {
            eig,
            n,
            d,
            p,
            y,
            x: xm,
            logdet_xtx,
            traits: traits.to_vec(),
            xcols: x.to_vec(),
        })
    }

    /// The restricted log-likelihood at (Vg, Ve) (d × d, row-major), with B
    /// at its GLS estimate (p × d); None where a covariance is not positive
    /// definite.
    pub fn eval(&self, vg: &[f64], ve: &[f64]) -> Option<(f64, Vec<f64>)> {
        let (n, d, p) = (self.n, self.d, self.p);
        let pd = p * d;
        let mut a = vec![0f64; pd * pd];
        let mut c = vec![0f64; pd];
        let mut yvy = 0.0;
        let mut ld = 0.0;
        let mut v = vec![0f64; d * d];
        for i in 0..n {
            let lam = self.eig.values[i];
            for k in 0..d * d {
                v[k] = lam * vg[k] + ve[k];
            }
            let l = cholesky(&v, d)?;
            ld += logdet(&l, d);
            let vinv = chol_inverse(&l, d);
            let yi = &self.y[i * d..(i + 1) * d];
            let xi = &self.x[i * p..(i + 1) * p];
            let mut vy = yi.to_vec();
            chol_solve(&l, d, &mut vy);
            yvy += yi.iter().zip(&vy).map(|(a, b)| a * b).sum::<f64>();
            for ai in 0..p {
                for t in 0..d {
                    c[ai * d + t] += xi[ai] * vy[t];
                    for bi in 0..p {
                        let xab = xi[ai] * xi[bi];
                        for s in 0..d {
                            a[(ai * d + t) * pd + bi * d + s] += xab * vinv[t * d + s];
                        }
                    }
                }
            }
        }
        let la = cholesky(&a, pd)?;
        let mut beta = c.clone();
        chol_solve(&la, pd, &mut beta);
        let q = yvy - c.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>();
        let dof = ((n - p) * d) as f64;
        let ll = -0.5
            * (dof * (2.0 * std::f64::consts::PI).ln() + ld + logdet(&la, pd)
                - d as f64 * self.logdet_xtx
                + q);
        Some((ll, beta))
    }

    /// Maximizes the restricted likelihood from the univariate estimates.
    pub fn fit(&self) -> Result<MvFit> {
        let d = self.d;
        // Start: each trait's own REML, no correlation.
        let mut vg0 = vec![0f64; d * d];
        let mut ve0 = vec![0f64; d * d];
        for t in 0..d {
            let f = Problem::new(self.eig, &self.traits[t], &self.xcols)?.fit()?;
            let floor = 1e-4 * (f.var_g + f.var_e);
            vg0[t * d + t] = f.var_g.max(floor);
            ve0[t * d + t] = f.var_e.max(floor);
        }
        fit_with(d, self.n, &vg0, &ve0, &|vg, ve| self.eval(vg, ve), None)
    }
}

/// The most observed records for which REML runs on the dense covariance of
/// the observed records (beyond it, only the complete records are used).
pub const MAX_OBSERVED: usize = 8000;

/// A multi-trait REML problem with records missing: the restricted
/// likelihood of the observed records alone, through the dense covariance
/// Σ_oo = (Vg ⊗ K + Ve ⊗ I)_oo (a Cholesky factorization per evaluation, so
/// for up to [`MAX_OBSERVED`] records). Every record counts: an individual
/// with one trait informs Vg through its relatives' records of the others.
pub struct ObservedProblem {
    d: usize,
    p: usize,
    /// The kernel over the individuals of the fit, n × n row-major.
    k: Vec<f64>,
    n: usize,
    /// The observed records: (individual, trait), and their values.
    records: Vec<(usize, usize)>,
    y: Vec<f64>,
    /// The fixed-effect design of the records, records × (p·d): column
    /// a·d + t is covariate a on trait t's records.
    x: faer::Mat<f64>,
    logdet_xtx: f64,
}

impl ObservedProblem {
    /// `k` over the n individuals of the fit, `traits` (d vectors over them,
    /// NaN where missing), `x` the fixed-effect columns over them.
    pub fn new(k: Vec<f64>, n: usize, traits: &[Vec<f64>], x: &[Vec<f64>]) -> Result<Self> {
        let (d, p) = (traits.len(), x.len());
        let records: Vec<(usize, usize)> = (0..n)
            .flat_map(|i| (0..d).map(move |t| (i, t)))
            .filter(|&(i, t)| !traits[t][i].is_nan())
            .collect();
        let no = records.len();
        if no <= p * d + 1 {
            return Err(GblupError::Data(format!(
                "{no} records are too few for {} fixed effects",
                p * d
            )));
        }
        let y = records.iter().map(|&(i, t)| traits[t][i]).collect();
        let xm = faer::Mat::from_fn(no, p * d, |r, c| {
            let (i, t) = records[r];
            if c % d == t {
                x[c / d][i]
            } else {
                0.0
            }
        });
        let xtx = xm.transpose() * &xm;
        let lx = xtx.llt(faer::Side::Lower).map_err(|_| {
            GblupError::Data(
                "the fixed effects are collinear on some trait's records (a trait with too few records?)"
                    .into(),
            )
        })?;
        let logdet_xtx = 2.0 * (0..p * d).map(|i| lx.L()[(i, i)].ln()).sum::<f64>();
        Ok(ObservedProblem {
            d,
            p,
            k,
            n,
            records,
            y,
            x: xm,
            logdet_xtx,
        })
    }

    /// Σ_oo = (Vg ⊗ K + Ve ⊗ I) over the observed records.
    fn sigma(&self, vg: &[f64], ve: &[f64]) -> faer::Mat<f64> {
        let (d, n) = (self.d, self.n);
        let no = self.records.len();
        faer::Mat::from_fn(no, no, |a, b| {
            let (i, t) = self.records[a];
            let (j, s) = self.records[b];
            vg[t * d + s] * self.k[i * n + j] + if i == j { ve[t * d + s] } else { 0.0 }
        })
    }

    /// The observed records.
    pub fn n_records(&self) -> usize {
        self.records.len()
    }

    /// The restricted log-likelihood at (Vg, Ve), with B at its GLS
    /// estimate (p × d); None where Σ_oo is not positive definite.
    pub fn eval(&self, vg: &[f64], ve: &[f64]) -> Option<(f64, Vec<f64>)> {
        use faer::linalg::solvers::Solve;
        let d = self.d;
        let no = self.records.len();
        let pd = self.p * d;
        let llt = self.sigma(vg, ve).llt(faer::Side::Lower).ok()?;
        let ld: f64 = 2.0 * (0..no).map(|i| llt.L()[(i, i)].ln()).sum::<f64>();
        let yv = faer::Mat::from_fn(no, 1, |a, _| self.y[a]);
        let vy = llt.solve(&yv);
        let vx = llt.solve(&self.x);
        let a = self.x.transpose() * &vx;
        let c = self.x.transpose() * &vy;
        let la = a.llt(faer::Side::Lower).ok()?;
        let lda: f64 = 2.0 * (0..pd).map(|i| la.L()[(i, i)].ln()).sum::<f64>();
        let beta = la.solve(&c);
        let yvy = (yv.transpose() * &vy)[(0, 0)];
        let cb: f64 = (0..pd).map(|k| c[(k, 0)] * beta[(k, 0)]).sum();
        let q = yvy - cb;
        let dof = (no - pd) as f64;
        let ll = -0.5 * (dof * (2.0 * std::f64::consts::PI).ln() + ld + lda - self.logdet_xtx + q);
        if !ll.is_finite() {
            return None;
        }
        Some((ll, (0..pd).map(|k| beta[(k, 0)]).collect()))
    }

    /// The gradient of the restricted log-likelihood in the entries of Vg
    /// and Ve (each d × d entry on its own): ∂ℓ/∂V[s,t] = −½ Σ over records
    /// a of trait s and b of trait t of (P − uuᵀ)_ab · ∂Σ_ab/∂V[s,t], with
    /// P = Σ⁻¹ − Σ⁻¹X(XᵀΣ⁻¹X)⁻¹XᵀΣ⁻¹ and u = Py; ∂Σ_ab/∂Vg[s,t] = K_ab and
    /// ∂Σ_ab/∂Ve[s,t] = 1 on the same individual. One inverse instead of a
    /// likelihood per parameter.
    pub fn gradient(&self, vg: &[f64], ve: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
        use faer::linalg::solvers::{DenseSolveCore, Solve};
        let (d, n) = (self.d, self.n);
        let no = self.records.len();
        let llt = self.sigma(vg, ve).llt(faer::Side::Lower).ok()?;
        let si = llt.inverse();
        let w = &si * &self.x;
        let a = self.x.transpose() * &w;
        let la = a.llt(faer::Side::Lower).ok()?;
        // P = Σ⁻¹ − W A⁻¹ Wᵀ, u = P y.
        let ainv_wt = la.solve(w.transpose());
        let p = &si - &w * &ainv_wt;
        let yv = faer::Mat::from_fn(no, 1, |r, _| self.y[r]);
        let u = &p * &yv;
        let mut dg = vec![0f64; d * d];
        let mut de = vec![0f64; d * d];
        for b in 0..no {
            let (j, s) = self.records[b];
            let ub = u[(b, 0)];
            let col = p.col(b);
            for a in 0..no {
                let (i, t) = self.records[a];
                let m = col[a] - u[(a, 0)] * ub;
                dg[t * d + s] += m * self.k[i * n + j];
                if i == j {
                    de[t * d + s] += m;
                }
            }
        }
        for v in dg.iter_mut().chain(de.iter_mut()) {
            *v *= -0.5;
        }
        Some((dg, de))
    }

    /// Maximizes the restricted likelihood from (vg0, ve0).
    pub fn fit_from(&self, vg0: &[f64], ve0: &[f64]) -> Result<MvFit> {
        fit_with(
            self.d,
            self.n,
            vg0,
            ve0,
            &|vg, ve| self.eval(vg, ve),
            Some(&|vg, ve| self.gradient(vg, ve)),
        )
    }
}

/// A restricted likelihood at (Vg, Ve), with B at its GLS estimate; None
/// where a covariance is not positive definite.
type Likelihood<'a> = dyn Fn(&[f64], &[f64]) -> Option<(f64, Vec<f64>)> + 'a;

/// The gradient of a restricted likelihood in the entries of Vg and Ve
/// (each d × d entry taken on its own), or None.
type LikelihoodGradient<'a> = dyn Fn(&[f64], &[f64]) -> Option<(Vec<f64>, Vec<f64>)> + 'a;

/// ∂ℓ/∂θ of a covariance V = LLᵀ parametrized as in [`to_theta`], from
/// ∂ℓ/∂V (d × d, symmetric): ∂ℓ/∂L = 2·(∂ℓ/∂V)·L, and the diagonal's log scale.
fn chain_to_theta(dv: &[f64], th: &[f64], d: usize) -> Vec<f64> {
    let mut l = vec![0f64; d * d];
    let mut k = 0;
    for i in 0..d {
        for j in 0..=i {
            l[i * d + j] = if i == j { th[k].exp() } else { th[k] };
            k += 1;
        }
    }
    let mut out = Vec::with_capacity(th.len());
    for i in 0..d {
        for j in 0..=i {
            let dl: f64 = 2.0 * (0..d).map(|c| dv[i * d + c] * l[c * d + j]).sum::<f64>();
            out.push(if i == j { dl * l[i * d + i] } else { dl });
        }
    }
    out
}

/// Maximizes a restricted likelihood over the Cholesky factors of Vg and Ve
/// by BFGS from (vg0, ve0), for `n` individuals; with `grad`, by its
/// analytic gradient, else by central differences.
fn fit_with(
    d: usize,
    n: usize,
    vg0: &[f64],
    ve0: &[f64],
    eval: &Likelihood,
    grad: Option<&LikelihoodGradient>,
) -> Result<MvFit> {
    let theta0 = [to_theta(vg0, d), to_theta(ve0, d)].concat();
    let m = theta0.len() / 2;
    let f = |th: &[f64]| -> f64 {
        let vg = from_theta(&th[..m], d);
        let ve = from_theta(&th[m..], d);
        match eval(&vg, &ve) {
            Some((ll, _)) => -ll,
            None => f64::INFINITY,
        }
    };
    let analytic = |th: &[f64]| -> Vec<f64> {
        let vg = from_theta(&th[..m], d);
        let ve = from_theta(&th[m..], d);
        match grad.and_then(|g| g(&vg, &ve)) {
            Some((dg, de)) => chain_to_theta(&dg, &th[..m], d)
                .into_iter()
                .chain(chain_to_theta(&de, &th[m..], d))
                .map(|v| -v)
                .collect(),
            None => gradient(&f, th),
        }
    };
    let numeric = |th: &[f64]| gradient(&f, th);
    let g: &dyn Fn(&[f64]) -> Vec<f64> = if grad.is_some() { &analytic } else { &numeric };
    let (theta, fx, iterations) = bfgs(&f, g, theta0, 1000);
    if !fx.is_finite() {
        return Err(GblupError::Numeric(
            "multi-trait REML failed: no positive-definite covariances found".into(),
        ));
    }
    let vg = from_theta(&theta[..m], d);
    let ve = from_theta(&theta[m..], d);
    let (loglik, beta) = eval(&vg, &ve).expect("evaluated at the optimum");
    Ok(MvFit {
        d,
        vg,
        ve,
        beta,
        loglik,
        n,
        iterations,
    })
}

/// A covariance's Cholesky factor as free parameters: the lower triangle,
/// its diagonal on the log scale.
fn to_theta(v: &[f64], d: usize) -> Vec<f64> {
    let l = cholesky(v, d).expect("a positive-definite start");
    let mut th = Vec::with_capacity(d * (d + 1) / 2);
    for i in 0..d {
        for j in 0..=i {
            th.push(if i == j {
                l[i * d + i].ln()
            } else {
                l[i * d + j]
            });
        }
    }
    th
}

fn from_theta(th: &[f64], d: usize) -> Vec<f64> {
    let mut l = vec![0f64; d * d];
    let mut k = 0;
    for i in 0..d {
        for j in 0..=i {
            l[i * d + j] = if i == j { th[k].exp() } else { th[k] };
            k += 1;
        }
    }
    let mut v = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            v[i * d + j] = (0..d).map(|k| l[i * d + k] * l[j * d + k]).sum();
        }
    }
    v
}

/// Central-difference gradient.
fn gradient(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let mut g = vec![0f64; x.len()];
    let mut xp = x.to_vec();
    for k in 0..x.len() {
        let h = 1e-5 * x[k].abs().max(1.0);
        xp[k] = x[k] + h;
        let fp = f(&xp);
        xp[k] = x[k] - h;
        let fm = f(&xp);
        xp[k] = x[k];
        g[k] = (fp - fm) / (2.0 * h);
    }
    g
}

/// Minimizes `f` by BFGS with a backtracking line search; returns (x,
/// f(x), iterations).
fn bfgs(
    f: &dyn Fn(&[f64]) -> f64,
    grad: &dyn Fn(&[f64]) -> Vec<f64>,
    mut x: Vec<f64>,
    max_iter: usize,
) -> (Vec<f64>, f64, usize) {
    let m = x.len();
    let mut h = vec![0f64; m * m];
    for i in 0..m {
        h[i * m + i] = 1.0;
    }
    let mut fx = f(&x);
    let mut g = grad(&x);
    for it in 0..max_iter {
        let gnorm = g.iter().fold(0f64, |a, v| a.max(v.abs()));
        if gnorm < 1e-6 {
            return (x, fx, it);
        }
        let dir: Vec<f64> = (0..m)
            .map(|i| -(0..m).map(|j| h[i * m + j] * g[j]).sum::<f64>())
            .collect();
        let slope: f64 = dir.iter().zip(&g).map(|(a, b)| a * b).sum();
        let (dir, slope) = if slope < 0.0 {
            (dir, slope)
        } else {
            // Not a descent direction: restart from steepest descent.
            for i in 0..m {
                for j in 0..m {
                    h[i * m + j] = if i == j { 1.0 } else { 0.0 };
                }
            }
            let d: Vec<f64> = g.iter().map(|v| -v).collect();
            let s = -g.iter().map(|v| v * v).sum::<f64>();
            (d, s)
        };
        let mut step = 1.0;
        let mut xn = x.clone();
        let mut fnew = f64::INFINITY;
        for _ in 0..60 {
            for i in 0..m {
                xn[i] = x[i] + step * dir[i];
            }
            fnew = f(&xn);
            if fnew <= fx + 1e-4 * step * slope {
                break;
            }
            step *= 0.5;
        }
        if fnew.is_nan() || fnew >= fx {
            return (x, fx, it);
        }
        let gn = grad(&xn);
        let s: Vec<f64> = (0..m).map(|i| xn[i] - x[i]).collect();
        let yv: Vec<f64> = (0..m).map(|i| gn[i] - g[i]).collect();
        let sy: f64 = s.iter().zip(&yv).map(|(a, b)| a * b).sum();
        if sy > 1e-12 {
            let hy: Vec<f64> = (0..m)
                .map(|i| (0..m).map(|j| h[i * m + j] * yv[j]).sum())
                .collect();
            let yhy: f64 = yv.iter().zip(&hy).map(|(a, b)| a * b).sum();
            for i in 0..m {
                for j in 0..m {
                    h[i * m + j] +=
                        (sy + yhy) * s[i] * s[j] / (sy * sy) - (hy[i] * s[j] + s[i] * hy[j]) / sy;
                }
            }
        }
        let done = (fx - fnew).abs() < 1e-12 * fx.abs().max(1.0);
        x = xn;
        fx = fnew;
        g = gn;
        if done {
            return (x, fx, it + 1);
        }
    }
    (x, fx, max_iter)
}

/// What [`blup`] gives: conditional expectations given the observed
/// records, traits × individuals.
pub struct Blup {
    /// E[G | records]: the genetic values (GEBV).
    pub genetic: Vec<Vec<f64>>,
    /// E[E | records]: the residuals. Where a record is missing but the
    /// individual has records of correlated traits, Ve makes this non-zero;
    /// E[y | records] = mean + genetic + residual predicts the record.
    pub residual: Vec<Vec<f64>>,
    pub cg_iterations: usize,
}

/// The conditional expectation of every individual's genetic values (and
/// residuals) given the observed records: `y[t][i]` (NaN where missing) for
/// the individuals of `k` (the kernel over all of them), `mean[t][i]` the
/// fixed part.
pub fn blup(
    k: &Kinship,
    y: &[Vec<f64>],
    mean: &[Vec<f64>],
    vg: &[f64],
    ve: &[f64],
) -> Result<Blup> {
    let (n, d) = (k.n, y.len());
    let obs: Vec<bool> = (0..n * d).map(|q| !y[q % d][q / d].is_nan()).collect();
    // Records as n × d matrices (row i, trait t at i*d + t).
    let mut r = vec![0f64; n * d];
    for i in 0..n {
        for t in 0..d {
            if obs[i * d + t] {
                r[i * d + t] = y[t][i] - mean[t][i];
            }
        }
    }
    // K·(M·V) for an n × d matrix M and a d × d matrix V.
    let kprod = |m: &[f64], v: &[f64]| -> Vec<f64> {
        let mut mv = vec![0f64; n * d];
        for i in 0..n {
            for t in 0..d {
                mv[i * d + t] = (0..d).map(|s| m[i * d + s] * v[s * d + t]).sum();
            }
        }
        let mut out = vec![0f64; n * d];
        for i in 0..n {
            let row = &k.data[i * n..(i + 1) * n];
            for j in 0..n {
                let kij = row[j] as f64;
                if kij != 0.0 {
                    for t in 0..d {
                        out[i * d + t] += kij * mv[j * d + t];
                    }
                }
            }
        }
        out
    };
    let sigma = |v: &[f64]| -> Vec<f64> {
        let mut out = kprod(v, vg);
        for i in 0..n {
            for t in 0..d {
                out[i * d + t] += (0..d).map(|s| v[i * d + s] * ve[s * d + t]).sum::<f64>();
            }
        }
        for (q, o) in out.iter_mut().enumerate() {
            if !obs[q] {
                *o = 0.0;
            }
        }
        out
    };
    // Jacobi-preconditioned conjugate gradients on Σ_oo α = r_o.
    let diag: Vec<f64> = (0..n * d)
        .map(|q| {
            let (i, t) = (q / d, q % d);
            if obs[q] {
                vg[t * d + t] * k.get(i, i) + ve[t * d + t]
            } else {
                1.0
            }
        })
        .collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut alpha = vec![0f64; n * d];
    let mut res = r.clone();
    let mut z: Vec<f64> = res.iter().zip(&diag).map(|(a, b)| a / b).collect();
    let mut p = z.clone();
    let mut rz = dot(&res, &z);
    let r0 = dot(&r, &r).sqrt().max(1e-300);
    let mut iters = 0;
    for it in 0..(4 * n * d).max(100) {
        iters = it + 1;
        let ap = sigma(&p);
        let pap = dot(&p, &ap);
        if pap <= 0.0 {
            break;
        }
        let a = rz / pap;
        for q in 0..n * d {
            alpha[q] += a * p[q];
            res[q] -= a * ap[q];
        }
        if dot(&res, &res).sqrt() < 1e-10 * r0 {
            break;
        }
        z = res.iter().zip(&diag).map(|(a, b)| a / b).collect();
        let rz_new = dot(&res, &z);
        let b = rz_new / rz;
        rz = rz_new;
        for q in 0..n * d {
            p[q] = z[q] + b * p[q];
        }
    }
    let g = kprod(&alpha, vg);
    let by_trait = |m: &[f64]| -> Vec<Vec<f64>> {
        (0..d)
            .map(|t| (0..n).map(|i| m[i * d + t]).collect())
            .collect()
    };
    // E[E | records] = (Ve ⊗ I)[·, o] α: each individual's own records only.
    let mut e = vec![0f64; n * d];
    for i in 0..n {
        for t in 0..d {
            e[i * d + t] = (0..d).map(|s| ve[t * d + s] * alpha[i * d + s]).sum();
        }
    }
    Ok(Blup {
        genetic: by_trait(&g),
        residual: by_trait(&e),
        cg_iterations: iters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small random positive-definite kernel.
    fn kernel(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let z: Vec<f64> = (0..n * 3 * n).map(|_| next()).collect();
        let m = 3 * n;
        (0..n * n)
            .map(|q| {
                let (i, j) = (q / n, q % n);
                (0..m).map(|k| z[i * m + k] * z[j * m + k]).sum::<f64>() / m as f64
                    + if i == j { 0.05 } else { 0.0 }
            })
            .collect()
    }

    fn data(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// The REML log-likelihood by dense algebra over the n·d records (NaN:
    /// missing, left out), with an explicit inverse: the reference the
    /// rotated and the observed-record computations are checked against.
    fn naive_reml(
        k: &[f64],
        n: usize,
        y: &[Vec<f64>],
        x: &[Vec<f64>],
        vg: &[f64],
        ve: &[f64],
    ) -> f64 {
        use faer::linalg::solvers::{DenseSolveCore, Solve};
        use faer::Mat;
        let d = y.len();
        let p = x.len();
        // Records ordered trait by trait: (t, i).
        let recs: Vec<(usize, usize)> = (0..d)
            .flat_map(|t| (0..n).map(move |i| (t, i)))
            .filter(|&(t, i)| !y[t][i].is_nan())
            .collect();
        let nd = recs.len();
        let sigma = Mat::from_fn(nd, nd, |a, b| {
            let ((t, i), (s, j)) = (recs[a], recs[b]);
            vg[t * d + s] * k[i * n + j] + if i == j { ve[t * d + s] } else { 0.0 }
        });
        let xx = Mat::from_fn(nd, p * d, |a, c| {
            let (t, i) = recs[a];
            let (f, s) = (c / d, c % d);
            if t == s {
                x[f][i]
            } else {
                0.0
            }
        });
        let yy = Mat::from_fn(nd, 1, |a, _| y[recs[a].0][recs[a].1]);
        let llt = sigma.llt(faer::Side::Lower).unwrap();
        let si = llt.inverse();
        let ld_s: f64 = 2.0 * (0..nd).map(|i| llt.L()[(i, i)].ln()).sum::<f64>();
        let a = xx.transpose() * &si * &xx;
        let la = a.llt(faer::Side::Lower).unwrap();
        let ld_a: f64 = 2.0 * (0..p * d).map(|i| la.L()[(i, i)].ln()).sum::<f64>();
        let beta = la.solve(xx.transpose() * &si * &yy);
        let r = &yy - &xx * &beta;
        let q = (r.transpose() * &si * &r)[(0, 0)];
        let xtx = xx.transpose() * &xx;
        let lx = xtx.llt(faer::Side::Lower).unwrap();
        let ld_x: f64 = 2.0 * (0..p * d).map(|i| lx.L()[(i, i)].ln()).sum::<f64>();
        let dof = (nd - p * d) as f64;
        -0.5 * (dof * (2.0 * std::f64::consts::PI).ln() + ld_s + ld_a - ld_x + q)
    }

    #[test]
    fn observed_record_reml_equals_the_dense_one_and_the_rotated_one() {
        let n = 30;
        let k = kernel(n, 5);
        let mut y = vec![data(n, 1), data(n, 2), data(n, 5)];
        let x = vec![vec![1.0; n], data(n, 9)];
        let vg = [0.5, 0.2, -0.1, 0.2, 0.4, 0.05, -0.1, 0.05, 0.3];
        let ve = [0.3, 0.1, 0.0, 0.1, 0.5, -0.1, 0.0, -0.1, 0.6];
        // Complete: the same likelihood as in the eigenbasis.
        let eig = Spectral::new(&k, n).unwrap();
        let (rot, _) = MvProblem::new(&eig, &y, &x)
            .unwrap()
            .eval(&vg, &ve)
            .unwrap();
        let obs = ObservedProblem::new(k.clone(), n, &y, &x).unwrap();
        let (full, _) = obs.eval(&vg, &ve).unwrap();
        assert!((full - rot).abs() < 1e-8 * rot.abs(), "{full} vs {rot}");
        // Records missing: the dense reference over the records present.
        for (t, i) in [(1, 3), (1, 4), (2, 4), (0, 10), (2, 20), (1, 29)] {
            y[t][i] = f64::NAN;
        }
        let obs = ObservedProblem::new(k.clone(), n, &y, &x).unwrap();
        assert_eq!(obs.n_records(), 3 * n - 6);
        let (ll, _) = obs.eval(&vg, &ve).unwrap();
        let want = naive_reml(&k, n, &y, &x, &vg, &ve);
        assert!((ll - want).abs() < 1e-8 * want.abs(), "{ll} vs {want}");
    }

    /// Two traits drawn from the model (Vg = [[0.6, 0.3], [0.3, 0.5]], Ve =
    /// [[0.4, 0.1], [0.1, 0.5]]) on a kernel of n individuals.
    fn drawn(n: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
        use faer::Mat;
        let k = kernel(n, 12);
        let lk = Mat::from_fn(n, n, |i, j| k[i * n + j])
            .llt(faer::Side::Lower)
            .unwrap();
        let z = [data(n, 31), data(n, 32), data(n, 33), data(n, 34)];
        // Uniform(−1, 1) has variance 1/3: scale to 1.
        let s3 = 3f64.sqrt();
        let g0: Vec<f64> = (0..n)
            .map(|i| (0..=i).map(|j| lk.L()[(i, j)] * z[0][j] * s3).sum())
            .collect();
        let g1: Vec<f64> = (0..n)
            .map(|i| (0..=i).map(|j| lk.L()[(i, j)] * z[1][j] * s3).sum())
            .collect();
        // Vg's factor [[a, 0], [b, c]]: a² = 0.6, ab = 0.3, b² + c² = 0.5.
        let (a, b) = (0.6f64.sqrt(), 0.3 / 0.6f64.sqrt());
        let c = (0.5 - b * b).sqrt();
        let (ea, eb) = (0.4f64.sqrt(), 0.1 / 0.4f64.sqrt());
        let ec = (0.5 - eb * eb).sqrt();
        let y0 = (0..n).map(|i| a * g0[i] + ea * z[2][i] * s3).collect();
        let y1 = (0..n)
            .map(|i| b * g0[i] + c * g1[i] + eb * z[2][i] * s3 + ec * z[3][i] * s3)
            .collect();
        (k, vec![y0, y1])
    }

    #[test]
    fn observed_record_gradient_equals_central_differences() {
        let n = 25;
        let k = kernel(n, 6);
        let mut y = vec![data(n, 3), data(n, 4), data(n, 8)];
        for (t, i) in [(1, 2), (2, 2), (0, 9), (2, 17)] {
            y[t][i] = f64::NAN;
        }
        let x = vec![vec![1.0; n], data(n, 2)];
        let obs = ObservedProblem::new(k, n, &y, &x).unwrap();
        let vg = [0.5, 0.2, -0.1, 0.2, 0.4, 0.05, -0.1, 0.05, 0.3];
        let ve = [0.3, 0.1, 0.0, 0.1, 0.5, -0.1, 0.0, -0.1, 0.6];
        let (dg, de) = obs.gradient(&vg, &ve).unwrap();
        let h = 1e-6;
        for (which, grad) in [(0, &dg), (1, &de)] {
            for (s_, t_) in [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)] {
                // A covariance stays symmetric: move V[s,t] and V[t,s]
                // together, whose derivative is the sum of the two entries'.
                let shift = |sign: f64| {
                    let (mut g2, mut e2) = (vg.to_vec(), ve.to_vec());
                    let m = if which == 0 { &mut g2 } else { &mut e2 };
                    m[s_ * 3 + t_] += sign * h;
                    if s_ != t_ {
                        m[t_ * 3 + s_] += sign * h;
                    }
                    obs.eval(&g2, &e2).unwrap().0
                };
                let fd = (shift(1.0) - shift(-1.0)) / (2.0 * h);
                let an = if s_ == t_ {
                    grad[s_ * 3 + t_]
                } else {
                    grad[s_ * 3 + t_] + grad[t_ * 3 + s_]
                };
                assert!(
                    (fd - an).abs() < 1e-5 * fd.abs().max(1.0),
                    "{} ({s_}, {t_}): analytic {an} vs {fd}",
                    if which == 0 { "Vg" } else { "Ve" }
                );
            }
        }
    }

    #[test]
    fn observed_record_reml_finds_the_rotated_maximum_and_a_maximum_with_gaps() {
        let n = 80;
        let (k, mut y) = drawn(n);
        let x = vec![vec![1.0; n]];
        let eig = Spectral::new(&k, n).unwrap();
        let rot = MvProblem::new(&eig, &y, &x).unwrap().fit().unwrap();
        let start = [0.5, 0.0, 0.0, 0.5];
        let obs = ObservedProblem::new(k.clone(), n, &y, &x).unwrap();
        let fit = obs.fit_from(&start, &start).unwrap();
        assert!((fit.loglik - rot.loglik).abs() < 1e-6, "{fit:?} vs {rot:?}");
        for q in 0..4 {
            assert!((fit.vg[q] - rot.vg[q]).abs() < 1e-3, "{fit:?} vs {rot:?}");
            assert!((fit.ve[q] - rot.ve[q]).abs() < 1e-3, "{fit:?} vs {rot:?}");
        }
        // With a third of the second trait missing: no nearby covariance
        // does better (beyond the optimizer's tolerance).
        for i in (0..n).step_by(3) {
            y[1][i] = f64::NAN;
        }
        let obs = ObservedProblem::new(k, n, &y, &x).unwrap();
        let fit = obs.fit_from(&start, &start).unwrap();
        for q in 0..4 {
            for h in [2e-3, -2e-3] {
                let mut vg2 = fit.vg.clone();
                let mut ve2 = fit.ve.clone();
                // Symmetric perturbations.
                let (i, j) = (q / 2, q % 2);
                vg2[i * 2 + j] += h;
                if i != j {
                    vg2[j * 2 + i] += h;
                }
                ve2[i * 2 + j] += h;
                if i != j {
                    ve2[j * 2 + i] += h;
                }
                for (a, b) in [(&vg2, &fit.ve), (&fit.vg, &ve2)] {
                    if let Some((l2, _)) = obs.eval(a, b) {
                        assert!(l2 <= fit.loglik + 1e-6, "{l2} > {}", fit.loglik);
                    }
                }
            }
        }
    }

    #[test]
    fn rotated_reml_likelihood_equals_the_dense_one() {
        let n = 30;
        let k = kernel(n, 3);
        let eig = Spectral::new(&k, n).unwrap();
        let y = vec![data(n, 1), data(n, 2), data(n, 5)];
        let x = vec![vec![1.0; n], data(n, 9)];
        let vg = [0.5, 0.2, -0.1, 0.2, 0.4, 0.05, -0.1, 0.05, 0.3];
        let ve = [0.3, 0.1, 0.0, 0.1, 0.5, -0.1, 0.0, -0.1, 0.6];
        let prob = MvProblem::new(&eig, &y, &x).unwrap();
        let (ll, _) = prob.eval(&vg, &ve).unwrap();
        let want = naive_reml(&k, n, &y, &x, &vg, &ve);
        assert!((ll - want).abs() < 1e-8 * want.abs(), "{ll} vs {want}");
    }

    #[test]
    fn one_trait_reduces_to_univariate_reml() {
        let n = 40;
        let k = kernel(n, 4);
        let eig = Spectral::new(&k, n).unwrap();
        let y = data(n, 11);
        let x = vec![vec![1.0; n]];
        let uni = Problem::new(&eig, &y, &x).unwrap().fit().unwrap();
        let mv = MvProblem::new(&eig, std::slice::from_ref(&y), &x)
            .unwrap()
            .fit()
            .unwrap();
        assert!(
            (mv.vg[0] - uni.var_g).abs() < 1e-5 * uni.var_g.max(1e-3),
            "{mv:?} {uni:?}"
        );
        assert!((mv.ve[0] - uni.var_e).abs() < 1e-5 * uni.var_e.max(1e-3));
        assert!((mv.loglik - uni.loglik).abs() < 1e-7 * uni.loglik.abs());
    }

    #[test]
    fn blup_by_cg_equals_the_dense_conditional_expectation() {
        use faer::linalg::solvers::Solve;
        use faer::Mat;
        let n = 25;
        let d = 2;
        let kd = kernel(n, 8);
        let k = Kinship::from_f64(n, &kd);
        // The dense reference uses the same (f32-stored) kernel values.
        let kd = k.to_f64();
        let mut y = vec![data(n, 3), data(n, 4)];
        // Some records missing, one individual with none.
        for i in [2, 5, 9, 13] {
            y[1][i] = f64::NAN;
        }
        y[0][7] = f64::NAN;
        y[0][20] = f64::NAN;
        y[1][20] = f64::NAN;
        let mean = vec![vec![0.1; n], vec![-0.2; n]];
        let vg = [0.6, 0.3, 0.3, 0.5];
        let ve = [0.4, 0.1, 0.1, 0.5];
        let b = blup(&k, &y, &mean, &vg, &ve).unwrap();
        let (g, e) = (&b.genetic, &b.residual);
        // Dense: records (i, t) at i*d + t.
        let obs: Vec<usize> = (0..n * d).filter(|&q| !y[q % d][q / d].is_nan()).collect();
        let cov = |a: usize, b: usize, with_e: bool| {
            let (i, t, j, s) = (a / d, a % d, b / d, b % d);
            vg[t * d + s] * kd[i * n + j] + if with_e && i == j { ve[t * d + s] } else { 0.0 }
        };
        let soo = Mat::from_fn(obs.len(), obs.len(), |a, b| cov(obs[a], obs[b], true));
        let r = Mat::from_fn(obs.len(), 1, |a, _| {
            let q = obs[a];
            y[q % d][q / d] - mean[q % d][q / d]
        });
        let w = soo.llt(faer::Side::Lower).unwrap().solve(&r);
        for q in 0..n * d {
            let want: f64 = (0..obs.len())
                .map(|a| cov(q, obs[a], false) * w[(a, 0)])
                .sum();
            let got = g[q % d][q / d];
            assert!((got - want).abs() < 1e-7, "record {q}: {got} vs {want}");
            // The residual: Cov(e_q, y_o) is Ve where the individual is the same.
            let want_e: f64 = (0..obs.len())
                .map(|a| {
                    let (i, t, j, s) = (q / d, q % d, obs[a] / d, obs[a] % d);
                    if i == j {
                        ve[t * d + s] * w[(a, 0)]
                    } else {
                        0.0
                    }
                })
                .sum();
            let got_e = e[q % d][q / d];
            assert!(
                (got_e - want_e).abs() < 1e-7,
                "record {q}: {got_e} vs {want_e}"
            );
        }
        // Individual 2 misses trait 1 but has trait 0: its residual is
        // predicted through Ve[0][1] ≠ 0; individual 20 has no record.
        assert!(e[1][2].abs() > 1e-6);
        assert_eq!((e[0][20], e[1][20]), (0.0, 0.0));
    }
}
