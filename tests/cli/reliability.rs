//! Issue 16's defects, one test each: inputs that used to pass silently
//! (a constant trait or covariate, negative penalties, empty searches and
//! repeats, more folds than groups, an output over an input, a diverging
//! run) are refused with a message that says what was expected.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{example_bed, example_pheno, fails, s, train_example_args};

/// The example's phenotypes with the trait column replaced by `f(row)`,
/// and an extra column `extra` = `g(row)`.
fn pheno_with(
    dir: &Path,
    name: &str,
    f: &dyn Fn(usize, &str) -> String,
    g: &dyn Fn(usize) -> String,
) -> PathBuf {
    let text = fs::read_to_string(example_pheno()).unwrap();
    let mut out = String::from("id,trait,extra\n");
    for (k, line) in text.lines().enumerate().skip(1) {
        let (id, v) = line.split_once(',').unwrap();
        out.push_str(&format!("{id},{},{}\n", f(k, v), g(k)));
    }
    let p = dir.join(name);
    fs::write(&p, out).unwrap();
    p
}

const MLP: &str = r#"
name = "m"
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 4
activation = "relu"
l2 = 0.001
[[layers]]
type = "dense"
units = 1
[training]
epochs = 2
"#;

#[test]
fn a_constant_trait_is_refused_by_gblup_train_and_cv() {
    let dir = tempfile::tempdir().unwrap();
    let p = pheno_with(dir.path(), "c.csv", &|_, _| "2.5".into(), &|_| "1".into());
    let out = dir.path().join("o");
    let e = fails(&[
        "gblup",
        "--geno",
        example_bed(),
        "--pheno",
        s(&p),
        "--trait",
        "trait",
        "--out",
        s(&out),
    ]);
    assert!(
        e.contains("c.csv") && e.contains("trait trait is constant") && e.contains("2.5"),
        "{e}"
    );
    let cfg = dir.path().join("m.toml");
    fs::write(&cfg, MLP).unwrap();
    let mut args = train_example_args(&cfg, &out, &[]);
    args[4] = s(&p);
    let e = fails(&args);
    assert!(
        e.contains("trait trait is constant") && e.contains("2.5"),
        "{e}"
    );
    let e = fails(&[
        "cv",
        "--geno",
        example_bed(),
        "--pheno",
        s(&p),
        "--trait",
        "trait",
        "--models",
        "gblup",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("c.csv") && e.contains("is constant"), "{e}");
    // The multi-trait path too.
    let e = fails(&[
        "gblup",
        "--geno",
        example_bed(),
        "--pheno",
        s(&p),
        "--trait",
        "trait,extra",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("constant"), "{e}");
}

#[test]
fn a_constant_covariate_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = pheno_with(dir.path(), "c.csv", &|_, v| v.to_string(), &|_| "1".into());
    let e = fails(&[
        "gblup",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--covar",
        s(&p),
        "--covar-names",
        "extra",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert!(
        e.contains("c.csv") && e.contains("covariate 'extra' is constant"),
        "{e}"
    );
}

#[test]
fn negative_or_nan_penalties_are_refused_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    for (bad, key) in [
        ("l2 = -0.1", "l2 = -0.1"),
        ("l2 = nan", "l2 = NaN"),
        ("l1 = -1.0\nl2 = 0.001", "l1 = -1"),
    ] {
        let cfg = dir.path().join("bad.toml");
        fs::write(&cfg, MLP.replace("l2 = 0.001", bad)).unwrap();
        let e = fails(&train_example_args(&cfg, &out, &[]));
        assert!(
            e.contains("layer 1 (dense)") && e.contains(key) && e.contains("≥ 0"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn empty_searches_repeats_and_folds_beyond_the_groups_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cnn1d-pez.toml");
    let search = dir.path().join("s.toml");
    fs::write(
        &search,
        format!(
            "base = \"{}\"\nmode = \"random\"\nsamples = 0\n[space]\nlr = [0.001, 0.0001]\n",
            base.display()
        ),
    )
    .unwrap();
    let cv = |extra: &[&str]| {
        let mut a = vec![
            "cv",
            "--geno",
            example_bed(),
            "--pheno",
            example_pheno(),
            "--trait",
            "trait",
            "--models",
            "gblup",
            "--out",
            s(&out),
        ];
        a.extend_from_slice(extra);
        fails(&a)
    };
    let e = cv(&["--search", s(&search)]);
    assert!(e.contains("s.toml") && e.contains("samples = 0"), "{e}");
    let e = cv(&["--repeats", "0"]);
    assert!(e.contains("--repeats 0"), "{e}");
    let p = pheno_with(dir.path(), "g.csv", &|_, v| v.to_string(), &|k| {
        format!("fam{}", k % 4)
    });
    let e = fails(&[
        "cv",
        "--geno",
        example_bed(),
        "--pheno",
        s(&p),
        "--trait",
        "trait",
        "--models",
        "gblup",
        "--groups",
        "extra",
        "--folds",
        "9",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("--folds 9: there are only 4 groups"), "{e}");
}

#[test]
fn predict_never_writes_over_its_genotypes() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of the example fileset, and a GBLUP model of it.
    for e in ["bed", "bim", "fam"] {
        fs::copy(
            example_bed().replace(".bed", &format!(".{e}")),
            dir.path().join(format!("g.{e}")),
        )
        .unwrap();
    }
    let bed = dir.path().join("g.bed");
    let m = dir.path().join("m");
    crate::common::ok(&[
        "gblup",
        "--geno",
        s(&bed),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--out",
        s(&m),
    ]);
    let before = fs::read(&bed).unwrap();
    for out in [
        bed.clone(),
        dir.path().join("g.fam"),
        dir.path().join("sub/../g.bim"),
    ] {
        if let Some(d) = out.parent() {
            fs::create_dir_all(d).unwrap();
        }
        let e = fails(&[
            "predict",
            "--model",
            s(&m),
            "--geno",
            s(&bed),
            "--out",
            s(&out),
        ]);
        assert!(e.contains("would be overwritten"), "{e}");
    }
    assert_eq!(fs::read(&bed).unwrap(), before);
}

#[test]
fn qc_that_removes_everything_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("g.csv");
    fs::write(&g, "id,m1,m2,m3\na,0,0,NA\nb,0,1,0\nc,0,0,0\nd,1,0,0\n").unwrap();
    let out = dir.path().join("qc");
    let e = fails(&["qc", "--geno", s(&g), "--maf", "0.3", "--out", s(&out)]);
    assert!(
        e.contains("g.csv") && e.contains("remove every marker") && e.contains("3 by --maf"),
        "{e}"
    );
    // Every individual misses a call: --mind 0 removes them all.
    let g2 = dir.path().join("g2.csv");
    fs::write(
        &g2,
        "id,m1,m2
a,0,NA
b,NA,1
c,1,NA
",
    )
    .unwrap();
    let e = fails(&["qc", "--geno", s(&g2), "--mind", "0", "--out", s(&out)]);
    assert!(
        e.contains("remove every individual") && e.contains("3 of 3 individuals"),
        "{e}"
    );
    assert!(!out.exists(), "a failed qc left {}", out.display());
}

/// Rewrites one F32 tensor of a safetensors file through `f` (its shape
/// follows the new length), keeping the others.
fn rewrite_tensor(path: &Path, name: &str, f: &dyn Fn(Vec<f32>) -> Vec<f32>) {
    let bytes = fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out_header = serde_json::Map::new();
    let mut out_data = Vec::new();
    let mut names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    names.sort_by_key(|k| header[*k]["data_offsets"][0].as_u64().unwrap());
    for k in names {
        let t = &header[k];
        let (a, b) = (
            t["data_offsets"][0].as_u64().unwrap() as usize,
            t["data_offsets"][1].as_u64().unwrap() as usize,
        );
        let mut v: Vec<f32> = data[a..b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let mut shape = t["shape"].clone();
        if k == name {
            let len = v.len();
            v = f(v);
            if v.len() != len {
                shape = serde_json::json!([v.len()]);
            }
        }
        let start = out_data.len();
        out_data.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        out_header.insert(
            k.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, out_data.len()]}),
        );
    }
    let h = serde_json::to_vec(&out_header).unwrap();
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend(h);
    file.extend(out_data);
    fs::write(path, file).unwrap();
}

#[test]
fn saved_models_are_checked_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let gb = dir.path().join("gblup");
    crate::common::ok(&[
        "gblup",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--out",
        s(&gb),
    ]);
    let cfg = dir.path().join("m.toml");
    fs::write(&cfg, MLP).unwrap();
    let net = dir.path().join("net");
    crate::common::ok(&train_example_args(&cfg, &net, &[]));
    let p = dir.path().join("p.csv");
    let predict = |m: &Path| {
        fails(&[
            "predict",
            "--model",
            s(m),
            "--geno",
            example_bed(),
            "--out",
            s(&p),
        ])
    };
    let copy = |src: &Path, name: &str| -> PathBuf {
        let d = dir.path().join(name);
        fs::create_dir_all(&d).unwrap();
        for f in ["model.toml", "model.safetensors"] {
            fs::copy(src.join(f), d.join(f)).unwrap();
        }
        d
    };
    // A newer version is not read as this one.
    let m = copy(&net, "v2");
    let t = fs::read_to_string(m.join("model.toml")).unwrap();
    fs::write(
        m.join("model.toml"),
        t.replacen("version = 1", "version = 2", 1),
    )
    .unwrap();
    let e = predict(&m);
    assert!(
        e.contains("model.toml") && e.contains("version = 2") && e.contains("newer"),
        "{e}"
    );
    // Marker arrays of unequal length.
    let m = copy(&net, "ragged");
    let t = fs::read_to_string(m.join("model.toml")).unwrap();
    let a1 = t.lines().find(|l| l.starts_with("a1 = [")).unwrap();
    let short = format!("a1 = [{}", &a1[a1.find(", ").unwrap() + 2..]);
    fs::write(m.join("model.toml"), t.replacen(a1, &short, 1)).unwrap();
    let e = predict(&m);
    assert!(e.contains("[markers] has 3000 IDs but 2999 a1"), "{e}");
    // A short input.sd, short SNP-BLUP effects, a NaN weight.
    for (src, name, tensor, f, want) in [
        (
            &net,
            "sd",
            "input.sd",
            &(|mut v: Vec<f32>| {
                v.pop();
                v
            }) as &dyn Fn(Vec<f32>) -> Vec<f32>,
            "input.sd has 2999 values for 3000 markers",
        ),
        (
            &gb,
            "effects",
            "snp.effects",
            &|mut v: Vec<f32>| {
                v.truncate(10);
                v
            },
            "snp.effects has 10 values for 3000 markers",
        ),
        (
            &net,
            "nan",
            "layers.1.weight",
            &|mut v: Vec<f32>| {
                v[5] = f32::NAN;
                v
            },
            "tensor 'layers.1.weight' holds NaN at index 5",
        ),
    ] {
        let m = copy(src, name);
        rewrite_tensor(&m.join("model.safetensors"), tensor, f);
        let e = predict(&m);
        assert!(
            e.contains("model.safetensors") && e.contains(want),
            "{name}: {e}"
        );
    }
    assert!(!p.exists());
}

#[test]
fn a_missing_cifar_batch_is_named_not_skipped_in_silence() {
    let dir = tempfile::tempdir().unwrap();
    let rec: Vec<u8> = std::iter::once(3u8)
        .chain(std::iter::repeat_n(7u8, 3072))
        .collect();
    for name in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_4.bin",
        "test_batch.bin",
    ] {
        fs::write(dir.path().join(name), &rec).unwrap();
    }
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/vgg-small.toml");
    let out = crate::common::run(&[
        "image",
        "train",
        "--dataset",
        "cifar10",
        "--data-dir",
        s(dir.path()),
        "--model",
        s(&cfg),
        "--epochs",
        "1",
        "--out",
        s(&dir.path().join("o")),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reading 3 of the 5 CIFAR-10 training batches; data_batch_3.bin, data_batch_5.bin missing"),
        "{err}"
    );
}

#[test]
fn a_fold_file_must_assign_every_individual_once_and_name_no_stranger() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = fs::read_to_string(example_pheno())
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    let lines: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| format!("{id},1,{}", k % 3 + 1))
        .collect();
    let run = |name: &str, body: &[String]| {
        let f = dir.path().join(name);
        fs::write(&f, format!("id,repeat,fold\n{}\n", body.join("\n"))).unwrap();
        fails(&[
            "cv",
            "--geno",
            example_bed(),
            "--pheno",
            example_pheno(),
            "--trait",
            "trait",
            "--models",
            "gblup",
            "--fold-file",
            s(&f),
            "--out",
            s(&dir.path().join("o")),
        ])
    };
    let e = run("left.csv", &lines[1..]);
    assert!(
        e.contains("left.csv")
            && e.contains("1 phenotyped individuals are in no fold of repeat 1")
            && e.contains(&ids[0]),
        "{e}"
    );
    let mut stranger = lines.clone();
    stranger.insert(5, "nobody,1,2".into());
    let e = run("stranger.csv", &stranger);
    assert!(
        e.contains("stranger.csv, line 7") && e.contains("'nobody' is not a genotyped individual"),
        "{e}"
    );
    let mut twice = lines.clone();
    twice.push(format!("{},1,3", ids[0]));
    let e = run("twice.csv", &twice);
    assert!(
        e.contains(&format!("twice.csv, line {}", lines.len() + 2))
            && e.contains("is in fold 3 of repeat 1, but line 2 put it in fold 1"),
        "{e}"
    );
    // Found by the fuzzer: a fold numbered past a gap (here 1, 2 and 9) left
    // six empty folds, whose test sets cv would score as NaN.
    let mut gap = lines.clone();
    gap[0] = format!("{},1,9", ids[0]);
    let e = run("gap.csv", &gap);
    assert!(
        e.contains("gap.csv")
            && e.contains("fold 4 of repeat 1 has no individual, but fold 9 does"),
        "{e}"
    );
    let one: Vec<String> = ids.iter().map(|id| format!("{id},1,1")).collect();
    let e = run("one.csv", &one);
    assert!(
        e.contains("one.csv") && e.contains("needs at least 2 folds"),
        "{e}"
    );
}

