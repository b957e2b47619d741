//! Shared text-file plumbing: opening with checks for empty and gzip files,
//! line reading, field splitting, and atomic output files.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{GenoError, Result};

/// How fields are separated on a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimiter {
    Comma,
    Tab,
    /// Runs of spaces and tabs.
    Whitespace,
}

impl Delimiter {
    /// Detects the delimiter from one line: a tab, else a comma, else whitespace.
    pub fn detect(line: &[u8]) -> Delimiter {
        if line.contains(&b'\t') {
            Delimiter::Tab
        } else if line.contains(&b',') {
            Delimiter::Comma
        } else {
            Delimiter::Whitespace
        }
    }

    /// The byte written between fields.
    pub fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Tab => b'\t',
            Delimiter::Whitespace => b' ',
        }
    }
}

/// Why `value` cannot be written as one field of a `delim`-separated file
/// and read back as itself (`None` when it can). The readers trim white
/// space at a field's ends, strip quotes and split at the separator, so a
/// writer refuses what they would change instead of writing a file that
/// reads back different.
pub(crate) fn unwritable(value: &str, delim: Delimiter) -> Option<&'static str> {
    if value.is_empty() {
        return Some("is empty");
    }
    if value.trim_ascii() != value {
        return Some("starts or ends with white space, which a reader trims");
    }
    if value.contains('"') {
        return Some("holds a double quote");
    }
    if value.chars().any(char::is_control) {
        return Some("holds a control character");
    }
    match delim {
        Delimiter::Comma if value.contains(',') => Some("holds a comma, the file's separator"),
        Delimiter::Whitespace if value.contains(' ') => {
            Some("holds a space, which separates the file's fields")
        }
        _ => None,
    }
}

/// Opens a text file for reading, refusing an empty or gzip-compressed file.
pub(crate) fn open_text(path: &Path, expected: &'static str) -> Result<BufReader<File>> {
    let file = File::open(path).map_err(|e| GenoError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader.fill_buf().map_err(|e| GenoError::io(path, e))?;
    if head.is_empty() {
        return Err(GenoError::Empty {
            path: path.to_path_buf(),
            expected,
        });
    }
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return Err(GenoError::Gzip {
            path: path.to_path_buf(),
        });
    }
    // Binary data (a .bed read as text, say): say so instead of quoting it.
    let probe = &head[..head.len().min(4096)];
    let binary = probe
        .iter()
        .filter(|&&b| b == 0 || (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')))
        .count();
    if binary * 20 > probe.len() || probe.contains(&0) {
        let start: Vec<String> = head.iter().take(3).map(|b| format!("{b:02x}")).collect();
        let hint = if head.starts_with(&[0x6c, 0x1b]) {
            " — the magic number of a PLINK .bed"
        } else {
            ""
        };
        return Err(GenoError::invalid(
            path,
            format!(
                "this is binary data, not text (it starts with the bytes {}{hint}); expected {expected}",
                start.join(" ")
            ),
        ));
    }
    Ok(reader)
}

/// The longest line a text reader takes: a header of 10^6 marker IDs is
/// about 15 MB, so a longer line is not a row of a table but a file of
/// another kind (or one without line breaks), and it is refused before it
/// is held in memory.
pub const MAX_LINE: usize = 256 << 20;

/// The largest file read whole (phenotype tables, fold files, specs,
/// metrics tables).
pub const MAX_SMALL: u64 = 1 << 30;

/// Reads a whole text file of at most [`MAX_SMALL`] bytes; a larger one is
/// an `InvalidData` error (which the caller reports with the path), and is
/// not read into memory.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let mut out = String::new();
    File::open(path)?
        .take(MAX_SMALL + 1)
        .read_to_string(&mut out)?;
    if out.len() as u64 > MAX_SMALL {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file is larger than {MAX_SMALL} bytes, more than a table or spec holds"),
        ));
    }
    Ok(out)
}

