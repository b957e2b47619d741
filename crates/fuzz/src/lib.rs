//! Fuzzing harnesses for genocnn's readers, one function per reader family.
//!
//! Each function takes the fuzzer's bytes, writes them where the reader
//! expects a file (a scratch folder per process), and calls the reader as the
//! command line does. A reader may refuse the input with an error; it must
//! never panic, abort or hang. Where a reader accepts the input, the harness
//! also checks what it can check independently: that what genocnn writes it
//! reads back unchanged, and that a spec survives being written out. A failed
//! check panics, which the fuzzer records as a crash. Each function returns
//! whether the reader accepted the input, so that the tests can check that
//! the seeds reach past the first error.
//!
//! The AFL targets (`src/bin/`, feature `afl`) call these functions;
//! `tests/corpora.rs` replays the seed corpora and every saved crash through
//! them on each `cargo test`. `scripts/fuzz.sh` builds and runs the targets.
//!
//! Several files in one input are separated by [`SEP`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use geno::{DelimitedOptions, Delimiter, Individual, PackedGenotypes, PhenoTable, TraitSelector};

/// Separates the files of a multi-file input (`.fam`, `.bim`, `.bed`; a
/// saved model's `model.toml` and `model.safetensors`; MNIST's images and
/// labels).
pub const SEP: &[u8] = b"\n\xff\xfe\n";

/// A harness: the fuzzer's bytes in, whether the reader accepted them out.
pub type Harness = fn(&[u8]) -> bool;

/// The reader families, as named by the AFL targets and the corpora folders.
pub const FAMILIES: [(&str, Harness); 8] = [
    ("plink", plink),
    ("delimited", delimited),
    ("raw", raw),
    ("tables", tables),
    ("specs", specs),
    ("saved", saved),
    ("images", images),
    ("vcf", vcf),
];

/// Splits `data` into `n` files at [`SEP`]; missing files are empty.
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(k) => {
                out.push(&rest[..k]);
                rest = &rest[k + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    while out.len() < n {
        out.push(&[]);
    }
    out
}

/// Joins files into one input (the inverse of [`parts`]), for seeds.
pub fn join(files: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, f) in files.iter().enumerate() {
        if k > 0 {
            out.extend_from_slice(SEP);
        }
        out.extend_from_slice(f);
    }
    out
}

/// This thread's scratch folder (in `/dev/shm` where there is one): the
/// tests replay corpora on several threads of one process.
fn scratch() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        base.join(format!("genocnn-fuzz-{}", std::process::id()))
    });
    let thread = format!("{:?}", std::thread::current().id());
    let name: String = thread.chars().filter(char::is_ascii_digit).collect();
    base.join(format!("t{name}"))
}

/// Removes this thread's scratch folder (and the process's, once empty).
pub fn clear_scratch() {
    let dir = scratch();
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(base) = dir.parent() {
        let _ = std::fs::remove_dir(base);
    }
}

/// A clean sub-folder of the scratch folder.
fn fresh(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch sub-folder");
    dir
}

fn put(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write a scratch file");
}

/// Every genotype code, SNP-major.
fn codes(g: &PackedGenotypes) -> Vec<u8> {
    let mut v = Vec::with_capacity(g.n_individuals() * g.n_markers());
    for j in 0..g.n_markers() {
        for i in 0..g.n_individuals() {
            v.push(g.code(i, j));
        }
    }
    v
}

/// Uses every accessor a command would, so that a store that reads but
/// cannot be used is found.
fn exercise(g: &PackedGenotypes) {
    assert_eq!(g.individuals().len(), g.n_individuals());
    assert_eq!(g.markers().len(), g.n_markers());
    for j in 0..g.n_markers() {
        let c = g.counts(j);
        assert_eq!(c.called() as usize + c.missing as usize, g.n_individuals());
        let _ = (c.a1_freq(), c.missing_rate());
    }
    let _ = g.missing_per_individual(0..g.n_markers());
    let _ = g.calls_are_zero_one();
}

