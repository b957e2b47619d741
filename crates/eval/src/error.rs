//! Errors of the evaluation crate: each carries what a caller needs to act
//! on it (the option and its value, the file and its line), and prints as
//! one sentence.

use std::path::PathBuf;

fn at_line(path: &std::path::Path, line: &Option<usize>, message: &str) -> String {
    match line {
        Some(l) => format!("{}, line {l}: {message}", path.display()),
        None => format!("{}: {message}", path.display()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// An option that cannot be used: the flag, the value given, and why.
    #[error("{flag} {value}: {message}")]
    Option {
        flag: &'static str,
        value: String,
        message: String,
    },
    /// Leave-group-out folds from fewer than 2 groups.
    #[error("leave-group-out folds need at least 2 groups; found {found}")]
    TooFewGroups { found: usize },
    /// A file that is not what it should be (a fold file, a metrics or
    /// predictions table): the file, the line at fault when there is one
    /// (from 1), and why.
    #[error("{}", at_line(path, line, message))]
    File {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("plot: {0}")]
    Plot(String),
}

impl EvalError {
    pub fn option(
        flag: &'static str,
        value: impl std::fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        EvalError::Option {
            flag,
            value: value.to_string(),
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, EvalError>;