/// Reads lines one by one into a reused buffer, counting line numbers and
/// stripping the line ending (`\n` or `\r\n`).
pub(crate) struct LineReader<R> {
    inner: R,
    path: PathBuf,
    line_no: usize,
    limit: usize,
    pub buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, path: &Path) -> Self {
        LineReader {
            inner,
            path: path.to_path_buf(),
            line_no: 0,
            limit: MAX_LINE,
            buf: Vec::new(),
        }
    }

    /// The same reader with another line-length bound (for tests).
    #[cfg(test)]
    fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Reads the next line into `self.buf`; returns `false` at the end.
    pub fn next_line(&mut self) -> Result<bool> {
        self.buf.clear();
        let n = (&mut self.inner)
            .take(self.limit as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| GenoError::io(&self.path, e))?;
        if n == 0 {
            return Ok(false);
        }
        self.line_no += 1;
        if self.buf.len() > self.limit && self.buf.last() != Some(&b'\n') {
            return Err(GenoError::invalid(
                &self.path,
                format!(
                    "line {} runs past {} bytes without a line break; this is not a table of one row per line",
                    self.line_no, self.limit
                ),
            ));
        }
        // A UTF-8 byte-order mark (spreadsheets write one) is not data.
        if self.line_no == 1 && self.buf.starts_with(&[0xef, 0xbb, 0xbf]) {
            self.buf.drain(..3);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(true)
    }

    /// Reads the next line that is not blank; returns `false` at the end.
    pub fn next_nonblank(&mut self) -> Result<bool> {
        while self.next_line()? {
            if !is_blank(&self.buf) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The 1-based number of the line in `self.buf`.
    pub fn line_no(&self) -> usize {
        self.line_no
    }
}

pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

/// Splits a line into fields, trimming spaces and one pair of surrounding
/// double quotes from each field.
pub(crate) fn split_fields(line: &[u8], delim: Delimiter) -> Vec<&[u8]> {
    match delim {
        // As PLINK reads its text files: any ASCII white space separates
        // (a stray carriage return or form feed included).
        Delimiter::Whitespace => line
            .split(u8::is_ascii_whitespace)
            .filter(|f| !f.is_empty())
            .map(unquote)
            .collect(),
        d => line
            .split(|b| *b == d.byte())
            .map(trim)
            .map(unquote)
            .collect(),
    }
}

pub(crate) fn trim(field: &[u8]) -> &[u8] {
    field.trim_ascii()
}

pub(crate) fn unquote(field: &[u8]) -> &[u8] {
    if field.len() >= 2 && field[0] == b'"' && field[field.len() - 1] == b'"' {
        &field[1..field.len() - 1]
    } else {
        field
    }
}

/// Shows a field for an error message, shortened if long.
pub(crate) fn show(field: &[u8]) -> String {
    let s = String::from_utf8_lossy(field);
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.into_owned()
    }
}

/// An ID field as text, refusing bytes that are not UTF-8: read lossily,
/// two IDs that differ only in such bytes would look the same.
pub(crate) fn id_text(
    path: &Path,
    line: usize,
    column: usize,
    field: &[u8],
    what: &str,
) -> Result<String> {
    std::str::from_utf8(field).map(str::to_string).map_err(|_| {
        GenoError::parse(
            path,
            line,
            column,
            format!(
                "the {what} '{}' is not valid UTF-8 text; IDs must be UTF-8 (save the file as UTF-8)",
                show(field)
            ),
        )
    })
}

pub(crate) fn to_string(field: &[u8]) -> String {
    String::from_utf8_lossy(field).into_owned()
}

/// Reads a whole (small) file, refusing empty and gzip files.
pub(crate) fn read_small(path: &Path, expected: &'static str) -> Result<Vec<u8>> {
    let reader = open_text(path, expected)?;
    let mut out = Vec::new();
    reader
        .take(MAX_SMALL + 1)
        .read_to_end(&mut out)
        .map_err(|e| GenoError::io(path, e))?;
    if out.len() as u64 > MAX_SMALL {
        return Err(GenoError::invalid(
            path,
            format!("the file is larger than {MAX_SMALL} bytes; expected {expected}"),
        ));
    }
    Ok(out)
}

/// An output file that appears under its final name only when complete:
/// it is written to a temporary file beside the target and renamed by
/// [`AtomicFile::commit`]. Dropped without commit, the temporary file is removed.
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary file for `target`.
    pub fn create(target: impl AsRef<Path>) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        let name = target
            .file_name()
            .ok_or_else(|| GenoError::Usage(format!("{}: not a file name", target.display())))?
            .to_string_lossy()
            .into_owned();
        let tmp = target.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        // Errors name the output asked for, not the hidden temporary file.
        let file = File::create(&tmp).map_err(|e| GenoError::io(&target, e))?;
        Ok(AtomicFile {
            target,
            tmp,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The writer for the content.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.writer.as_mut().expect("AtomicFile used after commit")
    }

    /// Writes bytes, naming the target file in any error.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let target = self.target.clone();
        self.writer()
            .write_all(bytes)
            .map_err(|e| GenoError::io(target, e))
    }

    /// Flushes, syncs and renames the temporary file onto the target.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("AtomicFile committed twice");
        let file = writer
            .into_inner()
            .map_err(|e| GenoError::io(&self.target, e.into_error()))?;
        file.sync_all()
            .map_err(|e| GenoError::io(&self.target, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target).map_err(|e| GenoError::io(&self.target, e))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.writer = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a whole file atomically.
pub fn write_atomic(target: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(target)?;
    f.write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn a_line_past_the_bound_is_an_error_naming_the_file_and_line() {
        let text = format!("short\n{}\nafter\n", "x".repeat(100));
        let mut r = LineReader::new(text.as_bytes(), Path::new("g.csv")).with_limit(64);
        assert!(r.next_line().unwrap());
        assert_eq!(r.buf, b"short");
        let e = r.next_line().unwrap_err().to_string();
        assert!(
            e.contains("g.csv") && e.contains("line 2 runs past 64 bytes"),
            "{e}"
        );
        // A line of exactly the bound, with or without its break, is fine.
        let text = format!("{}\n{}", "y".repeat(64), "z".repeat(64));
        let mut r = LineReader::new(text.as_bytes(), Path::new("g.csv")).with_limit(64);
        assert!(r.next_line().unwrap() && r.buf.len() == 64);
        assert!(r.next_line().unwrap() && r.buf.len() == 64);
        assert!(!r.next_line().unwrap());
    }
}
