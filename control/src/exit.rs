//! Exit codes: the one type every rqmail program exits with, each code named once with
//! its meaning in qmail's interfaces. An error type knows the code it means
//! ([`ExitError`], in the manner of uutils' UError), and a program's `main` turns its
//! outcome into an [`Exit`] in one place.

use std::fmt;

/// The exit status of a qmail program (0 to 255).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Exit(u8);

impl Exit {
    /// Success: delivered, queued, done.
    pub const OK: Exit = Exit(0);
    /// A failure with no qmail meaning of permanent or temporary: qmail-smtpd's session
    /// ended without QUIT, rqmail-install -c found deviations.
    pub const FAILURE: Exit = Exit(1);
    /// A permanent failure: bad usage, a bounce, give up (qmail-command(8), qmail-inject,
    /// qmail-local, the .qmail helpers, ...).
    pub const PERM: Exit = Exit(100);
    /// A temporary failure: try again later.
    pub const TEMP: Exit = Exit(111);

    // qmail-queue(8).
    /// Address too long.
    pub const QQ_ADDR_TOO_LONG: Exit = Exit(11);
    /// Out of memory.
    pub const QQ_NOMEM: Exit = Exit(51);
    /// Timeout (qmail-queue's 24-hour self-destruct).
    pub const QQ_TIMEOUT: Exit = Exit(52);
    /// Write error, e.g. disk full.
    pub const QQ_WRITE: Exit = Exit(53);
    /// Unable to read the message or envelope.
    pub const QQ_READ: Exit = Exit(54);
    /// Unable to read a configuration file (not used by qmail-queue itself; its front
    /// ends use it, qmail-dkim for its keys).
    pub const QQ_CONFIG: Exit = Exit(55);
    /// Problem with the qmail home directory.
    pub const QQ_HOME: Exit = Exit(61);
    /// Problem with the queue directory.
    pub const QQ_QUEUEDIR: Exit = Exit(62);
    /// Problem with queue/pid.
    pub const QQ_PID: Exit = Exit(63);
    /// Problem with queue/mess.
    pub const QQ_MESS: Exit = Exit(64);
    /// Problem with queue/intd.
    pub const QQ_INTD: Exit = Exit(65);
    /// Problem with queue/todo.
    pub const QQ_TODO: Exit = Exit(66);
    /// Internal bug.
    pub const QQ_BUG: Exit = Exit(81);
    // The codes qmail-queue(8) reserves for a qmail-queue that sends elsewhere
    // (qmail-qmqpc; with QQ_CONFIG, 55, above).
    /// The mail server refused the message for good.
    pub const QQ_PERM_REFUSED: Exit = Exit(31);
    /// Unable to make a network connection (no socket).
    pub const QQ_SOCKET: Exit = Exit(56);
    /// The mail server refused the message for now.
    pub const QQ_TEMP_REFUSED: Exit = Exit(71);
    /// The connection to the mail server timed out.
    pub const QQ_CONN_TIMEOUT: Exit = Exit(72);
    /// The mail server refused the connection.
    pub const QQ_CONN_REFUSED: Exit = Exit(73);
    /// Communication with the mail server failed.
    pub const QQ_CONN_FAILED: Exit = Exit(74);
    /// Envelope format error.
    pub const QQ_FORMAT: Exit = Exit(91);
    /// The queue program could not be run: netqmail's qmail.c child exits 120 and its
    /// caller says "unable to exec qq"; a qmail-queue front end whose exec fails does
    /// the same.
    pub const QQ_EXEC: Exit = Exit(120);

