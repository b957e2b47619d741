//! The two-stage tridiagonal reduction K = QTQᵀ of a training kernel, for
//! REML and the BLUP without U.
//!
//! The spectral REML likelihood needs only quadratic forms in
//! (K + δI)⁻¹ and ln |K + δI|; with K = QTQᵀ both come from T + δI
//! ([`ShiftedTridiagonal`], O(n) per δ) and Qᵀy, QᵀX. A one-stage
//! tridiagonal reduction (LAPACK's `dsytrd`, faer's `tridiag_in_place`)
//! spends half its flops in matrix–vector products that read the whole
//! trailing matrix at every column: it runs at memory speed (21 s at
//! n = 4,500 on a 2-core AMD EPYC, about 6 GFLOP/s). So K is reduced
//! in two stages, as LAPACK's `dsytrd_2stage` and ELPA do:
//!
//! 1. **dense → band** (bandwidth b): for each panel of b columns, a QR
//!    factorization (faer) of the part below the band, then the two-sided
//!    update of the trailing matrix, A ← QᵀAQ with Q = I − V T⁻¹ Vᵀ, in
//!    matrix products (X = AVT⁻¹, W = X − ½V(T⁻ᵀVᵀX), A ← A − WVᵀ − VWᵀ,
//!    lower triangle only);
//! 2. **band → tridiagonal** by bulge chasing: one Householder reflector per
//!    column brings it to tridiagonal form, and the bulge it leaves below the
//!    band is chased down by further reflectors, b rows at a time (O(n²b)
//!    work on a window that stays in cache);
//! 3. where the eigenvalues themselves are wanted ([`Reduction::eigen`]),
//!    **tridiagonal → eigenvalues** by the implicit QL algorithm with
//!    Wilkinson shifts (EISPACK's `tql2`).
//!
//! Every reflector and rotation is applied, as it is made, to the few
//! vectors to be rotated (y and the fixed-effect columns), instead of being
//! accumulated into U: U = Q₁Q₂W, so Uᵀv = WᵀQ₂ᵀQ₁ᵀv. The reflectors of
//! stages 1 and 2 are also kept, in the matrix's own storage, for the
//! BLUP's solve with K + δI ([`Reduction::solve_shifted`]).
//!
//! At n = 9,000 training individuals on a 2-core AMD EPYC Zen 4 (`gblup`
//! on `simulate` data, 10% test): stage 1 about 12.6 s (its symmetric
//! product 5.7 s and its rank-2b update 6.0 s, 80–85 GFLOP/s of the
//! cores' 113 in f64), stage 2 2.3 s. Bandwidths 48 and 64 made stage 1
//! 0.8 and 1.3 s faster and stage 2 0.7 and 1.5 s slower; b = 32 stays.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::householder::{
    apply_block_householder_on_the_left_in_place_scratch,
    apply_block_householder_on_the_left_in_place_with_conj,
    apply_block_householder_transpose_on_the_left_in_place_scratch,
    apply_block_householder_transpose_on_the_left_in_place_with_conj,
};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::qr::no_pivoting::factor::{qr_in_place, qr_in_place_scratch};
use faer::linalg::triangular_solve::solve_upper_triangular_in_place;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Conj, Mat, MatMut, MatRef, Par};

use rayon::prelude::*;

use kernels::SimdPath;

use crate::error::{GblupError, Result};
use crate::grm::par;

/// The bandwidth of the first stage.
pub const BAND: usize = 32;

/// The eigenvalues of the symmetric matrix `k` (n × n; only its lower
/// triangle is read), and Uᵀv for each v of `vs`.
/// U's columns have arbitrary signs and the values no order, as with any
/// eigensolver; the REML likelihood depends on neither.
pub fn eigen_rotations(k: Mat<f64>, vs: &[&[f64]]) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    Reduction::new(k, vs, BAND).eigen()
}

/// [`eigen_rotations`] with a chosen bandwidth (tests run several).
pub fn eigen_rotations_with_band(
    a: Mat<f64>,
    vs: &[&[f64]],
    b: usize,
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    Reduction::new(a, vs, b).eigen()
}

