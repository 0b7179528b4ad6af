//! TCPREMOTEINFO: the RFC 1413 (ident) question to the client's port 113, and netqmail's
//! reading of the answer.
//!
//! The question is `REMOTEPORT , LOCALPORT` and CRLF, asked from the local address of the
//! connection (so a multihomed server asks from the address the client talked to). The
//! answer is read the way netqmail reads it: spaces, tabs and CRs are dropped everywhere;
//! everything up to the third colon is skipped; the rest, up to the LF, is the value, cut
//! at 998 characters. An answer with fewer than three colons (an `ERROR` reply) therefore
//! gives the empty string, exactly as with netqmail. An answer that ends before its LF
//! gives nothing.
//!
//! rqmail then makes the value safe for the environment: it stops at a NUL byte (where
//! netqmail's C string ended) and replaces every other byte outside printable ASCII with
//! `?`. The whole exchange, connection included, must finish within the timeout (netqmail
//! gave each step the full timeout) and within [`MAX_REPLY_BYTES`] bytes.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, getsockopt, socket,
    sockopt::SocketError,
};

/// The port of the ident service.
pub const IDENT_PORT: u16 = 113;
/// Longest value kept (netqmail's buffer of 999 bytes with its terminating NUL).
pub const MAX_INFO: usize = 998;
/// Most bytes read from the ident server before giving up.
pub const MAX_REPLY_BYTES: usize = 8192;

/// netqmail's reading of an ident reply, one byte at a time.
#[derive(Debug, Default, Clone)]
pub struct ReplyParser {
    colons: u8,
    value: Vec<u8>,
    done: bool,
}

impl ReplyParser {
    /// A parser at the start of a reply.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Takes bytes of the reply; returns true once the value is complete (bytes after
    /// that point are not looked at).
    pub fn feed(&mut self, data: &[u8]) -> bool {
        for &ch in data {
            if self.done {
                break;
            }
            match ch {
                b' ' | b'\t' | b'\r' => {}
                b'\n' => self.done = true,
                _ if self.colons < 3 => {
                    if ch == b':' {
                        self.colons += 1;
                    }
                }
                _ => {
                    self.value.push(ch);
                    if self.value.len() >= MAX_INFO {
                        self.done = true;
                    }
                }
            }
        }
        self.done
    }

    /// True once the value is complete.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The value made safe for the environment, when the reply was complete.
    pub fn finish(self) -> Option<String> {
        self.done.then(|| sanitize(&self.value))
    }
}

/// The value of a whole reply (see [`ReplyParser`]), for the tests.
#[cfg(test)]
fn parse_reply(data: &[u8]) -> Option<String> {
    let mut p = ReplyParser::new();
    p.feed(data);
    p.finish()
}

/// Cuts at the first NUL and writes bytes outside `!`..`~` as `?`.
pub fn sanitize(raw: &[u8]) -> String {
    raw.iter()
        .take_while(|&&c| c != 0)
        .map(|&c| {
            if c.is_ascii_graphic() {
                char::from(c)
            } else {
                '?'
            }
        })
        .collect()
}

/// The question for a connection: the client's port first, then ours.
pub fn question(remote_port: u16, local_port: u16) -> String {
    format!("{remote_port} , {local_port}\r\n")
}

/// Asks the client's ident server about the connection `local` <- `remote`. Any failure
/// (no server, refused, timeout, malformed or unfinished reply) is `None`.
pub fn query(local: SocketAddr, remote: SocketAddr, timeout: Duration) -> Option<String> {
    if timeout.is_zero() {
        return None;
    }
    let deadline = Instant::now() + timeout;
    let stream = connect_from(
        local.ip(),
        SocketAddr::new(remote.ip(), IDENT_PORT),
        deadline,
    )?;
    exchange(stream, remote.port(), local.port(), deadline)
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

/// A TCP connection from `local` (any port) to `to`, made before `deadline`.
fn connect_from(local: IpAddr, to: SocketAddr, deadline: Instant) -> Option<TcpStream> {
    let family = match to {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    if local.is_ipv4() != to.is_ipv4() {
        return None;
    }
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .ok()?;
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(local, 0)),
    )
    .ok()?;
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(to)) {
        Ok(()) => {}
        Err(Errno::EINPROGRESS) | Err(Errno::EINTR) => loop {
            let left = remaining(deadline)?;
            let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, ms) {
                Ok(0) => return None,
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(_) => return None,
            }
        },
        Err(_) => return None,
    }
    if getsockopt(&fd, SocketError).ok()? != 0 {
        return None;
    }
    let stream = TcpStream::from(fd);
    stream.set_nonblocking(false).ok()?;
    Some(stream)
}

