//! Putting mail into the queue from local programs: qmail-inject (complete the header,
//! hand the message to qmail-queue), the sendmail compatibility wrapper, predate and
//! datemail.
//!
//! * [`token822`], [`quote`], [`hfield`], [`rewrite`], [`headerbody`]: the RFC 822
//!   pieces qmail-inject is built from;
//! * [`inject`]: qmail-inject itself;
//! * [`sendmail`]: the wrapper translating sendmail's options;
//! * [`predate`]: running a program with a Date field in local time before its input;
//! * [`datemail`]: predate in front of sendmail.

pub mod datemail;
pub mod headerbody;
pub mod hfield;
pub mod inject;
pub mod predate;
pub mod quote;
pub mod rewrite;
pub mod sendmail;
mod sys;
pub mod token822;