/// The two-stage reduction K = Q T Qᵀ of a symmetric matrix (T
/// tridiagonal, Q = Q₁Q₂ from stages 1 and 2), with Qᵀv for a few vectors.
///
/// Q is kept as its reflectors, in the matrix's own storage: stage 1's
/// below the band (where its QR factorizations leave them), stage 2's in
/// the strict upper triangle. So after REML has chosen δ, the BLUP's
/// (K + δI)⁻¹r = Q (T + δI)⁻¹ Qᵀr costs a tridiagonal solve and two
/// passes over the reflectors, O(n²), where a Cholesky factorization of
/// K + δI costs n³/3 (2.7 s at n = 9,000 on a 2-core AMD EPYC Zen 4).
pub struct Reduction {
    /// The reflectors (see above); the band itself is not kept.
    a: Mat<f64>,
    b: usize,
    /// Stage 1's triangular factors, one per panel of b columns.
    t: Vec<Mat<f64>>,
    /// T's diagonal and subdiagonal.
    d: Vec<f64>,
    e: Vec<f64>,
    /// Qᵀv for each v.
    qt: Vec<Vec<f64>>,
}

impl Reduction {
    /// Reduces `a` (n × n; its lower triangle is read, and the whole matrix
    /// overwritten) with stage-1 bandwidth `b`, rotating each v of `vs`.
    pub fn new(mut a: Mat<f64>, vs: &[&[f64]], b: usize) -> Self {
        let n = a.nrows();
        assert_eq!(a.ncols(), n, "a square matrix");
        assert!(b >= 1, "bandwidth at least 1");
        let r = vs.len();
        for col in vs {
            assert_eq!(col.len(), n, "vector length");
        }
        let mut v = Mat::from_fn(n, r, |i, j| vs[j][i]);
        let t = to_band(a.as_mut(), v.as_mut(), b);
        let (d, e) = band_to_tridiagonal(a.as_mut(), v.as_mut(), b);
        let qt = (0..r)
            .map(|j| (0..n).map(|i| v[(i, j)]).collect())
            .collect();
        Reduction { a, b, t, d, e, qt }
    }

    /// The eigenvalues of the matrix, and Uᵀv for each v given to [`Reduction::new`].
    pub fn eigen(&self) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let n = self.d.len();
        let r = self.qt.len();
        // Row-major n × r for the QL rotations of rows i, i + 1.
        let mut rows = vec![0f64; n * r];
        for (j, q) in self.qt.iter().enumerate() {
            for i in 0..n {
                rows[i * r + j] = q[i];
            }
        }
        let mut d = self.d.clone();
        let mut e = self.e.clone();
        e.push(0.0);
        tql(&mut d, &mut e, &mut rows, r)?;
        let out = (0..r)
            .map(|j| (0..n).map(|i| rows[i * r + j]).collect())
            .collect();
        Ok((d, out))
    }

    /// Qᵀv for each v given to [`Reduction::new`].
    pub fn rotated(&self) -> &[Vec<f64>] {
        &self.qt
    }

    /// T's diagonal and subdiagonal (K = Q T Qᵀ).
    pub fn tridiagonal(&self) -> (&[f64], &[f64]) {
        (&self.d, &self.e)
    }

    /// (K + δI)⁻¹r for δ > 0 and K positive semi-definite, given Qᵀr (a
    /// combination of [`Reduction::rotated`]'s vectors).
    pub fn solve_shifted(&self, delta: f64, qt_r: &[f64]) -> Result<Vec<f64>> {
        let n = self.d.len();
        assert_eq!(qt_r.len(), n, "vector length");
        let mut z = solve_tridiagonal_shifted(&self.d, &self.e, delta, qt_r)?;
        // Q₂z: stage 2's reflectors in the reverse of the order they were
        // made, sweep by sweep (one sweep's blocks are disjoint, so its
        // reflectors commute).
        if self.b > 1 {
            for j in (0..n.saturating_sub(2)).rev() {
                let store = self.a.col(n - 1 - j);
                let store = store.try_as_col_major().expect("a column").as_slice();
                for s in sweep(j, n, self.b) {
                    let e = (s + self.b).min(n);
                    let tau = store[s - j - 1];
                    if tau == 0.0 {
                        continue;
                    }
                    let u = &store[s - j - 1..e - j - 1];
                    let seg = &mut z[s..e];
                    let dot = seg[0] + (1..seg.len()).map(|i| u[i] * seg[i]).sum::<f64>();
                    let f = tau * dot;
                    seg[0] -= f;
                    for i in 1..seg.len() {
                        seg[i] -= f * u[i];
                    }
                }
            }
        }
        // Q₁z: stage 1's panels in reverse.
        let mut zm = Mat::from_fn(n, 1, |i, _| z[i]);
        for (p, t) in self.t.iter().enumerate().rev() {
            let j0 = p * self.b;
            let m = n - j0 - self.b;
            let vb = panel_basis(self.a.as_ref(), j0, self.b, m, t.nrows());
            let mut buf = MemBuffer::new(
                apply_block_householder_on_the_left_in_place_scratch::<f64>(m, t.nrows(), 1),
            );
            apply_block_householder_on_the_left_in_place_with_conj(
                vb.as_ref(),
                t.as_ref(),
                Conj::No,
                zm.as_mut().subrows_mut(j0 + self.b, m),
                Par::Seq,
                MemStack::new(&mut buf),
            );
        }
        Ok((0..n).map(|i| zm[(i, 0)]).collect())
    }

    /// The matrix's storage, for reuse (its contents are the reflectors).
    pub fn into_matrix(self) -> Mat<f64> {
        self.a
    }
}

