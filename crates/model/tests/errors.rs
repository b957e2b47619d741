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
