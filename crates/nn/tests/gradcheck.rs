//! Whole-model checks: gradients of every layer type against finite
//! differences, and a network that overfits a small sample.

mod common;
use common::{data, layers};
use nn::{Backend, HostTensor, Init, LayerSpec, Loss, Mode, Native, Network, Optimizer};

/// Loss of the network on (x, y), with dropout masks fixed.
fn loss(net: &mut Network<Native>, x: &HostTensor, y: &[f32], loss: Loss) -> f64 {
    net.reset_dropout(0);
    let out = net.forward(x, Mode::Train).unwrap();
    let width = out.shape[1];
    let (l, _) = loss.eval(&out.data, width, y);
    l + penalties(net)
}

fn penalties(net: &mut Network<Native>) -> f64 {
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
    let batch = targets.len();
    let mut net = Network::build(Native, &layers(specs), input, Init::Glorot, 3).unwrap();
    let mut shape = vec![batch];
    shape.extend_from_slice(input);
    let x = Native
        .tensor(data(shape.iter().product(), 11), &shape)
        .unwrap();
    // Analytic gradients.
    net.zero_grad();
    net.reset_dropout(0);
    let out = net.forward(&x, Mode::Train).unwrap();
    let (_, dy) = lossf.eval(&out.data, out.shape[1], &targets);
    let dyt = Native.tensor(dy, &out.shape).unwrap();
    net.backward(&dyt, false).unwrap();
    net.apply_penalties().unwrap();
    let grads: Vec<(String, Vec<f32>, bool)> = net
        .params()
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.grad.as_ref().map(|g| g.data.clone()).unwrap_or_default(),
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
            net.params()[k].value.data[i] = orig + h;
            let lp = loss(&mut net, &x, &targets, lossf);
            net.params()[k].value.data[i] = orig - h;
            let lm = loss(&mut net, &x, &targets, lossf);
            net.params()[k].value.data[i] = orig;
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
    let mut net = Network::build(Native, &layers(specs), &[1, 100], Init::He, 1).unwrap();
    let x = Native.tensor(data(32 * 100, 1), &[32, 1, 100]).unwrap();
    let y = data(32, 2);
    let opt = Optimizer::default();
    let mut last = f64::INFINITY;
    for step in 1..=400 {
        net.zero_grad();
        let out = net.forward(&x, Mode::Train).unwrap();
        let (l, dy) = Loss::Mse.eval(&out.data, 1, &y);
        net.backward(&Native.tensor(dy, &[32, 1]).unwrap(), false)
            .unwrap();
        net.step(&opt.update(3e-3, step)).unwrap();
        last = l;
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
    let err = Network::build(Native, &specs, &[1, 5], Init::He, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("layer 0 (conv1d)") && err.contains("does not fit"),
        "{err}"
    );
    let specs = layers("[[layers]]\ntype = \"conv1d\"\nfilters = 4\nkernel = 3\n[[layers]]\ntype = \"dense\"\nunits = 1\n");
    let err = Network::build(Native, &specs, &[1, 50], Init::He, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("layer 1 (dense)") && err.contains("flatten"),
        "{err}"
    );
}