fn iids(g: &PackedGenotypes) -> Vec<&str> {
    g.individuals().iter().map(|i| i.iid.as_str()).collect()
}

fn marker_ids(g: &PackedGenotypes) -> Vec<&str> {
    g.markers().iter().map(|m| m.id.as_str()).collect()
}

/// `.fam`, `.bim` and `.bed`, separated by [`SEP`]. An accepted fileset is
/// written back with `write_plink` and must read back identical.
pub fn plink(data: &[u8]) -> bool {
    let p = parts(data, 3);
    let dir = fresh("plink");
    put(&dir.join("x.fam"), p[0]);
    put(&dir.join("x.bim"), p[1]);
    put(&dir.join("x.bed"), p[2]);
    let whole = geno::read_plink(&dir.join("x"));
    // The block reader (`qc`'s) accepts exactly what the whole reader does,
    // and reads the same markers and calls, in blocks of 3 that reuse the
    // last block's memory.
    let blocks = (|| -> geno::Result<(Vec<geno::Marker>, Vec<u8>)> {
        let mut r = geno::PlinkBlocks::open(&dir.join("x"))?;
        let (mut markers, mut calls) = (Vec::new(), Vec::new());
        while let Some(b) = r.next_block(3)? {
            markers.extend_from_slice(b.markers());
            calls.extend(codes(&b));
            r.recycle(b);
        }
        Ok((markers, calls))
    })();
    assert_eq!(
        blocks.is_ok(),
        whole.is_ok(),
        "the block reader and the whole reader disagree: {:?} / {:?}",
        blocks.as_ref().err(),
        whole.as_ref().err()
    );
    let Ok(g) = whole else {
        return false;
    };
    let (markers, calls) = blocks.expect("checked above");
    assert_eq!(markers, g.markers(), "the block reader's markers");
    assert_eq!(calls, codes(&g), "the block reader's calls");
    exercise(&g);
    let out = dir.join("y");
    if geno::write_plink(&g, &out, None, None).is_ok() {
        let back = geno::read_plink(&out).expect("a fileset write_plink wrote reads back");
        assert_eq!(back.individuals(), g.individuals(), ".fam round trip");
        assert_eq!(back.markers(), g.markers(), ".bim round trip");
        assert_eq!(codes(&back), codes(&g), ".bed round trip");
    }
    true
}

/// A delimited dosage matrix. The first byte chooses the options: bits 0–1
/// the delimiter (detected, comma, tab, whitespace), bits 2–3 the header
/// (detected, yes, no), bits 4–5 the ID column (detected, yes, no). An
/// accepted matrix is written back as CSV and must read back identical.
pub fn delimited(data: &[u8]) -> bool {
    let Some((&opt, body)) = data.split_first() else {
        return false;
    };
    let tri = |b: u8| match b & 3 {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    };
    let opts = DelimitedOptions {
        delimiter: match opt & 3 {
            1 => Some(Delimiter::Comma),
            2 => Some(Delimiter::Tab),
            3 => Some(Delimiter::Whitespace),
            _ => None,
        },
        header: tri(opt >> 2),
        ids: tri(opt >> 4),
    };
    let dir = fresh("delimited");
    let path = dir.join("x.csv");
    put(&path, body);
    let Ok(g) = geno::delim::read_delimited(&path, opts) else {
        return false;
    };
    exercise(&g);
    // Written as CSV, or as TSV where an ID holds a comma.
    let out = dir.join("y.csv");
    for d in [Delimiter::Comma, Delimiter::Tab] {
        if geno::delim::write_delimited(&g, &out, d).is_err() {
            continue;
        }
        let back = geno::delim::read_delimited(
            &out,
            DelimitedOptions {
                delimiter: Some(d),
                header: Some(true),
                ids: Some(true),
            },
        )
        .expect("a matrix write_delimited wrote reads back");
        assert_eq!(iids(&back), iids(&g), "ID round trip");
        assert_eq!(marker_ids(&back), marker_ids(&g), "marker round trip");
        assert_eq!(codes(&back), codes(&g), "dosage round trip");
        break;
    }
    true
}

