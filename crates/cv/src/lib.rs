//! Cross-validation as a library: a [`Plan`] (the genotypes, the traits,
//! the folds, the scheme and the models) runs every model on the same
//! folds through one trait, [`Predictor`], as a queue of jobs with their
//! own thread pools, and gives back one [`Record`] per model, trait and
//! fold, and every test prediction. The CLI builds a plan from its flags
//! and only prints.
//!
//! # Schemes
//! - **CV1**: the test individuals have no record of any trait (new lines,
//!   new animals): every trait is predicted from genotypes alone.
//! - **CV2**: the test individuals have records of some traits (lines
//!   tested in some environments, animals with a cheap trait measured), and
//!   these predict the others. With `predictors`, those traits are kept on
//!   the test individuals and the targets hidden; without, each trait in
//!   turn is the target and the others are its predictors.

pub mod error;
pub mod predictor;
pub mod store;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use eval::{Folds, Metrics, Prediction, Record};
use gblup::Grm;
use geno::PackedGenotypes;
use model::TraitColumn;

pub use error::{CvError, Result};
pub use predictor::{FoldData, FoldFit, Gblup, MultiGblup, NetworkModel, Predictor, SearchModel};
pub use store::JobStore;

/// `values` with every record outside `keep` hidden (NaN): what a model
/// may see of a trait.
pub(crate) fn only(values: &[f64], keep: &[usize]) -> Vec<f64> {
    let mut v = vec![f64::NAN; values.len()];
    for &i in keep {
        v[i] = values[i];
    }
    v
}

/// The evaluation scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    #[default]
    Cv1,
    Cv2,
}

impl Scheme {
    /// `cv1` or `cv2`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Cv1 => "cv1",
            Scheme::Cv2 => "cv2",
        }
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cv1" => Ok(Scheme::Cv1),
            "cv2" => Ok(Scheme::Cv2),
            _ => Err(format!("'{s}': expected cv1 or cv2")),
        }
    }
}

/// The traits a set of fits predicts, and those it sees on the test
/// individuals (indices into the plan's traits and predictors).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetSet {
    pub targets: Vec<usize>,
    /// Indices into `traits` (CV2 without predictor traits) …
    pub other_traits: Vec<usize>,
    /// … or into `predictors`.
    pub predictors: Vec<usize>,
}

/// A cross-validation to run.
pub struct Plan<'a> {
    pub g: &'a PackedGenotypes,
    pub grm: Option<&'a Grm>,
    /// The traits evaluated, over every individual (NaN where missing).
    pub traits: Vec<TraitColumn<'a>>,
    /// The predictor traits of CV2 (kept on the test individuals, never evaluated).
    pub predictors: Vec<TraitColumn<'a>>,
    pub scheme: Scheme,
    pub folds: &'a Folds,
    /// Run this fold (0-based) of each repeat only.
    pub only_fold: Option<usize>,
    pub models: Vec<Box<dyn Predictor + 'a>>,
    /// The individuals' IDs, for the predictions.
    pub ids: &'a [String],
    pub seed: u64,
    /// Keep each fold's model in `ROOT/models/MODEL/rR-fF`.
    pub keep: Option<PathBuf>,
}

/// One fit of the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub repeat: usize,
    pub fold: usize,
    pub set: usize,
    pub model: usize,
}

/// A finished job: its place in the queue, its records and predictions.
type Finished = (usize, Vec<Record>, Vec<Prediction>);

/// What the runner reports as it goes.
pub enum Progress<'a> {
    Started(&'a Job, &'a str),
    Finished(&'a Job, &'a [Record]),
    /// A job a killed run had finished, taken from the [`JobStore`].
    Kept(&'a Job, &'a [Record]),
}

