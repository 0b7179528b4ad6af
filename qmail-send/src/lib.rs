//! Delivery: qmail-send and the daemons that work for it (netqmail's qmail-send,
//! qmail-start, qmail-lspawn, qmail-rspawn, qmail-clean, splogger).
//!
//! * `send` - the scheduler (queue states of INTERNALS, retries, bounces, the log);
//! * `spawn` - the delivery command protocol and the two spawns;
//! * `clean` - qmail-clean;
//! * `start` - qmail-start's descriptor plumbing and ids;
//! * `splogger` - the syslog logger.
//!
//! Other crates use the programs, and `bounce` (for its fuzz target).

mod bounded;
mod clean;
mod log;
mod send;
mod spawn;
mod splogger;
mod start;
mod sys;

pub use clean::main as qmail_clean;
/// qmail-send's bounce composition, for the fuzz targets.
pub use send::bounce;
pub use send::main as qmail_send;
pub use spawn::local::main as qmail_lspawn;
pub use spawn::remote::main as qmail_rspawn;
pub use splogger::main as splogger;
pub use start::main as qmail_start;
