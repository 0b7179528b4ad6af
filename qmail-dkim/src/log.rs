//! Diagnostic lines on descriptor 2: `qmail-dkim: ...`.
//!
//! qmail-dkim inherits descriptor 2 from whoever runs it: under tcpserver that is the
//! service's log, from qmail-inject the user's terminal. Under inetd or xinetd it can be the
//! SMTP client's own connection, where a line would corrupt the dialogue: nothing is
//! written to a TCP socket. A Unix socket (the systemd journal) is fine. The lines are
//! `tracing` events written by [`control::diagnostics`].

use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage, getsockname};
use std::os::fd::AsRawFd;

/// True when descriptor 2 is not a TCP connection.
pub fn stderr_is_private() -> bool {
    let fd = std::io::stderr().as_raw_fd();
    match getsockname::<SockaddrStorage>(fd) {
        // Not a socket.
        Err(_) => true,
        Ok(a) => !matches!(a.family(), Some(AddressFamily::Inet | AddressFamily::Inet6)),
    }
}

/// One line, control characters replaced.
pub fn line(msg: &str) {
    let clean: String = msg
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    tracing::warn!("{clean}");
}