/// The starts s of stage 2's reflectors in sweep j (rows s..min(s + b, n)):
/// j + 1, j + 1 + b, …, while the block has at least two rows. Both the
/// chase that makes them and the solve that applies them walk this.
fn sweep(j: usize, n: usize, b: usize) -> impl Iterator<Item = usize> {
    (j + 1..n)
        .step_by(b)
        .take_while(move |&s| (s + b).min(n) > s + 1)
}

/// Stage 1's V for the panel at column j0 (m × k, unit lower trapezoidal),
/// from where its QR factorization left it below the band.
fn panel_basis(a: MatRef<'_, f64>, j0: usize, b: usize, m: usize, k: usize) -> Mat<f64> {
    Mat::from_fn(m, k, |row, c| match row.cmp(&c) {
        std::cmp::Ordering::Less => 0.0,
        std::cmp::Ordering::Equal => 1.0,
        std::cmp::Ordering::Greater => a[(j0 + b + row, j0 + c)],
    })
}

/// (T + δI)⁻¹c for the symmetric tridiagonal T (diagonal `d`, subdiagonal
/// `e`); T + δI must be positive definite.
fn solve_tridiagonal_shifted(d: &[f64], e: &[f64], delta: f64, c: &[f64]) -> Result<Vec<f64>> {
    let f = ShiftedTridiagonal::factor(d, e, delta).map_err(|(p, i)| {
        GblupError::Numeric(format!(
            "K + δI is not positive definite (δ = {delta}, pivot {p} at row {i})"
        ))
    })?;
    Ok(f.solve(c))
}

/// The LDLᵀ factorization of T + δI, T symmetric tridiagonal: D's pivots
/// and L's subdiagonal. O(n) to make, to solve with and to take the
/// determinant of, which is what REML needs at each δ.
pub struct ShiftedTridiagonal {
    pivots: Vec<f64>,
    l: Vec<f64>,
}

impl ShiftedTridiagonal {
    /// Factors T + δI for T's diagonal `d` and subdiagonal `e` (e[i] joins
    /// i and i + 1). Fails with (pivot, row) at the first pivot that is not
    /// positive: T + δI is then not positive definite.
    pub fn factor(d: &[f64], e: &[f64], delta: f64) -> std::result::Result<Self, (f64, usize)> {
        let n = d.len();
        let mut pivots = vec![0f64; n];
        let mut l = vec![0f64; n];
        for i in 0..n {
            let mut p = d[i] + delta;
            if i > 0 {
                l[i] = e[i - 1] / pivots[i - 1];
                p -= l[i] * e[i - 1];
            }
            if p.is_nan() || p <= 0.0 {
                return Err((p, i));
            }
            pivots[i] = p;
        }
        Ok(ShiftedTridiagonal { pivots, l })
    }

    /// (T + δI)⁻¹c.
    pub fn solve(&self, c: &[f64]) -> Vec<f64> {
        let n = self.pivots.len();
        let mut y = c.to_vec();
        for i in 1..n {
            y[i] -= self.l[i] * y[i - 1];
        }
        for i in (0..n).rev() {
            y[i] /= self.pivots[i];
            if i + 1 < n {
                y[i] -= self.l[i + 1] * y[i + 1];
            }
        }
        y
    }

    /// ln |T + δI|.
    pub fn logdet(&self) -> f64 {
        self.pivots.iter().map(|p| p.ln()).sum()
    }
}

