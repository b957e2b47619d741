//! Explanations checked against independent references: finite
//! differences of the (fused) network, completeness of Integrated
//! Gradients, receptive fields against perturbation, the association scan
//! against a naive two-pass regression and known t tails, and scoring by hand.

use explain::genomic::{permutation, Predictor};
use explain::geometry::{field_of, Field};
use explain::{LinearExplainer, Method, NetworkExplainer, Settings};
use geno::{simulate, Marker, PackedGenotypes, SimParams};
use model::{Fitted, InputMap, LinearModel, ModelSpec};
use nn::{Backend, Ctx, Native};

fn data(n: usize, snps: usize) -> (PackedGenotypes, Vec<f64>) {
    let sim = simulate(&SimParams {
        n,
        snps,
        chromosomes: 2,
        qtl: 5,
        h2: 0.6,
        seed: 7,
        ..Default::default()
    })
    .unwrap();
    (sim.genotypes, sim.phenotype)
}

fn fitted(layers: &str, g: &PackedGenotypes, y: &[f64], input: &str) -> Fitted<Native> {
    let text = format!(
        "name = \"t\"\ninput = \"{input}\"\ninit = \"glorot\"\n{layers}\n[training]\nloss = \"mse\"\noptimizer = {{ name = \"adam\" }}\nlr = 0.003\nbatch_size = 16\nepochs = 3\nval_fraction = 0.0\n"
    );
    let spec = ModelSpec::from_toml(&text, "t", "test").unwrap();
    let rows: Vec<usize> = (0..g.n_individuals()).collect();
    model::fit(
        Native::new(),
        &spec,
        g,
        &model::TraitData::single("y", y),
        &rows,
        3,
        &mut |_| {},
    )
    .unwrap()
}

const SMOOTH: &str = r#"
[[layers]]
type = "conv1d"
filters = 3
kernel = 5
padding = "same"
activation = "tanh"
[[layers]]
type = "avg_pool1d"
size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 6
activation = "tanh"
[[layers]]
type = "dense"
units = 1
"#;

const KINKED: &str = r#"
[[layers]]
type = "conv1d"
filters = 4
kernel = 3
stride = 1
activation = "relu"
[[layers]]
type = "max_pool1d"
size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 8
activation = "relu"
[[layers]]
type = "dense"
units = 1
"#;

/// The fused network's raw output for one input (channels × markers).
fn f_of(f: &Fitted<Native>, x: &[f32]) -> f64 {
    let shape = [1, f.network.input_shape[0], f.network.input_shape[1]];
    let t = f.network.backend.tensor(x.to_vec(), &shape).unwrap();
    let y = f.network.forward(&t, &Ctx::eval()).unwrap().output;
    f.network.backend.to_vec(&y).unwrap()[0] as f64
}

#[test]
fn input_gradients_match_finite_differences_of_the_fused_network() {
    let (g, y) = data(40, 24);
    for input in ["standardized", "one_hot"] {
        let f = fitted(SMOOTH, &g, &y, input);
        let map = InputMap::identity(g.n_markers());
        let ex = NetworkExplainer::new(&f, &g, &map).unwrap();
        let x = ex.decode(&[0, 1]);
        let (out, grad) = ex.gradients(x.clone(), &[0, 0]).unwrap();
        let cm = x.len() / 2;
        let mut worst = 0f64;
        let scale = grad.iter().fold(0f32, |a, &v| a.max(v.abs())) as f64;
        for r in 0..2 {
            let xr = &x[r * cm..(r + 1) * cm];
            assert!((out[r] - f_of(&f, xr)).abs() < 1e-5);
            for k in 0..cm {
                let eps = 1e-2f32;
                let (mut hi, mut lo) = (xr.to_vec(), xr.to_vec());
                hi[k] += eps;
                lo[k] -= eps;
                let fd = (f_of(&f, &hi) - f_of(&f, &lo)) / (2.0 * eps as f64);
                worst = worst.max((fd - grad[r * cm + k] as f64).abs() / scale);
            }
        }
        assert!(
            worst < 2e-3,
            "{input}: worst |fd − grad| / max|grad| = {worst}"
        );
    }
}

