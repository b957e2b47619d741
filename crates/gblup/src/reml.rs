//! REML by the spectral method (EMMA, FaST-LMM, rrBLUP's `mixed.solve`):
//! one eigendecomposition K = U Λ Uᵀ of the training individuals' kernel,
//! then the restricted log-likelihood of y = Xβ + g + e, g ~ N(0, σg² K),
//! e ~ N(0, σe² I), is a cheap function of δ = σe²/σg², maximized over
//! log δ by a grid and Brent's method.

use faer::{Mat, Side};

use crate::error::{GblupError, Result};
use crate::grm::par;

/// Eigenvalues and eigenvectors of a training kernel.
pub struct Spectral {
    pub values: Vec<f64>,
    /// n × n, columns are eigenvectors.
    pub vectors: Mat<f64>,
}

impl Spectral {
    /// Eigendecomposition of the symmetric matrix `k` (n × n, row-major).
    pub fn new(k: &[f64], n: usize) -> Result<Self> {
        let m = Mat::from_fn(n, n, |i, j| k[i * n + j]);
        let evd = m
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| GblupError::Numeric(format!("eigendecomposition failed: {e:?}")))?;
        let values = (0..n).map(|i| evd.S()[i].max(0.0)).collect();
        Ok(Spectral {
            values,
            vectors: evd.U().to_owned(),
        })
    }

    /// Uᵀ v for a vector v.
    pub fn rotate(&self, v: &[f64]) -> Vec<f64> {
        let n = v.len();
        let col = Mat::from_fn(n, 1, |i, _| v[i]);
        let out = self.vectors.transpose() * &col;
        (0..n).map(|i| out[(i, 0)]).collect()
    }

    /// U v for a vector v.
    pub fn unrotate(&self, v: &[f64]) -> Vec<f64> {
        let n = v.len();
        let col = Mat::from_fn(n, 1, |i, _| v[i]);
        let mut out = Mat::<f64>::zeros(n, 1);
        faer::linalg::matmul::matmul(
            out.as_mut(),
            faer::Accum::Replace,
            self.vectors.as_ref(),
            col.as_ref(),
            1.0,
            par(),
        );
        (0..n).map(|i| out[(i, 0)]).collect()
    }
}

/// The REML solution.
#[derive(Clone, Debug, PartialEq)]
pub struct RemlFit {
    /// σe² / σg².
    pub delta: f64,
    pub var_g: f64,
    pub var_e: f64,
    /// σg² / (σg² + σe²).
    pub h2: f64,
    /// Standard error of h2 from the observed information.
    pub h2_se: f64,
    /// The restricted log-likelihood at the optimum.
    pub loglik: f64,
    /// Fixed effects (intercept first).
    pub beta: Vec<f64>,
    pub n: usize,
    pub p: usize,
}

/// The kernel K of a REML problem, in the basis y and X are given in.
#[derive(Clone, Copy)]
pub enum Basis<'a> {
    /// K's eigenvalues; y and X rotated by Uᵀ (K = UΛUᵀ).
    Eigen(&'a [f64]),
    /// A tridiagonal T = QᵀKQ (its diagonal and subdiagonal); y and X
    /// rotated by Qᵀ. Each likelihood is then an LDLᵀ factorization of
    /// T + δI, O(n): no eigenvalues are needed.
    Tridiagonal(&'a [f64], &'a [f64]),
}

/// The data of a REML problem in the rotated basis.
pub struct Problem<'a> {
    /// The kernel.
    pub basis: Basis<'a>,
    /// Uᵀ y (or Qᵀ y).
    pub y: Vec<f64>,
    /// Uᵀ X (or Qᵀ X), one vector per fixed effect.
    pub x: Vec<Vec<f64>>,
    /// ln |XᵀX|.
    pub logdet_xtx: f64,
}

/// Solves a small symmetric positive-definite system by Cholesky; returns
/// (solution, ln determinant).
fn solve_spd(a: &[f64], b: &[f64], p: usize) -> Option<(Vec<f64>, f64)> {
    let mut l = vec![0f64; p * p];
    for i in 0..p {
        for j in 0..=i {
            let mut s = a[i * p + j];
            for k in 0..j {
                s -= l[i * p + k] * l[j * p + k];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * p + i] = s.sqrt();
            } else {
                l[i * p + j] = s / l[j * p + j];
            }
        }
    }
    let mut z = b.to_vec();
    for i in 0..p {
        for k in 0..i {
            z[i] -= l[i * p + k] * z[k];
        }
        z[i] /= l[i * p + i];
    }
    for i in (0..p).rev() {
        for k in i + 1..p {
            z[i] -= l[k * p + i] * z[k];
        }
        z[i] /= l[i * p + i];
    }
    let logdet = 2.0 * (0..p).map(|i| l[i * p + i].ln()).sum::<f64>();
    Some((z, logdet))
}

