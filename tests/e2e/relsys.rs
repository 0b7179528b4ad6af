//! The helpers the reliability modules (hostile, fulldisk, privileges, load, crash) share,
//! gathered under one name: a whole mail system on a test home in single-user mode,
//! qmail-smtpd on pipes, Maildirs, /proc readers. They live in the harness
//! (rqmail_tests); this module only re-exports them.
//!
//! When the tests run as root, single-user mode runs every program as `nobody` (setpriv)
//! in a home `nobody` owns, so that no id switching happens.

#![allow(unused_imports)]

pub use rqmail_tests::bin as prog;
pub use rqmail_tests::home::{mail_home, maildir_count, maildir_messages};
pub use rqmail_tests::process::{open_fds, proc_kb};
pub use rqmail_tests::queue::queue_empty;
pub use rqmail_tests::single::{System, WAIT, chown_tree, nobody, script, user_cmd, wait_until};
pub use rqmail_tests::{Piped, children, proc_status, walk};
