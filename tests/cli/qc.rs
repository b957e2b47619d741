//! `genocnn qc`: statistics equal plink1.9's, filters mean what they mean in PLINK.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use crate::common::{fixtures, have, ok, read_csv, read_json, s};

/// Parses a plink1.9 report (whitespace table) into rows keyed by `key`.
fn plink_table(p: &Path, key: &str) -> HashMap<String, HashMap<String, String>> {
    let text = fs::read_to_string(p).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let k = head.iter().position(|h| h == key).unwrap();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[k].to_string(),
                head.iter()
                    .cloned()
                    .zip(f.iter().map(|x| x.to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// plink prints 4 significant digits: compare to within half a unit of that.
fn close(ours: f64, plink: f64) -> bool {
    (ours - plink).abs() <= 5e-4 * plink.abs().max(1e-3) + 1e-9
}

fn check_against_plink(out: &Path, frq: &Path, lmiss: &Path, imiss: &Path) -> usize {
    let frq = plink_table(frq, "SNP");
    let lmiss = plink_table(lmiss, "SNP");
    let imiss = plink_table(imiss, "IID");
    let (h, rows) = read_csv(&out.join("markers.csv"));
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let mut checked = 0;
    for r in &rows {
        let Some(f) = frq.get(&r[col("marker")]) else {
            continue;
        };
        let maf: f64 = r[col("maf")].parse().unwrap();
        let pm: f64 = f["MAF"].parse().unwrap();
        assert!(close(maf, pm), "{}: maf {maf} vs plink {pm}", r[0]);
        let miss: f64 = r[col("missing_rate")].parse().unwrap();
        let pl: f64 = lmiss[&r[0]]["F_MISS"].parse().unwrap();
        assert!(close(miss, pl), "{}: missing {miss} vs plink {pl}", r[0]);
        checked += 1;
    }
    let (h, rows) = read_csv(&out.join("individuals.csv"));
    assert_eq!(h, ["id", "call_rate", "kept"]);
    for r in &rows {
        let call: f64 = r[1].parse().unwrap();
        let pl: f64 = imiss[&r[0]]["F_MISS"].parse().unwrap();
        assert!(
            close(1.0 - call, pl),
            "{}: call rate {call} vs plink F_MISS {pl}",
            r[0]
        );
    }
    checked
}

#[test]
fn qc_statistics_equal_plink_fixture() {
    // small.frq/.lmiss/.imiss were written by plink1.9 --freq --missing on small.bed.
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures().join("plink");
    ok(&[
        "qc",
        "--geno",
        s(&fx.join("small.bed")),
        "--out",
        s(dir.path()),
    ]);
    let n = check_against_plink(
        dir.path(),
        &fx.join("small.frq"),
        &fx.join("small.lmiss"),
        &fx.join("small.imiss"),
    );
    assert_eq!(n, 60);
    let (h, _) = read_csv(&dir.path().join("markers.csv"));
    assert_eq!(
        h,
        [
            "marker",
            "chromosome",
            "position",
            "a1",
            "a2",
            "a1_freq",
            "maf",
            "missing_rate",
            "kept"
        ]
    );
    let j = read_json(&dir.path().join("summary.json"));
    for key in [
        "n_individuals",
        "n_markers",
        "n_individuals_kept",
        "n_markers_kept",
        "mean_maf",
        "missing_rate",
    ] {
        assert!(j.get(key).is_some(), "summary.json lacks {key}");
    }
    assert_eq!(j["n_individuals"], 37);
    assert_eq!(j["n_markers"], 60);
    assert!(!dir.path().join("qc.bed").exists(), "no filter, no qc.bed");
}

#[test]
fn filters_match_plink_order_and_thresholds() {
    // Individual i0 misses 6 of 10 calls; marker m9 misses i0, i1 and i2.
    // PLINK applies --mind first: i0 goes, and m9's rate falls to 2/9 < 0.25.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("id,m0,m1,m2,m3,m4,m5,m6,m7,m8,m9\n");
    for i in 0..10 {
        let cells: Vec<String> = (0..10)
            .map(|j| {
                if (i == 0 && j < 6) || (j == 9 && i < 3) {
                    "NA".into()
                } else if j == 8 {
                    // m8: one copy of A1 in 18 alleles (MAF 0.056 after --mind).
                    if i == 5 {
                        "1".into()
                    } else {
                        "0".into()
                    }
                } else {
                    ((i + j) % 3).to_string()
                }
            })
            .collect();
        text.push_str(&format!("i{i},{}\n", cells.join(",")));
    }
    let csv = dir.path().join("m.csv");
    fs::write(&csv, text).unwrap();
    let out = dir.path().join("qc");
    ok(&[
        "qc",
        "--geno",
        s(&csv),
        "--mind",
        "0.5",
        "--geno-missing",
        "0.25",
        "--maf",
        "0.06",
        "--out",
        s(&out),
    ]);
    let j = read_json(&out.join("summary.json"));
    assert_eq!(j["n_individuals_kept"], 9);
    assert_eq!(j["n_markers_kept"], 9);
    assert_eq!(j["removed"]["markers_by_maf"], 1);
    assert_eq!(j["removed"]["markers_by_geno_missing"], 0);
    let (_, rows) = read_csv(&out.join("markers.csv"));
    assert_eq!(rows[8][8], "false");
    assert_eq!(rows[9][8], "true");
    let g = geno::GenoReader::new(out.join("qc.bed")).read().unwrap();
    assert_eq!((g.n_individuals(), g.n_markers()), (9, 9));
    assert_eq!(g.individuals()[0].iid, "i1");
    if have(
        "plink1.9",
        "filters_match_plink_order_and_thresholds (plink part)",
    ) {
        ok(&[
            "convert",
            "--geno",
            s(&csv),
            "--out",
            s(&dir.path().join("m.bed")),
        ]);
        crate::common::plink(&[
            "--bfile",
            s(&dir.path().join("m")),
            "--allow-no-sex",
            "--mind",
            "0.5",
            "--geno",
            "0.25",
            "--maf",
            "0.06",
            "--make-bed",
            "--out",
            s(&dir.path().join("p")),
        ]);
        let n_bim = fs::read_to_string(dir.path().join("p.bim"))
            .unwrap()
            .lines()
            .count();
        let n_fam = fs::read_to_string(dir.path().join("p.fam"))
            .unwrap()
            .lines()
            .count();
        assert_eq!((n_fam, n_bim), (9, 9));
    }
}

#[test]
fn monomorphic_markers_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("m.csv");
    fs::write(&csv, "id,a,b,c\nx,0,1,2\ny,0,2,2\nz,0,0,NA\n").unwrap();
    let out = ok(&["qc", "--geno", s(&csv), "--out", s(&dir.path().join("q"))]);
    assert!(out.contains("monomorphic"), "{out}");
    let j = read_json(&dir.path().join("q/summary.json"));
    assert_eq!(j["n_monomorphic"], 2);
    assert_eq!(j["monomorphic_markers"], serde_json::json!(["a", "c"]));
}

#[test]
fn qc_counts_phenotyped_individuals() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures().join("plink");
    // The fixture's .fam carries a phenotype in column 6, -9 for every 7th line.
    let out = ok(&[
        "qc",
        "--geno",
        s(&fx.join("small.bed")),
        "--pheno",
        s(&fx.join("small.fam")),
        "--trait",
        "1",
        "--out",
        s(dir.path()),
    ]);
    assert!(out.contains("phenotyped"), "{out}");
    let j = read_json(&dir.path().join("summary.json"));
    assert_eq!(j["n_phenotyped"], 37 - 6);
}

#[test]
fn grm_is_written_in_gcta_binary_format() {
    let dir = tempfile::tempdir().unwrap();
    let bed = fixtures().join("plink/small.bed");
    // In memory, and by row panels under a budget smaller than the n × n matrix.
    for budget in [None, Some("4k")] {
        let prefix = dir.path().join(budget.map_or("g", |_| "streamed"));
        let mut args = vec!["grm", "--geno", s(&bed), "--out", s(&prefix)];
        if let Some(b) = budget {
            args.extend(["--memory-budget", b]);
        }
        let out = ok(&args);
        assert_eq!(out.contains("row panels"), budget.is_some(), "{out}");
        let g = geno::GenoReader::new(&bed).read().unwrap();
        let n = g.n_individuals();
        // VanRaden's GRM written out naively: ZZ′ / (2 Σ p(1 − p)), Z the
        // dosages centred on 2p, a missing call at 0.
        let mut want = vec![0f64; n * n];
        let mut denom = 0.0;
        for m in 0..g.n_markers() {
            let called: Vec<f64> = (0..n)
                .filter_map(|i| g.dosage(i, m))
                .map(f64::from)
                .collect();
            let p = called.iter().sum::<f64>() / (2.0 * called.len().max(1) as f64);
            denom += 2.0 * p * (1.0 - p);
            let z: Vec<f64> = (0..n)
                .map(|i| g.dosage(i, m).map_or(0.0, |d| f64::from(d) - 2.0 * p))
                .collect();
            for i in 0..n {
                for j in 0..n {
                    want[i * n + j] += z[i] * z[j];
                }
            }
        }
        let read_f32 = |p: &str| -> Vec<f32> {
            fs::read(format!("{}{p}", prefix.display()))
                .unwrap()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let bin = read_f32(".grm.bin");
        let cnt = read_f32(".grm.N.bin");
        assert_eq!(bin.len(), n * (n + 1) / 2);
        assert_eq!(cnt.len(), bin.len());
        let mut k = 0;
        for i in 0..n {
            for j in 0..=i {
                let w = want[i * n + j] / denom;
                assert!(
                    (bin[k] as f64 - w).abs() < 1e-6 * (1.0 + w.abs()),
                    "pair {i},{j}"
                );
                let both = (0..g.n_markers())
                    .filter(|&m| g.dosage(i, m).is_some() && g.dosage(j, m).is_some())
                    .count();
                assert_eq!(cnt[k] as usize, both, "pair {i},{j}");
                k += 1;
            }
        }
        let ids = fs::read_to_string(format!("{}.grm.id", prefix.display())).unwrap();
        assert_eq!(ids.lines().next(), Some("ind01\tind01"));
        assert_eq!(ids.lines().count(), n);
    }
}

/// `qc` reads a PLINK fileset a block of markers at a time, without holding
/// it in memory; every file it writes equals, byte for byte, what the
/// whole-fileset pass writes (`GENOCNN_QC_IN_MEMORY=1`), across block
/// boundaries (40,000 markers in blocks of 16,384), with missing calls, an
/// individual count that is not a multiple of 4, and each filter.
#[test]
fn the_streamed_pass_writes_what_the_in_memory_pass_writes() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("sim");
    ok(&[
        "simulate",
        "--n",
        "37",
        "--snps",
        "40000",
        "--missing",
        "0.04",
        "--no-csv",
        "--out",
        s(&prefix),
    ]);
    let bed = format!("{}.bed", s(&prefix));
    for filters in [
        vec![],
        vec!["--maf", "0.2", "--geno-missing", "0.05"],
        vec!["--mind", "0.041", "--maf", "0.05"],
    ] {
        let run = |name: &str, in_memory: bool| {
            let out = dir.path().join(name);
            let mut args = vec!["qc", "--geno", &bed, "--out", s(&out)];
            args.extend(filters.iter().copied());
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_genocnn"));
            if in_memory {
                cmd.env("GENOCNN_QC_IN_MEMORY", "1");
            }
            let o = cmd.args(&args).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            out
        };
        let (a, b) = (run("streamed", false), run("whole", true));
        let mut files: Vec<String> = fs::read_dir(&b)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert!(files.contains(&"markers.csv".to_string()), "{files:?}");
        if !filters.is_empty() {
            assert!(files.contains(&"qc.bed".to_string()), "{files:?}");
        }
        for f in &files {
            assert!(
                fs::read(a.join(f)).unwrap() == fs::read(b.join(f)).unwrap(),
                "{f} differs with filters {filters:?}"
            );
        }
        let j = read_json(&a.join("summary.json"));
        assert_eq!(j["n_markers"], 40000);
        if filters.contains(&"--mind") {
            let removed = j["removed"]["individuals_by_mind"].as_u64().unwrap();
            assert!(removed > 0 && removed < 37, "--mind removed {removed}");
        }
    }
}
