//! Dense layers: y = x·Wᵀ + b, with W stored (out, in) as in PyTorch and
//! candle. Forward is a tile of long dot products ([`gemm_dots`]); the
//! backward products are [`gemm_rows`] with plain rows. Both split their
//! output over threads.

use crate::error::{check_len, Result};
use crate::gemm::{gemm_dots, gemm_rows};
use crate::scratch::with_scratch;
use crate::simd::SimdPath;

/// Forward: y (batch × n_out) = x (batch × n_in) · wᵀ + bias.
///
/// # Errors
/// [`KernelError::Length`](crate::KernelError::Length) if a slice's length
/// does not match the shapes; nothing is written then.
pub fn dense_forward(
    x: &[f32],
    batch: usize,
    n_in: usize,
    w: &[f32],
    n_out: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    const OP: &str = "dense_forward";
    check_len(OP, "x", x.len(), batch * n_in)?;
    check_len(OP, "weight", w.len(), n_out * n_in)?;
    check_len(OP, "y", y.len(), batch * n_out)?;
    if let Some(b) = bias {
        check_len(OP, "bias", b.len(), n_out)?;
    }
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
        for row in y.chunks_mut(n_out) {
            row.iter_mut().zip(b).for_each(|(v, bv)| *v += bv);
        }
    }
    Ok(())
}

/// Backward: writes dW = dyᵀ·x to `dw`, the column sums of dy to `db`, and
/// dx = dy·W when asked for (every output is overwritten).
///
/// # Errors
/// [`KernelError::Length`](crate::KernelError::Length) if a slice's length
/// does not match the shapes; nothing is written then.
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
) -> Result<()> {
    const OP: &str = "dense_backward";
    check_len(OP, "x", x.len(), batch * n_in)?;
    check_len(OP, "weight", w.len(), n_out * n_in)?;
    check_len(OP, "dy", dy.len(), batch * n_out)?;
    check_len(OP, "dw", dw.len(), n_out * n_in)?;
    if let Some(db) = &db {
        check_len(OP, "db", db.len(), n_out)?;
    }
    if let Some(dx) = &dx {
        check_len(OP, "dx", dx.len(), batch * n_in)?;
    }
    let path = SimdPath::current();
    if let Some(db) = db {
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
    Ok(())
}
