//! Phenotype tables: a header with an ID column (joined to the genotypes by
//! ID), a headerless numeric file whose rows follow the genotype order
//! (GEMMA's `pheno.txt`, BGLR's `wheat.Y`), or a PLINK `.fam` whose sixth and
//! later columns are traits.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{GenoError, Result};
use crate::packed::Individual;
use crate::textio::{read_small, show, split_fields, to_string, Delimiter};

/// Which trait to use: a column name, or its number counting from 1 among
/// the trait columns (the ID columns are not counted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraitSelector {
    Name(String),
    Index(usize),
}

impl FromStr for TraitSelector {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.is_empty() {
            return Err("a trait is a column name or a number counting from 1".into());
        }
        Ok(match s.parse::<usize>() {
            Ok(k) => TraitSelector::Index(k),
            Err(_) => TraitSelector::Name(s.to_string()),
        })
    }
}

impl TraitSelector {
    /// The traits of a comma-separated selection (`a,b`, `1,6`): itself
    /// when it names one.
    pub fn list(&self) -> Vec<TraitSelector> {
        match self {
            TraitSelector::Name(n) if n.contains(',') => n
                .split(',')
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(|p| p.parse().expect("a non-empty part parses"))
                .collect(),
            other => vec![other.clone()],
        }
    }
}

impl fmt::Display for TraitSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraitSelector::Name(n) => write!(f, "'{n}'"),
            TraitSelector::Index(k) => write!(f, "number {k}"),
        }
    }
}

/// How the rows of a phenotype table meet the genotypes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PhenoLayout {
    /// Rows carry IDs and are joined to the genotypes by individual ID.
    Keyed,
    /// Rows follow the genotype order, one per individual.
    Aligned,
}

/// A phenotype file, read as text; a trait's values are parsed when selected.
#[derive(Clone, Debug)]
pub struct PhenoTable {
    pub path: PathBuf,
    pub layout: PhenoLayout,
    /// The trait column names.
    pub names: Vec<String>,
    /// For each trait, its 1-based column in the file.
    columns: Vec<usize>,
    /// Row IDs (keyed layout only).
    ids: Vec<String>,
    /// Line number of each row.
    lines: Vec<usize>,
    /// rows × traits cells.
    cells: Vec<Vec<String>>,
}

/// One trait aligned to the genotyped individuals.
#[derive(Clone, Debug)]
pub struct Trait {
    pub name: String,
    /// One value per genotyped individual, NaN where missing or unmatched.
    pub values: Vec<f64>,
    /// Rows of the table whose ID matched a genotyped individual.
    pub n_matched: usize,
    /// Rows of the table.
    pub n_rows: usize,
    /// Genotyped individuals with a value.
    pub n_phenotyped: usize,
}

fn is_missing(cell: &str) -> bool {
    matches!(cell, "" | "NA" | "na" | "NaN" | "nan" | "." | "-9")
}

fn is_numeric_or_missing(cell: &[u8]) -> bool {
    let s = String::from_utf8_lossy(cell);
    is_missing(&s) || s.parse::<f64>().is_ok()
}

const ID_NAMES: [&str; 12] = [
    "iid",
    "id",
    "ids",
    "sample",
    "sample_id",
    "individual",
    "taxa",
    "taxon",
    "line",
    "gid",
    "animal",
    "name",
];

