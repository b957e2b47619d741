//! VCF and BCF input (issue 18), checked against plink2's exports of the
//! bundled example and against calls written out by hand.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use geno::{
    read_plink, read_vcf, GenoError, GenoFormat, GenoReader, HaploidCalls, PackedGenotypes, VcfAt,
    VcfField, VcfOptions, VcfSummary,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/vcf").join(name)
}

fn inflate(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn dosages(g: &PackedGenotypes, j: usize) -> Vec<Option<u8>> {
    (0..g.n_individuals()).map(|i| g.dosage(i, j)).collect()
}

fn assert_same_as_bed(g: &PackedGenotypes, what: &str) {
    let bed = read_plink(&root().join("data/example.bed")).unwrap();
    assert_eq!(g.n_individuals(), bed.n_individuals(), "{what}");
    assert_eq!(g.n_markers(), bed.n_markers(), "{what}");
    for (a, b) in g.individuals().iter().zip(bed.individuals()) {
        assert_eq!(a.iid, b.iid, "{what}");
    }
    for (a, b) in g.markers().iter().zip(bed.markers()) {
        assert_eq!(
            (&a.id, &a.chromosome, a.position, &a.a1, &a.a2),
            (&b.id, &b.chromosome, b.position, &b.a1, &b.a2),
            "{what}"
        );
    }
    assert!(g.packed() == bed.packed(), "{what}: calls differ");
}

#[test]
fn plink2_exports_of_the_example_read_back_to_the_bed_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    let text = inflate(&fixture("example.vcf.gz"));
    let plain = dir.path().join("example.vcf");
    std::fs::write(&plain, &text).unwrap();
    // One gzip member, as `gzip` writes it, rather than BGZF's many blocks.
    let gz = dir.path().join("example-plain-gzip.vcf.gz");
    std::fs::write(&gz, gzip(&text)).unwrap();
    for (path, bcf) in [
        (fixture("example.vcf.gz"), false),
        (fixture("example.bcf"), true),
        (plain, false),
        (gz, false),
    ] {
        assert_eq!(GenoFormat::from_path(&path), GenoFormat::Vcf);
        let (g, summary) = GenoReader::new(&path).read_summarized().unwrap();
        let summary = summary.vcf.expect("a VCF summary");
        assert_eq!(
            summary,
            VcfSummary {
                records: 3000,
                bcf,
                ..VcfSummary::default()
            }
        );
        assert_same_as_bed(&g, &path.display().to_string());
    }
}

/// calls.vcf's GT calls as ALT dosages, written out by hand; rs3 is
/// multi-allelic and skipped.
fn expected_gt() -> Vec<(&'static str, Vec<Option<u8>>)> {
    vec![
        ("rs1", vec![Some(0), Some(1), Some(2), None, Some(1)]),
        ("1:200:C:T", vec![Some(1), None, None, Some(2), Some(0)]),
        ("rs4", vec![None, Some(1), Some(0), Some(2), Some(1)]),
        ("rs5", vec![Some(1), Some(2), Some(0), Some(0), None]),
    ]
}

#[test]
fn hand_written_calls_read_the_same_from_vcf_and_bcf() {
    for (name, bcf) in [("calls.vcf", false), ("calls.bcf", true)] {
        let (g, summary) = read_vcf(&fixture(name), VcfOptions::default()).unwrap();
        let ids: Vec<&str> = g.markers().iter().map(|m| m.id.as_str()).collect();
        let expected = expected_gt();
        assert_eq!(
            ids,
            expected.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            "{name}"
        );
        for (j, (_, want)) in expected.iter().enumerate() {
            assert_eq!(&dosages(&g, j), want, "{name} marker {j}");
        }
        let iids: Vec<&str> = g.individuals().iter().map(|i| i.iid.as_str()).collect();
        assert_eq!(iids, ["s1", "s2", "s3", "s4", "s5"]);
        let m = &g.markers()[1];
        assert_eq!(
            (
                m.chromosome.as_str(),
                m.position,
                m.a1.as_str(),
                m.a2.as_str()
            ),
            ("1", 200, "T", "C")
        );
        assert_eq!(
            summary,
            VcfSummary {
                records: 5,
                multiallelic: 1,
                half_missing: 1,
                bcf,
                ..VcfSummary::default()
            },
            "{name}"
        );
    }
}

