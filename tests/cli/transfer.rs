//! Transfer learning: `--init-from` copies every tensor whose name and
//! shape match, `--freeze` keeps layers bit-identical, a fine-tuning phase
//! unfreezes them, `--classes` retargets an image model; and each error
//! names the paths.

use std::fs;
use std::path::Path;

use crate::common::{example_bed, example_pheno, fails, ok, read_csv, read_json, s};
use model::transfer::{init_from, sha256_hex};
use nn::Native;

/// A small 1D convnet with a batch norm in its base.
const SMALL: &str = r#"
name = "small"
input = "standardized"
[[layers]]
type = "conv1d"
filters = 4
kernel = 5
activation = "relu"
[[layers]]
type = "batch_norm"
[[layers]]
type = "max_pool1d"
size = 4
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 8
activation = "relu"
[[layers]]
type = "dense"
units = 1
[training]
epochs = 2
batch_size = 32
lr = 1e-3
val_fraction = 0.2
patience = 5
"#;

fn train<'a>(config: &'a str, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--out",
        s(out),
    ];
    if !config.is_empty() {
        a.extend(["--model", config]);
    }
    a.extend_from_slice(extra);
    a
}

/// name → (shape, bits) of a saved model's tensors.
fn tensors(dir: &Path) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    model::read_weights(dir)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(n, sh, v)| (n, sh, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn inside(name: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| name.starts_with(&format!("{p}.")))
}

/// Two phases from `src`: the base frozen, then 2 epochs of fine-tuning
/// with `layers.0` unfrozen at a lower learning rate.
fn fine_tune(src: &Path) -> [&str; 10] {
    [
        "--init-from",
        s(src),
        "--freeze",
        "base",
        "--fine-tune-epochs",
        "2",
        "--fine-tune-lr",
        "1e-4",
        "--unfreeze",
        "layers.0",
    ]
}

#[test]
fn a_frozen_base_is_copied_exactly_and_stays_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    fs::write(&config, SMALL).unwrap();
    let src = dir.path().join("src");
    ok(&train(s(&config), &src, &["--seed", "3"]));

    // Phase 1 only, base frozen: conv, batch norm (statistics included) and
    // pool come through bit for bit; the head trains on.
    let frozen = dir.path().join("frozen");
    let text = ok(&train(
        "",
        &frozen,
        &["--init-from", s(&src), "--freeze", "base", "--seed", "9"],
    ));
    assert!(text.contains("trainable"), "{text}");
    let (a, b) = (tensors(&src), tensors(&frozen));
    assert_eq!(a.len(), b.len());
    let base = ["layers.0", "layers.1", "layers.2"];
    for ((na, sa, va), (nb, sb, vb)) in a.iter().zip(&b) {
        assert_eq!((na, sa), (nb, sb));
        if inside(na, &base) {
            assert_eq!(va, vb, "{na} changed although frozen");
        } else if na.ends_with("weight") {
            assert_ne!(va, vb, "{na} did not train");
        }
    }
    let j = read_json(&frozen.join("summary.json"));
    let t = &j["transfer"];
    let copied: Vec<&str> = t["copied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(copied.len(), a.len(), "{t}");
    assert!(t["skipped"].as_array().unwrap().is_empty());
    assert_eq!(
        t["source_sha256"].as_str().unwrap(),
        sha256_hex(&fs::read(src.join("model.safetensors")).unwrap())
    );
    assert_eq!(t["phases"][0]["frozen"][0], "layers.0");
    // model.toml records the source and what was frozen.
    let toml_text = fs::read_to_string(frozen.join("model.toml")).unwrap();
    assert!(
        toml_text.contains("[transfer]") && toml_text.contains(s(&src)),
        "{toml_text}"
    );

    // Two phases: the base unfrozen for fine-tuning moves, history marks
    // each epoch's phase.
    let tuned = dir.path().join("tuned");
    ok(&train("", &tuned, &fine_tune(&src)));
    let c = tensors(&tuned);
    let get = |t: &[(String, Vec<usize>, Vec<u32>)], n: &str| {
        t.iter().find(|x| x.0 == n).unwrap().2.clone()
    };
    assert_ne!(get(&a, "layers.0.weight"), get(&c, "layers.0.weight"));
    // layers.1, the batch norm, stayed frozen in both phases.
    for n in [
        "layers.1.gamma",
        "layers.1.running_mean",
        "layers.1.running_var",
    ] {
        assert_eq!(get(&a, n), get(&c, n), "{n}");
    }
    let (h, rows) = read_csv(&tuned.join("history.csv"));
    let phase = h.iter().position(|c| c == "phase").unwrap();
    let phases: Vec<&str> = rows.iter().map(|r| r[phase].as_str()).collect();
    assert!(phases.contains(&"1") && phases.contains(&"2"), "{phases:?}");
    let j = read_json(&tuned.join("summary.json"));
    assert_eq!(j["transfer"]["phases"][1]["frozen"][0], "layers.1");
}

