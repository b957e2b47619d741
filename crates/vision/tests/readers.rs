//! The MNIST and CIFAR-10 readers: round trips, the real MNIST when present,
//! and clear errors for bad files.

use std::path::{Path, PathBuf};

use vision::{read_cifar, read_idx, read_mnist, write_idx};

#[test]
fn idx_round_trips_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8 * 7).collect();
    for gz in [false, true] {
        let p = dir.path().join(format!("x{gz}.idx"));
        write_idx(&p, &[2, 3, 4], &data, gz).unwrap();
        let idx = read_idx(&p).unwrap();
        assert_eq!(idx.dims, vec![2, 3, 4]);
        assert_eq!(idx.data, data);
    }
}

#[test]
fn mnist_split_reads_and_checks_counts() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(
        &dir.path().join("t-images-idx3-ubyte.gz"),
        &[5, 28, 28],
        &vec![9u8; 5 * 784],
        true,
    )
    .unwrap();
    write_idx(
        &dir.path().join("t-labels-idx1-ubyte.gz"),
        &[5],
        &[0, 1, 2, 3, 9],
        true,
    )
    .unwrap();
    let s = read_mnist(dir.path(), "t").unwrap();
    assert_eq!((s.len(), s.height, s.width, s.channels), (5, 28, 28, 1));
    write_idx(
        &dir.path().join("t-labels-idx1-ubyte.gz"),
        &[4],
        &[0, 1, 2, 3],
        true,
    )
    .unwrap();
    let e = read_mnist(dir.path(), "t").unwrap_err().to_string();
    assert!(e.contains("4 labels for the 5 images"), "{e}");
}

#[test]
fn bad_idx_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.idx");
    std::fs::write(&p, [0u8, 0, 0x0d, 1, 0, 0, 0, 1, 5]).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(
        e.contains("bad.idx") && e.contains("bad IDX magic number 00 00 0d 01"),
        "{e}"
    );
    std::fs::write(&p, [0u8, 0, 8, 1, 0, 0, 0, 3, 5]).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(
        e.contains("promises 3 = 3 values, but the file holds 1"),
        "{e}"
    );
}

#[test]
fn cifar_batches_read_and_bad_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Vec::new();
    for k in 0..3u8 {
        rec.push(k);
        rec.extend(std::iter::repeat_n(k * 10, 3072));
    }
    let p = dir.path().join("data_batch_1.bin");
    std::fs::write(&p, &rec).unwrap();
    let s = read_cifar(std::slice::from_ref(&p)).unwrap();
    assert_eq!((s.len(), s.channels, s.height, s.width), (3, 3, 32, 32));
    assert_eq!(s.images[3072 * 2], 20);
    std::fs::write(&p, &rec[..rec.len() - 1]).unwrap();
    let e = read_cifar(std::slice::from_ref(&p))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data_batch_1.bin") && e.contains("not a whole number of 3073-byte"),
        "{e}"
    );
}

#[test]
fn real_mnist_reads_when_present() {
    let dir: PathBuf = std::env::var_os("GENOCNN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("mnist");
    if !dir.is_dir() {
        eprintln!(
            "skipping real_mnist_reads_when_present: {} not found",
            dir.display()
        );
        return;
    }
    let train = read_mnist(&dir, "train").unwrap();
    let test = read_mnist(&dir, "t10k").unwrap();
    assert_eq!(
        (train.len(), test.len(), train.height, train.width),
        (60_000, 10_000, 28, 28)
    );
    let mut counts = [0usize; 10];
    for &l in &test.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(counts.iter().sum::<usize>(), 10_000);
    assert!(counts.iter().all(|&c| c > 800));
}

#[test]
fn bundled_mnist_subset_reads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let train = read_mnist(&dir, "train").unwrap();
    let test = read_mnist(&dir, "t10k").unwrap();
    assert_eq!((train.len(), test.len()), (2000, 500));
    assert_eq!(train.images.len(), 2000 * 784);
}

#[test]
fn classes_are_selected_in_order_and_relabelled() {
    use vision::{parse_classes, ImageSet};
    assert_eq!(parse_classes("5-9", 10).unwrap(), vec![5, 6, 7, 8, 9]);
    assert_eq!(parse_classes("7, 0-2", 10).unwrap(), vec![7, 0, 1, 2]);
    for (text, why) in [
        ("5-12", "class 12 does not exist"),
        ("9-5", "runs backwards"),
        ("1,1", "given twice"),
        ("3", "at least 2"),
        ("a-3", "'a' is not a class"),
    ] {
        let e = parse_classes(text, 10).unwrap_err();
        assert!(e.contains(why) && e.contains(text), "{text}: {e}");
    }
    // Four 1 × 1 × 2 images of labels 3, 1, 3, 2.
    let set = ImageSet {
        images: vec![0, 1, 10, 11, 20, 21, 30, 31],
        labels: vec![3, 1, 3, 2],
        channels: 1,
        height: 1,
        width: 2,
    };
    let s = set.select_classes(&[3, 2]);
    assert_eq!(s.labels, vec![0, 0, 1]);
    assert_eq!(s.images, vec![0, 1, 20, 21, 30, 31]);
}

/// Issue 16: a header whose dimensions overflow, an empty split and images
/// of zero rows are errors naming the file, not a panic or an accuracy of 0.
#[test]
fn overflowing_empty_and_zero_size_idx_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 4 dimensions of 2^32 − 1: their product passes u64.
    let p = dir.path().join("huge-images-idx3-ubyte");
    let mut b = vec![0u8, 0, 0x08, 4];
    for _ in 0..4 {
        b.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    std::fs::write(&p, &b).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(
        e.contains("huge-images") && e.contains("multiply past"),
        "{e}"
    );
    for (name, dims, want) in [
        ("empty", [0usize, 28, 28], "holds no images"),
        ("flat", [3, 0, 28], "images of 0 × 28 pixels"),
    ] {
        let n: usize = dims.iter().product();
        write_idx(
            &dir.path().join(format!("{name}-images-idx3-ubyte")),
            &dims,
            &vec![0u8; n],
            false,
        )
        .unwrap();
        write_idx(
            &dir.path().join(format!("{name}-labels-idx1-ubyte")),
            &[dims[0]],
            &vec![0u8; dims[0]],
            false,
        )
        .unwrap();
        let e = read_mnist(dir.path(), name).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{name}-images-idx3-ubyte")) && e.contains(want),
            "{e}"
        );
    }
}
