//! Cross-validation folds: k-fold per repeat from a seed, or leave-group-out,
//! saved as `id,repeat,fold` and reloaded.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{EvalError, Result};

/// Fold assignments: for each repeat, the fold (from 0) of each individual
/// of the genotype store, or None for individuals left out (no phenotype).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folds {
    pub k: usize,
    pub assignment: Vec<Vec<Option<usize>>>,
}

/// At least one repeat.
fn check_repeats(repeats: usize) -> Result<()> {
    if repeats == 0 {
        return Err(EvalError::option(
            "--repeats",
            0,
            "expected at least 1 repeat of the folds",
        ));
    }
    Ok(())
}

impl Folds {
    /// k-fold assignment of the individuals `eligible`, shuffled by `seed`
    /// for each repeat; fold sizes differ by at most one.
    pub fn kfold(
        n: usize,
        eligible: &[usize],
        k: usize,
        repeats: usize,
        seed: u64,
    ) -> Result<Self> {
        if k < 2 || k > eligible.len() {
            return Err(EvalError::option(
                "--folds",
                k,
                format!(
                    "expected between 2 and the number of phenotyped individuals ({})",
                    eligible.len()
                ),
            ));
        }
        check_repeats(repeats)?;
        let mut assignment = Vec::with_capacity(repeats);
        for r in 0..repeats {
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(r as u64));
            let mut order = eligible.to_vec();
            order.shuffle(&mut rng);
            let mut a = vec![None; n];
            for (pos, &i) in order.iter().enumerate() {
                a[i] = Some(pos % k);
            }
            assignment.push(a);
        }
        Ok(Folds { k, assignment })
    }

    /// Leave-group-out folds: the distinct groups are shuffled and dealt to
    /// `k` folds (each group its own fold when `k` is 0 or at least the
    /// number of groups). `groups[i]` is None for individuals left out.
    pub fn by_group(
        groups: &[Option<String>],
        k: usize,
        repeats: usize,
        seed: u64,
    ) -> Result<Self> {
        let distinct: Vec<&str> = {
            let mut v: Vec<&str> = groups.iter().flatten().map(String::as_str).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        if distinct.len() < 2 {
            return Err(EvalError::TooFewGroups {
                found: distinct.len(),
            });
        }
        if k > distinct.len() {
            return Err(EvalError::option(
                "--folds",
                k,
                format!(
                    "there are only {} groups; give at most {}, or --folds 0 for one fold per group",
                    distinct.len(),
                    distinct.len()
                ),
            ));
        }
        if k == 1 {
            return Err(EvalError::option(
                "--folds",
                1,
                "cross-validation needs at least 2 folds (--folds 0: one per group)",
            ));
        }
        check_repeats(repeats)?;
        let k = if k == 0 { distinct.len() } else { k };
        let mut assignment = Vec::with_capacity(repeats);
        for r in 0..repeats {
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(r as u64));
            let mut order = distinct.clone();
            order.shuffle(&mut rng);
            let fold_of: HashMap<&str, usize> =
                order.iter().enumerate().map(|(p, g)| (*g, p % k)).collect();
            assignment.push(
                groups
                    .iter()
                    .map(|g| g.as_deref().map(|g| fold_of[g]))
                    .collect(),
            );
        }
        Ok(Folds { k, assignment })
    }

    pub fn repeats(&self) -> usize {
        self.assignment.len()
    }

    /// (training, test) individuals of a repeat and fold.
    pub fn split(&self, repeat: usize, fold: usize) -> (Vec<usize>, Vec<usize>) {
        let mut train = Vec::new();
        let mut test = Vec::new();
        for (i, f) in self.assignment[repeat].iter().enumerate() {
            match f {
                Some(f) if *f == fold => test.push(i),
                Some(_) => train.push(i),
                None => {}
            }
        }
        (train, test)
    }

    /// The CSV text `id,repeat,fold` (repeats and folds from 1).
    pub fn to_csv(&self, ids: &[String]) -> String {
        let mut s = String::from("id,repeat,fold\n");
        for (r, a) in self.assignment.iter().enumerate() {
            for (i, f) in a.iter().enumerate() {
                if let Some(f) = f {
                    writeln!(s, "{},{},{}", ids[i], r + 1, f + 1).expect("write to String");
                }
            }
        }
        s
    }

    /// Reads `id,repeat,fold` (from 1), matching IDs to the genotype store.
    pub fn from_csv(path: &Path, ids: &[String], eligible: &[usize]) -> Result<Self> {
        let text = geno::textio::read_text(path)
            .map_err(|e| EvalError::Io(path.display().to_string(), e))?;
        let index: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, h)) if h.trim_start_matches('\u{feff}').trim() == "id,repeat,fold" => {}
            _ => {
                return Err(EvalError::File {
                    path: path.into(),
                    line: Some(1),
                    message: "expected the header id,repeat,fold".to_string(),
                })
            }
        }
        // Per repeat: each individual's fold and the line that gave it.
        let mut by_repeat: BTreeMap<usize, Vec<Option<(usize, usize)>>> = BTreeMap::new();
        let mut k = 0;
        for (no, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').collect();
            let bad = || EvalError::File {
                path: path.into(),
                line: Some(no + 1),
                message: format!(
                    "expected id,repeat,fold with repeat and fold from 1, found '{line}'"
                ),
            };
            if f.len() != 3 {
                return Err(bad());
            }
            let r: usize = f[1].trim().parse().map_err(|_| bad())?;
            let fold: usize = f[2].trim().parse().map_err(|_| bad())?;
            if r == 0 || fold == 0 {
                return Err(bad());
            }
            if fold > ids.len() {
                return Err(EvalError::File {
                    path: path.into(),
                    line: Some(no + 1),
                    message: format!("fold {fold} is more folds than there are individuals ({}); folds are numbered from 1 without gaps", ids.len()),
                });
            }
            let id = f[0].trim();
            let Some(&i) = index.get(id) else {
                return Err(EvalError::File {
                    path: path.into(),
                    line: Some(no + 1),
                    message: format!("'{id}' is not a genotyped individual; a fold file names only individuals of the genotypes"),
                });
            };
            k = k.max(fold);
            let slot = &mut by_repeat
                .entry(r - 1)
                .or_insert_with(|| vec![None; ids.len()])[i];
            match *slot {
                Some((f0, line0)) if f0 != fold - 1 => {
                    return Err(EvalError::File {
                        path: path.into(),
                        line: Some(no + 1),
                        message: format!(
                            "'{id}' is in fold {fold} of repeat {r}, but line {} put it in fold {}",
                            line0 + 1,
                            f0 + 1
                        ),
                    })
                }
                Some(_) => {}
                None => *slot = Some((fold - 1, no)),
            }
        }
        if by_repeat.is_empty() {
            return Err(EvalError::File {
                path: path.into(),
                line: None,
                message: "no fold assignment in the file".to_string(),
            });
        }
        let last = by_repeat.keys().max().map_or(0, |r| r + 1);
        if let Some(r) = (0..last).find(|r| !by_repeat.contains_key(r)) {
            return Err(EvalError::File {
                path: path.into(),
                line: None,
                message: format!("repeat {} has no line, but repeat {last} does; repeats are numbered from 1 without gaps", r + 1),
            });
        }
        let mut assignment = Vec::with_capacity(by_repeat.len());
        for (r, a) in by_repeat {
            // Every phenotyped individual is in a fold of every repeat.
            let left: Vec<&str> = eligible
                .iter()
                .filter(|&&i| a[i].is_none())
                .map(|&i| ids[i].as_str())
                .collect();
            if !left.is_empty() {
                return Err(EvalError::File {
                    path: path.into(),
                    line: None,
                    message: format!("{} phenotyped individuals are in no fold of repeat {}, for example {}; a fold file assigns every one", left.len(),
                    r + 1,
                    left.iter().take(3).copied().collect::<Vec<_>>().join(", ")),
                });
            }
            // Folds are numbered 1..k without gaps: an empty fold has no test
            // set to score.
            let mut size = vec![0usize; k];
            for (f, _) in a.iter().flatten() {
                size[*f] += 1;
            }
            if let Some(f) = size.iter().position(|&s| s == 0) {
                return Err(EvalError::File {
                    path: path.into(),
                    line: None,
                    message: format!("fold {} of repeat {} has no individual, but fold {k} does; folds are numbered from 1 without gaps", f + 1,
                    r + 1),
                });
            }
            assignment.push(a.into_iter().map(|x| x.map(|(f, _)| f)).collect());
        }
        if k < 2 {
            return Err(EvalError::File {
                path: path.into(),
                line: None,
                message: "every individual is in fold 1; cross-validation needs at least 2 folds"
                    .to_string(),
            });
        }
        Ok(Folds { k, assignment })
    }
}
