//! qmail-popup and qmail-pop3d: POP3 (RFC 1939) on a Maildir, as netqmail 1.06 serves
//! it, with STLS (RFC 2595) and POP3S added.
//!
//! `qmail-popup hostname checkpassword qmail-pop3d Maildir`, under tcpserver: qmail-popup
//! reads the user name and password, the checkpassword program checks them and becomes
//! the user, qmail-pop3d serves the user's Maildir. The parts:
//!
//! * `command`: command lines (netqmail's commands.c, with a bound): [`parse`];
//! * `popup`: qmail-popup's dialogue without I/O ([`Popup`]);
//! * `pop3d`: qmail-pop3d's dialogue without I/O ([`Pop3d`]) over a [`Mailbox`];
//! * `blast`: a message as RETR and TOP send it ([`Blast`]);
//! * `maildir`: the Maildir's messages in netqmail's order ([`scan`]), and the real
//!   [`Mailbox`] ([`Dir`]);
//! * `serve`: either dialogue over a connection, with netqmail's 20-minute timeouts
//!   ([`converse`]);
//! * `popupd`, `checkpw`: qmail-popup's two processes (a privileged parent that runs the
//!   checkpassword program, an unprivileged worker that talks to the client, speaks TLS
//!   and relays) and the checkpassword interface.
//!
//! TLS comes from the `qmail_tls` library (control/servercert.pem, as qmail-smtpd).

#![deny(unreachable_pub)]

mod blast;
mod checkpw;
mod command;
mod confine;
mod maildir;
mod pop3d;
mod popup;
mod popupd;
mod serve;
mod sys;

pub use blast::Blast;
pub use command::{Command, MAX_LINE, Verb, parse, scan_ulong};
pub use maildir::{Dir, scan};
pub use pop3d::{Entry, Mailbox, Pop3d};
pub use popup::{Event, Popup, PopupConfig, Stls};
pub use popupd::Login;
pub use serve::{Dialogue, Ended, TIMEOUT, converse};

use qmail_tls::{FdTransport, READ_BUF, Transport};
use std::io;
use std::os::fd::AsFd;

/// The qmail-popup program (see `popupd`); returns its exit status.
pub fn qmail_popup() -> control::Exit {
    popupd::main()
}

/// The qmail-pop3d program: `qmail-pop3d maildirname`, the client on descriptors 0 and
/// 1, the Maildir relative to the working directory (the user's home, where
/// checkpassword left it). Always exits 0, as netqmail's.
pub fn qmail_pop3d() -> control::Exit {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut t = FdTransport::new(stdin.as_fd(), stdout.as_fd()).with_write_step(READ_BUF);
    let dir = std::env::args_os().nth(1);
    if dir.is_none_or(|d| std::env::set_current_dir(d).is_err()) {
        let _ = t.write_all(pop3d::reply::NO_MAILDIR, TIMEOUT);
        return control::Exit::OK;
    }
    confine::pop3d();
    let now = i64::try_from(control::now()).unwrap_or(i64::MAX);
    control::clean_maildir_tmp(now);
    let Ok(entries) = scan(now) else {
        let _ = t.write_all(pop3d::reply::SCAN, TIMEOUT);
        return control::Exit::OK;
    };
    let mut s = Pop3d::new(Dir, entries);
    converse(&mut s, &mut t, TIMEOUT);
    control::Exit::OK
}
