//! The image path: `genocnn image train|eval|augment-preview` on the bundled
//! MNIST subset and on CIFAR-10 batches generated in the exact format.

use std::path::Path;

use crate::common::{fails, ok};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn root(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

/// The arguments of `genocnn image CMD --dataset D --data-dir DIR --out OUT`,
/// then `rest`.
fn image<'a>(
    cmd: &'a str,
    dataset: &'a str,
    data_dir: &'a str,
    out: &'a Path,
    rest: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "image",
        cmd,
        "--dataset",
        dataset,
        "--data-dir",
        data_dir,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(rest);
    args
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[1..4], b"PNG", "{} is not a PNG", path.display());
    let be = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    (be(16), be(20))
}

#[test]
fn lenet_trains_on_the_bundled_mnist_and_eval_reloads_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mnist, lenet) = (root("data/mnist"), root("configs/lenet5.toml"));
    let train = ["--model", &lenet, "--epochs", "5", "--seed", "3"];
    let out = dir.path().join("lenet");
    let o = out.to_str().unwrap();
    let text = ok(&image("train", "mnist", &mnist, &out, &train));
    assert!(text.contains("test"), "{text}");
    let s = json(&out.join("summary.json"));
    let acc = s["test_accuracy"].as_f64().unwrap();
    // 2000 training images, 5 epochs: 89–93% over seeds; chance is 10%.
    assert!(acc > 0.85, "test accuracy {acc}");
    assert_eq!(s["epochs"], 5);
    assert!(s["seconds_per_epoch"].as_f64().unwrap() > 0.0);
    // The confusion matrix: 10 × 10 counts over the 500 test images.
    let csv = std::fs::read_to_string(out.join("confusion.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 11);
    let counts: Vec<Vec<u64>> = rows[1..]
        .iter()
        .map(|r| r.split(',').skip(1).map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(counts.iter().flatten().sum::<u64>(), 500);
    let diag: u64 = (0..10).map(|i| counts[i][i]).sum();
    assert!((diag as f64 / 500.0 - acc).abs() < 1e-12);
    // The error counts the images off the confusion matrix's diagonal.
    let off: u64 = (0..10)
        .flat_map(|i| (0..10).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| counts[i][j])
        .sum();
    assert!((s["test_error"].as_f64().unwrap() - off as f64 / 500.0).abs() < 1e-12);
    assert!(png_size(&out.join("confusion.png")).0 > 300);
    let hist = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(hist.lines().count(), 6);

    // eval reloads the saved model and gets the same figures.
    let ev = dir.path().join("eval");
    ok(&image("eval", "mnist", &mnist, &ev, &["--model", o]));
    let e = json(&ev.join("summary.json"));
    assert_eq!(e["test_accuracy"].as_f64().unwrap(), acc);
    assert_eq!(
        std::fs::read_to_string(ev.join("confusion.csv")).unwrap(),
        csv
    );

    // Same seed, same weights.
    let again = dir.path().join("again");
    ok(&image("train", "mnist", &mnist, &again, &train));
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(again.join("model.safetensors")).unwrap()
    );

    // An image model is not a genotype model, and the other way round.
    let err = fails(&[
        "predict",
        "--model",
        o,
        "--geno",
        &root("data/example.bed"),
        "--out",
        dir.path().join("p.csv").to_str().unwrap(),
    ]);
    assert!(err.contains("image classifier"), "{err}");
}

#[test]
fn augmentation_trains_and_previews() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("aug.png");
    let (mnist, augment) = (root("data/mnist"), root("configs/augment-mnist.toml"));
    ok(&image(
        "augment-preview",
        "mnist",
        &mnist,
        &png,
        &[
            "--augment",
            &augment,
            "--images",
            "4",
            "--variants",
            "5",
            "--scale",
            "2",
        ],
    ));
    // 6 tiles of 28·2 + 2 pixels across, 4 down, with a 2-pixel border.
    assert_eq!(png_size(&png), (6 * 58 + 2, 4 * 58 + 2));
    let out = dir.path().join("aug");
    let lenet = root("configs/lenet5.toml");
    ok(&image(
        "train",
        "mnist",
        &mnist,
        &out,
        &[
            "--model",
            &lenet,
            "--epochs",
            "2",
            "--train-limit",
            "600",
            "--augment",
            &augment,
        ],
    ));
    let s = json(&out.join("summary.json"));
    assert_eq!(s["n_train"], 600);
    assert!(s["augment"]
        .as_str()
        .unwrap()
        .ends_with("augment-mnist.toml"));
    assert!(s["test_accuracy"].as_f64().unwrap() > 0.3);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "rotation = 10\n").unwrap();
    let bad_arg = ["--augment", bad.to_str().unwrap()];
    let err = fails(&image("augment-preview", "mnist", &mnist, &png, &bad_arg));
    assert!(
        err.contains("bad.toml") && err.contains("rotation"),
        "{err}"
    );
}

