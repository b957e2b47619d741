//! `genocnn explain` and `genocnn image explain`: the outputs, the
//! model left untouched, scoring against the bundled example's QTL,
//! stability over `cv --save-models` folds, and bad input.

use std::path::Path;

use crate::common::{example_bed, example_pheno, fails, ok, read_csv, read_json, s};

/// A small 1D CNN, quick to train on the bundled example.
const SMALL_CNN: &str = r#"
name = "small-cnn"
input = "standardized"
init = "glorot"
[[layers]]
type = "conv1d"
filters = 4
kernel = 5
activation = "relu"
[[layers]]
type = "max_pool1d"
size = 4
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 8
activation = "tanh"
[[layers]]
type = "dense"
units = 1
[training]
loss = "mse"
optimizer = { name = "adam" }
lr = 0.001
batch_size = 32
epochs = 4
val_fraction = 0.1
patience = 4
"#;

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn qtl() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/example.qtl.csv")
        .display()
        .to_string()
}

fn train_small(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("small.toml");
    std::fs::write(&config, SMALL_CNN).unwrap();
    let out = dir.join("model");
    ok(&crate::common::train_example_args(&config, &out, &[]));
    out
}

fn explain_args<'a>(model: &'a str, out: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "explain",
        "--model",
        model,
        "--geno",
        example_bed(),
        "--out",
        out,
    ];
    a.extend_from_slice(rest);
    a
}

#[test]
fn explain_writes_markers_plot_summary_and_leaves_the_model_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_small(dir.path());
    let files = |m: &Path| {
        (
            std::fs::read(m.join("model.toml")).unwrap(),
            std::fs::read(m.join("model.safetensors")).unwrap(),
        )
    };
    let before = files(&model);
    let predict = |name: &str| {
        let p = dir.path().join(name);
        ok(&[
            "predict",
            "--model",
            s(&model),
            "--geno",
            example_bed(),
            "--out",
            s(&p),
        ]);
        std::fs::read_to_string(p).unwrap()
    };
    let pred_before = predict("before.csv");

    let out = dir.path().join("explain");
    let qtl = qtl();
    let text = ok(&explain_args(
        s(&model),
        s(&out),
        &[
            "--pheno",
            example_pheno(),
            "--trait",
            "trait",
            "--truth",
            &qtl,
            "--methods",
            "saliency,grad_input,integrated_gradients,smoothgrad,gradcam,permutation",
            "--individuals",
            "ind001,ind002,ind003,ind004,ind005,ind006,ind007,ind008,ind009,ind010",
            "--smoothgrad-samples",
            "2",
            "--perm-window",
            "300",
        ],
    ));
    assert!(text.contains("top markers by saliency"), "{text}");
    assert!(text.contains("recovery of 60 known loci"), "{text}");

    // Explaining changed nothing: the same files, the same predictions.
    assert_eq!(files(&model), before);
    assert_eq!(predict("after.csv"), pred_before);

    let (header, rows) = read_csv(&out.join("markers.csv"));
    let methods = [
        "saliency",
        "grad_input",
        "integrated_gradients",
        "smoothgrad",
        "gradcam",
        "permutation",
    ];
    let mut want = vec!["marker", "chromosome", "position"];
    want.extend(methods);
    want.extend(["gwas_log10p", "gwas_beta"]);
    assert_eq!(&header[..want.len()], &want[..]);
    assert!(header.contains(&"rank_gradcam".to_string()));
    assert!(header.contains(&"rank_gwas".to_string()));
    assert_eq!(rows.len(), 3000);
    assert_eq!(rows[0][0], "snp1");
    // Every gradient attribution is a finite non-negative number; ranks are a permutation.
    for r in &rows {
        for v in &r[3..8] {
            let x: f64 = v.parse().unwrap();
            assert!(x.is_finite() && x >= 0.0, "{v}");
        }
    }
    let rank_col = header.iter().position(|h| h == "rank_saliency").unwrap();
    let mut ranks: Vec<usize> = rows.iter().map(|r| r[rank_col].parse().unwrap()).collect();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=3000).collect::<Vec<_>>());

    for f in ["manhattan.png", "manhattan.svg"] {
        let b = std::fs::read(out.join(f)).unwrap();
        assert!(b.len() > 10_000, "{f} is {} bytes", b.len());
    }
    let sum = read_json(&out.join("summary.json"));
    assert_eq!(sum["n_individuals"], 10);
    assert_eq!(sum["n_markers"], 3000);
    // The default precision explains in fp32 on any CPU (in bf16 this
    // model's completeness error was 0.043 on a Zen 4).
    assert_eq!(sum["precision"], "fp32");
    let ig = sum["ig_completeness_error"].as_f64().unwrap();
    assert!(ig <= 0.01, "IG completeness error {ig}");
    assert_eq!(sum["gradcam"]["mapping"], "receptive_field");
    assert_eq!(sum["permutation"]["against"], "observed");
    for m in methods.iter().copied().chain(["gwas"]) {
        let r = &sum["recovery"][m];
        assert_eq!(r["loci"], 60, "{m}: {r}");
        let (hits, recall) = (r["hits"].as_u64().unwrap(), r["recall"].as_f64().unwrap());
        assert!((recall - hits as f64 / 60.0).abs() < 1e-12);
        let p = r["precision"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
    }
    // The association scan finds the example's QTL well above chance
    // (a random AUC is 0.5).
    let auc = sum["recovery"]["gwas"]["auc"].as_f64().unwrap();
    assert!(auc > 0.6, "gwas AUC {auc}");

    // The same seed gives the same numbers.
    let again = dir.path().join("again");
    ok(&explain_args(
        s(&model),
        s(&again),
        &[
            "--methods",
            "saliency,smoothgrad",
            "--individuals",
            "ind001,ind002",
            "--smoothgrad-samples",
            "2",
        ],
    ));
    let once = dir.path().join("once");
    ok(&explain_args(
        s(&model),
        s(&once),
        &[
            "--methods",
            "saliency,smoothgrad",
            "--individuals",
            "ind001,ind002",
            "--smoothgrad-samples",
            "2",
        ],
    ));
    assert_eq!(
        std::fs::read(again.join("markers.csv")).unwrap(),
        std::fs::read(once.join("markers.csv")).unwrap()
    );
}

