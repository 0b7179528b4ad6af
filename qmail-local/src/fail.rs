//! How a delivery ends when it does not succeed: an exit code (permanent or temporary)
//! and, usually, one line for the report.

use control::{Exit, ExitError};
use std::io::Write;

/// A failed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    /// [`Exit::PERM`] (bounce) or [`Exit::TEMP`] (try again later).
    pub code: Exit,
    /// The report line, without its newline; `None` when the text was already written
    /// (a program's own output).
    pub text: Option<Vec<u8>>,
}

impl Fail {
    /// A temporary failure.
    pub fn temp(text: impl Into<Vec<u8>>) -> Fail {
        Fail {
            code: Exit::TEMP,
            text: Some(text.into()),
        }
    }

    /// A permanent failure.
    pub fn perm(text: impl Into<Vec<u8>>) -> Fail {
        Fail {
            code: Exit::PERM,
            text: Some(text.into()),
        }
    }

    /// A failure whose report was already written.
    pub fn silent(code: Exit) -> Fail {
        Fail { code, text: None }
    }

    /// Writes the report line on standard error (which qmail-lspawn joins to standard
    /// output) and returns the exit code.
    pub fn report(&self) -> Exit {
        if let Some(t) = &self.text {
            warn(t);
        }
        self.exit()
    }
}

impl ExitError for Fail {
    fn exit(&self) -> Exit {
        self.code
    }
}

/// Writes `text` and a newline on standard error, in one write.
pub fn warn(text: &[u8]) {
    let mut line = Vec::with_capacity(text.len() + 1);
    line.extend_from_slice(text);
    line.push(b'\n');
    let _ = std::io::stderr().write_all(&line);
}

/// Concatenates byte strings (report lines quote file names and addresses byte for
/// byte, as netqmail does).
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