impl<'a> Problem<'a> {
    /// Builds the rotated problem for phenotypes `y` and fixed-effect columns `x`.
    pub fn new(eig: &'a Spectral, y: &[f64], x: &[Vec<f64>]) -> Result<Self> {
        let ux = x.iter().map(|c| eig.rotate(c)).collect();
        Self::from_rotated(&eig.values, eig.rotate(y), ux, x)
    }

    /// The problem for a kernel with eigenvalues `values`, given the
    /// rotated phenotypes `uy` = Uᵀy and fixed effects `ux` = UᵀX, and the
    /// fixed-effect columns `x` themselves.
    pub fn from_rotated(
        values: &'a [f64],
        uy: Vec<f64>,
        ux: Vec<Vec<f64>>,
        x: &[Vec<f64>],
    ) -> Result<Self> {
        Self::in_basis(Basis::Eigen(values), uy, ux, x)
    }

    /// The problem for a kernel in `basis`, given y and X rotated into it
    /// (`uy`, `ux`), and the fixed-effect columns `x` themselves.
    pub fn in_basis(
        basis: Basis<'a>,
        uy: Vec<f64>,
        ux: Vec<Vec<f64>>,
        x: &[Vec<f64>],
    ) -> Result<Self> {
        let p = x.len();
        let mut xtx = vec![0f64; p * p];
        for i in 0..p {
            for j in 0..p {
                xtx[i * p + j] = x[i].iter().zip(&x[j]).map(|(a, b)| a * b).sum();
            }
        }
        let (_, logdet_xtx) = solve_spd(&xtx, &vec![0.0; p], p).ok_or_else(|| {
            GblupError::Numeric("the fixed effects are collinear (XᵀX is singular)".into())
        })?;
        Ok(Problem {
            basis,
            y: uy,
            x: ux,
            logdet_xtx,
        })
    }

    /// (restricted log-likelihood, β, σg²) at δ.
    pub fn eval(&self, delta: f64) -> (f64, Vec<f64>, f64) {
        let p = self.x.len();
        let failed = (f64::NEG_INFINITY, vec![0.0; p], f64::NAN);
        // H⁻¹y, H⁻¹X and ln |H| for H = K + δI, in the problem's basis.
        let (hy, hx, logdet_h) = match self.basis {
            Basis::Eigen(values) => {
                let w: Vec<f64> = values.iter().map(|&l| 1.0 / (l + delta)).collect();
                let scale = |v: &[f64]| v.iter().zip(&w).map(|(v, w)| v * w).collect::<Vec<_>>();
                let logdet: f64 = w.iter().map(|x| -x.ln()).sum();
                (
                    scale(&self.y),
                    self.x.iter().map(|c| scale(c)).collect(),
                    logdet,
                )
            }
            // (K + δI)⁻¹ = Q(T + δI)⁻¹Qᵀ and ln |K + δI| = ln |T + δI|,
            // through T + δI's LDLᵀ factorization.
            Basis::Tridiagonal(d, e) => {
                let Ok(f) = crate::tridiag::ShiftedTridiagonal::factor(d, e, delta) else {
                    return failed;
                };
                let hx: Vec<Vec<f64>> = self.x.iter().map(|c| f.solve(c)).collect();
                (f.solve(&self.y), hx, f.logdet())
            }
        };
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        let mut a = vec![0f64; p * p];
        let mut b = vec![0f64; p];
        for i in 0..p {
            for j in 0..=i {
                let v = dot(&self.x[i], &hx[j]);
                a[i * p + j] = v;
                a[j * p + i] = v;
            }
            b[i] = dot(&self.x[i], &hy);
        }
        let Some((beta, logdet_a)) = solve_spd(&a, &b, p) else {
            return failed;
        };
        // q = rᵀH⁻¹r with r = y − Xβ.
        let q: f64 = (0..self.y.len())
            .map(|k| {
                let r = self.y[k] - (0..p).map(|i| self.x[i][k] * beta[i]).sum::<f64>();
                let hr = hy[k] - (0..p).map(|i| hx[i][k] * beta[i]).sum::<f64>();
                r * hr
            })
            .sum();
        let dof = (self.y.len() - p) as f64;
        let sigma_g = q / dof;
        let ll = -0.5
            * (dof * (2.0 * std::f64::consts::PI * sigma_g).ln() + logdet_h + logdet_a
                - self.logdet_xtx
                + dof);
        (ll, beta, sigma_g)
    }