/// Stage 1: reduces the symmetric `a` (lower triangle) to lower bandwidth
/// `b` in place, applying each panel's Qᵀ to the rows of `v`. Below the
/// band are left the panels' Householder vectors (unit diagonal implied),
/// and the panels' triangular factors are returned; the upper triangle is
/// not touched.
fn to_band(mut a: MatMut<'_, f64>, mut v: MatMut<'_, f64>, b: usize) -> Vec<Mat<f64>> {
    let n = a.nrows();
    let par = par();
    let mut factors = Vec::new();
    let mut j0 = 0;
    while j0 + b + 1 < n {
        let m = n - j0 - b;
        let w = b.min(n - j0);
        let k = m.min(w);
        // QR of the panel below the band: rows j0 + b.., columns j0..j0 + w.
        let mut t = Mat::<f64>::zeros(k, k);
        {
            let panel = a.rb_mut().submatrix_mut(j0 + b, j0, m, w);
            let mut buf =
                MemBuffer::new(qr_in_place_scratch::<f64>(m, w, k, par, Default::default()));
            qr_in_place(
                panel,
                t.as_mut(),
                par,
                MemStack::new(&mut buf),
                Default::default(),
            );
        }
        // V (unit lower trapezoidal); R is in the band, V below it.
        let vb = panel_basis(a.rb(), j0, b, m, k);
        // The rotated vectors: rows j0 + b.. ← Qᵀ rows.
        {
            let mut buf = MemBuffer::new(
                apply_block_householder_transpose_on_the_left_in_place_scratch::<f64>(
                    m,
                    k,
                    v.ncols(),
                ),
            );
            apply_block_householder_transpose_on_the_left_in_place_with_conj(
                vb.as_ref(),
                t.as_ref(),
                Conj::No,
                v.rb_mut().subrows_mut(j0 + b, m),
                par,
                MemStack::new(&mut buf),
            );
        }
        // Two-sided update of the trailing matrix A₂₂ (lower triangle).
        let mut a22 = a.rb_mut().submatrix_mut(j0 + b, j0 + b, m, m);
        // X = A₂₂ V, from A₂₂'s lower triangle.
        let mut x = Mat::<f64>::zeros(m, k);
        symm_lower(a22.rb(), vb.as_ref(), x.as_mut(), par);
        // X ← X T⁻¹ (faer's Q = I − V T⁻¹ Vᵀ), with T⁻¹ formed (k × k).
        let mut tinv = Mat::<f64>::identity(k, k);
        solve_upper_triangular_in_place(t.as_ref(), tinv.as_mut(), Par::Seq);
        let y = x;
        let mut x = Mat::<f64>::zeros(m, k);
        matmul(
            x.as_mut(),
            Accum::Replace,
            y.as_ref(),
            tinv.as_ref(),
            1.0,
            par,
        );
        drop(y);
        // M = T⁻ᵀ (Vᵀ X); W = X − ½ V M.
        let mut z = Mat::<f64>::zeros(k, k);
        matmul(
            z.as_mut(),
            Accum::Replace,
            vb.as_ref().transpose(),
            x.as_ref(),
            1.0,
            par,
        );
        let mut mm = Mat::<f64>::zeros(k, k);
        matmul(
            mm.as_mut(),
            Accum::Replace,
            tinv.as_ref().transpose(),
            z.as_ref(),
            1.0,
            Par::Seq,
        );
        matmul(x.as_mut(), Accum::Add, vb.as_ref(), mm.as_ref(), -0.5, par);
        // A₂₂ ← A₂₂ − W Vᵀ − V Wᵀ = A₂₂ − [W V] [V W]ᵀ (lower triangle), one
        // product with inner dimension 2k: one pass over A₂₂.
        let wv = Mat::from_fn(
            m,
            2 * k,
            |i, j| if j < k { x[(i, j)] } else { vb[(i, j - k)] },
        );
        let vw = Mat::from_fn(
            m,
            2 * k,
            |i, j| if j < k { vb[(i, j)] } else { x[(i, j - k)] },
        );
        update_lower(a22.rb_mut(), wv.as_ref(), vw.as_ref(), par);
        factors.push(t);
        j0 += b;
    }
    factors
}

/// Columns per panel of the stage-1 products.
const PANEL: usize = 256;

/// Rows per tile of `symm_lower`'s panels.
const TILE: usize = 128;

