//! Options no test covered before (issue 16): `cv --jobs` and the thread
//! count, and the delimited-matrix flags `--geno-delimiter`,
//! `--geno-header` and `--geno-ids`.

use std::fs;
use std::path::Path;

use crate::common::{example_bed, example_pheno, fails, ok, read_csv, s};

fn cv(out: &Path, extra: &[&str]) {
    let mlp = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cnn1d-pez.toml");
    let mut args = vec![
        "cv",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--models",
        s(&mlp),
        "--folds",
        "4",
        "--epochs",
        "2",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    ok(&args);
}

/// The columns of metrics.csv that do not time anything.
fn metrics(dir: &Path) -> Vec<Vec<String>> {
    read_csv(&dir.join("metrics.csv")).1
}

#[test]
fn networks_in_cv_give_the_same_numbers_on_any_thread_count_and_job_count() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("t1");
    cv(&one, &["--threads", "1"]);
    let two = dir.path().join("t2");
    cv(&two, &["--threads", "2"]);
    let jobs = dir.path().join("j2");
    cv(&jobs, &["--threads", "2", "--jobs", "2"]);
    assert_eq!(metrics(&one).len(), 4);
    assert_eq!(metrics(&one), metrics(&two), "1 thread against 2");
    assert_eq!(metrics(&one), metrics(&jobs), "1 job against 2");
    for d in [&two, &jobs] {
        assert_eq!(
            fs::read(one.join("predictions.csv")).unwrap(),
            fs::read(d.join("predictions.csv")).unwrap()
        );
    }
}

#[test]
fn the_geno_flags_override_what_detection_would_read() {
    let dir = tempfile::tempdir().unwrap();
    let convert = |input: &Path, flags: &[&str], name: &str| -> (Vec<String>, Vec<Vec<String>>) {
        let out = dir.path().join(name);
        let mut args = vec!["convert", "--geno", s(input)];
        args.extend_from_slice(flags);
        args.extend(["--out", s(&out)]);
        ok(&args);
        read_csv(&out)
    };
    // Numeric marker names: detection reads the first line as a header.
    let m = dir.path().join("m.txt");
    fs::write(&m, "1 2 3\n0 1 2\n2 2 0\n").unwrap();
    let (h, rows) = convert(&m, &[], "a.csv");
    assert_eq!(
        (h, rows.len()),
        (vec!["id".into(), "1".into(), "2".into(), "3".into()], 2)
    );
    // --geno-ids yes: the first column holds the IDs, not a marker.
    let (h, rows) = convert(&m, &["--geno-ids", "yes"], "b.csv");
    assert_eq!(h, vec!["id", "2", "3"]);
    assert_eq!(rows[0], vec!["0", "1", "2"]);
    assert_eq!(rows[1], vec!["2", "2", "0"]);
    // --geno-header no: the first line is an individual, and its 3 is refused.
    let e = fails(&[
        "convert",
        "--geno",
        s(&m),
        "--geno-header",
        "no",
        "--out",
        s(&dir.path().join("c.csv")),
    ]);
    assert!(
        e.contains("m.txt, line 1, column 3") && e.contains("found '3'"),
        "{e}"
    );
    // A headerless file with numeric IDs: --geno-ids yes reads them as IDs.
    let n = dir.path().join("n.csv");
    fs::write(&n, "101,0,1\n102,2,NA\n").unwrap();
    let (h, rows) = convert(&n, &["--geno-ids", "yes", "--geno-header", "no"], "d.csv");
    assert_eq!(h, vec!["id", "m1", "m2"]);
    assert_eq!(rows[1], vec!["102", "2", "NA"]);
    // --geno-ids no: 101 is not a dosage, and the error says so.
    let e = fails(&[
        "convert",
        "--geno",
        s(&n),
        "--geno-ids",
        "no",
        "--geno-header",
        "no",
        "--out",
        s(&dir.path().join("e.csv")),
    ]);
    assert!(
        e.contains("n.csv, line 1, column 1") && e.contains("'101'"),
        "{e}"
    );
    // --geno-delimiter tab on a comma file: each line is one field.
    let two = dir.path().join("two.csv");
    fs::write(&two, "0,1\n2,1\n").unwrap();
    let e = fails(&[
        "convert",
        "--geno",
        s(&two),
        "--geno-delimiter",
        "tab",
        "--geno-ids",
        "no",
        "--out",
        s(&dir.path().join("f.csv")),
    ]);
    assert!(
        e.contains("two.csv, line 1, column 1") && e.contains("'0,1'"),
        "{e}"
    );
    // … and --geno-delimiter comma on the same file reads it.
    let (h, rows) = convert(
        &two,
        &["--geno-delimiter", "comma", "--geno-header", "no"],
        "g.csv",
    );
    assert_eq!((h.len(), rows.len()), (3, 2));
}
