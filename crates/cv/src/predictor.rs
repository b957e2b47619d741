//! One trait, [`Predictor`], for every model a cross-validation compares:
//! fit on a fold's training individuals, predict its test individuals (in
//! the spirit of linfa's `cross_validate` over any `Fit`). GBLUP and RKHS,
//! multi-trait GBLUP, a network spec (one output per trait, predictor
//! traits as inputs) and the nested hyperparameter search each implement it.

use std::path::PathBuf;

use eval::Folds;
use gblup::{Grm, KernelChoice};
use geno::PackedGenotypes;
use model::{ModelSpec, SearchSpec, TraitColumn, TraitData};
use nn::Backend;

use crate::error::{CvError, Result};

/// What a model sees of one fold.
pub struct FoldData<'a> {
    pub g: &'a PackedGenotypes,
    /// The GRM over every individual, when a model of the plan needs it.
    pub grm: Option<&'a Grm>,
    /// The traits predicted, over every individual: only the training
    /// individuals' records are there (the test individuals' are NaN).
    pub targets: Vec<TraitColumn<'a>>,
    /// The predictor traits (CV2), over every individual: the test
    /// individuals' records are kept.
    pub predictors: Vec<TraitColumn<'a>>,
    /// The training individuals (with a record of some target trait).
    pub train: &'a [usize],
    /// The individuals predicted.
    pub test: &'a [usize],
    /// The fit's seed (the run's, moved by repeat and fold).
    pub seed: u64,
    /// Where to keep the fitted model, when models are kept.
    pub save: Option<PathBuf>,
}

/// A fold's predictions: targets × test individuals, and a note for
/// `metrics.csv` (the h2 estimated, the epochs run, the configuration chosen).
pub struct FoldFit {
    pub predictions: Vec<Vec<f64>>,
    pub note: String,
}

/// A model of the comparison.
pub trait Predictor: Send + Sync {
    /// Its name in the tables (a config's file stem, `gblup`, …).
    fn name(&self) -> String;
    /// Whether it needs the GRM.
    fn needs_grm(&self) -> bool {
        false
    }
    /// Whether it uses the predictor traits (models that do not are given
    /// only the targets).
    fn uses_predictors(&self) -> bool {
        false
    }
    /// Fits on `d.train`, predicts `d.test`.
    fn fit_predict(&self, d: &FoldData) -> Result<FoldFit>;
}

/// Univariate GBLUP (VanRaden) or RKHS, one fit per target trait.
pub struct Gblup {
    pub kernel: KernelChoice,
}

impl Gblup {
    pub fn vanraden() -> Self {
        Gblup {
            kernel: KernelChoice::VanRaden,
        }
    }

    pub fn rkhs() -> Self {
        Gblup {
            kernel: KernelChoice::rkhs(),
        }
    }
}

fn grm<'a>(d: &FoldData<'a>) -> Result<&'a Grm> {
    d.grm
        .ok_or_else(|| CvError::Plan("the GRM was not computed".into()))
}

impl Predictor for Gblup {
    fn name(&self) -> String {
        match self.kernel {
            KernelChoice::VanRaden => "gblup".into(),
            KernelChoice::Rkhs { .. } => "rkhs".into(),
        }
    }

    fn needs_grm(&self) -> bool {
        true
    }

    fn fit_predict(&self, d: &FoldData) -> Result<FoldFit> {
        let grm = grm(d)?;
        let mut predictions = Vec::new();
        let mut notes = Vec::new();
        for t in &d.targets {
            let fit = gblup::fit(d.g, grm, t.values, &[], d.train, &self.kernel)?;
            let b0 = fit.reml.beta[0];
            if let (Some(dir), Some(eff), true) = (&d.save, &fit.snp_effects, d.targets.len() == 1)
            {
                let lm = model::LinearModel {
                    markers: d.g.markers().to_vec(),
                    center: fit.centers.clone(),
                    effects: eff.clone(),
                    intercept: b0,
                    trait_name: t.name.to_string(),
                    n_train: fit.train.len(),
                };
                model::save_linear(&lm, dir)?;
            }
            notes.push(match fit.theta {
                Some(th) => format!("h2={:.3};theta={th}", fit.reml.h2),
                None => format!("h2={:.3}", fit.reml.h2),
            });
            predictions.push(d.test.iter().map(|&i| b0 + fit.gebv[i]).collect());
        }
        Ok(FoldFit {
            predictions,
            note: notes.join(" "),
        })
    }
}

