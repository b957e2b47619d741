//! Bad input: each case gets a clear error that names the file, the line
//! and/or column, and what was expected; exit 1 and no panic.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::{fails, fixtures, s};

/// Copies the fixture fileset into `dir` under the name `name`.
fn copy_fixture(dir: &Path, name: &str) -> PathBuf {
    let prefix = dir.join(name);
    for ext in ["bed", "bim", "fam"] {
        fs::copy(
            fixtures().join(format!("plink/small.{ext}")),
            prefix.with_extension(ext),
        )
        .unwrap();
    }
    prefix
}

fn qc(geno: &Path, dir: &Path) -> String {
    fails(&["qc", "--geno", s(geno), "--out", s(&dir.join("out"))])
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn wrong_magic_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = copy_fixture(dir.path(), "bad");
    let mut bytes = fs::read(p.with_extension("bed")).unwrap();
    bytes[0] = 0x00;
    bytes[1] = 0x42;
    fs::write(p.with_extension("bed"), bytes).unwrap();
    let err = qc(&p.with_extension("bed"), dir.path());
    assert!(err.contains("bad.bed"), "{err}");
    assert!(
        err.contains("00 42 01") && err.contains("expected 6c 1b 01"),
        "{err}"
    );
}

#[test]
fn bed_size_does_not_match_bim_and_fam() {
    let dir = tempfile::tempdir().unwrap();
    let p = copy_fixture(dir.path(), "short");
    let bytes = fs::read(p.with_extension("bed")).unwrap();
    fs::write(p.with_extension("bed"), &bytes[..bytes.len() - 1]).unwrap();
    let err = qc(&p.with_extension("bed"), dir.path());
    assert!(err.contains("short.bed"), "{err}");
    assert!(
        err.contains("602 bytes")
            && err.contains("60 markers")
            && err.contains("37 individuals")
            && err.contains("603 bytes"),
        "{err}"
    );
}

#[test]
fn fam_line_count_disagrees_with_bim_and_bed() {
    let dir = tempfile::tempdir().unwrap();
    let p = copy_fixture(dir.path(), "famshort");
    let fam = fs::read_to_string(p.with_extension("fam")).unwrap();
    let lines: Vec<&str> = fam.lines().collect();
    // 33 individuals need 9 bytes per marker, not the 10 that 37 do.
    fs::write(p.with_extension("fam"), lines[..33].join("\n") + "\n").unwrap();
    let err = qc(&p.with_extension("bed"), dir.path());
    assert!(
        err.contains("famshort.bed")
            && err.contains("33 individuals")
            && err.contains("famshort.fam"),
        "{err}"
    );
    assert!(err.contains("the .fam may not belong"), "{err}");

    // 38 individuals need the same 10 bytes per marker as 39: the calls of the
    // 39th, left in the padding bits, give the short .fam away.
    let q = dir.path().join("sim39");
    crate::common::ok(&[
        "simulate",
        "--n",
        "39",
        "--snps",
        "50",
        "--qtl",
        "3",
        "--no-csv",
        "--out",
        s(&q),
    ]);
    let fam = fs::read_to_string(q.with_extension("fam")).unwrap();
    let lines: Vec<&str> = fam.lines().collect();
    fs::write(q.with_extension("fam"), lines[..38].join("\n") + "\n").unwrap();
    let err = qc(&q.with_extension("bed"), dir.path());
    assert!(
        err.contains("sim39.bed")
            && err.contains("38 individuals")
            && err.contains("the .fam may be missing lines"),
        "{err}"
    );

    // A .fam line with a column fewer than the others.
    let mut bad = lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    bad[4] = bad[4].rsplit_once(' ').unwrap().0.to_string();
    fs::write(p.with_extension("fam"), bad.join("\n") + "\n").unwrap();
    let err = qc(&p.with_extension("bed"), dir.path());
    assert!(
        err.contains("famshort.fam, line 5: found 5 fields, expected 6"),
        "{err}"
    );
}

#[test]
fn bim_line_count_disagrees_with_bed() {
    let dir = tempfile::tempdir().unwrap();
    let p = copy_fixture(dir.path(), "bimlong");
    let mut bim = fs::read_to_string(p.with_extension("bim")).unwrap();
    bim.push_str("2\textra\t0\t999\tA\tC\n");
    fs::write(p.with_extension("bim"), bim).unwrap();
    let err = qc(&p.with_extension("bed"), dir.path());
    assert!(
        err.contains("61 markers") && err.contains("bimlong.bim"),
        "{err}"
    );
    assert!(err.contains("fits 60 markers"), "{err}");
}

#[test]
fn non_numeric_genotype_cell() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "g.csv", "id,m1,m2,m3\na,0,1,2\nb,1,x,0\n");
    let err = qc(&p, dir.path());
    assert!(err.contains("g.csv, line 3, column 3"), "{err}");
    assert!(
        err.contains("found 'x'")
            && err.contains("marker m2")
            && err.contains("expected a dosage 0, 1 or 2"),
        "{err}"
    );
}

#[test]
fn dosage_of_three() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "g.tsv",
        "id\tm1\tm2\na\t0\t1\nb\t1\t2\nc\t3\t0\n",
    );
    let err = qc(&p, dir.path());
    assert!(err.contains("g.tsv, line 4, column 2"), "{err}");
    assert!(
        err.contains("found '3'") && err.contains("cannot exceed 2"),
        "{err}"
    );
}