/// Sends the question and reads the reply before `deadline`.
fn exchange(
    mut stream: TcpStream,
    remote_port: u16,
    local_port: u16,
    deadline: Instant,
) -> Option<String> {
    stream.set_write_timeout(Some(remaining(deadline)?)).ok()?;
    stream
        .write_all(question(remote_port, local_port).as_bytes())
        .ok()?;
    let mut parser = ReplyParser::new();
    let mut buf = [0u8; 512];
    let mut total = 0usize;
    while !parser.is_done() {
        stream.set_read_timeout(Some(remaining(deadline)?)).ok()?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        total += n;
        if total > MAX_REPLY_BYTES {
            return None;
        }
        parser.feed(&buf[..n]);
    }
    parser.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1413_examples() {
        assert_eq!(
            parse_reply(b"6193, 23 : USERID : UNIX : stjohns\r\n").as_deref(),
            Some("stjohns")
        );
        assert_eq!(
            parse_reply(b"6195, 23 : ERROR : NO-USER\r\n").as_deref(),
            Some("")
        );
        assert_eq!(
            parse_reply(b"6191, 23 : USERID : OTHER, US-ASCII : a user:x \r\n").as_deref(),
            Some("auser:x")
        );
    }

    #[test]
    fn netqmail_rules() {
        // Unfinished replies give nothing.
        assert_eq!(parse_reply(b""), None);
        assert_eq!(parse_reply(b"1,2:USERID:UNIX:joe"), None);
        // Whitespace is dropped everywhere, the LF ends, the rest is ignored.
        assert_eq!(
            parse_reply(b"1,2:USERID:UNIX:\tj o\re\nmore").as_deref(),
            Some("joe")
        );
        // 998 characters end the value even without an LF.
        let long = [b"1,2:a:b:".to_vec(), vec![b'x'; 2000]].concat();
        assert_eq!(parse_reply(&long).unwrap().len(), MAX_INFO);
        // NUL ends the value, as the C string did; other bytes become '?'.
        assert_eq!(parse_reply(b"::: ab\0cd\n").as_deref(), Some("ab"));
        assert_eq!(
            parse_reply(b":::a\x1b[1mb\xffc\x7f\n").as_deref(),
            Some("a?[1mb?c?")
        );
    }

    #[test]
    fn question_format() {
        assert_eq!(question(6191, 25), "6191 , 25\r\n");
    }

    #[test]
    fn zero_timeout_asks_nothing() {
        let a: SocketAddr = "127.0.0.1:25".parse().unwrap();
        assert_eq!(query(a, a, Duration::ZERO), None);
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_output_is_safe(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            if let Some(v) = parse_reply(&data) {
                prop_assert!(v.len() <= MAX_INFO);
                prop_assert!(v.bytes().all(|c| c.is_ascii_graphic()));
            }
        }

        #[test]
        fn chunking_does_not_matter(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600) {
            let cut = cut.min(data.len());
            let mut p = ReplyParser::new();
            p.feed(&data[..cut]);
            p.feed(&data[cut..]);
            prop_assert_eq!(p.finish(), parse_reply(&data));
        }

        #[test]
        fn userid_replies(user in "[!-~]{1,60}", rp in any::<u16>(), lp in any::<u16>()) {
            let reply = format!("{rp} , {lp} : USERID : UNIX : {user}\r\n");
            prop_assert_eq!(parse_reply(reply.as_bytes()), Some(user));
        }
    }
}