    /// Maximizes the restricted likelihood over log δ ∈ [−10, 10].
    pub fn fit(&self) -> Result<RemlFit> {
        let (n, p) = (self.y.len(), self.x.len());
        if n <= p + 1 {
            return Err(GblupError::Data(format!(
                "{n} phenotyped individuals are too few for {p} fixed effects"
            )));
        }
        let f = |ld: f64| -self.eval(ld.exp()).0;
        // A grid, then Brent's method around each local optimum of the grid.
        let grid: Vec<f64> = (0..=100).map(|i| -10.0 + 0.2 * i as f64).collect();
        let vals: Vec<f64> = grid.iter().map(|&g| f(g)).collect();
        let mut best = (vals[0], grid[0]);
        for i in 0..grid.len() {
            let local_min = (i == 0 || vals[i] <= vals[i - 1])
                && (i + 1 == grid.len() || vals[i] <= vals[i + 1]);
            if !local_min {
                continue;
            }
            let (lo, hi) = (grid[i.saturating_sub(1)], grid[(i + 1).min(grid.len() - 1)]);
            let (x, fx) = if lo < hi {
                brent(&f, lo, hi, 1e-10)
            } else {
                (grid[i], vals[i])
            };
            if fx < best.0 {
                best = (fx, x);
            }
        }
        let delta = best.1.exp();
        let (loglik, beta, var_g) = self.eval(delta);
        let var_e = delta * var_g;
        let h2 = 1.0 / (1.0 + delta);
        // Observed information for h2: the curvature of the profile likelihood in h2.
        let l_h2 = |h: f64| self.eval((1.0 - h) / h).0;
        let h = 1e-4f64.min(h2 / 2.0).min((1.0 - h2) / 2.0).max(1e-7);
        let curv = (l_h2(h2 + h) - 2.0 * loglik + l_h2(h2 - h)) / (h * h);
        let h2_se = if curv < 0.0 {
            (-1.0 / curv).sqrt()
        } else {
            f64::NAN
        };
        Ok(RemlFit {
            delta,
            var_g,
            var_e,
            h2,
            h2_se,
            loglik,
            beta,
            n,
            p,
        })
    }
}

/// Brent's method: the minimum of `f` on [a, b]; returns (x, f(x)).
pub fn brent(f: &dyn Fn(f64) -> f64, mut a: f64, mut b: f64, tol: f64) -> (f64, f64) {
    const GOLD: f64 = 0.381_966_011_250_105;
    let mut x = a + GOLD * (b - a);
    let (mut w, mut v) = (x, x);
    let mut fx = f(x);
    let (mut fw, mut fv) = (fx, fx);
    let (mut d, mut e) = (0.0f64, 0.0f64);
    for _ in 0..200 {
        let m = 0.5 * (a + b);
        let tol1 = tol * x.abs() + 1e-12;
        let tol2 = 2.0 * tol1;
        if (x - m).abs() <= tol2 - 0.5 * (b - a) {
            break;
        }
        let mut golden = true;
        if e.abs() > tol1 {
            let r = (x - w) * (fx - fv);
            let mut q = (x - v) * (fx - fw);
            let mut pp = (x - v) * q - (x - w) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                pp = -pp;
            }
            q = q.abs();
            if pp.abs() < (0.5 * q * e).abs() && pp > q * (a - x) && pp < q * (b - x) {
                e = d;
                d = pp / q;
                let u = x + d;
                if u - a < tol2 || b - u < tol2 {
                    d = if m > x { tol1 } else { -tol1 };
                }
                golden = false;
            }
        }
        if golden {
            e = if x < m { b - x } else { a - x };
            d = GOLD * e;
        }
        let u = if d.abs() >= tol1 {
            x + d
        } else {
            x + tol1.copysign(d)
        };
        let fu = f(u);
        if fu <= fx {
            if u < x {
                b = x;
            } else {
                a = x;
            }
            v = w;
            fv = fw;
            w = x;
            fw = fx;
            x = u;
            fx = fu;
        } else {
            if u < x {
                a = u;
            } else {
                b = u;
            }
            if fu <= fw || w == x {
                v = w;
                fv = fw;
                w = u;
                fw = fu;
            } else if fu <= fv || v == x || v == w {
                v = u;
                fv = fu;
            }
        }
    }
    (x, fx)
}