#[test]
fn integrated_gradients_are_complete() {
    let (g, y) = data(40, 24);
    let rows: Vec<usize> = (0..12).collect();
    let none = &mut |_: &str, _: usize, _: usize| {};
    // A smooth network: the midpoint rule converges fast, no piece is halved.
    let f = fitted(SMOOTH, &g, &y, "standardized");
    let map = InputMap::identity(g.n_markers());
    let ex = NetworkExplainer::new(&f, &g, &map).unwrap();
    let s = Settings::default();
    let e = ex
        .explain(&rows, &[Method::IntegratedGradients], &s, None, none)
        .unwrap();
    let ig = e.ig.unwrap();
    assert!(ig.worst < s.ig_tolerance, "{ig:?}");
    assert_eq!(ig.refined, 0);
    // ReLU and max pooling put kinks on the path; halving the pieces
    // around them brings every individual within the tolerance.
    let f = fitted(KINKED, &g, &y, "standardized");
    let ex = NetworkExplainer::new(&f, &g, &map).unwrap();
    let s = Settings {
        ig_steps: 4,
        ..Settings::default()
    };
    let e = ex
        .explain(&rows, &[Method::IntegratedGradients], &s, None, none)
        .unwrap();
    let ig = e.ig.unwrap();
    assert!(ig.worst <= s.ig_tolerance, "{ig:?}");
    // And by hand, for one individual: Σ attributions = f(x) − f(0).
    let x = ex.decode(&[5]);
    let base = vec![0f32; x.len()];
    let (attr, err, steps, d) = ex.integrated(&x, &base, 0, &s, 1e-9).unwrap();
    let delta = f_of(&f, &x) - f_of(&f, &base);
    assert!((d - delta).abs() < 1e-6);
    let sum: f64 = attr.iter().sum();
    assert!((sum - delta).abs() <= s.ig_tolerance * delta.abs() + 1e-6);
    assert!((err - (sum - delta).abs() / delta.abs()).abs() < 1e-6);
    assert!(steps >= 4 && steps <= s.ig_max_steps);
}

#[test]
fn every_method_gives_a_value_per_marker_and_grad_cam_uses_the_receptive_field() {
    let (g, y) = data(30, 20);
    let f = fitted(KINKED, &g, &y, "standardized");
    let map = InputMap::identity(g.n_markers());
    let ex = NetworkExplainer::new(&f, &g, &map).unwrap();
    let rows: Vec<usize> = (0..30).collect();
    let s = Settings {
        smoothgrad_samples: 3,
        perm_window: 4,
        ..Settings::default()
    };
    let e = ex
        .explain(&rows, &Method::CHOSEN, &s, Some(&y), &mut |_, _, _| {})
        .unwrap();
    for m in Method::CHOSEN {
        let a = e.get(m).unwrap();
        assert_eq!(a.values.len(), 20, "{m:?}");
        assert!(a.values.iter().all(|v| v.is_finite()), "{m:?}");
        if m != Method::Permutation {
            assert!(a.values.iter().all(|&v| v >= 0.0), "{m:?}");
        }
    }
    // Permutation values are constant over each window of 4 markers.
    let p = &e.get(Method::Permutation).unwrap().values;
    for w in p.chunks(4) {
        assert!(w.iter().all(|&v| v == w[0]));
    }
    let cam = e.gradcam.unwrap();
    assert_eq!((cam.channels, cam.positions), (4, 18));
    assert_eq!(cam.mapping, "receptive_field");
    // A network without convolutions: Grad-CAM is left out, with a note.
    let mlp = "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 4\nactivation = \"tanh\"\n[[layers]]\ntype = \"dense\"\nunits = 1\n";
    let f = fitted(mlp, &g, &y, "standardized");
    let ex = NetworkExplainer::new(&f, &g, &map).unwrap();
    let e = ex
        .explain(
            &rows,
            &[Method::Saliency, Method::GradCam],
            &s,
            None,
            &mut |_, _, _| {},
        )
        .unwrap();
    assert!(e.get(Method::GradCam).is_none());
    assert!(
        e.notes[0].contains("no convolutional layer"),
        "{:?}",
        e.notes
    );
}

