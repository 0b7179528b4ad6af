//! Putting mail into the queue from local programs: qmail-inject (complete the header,
//! hand the message to qmail-queue), the sendmail compatibility wrapper, predate and
//! datemail.
//!
//! * `rewrite`: completing addresses with the default host and domain (the header
//!   parsers are control's `rfc822`, quoting is control's `address`);
//! * `inject`: qmail-inject itself;
//! * `sendmail`: the wrapper translating sendmail's options;
//! * `predate`: running a program with a Date field in local time before its input;
//! * `datemail`: predate in front of sendmail;
//! * `mailsubj`: a message with a subject and recipients from the arguments;
//! * `feed`: running a program with header text before standard input (predate,
//!   mailsubj).

mod datemail;
mod feed;
mod inject;
mod mailsubj;
mod predate;
mod rewrite;
mod sendmail;
mod sys;

pub use datemail::main as datemail;
pub use inject::main as qmail_inject;
pub use mailsubj::main as mailsubj;
pub use predate::main as predate;
pub use sendmail::main as sendmail;

/// Address completion, for the fuzz targets (the header parsers are control::rfc822).
pub use rewrite::Rewriter;
