//! Text genotype matrices: delimited dosage matrices (CSV, TSV, whitespace)
//! and PLINK `.raw` files (`--recode A`), read row by row into the packed
//! store, and written back.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::error::{GenoError, Result};
use crate::packed::{
    Individual, Marker, PackedGenotypes, CODE_DOSAGE, HET, HOM_A1, HOM_A2, MISSING,
};
use crate::textio::id_text;
use crate::textio::{
    open_text, show, split_fields, trim, unquote, unwritable, AtomicFile, Delimiter, LineReader,
};

/// How to read a delimited dosage matrix. Every `None` is detected from the file.
#[derive(Clone, Copy, Debug, Default)]
pub struct DelimitedOptions {
    pub delimiter: Option<Delimiter>,
    /// Whether the first line is a header of marker IDs.
    pub header: Option<bool>,
    /// Whether the first column holds individual IDs.
    pub ids: Option<bool>,
}

/// The 2-bit code of a dosage cell; `None` when the cell is not a dosage.
#[inline]
fn cell_code(field: &[u8]) -> Option<u8> {
    match field {
        b"0" => Some(HOM_A2),
        b"1" => Some(HET),
        b"2" => Some(HOM_A1),
        b"" | b"NA" | b"." | b"-9" => Some(MISSING),
        _ => cell_code_slow(field),
    }
}

#[cold]
fn cell_code_slow(field: &[u8]) -> Option<u8> {
    let f = unquote(trim(field));
    match f {
        b"0" | b"0.0" => Some(HOM_A2),
        b"1" | b"1.0" => Some(HET),
        b"2" | b"2.0" => Some(HOM_A1),
        b"" | b"NA" | b"na" | b"NaN" | b"nan" | b"." | b"-9" => Some(MISSING),
        _ => None,
    }
}

/// Whether a field reads as a dosage or a missing value.
pub(crate) fn is_genotype_token(field: &[u8]) -> bool {
    cell_code(field).is_some()
}

fn is_id_keyword(field: &[u8]) -> bool {
    let f = String::from_utf8_lossy(field).to_ascii_lowercase();
    matches!(
        f.as_str(),
        "id" | "iid"
            | "ids"
            | "sample"
            | "sample_id"
            | "individual"
            | "taxa"
            | "taxon"
            | "line"
            | "gid"
            | "name"
            | "genotype"
            | "animal"
            | "accession"
            | "rownames"
            | "x"
    )
}

fn bad_cell(field: &[u8], marker: &str) -> String {
    let f = unquote(trim(field));
    let value = show(f);
    let why = match std::str::from_utf8(f)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        Some(v) if v > 2.0 && v.fract() == 0.0 => {
            " (a dosage counts copies of one allele, so it cannot exceed 2)".to_string()
        }
        Some(v) if v < 0.0 => " (a dosage cannot be negative; -9 is read as missing)".to_string(),
        Some(_) => " (only whole dosages are stored)".to_string(),
        None => String::new(),
    };
    format!("expected a dosage 0, 1 or 2 (or NA, ., -9 or empty for missing) for marker {marker}, found '{value}'{why}")
}

/// Parses the dosage fields of rows into packed individual-major rows.
struct RowParser<'a> {
    path: &'a Path,
    delim: Delimiter,
    /// Leading text fields before the dosages (1 for an ID column, 6 for `.raw`).
    lead: usize,
    markers: &'a [Marker],
    why_width: &'a str,
}