#[test]
fn ds_dosages_are_rounded_to_the_nearest_call_and_counted() {
    let opts = VcfOptions {
        field: VcfField::Ds,
        ..VcfOptions::default()
    };
    // 0.1→0, 0.9→1, 1.4→1, 0.51→1, 1.5→2 (halves round up), 1.9→2.
    let want = [
        vec![Some(0), Some(1), Some(2), None, Some(1)],
        vec![Some(1), Some(1), Some(2), Some(2), Some(0)],
        vec![None, Some(1), Some(0), Some(2), Some(1)],
        vec![Some(1), Some(2), Some(0), Some(0), None],
    ];
    for name in ["calls.vcf", "calls.bcf"] {
        let (g, summary) = read_vcf(&fixture(name), opts).unwrap();
        for (j, w) in want.iter().enumerate() {
            assert_eq!(&dosages(&g, j), w, "{name} marker {j}");
        }
        assert_eq!(summary.rounded, 6, "{name}");
        assert_eq!(summary.multiallelic, 1, "{name}");
    }
}

#[test]
fn haploid_calls_are_refused_unless_read_as_homozygotes() {
    for (name, at) in [
        ("haploid.vcf", VcfAt::Line(5)),
        ("haploid.bcf", VcfAt::Record(1)),
    ] {
        match read_vcf(&fixture(name), VcfOptions::default()) {
            Err(GenoError::Vcf {
                at: found,
                sample,
                message,
                ..
            }) => {
                assert_eq!(found, at, "{name}");
                assert_eq!(sample.as_deref(), Some("s1"), "{name}");
                assert!(message.contains("--coding inbred"), "{name}: {message}");
            }
            other => panic!("{name}: expected a haploid error, got {other:?}"),
        }
        let opts = VcfOptions {
            haploid: HaploidCalls::Homozygous,
            ..VcfOptions::default()
        };
        let (g, summary) = read_vcf(&fixture(name), opts).unwrap();
        assert_eq!(dosages(&g, 0), [Some(0), Some(2), None, Some(2)], "{name}");
        assert_eq!(
            dosages(&g, 1),
            [Some(2), Some(0), Some(2), Some(0)],
            "{name}"
        );
        assert_eq!(summary.haploid, 5, "{name}");
    }
}