/// Multi-trait GBLUP over the targets and the predictor traits
/// ([`gblup::fit_multi`]): Vg and Ve by REML on the training records, then
/// each test individual's expected record given all the records it and the
/// others have: its genetic value, plus, in CV2, the residual its predictor
/// traits' records imply through Ve.
pub struct MultiGblup;

impl Predictor for MultiGblup {
    fn name(&self) -> String {
        "mtgblup".into()
    }

    fn needs_grm(&self) -> bool {
        true
    }

    fn uses_predictors(&self) -> bool {
        true
    }

    fn fit_predict(&self, d: &FoldData) -> Result<FoldFit> {
        let grm = grm(d)?;
        let y: Vec<Vec<f64>> = d
            .targets
            .iter()
            .chain(&d.predictors)
            .map(|t| t.values.to_vec())
            .collect();
        // The training individuals with any record of the traits modelled.
        let train: Vec<usize> = d
            .train
            .iter()
            .copied()
            .filter(|&i| y.iter().any(|t| !t[i].is_nan()))
            .collect();
        let fit = gblup::fit_multi(grm, &y, &train)?;
        // E[y | records]: in CV2 a test individual's records of correlated
        // traits predict its hidden one through Vg and Ve alike.
        let pred = fit.record_predictions();
        let rg = fit.mv.rg();
        let k = y.len();
        Ok(FoldFit {
            predictions: (0..d.targets.len())
                .map(|t| d.test.iter().map(|&i| pred[t][i]).collect())
                .collect(),
            note: format!(
                "h2={};rg={}",
                fit.mv
                    .h2()
                    .iter()
                    .map(|h| format!("{h:.3}"))
                    .collect::<Vec<_>>()
                    .join("/"),
                (0..k)
                    .flat_map(|a| (a + 1..k).map(move |b| (a, b)))
                    .map(|(a, b)| format!("{:.3}", rg[a * k + b]))
                    .collect::<Vec<_>>()
                    .join("/")
            ),
        })
    }
}

/// A network spec on a backend: one output per target trait, and the
/// predictor traits as input channels. `single` makes it a single-trait
/// network per target (no other trait, no predictor), the comparison a
/// multi-trait network needs.
pub struct NetworkModel<B: Backend> {
    pub backend: B,
    pub spec: ModelSpec,
    pub single: bool,
}

/// Trains `spec` (its output layer given one unit per target) on the
/// fold's training individuals and predicts its test ones: predictions,
/// epochs run and the best epoch.
#[allow(clippy::too_many_arguments)]
fn train_predict<B: Backend>(
    backend: &B,
    spec: &ModelSpec,
    d: &FoldData,
    targets: &[TraitColumn],
    predictors: &[TraitColumn],
    train: &[usize],
    test: &[usize],
    seed: u64,
    save: Option<&PathBuf>,
) -> Result<(Vec<Vec<f64>>, usize, usize)> {
    let mut spec = spec.clone();
    if targets.len() > 1 {
        spec.set_output_units(targets.len(), "--trait")?;
    }
    let data = TraitData {
        targets: targets.to_vec(),
        predictors: predictors.to_vec(),
    };
    let f = model::fit(backend.clone(), &spec, d.g, &data, train, seed, &mut |_| {})?;
    if let Some(dir) = save {
        model::save_network(&f, dir)?;
    }
    let map = model::InputMap::identity(d.g.n_markers());
    let pv: Vec<&[f64]> = predictors.iter().map(|c| c.values).collect();
    let p = f.predict_traits(d.g, test, &map, &pv)?;
    Ok((p, f.history.len(), f.best_epoch))
}

impl<B: Backend> Predictor for NetworkModel<B> {
    fn name(&self) -> String {
        if self.single {
            format!("{}-st", self.spec.name)
        } else {
            self.spec.name.clone()
        }
    }

