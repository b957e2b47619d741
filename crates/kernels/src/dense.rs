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
    check_forward(x, batch, n_in, w, n_out, bias, y)?;
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
    add_bias(y, n_out, bias);
    Ok(())
}

/// [`dense_forward`]'s length checks.
fn check_forward(
    x: &[f32],
    batch: usize,
    n_in: usize,
    w: &[f32],
    n_out: usize,
    bias: Option<&[f32]>,
    y: &[f32],
) -> Result<()> {
    const OP: &str = "dense_forward";
    check_len(OP, "x", x.len(), batch * n_in)?;
    check_len(OP, "weight", w.len(), n_out * n_in)?;
    check_len(OP, "y", y.len(), batch * n_out)?;
    if let Some(b) = bias {
        check_len(OP, "bias", b.len(), n_out)?;
    }
    Ok(())
}

/// Adds the bias to each row of y.
fn add_bias(y: &mut [f32], n_out: usize, bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in y.chunks_mut(n_out) {
            row.iter_mut().zip(b).for_each(|(v, bv)| *v += bv);
        }
    }
}

/// A dense layer's weights prepared once for many forward passes with the
/// same weights (an inference over many batches): on the AMX tiles, the
/// forward product rounds and packs the weights into tile rows on every
/// call (9.6% of the genomic CNN's inference by `perf`); prepared, that is
/// done once. [`dense_forward_prepared`] gives the same outputs, bit for
/// bit, as [`dense_forward`].
pub struct DenseWeights {
    n_in: usize,
    n_out: usize,
    packed: crate::bf16::PackedPanels,
}

impl DenseWeights {
    /// The weights w (n_out × n_in) prepared, where the forward pass on the
    /// path in force would pack them: the AMX tiles, with inputs longer than
    /// one chunk of the streamed product. `None` elsewhere (nothing to save).
    pub fn prepare(w: &[f32], n_in: usize, n_out: usize) -> Option<Self> {
        (SimdPath::current() == SimdPath::AmxBf16
            && crate::bf16::streams_dense(n_in)
            && w.len() == n_out * n_in)
            .then(|| DenseWeights {
                n_in,
                n_out,
                packed: crate::bf16::PackedPanels::new(w, n_out, n_in),
            })
    }
}

/// [`dense_forward`] with the weights prepared by [`DenseWeights::prepare`]
/// from `w`. Where the path in force is not the one they were prepared on
/// (or the shapes differ), `w` itself is used.
///
/// # Errors
/// As [`dense_forward`].
#[allow(clippy::too_many_arguments)]
pub fn dense_forward_prepared(
    x: &[f32],
    batch: usize,
    n_in: usize,
    w: &[f32],
    prepared: &DenseWeights,
    n_out: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    if SimdPath::current() != SimdPath::AmxBf16 || prepared.n_in != n_in || prepared.n_out != n_out
    {
        return dense_forward(x, batch, n_in, w, n_out, bias, y);
    }
    check_forward(x, batch, n_in, w, n_out, bias, y)?;
    crate::bf16::dots_packed(
        batch,
        n_out,
        n_in,
        x,
        |i| i * n_in,
        &prepared.packed,
        y,
        n_out,
        true,
    );
    add_bias(y, n_out, bias);
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
