//! Putting mail into the queue from local programs: qmail-inject (complete the header,
//! hand the message to qmail-queue), the sendmail compatibility wrapper, predate and
//! datemail.
//!
//! * `token822`, `hfield`, `rewrite`, `headerbody`: the RFC 822 pieces qmail-inject is
//!   built from (quoting is control's `address`);
//! * `inject`: qmail-inject itself;
//! * `sendmail`: the wrapper translating sendmail's options;
//! * `predate`: running a program with a Date field in local time before its input;
//! * `datemail`: predate in front of sendmail.

mod datemail;
mod headerbody;
mod hfield;
mod inject;
mod predate;
mod rewrite;
mod sendmail;
mod sys;
mod token822;

pub use datemail::main as datemail;
pub use inject::main as qmail_inject;
pub use predate::main as predate;
pub use sendmail::main as sendmail;

/// The parsers of untrusted header text, for the fuzz targets.
pub use headerbody::{HeaderBody, Limits};
pub use hfield::{known as known_field, valid as valid_field};
pub use rewrite::Rewriter;
pub use token822::{Syntax, Token, parse as parse_tokens, unparse as unparse_tokens};