/// The column panels of an m × m matrix, dealt to `parts` threads in turn
/// (panel p to thread p mod parts): the lower triangle's panels shrink
/// down the matrix, and dealing them round-robin balances the work.
fn dealt(m: usize, parts: usize, t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..m.div_ceil(PANEL))
        .skip(t)
        .step_by(parts)
        .map(move |p| (p * PANEL, PANEL.min(m - p * PANEL)))
}

/// X = A V for a symmetric A given by its lower triangle. For the panel of
/// columns J and its part L_J of the lower triangle (rows J.start..),
/// X[J.start..] += L_J V[J] and X[J] += L_J,belowᵀ V[below], with the
/// diagonal block's strict lower part also transposed. Below the diagonal
/// block, L_J is taken in tiles of 128 rows (256 KB), each used for both
/// products while it is in cache: two products over the whole panel read
/// it from memory twice (6.5 s rather than 7.8 s over the reduction at
/// n = 9,000 on a 2-core AMD EPYC Zen 4; tiles of 64, 256 and 512 rows
/// were slower). The transposed product is summed as Y = V[below]ᵀ L_J,
/// with the tile in its own (column-major) orientation, and Yᵀ added to
/// X[J] once per panel: 6.5 → 5.7 s, against faer packing the transposed
/// tile. The panels are split over the threads, each summing into an X
/// of its own. (faer runs these shapes on one thread: stage 1 took as long
/// on 1 thread as on 2.)
fn symm_lower(a: MatRef<'_, f64>, v: MatRef<'_, f64>, mut x: MatMut<'_, f64>, par: Par) {
    let m = a.nrows();
    let k = v.ncols();
    let parts = par.degree().max(1);
    let sums: Vec<Mat<f64>> = (0..parts)
        .into_par_iter()
        .map(|t| {
            let mut xt = Mat::<f64>::zeros(m, k);
            for (j, w) in dealt(m, parts, t) {
                let mut yt = Mat::<f64>::zeros(k, w);
                let panel = a.submatrix(j, j, m - j, w);
                let diag = panel.subrows(0, w);
                for (lhs, structure) in [
                    (diag, BlockStructure::TriangularLower),
                    (diag.transpose(), BlockStructure::StrictTriangularUpper),
                ] {
                    triangular::matmul(
                        xt.as_mut().subrows_mut(j, w),
                        BlockStructure::Rectangular,
                        Accum::Add,
                        lhs,
                        structure,
                        v.subrows(j, w),
                        BlockStructure::Rectangular,
                        1.0,
                        Par::Seq,
                    );
                }
                let mut r0 = j + w;
                while r0 < m {
                    let h = TILE.min(m - r0);
                    let tile = a.submatrix(r0, j, h, w);
                    matmul(
                        xt.as_mut().subrows_mut(r0, h),
                        Accum::Add,
                        tile,
                        v.subrows(j, w),
                        1.0,
                        Par::Seq,
                    );
                    matmul(
                        yt.as_mut(),
                        Accum::Add,
                        v.subrows(r0, h).transpose(),
                        tile,
                        1.0,
                        Par::Seq,
                    );
                    r0 += h;
                }
                for c in 0..k {
                    for i in 0..w {
                        xt[(j + i, c)] += yt[(c, i)];
                    }
                }
            }
            xt
        })
        .collect();
    x.fill(0.0);
    for xt in &sums {
        for c in 0..k {
            for r in 0..m {
                x[(r, c)] += xt[(r, c)];
            }
        }
    }
}