#[test]
fn gblup_models_are_explained_by_their_snp_effects() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("gblup");
    ok(&[
        "gblup",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--out",
        s(&g),
    ]);
    let out = dir.path().join("explain");
    ok(&explain_args(
        s(&g),
        s(&out),
        &["--methods", "saliency,integrated_gradients,gradcam"],
    ));
    let (header, rows) = read_csv(&out.join("markers.csv"));
    assert_eq!(header[3], "snp_blup");
    // The SNP-BLUP column is |effect| of the saved model; saliency is the same.
    let sal = header.iter().position(|h| h == "saliency").unwrap();
    for r in &rows {
        assert_eq!(r[3], r[sal]);
    }
    let sum = read_json(&out.join("summary.json"));
    assert_eq!(sum["model_kind"], "linear");
    assert_eq!(sum["ig_completeness_error"], 0.0);
    assert!(sum["notes"][0].as_str().unwrap().contains("gradcam"));
}

#[test]
fn cv_saved_fold_models_are_averaged_with_their_stability() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    std::fs::write(&config, SMALL_CNN).unwrap();
    let cv = dir.path().join("cv");
    ok(&[
        "cv",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--models",
        &format!("gblup,{}", s(&config)),
        "--folds",
        "2",
        "--epochs",
        "2",
        "--save-models",
        "--out",
        s(&cv),
    ]);
    for m in ["gblup", "small-cnn"] {
        for f in ["r1-f1", "r1-f2"] {
            assert!(cv
                .join("models")
                .join(m)
                .join(f)
                .join("model.toml")
                .is_file());
        }
    }
    // A cv folder holds two kinds of model: each is explained into OUT/NAME.
    let both = dir.path().join("both");
    let text = ok(&explain_args(
        s(&cv),
        s(&both),
        &[
            "--methods",
            "saliency",
            "--individuals",
            "ind001,ind002,ind003",
        ],
    ));
    assert!(
        text.contains("== gblup ==") && text.contains("== small-cnn =="),
        "{text}"
    );
    for (m, kind) in [("gblup", "linear"), ("small-cnn", "network")] {
        let sum = read_json(&both.join(m).join("summary.json"));
        assert_eq!(sum["model_kind"], kind);
        assert_eq!(sum["n_models"], 2);
    }
    let out = dir.path().join("explain");
    ok(&explain_args(
        s(&cv.join("models/small-cnn")),
        s(&out),
        &[
            "--methods",
            "saliency,gradcam",
            "--individuals",
            "ind001,ind002,ind003",
        ],
    ));
    let sum = read_json(&out.join("summary.json"));
    assert_eq!(sum["n_models"], 2);
    let rho = sum["stability"]["saliency"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&rho), "{rho}");
    // Grad-CAM's maps can be all zero for a fold (then no rank correlation exists).
    assert!(sum["stability"].get("gradcam").is_some());
}