impl<'a> Plan<'a> {
    /// The target sets of the scheme (checked: CV1 takes no predictor
    /// traits, CV2 needs them or several traits).
    pub fn target_sets(&self) -> Result<Vec<TargetSet>> {
        let all: Vec<usize> = (0..self.traits.len()).collect();
        if self.traits.is_empty() {
            return Err(CvError::Plan("no trait to predict".into()));
        }
        match self.scheme {
            Scheme::Cv1 if !self.predictors.is_empty() => Err(CvError::Plan(
                "--predictor-traits needs --scheme cv2: in CV1 the test individuals have no record of any trait".into(),
            )),
            Scheme::Cv1 => Ok(vec![TargetSet {
                targets: all,
                other_traits: Vec::new(),
                predictors: Vec::new(),
            }]),
            Scheme::Cv2 if !self.predictors.is_empty() => Ok(vec![TargetSet {
                targets: all,
                other_traits: Vec::new(),
                predictors: (0..self.predictors.len()).collect(),
            }]),
            Scheme::Cv2 if self.traits.len() < 2 => Err(CvError::Plan(
                "CV2 needs the test individuals' records of other traits: give several traits, or --predictor-traits".into(),
            )),
            Scheme::Cv2 => Ok(all
                .iter()
                .map(|&t| TargetSet {
                    targets: vec![t],
                    other_traits: all.iter().copied().filter(|&u| u != t).collect(),
                    predictors: Vec::new(),
                })
                .collect()),
        }
    }

    /// The individuals with a record of some trait evaluated: those the
    /// folds are drawn over.
    pub fn eligible(&self) -> Vec<usize> {
        (0..self.g.n_individuals())
            .filter(|&i| self.traits.iter().any(|t| !t.values[i].is_nan()))
            .collect()
    }

