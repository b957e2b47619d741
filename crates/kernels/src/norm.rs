//! Batch normalization over the channels of (batch, channels, spatial)
//! tensors, in training and inference mode, and the dropout mask.
//!
//! Each kernel checks every buffer against the shapes it is given and
//! returns [`KernelError`](crate::KernelError) before writing anything.

use crate::error::{check_len, require, Result};

/// Per-channel statistics saved by the training forward pass for backward.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchNormCache {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// Checks a forward pass's buffers: x and y hold `len` values, gamma,
/// beta and the running statistics one per channel.
fn check_forward(
    op: &'static str,
    [x, y]: [usize; 2],
    len: usize,
    per_channel: [usize; 4],
    channels: usize,
) -> Result<()> {
    check_len(op, "x", x, len)?;
    check_len(op, "y", y, len)?;
    let names = ["gamma", "beta", "running mean", "running variance"];
    for (name, found) in names.into_iter().zip(per_channel) {
        check_len(op, name, found, channels)?;
    }
    Ok(())
}

/// Training forward: normalizes each channel by its batch mean and variance
/// (biased), scales by gamma and shifts by beta, and updates the running
/// statistics: running ← (1 − momentum)·running + momentum·batch (the
/// running variance takes the unbiased batch variance, as PyTorch does).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward_train(
    x: &[f32],
    batch: usize,
    channels: usize,
    spatial: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    momentum: f32,
    running_mean: &mut [f32],
    running_var: &mut [f32],
    y: &mut [f32],
) -> Result<BatchNormCache> {
    check_forward(
        "batchnorm_forward_train",
        [x.len(), y.len()],
        batch * channels * spatial,
        [
            gamma.len(),
            beta.len(),
            running_mean.len(),
            running_var.len(),
        ],
        channels,
    )?;
    let n = (batch * spatial) as f64;
    let mut cache = BatchNormCache {
        mean: vec![0.0; channels],
        inv_std: vec![0.0; channels],
    };
    for c in 0..channels {
        let rows =
            (0..batch).map(|b| &x[(b * channels + c) * spatial..(b * channels + c + 1) * spatial]);
        let mean = rows.clone().flatten().map(|&v| v as f64).sum::<f64>() / n;
        let var = rows
            .flatten()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let inv = 1.0 / (var + eps as f64).sqrt();
        cache.mean[c] = mean as f32;
        cache.inv_std[c] = inv as f32;
        let unbiased = if n > 1.0 { var * n / (n - 1.0) } else { var };
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean as f32;
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * unbiased as f32;
        let (scale, shift) = (
            gamma[c] * inv as f32,
            beta[c] - gamma[c] * (mean * inv) as f32,
        );
        for b in 0..batch {
            let o = (b * channels + c) * spatial;
            for (yv, &xv) in y[o..o + spatial].iter_mut().zip(&x[o..o + spatial]) {
                *yv = xv * scale + shift;
            }
        }
    }
    Ok(cache)
}

/// Inference forward with the running statistics.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward_infer(
    x: &[f32],
    batch: usize,
    channels: usize,
    spatial: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    running_mean: &[f32],
    running_var: &[f32],
    y: &mut [f32],
) -> Result<()> {
    check_forward(
        "batchnorm_forward_infer",
        [x.len(), y.len()],
        batch * channels * spatial,
        [
            gamma.len(),
            beta.len(),
            running_mean.len(),
            running_var.len(),
        ],
        channels,
    )?;
    for c in 0..channels {
        let inv = 1.0 / (running_var[c] + eps).sqrt();
        let (scale, shift) = (gamma[c] * inv, beta[c] - gamma[c] * running_mean[c] * inv);
        for b in 0..batch {
            let o = (b * channels + c) * spatial;
            for (yv, &xv) in y[o..o + spatial].iter_mut().zip(&x[o..o + spatial]) {
                *yv = xv * scale + shift;
            }
        }
    }
    Ok(())
}

/// Training backward: writes dx and adds to dgamma and dbeta.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    x: &[f32],
    batch: usize,
    channels: usize,
    spatial: usize,
    gamma: &[f32],
    cache: &BatchNormCache,
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Result<()> {
    const OP: &str = "batchnorm_backward";
    let len = batch * channels * spatial;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "dy", dy.len(), len)?;
    check_len(OP, "dx", dx.len(), len)?;
    check_len(OP, "gamma", gamma.len(), channels)?;
    check_len(OP, "saved mean", cache.mean.len(), channels)?;
    check_len(OP, "saved inverse std", cache.inv_std.len(), channels)?;
    check_len(OP, "dgamma", dgamma.len(), channels)?;
    check_len(OP, "dbeta", dbeta.len(), channels)?;
    let n = (batch * spatial) as f64;
    for c in 0..channels {
        let (mean, inv) = (cache.mean[c] as f64, cache.inv_std[c] as f64);
        let mut sum_dy = 0f64;
        let mut sum_dy_xhat = 0f64;
        for b in 0..batch {
            let o = (b * channels + c) * spatial;
            for (&d, &xv) in dy[o..o + spatial].iter().zip(&x[o..o + spatial]) {
                sum_dy += d as f64;
                sum_dy_xhat += d as f64 * (xv as f64 - mean) * inv;
            }
        }
        dgamma[c] += sum_dy_xhat as f32;
        dbeta[c] += sum_dy as f32;
        let k = gamma[c] as f64 * inv / n;
        for b in 0..batch {
            let o = (b * channels + c) * spatial;
            for ((dxv, &d), &xv) in dx[o..o + spatial]
                .iter_mut()
                .zip(&dy[o..o + spatial])
                .zip(&x[o..o + spatial])
            {
                let xhat = (xv as f64 - mean) * inv;
                *dxv = (k * (n * d as f64 - sum_dy - xhat * sum_dy_xhat)) as f32;
            }
        }
    }
    Ok(())
}

/// Fills `mask` for inverted dropout at `rate`: each element is 0 with
/// probability `rate`, else 1/(1 − rate). The mask depends only on `seed`
/// (a counter-based generator), so a run is reproducible.
pub fn dropout_mask(rate: f32, seed: u64, mask: &mut [f32]) -> Result<()> {
    require(
        "dropout_mask",
        (0.0..1.0).contains(&rate),
        &format!("the rate must be in [0, 1), not {rate}"),
    )?;
    let keep = 1.0 / (1.0 - rate);
    for (i, m) in mask.iter_mut().enumerate() {
        let u = (splitmix64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 40) as f32
            / (1u64 << 24) as f32;
        *m = if u < rate { 0.0 } else { keep };
    }
    Ok(())
}

/// SplitMix64: a small, well-mixed hash used as a counter-based generator.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
