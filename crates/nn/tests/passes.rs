//! Passes whose state the caller owns: input gradients after an
//! evaluation-mode pass (checked against finite differences of the
//! evaluation output, leaving the network bit-identical, deterministic),
//! re-entrant prediction, every layer's output by path, and the fusion
//! pass against the unfused network.

mod common;
use common::{data, layers};
use nn::{Backend, Ctx, HostTensor, Init, Loss, Native, Network, OptState, Optimizer};

/// Batch norm and dropout (which an evaluation pass must leave alone), a
/// fused conv + pool, and containers.
const SPEC: &str = r#"
    [[layers]]
    type = "conv1d"
    filters = 4
    kernel = 3
    activation = "tanh"
    [[layers]]
    type = "max_pool1d"
    size = 2
    [[layers]]
    type = "batch_norm"
    [[layers]]
    type = "branches"
    [[layers.branch]]
    [[layers.branch.layers]]
    type = "residual"
    activation = "softplus"
    [[layers.branch.layers.layers]]
    type = "conv1d"
    filters = 4
    kernel = 3
    padding = "same"
    activation = "elu"
    [[layers.branch]]
    [[layers.branch.layers]]
    type = "conv1d"
    filters = 2
    kernel = 1
    activation = "sigmoid"
    [[layers]]
    type = "dropout"
    rate = 0.4
    [[layers]]
    type = "flatten"
    [[layers]]
    type = "dense"
    units = 6
    activation = "tanh"
    [[layers]]
    type = "batch_norm"
    [[layers]]
    type = "dense"
    units = 1
"#;

const INPUT: [usize; 2] = [2, 22];

/// A network trained for a few steps, so that its batch-norm statistics
/// are not their initial values.
fn trained() -> Network<Native> {
    let mut net = Network::build(Native::new(), &layers(SPEC), &INPUT, Init::He, 4).unwrap();
    let x = HostTensor::new(data(8 * 44, 3), &[8, 2, 22]).unwrap();
    let y = data(8, 4);
    let mut state = OptState::new();
    for step in 1..=5 {
        let u = Optimizer::default().update(1e-2, step);
        nn::train_step(
            &mut net,
            &mut state,
            &x,
            Loss::Mse,
            1,
            &y,
            &u,
            step as u64,
            false,
        )
        .unwrap();
    }
    net
}