/// A PLINK `.raw` file. An accepted file is written back with `write_raw`
/// and must read back identical.
pub fn raw(data: &[u8]) -> bool {
    let dir = fresh("raw");
    let path = dir.join("x.raw");
    put(&path, data);
    let Ok(g) = geno::delim::read_raw(&path) else {
        return false;
    };
    exercise(&g);
    let out = dir.join("y.raw");
    if geno::delim::write_raw(&g, &out).is_ok() {
        let back = geno::delim::read_raw(&out).expect("a file write_raw wrote reads back");
        assert_eq!(iids(&back), iids(&g), "ID round trip");
        assert_eq!(marker_ids(&back), marker_ids(&g), "marker round trip");
        assert_eq!(codes(&back), codes(&g), "dosage round trip");
    }
    true
}

/// VCF and BCF files (plain, gzip or BGZF: the reader tells them apart by
/// their bytes). The first byte chooses: bit 0 reads `DS` (else `GT`), bit 1
/// reads haploid calls as homozygotes. A file that reads is written as a
/// `.bed` and must read back to the same calls.
pub fn vcf(data: &[u8]) -> bool {
    let Some((&opt, body)) = data.split_first() else {
        return false;
    };
    let opts = geno::VcfOptions {
        field: if opt & 1 == 1 {
            geno::VcfField::Ds
        } else {
            geno::VcfField::Gt
        },
        haploid: if opt & 2 == 2 {
            geno::HaploidCalls::Homozygous
        } else {
            geno::HaploidCalls::Refuse
        },
    };
    let dir = fresh("vcf");
    let path = dir.join("x.vcf");
    put(&path, body);
    let Ok((g, summary)) = geno::read_vcf(&path, opts) else {
        return false;
    };
    exercise(&g);
    assert!(summary.records >= g.n_markers() + summary.multiallelic);
    let out = dir.join("y.bed");
    if geno::write_plink(&g, &out, None, None).is_ok() {
        if let Ok(back) = geno::read_plink(&out) {
            assert_eq!(codes(&back), codes(&g), "dosage round trip");
        }
    }
    true
}