#[test]
fn explain_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_small(dir.path());
    let out = dir.path().join("x");
    let err = fails(&explain_args(
        s(&model),
        s(&out),
        &["--methods", "saliency,lime"],
    ));
    assert!(err.contains("unknown method 'lime'"), "{err}");
    let err = fails(&explain_args(
        s(&model),
        s(&out),
        &["--individuals", "nobody"],
    ));
    assert!(err.contains("'nobody' is not an individual"), "{err}");
    let truth = dir.path().join("truth.csv");
    for (text, want) in [
        (
            "name,effect\nsnp1,0.5\n",
            ["truth.csv, line 1", "no 'marker' column"],
        ),
        (
            "chromosome,position\n1,12x\n",
            ["truth.csv, line 2", "'12x' is not a base-pair position"],
        ),
    ] {
        std::fs::write(&truth, text).unwrap();
        let err = fails(&explain_args(
            s(&model),
            s(&out),
            &["--truth", s(&truth), "--methods", "saliency"],
        ));
        assert!(want.iter().all(|w| err.contains(w)), "{err}");
    }
    let err = fails(&explain_args(s(&dir.path().join("none")), s(&out), &[]));
    assert!(err.contains("not a folder"), "{err}");
}

#[test]
fn image_explain_draws_what_lenet_sees_and_checks_faithfulness() {
    let dir = tempfile::tempdir().unwrap();
    let root = |p: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(p)
            .display()
            .to_string()
    };
    let (mnist, lenet) = (root("data/mnist"), root("configs/lenet5.toml"));
    let model = dir.path().join("lenet");
    ok(&[
        "image",
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        &mnist,
        "--model",
        &lenet,
        "--epochs",
        "3",
        "--out",
        s(&model),
    ]);
    let before = std::fs::read(model.join("model.safetensors")).unwrap();
    let out = dir.path().join("explain");
    let args = |rest: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["image", "explain", "--dataset", "mnist", "--data-dir"]
            .map(String::from)
            .to_vec();
        a.extend([mnist.clone(), "--model".into(), s(&model).into()]);
        a.extend(["--out".into(), s(&out).into()]);
        a.extend(rest.iter().map(|r| r.to_string()));
        a
    };
    let text = ok(&strs(&args(&[
        "--images",
        "0,1,2,3,4,5,6,7,8,9,10,11",
        "--class",
        "3",
        "--ascent-steps",
        "10",
    ])));
    assert!(text.contains("grad-cam layer"), "{text}");
    assert_eq!(
        std::fs::read(model.join("model.safetensors")).unwrap(),
        before
    );
    for f in [
        "activations_0-conv2d.png",
        "activations_1-max_pool2d.png",
        "activations_2-conv2d.png",
        "activations_3-max_pool2d.png",
        "filters_0-conv2d.png",
        "filters_2-conv2d.png",
        "gradcam.png",
    ] {
        let b = std::fs::read(out.join(f)).unwrap();
        assert_eq!(&b[1..4], b"PNG", "{f}");
    }
    let sum = read_json(&out.join("summary.json"));
    assert_eq!(sum["gradcam_layer"], "layers.2 (conv2d)");
    assert_eq!(sum["images"].as_array().unwrap().len(), 12);
    // Gradient ascent raised the mean activation of every filter that
    // responds at all (a ReLU filter silent on all the noise it started
    // from has no gradient).
    for l in ["0-conv2d", "2-conv2d"] {
        let f = &sum["filters"]["layers"][l];
        let n = |k: &str| f[k].as_u64().unwrap();
        assert_eq!(
            n("filters_increased") + n("filters_silent"),
            n("filters"),
            "{l}: {f}"
        );
        assert!(n("filters_increased") * 2 >= n("filters"), "{l}: {f}");
        assert!(f["mean_activation_end"].as_f64() > f["mean_activation_start"].as_f64());
    }
    // Deleting the pixels Grad-CAM points at lowers the class probability
    // faster than deleting pixels at random.
    let d = &sum["deletion"];
    let (g, r) = (
        d["gradcam_auc"].as_f64().unwrap(),
        d["random_auc"].as_f64().unwrap(),
    );
    assert!(g < r, "deletion AUC: gradcam {g}, random {r}");
    let err = fails(&strs(&args(&["--images", "100000"])));
    assert!(err.contains("image 100000 asked for"), "{err}");
}
