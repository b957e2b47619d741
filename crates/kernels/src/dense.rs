//! Dense layers: y = x·Wᵀ + b, with W stored (out, in) as in PyTorch and
//! candle. Forward is a tile of long dot products ([`gemm_dots`]); the
//! backward products are [`gemm_rows`] with plain rows. Both split their
//! output over threads.

use crate::gemm::{gemm_dots, gemm_rows};
use crate::scratch::with_scratch;
use crate::simd::SimdPath;

/// Forward: y (batch × n_out) = x (batch × n_in) · wᵀ + bias.
///
/// # Panics
/// If a slice has the wrong length.
pub fn dense_forward(
    x: &[f32],
    batch: usize,
    n_in: usize,
    w: &[f32],
    n_out: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    assert_eq!(x.len(), batch * n_in, "dense: x length");
    assert_eq!(w.len(), n_out * n_in, "dense: weight length");
    assert_eq!(y.len(), batch * n_out, "dense: y length");
    let path = SimdPath::current();
    gemm_dots(
        path,
        batch,
        n_out,
        n_in,
        x,
        |i| i * n_in,
        w,
        |j| j * n_in,
        y,
        n_out,
        false,
        true,
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), n_out, "dense: bias length");
        for row in y.chunks_mut(n_out) {
            row.iter_mut().zip(b).for_each(|(v, bv)| *v += bv);
        }
    }
}

/// Backward: writes dW = dyᵀ·x to `dw`, the column sums of dy to `db`, and
/// dx = dy·W when asked for (every output is overwritten).
///
/// # Panics
/// If a slice has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn dense_backward(
    x: &[f32],
    batch: usize,
    n_in: usize,
    w: &[f32],
    n_out: usize,
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    assert_eq!(x.len(), batch * n_in, "dense backward: x length");
    assert_eq!(w.len(), n_out * n_in, "dense backward: weight length");
    assert_eq!(dy.len(), batch * n_out, "dense backward: dy length");
    assert_eq!(dw.len(), n_out * n_in, "dense backward: dw length");
    let path = SimdPath::current();
    if let Some(db) = db {
        assert_eq!(db.len(), n_out, "dense backward: db length");
        db.fill(0.0);
        for row in dy.chunks(n_out) {
            db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
        }
    }
    with_scratch(n_out * batch, |dyt| {
        for b in 0..batch {
            for o in 0..n_out {
                dyt[o * batch + b] = dy[b * n_out + o];
            }
        }
        gemm_rows(
            path,
            n_out,
            n_in,
            batch,
            dyt,
            batch,
            x,
            |r| r * n_in,
            dw,
            n_in,
            false,
            true,
        );
    });
    if let Some(dx) = dx {
        assert_eq!(dx.len(), batch * n_in, "dense backward: dx length");
        gemm_rows(
            path,
            batch,
            n_in,
            n_out,
            dy,
            n_out,
            w,
            |r| r * n_in,
            dx,
            n_in,
            false,
            true,
        );
    }
}
