//! `--keep` and `--extract` (issue 18): a PLINK fileset read only where the
//! subset lies must hold exactly the calls of the whole fileset cut by
//! index (`PackedGenotypes::subset`, a separate path over bytes in memory).

use std::path::Path;

use geno::{
    read_plink, read_plink_selected, ExtractList, GenoError, GenoReader, KeepList, Selection,
};

fn write_list(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn selected_reads_equal_the_whole_fileset_cut_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("sim");
    // 103 individuals: the last byte of each marker is partly padding.
    let sim = geno::simulate(&geno::SimParams {
        n: 103,
        snps: 1000,
        chromosomes: 2,
        missing: 0.05,
        seed: 3,
        ..geno::SimParams::default()
    })
    .unwrap();
    geno::write_plink(&sim.genotypes, &prefix, None, None).unwrap();
    let bed = prefix.with_extension("bed");
    let whole = read_plink(&bed).unwrap();
    let mut rng = 12345u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    for round in 0..20 {
        // Runs of adjacent markers and scattered ones, rows in any density.
        let cols: Vec<usize> = (0..1000)
            .filter(|j| {
                if round % 2 == 0 {
                    next() % 5 == 0
                } else {
                    (j / 37) % 3 == 0
                }
            })
            .collect();
        let rows: Vec<usize> = (0..103).filter(|_| next() % 3 != 0).collect();
        let keep: String = rows
            .iter()
            .rev() // the list's order does not matter: the fileset's is kept
            .map(|&i| {
                let ind = &whole.individuals()[i];
                format!("{} {}\n", ind.fid, ind.iid)
            })
            .collect();
        let extract: String = cols
            .iter()
            .map(|&j| format!("{}\n", whole.markers()[j].id))
            .collect();
        let selection = Selection {
            keep: Some(KeepList::read(&write_list(dir.path(), "k.txt", &keep)).unwrap()),
            extract: Some(ExtractList::read(&write_list(dir.path(), "e.txt", &extract)).unwrap()),
        };
        let (g, chosen) = read_plink_selected(&bed, &selection).unwrap();
        let expected = whole.subset(&rows, &cols);
        assert_eq!(g.packed(), expected.packed(), "round {round}");
        assert_eq!(chosen.rows.as_deref(), Some(&rows[..]));
        assert_eq!(chosen.cols.as_deref(), Some(&cols[..]));
        let ids = |g: &geno::PackedGenotypes| -> Vec<String> {
            g.markers().iter().map(|m| m.id.clone()).collect()
        };
        assert_eq!(ids(&g), ids(&expected));
        // Markers only: the bytes are read straight into the store.
        let only = Selection {
            keep: None,
            extract: selection.extract.clone(),
        };
        let (g, _) = read_plink_selected(&bed, &only).unwrap();
        assert_eq!(
            g.packed(),
            whole.subset(&(0..103).collect::<Vec<_>>(), &cols).packed()
        );
    }
}

#[test]
fn keep_lists_match_iids_alone_or_fid_iid_pairs_and_other_formats_are_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_list(
        dir.path(),
        "g.csv",
        "id,m1,m2,m3\na,0,1,2\nb,2,1,0\nc,1,1,1\n",
    );
    let keep = write_list(dir.path(), "k.txt", "# a comment\nc\na\nzz\n");
    let extract = write_list(dir.path(), "e.txt", "m3 m1\n");
    let selection = Selection {
        keep: Some(KeepList::read(&keep).unwrap()),
        extract: Some(ExtractList::read(&extract).unwrap()),
    };
    let (g, summary) = GenoReader::new(&csv)
        .select(selection)
        .read_summarized()
        .unwrap();
    let iids: Vec<&str> = g.individuals().iter().map(|i| i.iid.as_str()).collect();
    assert_eq!(iids, ["a", "c"]);
    let mids: Vec<&str> = g.markers().iter().map(|m| m.id.as_str()).collect();
    assert_eq!(mids, ["m1", "m3"]);
    assert_eq!(g.dosage(0, 1), Some(2));
    assert_eq!(g.dosage(1, 0), Some(1));
    let keep = summary.chosen.keep.unwrap();
    assert_eq!((keep.listed, keep.found), (3, 2));
}

#[test]
fn lists_that_match_nothing_or_hold_nothing_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_list(dir.path(), "g.csv", "id,m1\na,0\nb,2\n");
    let none = write_list(dir.path(), "none.txt", "x y\n");
    let selection = Selection {
        keep: Some(KeepList::read(&none).unwrap()),
        extract: None,
    };
    match GenoReader::new(&csv).select(selection).read() {
        Err(GenoError::Invalid { path, message }) => {
            assert_eq!(path, none);
            assert!(message.contains("none of its 1 individuals"), "{message}");
        }
        other => panic!("expected an error naming the list, got {other:?}"),
    }
    let empty = write_list(dir.path(), "empty.txt", "\n# nothing\n");
    assert!(matches!(
        ExtractList::read(&empty),
        Err(GenoError::Empty { path, .. }) if path == empty
    ));
}