/// CIFAR-10-format batches whose classes differ by colour and by where a
/// bright square sits, plus noise: learnable in a few epochs.
fn write_cifar_like(dir: &Path, n_train: usize, n_test: usize) {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 56) as u8
    };
    let mut make = |n: usize| {
        let (mut img, mut lab) = (Vec::new(), Vec::new());
        for k in 0..n {
            let c = (k % 10) as u8;
            lab.push(c);
            for ch in 0..3 {
                for y in 0..32 {
                    for x in 0..32 {
                        let (qy, qx) = ((c as usize / 5) * 16, (c as usize % 5) * 6);
                        let inside = y >= qy && y < qy + 12 && x >= qx && x < qx + 6;
                        let base = if inside { 200 } else { 40 }
                            + if ch == (c as usize % 3) { 30 } else { 0 };
                        img.push(base as u8 / 2 + rnd() / 4);
                    }
                }
            }
        }
        (img, lab)
    };
    let (img, lab) = make(n_train);
    vision::write_cifar(&dir.join("data_batch_1.bin"), &img, &lab).unwrap();
    let (img, lab) = make(n_test);
    vision::write_cifar(&dir.join("test_batch.bin"), &img, &lab).unwrap();
}

#[test]
fn vgg_small_trains_on_generated_cifar10_batches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&data).unwrap();
    write_cifar_like(&data, 400, 100);
    let out = dir.path().join("vgg");
    let (vgg, augment) = (
        root("configs/vgg-small.toml"),
        root("configs/augment-cifar10.toml"),
    );
    let d = dir.path().to_str().unwrap();
    let rest = ["--model", &vgg, "--epochs", "3", "--augment", &augment];
    ok(&image("train", "cifar10", d, &out, &rest));
    let s = json(&out.join("summary.json"));
    assert_eq!(s["dataset"], "cifar10");
    assert_eq!(s["n_train"], 400);
    assert_eq!(s["n_test"], 100);
    let acc = s["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.5, "test accuracy {acc} on an easy generated set");
    let csv = std::fs::read_to_string(out.join("confusion.csv")).unwrap();
    assert!(
        csv.starts_with("true\\predicted,airplane,automobile"),
        "{csv}"
    );

    // A batch cut short is refused with the file named.
    let b = std::fs::read(data.join("test_batch.bin")).unwrap();
    std::fs::write(data.join("test_batch.bin"), &b[..b.len() - 100]).unwrap();
    let (e, model) = (dir.path().join("e"), ["--model", out.to_str().unwrap()]);
    let err = fails(&image(
        "eval",
        "cifar10",
        data.to_str().unwrap(),
        &e,
        &model,
    ));
    assert!(
        err.contains("test_batch.bin") && err.contains("3073"),
        "{err}"
    );
}

#[test]
fn googlenet_mini_and_vgg11_train_and_reload() {
    // The Inception blocks of googlenet-mini on a part of the bundled MNIST,
    // VGG-11 on generated CIFAR-10 batches; each reloads with the same figures.
    let dir = tempfile::tempdir().unwrap();
    let (mnist, gn) = (root("data/mnist"), root("configs/googlenet-mini.toml"));
    let out = dir.path().join("gn");
    let rest = [
        "--model",
        &gn,
        "--epochs",
        "1",
        "--train-limit",
        "400",
        "--batch-size",
        "32",
    ];
    ok(&image("train", "mnist", &mnist, &out, &rest));
    let s = json(&out.join("summary.json"));
    assert_eq!(s["n_train"], 400);
    let acc = s["test_accuracy"].as_f64().unwrap();
    let ev = dir.path().join("gn-eval");
    ok(&image(
        "eval",
        "mnist",
        &mnist,
        &ev,
        &["--model", out.to_str().unwrap()],
    ));
    assert_eq!(
        json(&ev.join("summary.json"))["test_accuracy"]
            .as_f64()
            .unwrap(),
        acc
    );

    let data = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&data).unwrap();
    write_cifar_like(&data, 64, 20);
    let (out, vgg) = (dir.path().join("vgg11"), root("configs/vgg11.toml"));
    let d = dir.path().to_str().unwrap();
    ok(&image(
        "train",
        "cifar10",
        d,
        &out,
        &["--model", &vgg, "--epochs", "1", "--batch-size", "16"],
    ));
    let s = json(&out.join("summary.json"));
    assert_eq!(
        (s["n_train"].as_u64(), s["n_test"].as_u64()),
        (Some(64), Some(20))
    );
    assert!(s["n_parameters"].as_u64().unwrap() > 9_000_000, "{s}");
    let ev = dir.path().join("vgg-eval");
    ok(&image(
        "eval",
        "cifar10",
        d,
        &ev,
        &["--model", out.to_str().unwrap()],
    ));
    assert_eq!(
        json(&ev.join("summary.json"))["test_accuracy"],
        s["test_accuracy"]
    );
}

#[test]
fn image_commands_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (d, o, mnist) = (
        dir.path().to_str().unwrap(),
        dir.path().join("o"),
        root("data/mnist"),
    );
    let lenet = root("configs/lenet5.toml");
    let err = fails(&image("train", "mnist", d, &o, &["--model", &lenet]));
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    let vgg = root("configs/vgg-small.toml");
    let err = fails(&image("train", "cifar10", d, &o, &["--model", &vgg]));
    assert!(err.contains("data_batch_1.bin"), "{err}");
    // A regression model cannot classify images.
    let mlp = root("configs/mlp.toml");
    let err = fails(&image("train", "mnist", &mnist, &o, &["--model", &mlp]));
    assert!(err.contains("softmax_cross_entropy"), "{err}");
    // A genotype model is not an image classifier.
    let genomic = root("tests/fixtures");
    let err = fails(&image("eval", "mnist", &mnist, &o, &["--model", &genomic]));
    assert!(err.contains("model.toml"), "{err}");
}
