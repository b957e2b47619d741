//! Reading and writing genotype formats: decoding equals PLINK, round trips
//! are exact, and every delimited layout a breeder brings reads.

use std::fs;
use std::path::Path;

use geno::{GenoReader, PackedGenotypes};

use crate::common::{fixtures, have, ok, s};

/// The code of individual i at marker j in the hand-made files.
fn code(i: usize, j: usize) -> u8 {
    ((i + 3 * j) % 4) as u8
}

/// Writes a .bed/.bim/.fam by hand, holding every 2-bit code at every marker.
fn write_by_hand(dir: &Path, n: usize, m: usize) -> std::path::PathBuf {
    let prefix = dir.join(format!("hand{n}"));
    let stride = n.div_ceil(4);
    let mut bed = vec![0x6c, 0x1b, 0x01];
    for j in 0..m {
        let mut row = vec![0u8; stride];
        for i in 0..n {
            row[i / 4] |= code(i, j) << (2 * (i % 4));
        }
        bed.extend(row);
    }
    fs::write(prefix.with_extension("bed"), bed).unwrap();
    let bim: String = (0..m)
        .map(|j| format!("1\tsnp{j}\t0\t{}\tA\tG\n", 100 * (j + 1)))
        .collect();
    fs::write(prefix.with_extension("bim"), bim).unwrap();
    let fam: String = (0..n).map(|i| format!("f{i} i{i} 0 0 1 -9\n")).collect();
    fs::write(prefix.with_extension("fam"), fam).unwrap();
    prefix
}

#[test]
fn bed_with_every_code_decodes_as_plink_does() {
    let dir = tempfile::tempdir().unwrap();
    // n % 4 = 1, 2, 3 (and 0), so that the padding of the last byte is exercised.
    for n in [5, 6, 7, 8, 9, 13, 14, 15] {
        let prefix = write_by_hand(dir.path(), n, 4);
        let g = GenoReader::new(prefix.with_extension("bed"))
            .read()
            .unwrap();
        assert_eq!((g.n_individuals(), g.n_markers()), (n, 4));
        for i in 0..n {
            for j in 0..4 {
                // 00 → 2 copies of A1, 01 → missing, 10 → 1, 11 → 0.
                let want = [Some(2), None, Some(1), Some(0)][code(i, j) as usize];
                assert_eq!(g.dosage(i, j), want, "n={n} i={i} j={j}");
            }
        }
        // The same cells through the CLI, as text.
        let csv = dir.path().join(format!("hand{n}.csv"));
        ok(&[
            "convert",
            "--geno",
            s(&prefix.with_extension("bed")),
            "--out",
            s(&csv),
        ]);
        let text = fs::read_to_string(&csv).unwrap();
        for (i, line) in text.lines().skip(1).enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells[0], format!("i{i}"));
            for j in 0..4 {
                assert_eq!(cells[j + 1], ["2", "NA", "1", "0"][code(i, j) as usize]);
            }
        }
    }
}

#[test]
fn bed_to_csv_to_bed_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("plink/small.bed");
    let csv = dir.path().join("small.csv");
    let back = dir.path().join("back.bed");
    ok(&["convert", "--geno", s(&src), "--out", s(&csv)]);
    ok(&["convert", "--geno", s(&csv), "--out", s(&back)]);
    assert_eq!(fs::read(&src).unwrap(), fs::read(&back).unwrap());
    // Through TSV and whitespace text as well.
    for ext in ["tsv", "txt"] {
        let t = dir.path().join(format!("small.{ext}"));
        let b = dir.path().join(format!("back_{ext}.bed"));
        ok(&["convert", "--geno", s(&src), "--out", s(&t)]);
        ok(&["convert", "--geno", s(&t), "--out", s(&b)]);
        assert_eq!(fs::read(&src).unwrap(), fs::read(&b).unwrap(), "{ext}");
    }
}

#[test]
fn bed_to_bed_keeps_all_three_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("plink/small.bed");
    let out = dir.path().join("copy.bed");
    ok(&["convert", "--geno", s(&src), "--out", s(&out)]);
    assert_eq!(fs::read(&src).unwrap(), fs::read(&out).unwrap());
    let bim = fs::read_to_string(src.with_extension("bim")).unwrap();
    assert_eq!(bim, fs::read_to_string(out.with_extension("bim")).unwrap());
    let fam = fs::read_to_string(src.with_extension("fam")).unwrap();
    assert_eq!(fam, fs::read_to_string(out.with_extension("fam")).unwrap());
}