impl RowParser<'_> {
    /// Parses one line: the leading fields go to `lead_out`, the dosage codes
    /// into `row` (ceil(m/4) bytes, zeroed by the caller).
    fn parse(
        &self,
        line: &[u8],
        line_no: usize,
        row: &mut [u8],
        lead_out: &mut Vec<String>,
    ) -> Result<()> {
        let m = self.markers.len();
        lead_out.clear();
        let len = line.len();
        let mut pos = 0;
        let mut col = 0; // 0-based field index
        let mut j = 0;
        let ws = self.delim == Delimiter::Whitespace;
        let d = self.delim.byte();
        if ws {
            while pos < len && (line[pos] == b' ' || line[pos] == b'\t') {
                pos += 1;
            }
        }
        loop {
            // Find the end of the field starting at `pos`.
            let is_sep = |b: u8| if ws { b == b' ' || b == b'\t' } else { b == d };
            let end =
                if pos < len && !is_sep(line[pos]) && (pos + 1 == len || is_sep(line[pos + 1])) {
                    pos + 1
                } else {
                    let mut e = pos;
                    if ws {
                        while e < len && line[e] != b' ' && line[e] != b'\t' {
                            e += 1;
                        }
                    } else {
                        while e < len && line[e] != d {
                            e += 1;
                        }
                    }
                    e
                };
            let field = &line[pos.min(len)..end.min(len)];
            if col < self.lead {
                lead_out.push(id_text(
                    self.path,
                    line_no,
                    col + 1,
                    unquote(trim(field)),
                    "ID",
                )?);
            } else {
                if j >= m {
                    return Err(self.ragged(line, line_no));
                }
                let code = cell_code(field).ok_or_else(|| {
                    GenoError::parse(
                        self.path,
                        line_no,
                        col + 1,
                        bad_cell(field, &self.markers[j].id),
                    )
                })?;
                row[j / 4] |= code << (2 * (j % 4));
                j += 1;
            }
            col += 1;
            if end >= len {
                break;
            }
            pos = end + 1;
            if ws {
                while pos < len && (line[pos] == b' ' || line[pos] == b'\t') {
                    pos += 1;
                }
                if pos == len {
                    break;
                }
            }
        }
        if j != m || lead_out.len() != self.lead {
            return Err(self.ragged(line, line_no));
        }
        Ok(())
    }

    fn ragged(&self, line: &[u8], line_no: usize) -> GenoError {
        GenoError::Ragged {
            path: self.path.into(),
            line: line_no,
            found: split_fields(line, self.delim).len(),
            expected: self.lead + self.markers.len(),
            why: self.why_width.to_string(),
        }
    }
}

/// Collects packed individual-major rows, then transposes them to the
/// SNP-major store.
struct RowCollector {
    m: usize,
    row_stride: usize,
    rows: Vec<u8>,
    n: usize,
}

impl RowCollector {
    fn new(m: usize) -> Self {
        RowCollector {
            m,
            row_stride: m.div_ceil(4),
            rows: Vec::new(),
            n: 0,
        }
    }

    /// A zeroed row to fill.
    fn next_row(&mut self) -> &mut [u8] {
        let start = self.rows.len();
        self.rows.resize(start + self.row_stride, 0);
        self.n += 1;
        &mut self.rows[start..]
    }

    fn finish(self, individuals: Vec<Individual>, markers: Vec<Marker>) -> PackedGenotypes {
        let (n, m, rs) = (self.n, self.m, self.row_stride);
        let stride = n.div_ceil(4);
        let mut data = vec![0u8; stride * m];
        // Four individuals make one output byte per marker.
        for ib in 0..stride {
            let r: Vec<&[u8]> = (0..4)
                .map(|t| {
                    let i = 4 * ib + t;
                    if i < n {
                        &self.rows[i * rs..(i + 1) * rs]
                    } else {
                        &[][..]
                    }
                })
                .collect();
            for j in 0..m {
                let (byte, shift) = (j / 4, 2 * (j % 4));
                let mut out = 0u8;
                for (t, row) in r.iter().enumerate() {
                    if !row.is_empty() {
                        out |= ((row[byte] >> shift) & 3) << (2 * t);
                    }
                }
                data[j * stride + ib] = out;
            }
        }
        drop(self.rows);
        PackedGenotypes::from_packed(individuals, markers, data)
    }
}

fn check_unique_ids(path: &Path, ids: &[(String, usize)]) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (id, line) in ids {
        if let Some(&first) = seen.get(id.as_str()) {
            return Err(GenoError::DuplicateId {
                path: path.into(),
                id: id.clone(),
                first,
                second: *line,
            });
        }
        seen.insert(id, *line);
    }
    Ok(())
}

