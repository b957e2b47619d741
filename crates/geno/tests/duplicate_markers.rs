//! Duplicate marker IDs are refused by every reader, naming both places
//! (a model's markers are matched by ID, so a second copy would be read
//! from the first's column).

use geno::{GenoError, GenoReader};

fn expect_duplicate(path: &std::path::Path, want: (&str, &str, usize, usize)) {
    match GenoReader::new(path).read() {
        Err(GenoError::DuplicateMarker {
            id,
            unit,
            first,
            second,
            ..
        }) => assert_eq!((id.as_str(), unit, first, second), want),
        Err(e) => panic!("{}: wrong error {e}", path.display()),
        Ok(_) => panic!("{}: duplicate marker accepted", path.display()),
    }
}

#[test]
fn a_bim_csv_and_raw_with_a_repeated_marker_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A .bim whose third line repeats the first's ID (a blank line between
    // counts as a line).
    let p = dir.path().join("d");
    std::fs::write(
        p.with_extension("bim"),
        "1 rs1 0 100 A G\n1 rs2 0 200 A G\n\n1 rs1 0 300 C T\n",
    )
    .unwrap();
    std::fs::write(p.with_extension("fam"), "f i1 0 0 0 -9\n").unwrap();
    std::fs::write(p.with_extension("bed"), [0x6c, 0x1b, 0x01, 0xff]).unwrap();
    expect_duplicate(&p.with_extension("bed"), ("rs1", "line", 1, 4));
    let e = GenoReader::new(p.with_extension("bed")).read().unwrap_err();
    assert!(
        e.to_string().contains("d.bim") && e.to_string().contains("lines 1 and 4"),
        "{e}"
    );

    // A CSV dosage matrix: columns counted in the header line.
    let c = dir.path().join("d.csv");
    std::fs::write(&c, "id,m1,m2,m1\na,0,1,2\nb,1,1,0\n").unwrap();
    expect_duplicate(&c, ("m1", "column", 2, 4));

    // A .raw: markers from column 7 on (their allele suffix stripped).
    let r = dir.path().join("d.raw");
    std::fs::write(
        &r,
        "FID IID PAT MAT SEX PHENOTYPE snp1_A snp2_G snp1_A\nf a 0 0 0 -9 0 1 2\n",
    )
    .unwrap();
    expect_duplicate(&r, ("snp1", "column", 7, 9));
}

/// The ID tables' hasher spreads IDs that differ only in their last bytes
/// over the low bits a hash table indexes by (without its finalizer, IDs
/// such as snp100123 and snp100124 shared their low bits and a
/// 358,499-marker .bim spent its time comparing colliding keys).
#[test]
fn the_id_hasher_spreads_sequential_ids_over_the_low_bits() {
    use std::hash::BuildHasher;
    let h = geno::FastHash::default();
    let low: std::collections::HashSet<u64> = (100_000..110_000)
        .map(|i| h.hash_one(format!("snp{i}").as_str()) & 0xffff)
        .collect();
    // 10,000 draws into 65,536 buckets leave about 9,300 distinct ones.
    assert!(low.len() > 9_000, "only {} distinct low 16 bits", low.len());
}