    fn uses_predictors(&self) -> bool {
        !self.single
    }

    fn fit_predict(&self, d: &FoldData) -> Result<FoldFit> {
        if self.single && d.targets.len() > 1 {
            let mut predictions = Vec::new();
            let mut notes = Vec::new();
            for t in &d.targets {
                let (mut p, e, b) = train_predict(
                    &self.backend,
                    &self.spec,
                    d,
                    std::slice::from_ref(t),
                    &[],
                    d.train,
                    d.test,
                    d.seed,
                    None,
                )?;
                predictions.push(p.swap_remove(0));
                notes.push(format!("epochs={e};best={}", b + 1));
            }
            return Ok(FoldFit {
                predictions,
                note: notes.join(" "),
            });
        }
        let predictors: &[TraitColumn] = if self.single { &[] } else { &d.predictors };
        let (predictions, e, b) = train_predict(
            &self.backend,
            &self.spec,
            d,
            &d.targets,
            predictors,
            d.train,
            d.test,
            d.seed,
            d.save.as_ref(),
        )?;
        Ok(FoldFit {
            predictions,
            note: format!("epochs={e};best={}", b + 1),
        })
    }
}

/// The nested hyperparameter search: inner folds on the outer training
/// part only choose a candidate (by mean r over the targets), which is then
/// trained on the whole training part.
pub struct SearchModel<B: Backend> {
    pub backend: B,
    pub search: SearchSpec,
}

impl<B: Backend> Predictor for SearchModel<B> {
    fn name(&self) -> String {
        self.search.name.clone()
    }

    fn uses_predictors(&self) -> bool {
        true
    }

    fn fit_predict(&self, d: &FoldData) -> Result<FoldFit> {
        let search = &self.search;
        let inner = Folds::kfold(
            d.g.n_individuals(),
            d.train,
            search.inner_folds,
            1,
            d.seed ^ search.seed,
        )?;
        let mut best: Option<(f64, usize)> = None;
        for (ci, cand) in search.candidates.iter().enumerate() {
            let spec = cand.apply(&search.base)?;
            let mut rs = Vec::new();
            for k in 0..inner.k {
                let (itrain, itest) = inner.split(0, k);
                // The inner test part's target records are hidden too.
                let hidden: Vec<Vec<f64>> = d
                    .targets
                    .iter()
                    .map(|t| crate::only(t.values, &itrain))
                    .collect();
                let cols: Vec<TraitColumn> = d
                    .targets
                    .iter()
                    .zip(&hidden)
                    .map(|(t, v)| TraitColumn {
                        name: t.name,
                        values: v,
                    })
                    .collect();
                let (p, _, _) = train_predict(
                    &self.backend,
                    &spec,
                    d,
                    &cols,
                    &d.predictors,
                    &itrain,
                    &itest,
                    d.seed.wrapping_add(k as u64),
                    None,
                )?;
                for (t, pt) in d.targets.iter().zip(&p) {
                    let (pp, oo): (Vec<f64>, Vec<f64>) = itest
                        .iter()
                        .zip(pt)
                        .filter(|(&i, _)| !t.values[i].is_nan())
                        .map(|(&i, &v)| (v, t.values[i]))
                        .unzip();
                    rs.push(eval::metrics::pearson(&pp, &oo));
                }
            }
            let mean = rs.iter().filter(|v| v.is_finite()).sum::<f64>() / rs.len() as f64;
            if best.is_none_or(|(b, _)| mean > b) {
                best = Some((mean, ci));
            }
        }
        let (inner_r, ci) =
            best.ok_or_else(|| CvError::Plan("the search has no candidates".into()))?;
        let spec = search.candidates[ci].apply(&search.base)?;
        let (predictions, _, _) = train_predict(
            &self.backend,
            &spec,
            d,
            &d.targets,
            &d.predictors,
            d.train,
            d.test,
            d.seed,
            d.save.as_ref(),
        )?;
        Ok(FoldFit {
            predictions,
            note: format!(
                "chosen: {} (inner r={inner_r:.3})",
                search.candidates[ci].describe()
            ),
        })
    }
}
