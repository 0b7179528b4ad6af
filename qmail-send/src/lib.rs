//! Delivery: qmail-send and the daemons that work for it (netqmail's qmail-send,
//! qmail-start, qmail-lspawn, qmail-rspawn, qmail-clean, splogger).
//!
//! * [`send`] - the scheduler (queue states of INTERNALS, retries, bounces, the log);
//! * [`spawn`] - the delivery command protocol and the two spawns;
//! * [`clean`] - qmail-clean;
//! * [`start`] - qmail-start's descriptor plumbing and ids;
//! * [`splogger`] - the syslog logger.

pub mod bounded;
pub mod clean;
pub mod log;
pub mod send;
pub mod spawn;
pub mod splogger;
pub mod start;
mod sys;