#[test]
fn convert_refuses_ids_that_plink_files_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("g.csv");
    fs::write(&g, "id,m1,m2\nline 1,0,1\nline2,2,1\n").unwrap();
    let out = dir.path().join("out.bed");
    let e = fails(&["convert", "--geno", s(&g), "--out", s(&out)]);
    assert!(
        e.contains("out.fam")
            && e.contains("family ID 'line 1' of individual 1")
            && e.contains("white space"),
        "{e}"
    );
    assert!(!out.exists() && !dir.path().join("out.fam").exists());
    // The same file converts to CSV, which can hold it, and back.
    crate::common::ok(&[
        "convert",
        "--geno",
        s(&g),
        "--out",
        s(&dir.path().join("copy.csv")),
    ]);
}

#[test]
fn genotypes_without_a_polymorphic_marker_are_refused_by_gblup() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.csv");
    fs::write(&p, "id,y\na,1.0\nb,2.0\nc,0.5\nd,1.5\n").unwrap();
    for (name, rows) in [
        ("mono", ["2,0", "2,0", "2,0", "2,0"]),
        ("het", ["1,1", "1,1", "1,1", "1,1"]),
        ("missing", ["NA,2", "NA,2", "NA,2", "NA,2"]),
    ] {
        let g = dir.path().join(format!("{name}.csv"));
        let body: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .zip(rows)
            .map(|(i, r)| format!("{i},{r}"))
            .collect();
        fs::write(&g, format!("id,m1,m2\n{}\n", body.join("\n"))).unwrap();
        let e = fails(&[
            "gblup",
            "--geno",
            s(&g),
            "--pheno",
            s(&p),
            "--trait",
            "y",
            "--out",
            s(&dir.path().join("o")),
        ]);
        assert!(e.contains("none of the 2 markers varies"), "{name}: {e}");
    }
    // One monomorphic marker among others is allowed, and counted.
    let g = dir.path().join("some.csv");
    fs::write(&g, "id,m1,m2,m3\na,0,0,2\nb,1,0,0\nc,2,0,1\nd,0,0,1\n").unwrap();
    let out = crate::common::ok(&[
        "gblup",
        "--geno",
        s(&g),
        "--pheno",
        s(&p),
        "--trait",
        "y",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert!(out.contains("3 (1 monomorphic or uncalled"), "{out}");
}

#[test]
fn io_errors_say_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.csv");
    let e = fails(&[
        "gblup",
        "--geno",
        example_bed(),
        "--pheno",
        s(&missing),
        "--trait",
        "trait",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert!(e.contains("nope.csv"), "{e}");
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
}

#[test]
fn covariate_and_group_columns_are_not_called_traits() {
    let dir = tempfile::tempdir().unwrap();
    let p = pheno_with(dir.path(), "c.csv", &|_, v| v.to_string(), &|k| {
        if k == 3 {
            "x".into()
        } else {
            format!("{k}")
        }
    });
    let out = dir.path().join("o");
    let e = fails(&[
        "gblup",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--covar",
        s(&p),
        "--covar-names",
        "extra",
        "--out",
        s(&out),
    ]);
    assert!(
        e.contains("covariate 'extra': expected a number") && !e.contains("trait 'extra'"),
        "{e}"
    );
    let e = fails(&[
        "gblup",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--covar",
        s(&p),
        "--covar-names",
        "sex",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("there is no covariate 'sex'"), "{e}");
    let e = fails(&[
        "cv",
        "--geno",
        example_bed(),
        "--pheno",
        s(&p),
        "--trait",
        "trait",
        "--models",
        "gblup",
        "--groups",
        "family",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("there is no group column 'family'"), "{e}");
}

#[test]
fn a_run_refused_on_its_inputs_leaves_no_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    fs::write(&cfg, MLP).unwrap();
    let out = dir.path().join("out");
    let bad = ["--trait", "nosuch"];
    let common = [
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--out",
        s(&out),
    ];
    for cmd in [
        vec!["gblup"],
        vec!["gblup", "--trait", "trait,nosuch"],
        vec!["train", "--model", s(&cfg)],
        vec!["cv", "--models", "gblup"],
    ] {
        let mut args = cmd.clone();
        args.extend_from_slice(&common);
        if !cmd.contains(&"--trait") {
            args.extend_from_slice(&bad);
        }
        let e = fails(&args);
        assert!(e.contains("nosuch"), "{cmd:?}: {e}");
        assert!(!out.exists(), "{cmd:?} left {}", out.display());
    }
    let e = fails(&["cv", "merge", "--out", s(&out), s(&dir.path().join("none"))]);
    assert!(e.contains("none"), "{e}");
    assert!(!out.exists(), "cv merge left {}", out.display());
}

#[test]
fn a_layer_too_large_to_allocate_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("huge.toml");
    fs::write(&cfg, MLP.replace("units = 4", "units = 1099511627776")).unwrap();
    let e = fails(&train_example_args(&cfg, &dir.path().join("o"), &[]));
    assert!(
        e.contains("layer 1 (dense)")
            && e.contains("1099511627776 × 3000")
            && e.contains("most a tensor may hold"),
        "{e}"
    );
    let cfg2 = dir.path().join("wide.toml");
    fs::write(&cfg2, "name = \"w\"\n[[layers]]\ntype = \"conv1d\"\nfilters = 4000000000\nkernel = 3\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 1\n").unwrap();
    let e = fails(&train_example_args(&cfg2, &dir.path().join("o"), &[]));
    assert!(
        e.contains("layer 0 (conv1d)") && e.contains("most a tensor may hold"),
        "{e}"
    );
}

#[test]
fn calls_coded_0_1_are_named_and_inbred_coding_refuses_a_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.csv");
    fs::write(&p, "id,y\na,1.0\nb,2.0\nc,0.5\nd,1.5\n").unwrap();
    let g = dir.path().join("g01.csv");
    fs::write(&g, "id,m1,m2,m3\na,0,1,1\nb,1,1,0\nc,1,0,1\nd,0,0,1\n").unwrap();
    let o = dir.path().join("o");
    let run = |geno: &Path, extra: &[&str]| {
        let mut args = vec![
            "gblup",
            "--geno",
            s(geno),
            "--pheno",
            s(&p),
            "--trait",
            "y",
            "--out",
            s(&o),
        ];
        args.extend_from_slice(extra);
        crate::common::run(&args)
    };
    let out = run(&g, &[]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("every call is 0 or 1") && err.contains("--coding inbred"),
        "{err}"
    );
    let out = run(&g, &["--coding", "inbred"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("read as the two homozygotes"));
    let g2 = dir.path().join("g012.csv");
    fs::write(&g2, "id,m1,m2\na,0,1\nb,2,1\nc,1,0\nd,0,0\n").unwrap();
    let e = fails(&[
        "gblup",
        "--geno",
        s(&g2),
        "--pheno",
        s(&p),
        "--trait",
        "y",
        "--coding",
        "inbred",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert!(
        e.contains("g012.csv") && e.contains("individual b has 2 copies of A1 at marker m1"),
        "{e}"
    );
}

#[test]
fn predict_counts_every_marker_matched_by_id_only() {
    // A model trained on the .bed (real alleles), asked to predict from the
    // same genotypes as a CSV matrix (no alleles): all 3000 markers are
    // matched by ID alone, whichever letter the model's A1 happens to be.
    let dir = tempfile::tempdir().unwrap();
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/mlp.toml");
    let model = dir.path().join("m");
    crate::common::ok(&train_example_args(&cfg, &model, &["--epochs", "1"]));
    let csv = dir.path().join("g.csv");
    crate::common::ok(&["convert", "--geno", example_bed(), "--out", s(&csv)]);
    let out = crate::common::ok(&[
        "predict",
        "--model",
        s(&model),
        "--geno",
        s(&csv),
        "--out",
        s(&dir.path().join("p.csv")),
    ]);
    assert!(out.contains("3000 matched by ID only"), "{out}");
    // From the .bed itself, nothing is matched by ID only.
    let out = crate::common::ok(&[
        "predict",
        "--model",
        s(&model),
        "--geno",
        example_bed(),
        "--out",
        s(&dir.path().join("q.csv")),
    ]);
    assert!(!out.contains("by ID only"), "{out}");
}

#[test]
fn ids_that_are_not_utf8_and_numeric_id_columns_get_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    // Two IDs that differ only in bytes that are not UTF-8: refused as not
    // text, not called duplicates.
    let g = dir.path().join("bad.csv");
    fs::write(&g, b"id,m1,m2\na\xff,0,1\na\xfe,2,1\n").unwrap();
    let e = fails(&[
        "convert",
        "--geno",
        s(&g),
        "--out",
        s(&dir.path().join("o.csv")),
    ]);
    assert!(
        e.contains("bad.csv, line 2, column 1")
            && e.contains("not valid UTF-8")
            && !e.contains("duplicate"),
        "{e}"
    );
    // A headerless matrix whose first column holds IDs 1, 2, 3, …: the
    // first rows look like dosages, so the error says what to give.
    let n = dir.path().join("num.csv");
    fs::write(&n, "1,0,1\n2,2,1\n3,1,0\n").unwrap();
    let e = fails(&[
        "convert",
        "--geno",
        s(&n),
        "--out",
        s(&dir.path().join("p.csv")),
    ]);
    assert!(
        e.contains("num.csv, line 3, column 1") && e.contains("--geno-ids yes"),
        "{e}"
    );
}

#[test]
fn explain_and_image_runs_that_fail_leave_no_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = |p: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join(p);
    // A model to explain, then genotypes that are not there.
    let model = dir.path().join("m");
    crate::common::ok(&train_example_args(
        &root("configs/mlp.toml"),
        &model,
        &["--epochs", "1"],
    ));
    let out = dir.path().join("ex");
    let e = fails(&[
        "explain",
        "--model",
        s(&model),
        "--geno",
        s(&dir.path().join("none.bed")),
        "--out",
        s(&out),
    ]);
    assert!(e.contains("none.bed"), "{e}");
    assert!(!out.exists(), "explain left {}", out.display());
    // An image run refused after its data were read.
    let out = dir.path().join("im");
    let e = fails(&[
        "image",
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        s(&root("data/mnist")),
        "--model",
        s(&root("configs/lenet5.toml")),
        "--train-limit",
        "0",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("--train-limit"), "{e}");
    assert!(!out.exists(), "image train left {}", out.display());
}