/// Reads a delimited dosage matrix, one row per individual.
pub fn read_delimited(path: &Path, opts: DelimitedOptions) -> Result<PackedGenotypes> {
    const WHAT: &str = "a genotype matrix with one row per individual";
    let mut lines = LineReader::new(open_text(path, WHAT)?, path);
    if !lines.next_nonblank()? {
        return Err(GenoError::Empty {
            path: path.into(),
            expected: WHAT,
        });
    }
    let first = lines.buf.clone();
    let first_no = lines.line_no();
    let second = if lines.next_nonblank()? {
        Some((lines.buf.clone(), lines.line_no()))
    } else {
        None
    };
    let delim = opts.delimiter.unwrap_or_else(|| Delimiter::detect(&first));
    let f1 = split_fields(&first, delim);
    let f2 = second.as_ref().map(|(l, _)| split_fields(l, delim));

    let header = opts.header.unwrap_or_else(|| {
        f1[1..].iter().any(|f| !is_genotype_token(f))
            || is_id_keyword(f1[0])
            || f2
                .as_ref()
                .is_some_and(|f2| f1.len() + 1 == f2.len() && !is_genotype_token(f1[0]))
    });
    let data_first = if header { f2.as_ref() } else { Some(&f1) };
    let Some(data_first) = data_first else {
        return Err(GenoError::invalid(
            path,
            "the file has a header line but no rows of genotypes",
        ));
    };
    let r_form = header && f1.len() + 1 == data_first.len();
    let ids = opts.ids.unwrap_or_else(|| {
        if header {
            r_form || f1[0].is_empty() || is_id_keyword(f1[0]) || !is_genotype_token(data_first[0])
        } else {
            !is_genotype_token(data_first[0])
        }
    });
    let m = data_first.len() - usize::from(ids);
    if m == 0 {
        return Err(GenoError::invalid(
            path,
            "the rows hold no genotype columns after the ID column",
        ));
    }
    let markers: Vec<Marker> = if header {
        let names: &[&[u8]] = if r_form || !ids { &f1 } else { &f1[1..] };
        if names.len() != m {
            return Err(GenoError::Ragged {
                path: path.into(),
                line: first_no,
                found: f1.len(),
                expected: m + usize::from(ids),
                why: format!(
                    "the header must name the {m} markers of the first row{}",
                    if ids { ", after the ID column" } else { "" }
                ),
            });
        }
        let markers: Vec<Marker> = names
            .iter()
            .enumerate()
            .map(|(j, s)| {
                let col = f1.len() - names.len() + j + 1;
                Ok(Marker::from_id(id_text(
                    path,
                    first_no,
                    col,
                    s,
                    "marker ID",
                )?))
            })
            .collect::<Result<_>>()?;
        // Columns counted from 1 in the header line.
        let lead = f1.len() - names.len();
        crate::error::unique_markers(
            path,
            "column",
            markers
                .iter()
                .enumerate()
                .map(|(j, mk)| (mk.id.as_str(), lead + j + 1)),
        )?;
        markers
    } else {
        (1..=m).map(|j| Marker::from_id(format!("m{j}"))).collect()
    };
    let why = format!(
        "every row must hold {}{m} dosages, as the {} does",
        if ids { "an ID and " } else { "" },
        if header { "header" } else { "first row" }
    );
    let parser = RowParser {
        path,
        delim,
        lead: usize::from(ids),
        markers: &markers,
        why_width: &why,
    };
    let mut collector = RowCollector::new(m);
    let mut id_lines: Vec<(String, usize)> = Vec::new();
    let mut lead = Vec::new();
    // Detected without an ID column: a whole number past 2 in the first
    // column is more likely an ID (1, 2, 3, …) than a bad dosage; say so.
    let guessed_no_ids = !ids && opts.ids.is_none();
    let mut handle = |line: &[u8], no: usize, collector: &mut RowCollector| -> Result<()> {
        let n = collector.n;
        let first_is_whole = guessed_no_ids
            && split_fields(line, delim)
                .first()
                .and_then(|f| std::str::from_utf8(f).ok())
                .is_some_and(|f| f.parse::<u64>().is_ok());
        parser
            .parse(line, no, collector.next_row(), &mut lead)
            .map_err(|e| match e {
                GenoError::Parse {
                    path,
                    line,
                    column: 1,
                    message,
                } if first_is_whole => GenoError::Parse {
                    path,
                    line,
                    column: 1,
                    message: format!(
                        "{message}. The first column was read as marker m1, since its first values look like dosages; if it holds individual IDs, give --geno-ids yes"
                    ),
                },
                other => other,
            })?;
        let id = lead.pop().unwrap_or_else(|| (n + 1).to_string());
        id_lines.push((id, no));
        Ok(())
    };
    if !header {
        handle(&first, first_no, &mut collector)?;
    }
    if let Some((l, no)) = &second {
        handle(l, *no, &mut collector)?;
    }
    while lines.next_line()? {
        if lines.buf.is_empty() || crate::textio::is_blank(&lines.buf) {
            continue;
        }
        let no = lines.line_no();
        handle(&lines.buf, no, &mut collector)?;
    }
    check_unique_ids(path, &id_lines)?;
    let individuals = id_lines
        .into_iter()
        .map(|(id, _)| Individual::from_id(id))
        .collect();
    Ok(collector.finish(individuals, markers))
}