/// Phenotype and covariate tables and fold files. The first byte chooses:
/// bit 0 a fold file (else a phenotype table), bit 1 the `.fam` extension
/// for a phenotype table (read as PLINK fam).
pub fn tables(data: &[u8]) -> bool {
    let Some((&opt, body)) = data.split_first() else {
        return false;
    };
    let dir = fresh("tables");
    let ids: Vec<String> = ["a", "b", "c", "d", "e", "f", "1", "2", "3", "4"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if opt & 1 == 1 {
        let path = dir.join("folds.csv");
        put(&path, body);
        let eligible: Vec<usize> = (0..ids.len()).collect();
        let Ok(f) = eval::folds::Folds::from_csv(&path, &ids, &eligible) else {
            return false;
        };
        {
            assert_eq!(f.assignment.len(), f.repeats());
            for r in 0..f.repeats() {
                assert_eq!(f.assignment[r].len(), ids.len(), "one entry per individual");
                for k in 0..f.k {
                    let (train, test) = f.split(r, k);
                    assert!(train.iter().all(|i| !test.contains(i)), "folds overlap");
                }
            }
        }
        return true;
    }
    let path = dir.join(if opt & 2 == 2 { "x.fam" } else { "x.csv" });
    put(&path, body);
    let Ok(t) = PhenoTable::read(&path) else {
        return false;
    };
    let individuals: Vec<Individual> = ids.iter().map(Individual::from_id).collect();
    // A command selects a few columns: the first 8 by name, 8 by number
    // (and one past the end), as the CLI would.
    let mut sels: Vec<TraitSelector> = t
        .names
        .iter()
        .take(8)
        .cloned()
        .map(TraitSelector::Name)
        .collect();
    sels.extend((1..=t.names.len().min(8)).map(TraitSelector::Index));
    sels.push(TraitSelector::Index(t.names.len() + 1));
    sels.extend(
        ["1", "2", "y", "x"]
            .iter()
            .filter_map(|s| s.parse::<TraitSelector>().ok()),
    );
    for sel in &sels {
        if let Ok(tr) = t.select(sel, &individuals) {
            assert_eq!(
                tr.values.len(),
                individuals.len(),
                "one value per individual"
            );
        }
        let _ = t.select_as(sel, &individuals, "covariate");
    }
    true
}

/// A valid model spec, the base of the search specs the fuzzer writes.
const BASE_SPEC: &str = r#"
name = "base"
[[layers]]
type = "conv1d"
filters = 4
kernel = 3
[[layers]]
type = "dense"
units = 8
[[layers]]
type = "dense"
units = 1
"#;

/// Model specs, search specs and augmentation specs (TOML). The first byte
/// chooses which (mod 3). A model spec that parses must write out with
/// `to_toml` and parse back to the same text.
pub fn specs(data: &[u8]) -> bool {
    let Some((&opt, body)) = data.split_first() else {
        return false;
    };
    let text = String::from_utf8_lossy(body);
    match opt % 3 {
        0 => {
            let Ok(spec) = model::ModelSpec::from_toml(&text, "fuzz", "fuzz.toml") else {
                return false;
            };
            let out = spec.to_toml();
            let back = model::ModelSpec::from_toml(&out, "fuzz", "written.toml")
                .unwrap_or_else(|e| panic!("a written spec parses again: {e}\n{out}"));
            assert_eq!(back.to_toml(), out, "spec round trip");
            true
        }
        1 => {
            let dir = fresh("specs");
            put(&dir.join("base.toml"), BASE_SPEC.as_bytes());
            let path = dir.join("search.toml");
            put(&path, body);
            let Ok(s) = model::SearchSpec::from_file(&path) else {
                return false;
            };
            assert!(!s.candidates.is_empty(), "a search has candidates");
            true
        }
        _ => {
            let Ok(a) = vision::augment::AugmentSpec::from_toml(&text, "fuzz.toml") else {
                return false;
            };
            if a.validate().is_err() {
                return false;
            }
            use rand::SeedableRng;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            let _ = a.draw(&mut rng, 8, 8).matrix(8, 8);
            true
        }
    }
}

/// A saved model folder: `model.toml` and `model.safetensors`, separated by
/// [`SEP`]. Loading and reading the weights must fail cleanly or succeed.
pub fn saved(data: &[u8]) -> bool {
    let p = parts(data, 2);
    let dir = fresh("saved");
    put(&dir.join("model.toml"), p[0]);
    put(&dir.join("model.safetensors"), p[1]);
    let loaded = model::load(&dir, nn::Native::new()).is_ok();
    let weights = model::read_weights(&dir).is_ok();
    loaded || weights
}

/// Images. The first byte chooses (mod 4): one IDX file, one gzipped IDX
/// file, MNIST images and labels (separated by [`SEP`]), or a CIFAR-10
/// batch.
pub fn images(data: &[u8]) -> bool {
    let Some((&opt, body)) = data.split_first() else {
        return false;
    };
    let dir = fresh("images");
    match opt % 4 {
        0 | 1 => {
            let path = dir.join(if opt % 4 == 0 { "x.idx" } else { "x.idx.gz" });
            put(&path, body);
            let Ok(idx) = vision::read_idx(&path) else {
                return false;
            };
            let n: usize = idx.dims.iter().product();
            assert_eq!(idx.data.len(), n, "IDX data matches its dimensions");
            true
        }
        2 => {
            let p = parts(body, 2);
            put(&dir.join("t-images-idx3-ubyte"), p[0]);
            put(&dir.join("t-labels-idx1-ubyte"), p[1]);
            let Ok(set) = vision::read_mnist(&dir, "t") else {
                return false;
            };
            assert_eq!(set.images.len(), set.len() * set.height * set.width);
            true
        }
        _ => {
            let path = dir.join("data_batch_1.bin");
            put(&path, body);
            let Ok(set) = vision::read_cifar(&[path]) else {
                return false;
            };
            assert_eq!(set.images.len(), set.len() * 3 * 32 * 32);
            true
        }
    }
}
