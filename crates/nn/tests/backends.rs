//! One test body for every compiled backend: each layer type, each
//! container and each shipped config gives the same forward outputs, input
//! gradients and parameter gradients as the native backend (within 1e-4,
//! relative to the largest value or 0.01), in training and in evaluation mode, and
//! three epochs of training from the same weights give the same loss
//! curve. Native is checked against its own unfused network; candle-cpu
//! with the `candle` feature; CUDA with the `cuda` feature when a device
//! answers (GENOCNN_TEST_CUDA=0 skips it; GENOCNN_REQUIRE_CUDA makes a
//! missing device a failure).

mod common;
use common::{data, layers};
use nn::{Backend, Ctx, Init, LayerSpec, Loss, Native, Network, OptState, Optimizer};

/// The `[[layers]]` of a shipped config.
fn config_layers(name: &str) -> Vec<LayerSpec> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    let mut t = toml::map::Map::new();
    t.insert("layers".into(), v["layers"].clone());
    layers(&toml::to_string(&toml::Value::Table(t)).unwrap())
}

/// max |a − b| / max(max |b|, 1e-2): relative to the largest value, and
/// to 0.01 where every value is smaller. A gradient that is zero in exact
/// arithmetic (a bias before batch norm: the norm removes the mean) is a
/// sum of terms that cancel, so each backend's rounding is judged by the
/// terms' size rather than by the result's.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-2f64, |m, v| m.max(v.abs() as f64));
    a.iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()))
        / scale
}

/// Everything one forward and backward pass produces, on the host.
struct Pass {
    out: Vec<f32>,
    dx: Vec<f32>,
    grads: Vec<(String, Vec<f32>)>,
}

fn pass<B: Backend>(
    b: B,
    specs: &[LayerSpec],
    input: &[usize],
    batch: usize,
    ctx: Ctx,
    fuse: bool,
) -> Pass {
    let net = Network::builder(b.clone(), specs, input)
        .seed(5)
        .fuse(fuse)
        .build()
        .unwrap();
    let mut shape = vec![batch];
    shape.extend_from_slice(input);
    let x = b.tensor(data(shape.iter().product(), 21), &shape).unwrap();
    let mut p = net.forward(&x, &ctx).unwrap();
    let out_shape = b.shape(&p.output);
    let out_v = b.to_vec(&p.output).unwrap();
    let dy = b.tensor(data(out_v.len(), 31), &out_shape).unwrap();
    let (dx, g) = net.backward_with(&mut p, dy, true, true).unwrap();
    let g = g.unwrap();
    let grads = net
        .params()
        .iter()
        .filter(|p| p.trainable)
        .map(|p| {
            let v = g
                .get(p.id)
                .map(|t| b.to_vec(t).unwrap())
                .unwrap_or_default();
            (p.name.clone(), v)
        })
        .collect();
    Pass {
        out: out_v,
        dx: b.to_vec(&dx.unwrap()).unwrap(),
        grads,
    }
}

/// Three epochs of Adam on a fixed problem; the mean loss of each.
fn curve<B: Backend>(b: B, specs: &[LayerSpec], input: &[usize]) -> Vec<f64> {
    let mut net = Network::build(b.clone(), specs, input, Init::He, 9).unwrap();
    let mut state = OptState::new();
    let n = 64;
    let per: usize = input.iter().product();
    let xs = data(n * per, 41);
    let ys: Vec<f32> = (0..n)
        .map(|i| xs[i * per..(i + 1) * per].iter().step_by(3).sum::<f32>() * 0.3)
        .collect();
    let opt = Optimizer::default();
    let mut step = 0;
    let mut losses = Vec::new();
    for _ in 0..3 {
        let mut total = 0.0;
        for c in 0..n / 16 {
            let mut shape = vec![16];
            shape.extend_from_slice(input);
            let x = b
                .tensor(xs[c * 16 * per..(c + 1) * 16 * per].to_vec(), &shape)
                .unwrap();
            step += 1;
            let u = opt.update(1e-3, step);
            let targets = &ys[c * 16..(c + 1) * 16];
            let out = nn::train_step(
                &mut net,
                &mut state,
                &x,
                Loss::Mse,
                1,
                targets,
                &u,
                step as u64,
                false,
            )
            .unwrap();
            total += out.loss;
        }
        losses.push(total / (n / 16) as f64);
    }
    losses
}