/// calls.vcf with line `line` (1-based) replaced.
fn with_line(dir: &Path, line: usize, text: &str) -> PathBuf {
    let src = std::fs::read_to_string(fixture("calls.vcf")).unwrap();
    let mut lines: Vec<&str> = src.lines().collect();
    lines[line - 1] = text;
    let path = dir.join(format!("bad{line}-{}.vcf", text.len()));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn vcf_error(path: &Path, opts: VcfOptions) -> (VcfAt, Option<String>, String) {
    match read_vcf(path, opts) {
        Err(GenoError::Vcf {
            path: p,
            at,
            sample,
            message,
        }) => {
            assert_eq!(p, path);
            (at, sample, message)
        }
        other => panic!("{}: expected a VCF error, got {other:?}", path.display()),
    }
}

#[test]
fn malformed_records_name_the_line_and_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = VcfOptions::default();
    // Too few and too many sample columns.
    let p = with_line(d, 7, "1\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0/0\t0/1");
    let (at, sample, msg) = vcf_error(&p, o);
    assert_eq!((at, sample), (VcfAt::Line(7), None));
    assert!(
        msg.contains("2 sample columns; the header names 5"),
        "{msg}"
    );
    let p = with_line(
        d,
        8,
        "1\t200\trs2\tC\tT\t.\tPASS\t.\tGT\t0/0\t0/1\t1/1\t0/0\t0/0\t1/1",
    );
    let (at, _, msg) = vcf_error(&p, o);
    assert_eq!(at, VcfAt::Line(8));
    assert!(msg.contains("more than the 5 sample columns"), "{msg}");
    // An unreadable call names its sample.
    let p = with_line(
        d,
        10,
        "2\t50\trs4\tT\tC\t.\tPASS\t.\tGT\t0/0\t0/1\t0/x\t0/0\t0/0",
    );
    let (at, sample, msg) = vcf_error(&p, o);
    assert_eq!((at, sample.as_deref()), (VcfAt::Line(10), Some("s3")));
    assert!(msg.contains("'0/x'"), "{msg}");
    // An allele the site does not have, and a triploid call.
    let p = with_line(
        d,
        10,
        "2\t50\trs4\tT\tC\t.\tPASS\t.\tGT\t0/0\t0/2\t0/0\t0/0\t0/0",
    );
    let (at, sample, msg) = vcf_error(&p, o);
    assert_eq!((at, sample.as_deref()), (VcfAt::Line(10), Some("s2")));
    assert!(
        msg.contains("allele 2") && msg.contains("1 ALT allele"),
        "{msg}"
    );
    let p = with_line(
        d,
        10,
        "2\t50\trs4\tT\tC\t.\tPASS\t.\tGT\t0/0\t0/0\t0/0\t0/0\t0/1/1",
    );
    let (_, sample, msg) = vcf_error(&p, o);
    assert_eq!(sample.as_deref(), Some("s5"));
    assert!(msg.contains("3 alleles"), "{msg}");
    // No GT in FORMAT; a bad POS.
    let p = with_line(d, 11, "2\t70\trs5\tA\tT\t.\tPASS\t.\tDS\t1\t2\t0\t0\t.");
    let (at, _, msg) = vcf_error(&p, o);
    assert_eq!(at, VcfAt::Line(11));
    assert!(
        msg.contains("without GT") && msg.contains("--vcf-field DS"),
        "{msg}"
    );
    let p = with_line(
        d,
        11,
        "2\tseventy\trs5\tA\tT\t.\tPASS\t.\tGT\t0/1\t1/1\t0/0\t0/0\t.",
    );
    let (at, _, _) = vcf_error(&p, o);
    assert_eq!(at, VcfAt::Line(11));
    // A DS out of range.
    let ds = VcfOptions {
        field: VcfField::Ds,
        ..o
    };
    let p = with_line(d, 11, "2\t70\trs5\tA\tT\t.\tPASS\t.\tDS\t1\t2.5\t0\t0\t.");
    let (at, sample, msg) = vcf_error(&p, ds);
    assert_eq!((at, sample.as_deref()), (VcfAt::Line(11), Some("s2")));
    assert!(msg.contains("'2.5' is outside 0 to 2"), "{msg}");
    // Not a VCF at all, and a header without the #CHROM line.
    let p = d.join("not.vcf");
    std::fs::write(&p, "id,m1\na,0\n").unwrap();
    let (at, _, msg) = vcf_error(&p, o);
    assert_eq!(at, VcfAt::Line(1));
    assert!(msg.contains("##fileformat"), "{msg}");
    let p = d.join("headless.vcf");
    std::fs::write(&p, "##fileformat=VCFv4.2\n##contig=<ID=1>\n").unwrap();
    assert_eq!(vcf_error(&p, o).0, VcfAt::Header);
    // Two sites with one ID.
    let p = with_line(
        d,
        11,
        "2\t70\trs4\tA\tT\t.\tPASS\t.\tGT\t0/1\t1/1\t0/0\t0/0\t.",
    );
    match read_vcf(&p, o) {
        Err(GenoError::DuplicateMarker {
            id, first, second, ..
        }) => assert_eq!((id.as_str(), first, second), ("rs4", 10, 11)),
        other => panic!("expected a duplicate marker, got {other:?}"),
    }
}

#[test]
fn truncated_files_are_errors_at_the_line_or_record_they_reach() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["example.vcf.gz", "example.bcf"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let path = dir.path().join(format!("cut-{name}"));
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let (at, _, msg) = vcf_error(&path, VcfOptions::default());
        match at {
            VcfAt::Line(n) => assert!(n > 12 && !name.ends_with("bcf"), "{name}: line {n}"),
            VcfAt::Record(n) => assert!(n > 1 && name.ends_with("bcf"), "{name}: record {n}"),
            VcfAt::Header => panic!("{name}: the header was whole"),
        }
        assert!(
            msg.contains("truncated"),
            "{name}: the message should say the file may be truncated: {msg}"
        );
    }
    // A plain gzip cut short, and a VCF whose text stops inside a record.
    let text = inflate(&fixture("example.vcf.gz"));
    let gz = gzip(&text);
    let path = dir.path().join("cut-plain.vcf.gz");
    std::fs::write(&path, &gz[..gz.len() - 1000]).unwrap();
    let (at, _, msg) = vcf_error(&path, VcfOptions::default());
    assert!(matches!(at, VcfAt::Line(n) if n > 12), "{at:?}");
    assert!(msg.contains("truncated"), "{msg}");
    let path = dir.path().join("cut.vcf");
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let (at, _, _) = vcf_error(&path, VcfOptions::default());
    assert!(matches!(at, VcfAt::Line(n) if n > 12), "{at:?}");
}