fn snapshot(net: &Network<Native>) -> Vec<(String, Vec<u32>)> {
    net.params()
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.value.data.iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

/// Σ of the evaluation-mode outputs, in f64.
fn eval_sum(net: &Network<Native>, x: &HostTensor) -> f64 {
    net.predict(x).unwrap().data.iter().map(|&v| v as f64).sum()
}

#[test]
fn eval_mode_input_gradient_matches_finite_differences_and_changes_nothing() {
    let net = trained();
    let before = snapshot(&net);
    let batch = 3;
    let x = HostTensor::new(data(batch * 44, 9), &[batch, 2, 22]).unwrap();
    let grad = |net: &Network<Native>| {
        let mut pass = net.forward(&x, &Ctx::eval().recording()).unwrap();
        let dy = HostTensor::new(vec![1.0; batch], &[batch, 1]).unwrap();
        net.input_gradient(&mut pass, dy).unwrap()
    };
    let g = grad(&net);
    assert_eq!(g.shape, x.shape);
    // Central differences of Σ outputs, in f64 sums of f32 passes.
    let h = 1e-2f32;
    let scale = g.data.iter().fold(1e-3f32, |m, v| m.max(v.abs())) as f64;
    let mut worst = 0f64;
    for i in (0..x.data.len()).step_by(5) {
        let mut xp = x.clone();
        xp.data[i] += h;
        let mut xm = x.clone();
        xm.data[i] -= h;
        let fd = (eval_sum(&net, &xp) - eval_sum(&net, &xm)) / (2.0 * h as f64);
        let err = (fd - g.data[i] as f64).abs() / scale;
        assert!(
            err < 2e-2,
            "x[{i}]: analytic {} vs finite difference {fd}",
            g.data[i]
        );
        worst = worst.max(err);
    }
    eprintln!("eval-mode input gradient: worst relative difference {worst:.2e}");
    // Nothing moved: weights and batch-norm statistics are bit-identical.
    assert_eq!(snapshot(&net), before);
    // And the same pass gives the same bits again.
    let again = grad(&net);
    assert_eq!(
        g.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        again.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // Dropout is off in evaluation: the gradient does not depend on a seed.
    let mut other = net
        .forward(
            &x,
            &Ctx {
                seed: 99,
                ..Ctx::eval().recording()
            },
        )
        .unwrap();
    let dy = HostTensor::new(vec![1.0; batch], &[batch, 1]).unwrap();
    assert_eq!(net.input_gradient(&mut other, dy).unwrap().data, g.data);
}

#[test]
fn parameter_gradients_of_an_eval_pass_when_asked_for() {
    // The batch-norm layers' gamma and beta, after an evaluation pass,
    // against finite differences of the evaluation output.
    let mut net = trained();
    let batch = 2;
    let x = HostTensor::new(data(batch * 44, 5), &[batch, 2, 22]).unwrap();
    let mut pass = net.forward(&x, &Ctx::eval().recording()).unwrap();
    let dy = HostTensor::new(vec![1.0; batch], &[batch, 1]).unwrap();
    let (_, grads) = net.backward_with(&mut pass, dy, true, false).unwrap();
    let grads = grads.unwrap();
    let ids: Vec<(usize, String)> = net
        .params()
        .iter()
        .filter(|p| p.name.ends_with("gamma") || p.name.ends_with("beta"))
        .map(|p| (p.id, p.name.clone()))
        .collect();
    assert_eq!(ids.len(), 4);
    let h = 1e-2f32;
    for (id, name) in ids {
        let g = grads.get(id).unwrap().data.clone();
        let scale = g.iter().fold(1e-3f32, |m, v| m.max(v.abs())) as f64;
        for (i, &gi) in g.iter().enumerate() {
            let at = |net: &mut Network<Native>, d: f32| {
                let p = net.params_mut().into_iter().find(|p| p.id == id).unwrap();
                p.value.data[i] += d;
            };
            at(&mut net, h);
            let lp = eval_sum(&net, &x);
            at(&mut net, -2.0 * h);
            let lm = eval_sum(&net, &x);
            at(&mut net, h);
            let fd = (lp - lm) / (2.0 * h as f64);
            assert!(
                (fd - gi as f64).abs() / scale < 2e-2,
                "{name}[{i}]: analytic {gi} vs finite difference {fd}"
            );
        }
    }
    // No statistic has a gradient; the pass did not change them.
    for p in net.params().iter().filter(|p| !p.trainable) {
        assert!(grads.get(p.id).is_none(), "{} has a gradient", p.name);
    }
}

#[test]
fn backward_needs_a_recorded_pass() {
    let net = trained();
    let x = HostTensor::new(data(44, 1), &[1, 2, 22]).unwrap();
    let mut pass = net.forward(&x, &Ctx::eval()).unwrap();
    let dy = HostTensor::new(vec![1.0], &[1, 1]).unwrap();
    let err = net.input_gradient(&mut pass, dy).unwrap_err().to_string();
    assert!(err.contains("recorded"), "{err}");
    // A batch of the wrong shape is refused before any layer runs.
    let bad = HostTensor::new(data(40, 1), &[1, 2, 20]).unwrap();
    let err = net.predict(&bad).err().unwrap().to_string();
    assert!(
        err.contains("2 × 22") && err.contains("[1, 2, 20]"),
        "{err}"
    );
}

#[test]
fn prediction_is_re_entrant() {
    // One network, predicted from several threads at once, gives each the
    // same outputs as a lone call.
    let net = trained();
    let xs: Vec<HostTensor> = (0..4)
        .map(|k| HostTensor::new(data(5 * 44, 20 + k), &[5, 2, 22]).unwrap())
        .collect();
    let alone: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| net.predict(x).unwrap().into_data())
        .collect();
    let together: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = xs
            .iter()
            .map(|x| s.spawn(|| net.predict(x).unwrap().into_data()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, together);
}

#[test]
fn every_layer_output_by_path() {
    let net = trained();
    let x = HostTensor::new(data(3 * 44, 7), &[3, 2, 22]).unwrap();
    let outs = net.forward_all(&x, &Ctx::eval()).unwrap();
    let paths: Vec<&str> = outs.iter().map(|(p, _)| p.as_str()).collect();
    // The fused conv + pool runs as its parts, so both outputs are there;
    // nested layers are listed under their own paths, each once.
    for want in [
        "layers.0",
        "layers.1",
        "layers.3.branch.0.layers.0.layers.0",
        "layers.3.branch.0.layers.0",
        "layers.3.branch.0",
        "layers.3.branch.1",
        "layers.3",
        "layers.8",
    ] {
        assert_eq!(
            paths.iter().filter(|p| **p == want).count(),
            1,
            "{want} in {paths:?}"
        );
    }
    let shape_of = |p: &str| outs.iter().find(|(q, _)| q == p).unwrap().1.shape.clone();
    assert_eq!(shape_of("layers.0"), vec![3, 4, 20]);
    assert_eq!(shape_of("layers.1"), vec![3, 4, 10]);
    assert_eq!(shape_of("layers.3"), vec![3, 6, 10]);
    // The last output is the network's.
    assert_eq!(outs.last().unwrap().1.data, net.predict(&x).unwrap().data);
    // The conv output is what a conv1d with a tanh gives: in (−1, 1).
    assert!(outs[0].1.data.iter().all(|v| v.abs() < 1.0));
    assert!(net.find("layers.3.branch.0.layers.0.layers.0").is_some());
    assert_eq!(net.find("layers.1").unwrap().kind(), "max_pool1d");
    assert!(net.find("layers.42").is_none());
}

/// The fusion pass changes no output and no gradient (to rounding), on
/// every fusion the pass makes: conv + max pool 2 in 1D and 2D, and the
/// activation moved past other max pools.
#[test]
fn fusion_changes_nothing() {
    let cases: Vec<(&str, Vec<usize>)> = vec![
        (
            r#"
            [[layers]]
            type = "conv1d"
            filters = 3
            kernel = 3
            activation = "relu"
            [[layers]]
            type = "max_pool1d"
            size = 2
            [[layers]]
            type = "conv1d"
            filters = 2
            kernel = 2
            activation = "softplus"
            [[layers]]
            type = "max_pool1d"
            size = 3
            stride = 2
            [[layers]]
            type = "flatten"
            [[layers]]
            type = "dense"
            units = 2
        "#,
            vec![1, 31],
        ),
        (
            r#"
            [[layers]]
            type = "conv2d"
            filters = 3
            kernel = 3
            padding = "same"
            activation = "elu"
            [[layers]]
            type = "max_pool2d"
            size = 2
            [[layers]]
            type = "conv2d"
            filters = 2
            kernel = 2
            stride = 2
            activation = "tanh"
            [[layers]]
            type = "max_pool2d"
            size = 2
            [[layers]]
            type = "flatten"
            [[layers]]
            type = "dense"
            units = 2
        "#,
            vec![2, 12, 12],
        ),
    ];
    for (spec, input) in cases {
        let specs = layers(spec);
        let run = |fuse: bool| {
            let net = Network::builder(Native::new(), &specs, &input)
                .seed(3)
                .fuse(fuse)
                .build()
                .unwrap();
            let kinds: Vec<&str> = net.root().layers().iter().map(|l| l.kind()).collect();
            let mut shape = vec![3];
            shape.extend_from_slice(&input);
            let x = HostTensor::new(data(shape.iter().product(), 2), &shape).unwrap();
            let mut pass = net.forward(&x, &Ctx::train(1)).unwrap();
            let dy = HostTensor::new(data(pass.output.data.len(), 3), &pass.output.shape).unwrap();
            let out = pass.output.data.clone();
            let (dx, g) = net.backward_with(&mut pass, dy, true, true).unwrap();
            let grads: Vec<Vec<f32>> = net
                .params()
                .iter()
                .map(|p| {
                    g.as_ref()
                        .unwrap()
                        .get(p.id)
                        .map(|t| t.data.clone())
                        .unwrap_or_default()
                })
                .collect();
            (
                kinds.iter().filter(|k| **k == "conv+pool").count(),
                out,
                dx.unwrap().into_data(),
                grads,
            )
        };
        let (fused, out_f, dx_f, g_f) = run(true);
        let (unfused, out_u, dx_u, g_u) = run(false);
        assert_eq!((fused, unfused), (2, 0));
        let close = |a: &[f32], b: &[f32]| {
            let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
            a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * scale)
        };
        assert!(close(&out_f, &out_u), "outputs");
        assert!(close(&dx_f, &dx_u), "input gradients");
        for (a, b) in g_f.iter().zip(&g_u) {
            assert!(close(a, b), "parameter gradients");
        }
    }
}

#[test]
fn a_pass_may_run_without_fusion() {
    // Ctx::without_fusion runs fused layers as their parts: the same numbers.
    let net = trained();
    let x = HostTensor::new(data(2 * 44, 8), &[2, 2, 22]).unwrap();
    let a = net.forward(&x, &Ctx::eval()).unwrap().output;
    let b = net
        .forward(&x, &Ctx::eval().without_fusion())
        .unwrap()
        .output;
    let scale = a.data.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (u, v) in a.data.iter().zip(&b.data) {
        assert!((u - v).abs() <= 1e-5 * scale, "{u} vs {v}");
    }
    assert_eq!(net.backend.shape(&a), vec![2, 1]);
}

/// One Adam step (lr 0.01) on a batch, with dropout masks from `step`.
fn adam_step(
    net: &mut Network<Native>,
    state: &mut OptState<Native>,
    x: &HostTensor,
    y: &[f32],
    step: u32,
) {
    let u = Optimizer::default().update(1e-2, step);
    nn::train_step(net, state, x, Loss::Mse, 1, y, &u, step as u64, false).unwrap();
}

/// Σ w·output of a training-mode pass (dropout masks from `seed`), in
/// f64. The weights differ by sample: batch norm in training makes the
/// plain sum over a batch constant.
fn train_sum(net: &Network<Native>, x: &HostTensor, seed: u64, w: &[f32]) -> f64 {
    net.forward(x, &Ctx::train(seed))
        .unwrap()
        .output
        .data
        .iter()
        .zip(w)
        .map(|(&v, &w)| v as f64 * w as f64)
        .sum()
}

fn param_bits(net: &Network<Native>, prefix: &str) -> Vec<(String, Vec<u32>)> {
    snapshot(net)
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .collect()
}

#[test]
fn a_frozen_base_is_skipped_by_backward_and_stays_bit_identical() {
    let mut net = trained();
    // The base: conv, pool, batch norm, branches, dropout (layers.0–4).
    let base: Vec<String> = (0..5).map(|i| format!("layers.{i}")).collect();
    let counts = net.set_frozen(&base, true);
    assert_eq!(counts, vec![2, 0, 4, 4, 0], "parameters matched per path");
    // Built layers: the conv and its pool are fused into one, then batch
    // norm, branches, dropout and flatten (which has nothing to learn).
    assert_eq!(net.frozen_base(), 5);
    let frozen_before: Vec<_> = base.iter().flat_map(|p| param_bits(&net, p)).collect();
    let head_before = param_bits(&net, "layers.6");

    // The head's gradients against finite differences of the training
    // pass's output, with the base frozen (its batch norm in inference mode).
    let batch = 4;
    let x = HostTensor::new(data(batch * 44, 12), &[batch, 2, 22]).unwrap();
    let mut pass = net.forward(&x, &Ctx::train(7).profiled(true)).unwrap();
    let wy = [1.0, -0.5, 2.0, 0.3];
    let dy = HostTensor::new(wy.to_vec(), &[batch, 1]).unwrap();
    let grads = net.backward(&mut pass, dy).unwrap();
    for row in pass.profile.rows() {
        let in_base = base
            .iter()
            .any(|b| row.path == *b || row.path.starts_with(&format!("{b}.")));
        if in_base {
            assert_eq!(row.backward, 0.0, "{} ran backward", row.path);
        }
    }
    for p in net.params() {
        assert_eq!(
            grads.get(p.id).is_some(),
            p.learns(),
            "{}: a gradient exactly when it learns",
            p.name
        );
    }
    let w_id = net
        .params()
        .iter()
        .find(|p| p.name == "layers.6.weight")
        .unwrap()
        .id;
    let g = grads.get(w_id).unwrap().data.clone();
    let scale = g.iter().fold(1e-3f32, |m, v| m.max(v.abs())) as f64;
    let h = 1e-2f32;
    for i in (0..g.len()).step_by(7) {
        let at = |net: &mut Network<Native>, d: f32| {
            let p = net.params_mut().into_iter().find(|p| p.id == w_id).unwrap();
            p.value.data[i] += d;
        };
        at(&mut net, h);
        let lp = train_sum(&net, &x, 7, &wy);
        at(&mut net, -2.0 * h);
        let lm = train_sum(&net, &x, 7, &wy);
        at(&mut net, h);
        let fd = (lp - lm) / (2.0 * h as f64);
        assert!(
            (fd - g[i] as f64).abs() / scale < 2e-2,
            "layers.6.weight[{i}]: analytic {} vs finite difference {fd}",
            g[i]
        );
    }

    // Training steps move the head and leave the base, its batch-norm
    // statistics included, bit-identical.
    let mut state = OptState::new();
    let y = data(batch, 13);
    for step in 1..=4 {
        adam_step(&mut net, &mut state, &x, &y, step);
    }
    let frozen_after: Vec<_> = base.iter().flat_map(|p| param_bits(&net, p)).collect();
    assert_eq!(frozen_after, frozen_before);
    assert_ne!(param_bits(&net, "layers.6"), head_before);
    // The head's batch norm (not frozen) moved its running statistics.
    let bn = |net: &Network<Native>| {
        param_bits(net, "layers.7.")
            .into_iter()
            .filter(|(n, _)| n.contains("running"))
            .collect::<Vec<_>>()
    };
    let before = bn(&net);
    assert_eq!(before.len(), 2);
    adam_step(&mut net, &mut state, &x, &y, 5);
    assert_ne!(bn(&net), before);

    // An input gradient needs the base recorded: a training pass refuses,
    // an evaluation pass gives it.
    let mut pass = net.forward(&x, &Ctx::train(1)).unwrap();
    let dy = HostTensor::new(vec![1.0; batch], &[batch, 1]).unwrap();
    let err = net.input_gradient(&mut pass, dy.clone()).unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");
    let mut pass = net.forward(&x, &Ctx::eval().recording()).unwrap();
    assert_eq!(net.input_gradient(&mut pass, dy).unwrap().shape, x.shape);

    // Unfrozen, the base learns again.
    net.set_frozen(&base, false);
    assert_eq!(net.frozen_base(), 0);
    adam_step(&mut net, &mut state, &x, &y, 6);
    assert_ne!(
        param_bits(&net, "layers.0"),
        param_bits(&trained(), "layers.0")
    );
}

#[test]
fn a_frozen_layer_inside_gets_no_gradient_and_no_penalty() {
    let mut net = trained();
    // The hidden dense layer, between learning layers.
    net.set_frozen(&["layers.6".to_string()], true);
    assert_eq!(net.frozen_base(), 0);
    for p in net.params_mut() {
        p.l2 = 0.5;
    }
    let before = param_bits(&net, "layers.6");
    let others = param_bits(&net, "layers.0");
    let batch = 4;
    let x = HostTensor::new(data(batch * 44, 21), &[batch, 2, 22]).unwrap();
    let y = data(batch, 22);
    let mut pass = net.forward(&x, &Ctx::train(3)).unwrap();
    let dy = HostTensor::new(vec![1.0; batch], &[batch, 1]).unwrap();
    let mut grads = net.backward(&mut pass, dy).unwrap();
    let id = |n: &str| net.params().iter().find(|p| p.name == n).unwrap().id;
    assert!(grads.get(id("layers.6.weight")).is_none());
    assert!(grads.get(id("layers.0.weight")).is_some());
    // The penalty counts only what learns: a frozen layer adds none.
    let pen = net.apply_penalties(&mut grads).unwrap();
    let expect: f64 = net
        .params()
        .iter()
        .filter(|p| p.learns())
        .map(|p| {
            0.5 * p
                .value
                .data
                .iter()
                .map(|v| (*v as f64).powi(2))
                .sum::<f64>()
        })
        .sum();
    assert!(
        (pen as f64 - expect).abs() <= 1e-4 * expect,
        "{pen} vs {expect}"
    );
    let mut state = OptState::new();
    for step in 1..=3 {
        adam_step(&mut net, &mut state, &x, &y, step);
    }
    assert_eq!(param_bits(&net, "layers.6"), before);
    assert_ne!(param_bits(&net, "layers.0"), others);
}
