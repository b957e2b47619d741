//! Messages that say what happened (issue 16): a UTF-8 byte-order mark is
//! not part of the first header name, and an output error names the output.

use geno::{GenoReader, PhenoTable, TraitSelector};

#[test]
fn a_byte_order_mark_is_stripped_from_genotype_and_phenotype_headers() {
    let dir = tempfile::tempdir().unwrap();
    let bom = "\u{feff}";
    // Genotypes with a header and no ID column.
    let g = dir.path().join("g.csv");
    std::fs::write(&g, format!("{bom}m1,m2\n0,1\n2,1\n")).unwrap();
    let store = GenoReader::new(&g).read().unwrap();
    assert_eq!(store.markers()[0].id, "m1");
    // Genotypes with an ID column.
    let g2 = dir.path().join("g2.csv");
    std::fs::write(&g2, format!("{bom}id,m1,m2\na,0,1\nb,2,1\n")).unwrap();
    let store2 = GenoReader::new(&g2).read().unwrap();
    assert_eq!(store2.markers()[0].id, "m1");
    assert_eq!(store2.individuals()[0].iid, "a");
    // Phenotypes: the ID column is still found, and the trait by name.
    let p = dir.path().join("p.csv");
    std::fs::write(&p, format!("{bom}id,yield\na,1.5\nb,2.5\n")).unwrap();
    let t = PhenoTable::read(&p)
        .unwrap()
        .select(&TraitSelector::Name("yield".into()), store2.individuals())
        .unwrap();
    assert_eq!(t.values, vec![1.5, 2.5]);
}

#[test]
fn an_output_error_names_the_output_not_its_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("no-such-folder").join("out.csv");
    let e = geno::write_atomic(&target, b"x").unwrap_err().to_string();
    assert!(
        e.contains("no-such-folder/out.csv") && !e.contains(".tmp-"),
        "{e}"
    );
}

#[test]
fn a_bed_read_as_text_is_called_binary_not_quoted() {
    let bed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/example.bed");
    for format in [geno::GenoFormat::Raw, geno::GenoFormat::Delimited] {
        let e = GenoReader::new(&bed)
            .format(Some(format))
            .read()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("example.bed")
                && e.contains("binary data")
                && e.contains("6c 1b 01")
                && e.contains("PLINK .bed"),
            "{format:?}: {e}"
        );
        assert!(!e.contains('\u{fffd}'), "{e}");
    }
}