#[test]
fn receptive_fields_match_perturbation() {
    // Linear layers (no activation, average pools): an output position
    // changes exactly when an input inside its field changes.
    let layers = r#"
[[layers]]
type = "conv1d"
filters = 2
kernel = 5
stride = 2
padding = "same"
[[layers]]
type = "avg_pool1d"
size = 3
stride = 2
padding = 1
[[layers]]
type = "conv1d"
filters = 2
kernel = 3
dilation = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 1
"#;
    let (g, y) = data(20, 40);
    let f = fitted(layers, &g, &y, "standardized");
    let spec = &f.spec;
    let m = 40;
    let k = 2;
    let field = field_of(&spec.layers[..=k], Field::identity(m)).unwrap();
    // An unfused copy, so that the top-level layers are the spec's.
    let net = explain::unfused_copy(&f.network, spec).unwrap();
    let be = &net.backend;
    let head = |x: &[f32]| {
        let t = be.tensor(x.to_vec(), &[1, 1, m]).unwrap();
        be.to_vec(
            &net.forward_layers(&t, 0..k + 1, &Ctx::eval())
                .unwrap()
                .output,
        )
        .unwrap()
    };
    let x0: Vec<f32> = (0..m).map(|j| ((j * 7 % 11) as f32) / 11.0 - 0.5).collect();
    let a0 = head(&x0);
    let len = a0.len() / 2;
    assert_eq!(len, field.len);
    for j in 0..m {
        let mut x = x0.clone();
        x[j] += 5.0;
        let a = head(&x);
        for l in 0..len {
            let changed = (0..2).any(|c| (a[c * len + l] - a0[c * len + l]).abs() > 1e-4);
            assert_eq!(
                changed,
                field.covers(l, m).contains(&j),
                "marker {j}, position {l}, field {:?}",
                field.covers(l, m)
            );
        }
    }
}

fn naive_regression(x: &[f64], y: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let beta = sxy / sxx;
    let rss: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| (b - my - beta * (a - mx)).powi(2))
        .sum();
    (beta, (rss / (n - 2.0) / sxx).sqrt())
}

#[test]
fn the_association_scan_matches_a_naive_regression() {
    let (g, mut y) = data(60, 15);
    y[3] = f64::NAN;
    let scan = explain::gwas::scan(&g, &y);
    for (j, a) in scan.iter().enumerate() {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for i in 0..60 {
            let d = [Some(2.0), None, Some(1.0), Some(0.0)][g.code(i, j) as usize];
            if let (Some(d), true) = (d, y[i].is_finite()) {
                xs.push(d);
                ys.push(y[i]);
            }
        }
        let (beta, se) = naive_regression(&xs, &ys);
        assert_eq!(a.n, xs.len());
        assert!((a.beta - beta).abs() < 1e-9, "{j}");
        assert!((a.se - se).abs() < 1e-9, "{j}");
    }
    // Two-sided t tails: R's -log10(2 * pt(-2, 10)) = 1.134376, and far
    // into the tail, where p underflows, the normal's for huge df:
    // -log10(2 Φ(-45)) = 441.2927 (Mills' ratio series).
    assert!((explain::gwas::t_log10p(2.0, 10.0) - 1.134376).abs() < 1e-5);
    let z: f64 = 45.0;
    let ln_p = (2.0f64).ln() - z * z / 2.0 - 0.5 * (2.0 * std::f64::consts::PI).ln() - z.ln()
        + (1.0 - 1.0 / (z * z) + 3.0 / z.powi(4)).ln();
    let want = -ln_p / std::f64::consts::LN_10;
    let got = explain::gwas::t_log10p(z, 1e9);
    assert!((got - want).abs() < 1e-3, "{got} vs {want}");
    // The tail integral agrees with the exact incomplete beta where both work.
    for (t, df) in [(6.0, 50.0), (12.0, 1000.0), (3.0, 8.0)] {
        let exact = -eval::metrics::student_t_two_sided(t, df).log10();
        let tail = explain::gwas::t_log10p_tail(t, df);
        assert!(
            (exact - tail).abs() < 1e-6 * exact,
            "t {t} df {df}: {exact} vs {tail}"
        );
    }
    assert!(explain::gwas::t_log10p(40.0, 1000.0) > explain::gwas::t_log10p(30.0, 1000.0));
}

