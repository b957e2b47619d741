//! The kernels' errors: parameters a kernel cannot run with, and buffers
//! of the wrong length, named by the operation and the buffer, so that a
//! caller gets a value to report instead of a panic.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// The options cannot apply to the input (a kernel longer than the
    /// padded input, a stride of 0, groups that do not divide the channels).
    Params { op: &'static str, message: String },
    /// A buffer's length does not match the shapes given.
    Length {
        op: &'static str,
        buffer: &'static str,
        found: usize,
        expected: usize,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Params { op, message } => write!(f, "{op}: {message}"),
            KernelError::Length {
                op,
                buffer,
                found,
                expected,
            } => write!(
                f,
                "{op}: {buffer} holds {found} values, but the shapes given need {expected}"
            ),
        }
    }
}

impl std::error::Error for KernelError {}

pub type Result<T> = std::result::Result<T, KernelError>;

/// Checks a buffer's length.
pub(crate) fn check_len(
    op: &'static str,
    buffer: &'static str,
    found: usize,
    expected: usize,
) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(KernelError::Length {
            op,
            buffer,
            found,
            expected,
        })
    }
}

/// Refuses parameters with `message` unless `ok`.
pub(crate) fn require(op: &'static str, ok: bool, message: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(KernelError::Params {
            op,
            message: message.to_string(),
        })
    }
}