#[test]
fn another_marker_panel_gives_its_convolutional_base_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    fs::write(&config, SMALL).unwrap();
    let src = dir.path().join("src");
    ok(&train(s(&config), &src, &["--epochs", "1"]));
    let source = model::read_weights(&src).unwrap();
    let spec = model::ModelSpec::from_file(&config).unwrap();
    // 3000 markers in the source; a panel of 2000 here.
    let mut net = model::build_network(Native::new(), &spec, 2000, 0, 1).unwrap();
    let r = init_from(&mut net, &source, &[]).unwrap();
    assert_eq!(
        r.copied,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.gamma",
            "layers.1.beta",
            "layers.1.running_mean",
            "layers.1.running_var",
            "layers.4.bias",
            "layers.5.weight",
            "layers.5.bias"
        ]
    );
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].name, "layers.4.weight");
    assert_eq!(r.skipped[0].source_shape, [8, 4 * 749]);
    assert_eq!(r.skipped[0].shape, [8, 4 * 499]);
    assert!(r.initialised.is_empty());
    // The copied values are the source's, exactly.
    for p in net.params() {
        if let Some((_, _, v)) = source.tensors.iter().find(|t| t.0 == p.name) {
            if r.copied.contains(&p.name) {
                assert_eq!(&p.value.data, v, "{}", p.name);
            }
        }
    }
}

#[test]
fn transfer_errors_name_the_paths() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    fs::write(&config, SMALL).unwrap();
    let c = s(&config);
    let out = dir.path().join("o");
    let e = fails(&train(c, &out, &["--freeze", "layers.42"]));
    assert!(
        e.contains("layers.42 names no layer") && e.contains("layers.0 (conv1d)"),
        "{e}"
    );
    let e = fails(&train(c, &out, &["--freeze", "all"]));
    assert!(e.contains("leaves nothing to train"), "{e}");
    // Every tensor mismatches: a LeNet-5 image model into this network.
    let lenet = dir.path().join("lenet");
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let lenet_cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/lenet5.toml");
    ok(&[
        "image",
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        s(&mnist),
        "--model",
        s(&lenet_cfg),
        "--epochs",
        "1",
        "--train-limit",
        "64",
        "--out",
        s(&lenet),
    ]);
    let e = fails(&train(c, &out, &["--init-from", s(&lenet)]));
    assert!(
        e.contains("no tensor matches")
            && e.contains("layers.0.weight [6, 1, 5, 5]")
            && e.contains("layers.0.weight [4, 1, 5]"),
        "{e}"
    );
    let e = fails(&train(
        c,
        &out,
        &[
            "--freeze",
            "base",
            "--fine-tune-epochs",
            "1",
            "--unfreeze",
            "layers.4",
        ],
    ));
    assert!(e.contains("--unfreeze layers.4: it is not frozen"), "{e}");
    assert!(!out.join("model.toml").exists());
}