/// A ← A − L Rᵀ on the lower triangle of the m × m matrix A, with the
/// column panels split over the threads (each panel's columns are written
/// by one thread only).
fn update_lower(a: MatMut<'_, f64>, l: MatRef<'_, f64>, r: MatRef<'_, f64>, par: Par) {
    let m = a.nrows();
    let parts = par.degree().max(1);
    // Split A into its column panels, then deal them.
    let mut panels: Vec<Vec<(usize, MatMut<'_, f64>)>> = (0..parts).map(|_| Vec::new()).collect();
    let mut rest = a;
    let mut j = 0;
    let mut p = 0;
    while j < m {
        let w = PANEL.min(m - j);
        let (left, right) = rest.split_at_col_mut(w);
        panels[p % parts].push((j, left));
        rest = right;
        j += w;
        p += 1;
    }
    panels.into_par_iter().for_each(|list| {
        for (j, panel) in list {
            let w = panel.ncols();
            let (top, bottom) = panel.split_at_row_mut(j + w);
            let diag = top.subrows_mut(j, w);
            triangular::matmul(
                diag,
                BlockStructure::TriangularLower,
                Accum::Add,
                l.subrows(j, w),
                BlockStructure::Rectangular,
                r.subrows(j, w).transpose(),
                BlockStructure::Rectangular,
                -1.0,
                Par::Seq,
            );
            let below = m - j - w;
            if below > 0 {
                matmul(
                    bottom,
                    Accum::Add,
                    l.subrows(j + w, below),
                    r.subrows(j, w).transpose(),
                    -1.0,
                    Par::Seq,
                );
            }
        }
    });
}

/// A Householder reflector H = I − τ u uᵀ (u₀ = 1) with H x = (β, 0, …, 0).
#[inline(always)]
fn householder(x: &[f64], u: &mut [f64]) -> (f64, f64) {
    let alpha = x[0];
    let sigma = dot(&x[1..], &x[1..]);
    u[0] = 1.0;
    if sigma == 0.0 {
        u[1..x.len()].fill(0.0);
        return (0.0, alpha);
    }
    let norm = (alpha * alpha + sigma).sqrt();
    let beta = if alpha <= 0.0 { norm } else { -norm };
    let scale = 1.0 / (alpha - beta);
    for (ui, xi) in u[1..x.len()].iter_mut().zip(&x[1..]) {
        *ui = xi * scale;
    }
    ((beta - alpha) / beta, beta)
}

/// The lower band of a symmetric matrix with room for the bulges of stage
/// 2: column c holds rows c..c + ld (entry (r, c), r ≥ c, at c·ld + r − c),
/// the rows of column c contiguous, and every column of the window a
/// reflector touches within a few cache lines of the next.
struct Band {
    n: usize,
    ld: usize,
    ab: Vec<f64>,
}

impl Band {
    /// The lower band (width b) of `a`, with room for bulges of 2b − 1.
    fn from_lower(a: MatRef<'_, f64>, b: usize) -> Self {
        let n = a.nrows();
        let ld = 2 * b + 1;
        let mut ab = vec![0f64; n * ld];
        for c in 0..n {
            for k in 0..=b.min(n - 1 - c) {
                ab[c * ld + k] = a[(c + k, c)];
            }
        }
        Band { n, ld, ab }
    }

    /// Rows r0..r1 of column c (all on or below the diagonal, r1 − c ≤ ld).
    #[inline(always)]
    fn col(&mut self, c: usize, r0: usize, r1: usize) -> &mut [f64] {
        debug_assert!(r0 >= c && r1 <= c + self.ld && r1 <= self.n);
        &mut self.ab[c * self.ld + r0 - c..c * self.ld + r1 - c]
    }
}

/// Stage 2: reduces the band matrix (lower bandwidth b, lower triangle of
/// `a`) to tridiagonal form by bulge chasing, applying every reflector to
/// the rows of `v`. Returns T's diagonal and subdiagonal.
///
/// The reflectors of sweep j (rows s..e for each s of [`sweep`]) are
/// stored in column n − 1 − j of `a`'s strict upper triangle, which has
/// exactly the n − 1 − j entries they need: at row s − j − 1 the reflector's
/// τ (in place of its leading 1), then u₁.. (τ = 0 for a block that was
/// already clean).
///
/// The reflector of rows s..e (cleaning column `col` < s) is applied to
/// the rest of the matrix in three parts, each a run of contiguous
/// dot products and axpys on the band storage: the columns left of s
/// (rows s..e of each), the rows below e (columns s..e of them, which are
/// rows of those columns), and the diagonal block (two-sided).
fn band_to_tridiagonal(a: MatMut<'_, f64>, v: MatMut<'_, f64>, b: usize) -> (Vec<f64>, Vec<f64>) {
    struct Chase<'a> {
        a: MatMut<'a, f64>,
        v: MatMut<'a, f64>,
        b: usize,
    }
    impl kernels::WithSimd for Chase<'_> {
        type Output = (Vec<f64>, Vec<f64>);
        #[inline(always)]
        fn with_simd<S: kernels::PulpSimd>(self, _: S) -> Self::Output {
            chase(self.a, self.v, self.b)
        }
    }
    // Compiled for each SIMD path, so that the dot products and updates
    // of ≤ 2b elements vectorize; the same operations in the same order on
    // every path, so the same numbers. The AVX-512 path runs the AVX2 code:
    // on vectors this short it was 10% faster (0.55 against 0.61 s at
    // n = 4,500 on a Zen 4; the scalar code took 1.70 s).
    let path = match kernels::SimdPath::current() {
        p if p.fp32() == SimdPath::Avx512 && SimdPath::Avx2.is_available() => SimdPath::Avx2,
        p => p,
    };
    path.dispatch(Chase { a, v, b })
}

