//! Hyperparameter search specs: a base model and ranges of values, tried as
//! a grid or as random draws. Cross-validation chooses one candidate per
//! outer fold by inner folds on the training part (nested CV).

use std::collections::BTreeMap;
use std::path::Path;

use nn::LayerSpec;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::spec::ModelSpec;

/// The hyperparameters a search may vary.
pub const KEYS: [&str; 9] = [
    "filters",
    "kernel",
    "stride",
    "units",
    "dropout",
    "lr",
    "epochs",
    "batch_size",
    "l2",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    base: String,
    #[serde(default = "grid")]
    mode: String,
    #[serde(default = "six")]
    samples: usize,
    #[serde(default = "three")]
    inner_folds: usize,
    #[serde(default)]
    seed: u64,
    space: BTreeMap<String, Vec<f64>>,
}

fn grid() -> String {
    "grid".into()
}
fn six() -> usize {
    6
}
fn three() -> usize {
    3
}

/// One point of the search space.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate(pub Vec<(String, f64)>);

impl Candidate {
    /// `filters=32 kernel=3 lr=0.001`.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The base model with this candidate's values: `filters`, `kernel`
    /// and `stride` set the first convolution, `units` the first dense layer
    /// that is not the output, `dropout` every dropout layer, `l2` every
    /// weighted layer, and `lr`, `epochs`, `batch_size` the training.
    pub fn apply(&self, base: &ModelSpec) -> Result<ModelSpec> {
        let mut spec = base.clone();
        let n_layers = spec.layers.len();
        for (key, v) in &self.0 {
            let int = || -> Result<usize> {
                if *v >= 1.0 && v.fract() == 0.0 {
                    Ok(*v as usize)
                } else {
                    Err(ModelError::spec_key(
                        "",
                        format!("space.{key}"),
                        format!("search: {key} = {v} must be a whole number ≥ 1"),
                    ))
                }
            };
            let mut applied = false;
            // Layers inside containers count too, in the order of the spec.
            let mut each = |f: &mut dyn FnMut(&mut LayerSpec, bool) -> Result<bool>| -> Result<()> {
                let mut err = None;
                for (i, top) in spec.layers.iter_mut().enumerate() {
                    // The last top-level layer is the output (the walk visits it first).
                    let mut is_top = i + 1 == n_layers;
                    top.walk_mut(&mut |l| {
                        let is_output = std::mem::take(&mut is_top);
                        if err.is_none() {
                            match f(l, is_output) {
                                Ok(true) => applied = true,
                                Ok(false) => {}
                                Err(e) => err = Some(e),
                            }
                        }
                    });
                }
                err.map_or(Ok(()), Err)
            };
            match key.as_str() {
                "filters" | "kernel" | "stride" => {
                    let mut done = false;
                    each(&mut |l, _| {
                        let (filters, kernel, stride) = match l {
                            LayerSpec::Conv1d(c) | LayerSpec::Conv2d(c) => {
                                (&mut c.filters, &mut c.kernel, &mut c.stride)
                            }
                            LayerSpec::SeparableConv1d(c) | LayerSpec::SeparableConv2d(c) => {
                                (&mut c.filters, &mut c.kernel, &mut c.stride)
                            }
                            _ => return Ok(false),
                        };
                        if std::mem::replace(&mut done, true) {
                            return Ok(false);
                        }
                        match key.as_str() {
                            "filters" => *filters = int()?,
                            "kernel" => *kernel = nn::spec::Size::One(int()?),
                            _ => *stride = nn::spec::Size::One(int()?),
                        }
                        Ok(true)
                    })?;
                }
                "units" => {
                    let mut done = false;
                    each(&mut |l, is_output| match l {
                        LayerSpec::Dense(d) if !is_output && !done => {
                            d.units = int()?;
                            done = true;
                            Ok(true)
                        }
                        _ => Ok(false),
                    })?;
                }
                "dropout" => {
                    each(&mut |l, _| match l {
                        LayerSpec::Dropout(d) => {
                            d.rate = *v as f32;
                            Ok(true)
                        }
                        _ => Ok(false),
                    })?;
                }
                "l2" => {
                    each(&mut |l, _| {
                        match l {
                            LayerSpec::Conv1d(c) | LayerSpec::Conv2d(c) => c.l2 = *v as f32,
                            LayerSpec::SeparableConv1d(c) | LayerSpec::SeparableConv2d(c) => {
                                c.l2 = *v as f32
                            }
                            LayerSpec::Dense(d) => d.l2 = *v as f32,
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                }
                "lr" => {
                    spec.training.lr = *v as f32;
                    applied = true;
                }
                "epochs" => {
                    spec.training.epochs = int()?;
                    applied = true;
                }
                "batch_size" => {
                    spec.training.batch_size = int()?;
                    applied = true;
                }
                _ => {}
            }
            if !applied {
                return Err(ModelError::spec_key(
                    "",
                    format!("space.{key}"),
                    format!(
                        "search: the model '{}' has no layer that '{key}' applies to",
                        base.name
                    ),
                ));
            }
        }
        spec.training.validate()?;
        Ok(spec)
    }
}

/// A hyperparameter search.
/// The most combinations a search space may hold.
pub const MAX_GRID: usize = 100_000;

#[derive(Clone, Debug)]
pub struct SearchSpec {
    pub name: String,
    pub base: ModelSpec,
    pub candidates: Vec<Candidate>,
    pub inner_folds: usize,
    pub seed: u64,
}

impl SearchSpec {
    /// Reads a search spec; `base` is relative to the spec's folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let text = geno::textio::read_text(path).map_err(|e| ModelError::Io(origin.clone(), e))?;
        let raw: RawSearch =
            toml::from_str(&text).map_err(|e| ModelError::spec(&origin, e.to_string()))?;
        let base_path = path.parent().unwrap_or(Path::new(".")).join(&raw.base);
        let base = ModelSpec::from_file(&base_path)?;
        for (k, v) in &raw.space {
            if !KEYS.contains(&k.as_str()) {
                return Err(ModelError::spec_key(
                    &origin,
                    format!("space.{k}"),
                    format!(
                        "unknown search key '{k}'; expected one of {}",
                        KEYS.join(", ")
                    ),
                ));
            }
            if v.is_empty() {
                return Err(ModelError::spec_key(
                    &origin,
                    format!("space.{k}"),
                    format!("space.{k} lists no values"),
                ));
            }
        }
        if raw.inner_folds < 2 {
            return Err(ModelError::spec_key(
                &origin,
                "inner_folds",
                "inner_folds must be at least 2",
            ));
        }
        // The grid: every combination, in a fixed order. Its size is
        // checked first: ten keys of ten values would be 10^10 candidates.
        let size = raw
            .space
            .values()
            .try_fold(1usize, |n, v| n.checked_mul(v.len()))
            .filter(|&n| n <= MAX_GRID);
        if size.is_none() {
            return Err(ModelError::spec_key(
                &origin,
                "space",
                format!("the space has more than {MAX_GRID} combinations; search fewer values, or fewer keys at once"),
            ));
        }
        let keys: Vec<&String> = raw.space.keys().collect();
        let mut grid: Vec<Candidate> = vec![Candidate(Vec::new())];
        for k in &keys {
            let mut next = Vec::new();
            for c in &grid {
                for v in &raw.space[*k] {
                    let mut c2 = c.clone();
                    c2.0.push(((*k).clone(), *v));
                    next.push(c2);
                }
            }
            grid = next;
        }
        let candidates = match raw.mode.as_str() {
            "grid" => grid,
            "random" => {
                if raw.samples == 0 {
                    return Err(ModelError::spec_key(
                        &origin,
                        "samples",
                        "samples = 0; a random search needs at least 1 sample",
                    ));
                }
                let mut rng = ChaCha8Rng::seed_from_u64(raw.seed);
                grid.shuffle(&mut rng);
                grid.truncate(raw.samples);
                grid
            }
            other => {
                return Err(ModelError::spec_key(
                    &origin,
                    "mode",
                    format!("mode = '{other}'; expected grid or random"),
                ))
            }
        };
        for c in &candidates {
            c.apply(&base).map_err(|e| e.within(&origin))?;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("search")
            .to_string();
        Ok(SearchSpec {
            name,
            base,
            candidates,
            inner_folds: raw.inner_folds,
            seed: raw.seed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[[layers]]\ntype = \"conv1d\"\nfilters = 4\nkernel = 3\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 8\n[[layers]]\ntype = \"dense\"\nunits = 1\n";

    fn spec(dir: &Path, name: &str, body: &str) -> Result<SearchSpec> {
        std::fs::write(dir.join("base.toml"), BASE).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, format!("base = \"base.toml\"\n{body}")).unwrap();
        SearchSpec::from_file(&p)
    }

    #[test]
    fn random_search_draws_distinct_candidates_of_the_grid_by_its_seed() {
        let dir = tempfile::tempdir().unwrap();
        let space = "[space]\nfilters = [8, 16, 32]\nlr = [0.01, 0.001]\n";
        let grid = spec(dir.path(), "g.toml", space).unwrap();
        assert_eq!(grid.candidates.len(), 6);
        let draw = |seed: u64| {
            let body = format!("mode = \"random\"\nsamples = 4\nseed = {seed}\n{space}");
            spec(dir.path(), "r.toml", &body).unwrap().candidates
        };
        let a = draw(1);
        assert_eq!(a.len(), 4);
        for c in &a {
            assert!(
                grid.candidates.contains(c),
                "{} is not in the grid",
                c.describe()
            );
            assert_eq!(a.iter().filter(|d| *d == c).count(), 1, "drawn twice");
        }
        assert_eq!(a, draw(1), "the same seed draws the same candidates");
        // Over a few seeds, the draws are not all the same subset.
        assert!((2..6).any(|s| draw(s) != a));
        // More samples than combinations gives the whole grid.
        let body = format!("mode = \"random\"\nsamples = 50\n{space}");
        assert_eq!(
            spec(dir.path(), "all.toml", &body)
                .unwrap()
                .candidates
                .len(),
            6
        );
    }

    #[test]
    fn a_space_too_large_to_list_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<String> = (1..=20).map(|k| format!("{}", k as f64 * 1e-4)).collect();
        let v = values.join(", ");
        let body = format!(
            "[space]\nlr = [{v}]\ndropout = [{v}]\nl2 = [{v}]\nunits = [{}]\n",
            (1..=20)
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let e = spec(dir.path(), "big.toml", &body).unwrap_err().to_string();
        assert!(e.contains("more than 100000 combinations"), "{e}");
    }
}
