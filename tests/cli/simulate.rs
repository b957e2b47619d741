//! `genocnn simulate`: reproducible files of the promised shape.

use std::fs;

use crate::common::{fails, ok, read_csv, s};

const FILES: [&str; 7] = [
    ".bed",
    ".bim",
    ".fam",
    ".csv",
    ".pheno.csv",
    ".qtl.csv",
    ".epistasis.csv",
];

#[test]
fn same_seed_gives_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let p = dir.path().join(name);
        ok(&[
            "simulate",
            "--n",
            "60",
            "--snps",
            "300",
            "--chromosomes",
            "3",
            "--qtl",
            "12",
            "--h2",
            "0.4",
            "--dominance",
            "0.1",
            "--epistasis",
            "0.2",
            "--seed",
            seed,
            "--out",
            s(&p),
        ]);
        p
    };
    let (a, b, c) = (run("a", "5"), run("b", "5"), run("c", "6"));
    let read = |p: &std::path::Path, ext: &str| fs::read(format!("{}{ext}", p.display())).unwrap();
    for ext in FILES {
        assert_eq!(read(&a, ext), read(&b, ext), "{ext}");
    }
    assert_ne!(read(&a, ".bed"), read(&c, ".bed"));
    let (h, rows) = read_csv(&dir.path().join("a.pheno.csv"));
    assert_eq!(h, ["id", "trait"]);
    assert_eq!(rows.len(), 60);
    let (h, rows) = read_csv(&dir.path().join("a.qtl.csv"));
    assert_eq!(&h[..4], ["marker", "chromosome", "position", "effect"]);
    assert_eq!(rows.len(), 12);
    let g = geno::GenoReader::new(dir.path().join("a.bed"))
        .read()
        .unwrap();
    assert_eq!((g.n_individuals(), g.n_markers()), (60, 300));
    let chroms: std::collections::BTreeSet<&str> =
        g.markers().iter().map(|m| m.chromosome.as_str()).collect();
    assert_eq!(chroms.len(), 3);
}

#[test]
fn impossible_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    let err = fails(&[
        "simulate",
        "--n",
        "50",
        "--snps",
        "100",
        "--qtl",
        "10",
        "--h2",
        "0.7",
        "--epistasis",
        "0.5",
        "--out",
        s(&p),
    ]);
    assert!(err.contains("cannot exceed 1"), "{err}");
    let err = fails(&[
        "simulate",
        "--n",
        "50",
        "--snps",
        "100",
        "--qtl",
        "200",
        "--out",
        s(&p),
    ]);
    assert!(err.contains("--qtl 200"), "{err}");
    assert!(!dir.path().join("x.bed").exists());
}

#[test]
fn bench_io_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("io.json");
    ok(&[
        "bench",
        "io",
        "--n",
        "101",
        "--snps",
        "517",
        "--reps",
        "1",
        "--json",
        s(&j),
    ]);
    let v = crate::common::read_json(&j);
    for case in ["bed_decode_standardized", "csv_parse", "bed_read"] {
        assert!(
            v["cases"][case]["seconds"].as_f64().unwrap() > 0.0,
            "{case}"
        );
    }
}

#[test]
fn correlated_traits_with_missing_records() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mt");
    let text = ok(&[
        "simulate",
        "--n",
        "400",
        "--snps",
        "500",
        "--qtl",
        "50",
        "--traits",
        "2",
        "--h2",
        "0.6,0.3",
        "--genetic-correlation",
        "0.8",
        "--missing-rate",
        "0,0.7",
        "--no-csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        text.contains("genetic correlation with trait1 0.8"),
        "{text}"
    );
    let (h, rows) = read_csv(&dir.path().join("mt.pheno.csv"));
    assert_eq!(h, ["id", "trait1", "trait2"]);
    let na = |c: usize| rows.iter().filter(|r| r[c] == "NA").count() as f64 / 400.0;
    assert_eq!(na(1), 0.0);
    assert!((na(2) - 0.7).abs() < 0.07, "{}", na(2));
    let (q, _) = read_csv(&dir.path().join("mt.qtl.csv"));
    assert_eq!(q.last().unwrap(), "effect_trait2");
    let e = fails(&[
        "simulate",
        "--traits",
        "3",
        "--h2",
        "0.5,0.2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("2 values for 3 traits"), "{e}");
}

/// `bench kernels` times each case on every path this CPU runs, beside
/// that path's measured peak; no matrix product can beat the peak of its
/// own path, so a fraction past 1 would mean a wrong peak or flop count.
#[test]
fn bench_kernels_reports_each_path_against_its_peak() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("k.json");
    ok(&[
        "bench",
        "kernels",
        "--reps",
        "1",
        "--filter",
        "lenet_conv1",
        "--json",
        s(&j),
    ]);
    let v = crate::common::read_json(&j);
    let mut want = kernels::SimdPath::available();
    if kernels::SimdPath::Avx512Bf16.is_available() {
        want.push(kernels::SimdPath::Avx512Bf16);
    }
    for path in want {
        let p = &v["paths"][path.to_string()];
        let peak = p["peak_gflops"].as_f64().unwrap();
        let case = &p["cases"]["lenet_conv1"];
        let fraction = case["fraction_of_peak"].as_f64().unwrap();
        assert!(
            peak > 0.0 && case["gflops"].as_f64().unwrap() > 0.0,
            "{path}: {p}"
        );
        assert!(
            fraction > 0.0 && fraction < 1.0,
            "{path}: {fraction} of the peak"
        );
    }
    let e = crate::common::fails(&["bench", "kernels", "--paths", "avx9"]);
    assert!(e.contains("--paths") && e.contains("avx9"), "{e}");
}

/// The GRM's int8 product is timed with the AVX-512 path where the CPU has
/// VNNI, against the int8 peak, which it cannot beat.
#[test]
fn bench_kernels_rates_the_int8_gram_against_the_int8_peak() {
    if !kernels::Int8Path::Avx512Vnni.is_available() {
        eprintln!("skipped: this CPU has no AVX512-VNNI, so no int8 path to time");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("k.json");
    ok(&[
        "bench",
        "kernels",
        "--reps",
        "1",
        "--paths",
        "avx512",
        "--filter",
        "gram",
        "--json",
        s(&j),
    ]);
    let v = crate::common::read_json(&j);
    let p = &v["paths"]["avx512-vnni"];
    assert!(p["peak_gproducts"].as_f64().unwrap() > 0.0, "{v}");
    let fraction = p["cases"]["gram_u8"]["fraction_of_peak"].as_f64().unwrap();
    assert!(fraction > 0.0 && fraction < 1.0, "{fraction} of the peak");
    // No f32 case matches the filter.
    assert_eq!(v["paths"]["avx512"]["cases"], serde_json::json!({}), "{v}");
}
