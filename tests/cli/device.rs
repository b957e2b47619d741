//! `--device`: the candle backend where it is compiled in (feature
//! `candle`), and a clear error where it is not. Weights move between
//! backends: a model trained on one predicts on the other.

use std::path::Path;

use crate::common::{fails, s};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const SMALL: &str = r#"
name = "small"
[[layers]]
type = "conv1d"
filters = 4
kernel = 5
activation = "relu"
[[layers]]
type = "max_pool1d"
size = 2
[[layers]]
type = "conv1d"
filters = 4
kernel = 3
padding = "same"
activation = "tanh"
[[layers]]
type = "batch_norm"
[[layers]]
type = "flatten"
[[layers]]
type = "dropout"
rate = 0.1
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
val_fraction = 0.2
"#;

#[cfg(feature = "candle")]
mod with_candle {
    use std::path::{Path, PathBuf};

    use super::{root, SMALL};
    use crate::common::{ok, read_csv, s, train_example_args};

    fn train(dir: &Path, device: &str) -> PathBuf {
        let config = dir.join("small.toml");
        std::fs::write(&config, SMALL).unwrap();
        let out = dir.join(format!("model-{device}"));
        // The native backend in fp32, to compare with candle's f32; candle
        // keeps the default (auto), which is fp32 there.
        let mut extra = vec!["--device", device, "--seed", "4"];
        if device == "native" {
            extra.extend(["--precision", "fp32"]);
        }
        ok(&train_example_args(&config, &out, &extra));
        out
    }

    fn predict(dir: &Path, model: &Path, device: &str) -> Vec<f64> {
        let out = dir.join(format!(
            "pred-{}-{device}.csv",
            model.file_name().unwrap().to_string_lossy()
        ));
        ok(&[
            "predict",
            "--model",
            s(model),
            "--geno",
            s(&root().join("data/example.bed")),
            "--device",
            device,
            "--precision",
            "fp32",
            "--out",
            s(&out),
        ]);
        read_csv(&out)
            .1
            .iter()
            .map(|r| r[1].parse().unwrap())
            .collect()
    }

    fn close(a: &[f64], b: &[f64]) -> f64 {
        let scale = b.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn models_move_between_native_and_candle() {
        let dir = tempfile::tempdir().unwrap();
        // Trained on candle-cpu, predicted on both.
        let m = train(dir.path(), "candle-cpu");
        let (on_native, on_candle) = (
            predict(dir.path(), &m, "native"),
            predict(dir.path(), &m, "candle-cpu"),
        );
        assert_eq!(on_native.len(), 600);
        assert!(
            close(&on_native, &on_candle) <= 1e-4,
            "candle-trained: {}",
            close(&on_native, &on_candle)
        );
        // And the other way round.
        let m = train(dir.path(), "native");
        let (on_native, on_candle) = (
            predict(dir.path(), &m, "native"),
            predict(dir.path(), &m, "candle-cpu"),
        );
        assert!(
            close(&on_candle, &on_native) <= 1e-4,
            "native-trained: {}",
            close(&on_candle, &on_native)
        );
        // `--precision auto` runs candle in fp32 (bf16 is native only).
        let summary = crate::common::read_json(&dir.path().join("model-candle-cpu/summary.json"));
        assert_eq!(summary["precision"], "fp32", "{summary}");
        // The same seed trains the same model on both backends, to float precision.
        let a = read_csv(&dir.path().join("model-candle-cpu/history.csv")).1;
        let b = read_csv(&dir.path().join("model-native/history.csv")).1;
        for (ra, rb) in a.iter().zip(&b) {
            let (la, lb): (f64, f64) = (ra[2].parse().unwrap(), rb[2].parse().unwrap());
            assert!(
                (la - lb).abs() <= 1e-4 * lb.abs(),
                "epoch {}: loss {la} on candle, {lb} native",
                ra[0]
            );
        }
    }
}

#[cfg(not(feature = "candle"))]
#[test]
fn candle_devices_say_how_to_get_them() {
    use crate::common::train_example_args;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    std::fs::write(&config, SMALL).unwrap();
    let out = dir.path().join("m");
    for (device, feature) in [
        ("candle-cpu", "--features candle"),
        ("cuda", "--features cuda"),
        ("cuda:1", "--features cuda"),
    ] {
        let err = fails(&train_example_args(&config, &out, &["--device", device]));
        assert!(err.contains(feature), "{device}: {err}");
    }
}

#[test]
fn unknown_devices_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&[
        "image",
        "eval",
        "--dataset",
        "mnist",
        "--data-dir",
        s(&root().join("data/mnist")),
        "--model",
        s(dir.path()),
        "--device",
        "tpu",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert!(
        err.contains("--device tpu") && err.contains("candle-cpu"),
        "{err}"
    );
    let err = fails(&[
        "cv",
        "--geno",
        s(&root().join("data/example.bed")),
        "--pheno",
        s(&root().join("data/example.pheno.csv")),
        "--trait",
        "trait",
        "--models",
        "gblup",
        "--device",
        "cuda:x",
        "--out",
        s(&dir.path().join("cv")),
    ]);
    assert!(err.contains("cuda:N"), "{err}");
}

/// `--precision bf16`: the matrix products in bf16 where the CPU has
/// AVX512-BF16 (predictions within bf16's rounding of fp32's, and not
/// equal to them, so the path was taken), a clear error where it has not,
/// and never on another device.
#[test]
fn precision_bf16_runs_the_products_in_bf16_or_says_why_not() {
    use crate::common::{ok, read_csv, train_example_args};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    std::fs::write(&config, SMALL).unwrap();
    let err = fails(&train_example_args(
        &config,
        &dir.path().join("m-candle"),
        &["--precision", "bf16", "--device", "candle-cpu"],
    ));
    assert!(err.contains("native backend only"), "{err}");
    let out = dir.path().join("m");
    if !kernels::SimdPath::Avx512Bf16.is_available() {
        let err = fails(&train_example_args(&config, &out, &["--precision", "bf16"]));
        assert!(err.contains("AVX512-BF16"), "{err}");
        eprintln!("skipped the bf16 runs: this CPU has no AVX512-BF16");
        return;
    }
    ok(&train_example_args(
        &config,
        &out,
        &["--precision", "bf16", "--seed", "3", "--threads", "2"],
    ));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["precision"], "bf16", "{summary}");
    // The best bf16 path this CPU has: the AMX tiles, else AVX512-BF16.
    let best = kernels::SimdPath::available_bf16()[0].to_string();
    assert!(
        summary["backend"].as_str().unwrap().contains(&best),
        "{summary}"
    );
    let predict = |precision: &str| {
        let file = dir.path().join(format!("pred-{precision}.csv"));
        ok(&[
            "predict",
            "--model",
            s(&out),
            "--geno",
            s(&root().join("data/example.bed")),
            "--precision",
            precision,
            "--out",
            s(&file),
        ]);
        let (_, rows) = read_csv(&file);
        rows.iter()
            .map(|r| r[1].parse::<f64>().unwrap())
            .collect::<Vec<_>>()
    };
    let (p32, p16) = (predict("fp32"), predict("bf16"));
    let mean = p32.iter().sum::<f64>() / p32.len() as f64;
    let sd = (p32.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / p32.len() as f64).sqrt();
    let worst = p32
        .iter()
        .zip(&p16)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst > 0.0,
        "bf16 predictions equal fp32's: the path was not taken"
    );
    // Each product is within 2⁻⁷ of its value; through four weighted layers
    // the predictions stay within a few percent of their spread.
    assert!(
        worst <= 0.05 * sd,
        "bf16 moved a prediction by {worst} (sd {sd})"
    );
}