/// Σ aᵢbᵢ (over the shorter length) in 8 interleaved partial sums, added
/// pairwise at the end: a fixed order that vectorizes (a plain sum is one
/// chain of dependent adds).
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[l] += x * y;
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// y ← y − f x (over the shorter length).
#[inline(always)]
fn sub_scaled(y: &mut [f64], f: f64, x: &[f64]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y -= f * x;
    }
}

#[inline(always)]
fn chase(mut a: MatMut<'_, f64>, mut v: MatMut<'_, f64>, b: usize) -> (Vec<f64>, Vec<f64>) {
    let n = a.nrows();
    let mut band = Band::from_lower(a.rb(), b);
    let ld = band.ld;
    if b > 1 {
        let mut u = vec![0f64; b];
        let mut x = vec![0f64; b];
        let mut p = vec![0f64; b];
        let mut dots = vec![0f64; ld];
        for j in 0..n.saturating_sub(2) {
            let mut col = j;
            for s in sweep(j, n, b) {
                let e = (s + b).min(n);
                let len = e - s;
                let mut store = a.rb_mut().col_mut(n - 1 - j);
                x[..len].copy_from_slice(band.col(col, s, e));
                if x[1..len].iter().all(|&t| t == 0.0) {
                    store[s - j - 1] = 0.0;
                    col = s;
                    continue;
                }
                let (tau, beta) = householder(&x[..len], &mut u);
                let u = &u[..len];
                store[s - j - 1] = tau;
                for i in 1..len {
                    store[s - j - 1 + i] = u[i];
                }
                let cleaned = band.col(col, s, e);
                cleaned.fill(0.0);
                cleaned[0] = beta;
                // Columns c < s, c ≠ col, whose rows s..e lie in the band storage.
                for c in (s + 1).saturating_sub(ld)..s {
                    if c == col {
                        continue;
                    }
                    let r1 = e.min(c + ld);
                    let seg = band.col(c, s, r1);
                    let dt = dot(seg, u);
                    if dt != 0.0 {
                        sub_scaled(seg, tau * dt, u);
                    }
                }
                // Rows r ≥ e: A(r, s..e) ← A(r, s..e) H, through the columns s + i.
                let rmax = (s + ld).min(n);
                if rmax > e {
                    let rows = rmax - e;
                    let d = &mut dots[..rows];
                    d.fill(0.0);
                    for (i, &ui) in u.iter().enumerate() {
                        let c = s + i;
                        let r1 = rmax.min(c + ld);
                        for (dk, a) in d.iter_mut().zip(band.col(c, e, r1)) {
                            *dk += *a * ui;
                        }
                    }
                    for (i, &ui) in u.iter().enumerate() {
                        let c = s + i;
                        let r1 = rmax.min(c + ld);
                        let f = tau * ui;
                        for (a, dk) in band.col(c, e, r1).iter_mut().zip(d.iter()) {
                            *a -= f * dk;
                        }
                    }
                }
                // The diagonal block: A ← H A H = A − u wᵀ − w uᵀ with
                // p = τ A u, w = p − ½ τ (pᵀu) u (lower triangle stored).
                let p = &mut p[..len];
                p.fill(0.0);
                for t in 0..len {
                    // Row t and below of column t: A(s + r, s + t), r ≥ t.
                    let colt = band.col(s + t, s + t, e);
                    let ut = u[t];
                    for (pk, a) in p[t..].iter_mut().zip(colt.iter()) {
                        *pk += a * ut;
                    }
                    p[t] += dot(&colt[1..], &u[t + 1..]);
                }
                for pi in p.iter_mut() {
                    *pi *= tau;
                }
                let half = 0.5 * tau * dot(p, u);
                for (pi, ui) in p.iter_mut().zip(u) {
                    *pi -= half * ui;
                }
                for t in 0..len {
                    let (ut, pt) = (u[t], p[t]);
                    for (k, a) in band.col(s + t, s + t, e).iter_mut().enumerate() {
                        *a -= u[t + k] * pt + p[t + k] * ut;
                    }
                }
                // The rotated vectors.
                for jv in 0..v.ncols() {
                    let seg = v
                        .rb_mut()
                        .col_mut(jv)
                        .subrows_mut(s, len)
                        .try_as_col_major_mut()
                        .expect("a column")
                        .as_slice_mut();
                    let f = tau * dot(u, seg);
                    sub_scaled(seg, f, u);
                }
                // The bulge below the band in column s is chased next.
                col = s;
            }
        }
    }
    let d = (0..n).map(|i| band.ab[i * ld]).collect();
    let e = (0..n.saturating_sub(1))
        .map(|i| band.ab[i * ld + 1])
        .collect();
    (d, e)
}