#[test]
fn raw_matches_plink_recode_a_fixture() {
    // small_keep.raw was written by plink1.9 --recode A --keep-allele-order
    // (plink1.9 otherwise makes the minor allele A1; genocnn keeps the .bim's A1).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small.raw");
    ok(&[
        "convert",
        "--geno",
        s(&fixtures().join("plink/small.bed")),
        "--out",
        s(&out),
    ]);
    let ours = fs::read_to_string(&out).unwrap();
    let plink = fs::read_to_string(fixtures().join("plink/small_keep.raw")).unwrap();
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), plink.lines().collect());
    assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        let (x, y): (Vec<&str>, Vec<&str>) = (x.split(' ').collect(), y.split(' ').collect());
        assert_eq!(x.len(), y.len(), "line {}", k + 1);
        for (c, (u, v)) in x.iter().zip(&y).enumerate() {
            assert_eq!(u, v, "line {}, column {}", k + 1, c + 1);
        }
    }
    assert_eq!(ours, plink, "byte-identical as a whole");
}

#[test]
fn raw_matches_live_plink() {
    if !have("plink1.9", "raw_matches_live_plink") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sim");
    ok(&[
        "simulate",
        "--n",
        "103",
        "--snps",
        "700",
        "--chromosomes",
        "3",
        "--qtl",
        "10",
        "--missing",
        "0.05",
        "--seed",
        "11",
        "--no-csv",
        "--out",
        s(&p),
    ]);
    crate::common::plink(&[
        "--bfile",
        s(&p),
        "--allow-no-sex",
        "--keep-allele-order",
        "--recode",
        "A",
        "--out",
        s(&dir.path().join("pl")),
    ]);
    let ours = dir.path().join("ours.raw");
    ok(&[
        "convert",
        "--geno",
        s(&p.with_extension("bed")),
        "--out",
        s(&ours),
    ]);
    assert_eq!(
        fs::read(dir.path().join("pl.raw")).unwrap(),
        fs::read(&ours).unwrap()
    );
}

#[test]
fn raw_reads_back_to_the_same_calls() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("plink/small.bed");
    let g = GenoReader::new(&src).read().unwrap();
    let r = GenoReader::new(fixtures().join("plink/small_keep.raw"))
        .read()
        .unwrap();
    same_calls(&g, &r);
    assert_eq!(r.markers()[0].a1, g.markers()[0].a1);
    assert_eq!(r.individuals()[3].iid, g.individuals()[3].iid);
    let back = dir.path().join("back.bed");
    ok(&[
        "convert",
        "--geno",
        s(&fixtures().join("plink/small_keep.raw")),
        "--out",
        s(&back),
    ]);
    assert_eq!(fs::read(&src).unwrap(), fs::read(&back).unwrap());
}

fn same_calls(a: &PackedGenotypes, b: &PackedGenotypes) {
    assert_eq!(
        (a.n_individuals(), a.n_markers()),
        (b.n_individuals(), b.n_markers())
    );
    assert_eq!(a.packed(), b.packed());
}

/// Every delimited layout reads to the same calls.
#[test]
fn delimited_layouts_all_read() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        ["0", "1", "2", "NA"],
        ["2", "", "1", "0"],
        [".", "-9", "0", "2"],
    ];
    let want = |i: usize, j: usize| -> Option<u8> { rows[i][j].parse().ok() };
    let check = |name: &str, text: String, ids: bool| {
        let p = dir.path().join(name);
        fs::write(&p, text).unwrap();
        let g = GenoReader::new(&p)
            .read()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((g.n_individuals(), g.n_markers()), (3, 4), "{name}");
        for i in 0..3 {
            for j in 0..4 {
                assert_eq!(g.dosage(i, j), want(i, j), "{name} i={i} j={j}");
            }
            let id = if ids {
                format!("L{i}")
            } else {
                (i + 1).to_string()
            };
            assert_eq!(g.individuals()[i].iid, id, "{name}");
        }
    };
    let body = |sep: &str, ids: bool, quote: bool| -> String {
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                let id = if quote {
                    format!("\"L{i}\"")
                } else {
                    format!("L{i}")
                };
                let cells = r
                    .map(|c| if c.is_empty() && sep == " " { "NA" } else { c })
                    .join(sep);
                if ids {
                    format!("{id}{sep}{cells}\n")
                } else {
                    format!("{cells}\n")
                }
            })
            .collect()
    };
    check(
        "plain.csv",
        format!("id,a,b,c,d\n{}", body(",", true, false)),
        true,
    );
    check(
        "rform.csv",
        format!("\"a\",\"b\",\"c\",\"d\"\n{}", body(",", true, true)),
        true,
    );
    check(
        "rblank.csv",
        format!("\"\",\"a\",\"b\",\"c\",\"d\"\n{}", body(",", true, true)),
        true,
    );
    check(
        "tabs.tsv",
        format!("taxa\ta\tb\tc\td\n{}", body("\t", true, false)),
        true,
    );
    check("noheader_ids.txt", body(" ", true, false), true);
    check("bare.txt", body(" ", false, false), false);
    check(
        "bare_crlf.csv",
        body(",", false, false).replace('\n', "\r\n"),
        false,
    );
    check(
        "header_noids.csv",
        format!("a,b,c,d\n{}", body(",", false, false)),
        false,
    );
}

/// The .bim columns plink2 writes from a VCF (all but the cM column, which
/// a VCF does not carry).
fn bim_without_cm(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            [f[0], f[1], f[3], f[4], f[5]].join("\t")
        })
        .collect()
}