impl PhenoTable {
    /// Reads a phenotype file; `.fam` files are read as PLINK fam.
    pub fn read(path: &Path) -> Result<Self> {
        const WHAT: &str = "a phenotype table";
        let bytes = read_small(path, WHAT)?;
        // A UTF-8 byte-order mark (spreadsheets write one) is not data.
        let bytes: &[u8] = bytes.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(&bytes);
        let mut rows: Vec<(usize, Vec<&[u8]>)> = Vec::new();
        let is_fam = path.extension().is_some_and(|e| e == "fam");
        let mut delim = None;
        for (k, line) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if crate::textio::is_blank(line) {
                continue;
            }
            let d = *delim.get_or_insert_with(|| {
                if is_fam {
                    Delimiter::Whitespace
                } else {
                    Delimiter::detect(line)
                }
            });
            rows.push((k + 1, split_fields(line, d)));
        }
        if rows.is_empty() {
            return Err(GenoError::Empty {
                path: path.into(),
                expected: WHAT,
            });
        }
        let width_of_data = rows.get(1).map_or(rows[0].1.len(), |r| r.1.len());
        // (layout, header, ID column, first trait column, R's header-without-row-names form)
        let (layout, header, id_col, first_trait_col, r_form) = if is_fam {
            if rows[0].1.len() < 6 {
                return Err(GenoError::Ragged {
                    path: path.into(),
                    line: rows[0].0,
                    found: rows[0].1.len(),
                    expected: 6,
                    why: "a .fam line has FID IID PAT MAT SEX and phenotype columns".into(),
                });
            }
            (PhenoLayout::Keyed, None, Some(1), 5, false)
        } else if rows[0].1.iter().all(|c| is_numeric_or_missing(c)) {
            (PhenoLayout::Aligned, None, None, 0, false)
        } else {
            let head: Vec<String> = rows[0].1.iter().map(|s| to_string(s)).collect();
            if head.len() + 1 == width_of_data {
                (PhenoLayout::Keyed, Some(head), Some(0), 1, true)
            } else {
                let lower: Vec<String> = head.iter().map(|h| h.to_ascii_lowercase()).collect();
                let id = ID_NAMES
                    .iter()
                    .find_map(|name| lower.iter().position(|h| h == name))
                    .unwrap_or(0);
                (PhenoLayout::Keyed, Some(head), Some(id), 0, false)
            }
        };
        let width = match &header {
            Some(h) => h.len() + usize::from(r_form),
            None => rows[0].1.len(),
        };
        // Trait columns: all but the ID column (and FID beside IID).
        let mut names = Vec::new();
        let mut columns = Vec::new();
        for c in first_trait_col..width {
            if Some(c) == id_col {
                continue;
            }
            let name = match &header {
                Some(h) => {
                    let hn = &h[if r_form { c - 1 } else { c }];
                    if hn.eq_ignore_ascii_case("fid")
                        && id_col.is_some_and(|i| h[i].eq_ignore_ascii_case("iid"))
                    {
                        continue;
                    }
                    hn.clone()
                }
                None if is_fam => format!("pheno{}", c - first_trait_col + 1),
                None => format!("col{}", c + 1),
            };
            names.push(name);
            columns.push(c + 1);
        }
        if names.is_empty() {
            return Err(GenoError::invalid(
                path,
                "the table has no trait columns besides the IDs",
            ));
        }
        let body = if header.is_some() {
            &rows[1..]
        } else {
            &rows[..]
        };
        let mut ids = Vec::new();
        let mut lines = Vec::new();
        let mut cells = Vec::with_capacity(body.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (line, fields) in body {
            if fields.len() != width {
                return Err(GenoError::Ragged {
                    path: path.into(),
                    line: *line,
                    found: fields.len(),
                    expected: width,
                    why: format!(
                        "every row must have as many fields as the {}",
                        if header.is_some() {
                            "header"
                        } else {
                            "first row"
                        }
                    ),
                });
            }
            if let Some(ic) = id_col {
                let id = to_string(fields[ic]);
                if let Some(&first) = seen.get(&id) {
                    return Err(GenoError::DuplicateId {
                        path: path.into(),
                        id,
                        first,
                        second: *line,
                    });
                }
                seen.insert(id.clone(), *line);
                ids.push(id);
            }
            lines.push(*line);
            cells.push(columns.iter().map(|&c| to_string(fields[c - 1])).collect());
        }
        if cells.is_empty() {
            return Err(GenoError::invalid(
                path,
                "the table has a header but no rows",
            ));
        }
        Ok(PhenoTable {
            path: path.to_path_buf(),
            layout,
            names,
            columns,
            ids,
            lines,
            cells,
        })
    }

    /// Number of data rows.
    pub fn n_rows(&self) -> usize {
        self.cells.len()
    }

    /// The index among the trait columns that `sel` names.
    pub fn trait_index(&self, sel: &TraitSelector) -> Result<usize> {
        self.column_index(sel, "trait")
    }

    /// The index of column `sel` among the non-ID columns; `role` (trait,
    /// covariate, group column) names it in the error.
    fn column_index(&self, sel: &TraitSelector, role: &str) -> Result<usize> {
        let by_name = |n: &str| self.names.iter().position(|x| x == n);
        let found = match sel {
            TraitSelector::Name(n) => by_name(n),
            TraitSelector::Index(k) => by_name(&k.to_string())
                .or_else(|| (*k >= 1 && *k <= self.names.len()).then(|| k - 1)),
        };
        found.ok_or_else(|| {
            let list = if self.names.len() <= 12 {
                self.names.join(", ")
            } else {
                format!("{}, … ({} in all)", self.names[..12].join(", "), self.names.len())
            };
            GenoError::invalid(
                &self.path,
                format!(
                    "there is no {role} {sel}; the file has {} column(s) besides the IDs: {list} (a number counts from 1)",
                    self.names.len()
                ),
            )
        })
    }

