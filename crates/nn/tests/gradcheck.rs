//! Whole-model checks: gradients of every layer type against finite
//! differences, and a network that overfits a small sample.

mod common;
use common::{data, layers};
use nn::{Ctx, HostTensor, Init, LayerSpec, Loss, Native, Network, OptState, Optimizer};

/// Loss of the network on (x, y), with dropout masks fixed (a training
/// pass that commits nothing, so batch norm uses the batch's statistics).
fn loss(net: &Network<Native>, x: &HostTensor, y: &[f32], loss: Loss) -> f64 {
    let out = net.forward(x, &Ctx::train(0)).unwrap().output;
    let width = out.shape[1];
    let (l, _) = loss.eval(&out.data, width, y).unwrap();
    l + penalties(net)
}

fn penalties(net: &Network<Native>) -> f64 {
    net.params()
        .iter()
        .map(|p| {
            p.value
                .data
                .iter()
                .map(|&v| (p.l1 * v.abs() + p.l2 * v * v) as f64)
                .sum::<f64>()
        })
        .sum()
}

fn gradcheck(name: &str, specs: &str, input: &[usize], lossf: Loss, targets: Vec<f32>) {
    let mut net = Network::build(Native::new(), &layers(specs), input, Init::Glorot, 3).unwrap();
    // One target per sample for softmax, one per output otherwise.
    let width: usize = net.output_shape.iter().product();
    let batch = if lossf == Loss::SoftmaxCrossEntropy {
        targets.len()
    } else {
        targets.len() / width
    };
    let mut shape = vec![batch];
    shape.extend_from_slice(input);
    let x = HostTensor::new(data(shape.iter().product(), 11), &shape).unwrap();
    // Analytic gradients.
    let mut pass = net.forward(&x, &Ctx::train(0)).unwrap();
    let out = &pass.output;
    let (_, dy) = lossf.eval(&out.data, out.shape[1], &targets).unwrap();
    let dyt = HostTensor::new(dy, &out.shape).unwrap();
    let mut g = net.backward(&mut pass, dyt).unwrap();
    net.apply_penalties(&mut g).unwrap();
    let grads: Vec<(String, Vec<f32>, bool)> = net
        .params()
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                g.get(p.id).map(|g| g.data.clone()).unwrap_or_default(),
                p.trainable,
            )
        })
        .collect();
    // Central differences, in f32 arithmetic with f64 loss sums.
    let h = 1e-3f32;
    let mut worst = 0f64;
    for (k, (pname, g, trainable)) in grads.iter().enumerate() {
        if !trainable {
            continue;
        }
        let n = g.len();
        let scale = g.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-2) as f64;
        for i in (0..n).step_by((n / 25).max(1)) {
            let orig = net.params()[k].value.data[i];
            net.params_mut()[k].value.data[i] = orig + h;
            let lp = loss(&net, &x, &targets, lossf);
            net.params_mut()[k].value.data[i] = orig - h;
            let lm = loss(&net, &x, &targets, lossf);
            net.params_mut()[k].value.data[i] = orig;
            let fd = (lp - lm) / (2.0 * h as f64);
            let err = (fd - g[i] as f64).abs() / scale;
            assert!(
                err < 1e-2,
                "{name}: {pname}[{i}]: analytic {} vs finite difference {fd}",
                g[i]
            );
            worst = worst.max(err);
        }
    }
    eprintln!("{name}: worst relative difference {worst:.2e}");
}