#[test]
fn vcf_and_bcf_convert_back_to_the_bed_they_were_exported_from() {
    let dir = tempfile::tempdir().unwrap();
    let vcf = fixtures().join("vcf");
    let bed = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/example.bed");
    for name in ["example.vcf.gz", "example.bcf"] {
        let out = dir.path().join(format!("{name}.bed"));
        let run = crate::common::run(&["convert", "--geno", s(&vcf.join(name)), "--out", s(&out)]);
        assert!(run.status.success());
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            err.contains("3000 markers × 600 samples"),
            "the note says what was read: {err}"
        );
        assert!(fs::read(&out).unwrap() == fs::read(&bed).unwrap(), "{name}");
        assert_eq!(
            bim_without_cm(&out.with_extension("bim")),
            bim_without_cm(&bed.with_extension("bim")),
            "{name}"
        );
    }
}

#[test]
fn vcf_import_matches_live_plink2() {
    if !have("plink2", "vcf_import_matches_live_plink2") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sim");
    ok(&[
        "simulate",
        "--n",
        "157",
        "--snps",
        "900",
        "--chromosomes",
        "3",
        "--missing",
        "0.05",
        "--seed",
        "5",
        "--no-csv",
        "--out",
        s(&p),
    ]);
    for (export, flag, name) in [("vcf", "--vcf", "x.vcf"), ("bcf", "--bcf", "x.bcf")] {
        let prefix = dir.path().join("x");
        let status = std::process::Command::new("plink2")
            .args(["--bfile", s(&p), "--export", export, "--out", s(&prefix)])
            .output()
            .unwrap()
            .status;
        assert!(status.success());
        let file = dir.path().join(name);
        let theirs = dir.path().join(format!("plink2-{export}"));
        let status = std::process::Command::new("plink2")
            .args([flag, s(&file), "--make-bed", "--out", s(&theirs)])
            .output()
            .unwrap()
            .status;
        assert!(status.success());
        let ours = dir.path().join(format!("ours-{export}.bed"));
        ok(&["convert", "--geno", s(&file), "--out", s(&ours)]);
        assert!(
            fs::read(&ours).unwrap() == fs::read(theirs.with_extension("bed")).unwrap(),
            "{export}: calls differ from plink2's import"
        );
        assert_eq!(
            bim_without_cm(&ours.with_extension("bim")),
            bim_without_cm(&theirs.with_extension("bim")),
            "{export}"
        );
    }
}

#[test]
fn vcf_errors_name_the_line_and_the_sample_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let haploid = fixtures().join("vcf/haploid.vcf");
    let out = dir.path().join("h.bed");
    let err = crate::common::fails(&["convert", "--geno", s(&haploid), "--out", s(&out)]);
    assert!(
        err.contains("haploid.vcf, line 5, sample 's1': the haploid call '0'"),
        "{err}"
    );
    assert!(!out.exists(), "no output after an error");
    ok(&[
        "convert",
        "--geno",
        s(&haploid),
        "--coding",
        "inbred",
        "--out",
        s(&out),
    ]);
    let g = GenoReader::new(&out).read().unwrap();
    assert_eq!(g.dosage(1, 0), Some(2));
}

#[test]
fn keep_and_extract_cut_a_fileset_as_plink_does() {
    if !have("plink1.9", "keep_and_extract_cut_a_fileset_as_plink_does") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/example");
    let bim = fs::read_to_string(example.with_extension("bim")).unwrap();
    let fam = fs::read_to_string(example.with_extension("fam")).unwrap();
    let extract = dir.path().join("e.txt");
    let ids: String = bim
        .lines()
        .enumerate()
        .filter(|(k, _)| k % 7 == 0 || (100..160).contains(k))
        .map(|(_, l)| format!("{}\n", l.split('\t').nth(1).unwrap()))
        .collect();
    fs::write(&extract, ids).unwrap();
    let keep = dir.path().join("k.txt");
    let pairs: String = fam
        .lines()
        .enumerate()
        .filter(|(k, _)| k % 3 == 1)
        .map(|(_, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}\n", f[0], f[1])
        })
        .collect();
    fs::write(&keep, pairs).unwrap();
    crate::common::plink(&[
        "--bfile",
        s(&example),
        "--keep",
        s(&keep),
        "--extract",
        s(&extract),
        "--keep-allele-order",
        "--make-bed",
        "--out",
        s(&dir.path().join("pl")),
    ]);
    let ours = dir.path().join("ours.bed");
    ok(&[
        "convert",
        "--geno",
        s(&example.with_extension("bed")),
        "--keep",
        s(&keep),
        "--extract",
        s(&extract),
        "--out",
        s(&ours),
    ]);
    assert!(fs::read(&ours).unwrap() == fs::read(dir.path().join("pl.bed")).unwrap());
    assert_eq!(
        fs::read(ours.with_extension("fam")).unwrap(),
        fs::read(dir.path().join("pl.fam")).unwrap()
    );
}
