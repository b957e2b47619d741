//! `gblup --solver pcg` (issue 18) beside the exact solver: on the bundled
//! example, and on mouse HS1940 against the published figures.

use std::path::Path;

use eval::metrics::pearson;

use crate::common::{example_bed, example_pheno, fails, ok, read_csv, read_json, s, shared_data};

fn gebv(dir: &Path) -> Vec<f64> {
    let (header, rows) = read_csv(&dir.join("predictions.csv"));
    let k = header.iter().position(|h| h == "gebv").unwrap();
    rows.iter().map(|r| r[k].parse().unwrap()).collect()
}

/// `gblup` on the bundled example into `out`, with `extra` options.
fn args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "gblup",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    args
}

fn gblup(out: &Path, extra: &[&str]) -> serde_json::Value {
    ok(&args(out, extra));
    read_json(&out.join("summary.json"))
}

#[test]
fn pcg_gives_the_exact_solver_s_gebv_and_h2() {
    let dir = tempfile::tempdir().unwrap();
    let exact = gblup(&dir.path().join("exact"), &["--solver", "exact"]);
    let pcg = gblup(&dir.path().join("pcg"), &["--solver", "pcg"]);
    assert_eq!(exact["solver"], "exact");
    assert_eq!(pcg["solver"], "pcg");
    let (h_exact, h_pcg) = (exact["h2"].as_f64().unwrap(), pcg["h2"].as_f64().unwrap());
    assert!(
        (h_exact - h_pcg).abs() < 0.01,
        "Monte-Carlo REML h2 {h_pcg} vs REML {h_exact}"
    );
    assert!(pcg["h2_source"]
        .as_str()
        .unwrap()
        .starts_with("Monte-Carlo REML"));
    let r = pearson(
        &gebv(&dir.path().join("exact")),
        &gebv(&dir.path().join("pcg")),
    );
    assert!(r >= 0.9999, "GEBV r {r}");
    // At the exact solver's h2, the two agree to the PCG tolerance.
    let at = format!("{h_exact}");
    let fixed = gblup(&dir.path().join("fixed"), &["--solver", "pcg", "--h2", &at]);
    assert_eq!(fixed["h2_source"], "given (--h2)");
    let r = pearson(
        &gebv(&dir.path().join("exact")),
        &gebv(&dir.path().join("fixed")),
    );
    assert!(r >= 0.999999, "GEBV r at the same h2: {r}");
    // Haseman–Elston, when asked, is reported as such.
    let he = gblup(
        &dir.path().join("he"),
        &["--solver", "pcg", "--h2-method", "he"],
    );
    assert!(he["h2_source"].as_str().unwrap().starts_with("Haseman"));
    // A budget too small for the n × n matrices turns auto to PCG; one
    // that holds the exact solver's 12 n² bytes at its peak (4.3 MB for
    // these 600 individuals, beside 0.3 MB of genotypes) keeps it exact.
    let auto = gblup(&dir.path().join("auto"), &["--memory-budget", "1M"]);
    assert_eq!(auto["solver"], "pcg");
    let roomy = gblup(&dir.path().join("roomy"), &["--memory-budget", "6M"]);
    assert_eq!(roomy["solver"], "exact");
}

#[test]
fn what_pcg_cannot_fit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let with = |extra: &[&str]| fails(&args(&out, extra));
    assert!(with(&["--solver", "pcg", "--kernel", "rkhs"]).contains("drop --kernel rkhs"));
    assert!(with(&["--solver", "exact", "--h2", "0.5"]).contains("--h2 is for --solver pcg"));
    assert!(with(&["--solver", "pcg", "--h2", "1.5"]).contains("strictly between 0 and 1"));
    assert!(!out.exists());
}

#[test]
fn pcg_on_mouse_cd8_meets_the_published_figures() {
    let Some(data) = shared_data("pcg_on_mouse_cd8_meets_the_published_figures") else {
        return;
    };
    let m = data.join("mouse_hs1940");
    let dir = tempfile::tempdir().unwrap();
    let (bed, pheno) = (m.join("mouse_hs1940.bed"), m.join("mouse_hs1940.pheno.txt"));
    let run = |trait_: &str, extra: &[&str], out: &str| {
        let target = dir.path().join(out);
        let mut args = vec![
            "gblup",
            "--geno",
            s(&bed),
            "--pheno",
            s(&pheno),
            "--trait",
            trait_,
            "--solver",
            "pcg",
            "--out",
            s(&target),
        ];
        args.extend_from_slice(extra);
        ok(&args);
        read_json(&dir.path().join(out).join("summary.json"))
    };
    // FaST-LMM and genoselect: h2 = 0.605729 by exact REML.
    let j = run("1", &[], "cd8");
    let h2 = j["h2"].as_f64().unwrap();
    assert!((h2 - 0.605729).abs() < 0.01, "Monte-Carlo REML h2 {h2}");
    // Train on column 2, predict column 3: r = 0.568.
    let j = run("2", &["--test-trait", "3"], "split");
    let r = j["test_r"].as_f64().unwrap();
    assert!((r - 0.568).abs() <= 0.003, "test_r {r}");
}
