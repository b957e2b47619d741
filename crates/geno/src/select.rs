//! Subsets of individuals and markers chosen by ID, with PLINK's meaning of
//! `--keep` (a file of FID IID pairs, or of IIDs alone) and `--extract` (a
//! file of marker IDs). A PLINK fileset is then read only where the subset
//! lies (see [`crate::plink::read_plink_selected`]): the `.bed` is never
//! copied or held whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{GenoError, Result};
use crate::packed::{Individual, Marker};
use crate::textio::{open_text, LineReader};

/// The individuals of a `--keep` file: `FID IID` per line (more columns are
/// ignored), or `IID` alone. Lines starting with `#` are comments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepList {
    pub path: PathBuf,
    /// (FID when given, IID), in file order.
    pub ids: Vec<(Option<String>, String)>,
}

/// The markers of an `--extract` file: IDs separated by whitespace or
/// newlines. Lines starting with `#` are comments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractList {
    pub path: PathBuf,
    pub ids: Vec<String>,
}

fn tokens_by_line(path: &Path, what: &'static str) -> Result<Vec<(usize, Vec<String>)>> {
    let mut lines = LineReader::new(open_text(path, what)?, path);
    let mut out = Vec::new();
    while lines.next_line()? {
        let line = String::from_utf8_lossy(&lines.buf);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push((
            lines.line_no(),
            line.split_whitespace().map(str::to_string).collect(),
        ));
    }
    if out.is_empty() {
        return Err(GenoError::Empty {
            path: path.into(),
            expected: what,
        });
    }
    Ok(out)
}

impl KeepList {
    pub fn read(path: &Path) -> Result<Self> {
        let ids = tokens_by_line(path, "a --keep file: FID IID (or IID) per line")?
            .into_iter()
            .map(|(_, mut t)| {
                if t.len() == 1 {
                    (None, t.remove(0))
                } else {
                    let iid = t.swap_remove(1);
                    (Some(t.swap_remove(0)), iid)
                }
            })
            .collect();
        Ok(KeepList {
            path: path.into(),
            ids,
        })
    }
}

impl ExtractList {
    pub fn read(path: &Path) -> Result<Self> {
        let ids = tokens_by_line(path, "an --extract file: marker IDs")?
            .into_iter()
            .flat_map(|(_, t)| t)
            .collect();
        Ok(ExtractList {
            path: path.into(),
            ids,
        })
    }
}

/// Which individuals and markers to read; `None` keeps all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub keep: Option<KeepList>,
    pub extract: Option<ExtractList>,
}

/// How much of a list matched the fileset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched {
    pub path: PathBuf,
    /// IDs in the list.
    pub listed: usize,
    /// Of those, how many name an individual (or marker) of the fileset.
    pub found: usize,
}

/// A [`Selection`] resolved against a fileset: the indices kept, in the
/// fileset's order, and how much of each list matched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chosen {
    pub rows: Option<Vec<usize>>,
    pub cols: Option<Vec<usize>>,
    pub keep: Option<Matched>,
    pub extract: Option<Matched>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.keep.is_none() && self.extract.is_none()
    }

    /// The indices of the listed individuals and markers. A list that
    /// matches nothing is an error naming it.
    pub fn resolve(&self, individuals: &[Individual], markers: &[Marker]) -> Result<Chosen> {
        let mut chosen = Chosen::default();
        if let Some(keep) = &self.keep {
            let mut by_pair: HashMap<(&str, &str), usize, crate::FastHash> = HashMap::default();
            let mut by_iid: HashMap<&str, Vec<usize>, crate::FastHash> = HashMap::default();
            for (i, ind) in individuals.iter().enumerate() {
                by_pair.insert((ind.fid.as_str(), ind.iid.as_str()), i);
                by_iid.entry(ind.iid.as_str()).or_default().push(i);
            }
            let mut take = vec![false; individuals.len()];
            let mut found = 0;
            for (fid, iid) in &keep.ids {
                let hits: &[usize] = match fid {
                    Some(f) => by_pair
                        .get(&(f.as_str(), iid.as_str()))
                        .map_or(&[], std::slice::from_ref),
                    None => by_iid.get(iid.as_str()).map_or(&[], |v| v.as_slice()),
                };
                if !hits.is_empty() {
                    found += 1;
                }
                for &i in hits {
                    take[i] = true;
                }
            }
            let rows: Vec<usize> = (0..individuals.len()).filter(|&i| take[i]).collect();
            if rows.is_empty() {
                return Err(GenoError::invalid(
                    &keep.path,
                    format!(
                        "--keep: none of its {} individuals is in the genotypes (first: '{}'); expected FID IID or IID per line, as in the .fam",
                        keep.ids.len(),
                        keep.ids.first().map_or(String::new(), |(f, i)| match f {
                            Some(f) => format!("{f} {i}"),
                            None => i.clone(),
                        })
                    ),
                ));
            }
            chosen.rows = Some(rows);
            chosen.keep = Some(Matched {
                path: keep.path.clone(),
                listed: keep.ids.len(),
                found,
            });
        }
        if let Some(extract) = &self.extract {
            let by_id: HashMap<&str, usize, crate::FastHash> = markers
                .iter()
                .enumerate()
                .map(|(j, m)| (m.id.as_str(), j))
                .collect();
            let mut take = vec![false; markers.len()];
            let mut found = 0;
            for id in &extract.ids {
                if let Some(&j) = by_id.get(id.as_str()) {
                    if !take[j] {
                        found += 1;
                    }
                    take[j] = true;
                }
            }
            let cols: Vec<usize> = (0..markers.len()).filter(|&j| take[j]).collect();
            if cols.is_empty() {
                return Err(GenoError::invalid(
                    &extract.path,
                    format!(
                        "--extract: none of its {} marker IDs is in the genotypes (first: '{}')",
                        extract.ids.len(),
                        extract.ids.first().map_or("", |s| s.as_str())
                    ),
                ));
            }
            chosen.cols = Some(cols);
            chosen.extract = Some(Matched {
                path: extract.path.clone(),
                listed: extract.ids.len(),
                found,
            });
        }
        Ok(chosen)
    }
}