/// Several traits, some records missing: the loss is each trait's mean over
/// its records present, averaged over the traits, and a missing record adds
/// nothing, so its output's gradient is 0 and so is the finite difference
/// of the loss in it.
#[test]
fn missing_records_are_masked_out_of_a_multi_trait_loss() {
    let specs = r#"
        [[layers]]
        type = "flatten"
        [[layers]]
        type = "dense"
        units = 5
        activation = "tanh"
        [[layers]]
        type = "dense"
        units = 3
    "#;
    // 4 samples × 3 traits; the second trait missing for samples 0 and 2,
    // the third for sample 3.
    let mut t = data(12, 21);
    for k in [1, 7, 11] {
        t[k] = f32::NAN;
    }
    for loss in [Loss::Mse, Loss::Huber] {
        gradcheck("multi-trait", specs, &[2, 6], loss, t.clone());
        // The loss against outputs directly.
        let out = data(12, 4);
        let (l, g) = loss.eval(&out, 3, &t).unwrap();
        let present: Vec<usize> = (0..12).filter(|&k| !t[k].is_nan()).collect();
        let h = 1e-3f32;
        for k in 0..12 {
            let mut o = out.clone();
            o[k] += h;
            let (lp, _) = loss.eval(&o, 3, &t).unwrap();
            o[k] -= 2.0 * h;
            let (lm, _) = loss.eval(&o, 3, &t).unwrap();
            let fd = (lp - lm) / (2.0 * h as f64);
            if t[k].is_nan() {
                assert_eq!(g[k], 0.0, "{loss:?}: output {k}");
                assert!(fd.abs() < 1e-9, "{loss:?}: output {k}: {fd}");
            } else {
                assert!((fd - g[k] as f64).abs() < 1e-3, "{loss:?}: output {k}");
            }
        }
        // By a naive sum: each trait's mean over its records (4, 2 and 3 of
        // them), then the mean of the three.
        let per = |k: usize| {
            let r = (out[k] - t[k]) as f64;
            match loss {
                Loss::Mse => r * r,
                _ if r.abs() <= 1.0 => 0.5 * r * r,
                _ => r.abs() - 0.5,
            }
        };
        let want: f64 = (0..3)
            .map(|c| {
                let ks: Vec<usize> = present.iter().copied().filter(|k| k % 3 == c).collect();
                ks.iter().map(|&k| per(k)).sum::<f64>() / ks.len() as f64
            })
            .sum::<f64>()
            / 3.0;
        assert!((l - want).abs() < 1e-9, "{loss:?}: {l} vs {want}");
    }
    // Every record missing: no loss, no gradient.
    let (l, g) = Loss::Mse
        .eval(&[0.5, 1.0], 2, &[f32::NAN, f32::NAN])
        .unwrap();
    assert_eq!((l, g), (0.0, vec![0.0, 0.0]));
}

/// Targets that do not fit the outputs are typed errors, not panics or a
/// silent cast (issue 16): a short target vector, a softmax target that is
/// not a class number, and a class past the outputs.
#[test]
fn losses_refuse_targets_that_do_not_fit() {
    use nn::NnError;
    let e = Loss::Mse.eval(&[0.0; 4], 2, &[0.0; 3]).unwrap_err();
    assert!(matches!(e, NnError::Shape { op: "loss", .. }), "{e}");
    for bad in [1.5, -1.0, f32::NAN] {
        let e = Loss::SoftmaxCrossEntropy
            .eval(&[0.0; 6], 3, &[0.0, bad])
            .unwrap_err();
        assert!(
            matches!(e, NnError::Shape { op: "loss", ref message } if message.contains("target 1")),
            "{e}"
        );
    }
    let e = Loss::SoftmaxCrossEntropy
        .eval(&[0.0; 6], 3, &[0.0, 3.0])
        .unwrap_err();
    assert!(
        matches!(
            e,
            NnError::Kernel(kernels::KernelError::Params {
                op: "softmax_cross_entropy",
                ..
            })
        ),
        "{e}"
    );
}

#[test]
fn every_1d_layer_type() {
    let specs = r#"
        [[layers]]
        type = "conv1d"
        filters = 4
        kernel = 3
        padding = "same"
        activation = "tanh"
        l2 = 0.01
        [[layers]]
        type = "batch_norm"
        [[layers]]
        type = "separable_conv1d"
        filters = 3
        kernel = 3
        dilation = 2
        activation = "softplus"
        [[layers]]
        type = "max_pool1d"
        size = 2
        [[layers]]
        type = "dropout"
        rate = 0.25
        [[layers]]
        type = "avg_pool1d"
        size = 2
        stride = 1
        [[layers]]
        type = "conv1d"
        filters = 2
        kernel = 2
        stride = 2
        activation = "elu"
        [[layers]]
        type = "flatten"
        [[layers]]
        type = "dense"
        units = 5
        activation = "sigmoid"
        l1 = 0.01
        [[layers]]
        type = "activation"
        activation = "leaky_relu"
        [[layers]]
        type = "dense"
        units = 1
    "#;
    gradcheck("1d", specs, &[2, 21], Loss::Mse, data(4, 5));
    gradcheck(
        "1d huber",
        specs,
        &[2, 21],
        Loss::Huber,
        data(4, 6).iter().map(|v| v * 3.0).collect(),
    );
    let binary: Vec<f32> = data(4, 7)
        .iter()
        .map(|v| if *v > 0.0 { 1.0 } else { 0.0 })
        .collect();
    gradcheck(
        "1d binary",
        specs,
        &[2, 21],
        Loss::BinaryCrossEntropy,
        binary,
    );
}

