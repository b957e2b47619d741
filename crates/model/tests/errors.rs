//! The model crate's errors carry where the fault is (the spec's file, the
//! layer, the key): these tests match the variants and their fields, not
//! the wording.

use model::error::LayerAt;
use model::{ModelError, ModelSpec};

fn spec_fields(e: ModelError) -> (String, Option<LayerAt>, Option<String>) {
    match e {
        ModelError::Spec {
            origin, layer, key, ..
        } => (origin, layer, key),
        other => panic!("expected a spec error, got {other:?}"),
    }
}

#[test]
fn a_bad_layer_names_the_file_the_layer_and_its_kind() {
    let text = "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunit = 3\n";
    let e = ModelSpec::from_toml(text, "m", "configs/m.toml").unwrap_err();
    let (origin, layer, _) = spec_fields(e);
    assert_eq!(origin, "configs/m.toml");
    assert_eq!(
        layer,
        Some(LayerAt {
            at: "1".into(),
            kind: "dense".into()
        })
    );
}

#[test]
fn a_bad_training_setting_names_the_file_and_the_key() {
    let text = "[[layers]]\ntype = \"dense\"\nunits = 1\n[training]\nepochs = 0\n";
    let (origin, layer, key) = spec_fields(ModelSpec::from_toml(text, "m", "m.toml").unwrap_err());
    assert_eq!(
        (origin.as_str(), layer, key.as_deref()),
        ("m.toml", None, Some("training.epochs"))
    );
    let text = "[[layers]]\ntype = \"dense\"\nunits = 1\n[training]\nlr = -1.0\n";
    let (_, _, key) = spec_fields(ModelSpec::from_toml(text, "m", "m.toml").unwrap_err());
    assert_eq!(key.as_deref(), Some("training.lr"));
}

#[test]
fn a_layer_that_cannot_take_its_input_names_the_config_file() {
    // A dense layer straight after a convolution needs a flat input.
    let text = "[[layers]]\ntype = \"conv1d\"\nfilters = 2\nkernel = 3\n[[layers]]\ntype = \"dense\"\nunits = 1\n";
    let spec = ModelSpec::from_toml(text, "m", "configs/bad.toml").unwrap();
    let Err(e) = model::build_network(nn::Native::new(), &spec, 20, 0, 1) else {
        panic!("the network was built");
    };
    let (origin, layer, _) = spec_fields(e);
    assert_eq!(origin, "configs/bad.toml");
    assert_eq!(
        layer.map(|l| (l.at, l.kind)),
        Some(("1".into(), "dense".into()))
    );
}

#[test]
fn search_spec_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("base.toml"),
        "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 1\n",
    )
    .unwrap();
    let p = dir.path().join("s.toml");
    std::fs::write(&p, "base = \"base.toml\"\n[space]\nwidth = [1, 2]\n").unwrap();
    let (origin, _, key) = spec_fields(model::SearchSpec::from_file(&p).unwrap_err());
    assert!(origin.ends_with("s.toml"), "{origin}");
    assert_eq!(key.as_deref(), Some("space.width"));
    std::fs::write(
        &p,
        "base = \"base.toml\"\ninner_folds = 1\n[space]\nlr = [0.1]\n",
    )
    .unwrap();
    let (_, _, key) = spec_fields(model::SearchSpec::from_file(&p).unwrap_err());
    assert_eq!(key.as_deref(), Some("inner_folds"));
}

