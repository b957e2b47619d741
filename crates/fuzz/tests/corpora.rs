//! Replays the fuzzing corpora through the harnesses on every `cargo test`:
//! the seeds (`corpora/FAMILY/`, cut from `data/`, `configs/` and
//! `tests/fixtures/`) and every input a fuzzer once crashed on
//! (`crashes/FAMILY/`, kept after the fix). A seed named `bad-…` must be
//! refused by its reader; every other seed must be accepted, so that the
//! fuzzer starts from inputs that reach past the first check.

use std::path::Path;

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .map(|e| e.expect("read a corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn every_seed_is_read_as_labelled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpora");
    for (family, harness) in fuzz::FAMILIES {
        let seeds = files(&root.join(family));
        assert!(seeds.len() >= 2, "{family}: fewer than 2 seeds");
        for path in seeds {
            let data = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy();
            let accepted = harness(&data);
            assert_eq!(
                accepted,
                !name.starts_with("bad-"),
                "{family}/{name}: accepted = {accepted}"
            );
        }
    }
    fuzz::clear_scratch();
}

#[test]
fn every_saved_crash_is_refused_or_read_without_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes");
    for (family, harness) in fuzz::FAMILIES {
        for path in files(&root.join(family)) {
            let data = std::fs::read(&path).unwrap();
            // A panic fails the test and names the file through the backtrace;
            // name it up front too.
            eprintln!("replaying {}", path.display());
            harness(&data);
        }
    }
    fuzz::clear_scratch();
}

#[test]
fn parts_and_join_are_inverse() {
    let files: [&[u8]; 3] = [b"a\nb", b"", b"\x00\x01"];
    let joined = fuzz::join(&files);
    assert_eq!(fuzz::parts(&joined, 3), files.to_vec());
    // Missing files are empty; extra separators stay in the last file.
    assert_eq!(fuzz::parts(b"x", 3), vec![&b"x"[..], b"", b""]);
    let three = fuzz::join(&[b"1", b"2", b"3"]);
    let two = fuzz::parts(&three, 2);
    assert_eq!(two[0], b"1");
    assert_eq!(two[1], fuzz::join(&[b"2", b"3"]).as_slice());
}