fn marker(id: &str, chr: &str, pos: i64) -> Marker {
    Marker {
        chromosome: chr.into(),
        position: pos,
        ..Marker::from_id(id)
    }
}

#[test]
fn recovery_is_scored_by_window_and_rank() {
    let markers = vec![
        marker("a", "1", 1_000),
        marker("b", "1", 50_000),
        marker("c", "1", 500_000),
        marker("d", "2", 1_000),
        marker("e", "2", 900_000),
    ];
    let loci = vec![
        explain::Locus {
            chromosome: "1".into(),
            position: 40_000,
            marker: None,
        },
        explain::Locus {
            chromosome: "2".into(),
            position: 880_000,
            marker: None,
        },
    ];
    // Near a locus (window 20 kb): b and e. Top 2 by value: c and b.
    let v = [0.1, 0.8, 0.9, 0.3, 0.2];
    let r = explain::recovery::score(&v, &markers, &loci, 2, 20_000);
    assert_eq!((r.hits, r.loci), (1, 2));
    assert_eq!(r.recall, 0.5);
    assert_eq!(r.precision, 0.5);
    // AUC: positives b (rank 4) and e (rank 2) among 5: (6 − 3) / (2·3) = 0.5.
    assert_eq!(r.auc, Some(0.5));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    std::fs::write(
        &p,
        "marker,chromosome,position,effect\nb,9,9,0.1\nzz,2,880000,1\n",
    )
    .unwrap();
    let read = explain::recovery::read_truth(&p, &markers).unwrap();
    // A known marker is placed by the genotype file's map; an unknown one by its columns.
    assert_eq!(
        (read[0].chromosome.as_str(), read[0].position),
        ("1", 50_000)
    );
    assert_eq!(
        (read[1].chromosome.as_str(), read[1].position),
        ("2", 880_000)
    );
    let rho = explain::recovery::spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]);
    assert!((rho + 1.0).abs() < 1e-12);
}

#[test]
fn a_linear_model_is_explained_exactly() {
    let (g, _) = data(50, 12);
    let m = g.n_markers();
    let effects: Vec<f64> = (0..m).map(|j| if j % 3 == 0 { 0.5 } else { 0.0 }).collect();
    let lm = LinearModel {
        markers: g.markers().to_vec(),
        center: vec![1.0; m],
        effects: effects.clone(),
        intercept: 2.0,
        trait_name: "t".into(),
        n_train: 50,
    };
    let map = InputMap::identity(m);
    let ex = LinearExplainer {
        model: &lm,
        g: &g,
        map: &map,
    };
    let rows: Vec<usize> = (0..50).collect();
    // The predictions through the decoded inputs are the model's own.
    let x = ex.decode(&rows);
    assert_eq!(ex.predict(&x, 50).unwrap(), lm.predict(&g, &map));
    let y = lm.predict(&g, &map);
    let s = Settings {
        perm_window: 1,
        ..Settings::default()
    };
    let (imp, (r0, what)) = permutation(&ex, &rows, Some(&y), &s, &mut |_, _, _| {}).unwrap();
    assert_eq!(what, "observed");
    assert!((r0 - 1.0).abs() < 1e-12);
    for j in 0..m {
        if effects[j] == 0.0 {
            assert!(imp[j].abs() < 1e-12, "marker {j}: {}", imp[j]);
        } else {
            assert!(imp[j] > 0.0, "marker {j}: {}", imp[j]);
        }
    }
    let e = ex
        .explain(
            &rows,
            &[Method::Saliency, Method::IntegratedGradients],
            &s,
            None,
            &mut |_, _, _| {},
        )
        .unwrap();
    let blup = &e.get(Method::SnpBlup).unwrap().values;
    assert_eq!(blup, &effects);
    assert_eq!(&e.get(Method::Saliency).unwrap().values, &effects);
}
