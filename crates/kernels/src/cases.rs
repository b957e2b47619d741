//! The benchmark cases, shared by `genocnn bench kernels` and the criterion
//! benches: the layers of the peer genomic CNN and of LeNet-5, at the batch
//! sizes used in training.

use crate::conv1d::{
    conv1d_act_maxpool2_backward, conv1d_act_maxpool2_forward, conv1d_backward, conv1d_forward,
    Conv1dParams,
};
use crate::conv2d::{conv2d_backward, conv2d_forward, Conv2dParams};
use crate::dense::{dense_backward, dense_forward};
use crate::optim::{adam_step, AdamStep};
use crate::pool::{pool1d_backward, pool1d_forward, Pool1dParams, PoolKind};
use crate::{Activation, Padding};

/// One benchmark case: its name, what it times, its floating-point
/// operation count, and a closure that runs it once on prepared buffers.
pub struct Case {
    pub name: &'static str,
    pub what: &'static str,
    pub flops: f64,
    /// Whether its speed is set by the multiply-add units (a matrix
    /// product), not by memory traffic (pooling, the optimizer): only then
    /// is a fraction of the path's peak ([`crate::peak`]) a fair measure.
    pub compute_bound: bool,
    /// Whether its products are f32 on the bf16 path too (a convolution
    /// with one input channel per group): its fraction is then of the f32
    /// peak.
    pub fp32_products: bool,
    pub run: Box<dyn FnMut() + Send>,
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32
                - 0.5
        })
        .collect()
}

fn conv1d_case(
    name: &'static str,
    what: &'static str,
    p: Conv1dParams,
    batch: usize,
    l: usize,
    input_grad: bool,
) -> Case {
    let lo = p.l_out(l);
    let x = values(batch * p.c_in * l, 1);
    let w = values(p.weight_len(), 2);
    let b = values(p.c_out, 3);
    let dy = values(batch * p.c_out * lo, 4);
    let mut y = vec![0f32; batch * p.c_out * lo];
    let mut dx = vec![0f32; x.len()];
    let mut dw = vec![0f32; w.len()];
    let mut db = vec![0f32; b.len()];
    let passes = if input_grad { 3.0 } else { 2.0 };
    Case {
        name,
        what,
        flops: passes * p.flops(batch, l),
        compute_bound: true,
        fp32_products: p.c_in_g() == 1,
        run: Box::new(move || {
            conv1d_forward(&p, &x, batch, l, &w, Some(&b), &mut y)
                .expect("valid kernel parameters");
            conv1d_backward(
                &p,
                &x,
                batch,
                l,
                &w,
                &dy,
                input_grad.then_some(&mut dx[..]),
                &mut dw,
                Some(&mut db),
            )
            .expect("valid kernel parameters");
        }),
    }
}

fn conv2d_case(
    name: &'static str,
    what: &'static str,
    p: Conv2dParams,
    batch: usize,
    h: usize,
    w_: usize,
    input_grad: bool,
) -> Case {
    let (ho, wo) = p.out_hw(h, w_);
    let x = values(batch * p.c_in * h * w_, 5);
    let w = values(p.weight_len(), 6);
    let b = values(p.c_out, 7);
    let dy = values(batch * p.c_out * ho * wo, 8);
    let mut y = vec![0f32; dy.len()];
    let mut dx = vec![0f32; x.len()];
    let mut dw = vec![0f32; w.len()];
    let mut db = vec![0f32; b.len()];
    let passes = if input_grad { 3.0 } else { 2.0 };
    Case {
        name,
        what,
        flops: passes * p.flops(batch, h, w_),
        compute_bound: true,
        fp32_products: false,
        run: Box::new(move || {
            conv2d_forward(&p, &x, batch, h, w_, &w, Some(&b), &mut y)
                .expect("valid kernel parameters");
            conv2d_backward(
                &p,
                &x,
                batch,
                h,
                w_,
                &w,
                &dy,
                input_grad.then_some(&mut dx[..]),
                &mut dw,
                Some(&mut db),
            )
            .expect("valid kernel parameters");
        }),
    }
}