    /// The text of column `sel` aligned to the genotyped individuals (None
    /// where missing or unmatched), for grouping columns such as families.
    pub fn column_text(
        &self,
        sel: &TraitSelector,
        individuals: &[Individual],
    ) -> Result<Vec<Option<String>>> {
        let t = self.column_index(sel, "group column")?;
        let cell = |r: usize| Some(self.cells[r][t].clone()).filter(|c| !is_missing(c));
        Ok(match self.layout {
            PhenoLayout::Aligned => {
                if self.cells.len() != individuals.len() {
                    return Err(GenoError::invalid(
                        &self.path,
                        format!(
                            "the file has {} rows but the genotypes have {} individuals",
                            self.cells.len(),
                            individuals.len()
                        ),
                    ));
                }
                (0..individuals.len()).map(cell).collect()
            }
            PhenoLayout::Keyed => {
                let index: HashMap<&str, usize> = self
                    .ids
                    .iter()
                    .enumerate()
                    .map(|(r, id)| (id.as_str(), r))
                    .collect();
                individuals
                    .iter()
                    .map(|ind| index.get(ind.iid.as_str()).and_then(|&r| cell(r)))
                    .collect()
            }
        })
    }

    /// Parses trait `sel` and aligns it to the genotyped individuals.
    pub fn select(&self, sel: &TraitSelector, individuals: &[Individual]) -> Result<Trait> {
        self.select_as(sel, individuals, "trait")
    }

    /// Parses numeric column `sel` (a trait, a covariate: `role` names it in
    /// errors) and aligns it to the genotyped individuals.
    pub fn select_as(
        &self,
        sel: &TraitSelector,
        individuals: &[Individual],
        role: &str,
    ) -> Result<Trait> {
        let t = self.column_index(sel, role)?;
        let name = self.names[t].clone();
        let mut parsed = Vec::with_capacity(self.cells.len());
        for (r, row) in self.cells.iter().enumerate() {
            let cell = row[t].as_str();
            if is_missing(cell) {
                parsed.push(f64::NAN);
                continue;
            }
            match cell.parse::<f64>() {
                Ok(v) if v.is_finite() => parsed.push(v),
                _ => {
                    return Err(GenoError::parse(
                        &self.path,
                        self.lines[r],
                        self.columns[t],
                        format!(
                            "{role} '{name}': expected a number (or NA/-9 for missing), found '{}'",
                            show(cell.as_bytes())
                        ),
                    ))
                }
            }
        }
        let n = individuals.len();
        let (values, n_matched) = match self.layout {
            PhenoLayout::Aligned => {
                if parsed.len() != n {
                    return Err(GenoError::invalid(
                        &self.path,
                        format!(
                            "the file has {} rows but the genotypes have {n} individuals; a headerless phenotype file must hold one row per genotyped individual, in genotype order",
                            parsed.len()
                        ),
                    ));
                }
                (parsed, n)
            }
            PhenoLayout::Keyed => {
                let index: HashMap<&str, usize> = individuals
                    .iter()
                    .enumerate()
                    .map(|(i, ind)| (ind.iid.as_str(), i))
                    .collect();
                let mut values = vec![f64::NAN; n];
                let mut matched = 0;
                for (id, v) in self.ids.iter().zip(&parsed) {
                    if let Some(&i) = index.get(id.as_str()) {
                        values[i] = *v;
                        matched += 1;
                    }
                }
                if matched == 0 {
                    let ex = |it: &mut dyn Iterator<Item = &str>| {
                        it.take(3)
                            .map(|s| format!("'{s}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    return Err(GenoError::invalid(
                        &self.path,
                        format!(
                            "none of its {} IDs matches a genotyped individual (phenotype IDs such as {}; genotype IDs such as {})",
                            self.ids.len(),
                            ex(&mut self.ids.iter().map(String::as_str)),
                            ex(&mut individuals.iter().map(|i| i.iid.as_str()))
                        ),
                    ));
                }
                (values, matched)
            }
        };
        let n_phenotyped = values.iter().filter(|v| !v.is_nan()).count();
        if n_phenotyped == 0 {
            return Err(GenoError::invalid(
                &self.path,
                format!(
                    "{role} '{name}' (column {}) has no values: every one of the {n_matched} matched individuals is missing (NA)",
                    self.columns[t]
                ),
            ));
        }
        Ok(Trait {
            name,
            values,
            n_matched,
            n_rows: self.cells.len(),
            n_phenotyped,
        })
    }
}