    /// The queue: repeats × folds × target sets × models.
    pub fn jobs(&self) -> Result<Vec<Job>> {
        let sets = self.target_sets()?.len();
        let folds: Vec<usize> = match self.only_fold {
            Some(k) => vec![k],
            None => (0..self.folds.k).collect(),
        };
        let mut out = Vec::new();
        for repeat in 0..self.folds.repeats() {
            for &fold in &folds {
                for set in 0..sets {
                    for model in 0..self.models.len() {
                        out.push(Job {
                            repeat,
                            fold,
                            set,
                            model,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Runs one job: the fold's masks, the fit, and a record per target trait.
    pub fn run_job(&self, job: &Job, sets: &[TargetSet]) -> Result<(Vec<Record>, Vec<Prediction>)> {
        let start = Instant::now();
        let model = &self.models[job.model];
        let set = &sets[job.set];
        let (mut train, test) = self.folds.split(job.repeat, job.fold);
        if test.is_empty() {
            return Err(CvError::Plan("the test fold is empty".into()));
        }
        // Individuals with records of predictor traits only are in no fold
        // (nothing of theirs is evaluated), but train every fold's models
        // that use those traits (multi-trait GBLUP borrows from them).
        if !set.predictors.is_empty() {
            train.extend((0..self.g.n_individuals()).filter(|&i| {
                self.traits.iter().all(|t| t.values[i].is_nan())
                    && set
                        .predictors
                        .iter()
                        .any(|&p| !self.predictors[p].values[i].is_nan())
            }));
            train.sort_unstable();
        }
        // Only the training individuals' records of the targets reach the
        // model; the test individuals keep their predictor traits' (CV2).
        let hidden: Vec<Vec<f64>> = set
            .targets
            .iter()
            .map(|&t| only(self.traits[t].values, &train))
            .collect();
        let targets: Vec<TraitColumn> = set
            .targets
            .iter()
            .zip(&hidden)
            .map(|(&t, v)| TraitColumn {
                name: self.traits[t].name,
                values: v,
            })
            .collect();
        let predictors: Vec<TraitColumn> = if model.uses_predictors() {
            set.other_traits
                .iter()
                .map(|&t| self.traits[t])
                .chain(set.predictors.iter().map(|&p| self.predictors[p]))
                .collect()
        } else {
            Vec::new()
        };
        let name = model.name();
        let save = self.keep.as_ref().map(|root| {
            let mut dir = root.join("models").join(&name);
            if sets.len() > 1 {
                dir = dir.join(self.traits[set.targets[0]].name);
            }
            dir.join(format!("r{}-f{}", job.repeat + 1, job.fold + 1))
        });
        let d = FoldData {
            g: self.g,
            grm: self.grm,
            targets,
            predictors,
            train: &train,
            test: &test,
            seed: self
                .seed
                .wrapping_add(1000 * job.repeat as u64 + job.fold as u64),
            save,
        };
        let fit = model.fit_predict(&d)?;
        let seconds = start.elapsed().as_secs_f64();
        let mut records = Vec::new();
        let mut preds = Vec::new();
        for (k, &t) in set.targets.iter().enumerate() {
            let tr = &self.traits[t];
            // Evaluated on the test individuals with a record of the trait.
            let (rows, p): (Vec<usize>, Vec<f64>) = test
                .iter()
                .zip(&fit.predictions[k])
                .filter(|(&i, _)| !tr.values[i].is_nan())
                .map(|(&i, &p)| (i, p))
                .unzip();
            let obs: Vec<f64> = rows.iter().map(|&i| tr.values[i]).collect();
            records.push(Record {
                model: name.clone(),
                trait_name: tr.name.to_string(),
                repeat: job.repeat,
                fold: job.fold,
                metrics: Metrics::compute(&p, &obs),
                seconds,
                note: fit.note.clone(),
            });
            preds.extend(
                rows.iter()
                    .zip(p.iter().zip(&obs))
                    .map(|(&i, (&p, &o))| Prediction {
                        id: self.ids[i].clone(),
                        repeat: job.repeat,
                        fold: job.fold,
                        model: name.clone(),
                        trait_name: tr.name.to_string(),
                        prediction: p,
                        observed: o,
                    }),
            );
        }
        Ok((records, preds))
    }

    /// Runs the queue on `jobs` workers sharing `threads` threads, each
    /// worker with its own pool; the records and predictions come back in
    /// queue order, whatever order the jobs finished in. With a `store`,
    /// each finished job is kept there as it ends, and the jobs it already
    /// holds (a killed run's) are taken from it instead of run again.
    pub fn run(
        &self,
        jobs: usize,
        threads: usize,
        store: Option<&JobStore>,
        on: &(dyn Fn(Progress) + Sync),
    ) -> Result<(Vec<Record>, Vec<Prediction>)> {
        let sets = self.target_sets()?;
        let queue = self.jobs()?;
        let mut kept: Vec<Finished> = Vec::new();
        let mut todo: Vec<usize> = Vec::new();
        for (k, job) in queue.iter().enumerate() {
            let name = self.models[job.model].name();
            match store.and_then(|s| s.load(k, job, &name)) {
                Some((recs, preds)) => {
                    on(Progress::Kept(job, &recs));
                    kept.push((k, recs, preds));
                }
                None => todo.push(k),
            }
        }
        let results: Mutex<Vec<Finished>> = Mutex::new(kept);
        let next = Mutex::new(0usize);
        let failure: Mutex<Option<CvError>> = Mutex::new(None);
        let workers = jobs.min(todo.len()).max(1);
        let per_worker = (threads / workers).max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    let pool = match rayon::ThreadPoolBuilder::new()
                        .num_threads(per_worker)
                        .build()
                    {
                        Ok(p) => p,
                        Err(e) => {
                            *failure.lock().expect("lock") =
                                Some(CvError::Plan(format!("cannot start a thread pool: {e}")));
                            return;
                        }
                    };
                    loop {
                        let k = {
                            let mut n = next.lock().expect("lock");
                            if *n >= todo.len() || failure.lock().expect("lock").is_some() {
                                break;
                            }
                            *n += 1;
                            todo[*n - 1]
                        };
                        let job = &queue[k];
                        let name = self.models[job.model].name();
                        on(Progress::Started(job, &name));
                        match pool.install(|| self.run_job(job, &sets)) {
                            Ok((recs, preds)) => {
                                let saved =
                                    store.map_or(Ok(()), |s| s.save(k, job, &name, &recs, &preds));
                                if let Err(e) = saved {
                                    *failure.lock().expect("lock") = Some(e);
                                    break;
                                }
                                on(Progress::Finished(job, &recs));
                                results.lock().expect("lock").push((k, recs, preds));
                            }
                            Err(e) => {
                                *failure.lock().expect("lock") = Some(CvError::Fold {
                                    repeat: job.repeat + 1,
                                    fold: job.fold + 1,
                                    model: name,
                                    source: Box::new(e),
                                });
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().expect("lock") {
            return Err(e);
        }
        let mut results = results.into_inner().expect("lock");
        results.sort_by_key(|(k, _, _)| *k);
        let mut records = Vec::new();
        let mut preds = Vec::new();
        for (_, r, p) in results {
            records.extend(r);
            preds.extend(p);
        }
        Ok((records, preds))
    }
}