#[test]
fn an_image_model_is_retargeted_to_other_classes() {
    let dir = tempfile::tempdir().unwrap();
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let lenet = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/lenet5.toml");
    let img = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "image".to_string(),
            "train".into(),
            "--dataset".into(),
            "mnist".into(),
            "--data-dir".into(),
            s(&mnist).into(),
            "--out".into(),
            s(out).into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let pre = dir.path().join("pre");
    let a = img(
        &pre,
        &["--model", s(&lenet), "--classes", "0-4", "--epochs", "1"],
    );
    ok(&a.iter().map(|x| x.as_str()).collect::<Vec<_>>());
    let j = read_json(&pre.join("summary.json"));
    assert_eq!(j["classes"], serde_json::json!([0, 1, 2, 3, 4]));
    let new = dir.path().join("new");
    let a = img(
        &new,
        &[
            "--init-from",
            s(&pre),
            "--classes",
            "5,6,7,8,9",
            "--train-limit",
            "100",
            "--freeze",
            "base",
            "--epochs",
            "1",
        ],
    );
    ok(&a.iter().map(|x| x.as_str()).collect::<Vec<_>>());
    let j = read_json(&new.join("summary.json"));
    assert_eq!(j["classes"], serde_json::json!([5, 6, 7, 8, 9]));
    assert_eq!(j["train_limit"], 100);
    assert_eq!(j["n_train"], 100);
    // The 0–4 output layer is not copied, though it has the same shape.
    assert_eq!(
        j["transfer"]["initialised"],
        serde_json::json!(["layers.7.weight", "layers.7.bias"])
    );
    assert!(j["transfer"]["reinit_note"]
        .as_str()
        .unwrap()
        .contains("replaced"));
    // Test images of other classes are left out: the bundled set has 500.
    let n_test = j["n_test"].as_u64().unwrap();
    assert!(n_test > 150 && n_test < 350, "{n_test}");
    // eval selects the model's classes too.
    let ev = dir.path().join("ev");
    ok(&[
        "image",
        "eval",
        "--dataset",
        "mnist",
        "--data-dir",
        s(&mnist),
        "--model",
        s(&new),
        "--out",
        s(&ev),
    ]);
    assert_eq!(read_json(&ev.join("summary.json"))["n_test"], n_test);
    let (h, _) = read_csv(&ev.join("confusion.csv"));
    assert_eq!(h[1..], ["5", "6", "7", "8", "9"]);
}

/// A two-phase run (a frozen base, then fine-tuning with the base
/// unfrozen) killed with SIGKILL, at the end of phase 1 and inside phase
/// 2, resumes to the same model, bit for bit, as the run never stopped
/// (issue 16): the checkpoint carries the phase, its frozen layers, its
/// learning rate and the best weights of the phase before.
#[test]
fn a_killed_fine_tuning_run_resumes_bit_identical_in_either_phase() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    fs::write(&config, SMALL).unwrap();
    let src = dir.path().join("src");
    ok(&train(s(&config), &src, &["--seed", "3"]));
    let mut phases = fine_tune(&src).to_vec();
    phases.extend(["--threads", "2"]);
    let full = dir.path().join("full");
    ok(&train("", &full, &phases));
    let (_, rows) = read_csv(&full.join("history.csv"));
    assert_eq!(rows.len(), 4, "2 epochs in each phase");
    for kill_after in ["2", "3"] {
        let out = dir.path().join(format!("killed{kill_after}"));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_genocnn"))
            .env("GENOCNN_KILL_AFTER_EPOCH", kill_after)
            .args(train("", &out, &phases))
            .status()
            .unwrap();
        assert_eq!(status.signal(), Some(9), "expected SIGKILL, got {status:?}");
        ok(&["train", "--resume", s(&out)]);
        assert_eq!(
            fs::read(full.join("model.safetensors")).unwrap(),
            fs::read(out.join("model.safetensors")).unwrap(),
            "killed after epoch {kill_after}: the resumed model differs"
        );
        let (_, resumed) = read_csv(&out.join("history.csv"));
        let losses = |r: &[Vec<String>]| -> Vec<Vec<String>> {
            r.iter()
                .map(|row| [&row[..5], &row[6..]].concat())
                .collect()
        };
        assert_eq!(
            losses(&rows),
            losses(&resumed),
            "killed after epoch {kill_after}"
        );
    }
}