/// Reads a PLINK `.raw` file (`--recode A`): FID IID PAT MAT SEX PHENOTYPE,
/// then one column per marker named `ID_A1` holding the A1 count, NA missing.
pub fn read_raw(path: &Path) -> Result<PackedGenotypes> {
    const WHAT: &str = "a PLINK .raw file (from --recode A)";
    let mut lines = LineReader::new(open_text(path, WHAT)?, path);
    if !lines.next_nonblank()? {
        return Err(GenoError::Empty {
            path: path.into(),
            expected: WHAT,
        });
    }
    let header = split_fields(&lines.buf, Delimiter::Whitespace);
    const LEAD: [&str; 6] = ["FID", "IID", "PAT", "MAT", "SEX", "PHENOTYPE"];
    for (k, want) in LEAD.iter().enumerate() {
        if header.get(k).map(|f| *f != want.as_bytes()).unwrap_or(true) {
            return Err(GenoError::parse(
                path,
                lines.line_no(),
                k + 1,
                format!(
                    "expected the .raw header FID IID PAT MAT SEX PHENOTYPE, found '{}'",
                    header.get(k).map(|f| show(f)).unwrap_or_default()
                ),
            ));
        }
    }
    let markers: Vec<Marker> = header
        .iter()
        .enumerate()
        .skip(6)
        .map(|(k, f)| {
            Ok(raw_marker(&id_text(
                path,
                lines.line_no(),
                k + 1,
                f,
                "column name",
            )?))
        })
        .collect::<Result<_>>()?;
    crate::error::unique_markers(
        path,
        "column",
        markers
            .iter()
            .enumerate()
            .map(|(j, mk)| (mk.id.as_str(), 7 + j)),
    )?;
    if markers.is_empty() {
        return Err(GenoError::invalid(
            path,
            "the header names no markers after PHENOTYPE",
        ));
    }
    let why = format!(
        "every row must hold the 6 leading columns and {} dosages",
        markers.len()
    );
    let parser = RowParser {
        path,
        delim: Delimiter::Whitespace,
        lead: 6,
        markers: &markers,
        why_width: &why,
    };
    let mut collector = RowCollector::new(markers.len());
    let mut individuals = Vec::new();
    let mut id_lines = Vec::new();
    let mut lead = Vec::new();
    while lines.next_line()? {
        if crate::textio::is_blank(&lines.buf) {
            continue;
        }
        parser.parse(&lines.buf, lines.line_no(), collector.next_row(), &mut lead)?;
        id_lines.push((lead[1].clone(), lines.line_no()));
        individuals.push(Individual {
            fid: lead[0].clone(),
            iid: lead[1].clone(),
            father: lead[2].clone(),
            mother: lead[3].clone(),
            sex: lead[4].clone(),
            phenotype: lead[5].clone(),
        });
    }
    if individuals.is_empty() {
        return Err(GenoError::invalid(
            path,
            "the file has a header but no individuals",
        ));
    }
    check_unique_ids(path, &id_lines)?;
    Ok(collector.finish(individuals, markers))
}