/// A fused conv1d + ReLU + max-pool 2 layer, as training runs it: the
/// forward pass, or the backward pass (after one forward pass).
fn conv1d_pool_case(
    name: &'static str,
    what: &'static str,
    p: Conv1dParams,
    batch: usize,
    l: usize,
    backward: bool,
) -> Case {
    let lp2 = p.l_out(l) / 2;
    let x = values(batch * p.c_in * l, 1);
    let w = values(p.weight_len(), 2);
    let b = values(p.c_out, 3);
    let dy = values(batch * p.c_out * lp2, 4);
    let mut y = vec![0f32; dy.len()];
    let mut mask = vec![0f32; dy.len()];
    let mut dx = vec![0f32; x.len()];
    let mut dw = vec![0f32; w.len()];
    let mut db = vec![0f32; b.len()];
    let input_grad = p.c_in > 1;
    let act = Activation::Relu;
    if backward {
        conv1d_act_maxpool2_forward(&p, act, &x, batch, l, &w, Some(&b), &mut y, &mut mask)
            .expect("valid kernel parameters");
    }
    let passes = if backward && input_grad { 2.0 } else { 1.0 };
    Case {
        name,
        what,
        flops: passes * p.flops(batch, l),
        compute_bound: true,
        fp32_products: p.c_in_g() == 1,
        run: Box::new(move || {
            if backward {
                conv1d_act_maxpool2_backward(
                    &p,
                    &x,
                    batch,
                    l,
                    &w,
                    &mask,
                    &dy,
                    input_grad.then_some(&mut dx[..]),
                    &mut dw,
                    Some(&mut db),
                )
                .expect("valid kernel parameters");
            } else {
                conv1d_act_maxpool2_forward(&p, act, &x, batch, l, &w, Some(&b), &mut y, &mut mask)
                    .expect("valid kernel parameters");
            }
        }),
    }
}

/// A dense layer (the peer genomic model's 79,904 → 64 at batch 32,
/// LeNet-5's 400 → 120 and 120 → 84 at batch 64): its forward pass, its
/// backward pass, or both.
fn dense_case(
    name: &'static str,
    what: &'static str,
    (batch, n_in, n_out): (usize, usize, usize),
    forward: bool,
    backward: bool,
) -> Case {
    let x = values(batch * n_in, 11);
    let w = values(n_out * n_in, 12);
    let b = values(n_out, 13);
    let dy = values(batch * n_out, 14);
    let mut y = vec![0f32; batch * n_out];
    let mut dx = vec![0f32; x.len()];
    let mut dw = vec![0f32; w.len()];
    let mut db = vec![0f32; n_out];
    let passes = if forward { 1.0 } else { 0.0 } + if backward { 2.0 } else { 0.0 };
    Case {
        name,
        what,
        flops: passes * 2.0 * (batch * n_in * n_out) as f64,
        compute_bound: true,
        fp32_products: false,
        run: Box::new(move || {
            if forward {
                dense_forward(&x, batch, n_in, &w, n_out, Some(&b), &mut y)
                    .expect("buffers of the right length");
            }
            if backward {
                dense_backward(
                    &x,
                    batch,
                    n_in,
                    &w,
                    n_out,
                    &dy,
                    Some(&mut dx),
                    &mut dw,
                    Some(&mut db),
                )
                .expect("buffers of the right length");
            }
        }),
    }
}