#[test]
fn ragged_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "g.csv",
        "id,m1,m2,m3\na,0,1,2\nb,1,0,0\nc,1,0\n",
    );
    let err = qc(&p, dir.path());
    assert!(
        err.contains("g.csv, line 4: found 3 fields, expected 4"),
        "{err}"
    );
    let p = write(dir.path(), "h.txt", "0 1 2\n1 1 1 1\n");
    let err = qc(&p, dir.path());
    assert!(
        err.contains("h.txt, line 2: found 4 fields, expected 3"),
        "{err}"
    );
}

#[test]
fn duplicate_individual_ids() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "g.csv", "id,m1,m2\na,0,1\nb,1,0\na,2,2\n");
    let err = qc(&p, dir.path());
    assert!(
        err.contains("g.csv") && err.contains("'a' appears twice, on lines 2 and 4"),
        "{err}"
    );
    let p = copy_fixture(dir.path(), "dup");
    let fam = fs::read_to_string(p.with_extension("fam"))
        .unwrap()
        .replace("ind05 ind05", "ind05 ind03");
    fs::write(p.with_extension("fam"), fam).unwrap();
    let err = qc(&p.with_extension("bed"), dir.path());
    assert!(
        err.contains("dup.fam") && err.contains("'ind03' appears twice, on lines 3 and 5"),
        "{err}"
    );
}

fn qc_pheno(dir: &Path, pheno: &Path, t: &str) -> String {
    let geno = fixtures().join("plink/small.bed");
    fails(&[
        "qc",
        "--geno",
        s(&geno),
        "--pheno",
        s(pheno),
        "--trait",
        t,
        "--out",
        s(&dir.join("out")),
    ])
}

#[test]
fn phenotype_ids_match_no_genotype() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "p.csv", "id,yield\nX1,1.5\nX2,2.5\n");
    let err = qc_pheno(dir.path(), &p, "yield");
    assert!(
        err.contains("p.csv") && err.contains("none of its 2 IDs matches"),
        "{err}"
    );
    assert!(err.contains("'X1'") && err.contains("'ind01'"), "{err}");
}

#[test]
fn trait_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.csv",
        "id,yield,height\nind01,1.5,3\nind02,2.5,4\n",
    );
    let err = qc_pheno(dir.path(), &p, "weight");
    assert!(
        err.contains("p.csv") && err.contains("no trait 'weight'") && err.contains("yield, height"),
        "{err}"
    );
    let err = qc_pheno(dir.path(), &p, "3");
    assert!(
        err.contains("no trait number 3") && err.contains("2 column(s) besides the IDs"),
        "{err}"
    );
}

#[test]
fn all_na_trait() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.csv",
        "id,yield,height\nind01,1.5,NA\nind02,2.5,-9\n",
    );
    let err = qc_pheno(dir.path(), &p, "height");
    assert!(
        err.contains("p.csv") && err.contains("trait 'height' (column 3) has no values"),
        "{err}"
    );
}

#[test]
fn non_numeric_phenotype() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "p.csv", "id,yield\nind01,1.5\nind02,tall\n");
    let err = qc_pheno(dir.path(), &p, "yield");
    assert!(
        err.contains("p.csv, line 3, column 2") && err.contains("found 'tall'"),
        "{err}"
    );
}

#[test]
fn empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "g.csv", "");
    let err = qc(&p, dir.path());
    assert!(err.contains("g.csv: the file is empty"), "{err}");
    let p = write(dir.path(), "blank.csv", "\n  \n");
    let err = qc(&p, dir.path());
    assert!(err.contains("blank.csv: the file is empty"), "{err}");
    let p = write(dir.path(), "p.csv", "");
    let err = qc_pheno(dir.path(), &p, "1");
    assert!(err.contains("p.csv: the file is empty"), "{err}");
    let prefix = copy_fixture(dir.path(), "e");
    fs::write(prefix.with_extension("bed"), b"").unwrap();
    let err = qc(&prefix.with_extension("bed"), dir.path());
    assert!(
        err.contains("e.bed") && err.contains("the file is empty"),
        "{err}"
    );
}

#[test]
fn gzip_passed_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.csv");
    let mut f = fs::File::create(&p).unwrap();
    // A gzip header (as `gzip` writes it) followed by some deflate bytes.
    f.write_all(&[
        0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03, 0x4b, 0x4c, 0x4a, 0x06, 0x00,
    ])
    .unwrap();
    drop(f);
    let err = qc(&p, dir.path());
    assert!(
        err.contains("g.csv: the file is gzip-compressed") && err.contains("gunzip"),
        "{err}"
    );
    let err = qc_pheno(dir.path(), &p, "1");
    assert!(err.contains("gzip-compressed"), "{err}");
}

#[test]
fn missing_file_and_failed_output_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&[
        "convert",
        "--geno",
        s(&dir.path().join("nope.bed")),
        "--out",
        s(&dir.path().join("x.csv")),
    ]);
    assert!(err.contains("nope.bed: file not found"), "{err}");
    let g = write(dir.path(), "g.csv", "id,m1\na,0\nb,5\n");
    fails(&[
        "convert",
        "--geno",
        s(&g),
        "--out",
        s(&dir.path().join("x.bed")),
    ]);
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("g.csv")],
        "no partial output"
    );
    let err = fails(&[
        "convert",
        "--geno",
        s(&fixtures().join("plink/small.bed")),
        "--out",
        s(&dir.path().join("x.vcf")),
    ]);
    assert!(
        err.contains("x.vcf") && err.contains(".bed, .raw, .csv"),
        "{err}"
    );
}