#[test]
fn an_unreadable_checkpoint_is_a_checkpoint_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("checkpoint.safetensors");
    std::fs::write(&p, b"not a safetensors file").unwrap();
    match model::Checkpoint::read(&p) {
        Err(ModelError::Checkpoint { path, .. }) => {
            assert!(path.ends_with("checkpoint.safetensors"))
        }
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

/// Genotypes of `n` individuals over markers with these IDs and alleles.
fn genotypes(n: usize, markers: &[(&str, &str, &str)]) -> geno::PackedGenotypes {
    let individuals = (0..n)
        .map(|i| geno::Individual::from_id(format!("i{i}")))
        .collect();
    let markers = markers
        .iter()
        .map(|&(id, a1, a2)| geno::Marker {
            a1: a1.into(),
            a2: a2.into(),
            ..geno::Marker::from_id(id)
        })
        .collect();
    geno::PackedGenotypes::from_fn(individuals, markers, |i, j| Some(((i + j) % 3) as u8))
}

#[test]
fn markers_that_do_not_match_the_model_are_data_errors_with_the_markers() {
    use model::DataError;
    let model_markers = genotypes(4, &[("m1", "C", "T"), ("m2", "A", "G"), ("m3", "G", "T")])
        .markers()
        .to_vec();
    // m3 is missing from the file.
    let g = genotypes(4, &[("m1", "C", "T"), ("m2", "A", "G")]);
    match model::match_markers(&model_markers, &g, "new.bed") {
        Err(ModelError::Data(DataError::MissingMarkers {
            file,
            missing,
            total,
        })) => assert_eq!(
            (file.as_str(), missing, total),
            ("new.bed", vec!["m3".to_string()], 3)
        ),
        other => panic!("expected missing markers, got {other:?}"),
    }
    // m2's alleles match neither way; m1's are swapped, which is allowed.
    let g = genotypes(4, &[("m1", "T", "C"), ("m2", "C", "T"), ("m3", "G", "T")]);
    match model::match_markers(&model_markers, &g, "new.bed") {
        Err(ModelError::Data(DataError::Alleles { file, mismatched })) => {
            assert_eq!(file, "new.bed");
            assert_eq!(mismatched.len(), 1);
            assert!(mismatched[0].starts_with("m2 "), "{mismatched:?}");
        }
        other => panic!("expected an allele mismatch, got {other:?}"),
    }
}

#[test]
fn training_data_that_cannot_be_learned_are_data_errors_with_the_values() {
    use model::{DataError, TraitData};
    let spec = ModelSpec::from_toml(
        "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 1\n[training]\nepochs = 1\nbatch_size = 2\nval_fraction = 0.0\n",
        "m",
        "m.toml",
    )
    .unwrap();
    let g = genotypes(4, &[("m1", "C", "T"), ("m2", "A", "G")]);
    let fit = |spec: &ModelSpec, y: &[f64]| {
        model::fit(
            nn::Native::new(),
            spec,
            &g,
            &TraitData::single("t", y),
            &[0, 1, 2, 3],
            1,
            &mut |_| {},
        )
        .map(|_| ())
    };
    // One record among the training individuals.
    let nan = f64::NAN;
    match fit(&spec, &[1.0, nan, nan, nan]) {
        Err(ModelError::Data(DataError::TooFew { found, needed, .. })) => {
            assert_eq!((found, needed), (1, 2))
        }
        other => panic!("expected too few records, got {other:?}"),
    }
    // A trait of the wrong length.
    match fit(&spec, &[1.0, 2.0, 3.0]) {
        Err(ModelError::Data(DataError::TraitLength {
            trait_name,
            found,
            expected,
        })) => assert_eq!((trait_name.as_str(), found, expected), ("t", 3, 4)),
        other => panic!("expected a trait of the wrong length, got {other:?}"),
    }
    // A binary loss on a trait that is not 0/1.
    let mut bce = spec.clone();
    bce.training.loss = nn::Loss::BinaryCrossEntropy;
    match fit(&bce, &[0.0, 1.0, 0.5, 1.0]) {
        Err(ModelError::Data(DataError::Target {
            loss,
            individual,
            value,
            ..
        })) => assert_eq!(
            (loss, individual.as_str(), value),
            ("binary_cross_entropy", "individual i2", 0.5)
        ),
        other => panic!("expected a bad target, got {other:?}"),
    }
}

#[test]
fn transfers_that_cannot_be_done_are_transfer_errors_with_the_paths() {
    use model::transfer::{check_phases, resolve};
    use model::{LayerSelection, Phase, TransferError};
    let spec = ModelSpec::from_toml(
        "[[layers]]\ntype = \"conv1d\"\nfilters = 2\nkernel = 3\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 1\n",
        "m",
        "m.toml",
    )
    .unwrap();
    let mut net = model::build_network(nn::Native::new(), &spec, 10, 0, 1).unwrap();
    let paths = LayerSelection::parse("0,7").unwrap();
    match resolve(&paths, &spec.layers, &net, "--freeze") {
        Err(ModelError::Transfer(TransferError::UnknownLayers { flag, unknown, .. })) => {
            assert_eq!(
                (flag.as_str(), unknown),
                ("--freeze", vec!["layers.7".to_string()])
            )
        }
        other => panic!("expected unknown layers, got {other:?}"),
    }
    // A dense-only network has no base.
    let flat = ModelSpec::from_toml(
        "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 1\n",
        "m",
        "m.toml",
    )
    .unwrap();
    let flat_net = model::build_network(nn::Native::new(), &flat, 10, 0, 1).unwrap();
    match resolve(&LayerSelection::Base, &flat.layers, &flat_net, "--freeze") {
        Err(ModelError::Transfer(TransferError::NoBase { first, .. })) => {
            assert_eq!(first, "flatten")
        }
        other => panic!("expected no base, got {other:?}"),
    }
    // Freezing every layer in the second phase.
    let all: Vec<String> = ["layers.0", "layers.2"].map(String::from).to_vec();
    let phases = [
        Phase {
            frozen: vec!["layers.0".into()],
            epochs: 1,
            lr: 0.01,
        },
        Phase {
            frozen: all.clone(),
            epochs: 1,
            lr: 0.01,
        },
    ];
    match check_phases(&mut net, &phases) {
        Err(ModelError::Transfer(TransferError::NothingToTrain { phase, frozen })) => {
            assert_eq!((phase, frozen), (2, all))
        }
        other => panic!("expected nothing to train, got {other:?}"),
    }
}