/// All cases, with fresh buffers.
pub fn all() -> Vec<Case> {
    let mut cases = vec![
        conv1d_case(
            "genomic_conv1",
            "conv1d 1→16 k5 on 32×1×10000: forward + weight gradient",
            Conv1dParams::new(1, 16, 5),
            32,
            10_000,
            false,
        ),
        conv1d_case(
            "genomic_conv2",
            "conv1d 16→32 k5 on 32×16×4998: forward + input and weight gradients",
            Conv1dParams::new(16, 32, 5),
            32,
            4998,
            true,
        ),
    ];
    {
        let p = Pool1dParams::new(PoolKind::Max, 2);
        let (rows, l) = (32 * 32, 4994);
        let x = values(rows * l, 9);
        let dy = values(rows * p.l_out(l), 10);
        let mut y = vec![0f32; dy.len()];
        let mut dx = vec![0f32; x.len()];
        cases.push(Case {
            name: "genomic_pool",
            what: "max-pool 2 on 32×32×4994: forward + backward (one comparison per input, twice)",
            flops: 2.0 * (rows * l) as f64,
            compute_bound: false,
            fp32_products: false,
            run: Box::new(move || {
                pool1d_forward(&p, &x, rows, l, &mut y).expect("valid kernel parameters");
                pool1d_backward(&p, &x, rows, l, &dy, &mut dx).expect("valid kernel parameters");
            }),
        });
    }
    cases.push(dense_case(
        "genomic_dense",
        "dense 79904→64, batch 32: forward + input and weight gradients",
        (32, 79_904, 64),
        true,
        true,
    ));
    for backward in [false, true] {
        cases.push(conv1d_pool_case(
            if backward {
                "g_conv1pool_b"
            } else {
                "g_conv1pool_f"
            },
            if backward {
                "fused conv1d 1→16 k5 + relu + max-pool 2 on 32×1×10000: backward (weights)"
            } else {
                "fused conv1d 1→16 k5 + relu + max-pool 2 on 32×1×10000: forward"
            },
            Conv1dParams::new(1, 16, 5),
            32,
            10_000,
            backward,
        ));
        cases.push(conv1d_pool_case(
            if backward { "g_conv2pool_b" } else { "g_conv2pool_f" },
            if backward {
                "fused conv1d 16→32 k5 + relu + max-pool 2 on 32×16×4998: backward (input and weights; Winograd F(4,5) on f32 paths where it pays, GENOCNN_WINOGRAD forces it: rated by the direct flops)"
            } else {
                "fused conv1d 16→32 k5 + relu + max-pool 2 on 32×16×4998: forward (Winograd F(4,5), 2.5× fewer products, on f32 paths where it pays, GENOCNN_WINOGRAD forces it: rated by the direct flops)"
            },
            Conv1dParams::new(16, 32, 5),
            32,
            4998,
            backward,
        ));
    }
    cases.push(dense_case(
        "g_dense_f",
        "dense 79904→64, batch 32: forward",
        (32, 79_904, 64),
        true,
        false,
    ));
    cases.push(dense_case(
        "g_dense_b",
        "dense 79904→64, batch 32: backward (input and weights)",
        (32, 79_904, 64),
        false,
        true,
    ));
    {
        let n = 79_904 * 64;
        let mut p = values(n, 15);
        let g = values(n, 16);
        let mut m = vec![0f32; n];
        let mut v = vec![0f32; n];
        let mut step = 0;
        cases.push(Case {
            name: "g_adam",
            what: "one Adam step on the dense layer's 5.1M weights (flops: 1 per weight)",
            flops: n as f64,
            compute_bound: false,
            fp32_products: false,
            run: Box::new(move || {
                step += 1;
                let h = AdamStep {
                    lr: 1e-3,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.0,
                    decoupled: false,
                    step,
                };
                adam_step(h, &mut p, &g, &mut m, &mut v).expect("buffers of the right length");
            }),
        });
    }
    for (name, what, shape, forward) in [
        (
            "l_dense1_f",
            "dense 400→120, batch 64: forward",
            (64, 400, 120),
            true,
        ),
        (
            "l_dense1_b",
            "dense 400→120, batch 64: backward (input and weights)",
            (64, 400, 120),
            false,
        ),
        (
            "l_dense2_f",
            "dense 120→84, batch 64: forward",
            (64, 120, 84),
            true,
        ),
        (
            "l_dense2_b",
            "dense 120→84, batch 64: backward (input and weights)",
            (64, 120, 84),
            false,
        ),
    ] {
        cases.push(dense_case(name, what, shape, forward, !forward));
    }
    cases.push(conv2d_case(
        "lenet_conv1",
        "conv2d 1→6 k5 pad 2 on 64×1×28×28: forward + weight gradient",
        Conv2dParams::new(1, 6, 5).padding(Padding::Explicit(2, 2)),
        64,
        28,
        28,
        false,
    ));
    cases.push(conv2d_case(
        "lenet_conv2",
        "conv2d 6→16 k5 on 64×6×14×14: forward + input and weight gradients",
        Conv2dParams::new(6, 16, 5),
        64,
        14,
        14,
        true,
    ));
    cases
}