/// (K + δI)⁻¹ v by a Cholesky factorization, for K positive semi-definite
/// (lower triangle of `k`) and δ > 0. The factor overwrites `k` (faer's
/// `Mat::llt` would copy it: another n² f64 at the run's peak).
pub fn solve_shifted(mut k: Mat<f64>, delta: f64, v: &[f64]) -> Result<Vec<f64>> {
    solve_shifted_in(k.as_mut(), delta, v)
}

/// [`solve_shifted`] in a matrix the caller keeps (overwritten by the factor).
pub fn solve_shifted_in(mut k: MatMut<'_, f64>, delta: f64, v: &[f64]) -> Result<Vec<f64>> {
    use faer::linalg::cholesky::llt;
    let n = k.nrows();
    for i in 0..n {
        k[(i, i)] += delta;
    }
    let par = par();
    let mut buf = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
        n,
        par,
        Default::default(),
    ));
    llt::factor::cholesky_in_place(
        k.rb_mut(),
        Default::default(),
        par,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .map_err(|e| GblupError::Numeric(format!("Cholesky factorization of K + δI failed: {e:?}")))?;
    // Both solves read the factor's lower triangle only.
    let mut x = Mat::from_fn(n, 1, |i, _| v[i]);
    llt::solve::solve_in_place(k.rb(), x.as_mut(), par, MemStack::new(&mut []));
    Ok((0..n).map(|i| x[(i, 0)]).collect())
}

/// √(a² + b²): the plain formula where the squares can neither overflow
/// nor underflow (within an ulp or two of libm's `hypot`, at a fraction of
/// its cost: `hypot` was two thirds of the QL iteration's time), else libm's.
#[inline]
fn hypot(a: f64, b: f64) -> f64 {
    let s = a * a + b * b;
    if (1e-300..1e300).contains(&s) {
        s.sqrt()
    } else {
        a.hypot(b)
    }
}

/// The implicit QL algorithm for a symmetric tridiagonal matrix (diagonal
/// `d`, subdiagonal `e` with e[i] joining i and i + 1, e[n − 1] = 0), as
/// EISPACK's `tql2` and Numerical Recipes' `tqli`. On return `d` holds the
/// eigenvalues; each plane rotation G is applied as Gᵀ to rows i, i + 1 of
/// `v` (n × r, row-major), which turns v into Wᵀv.
fn tql(d: &mut [f64], e: &mut [f64], v: &mut [f64], r: usize) -> Result<()> {
    let n = d.len();
    for l in 0..n {
        let mut iterations = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iterations += 1;
            if iterations > 60 {
                return Err(GblupError::Numeric(format!(
                    "the tridiagonal QL iteration did not converge for eigenvalue {l}"
                )));
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut rr = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + rr.copysign(g));
            let (mut s, mut c, mut p) = (1.0f64, 1.0f64, 0.0f64);
            let mut deflated = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                rr = hypot(f, g);
                e[i + 1] = rr;
                if rr == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    deflated = true;
                    break;
                }
                s = f / rr;
                c = g / rr;
                g = d[i + 1] - p;
                rr = (d[i] - g) * s + 2.0 * c * b;
                p = s * rr;
                d[i + 1] = g + p;
                g = c * rr - b;
                let (lo, hi) = v.split_at_mut((i + 1) * r);
                for (x, y) in lo[i * r..].iter_mut().zip(&mut hi[..r]) {
                    let f = *y;
                    *y = s * *x + c * f;
                    *x = c * *x - s * f;
                }
            }
            if deflated {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    Ok(())
}