#[test]
fn convolution_activation_moved_past_max_pooling() {
    // A convolution's activation moves after the max pool that follows it,
    // fused into the pooling kernel; windows of 2 (fused) and of 3 (not).
    for (act, size, stride) in [
        ("softplus", 2, 1),
        ("relu", 2, 1),
        ("elu", 3, 1),
        ("tanh", 2, 2),
        ("sigmoid", 2, 3),
    ] {
        let specs = format!(
            "[[layers]]\ntype = \"conv1d\"\nfilters = 3\nkernel = 3\nstride = {stride}\nactivation = \"{act}\"\n\
             [[layers]]\ntype = \"max_pool1d\"\nsize = {size}\n\
             [[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 1\n"
        );
        gradcheck(
            &format!("conv {act} + max pool {size}"),
            &specs,
            &[2, 20],
            Loss::Mse,
            data(3, 10),
        );
    }
}

#[test]
fn global_pooling_and_one_hot_width() {
    let specs = r#"
        [[layers]]
        type = "conv1d"
        filters = 4
        kernel = 5
        activation = "tanh"
        [[layers]]
        type = "global_max_pool"
        [[layers]]
        type = "dense"
        units = 3
        activation = "tanh"
        [[layers]]
        type = "dense"
        units = 1
    "#;
    gradcheck("global max", specs, &[3, 17], Loss::Mse, data(3, 8));
    let specs = specs.replace("global_max_pool", "global_avg_pool");
    gradcheck("global avg", &specs, &[3, 17], Loss::Mse, data(3, 9));
}

#[test]
fn every_2d_layer_type() {
    let specs = r#"
        [[layers]]
        type = "conv2d"
        filters = 3
        kernel = 3
        padding = 1
        activation = "tanh"
        [[layers]]
        type = "batch_norm"
        [[layers]]
        type = "max_pool2d"
        size = 2
        [[layers]]
        type = "separable_conv2d"
        filters = 4
        kernel = [2, 3]
        activation = "softplus"
        [[layers]]
        type = "avg_pool2d"
        size = 2
        stride = 1
        [[layers]]
        type = "global_avg_pool"
        [[layers]]
        type = "dense"
        units = 3
    "#;
    gradcheck(
        "2d softmax",
        specs,
        &[2, 9, 10],
        Loss::SoftmaxCrossEntropy,
        vec![0.0, 2.0, 1.0],
    );
}

#[test]
fn overfits_32_samples() {
    let specs = r#"
        [[layers]]
        type = "conv1d"
        filters = 8
        kernel = 5
        activation = "relu"
        [[layers]]
        type = "max_pool1d"
        size = 2
        [[layers]]
        type = "flatten"
        [[layers]]
        type = "dense"
        units = 32
        activation = "relu"
        [[layers]]
        type = "dense"
        units = 1
    "#;
    let mut net = Network::build(Native::new(), &layers(specs), &[1, 100], Init::He, 1).unwrap();
    let x = HostTensor::new(data(32 * 100, 1), &[32, 1, 100]).unwrap();
    let y = data(32, 2);
    let opt = Optimizer::default();
    let mut state = OptState::new();
    let mut last = f64::INFINITY;
    for step in 1..=400 {
        let out = nn::train_step(
            &mut net,
            &mut state,
            &x,
            Loss::Mse,
            1,
            &y,
            &opt.update(3e-3, step),
            0,
            false,
        )
        .unwrap();
        last = out.loss;
    }
    let var = y.iter().map(|v| (v * v) as f64).sum::<f64>() / 32.0;
    assert!(
        last < 1e-3 * var,
        "loss {last} after 400 steps (target variance {var})"
    );
}

#[test]
fn unknown_keys_and_impossible_shapes_are_named() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    let err = toml::from_str::<L>(
        "[[layers]]\ntype = \"conv1d\"\nfilters = 4\nkernel = 3\nfiltres = 2\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown field `filtres`") && err.contains("expected one of `filters`"),
        "{err}"
    );
    let err = toml::from_str::<L>("[[layers]]\ntype = \"convolution\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("convolution") && err.contains("conv1d"),
        "{err}"
    );
    let specs = layers("[[layers]]\ntype = \"conv1d\"\nfilters = 4\nkernel = 9\n[[layers]]\ntype = \"dense\"\nunits = 1\n");
    let err = Network::build(Native::new(), &specs, &[1, 5], Init::He, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("layer 0 (conv1d)") && err.contains("does not fit"),
        "{err}"
    );
    let specs = layers("[[layers]]\ntype = \"conv1d\"\nfilters = 4\nkernel = 3\n[[layers]]\ntype = \"dense\"\nunits = 1\n");
    let err = Network::build(Native::new(), &specs, &[1, 50], Init::He, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("layer 1 (dense)") && err.contains("flatten"),
        "{err}"
    );
}

