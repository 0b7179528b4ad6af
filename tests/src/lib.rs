//! Harness for the end-to-end tests, one module a concern:
//!
//! - [`programs`]: the built programs and the real peers (tcpserver, swaks, Python);
//! - [`home`]: a qmail home of its own for each test, single-user mode, Maildirs, small
//!   file systems (tmpfs), executable scripts;
//! - [`users`]: the netqmail users, other system users, the single-user runner;
//! - [`queue`]: what landed in a home's queue, queueing with the real qmail-queue (or any
//!   program run as qmail-queue is run);
//! - [`process`]: servers killed when dropped, programs on pipes, the mail system
//!   (qmail-start) and its log, /proc readers, hang guards;
//! - [`net`]: free ports, tcpserver (with a log of descriptor 2, as qmaild in root mode);
//! - [`smtp_peer`]: a scripted SMTP client and the one fake SMTP server;
//! - [`fakes`]: the stand-ins for qmail-local, qmail-remote, qmail-getpw and
//!   checkpassword, each once;
//! - [`certs`]: test certificates, the test PKI, a home with a TLS certificate.
//!
//! A helper two test modules need belongs here, in the module of its concern.
//!
//! Every public name is also re-exported here (and the single-user helpers in [`single`]),
//! so a test writes `use rqmail_tests::{Home, Sink, bin}`.
//!
//! The programs must be built first (`cargo build --workspace`); the README's test command
//! does that. A missing program or peer is a test failure with a message saying so, never a
//! silent skip.

#![forbid(unsafe_code)]

pub mod certs;
pub mod fakes;
pub mod home;
pub mod net;
pub mod process;
pub mod programs;
pub mod queue;
pub mod smtp_peer;
pub mod users;

pub use home::{Home, walk};
pub use net::{free_port, tcpserver, tcpserver_opts, tcpserver_with, wait_for_port};
pub use process::{
    KillOnDrop, Piped, QMAIL_LOG_FORMATS, children, fmt_match, proc_stat, proc_status,
    qmail_log_line, run_with_input,
};
pub use programs::{bin, bin_dir, is_root, python, tool};
pub use queue::Queued;
pub use smtp_peer::{Sink, SinkMessage, Smtp};
pub use users::{
    QMAIL_USERS, ensure_qmail_users, ensure_system_user, group_id, lock_file, user_ids,
};

/// Single-user mode in tests: programs run as `nobody` when the suite runs as root (as
/// the invoking user otherwise), with the files they need given to that user; the mail
/// system running on such a home.
pub mod single {
    pub use crate::home::{root_mode_home, script, user_cmd, user_file, user_home};
    pub use crate::process::{System, WAIT, file_lines, wait_child, wait_until};
    pub use crate::queue::{inject, queue_with};
    pub use crate::users::{chown_tree, chown_user, nobody, runner_ids, runner_name};
}