/// The cases: (name, layers, one sample's shape, batch).
fn cases() -> Vec<(String, Vec<LayerSpec>, Vec<usize>, usize)> {
    let t = |s: &str| layers(s);
    let mut v = vec![
        (
            "conv1d valid + stride + dilation".to_string(),
            t(r#"
            [[layers]]
            type = "conv1d"
            filters = 4
            kernel = 3
            stride = 2
            dilation = 2
            activation = "elu"
            [[layers]]
            type = "conv1d"
            filters = 4
            kernel = 4
            padding = "same"
            groups = 2
            activation = "leaky_relu"
            [[layers]]
            type = "flatten"
            [[layers]]
            type = "dense"
            units = 3
            activation = "sigmoid"
        "#),
            vec![2, 37],
            3,
        ),
        (
            "conv1d + max pool 2 (fused), avg pool, global pool".into(),
            t(r#"
            [[layers]]
            type = "conv1d"
            filters = 6
            kernel = 5
            activation = "relu"
            [[layers]]
            type = "max_pool1d"
            size = 2
            [[layers]]
            type = "conv1d"
            filters = 5
            kernel = 3
            activation = "tanh"
            [[layers]]
            type = "avg_pool1d"
            size = 3
            [[layers]]
            type = "conv1d"
            filters = 4
            kernel = 2
            activation = "softplus"
            [[layers]]
            type = "max_pool1d"
            size = 3
            [[layers]]
            type = "global_avg_pool"
            [[layers]]
            type = "dense"
            units = 2
        "#),
            vec![1, 64],
            3,
        ),
        (
            "separable conv1d, batch norm, dropout".into(),
            t(r#"
            [[layers]]
            type = "separable_conv1d"
            filters = 6
            kernel = 3
            depth_multiplier = 2
            activation = "relu"
            [[layers]]
            type = "batch_norm"
            [[layers]]
            type = "dropout"
            rate = 0.3
            [[layers]]
            type = "flatten"
            [[layers]]
            type = "dense"
            units = 8
            activation = "tanh"
            l1 = 0.01
            l2 = 0.02
            [[layers]]
            type = "batch_norm"
            [[layers]]
            type = "dense"
            units = 1
        "#),
            vec![3, 20],
            4,
        ),
        (
            "conv2d + max pool 2×2 (fused), avg pool 2d, separable conv2d".into(),
            t(r#"
            [[layers]]
            type = "conv2d"
            filters = 4
            kernel = 3
            padding = "same"
            activation = "relu"
            [[layers]]
            type = "max_pool2d"
            size = 2
            [[layers]]
            type = "separable_conv2d"
            filters = 5
            kernel = 3
            activation = "elu"
            [[layers]]
            type = "batch_norm"
            [[layers]]
            type = "conv2d"
            filters = 3
            kernel = 2
            stride = 2
            [[layers]]
            type = "avg_pool2d"
            size = 1
            [[layers]]
            type = "flatten"
            [[layers]]
            type = "dense"
            units = 4
        "#),
            vec![2, 13, 12],
            2,
        ),
        (
            "pools with strides and padding".into(),
            t(r#"
            [[layers]]
            type = "conv1d"
            filters = 3
            kernel = 3
            activation = "tanh"
            [[layers]]
            type = "max_pool1d"
            size = 3
            stride = 2
            padding = 1
            [[layers]]
            type = "avg_pool1d"
            size = 3
            stride = 2
            padding = 1
            [[layers]]
            type = "flatten"
            [[layers]]
            type = "dense"
            units = 2
        "#),
            vec![2, 41],
            3,
        ),
        (
            "2D pools with strides and padding".into(),
            t(r#"
            [[layers]]
            type = "conv2d"
            filters = 3
            kernel = 3
            activation = "relu"
            [[layers]]
            type = "max_pool2d"
            size = 3
            stride = 2
            padding = 1
            [[layers]]
            type = "avg_pool2d"
            size = 2
            stride = 1
            [[layers]]
            type = "avg_pool2d"
            size = 3
            stride = 2
            padding = 1
            [[layers]]
            type = "flatten"
            [[layers]]
            type = "dense"
            units = 2
        "#),
            vec![1, 15, 14],
            2,
        ),
        (
            "containers: branches (concat, add), residual (identity, projection), sequential"
                .into(),
            t(r#"
            [[layers]]
            type = "branches"
            merge = "concat"
            [[layers.branch]]
            [[layers.branch.layers]]
            type = "conv1d"
            filters = 3
            kernel = 1
            activation = "relu"
            [[layers.branch]]
            [[layers.branch.layers]]
            type = "conv1d"
            filters = 2
            kernel = 1
            [[layers.branch.layers]]
            type = "conv1d"
            filters = 3
            kernel = 5
            padding = "same"
            activation = "elu"
            [[layers.branch]]
            [[layers.branch.layers]]
            type = "max_pool1d"
            size = 3
            stride = 1
            padding = 1
            [[layers.branch.layers]]
            type = "conv1d"
            filters = 2
            kernel = 1
            activation = "softplus"
            [[layers]]
            type = "residual"
            activation = "relu"
            [[layers.layers]]
            type = "conv1d"
            filters = 8
            kernel = 3
            padding = "same"
            activation = "relu"
            [[layers.layers]]
            type = "batch_norm"
            [[layers]]
            type = "residual"
            [[layers.layers]]
            type = "sequential"
            [[layers.layers.layers]]
            type = "conv1d"
            filters = 4
            kernel = 3
            stride = 2
            padding = 1
            activation = "tanh"
            [[layers]]
            type = "branches"
            merge = "add"
            [[layers.branch]]
            [[layers.branch.layers]]
            type = "conv1d"
            filters = 4
            kernel = 4
            padding = "same"
            activation = "relu"
            [[layers.branch.layers]]
            type = "conv1d"
            filters = 4
            kernel = 6
            padding = "same"
            activation = "relu"
            [[layers.branch]]
            [[layers.branch.layers]]
            type = "conv1d"
            filters = 4
            kernel = 4
            padding = "same"
            activation = "relu"
            [[layers]]
            type = "max_pool1d"
            size = 2
            [[layers]]
            type = "dropout"
            rate = 0.25
            [[layers]]
            type = "flatten"
            [[layers]]
            type = "dense"
            units = 2
        "#),
            vec![2, 33],
            3,
        ),
        (
            "2D containers: an Inception block and a residual block".into(),
            t(r#"
            [[layers]]
            type = "branches"
            [[layers.branch]]
            [[layers.branch.layers]]
            type = "conv2d"
            filters = 2
            kernel = 1
            activation = "relu"
            [[layers.branch]]
            [[layers.branch.layers]]
            type = "conv2d"
            filters = 2
            kernel = 1
            activation = "relu"
            [[layers.branch.layers]]
            type = "conv2d"
            filters = 3
            kernel = 3
            padding = "same"
            activation = "relu"
            [[layers.branch]]
            [[layers.branch.layers]]
            type = "max_pool2d"
            size = 3
            stride = 1
            padding = 1
            [[layers.branch.layers]]
            type = "conv2d"
            filters = 2
            kernel = 1
            activation = "relu"
            [[layers]]
            type = "residual"
            activation = "relu"
            [[layers.layers]]
            type = "conv2d"
            filters = 4
            kernel = 3
            stride = 2
            padding = 1
            activation = "relu"
            [[layers.layers]]
            type = "batch_norm"
            [[layers]]
            type = "global_avg_pool"
            [[layers]]
            type = "dense"
            units = 3
        "#),
            vec![2, 9, 10],
            2,
        ),
    ];
    for (cfg, input, batch) in [
        ("peer-genomic.toml", vec![1, 300], 3),
        ("cnn1d-pez.toml", vec![1, 300], 3),
        ("cnn1d-dnngp.toml", vec![1, 120], 3),
        ("cnn1d-separable.toml", vec![1, 300], 3),
        ("mlp.toml", vec![1, 200], 3),
        ("lenet5.toml", vec![1, 28, 28], 2),
        ("vgg-small.toml", vec![3, 32, 32], 2),
        ("inception1d.toml", vec![1, 300], 3),
        ("resnet1d.toml", vec![1, 300], 3),
        ("dualcnn.toml", vec![3, 300], 3),
        ("googlenet-mini.toml", vec![1, 28, 28], 2),
        ("vgg11.toml", vec![3, 32, 32], 2),
    ] {
        v.push((format!("configs/{cfg}"), config_layers(cfg), input, batch));
    }
    v
}

/// Compares a backend with the native one on every case, in training and
/// in evaluation mode (where the input gradient is that of the inference
/// function). `fuse` builds the backend's networks with the fusion pass.
fn conforms_with<B: Backend>(b: B, fuse: bool) {
    conforms_within(b, fuse, 1e-4, None, 1e-4)
}

/// The cosine of the angle between two vectors.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 && nb == 0.0 {
        1.0
    } else {
        dot / (na * nb)
    }
}

/// [`conforms_with`] within `tol` (outputs; gradients too unless `angle`
/// is given) and `curve_tol` (loss curves). With `angle`, the gradients
/// (the input gradient, and all parameters' gradients as one vector) are
/// compared by direction instead: cosine ≥ `angle`.
fn conforms_within<B: Backend>(b: B, fuse: bool, tol: f64, angle: Option<f64>, curve_tol: f64) {
    for (name, specs, input, batch) in cases() {
        for (mode, ctx) in [("train", Ctx::train(7)), ("eval", Ctx::eval().recording())] {
            let want = pass(Native::new(), &specs, &input, batch, ctx, true);
            let got = pass(b.clone(), &specs, &input, batch, ctx, fuse);
            let tag = format!(
                "{}{} on {name} ({mode})",
                b.name(),
                if fuse { "" } else { " unfused" }
            );
            assert!(
                rel(&got.out, &want.out) <= tol,
                "{tag}: outputs differ by {}",
                rel(&got.out, &want.out)
            );
            if let Some(angle) = angle {
                let flat = |p: &Pass| {
                    p.grads
                        .iter()
                        .flat_map(|(_, g)| g.clone())
                        .collect::<Vec<_>>()
                };
                let (cx, cg) = (cosine(&got.dx, &want.dx), cosine(&flat(&got), &flat(&want)));
                assert!(cx >= angle, "{tag}: input gradients at cosine {cx}");
                assert!(cg >= angle, "{tag}: parameter gradients at cosine {cg}");
                continue;
            }
            assert!(
                rel(&got.dx, &want.dx) <= tol,
                "{tag}: input gradients differ by {}",
                rel(&got.dx, &want.dx)
            );
            assert_eq!(got.grads.len(), want.grads.len());
            for ((n, g), (_, w)) in got.grads.iter().zip(&want.grads) {
                assert!(
                    rel(g, w) <= tol,
                    "{tag}: gradient of {n} differs by {}",
                    rel(g, w)
                );
            }
        }
    }
    // Training: the loss curves of three epochs agree within 1e-4 (relative;
    // `curve_tol`).
    for cfg in [
        "peer-genomic.toml",
        "cnn1d-dnngp.toml",
        "inception1d.toml",
        "resnet1d.toml",
    ] {
        let specs = config_layers(cfg);
        let want = curve(Native::new(), &specs, &[1, 120]);
        let got = curve(b.clone(), &specs, &[1, 120]);
        // The residual network's curve is the most sensitive to rounding:
        // in bf16 it drifts from f32's by 4–7% in epochs 2–3 (4.2% and
        // 2.2% with its first convolution in bf16, 5.1% and 6.5% with it
        // in f32), while the others stay within 1%: twice bf16's
        // tolerance there (f32's, 1e-4, is not widened).
        let curve_tol = if cfg == "resnet1d.toml" && curve_tol > 1e-3 {
            2.0 * curve_tol
        } else {
            curve_tol
        };
        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= curve_tol * w.abs().max(1e-3),
                "{} on {cfg}: epoch {} loss {g} against native {w}",
                b.name(),
                e + 1
            );
        }
    }
}

fn conforms<B: Backend>(b: B) {
    conforms_with(b, true);
}

/// The native backend against its own unfused networks: the fused kernels
/// and the fusion pass change no figure beyond rounding.
#[test]
fn native_conforms() {
    conforms_with(Native::new(), false);
}

/// The native backend with its matrix products in bf16 (`--precision
/// bf16`) against the f32 native one. Each bf16 product is within
/// 2⁻⁷ + 2⁻¹⁶ of its exact value (relative). The cases chain up to eight
/// products between input and output (a separable convolution is two, a
/// residual or Inception block two or three), so outputs are
/// held to 8 · 2⁻⁷ = 2⁻⁴ of the largest value (the worst case is 0.036),
/// and three epochs' loss curves to the same 2⁻⁴ (relative; the worst is
/// 0.025). Gradients are compared by direction (cosine ≥ 0.95; the worst
/// is 0.98, where a wrong pairing of operands gives about 0): a
/// gradient element is a sum whose terms nearly cancel more often than an
/// output is (a bias before batch norm is zero in exact arithmetic), and
/// the rounding of the terms then shows at their size, not at the
/// result's: elementwise, bf16 gradients differ from f32's by up to 0.35
/// of the largest value here, in any low precision as in this one.
///
/// On every bf16 path this CPU runs: AMX tiles and AVX512-BF16.
#[test]
fn native_bf16_conforms() {
    let paths = kernels::SimdPath::available_bf16();
    if paths.is_empty() {
        eprintln!("skipping native bf16: this CPU has no AVX512-BF16");
    }
    for path in paths {
        let b = Native::new().with_path(path).unwrap();
        conforms_within(b, true, 2f64.powi(-4), Some(0.95), 2f64.powi(-4));
    }
}

#[cfg(feature = "candle")]
#[test]
fn candle_cpu_conforms() {
    conforms(nn::Candle::new(nn::CandleDevice::Cpu).expect("the candle CPU device"));
}

#[cfg(not(feature = "candle"))]
#[test]
fn candle_cpu_conforms() {
    eprintln!(
        "skipping candle-cpu: {}",
        nn::candle::not_built(nn::CandleDevice::Cpu)
    );
}

#[test]
fn cuda_conforms() {
    if std::env::var("GENOCNN_TEST_CUDA").is_ok_and(|v| v == "0") {
        eprintln!("skipping cuda: GENOCNN_TEST_CUDA=0");
        return;
    }
    #[cfg(feature = "candle")]
    let device = nn::Candle::new(nn::CandleDevice::Cuda(0));
    #[cfg(not(feature = "candle"))]
    let device: nn::Result<Native> = Err(nn::candle::not_built(nn::CandleDevice::Cuda(0)));
    match device {
        Ok(b) => conforms(b),
        // scripts/gpu-check.sh sets GENOCNN_REQUIRE_CUDA: there a missing
        // device is a failure, not a skip.
        Err(e) if std::env::var_os("GENOCNN_REQUIRE_CUDA").is_some() => {
            panic!("no CUDA device: {e}")
        }
        Err(e) => eprintln!("skipping cuda: {e}"),
    }
}

/// Inference (an evaluation pass that records nothing, as `predict` runs)
/// skips the fused pools' masks, which only backward reads: on every case
/// its outputs equal the recording evaluation pass's bit for bit, and the
/// unfused network's (the convolution, then the pool) within 1e-5, on
/// every bf16 and f32 path this CPU runs.
#[test]
fn inference_passes_skip_the_masks_and_give_the_same_outputs() {
    let mut backends = vec![Native::new()];
    backends.extend(
        kernels::SimdPath::available_bf16()
            .into_iter()
            .map(|p| Native::new().with_path(p).unwrap()),
    );
    let mut fused_cases = 0;
    for b in backends {
        for (name, specs, input, batch) in cases() {
            let build = |fuse: bool| {
                Network::builder(b.clone(), &specs, &input)
                    .seed(5)
                    .fuse(fuse)
                    .build()
                    .unwrap()
            };
            let (fused, unfused) = (build(true), build(false));
            let mut shape = vec![batch];
            shape.extend_from_slice(&input);
            let x = b.tensor(data(shape.iter().product(), 21), &shape).unwrap();
            let out = |net: &Network<Native>, ctx: Ctx| {
                b.to_vec(&net.forward(&x, &ctx).unwrap().output).unwrap()
            };
            let inferred = out(&fused, Ctx::eval());
            assert_eq!(inferred, out(&fused, Ctx::eval().recording()), "{name}");
            let plain = out(&unfused, Ctx::eval());
            assert!(
                rel(&inferred, &plain) <= 1e-5,
                "{name}: {}",
                rel(&inferred, &plain)
            );
            fused_cases += usize::from(
                nn::Layer::children(fused.root())
                    .iter()
                    .any(|l| l.kind() == "conv+pool"),
            );
        }
    }
    assert!(fused_cases > 0, "no case has a fused convolution and pool");
}

/// The weights a dense layer prepares for inference (on the `amxbf16` path,
/// rounded and packed into the tiles' rows once, not by every batch) give
/// the recording pass's outputs bit for bit, batch after batch, and follow
/// the weights when they change (lent out by `params_mut`, as the
/// optimizer and weight loading have them), on every path this CPU runs.
#[test]
fn prepared_dense_weights_follow_the_weights() {
    let specs = layers(
        r#"
        [[layers]]
        type = "dense"
        units = 70
        activation = "relu"
        [[layers]]
        type = "dense"
        units = 3
    "#,
    );
    let n_in = 3000;
    let mut backends = vec![Native::new()];
    backends.extend(
        kernels::SimdPath::available_bf16()
            .into_iter()
            .map(|p| Native::new().with_path(p).unwrap()),
    );
    for b in backends {
        let mut net = Network::builder(b.clone(), &specs, &[n_in])
            .seed(7)
            .build()
            .unwrap();
        let out = |net: &Network<Native>, x: &nn::HostTensor, ctx: Ctx| {
            b.to_vec(&net.forward(x, &ctx).unwrap().output).unwrap()
        };
        let x = b.tensor(data(5 * n_in, 31), &[5, n_in]).unwrap();
        let before = out(&net, &x, Ctx::eval());
        for (batch, seed) in [(1, 32), (5, 31), (2, 33)] {
            let x = b.tensor(data(batch * n_in, seed), &[batch, n_in]).unwrap();
            let inferred = out(&net, &x, Ctx::eval());
            assert_eq!(
                inferred,
                out(&net, &x, Ctx::eval().recording()),
                "batch {batch}"
            );
        }
        for p in net.params_mut() {
            let shape = b.shape(&p.value);
            let v: Vec<f32> = b
                .to_vec(&p.value)
                .unwrap()
                .iter()
                .map(|w| 0.5 * w + 0.01)
                .collect();
            p.value = b.tensor(v, &shape).unwrap();
        }
        let after = out(&net, &x, Ctx::eval());
        assert_ne!(after, before, "the outputs did not follow the weights");
        assert_eq!(
            after,
            out(&net, &x, Ctx::eval().recording()),
            "after the change"
        );
    }
}
