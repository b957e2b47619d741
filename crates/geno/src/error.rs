//! The errors of the genotype crate. Every message names the file and, where
//! it applies, the line and column, and says what was expected.

use std::path::PathBuf;

/// A failure to read, check or write genotype and phenotype files.
#[derive(Debug, thiserror::Error)]
pub enum GenoError {
    /// The operating system refused to open, read or write a file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file holds no bytes, or nothing but blank lines.
    #[error("{}: the file is empty; expected {expected}", path.display())]
    Empty {
        path: PathBuf,
        expected: &'static str,
    },

    /// A gzip file was given where plain text was expected.
    #[error(
        "{}: the file is gzip-compressed, but a plain-text file was expected; decompress it first (gunzip -k {})",
        path.display(),
        path.display()
    )]
    Gzip { path: PathBuf },

    /// A `.bed` file that does not start with the SNP-major PLINK 1 magic bytes.
    #[error(
        "{}: not a PLINK 1 SNP-major .bed file: the first bytes are {found}, expected 6c 1b 01",
        path.display()
    )]
    BadMagic { path: PathBuf, found: String },

    /// A `.bed` file whose size does not fit the `.bim` and `.fam` line counts.
    #[error("{}: {message}", path.display())]
    BedSize { path: PathBuf, message: String },

    /// A value that cannot be read, at a known line and column (both 1-based).
    #[error("{}, line {line}, column {column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A row with a different number of fields from the rows before it.
    #[error(
        "{}, line {line}: found {found} fields, expected {expected} ({why})",
        path.display()
    )]
    Ragged {
        path: PathBuf,
        line: usize,
        found: usize,
        expected: usize,
        why: String,
    },

    /// Two individuals share one ID.
    #[error(
        "{}: the individual ID '{id}' appears twice, on lines {first} and {second}; IDs must be unique",
        path.display()
    )]
    DuplicateId {
        path: PathBuf,
        id: String,
        first: usize,
        second: usize,
    },

    /// Two markers share one ID: a model's markers are matched by ID, so the
    /// second would be read from the first's column.
    #[error(
        "{}: the marker ID '{id}' appears twice, on {unit}s {first} and {second}; marker IDs must be unique (plink2 --set-all-var-ids @:#:$r:$a renames them)",
        path.display()
    )]
    DuplicateMarker {
        path: PathBuf,
        id: String,
        /// `line` (a .bim) or `column` (a header).
        unit: &'static str,
        first: usize,
        second: usize,
    },

    /// A VCF or BCF file that cannot be read at a known line or record, and
    /// sample where one is to blame.
    #[error(
        "{}, {at}{}: {message}",
        path.display(),
        sample.as_ref().map(|s| format!(", sample '{s}'")).unwrap_or_default()
    )]
    Vcf {
        path: PathBuf,
        at: crate::vcf::VcfAt,
        sample: Option<String>,
        message: String,
    },

    /// Anything else that is wrong with the content of a file.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },

    /// A request that cannot be met (bad option values, unknown format).
    #[error("{0}")]
    Usage(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, GenoError>;

impl GenoError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GenoError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        GenoError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn parse(
        path: impl Into<PathBuf>,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        GenoError::Parse {
            path: path.into(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Refuses a marker ID seen twice among `(id, line or column)`.
pub(crate) fn unique_markers<'a>(
    path: &std::path::Path,
    unit: &'static str,
    ids: impl Iterator<Item = (&'a str, usize)>,
) -> Result<()> {
    let mut seen: std::collections::HashMap<&str, usize, crate::FastHash> =
        std::collections::HashMap::with_capacity_and_hasher(ids.size_hint().0, Default::default());
    for (id, at) in ids {
        if let Some(&first) = seen.get(id) {
            return Err(GenoError::DuplicateMarker {
                path: path.into(),
                id: id.to_string(),
                unit,
                first,
                second: at,
            });
        }
        seen.insert(id, at);
    }
    Ok(())
}
