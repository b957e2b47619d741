//! Property tests: any calls survive every writer and reader unchanged, and
//! the byte-table counters agree with a naive count.

use geno::delim::{read_delimited, read_raw, write_delimited, write_raw};
use geno::{
    read_plink, write_plink, DelimitedOptions, Delimiter, Individual, Marker, PackedGenotypes,
};
use proptest::prelude::*;

fn store(n: usize, m: usize, calls: &[u8]) -> PackedGenotypes {
    let ind = (0..n)
        .map(|i| Individual::from_id(format!("id{i}")))
        .collect();
    let mk = (0..m).map(|j| Marker::from_id(format!("m{j}"))).collect();
    PackedGenotypes::from_fn(ind, mk, |i, j| match calls[(i * m + j) % calls.len()] {
        3 => None,
        d => Some(d),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_format_round_trips(n in 1usize..23, m in 1usize..19, calls in prop::collection::vec(0u8..4, 1..64)) {
        let g = store(n, m, &calls);
        let dir = tempfile::tempdir().unwrap();
        let bed = dir.path().join("x.bed");
        write_plink(&g, &bed, None, None).unwrap();
        let b = read_plink(&bed).unwrap();
        prop_assert_eq!(b.packed(), g.packed());
        prop_assert_eq!(b.individuals(), g.individuals());
        prop_assert_eq!(b.markers(), g.markers());
        prop_assert_eq!(std::fs::metadata(&bed).unwrap().len() as usize, 3 + m * n.div_ceil(4));

        for (ext, d) in [("csv", Delimiter::Comma), ("tsv", Delimiter::Tab), ("txt", Delimiter::Whitespace)] {
            let p = dir.path().join(format!("x.{ext}"));
            write_delimited(&g, &p, d).unwrap();
            let c = read_delimited(&p, DelimitedOptions::default()).unwrap();
            prop_assert_eq!(c.packed(), g.packed(), "{}", ext);
        }
        let raw = dir.path().join("x.raw");
        write_raw(&g, &raw).unwrap();
        let r = read_raw(&raw).unwrap();
        prop_assert_eq!(r.packed(), g.packed());
    }

    #[test]
    fn counts_match_naive(n in 1usize..300, calls in prop::collection::vec(0u8..4, 1..500)) {
        let g = store(n, 1, &calls);
        let mut naive = [0u32; 4];
        for i in 0..n {
            match g.dosage(i, 0) {
                Some(d) => naive[d as usize] += 1,
                None => naive[3] += 1,
            }
        }
        let c = g.counts(0);
        prop_assert_eq!([c.hom_a2, c.het, c.hom_a1, c.missing], naive);
        prop_assert_eq!(g.missing_per_individual(0..1).iter().sum::<u32>(), naive[3]);
    }
}

/// Found by the fuzzer (crates/fuzz): a tab-separated matrix whose marker
/// ID holds a comma, or a `.raw` whose field is only a form feed, was
/// written into a file that read back different. The writers now refuse
/// such a field, naming it, and the same store writes to a format that can
/// hold it.
#[test]
fn writers_refuse_fields_that_would_not_read_back() {
    use geno::delim::{read_delimited, read_raw, write_delimited, write_raw};
    use geno::{DelimitedOptions, Delimiter};
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("g.tsv");
    std::fs::write(&tsv, "id\tm,1\tm2\na\t0\t1\nb\t2\tNA\n").unwrap();
    let g = read_delimited(&tsv, DelimitedOptions::default()).unwrap();
    assert_eq!(g.markers()[0].id, "m,1");
    let csv = dir.path().join("out.csv");
    let e = write_delimited(&g, &csv, Delimiter::Comma)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("out.csv")
            && e.contains("the ID 'm,1' of marker 1 holds a comma")
            && e.contains("comma-separated"),
        "{e}"
    );
    assert!(!csv.exists(), "nothing is written");
    let back_path = dir.path().join("out.tsv");
    write_delimited(&g, &back_path, Delimiter::Tab).unwrap();
    let back = read_delimited(&back_path, DelimitedOptions::default()).unwrap();
    assert_eq!(back.markers()[0].id, "m,1");
    // A raw file refuses a space in an ID.
    let mut ind = g.individuals().to_vec();
    ind[0].iid = "line 1".into();
    ind[0].fid = "line 1".into();
    let spaced = geno::PackedGenotypes::from_packed(
        ind,
        vec![geno::Marker::from_id("m1"), geno::Marker::from_id("m2")],
        g.packed().to_vec(),
    );
    let e = write_raw(&spaced, &dir.path().join("s.raw"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("s.raw") && e.contains("the family ID 'line 1' of individual 1 holds a space"),
        "{e}"
    );
    // And what is writable reads back.
    let fine = geno::PackedGenotypes::from_packed(
        vec![
            geno::Individual::from_id("a"),
            geno::Individual::from_id("b"),
        ],
        vec![geno::Marker::from_id("m1"), geno::Marker::from_id("m2")],
        g.packed().to_vec(),
    );
    let raw = dir.path().join("f.raw");
    write_raw(&fine, &raw).unwrap();
    assert_eq!(read_raw(&raw).unwrap().markers()[1].id, "m2");
}

/// Found by the fuzzer: a `.fam` line ending in two carriage returns kept
/// one in the phenotype field, so the fileset did not write back as read.
/// PLINK's text files split at any ASCII white space, and so do ours.
#[test]
fn plink_text_fields_split_at_any_white_space() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(
        p.with_extension("fam"),
        "a a 0 0 1 0.7\r\r\nb\tb 0 0 2\x0c-9\n",
    )
    .unwrap();
    std::fs::write(p.with_extension("bim"), "1 m1 0 10 A G\r\r\n").unwrap();
    std::fs::write(p.with_extension("bed"), [0x6c, 0x1b, 0x01, 0b0000_1011]).unwrap();
    let g = geno::read_plink(&p).unwrap();
    assert_eq!(g.individuals()[0].phenotype, "0.7");
    assert_eq!(g.individuals()[1].sex, "2");
    assert_eq!(g.individuals()[1].phenotype, "-9");
    assert_eq!(g.markers()[0].a2, "G");
}

/// Found by the fuzzer: a `.fam` field `""` reads as empty, and a field
/// with control characters is kept; write_plink wrote both into files that
/// did not read back. It now refuses them, naming the field.
#[test]
fn write_plink_refuses_fields_a_fam_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mk = vec![geno::Marker::from_id("m1")];
    let mut a = geno::Individual::from_id("a");
    a.phenotype = String::new();
    let g = geno::PackedGenotypes::from_fn(vec![a], mk.clone(), |_, _| Some(1));
    let e = geno::write_plink(&g, &dir.path().join("x"), None, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x.fam") && e.contains("the phenotype '' of individual 1"),
        "{e}"
    );
    let mut b = geno::Individual::from_id("b");
    b.sex = "\u{2}1".into();
    let g = geno::PackedGenotypes::from_fn(vec![b], mk, |_, _| Some(1));
    let e = geno::write_plink(&g, &dir.path().join("y"), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the sex '\\u{2}1' of individual 1"), "{e}");
    assert!(!dir.path().join("y.bed").exists());
}