/// Containers nested two levels deep: branches (concat) holding a residual
/// block and a sequential list, then summed branches (add) holding a
/// residual block with a projection; batch norm, dropout and pools inside.
const NESTED: &str = r#"
    [[layers]]
    type = "conv1d"
    filters = 4
    kernel = 3
    padding = "same"
    activation = "tanh"

    [[layers]]
    type = "branches"
    merge = "concat"
    [[layers.branch]]
    [[layers.branch.layers]]
    type = "residual"
    activation = "softplus"
    [[layers.branch.layers.layers]]
    type = "conv1d"
    filters = 4
    kernel = 3
    padding = "same"
    activation = "tanh"
    [[layers.branch.layers.layers]]
    type = "batch_norm"
    [[layers.branch]]
    [[layers.branch.layers]]
    type = "sequential"
    [[layers.branch.layers.layers]]
    type = "conv1d"
    filters = 3
    kernel = 5
    padding = "same"
    activation = "elu"
    [[layers.branch.layers.layers]]
    type = "max_pool1d"
    size = 3
    stride = 1
    padding = 1
    [[layers.branch.layers.layers]]
    type = "dropout"
    rate = 0.3

    [[layers]]
    type = "branches"
    merge = "add"
    [[layers.branch]]
    [[layers.branch.layers]]
    type = "conv1d"
    filters = 5
    kernel = 1
    activation = "sigmoid"
    [[layers.branch]]
    [[layers.branch.layers]]
    type = "residual"
    [[layers.branch.layers.layers]]
    type = "conv1d"
    filters = 5
    kernel = 3
    padding = "same"
    activation = "tanh"
    l2 = 0.01

    [[layers]]
    type = "avg_pool1d"
    size = 2
    [[layers]]
    type = "flatten"
    [[layers]]
    type = "dense"
    units = 1
"#;

#[test]
fn containers_nested_two_levels() {
    gradcheck(
        "nested containers",
        NESTED,
        &[2, 12],
        Loss::Mse,
        data(4, 12),
    );
    // The parameter names follow the nesting.
    let net = Network::build(Native::new(), &layers(NESTED), &[2, 12], Init::He, 1).unwrap();
    let names: Vec<String> = net.params().iter().map(|p| p.name.clone()).collect();
    for want in [
        "layers.0.weight",
        "layers.1.branch.0.layers.0.layers.0.weight",
        "layers.1.branch.0.layers.0.layers.1.running_var",
        "layers.1.branch.1.layers.0.layers.0.bias",
        "layers.2.branch.1.layers.0.layers.0.weight",
        "layers.2.branch.1.layers.0.shortcut.weight",
        "layers.5.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
}

#[test]
fn two_dimensional_containers() {
    let specs = r#"
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
        filters = 3
        kernel = 3
        padding = "same"
        activation = "tanh"
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
        [[layers]]
        type = "residual"
        activation = "relu"
        [[layers.layers]]
        type = "conv2d"
        filters = 4
        kernel = 3
        stride = 2
        padding = 1
        activation = "softplus"
        [[layers]]
        type = "global_avg_pool"
        [[layers]]
        type = "dense"
        units = 3
    "#;
    gradcheck(
        "2d containers",
        specs,
        &[2, 7, 8],
        Loss::SoftmaxCrossEntropy,
        vec![0.0, 2.0, 1.0],
    );
}

#[test]
fn container_shapes_that_cannot_work_are_named() {
    let err = |specs: &str, input: &[usize]| {
        Network::build(Native::new(), &layers(specs), input, Init::He, 1)
            .err()
            .expect("an error")
            .to_string()
    };
    let e = err(
        r#"
        [[layers]]
        type = "branches"
        [[layers.branch]]
        [[layers.branch.layers]]
        type = "conv1d"
        filters = 2
        kernel = 3
        [[layers.branch]]
        [[layers.branch.layers]]
        type = "conv1d"
        filters = 2
        kernel = 1
    "#,
        &[1, 20],
    );
    assert!(
        e.contains("layer 0 (branches)") && e.contains("2 × 18") && e.contains("2 × 20"),
        "{e}"
    );
    let e = err(
        r#"
        [[layers]]
        type = "branches"
        [[layers.branch]]
        [[layers.branch.layers]]
        type = "dense"
        units = 2
        [[layers.branch]]
        [[layers.branch.layers]]
        type = "flatten"
    "#,
        &[1, 20],
    );
    assert!(
        e.contains("layer 0.branch.0.layers.0 (dense)") && e.contains("flatten"),
        "{e}"
    );
    let e = err(
        r#"
        [[layers]]
        type = "residual"
        shortcut = "identity"
        [[layers.layers]]
        type = "conv1d"
        filters = 3
        kernel = 3
    "#,
        &[1, 20],
    );
    assert!(
        e.contains("layer 0 (residual)") && e.contains("identity"),
        "{e}"
    );
    let e = err(
        "[[layers]]\ntype = \"branches\"\n[[layers.branch]]\nlayers = []\n",
        &[1, 5],
    );
    assert!(e.contains("two or more"), "{e}");
}