    // netqmail's qlx.h: how qmail-lspawn's child (and qmail-getpw) say why a local
    // delivery could not start.
    /// Internal qmail-lspawn bug (a malformed assignment, ids that cannot be set).
    pub const QLX_USAGE: Exit = Exit(112);
    /// The delivery would run as root.
    pub const QLX_ROOT: Exit = Exit(113);
    /// A home directory could not be checked for a temporary reason.
    pub const QLX_NFS: Exit = Exit(115);
    /// No alias user.
    pub const QLX_NOALIAS: Exit = Exit(116);
    /// users/cdb could not be read.
    pub const QLX_CDB: Exit = Exit(117);
    /// A temporary system failure.
    pub const QLX_SYS: Exit = Exit(118);
    /// Out of memory.
    pub const QLX_NOMEM: Exit = Exit(119);
    /// qmail-local could not be run, for a temporary reason.
    pub const QLX_EXECSOFT: Exit = Exit(120);
    /// qmail-getpw could not be run.
    pub const QLX_EXECPW: Exit = Exit(121);
    /// qmail-local could not be run.
    pub const QLX_EXECHARD: Exit = Exit(126);

    // sysexits.h, as qmail-local and qmail-lspawn read a program's exit code.
    /// Command line usage error (permanent for qmail-local).
    pub const EX_USAGE: Exit = Exit(64);
    /// Data format error (permanent for qmail-local).
    pub const EX_DATAERR: Exit = Exit(65);
    /// Internal software error (permanent for qmail-local).
    pub const EX_SOFTWARE: Exit = Exit(70);
    /// System error (temporary for qmail-lspawn).
    pub const EX_OSERR: Exit = Exit(71);
    /// I/O error (temporary for qmail-lspawn).
    pub const EX_IOERR: Exit = Exit(74);
    /// Temporary failure (temporary for qmail-lspawn).
    pub const EX_TEMPFAIL: Exit = Exit(75);
    /// Remote protocol error (permanent for qmail-local).
    pub const EX_PROTOCOL: Exit = Exit(76);
    /// Permission denied (permanent for qmail-local).
    pub const EX_NOPERM: Exit = Exit(77);
    /// Configuration error (permanent for qmail-local).
    pub const EX_CONFIG: Exit = Exit(78);

    /// qmail-command(8): the program delivered the message and the rest of the .qmail
    /// file is to be ignored.
    pub const DELIVERED_STOP: Exit = Exit(99);

    /// A code without a name of its own (e.g. a report's 1 for "differences found").
    pub const fn new(code: u8) -> Exit {
        Exit(code)
    }

    /// The status a process exited with, as the parent sees it (the low 8 bits of what
    /// it passed to exit).
    pub const fn from_status(status: i32) -> Exit {
        Exit(status as u8)
    }

    /// The number passed to `exit`.
    pub const fn code(self) -> i32 {
        self.0 as i32
    }

    /// True for [`Exit::OK`].
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<Exit> for i32 {
    fn from(e: Exit) -> i32 {
        e.code()
    }
}

/// An error that knows which exit code it means (uutils' UError): the program's `main`
/// prints it, in the program's words, and exits with [`ExitError::exit`].
pub trait ExitError {
    /// The exit code this error means.
    fn exit(&self) -> Exit;
}

/// The usual qmail choice between the two failures.
pub const fn temp_or_perm(temporary: bool) -> Exit {
    if temporary { Exit::TEMP } else { Exit::PERM }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_qmails() {
        assert_eq!(Exit::OK.code(), 0);
        assert_eq!(Exit::PERM.code(), 100);
        assert_eq!(Exit::TEMP.code(), 111);
        assert_eq!(Exit::QQ_FORMAT.code(), 91);
        assert_eq!(Exit::QQ_PERM_REFUSED.code(), 31);
        assert_eq!(Exit::QQ_CONN_FAILED.code(), 74);
        assert_eq!(Exit::QLX_EXECHARD.code(), 126);
        assert_eq!(Exit::from_status(111), Exit::TEMP);
        assert_eq!(Exit::from_status(256 + 100), Exit::PERM);
        assert_eq!(temp_or_perm(true), Exit::TEMP);
        assert_eq!(temp_or_perm(false), Exit::PERM);
        assert!(matches!(Exit::from_status(75), Exit::EX_TEMPFAIL));
        assert_eq!(Exit::new(1).to_string(), "1");
    }
}
