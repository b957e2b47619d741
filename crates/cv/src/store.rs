//! Finished jobs kept on disk, so that a killed cross-validation resumes
//! with only the jobs it had not finished. One file per job, written
//! atomically when the job ends: `job-NNNNN.json` holds the job's place in
//! the queue and what it is (repeat, fold, target set, model), its records
//! and its predictions, every number as the bits of its f64 so that a
//! resumed run reports exactly what an uninterrupted one does.

use std::path::{Path, PathBuf};

use eval::metrics::Metrics;
use eval::report::{Prediction, Record};
use serde_json::{json, Value};

use crate::error::{CvError, Result};
use crate::Job;

/// A folder of finished jobs.
pub struct JobStore {
    dir: PathBuf,
}

fn bits(v: f64) -> Value {
    json!(v.to_bits())
}

fn unbits(v: &Value) -> Option<f64> {
    v.as_u64().map(f64::from_bits)
}

fn record_json(r: &Record) -> Value {
    let m = &r.metrics;
    json!([
        r.model,
        r.trait_name,
        r.repeat,
        r.fold,
        m.n,
        bits(m.r),
        bits(m.spearman),
        bits(m.mse),
        bits(m.r2),
        bits(m.slope),
        bits(m.top10),
        m.auc.map(f64::to_bits),
        bits(r.seconds),
        r.note
    ])
}

fn record_from(v: &Value) -> Option<Record> {
    let a = v.as_array()?;
    let s = |k: usize| a.get(k)?.as_str().map(str::to_string);
    let u = |k: usize| a.get(k)?.as_u64().map(|x| x as usize);
    let f = |k: usize| unbits(a.get(k)?);
    Some(Record {
        model: s(0)?,
        trait_name: s(1)?,
        repeat: u(2)?,
        fold: u(3)?,
        metrics: Metrics {
            n: u(4)?,
            r: f(5)?,
            spearman: f(6)?,
            mse: f(7)?,
            r2: f(8)?,
            slope: f(9)?,
            top10: f(10)?,
            auc: match a.get(11)? {
                Value::Null => None,
                x => Some(unbits(x)?),
            },
        },
        seconds: f(12)?,
        note: s(13)?,
    })
}

fn prediction_json(p: &Prediction) -> Value {
    json!([
        p.id,
        p.repeat,
        p.fold,
        p.model,
        p.trait_name,
        bits(p.prediction),
        bits(p.observed)
    ])
}

fn prediction_from(v: &Value) -> Option<Prediction> {
    let a = v.as_array()?;
    let s = |k: usize| a.get(k)?.as_str().map(str::to_string);
    let u = |k: usize| a.get(k)?.as_u64().map(|x| x as usize);
    Some(Prediction {
        id: s(0)?,
        repeat: u(1)?,
        fold: u(2)?,
        model: s(3)?,
        trait_name: s(4)?,
        prediction: unbits(a.get(5)?)?,
        observed: unbits(a.get(6)?)?,
    })
}

fn key(k: usize, job: &Job, model: &str) -> Value {
    json!({
        "job": k,
        "repeat": job.repeat,
        "fold": job.fold,
        "set": job.set,
        "model": model,
    })
}

impl JobStore {
    /// A store in `dir` (created when missing).
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| CvError::Store {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(JobStore {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, k: usize) -> PathBuf {
        self.dir.join(format!("job-{k:05}.json"))
    }

    /// Job `k`'s results, when a finished run of the same job is stored.
    /// A file for another job (the plan changed) or one that does not
    /// parse is not used: the job runs again.
    pub fn load(&self, k: usize, job: &Job, model: &str) -> Option<(Vec<Record>, Vec<Prediction>)> {
        let text = std::fs::read_to_string(self.path(k)).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        if v.get("key")? != &key(k, job, model) {
            return None;
        }
        let records = v
            .get("records")?
            .as_array()?
            .iter()
            .map(record_from)
            .collect::<Option<Vec<_>>>()?;
        let preds = v
            .get("predictions")?
            .as_array()?
            .iter()
            .map(prediction_from)
            .collect::<Option<Vec<_>>>()?;
        Some((records, preds))
    }

    /// Stores job `k`'s results atomically.
    pub fn save(
        &self,
        k: usize,
        job: &Job,
        model: &str,
        records: &[Record],
        preds: &[Prediction],
    ) -> Result<()> {
        let v = json!({
            "key": key(k, job, model),
            "records": records.iter().map(record_json).collect::<Vec<_>>(),
            "predictions": preds.iter().map(prediction_json).collect::<Vec<_>>(),
        });
        let path = self.path(k);
        Ok(geno::write_atomic(&path, v.to_string().as_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_job_reads_back_exactly_and_only_for_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path()).unwrap();
        let job = Job {
            repeat: 1,
            fold: 2,
            set: 0,
            model: 3,
        };
        let rec = Record {
            model: "cnn".into(),
            trait_name: "y".into(),
            repeat: 1,
            fold: 2,
            metrics: Metrics {
                n: 40,
                r: 0.1 + 0.2,
                spearman: f64::NAN,
                mse: 1.0 / 3.0,
                r2: -0.0,
                slope: f64::INFINITY,
                top10: 0.25,
                auc: None,
            },
            seconds: 1.5,
            note: "lr=0.001, \"x\"".into(),
        };
        let pred = Prediction {
            id: "a,b".into(),
            repeat: 1,
            fold: 2,
            model: "cnn".into(),
            trait_name: "y".into(),
            prediction: -1e-300,
            observed: f64::NAN,
        };
        store
            .save(
                7,
                &job,
                "cnn",
                std::slice::from_ref(&rec),
                std::slice::from_ref(&pred),
            )
            .unwrap();
        let (r, p) = store.load(7, &job, "cnn").unwrap();
        assert_eq!(r[0].metrics.r.to_bits(), rec.metrics.r.to_bits());
        assert!(r[0].metrics.spearman.is_nan());
        assert_eq!(r[0].metrics.r2.to_bits(), (-0.0f64).to_bits());
        assert_eq!(r[0].metrics.slope, f64::INFINITY);
        assert_eq!(
            (r[0].note.as_str(), r[0].metrics.auc),
            (rec.note.as_str(), None)
        );
        assert_eq!(p[0].id, "a,b");
        assert_eq!(p[0].prediction, -1e-300);
        // Another job, or another model at the same place, is not taken.
        assert!(store.load(7, &job, "gblup").is_none());
        assert!(store.load(8, &job, "cnn").is_none());
        let other = Job {
            fold: 3,
            ..job.clone()
        };
        assert!(store.load(7, &other, "cnn").is_none());
    }
}