/// Splits a `.raw` column name `ID_A1` or `ID_A1(/A2)` into a marker.
fn raw_marker(name: &str) -> Marker {
    let (base, a2) = match name.strip_suffix(')').and_then(|s| s.rsplit_once("(/")) {
        Some((b, a2)) => (b, a2.to_string()),
        None => (name, "0".to_string()),
    };
    let (id, a1) = base.rsplit_once('_').unwrap_or((base, "0"));
    Marker {
        a1: a1.to_string(),
        a2,
        ..Marker::from_id(id)
    }
}

/// Formats a phenotype as plink1.9 writes it in `.raw` files: `%g` with six
/// significant digits, `-9` when missing or not a number.
pub fn plink_pheno(text: &str) -> String {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v != -9.0 => format_g6(v),
        _ => "-9".to_string(),
    }
}

/// C's `%g` with precision 6.
pub fn format_g6(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    // Round to 6 significant digits first; rounding can change the exponent.
    let sci = format!("{:.5e}", v);
    let (mant, e) = sci.split_once('e').expect("exponent");
    let e: i32 = e.parse().unwrap_or(exp);
    if (-4..6).contains(&e) {
        let decimals = (5 - e).max(0) as usize;
        let s = format!("{:.*}", decimals, v);
        trim_zeros(&s)
    } else {
        let mant = trim_zeros(mant);
        format!("{}e{}{:02}", mant, if e < 0 { '-' } else { '+' }, e.abs())
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Writes a PLINK `.raw` file as `plink1.9 --recode A` does.
pub fn write_raw(g: &PackedGenotypes, path: &Path) -> Result<()> {
    let ws = Delimiter::Whitespace;
    for (i, ind) in g.individuals().iter().enumerate() {
        for (what, v) in [
            ("family ID", &ind.fid),
            ("individual ID", &ind.iid),
            ("father ID", &ind.father),
            ("mother ID", &ind.mother),
            ("sex", &ind.sex),
        ] {
            if let Some(why) = unwritable(v, ws) {
                return Err(unwritable_error(
                    path,
                    what,
                    v,
                    "individual",
                    i,
                    why,
                    ".raw",
                ));
            }
        }
    }
    for (j, mk) in g.markers().iter().enumerate() {
        if let Some(why) = unwritable(&mk.id, ws) {
            return Err(unwritable_error(
                path, "ID", &mk.id, "marker", j, why, ".raw",
            ));
        }
        // The column is ID_A1: the reader splits at the last underscore.
        let why = unwritable(&mk.a1, ws).or_else(|| {
            (mk.a1.contains('_') || mk.a1.contains('('))
                .then_some("holds '_' or '(', which mark the allele in a .raw column name")
        });
        if let Some(why) = why {
            return Err(unwritable_error(
                path,
                "allele A1",
                &mk.a1,
                "marker",
                j,
                why,
                ".raw",
            ));
        }
    }
    let mut out = AtomicFile::create(path)?;
    let mut line = String::from("FID IID PAT MAT SEX PHENOTYPE");
    for mk in g.markers() {
        line.push(' ');
        line.push_str(&mk.id);
        line.push('_');
        line.push_str(&mk.a1);
    }
    line.push('\n');
    out.write_all(line.as_bytes())?;
    let mut buf = Vec::with_capacity(2 * g.n_markers() + 64);
    for (i, ind) in g.individuals().iter().enumerate() {
        buf.clear();
        write!(
            buf,
            "{} {} {} {} {} {}",
            ind.fid,
            ind.iid,
            ind.father,
            ind.mother,
            ind.sex,
            plink_pheno(&ind.phenotype)
        )
        .expect("write to Vec");
        push_dosages(g, i, b' ', b"NA", &mut buf);
        buf.push(b'\n');
        out.write_all(&buf)?;
    }
    out.commit()
}

/// A field the file cannot hold as written (see [`unwritable`]).
fn unwritable_error(
    path: &Path,
    what: &str,
    value: &str,
    of: &str,
    index: usize,
    why: &str,
    kind: &str,
) -> GenoError {
    GenoError::invalid(
        path,
        format!(
            "the {what} '{}' of {of} {} {why}, so a {kind} file would not read back as written; rename it, or write another format",
            value.escape_debug(),
            index + 1
        ),
    )
}

fn push_dosages(g: &PackedGenotypes, i: usize, sep: u8, missing: &[u8], buf: &mut Vec<u8>) {
    let (byte, shift) = (i / 4, 2 * (i % 4));
    let data = g.packed();
    let stride = g.stride();
    for j in 0..g.n_markers() {
        buf.push(sep);
        let code = (data[j * stride + byte] >> shift) & 3;
        match CODE_DOSAGE[code as usize] {
            Some(d) => buf.push(b'0' + d),
            None => buf.extend_from_slice(missing),
        }
    }
}

/// Writes a dosage matrix: a header `id,<marker IDs>`, then one row per
/// individual (its IID and the A1 dosages, NA when missing).
pub fn write_delimited(g: &PackedGenotypes, path: &Path, delim: Delimiter) -> Result<()> {
    let sep = delim.byte();
    let kind = match delim {
        Delimiter::Comma => "comma-separated",
        Delimiter::Tab => "tab-separated",
        Delimiter::Whitespace => "space-separated",
    };
    for (j, mk) in g.markers().iter().enumerate() {
        if let Some(why) = unwritable(&mk.id, delim) {
            return Err(unwritable_error(path, "ID", &mk.id, "marker", j, why, kind));
        }
    }
    for (i, ind) in g.individuals().iter().enumerate() {
        if let Some(why) = unwritable(&ind.iid, delim) {
            return Err(unwritable_error(
                path,
                "ID",
                &ind.iid,
                "individual",
                i,
                why,
                kind,
            ));
        }
    }
    let mut out = AtomicFile::create(path)?;
    let mut buf: Vec<u8> = b"id".to_vec();
    for mk in g.markers() {
        buf.push(sep);
        buf.extend_from_slice(mk.id.as_bytes());
    }
    buf.push(b'\n');
    out.write_all(&buf)?;
    for (i, ind) in g.individuals().iter().enumerate() {
        buf.clear();
        buf.extend_from_slice(ind.iid.as_bytes());
        push_dosages(g, i, sep, b"NA", &mut buf);
        buf.push(b'\n');
        out.write_all(&buf)?;
    }
    out.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g6_matches_c_printf() {
        for (v, s) in [
            (0.224991591484104, "0.224992"),
            (-0.97454252753557, "-0.974543"),
            (1.0, "1"),
            (123456.7, "123457"),
            (1234567.0, "1.23457e+06"),
            (0.0001234567, "0.000123457"),
            (0.00001234567, "1.23457e-05"),
            (-2.5, "-2.5"),
            (999999.5, "1e+06"),
        ] {
            assert_eq!(format_g6(v), s, "{v}");
        }
    }

    #[test]
    fn raw_marker_names() {
        let m = raw_marker("rs1_A");
        assert_eq!((m.id.as_str(), m.a1.as_str()), ("rs1", "A"));
        let m = raw_marker("snp_x_G(/T)");
        assert_eq!(
            (m.id.as_str(), m.a1.as_str(), m.a2.as_str()),
            ("snp_x", "G", "T")
        );
    }
}