/// `--precision auto`, the default: bf16 on the native backend where the
/// CPU has AVX512-BF16, fp32 where it has not or where `GENOCNN_SIMD`
/// forces an f32 path. The default run is the explicit run of the
/// precision it chose, weight for weight, and `summary.json` names it.
#[test]
fn precision_auto_is_bf16_where_the_cpu_has_it() {
    use crate::common::{ok, read_json, train_example_args};
    if std::env::var_os("GENOCNN_SIMD").is_some() {
        eprintln!("skipped: GENOCNN_SIMD is set, and it decides what auto picks");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    std::fs::write(&config, SMALL).unwrap();
    let expected = if kernels::SimdPath::Avx512Bf16.is_available() {
        "bf16"
    } else {
        "fp32"
    };
    let train = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = train_example_args(&config, &out, &["--seed", "3", "--threads", "2"]);
        args.extend_from_slice(extra);
        ok(&args);
        out
    };
    let auto = train("auto", &[]);
    let chosen = train("chosen", &["--precision", expected]);
    assert_eq!(read_json(&auto.join("summary.json"))["precision"], expected);
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(
        weights(&auto) == weights(&chosen),
        "the default run's weights differ from --precision {expected}'s"
    );
    if expected == "bf16" {
        // Not fp32's weights: the choice was taken.
        let fp32 = train("fp32", &["--precision", "fp32"]);
        assert_eq!(read_json(&fp32.join("summary.json"))["precision"], "fp32");
        assert!(
            weights(&auto) != weights(&fp32),
            "auto trained fp32's weights"
        );
    }
    // An f32 path forced by GENOCNN_SIMD keeps auto in fp32.
    let forced = dir.path().join("forced");
    let args = train_example_args(&config, &forced, &["--seed", "3"]);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_genocnn"))
        .args(&args)
        .env("GENOCNN_SIMD", "avx2")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = read_json(&forced.join("summary.json"));
    if kernels::SimdPath::Avx2.is_available() {
        assert_eq!(summary["precision"], "fp32", "{summary}");
        assert!(
            summary["backend"].as_str().unwrap().contains("avx2"),
            "{summary}"
        );
    }
}
