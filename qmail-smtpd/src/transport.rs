//! Moving bytes between the client and a [`Session`]: reads with a timeout, replies held
//! back until the next read would have to wait (so that the replies to pipelined
//! commands leave together, as with netqmail), writes with a timeout.
//!
//! [`Transport`] (from `qmail_tls`) is the seam for TLS: `FdTransport` is plain
//! descriptors 0 and 1; `TlsTransport` wraps it and offers the same two calls.
//! [`Deadline`] wraps either and cuts every wait short at the session's deadline
//! (control/timeoutsession), the TLS handshake's included.

use crate::session::{Backend, Exit, Session};
use qmail_tls::{READ_BUF, Transport};
use std::io;
use std::time::{Duration, Instant};

/// Input is handed to the session in pieces of this size; after each, replies beyond
/// [`FLUSH_AT`] bytes are written even though more input is waiting.
pub const FEED_STEP: usize = 1024;
/// See [`FEED_STEP`].
pub const FLUSH_AT: usize = 4096;

/// The read buffer a session starts with: room for the commands of a session. It grows to
/// [`READ_BUF`] the first time a read fills it (pipelined commands, a message's body), so
/// that an idle session touches one page of it instead of four.
pub const FIRST_READ_BUF: usize = 1024;

/// After the session's deadline, each write may still wait this long (the last 451 reply).
pub const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// A transport whose reads wait no longer than until `deadline`, and whose writes no
/// longer than [`DEADLINE_GRACE`] past it. Without a deadline it is `inner` unchanged.
#[derive(Debug)]
pub struct Deadline<T> {
    inner: T,
    deadline: Option<Instant>,
}

impl<T: Transport> Deadline<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, deadline: Option<Instant>) -> Deadline<T> {
        Deadline { inner, deadline }
    }

    fn left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

impl<T: Transport> Transport for Deadline<T> {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        match self.left() {
            None => self.inner.read(buf, timeout),
            Some(left) if left.is_zero() => Err(io::ErrorKind::TimedOut.into()),
            Some(left) => self.inner.read(buf, timeout.min(left)),
        }
    }

    fn write_all(&mut self, data: &[u8], timeout: Duration) -> io::Result<()> {
        let timeout = match self.left() {
            None => timeout,
            Some(left) => timeout.min(left.max(DEADLINE_GRACE)),
        };
        self.inner.write_all(data, timeout)
    }
}

/// How [`serve_session`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The session is over.
    Done(Exit),
    /// STARTTLS was accepted and its reply written; the input read after it has been
    /// thrown away. The caller does the handshake and goes on with a TLS transport.
    StartTls,
}

/// Runs a session to its end over `t`; returns how it ended. A session that accepts
/// STARTTLS here ends (this entry point has no TLS to offer). For the tests.
#[cfg(test)]
fn serve<B: Backend, T: Transport>(s: &mut Session<B>, t: &mut T) -> Exit {
    match serve_session(s, t) {
        Served::Done(e) => e,
        Served::StartTls => Exit::Failure,
    }
}

/// Runs a session over `t` until it ends or accepts STARTTLS.
pub fn serve_session<B: Backend, T: Transport>(s: &mut Session<B>, t: &mut T) -> Served {
    let timeout = Duration::from_secs(s.timeout());
    let mut buf = vec![0u8; FIRST_READ_BUF];
    loop {
        // Everything read so far has been handled: the replies go out before waiting.
        let out = s.take_output();
        if !out.is_empty() && t.write_all(&out, timeout).is_err() {
            return Served::Done(Exit::Failure);
        }
        if let Some(e) = s.finished() {
            return Served::Done(e);
        }
        if s.wants_tls() {
            // Whatever followed the STARTTLS line in `buf` is dropped with it
            // (CVE-2011-0411: plaintext must not be read as if it came through TLS).
            return Served::StartTls;
        }
        if s.deadline().is_some_and(|d| Instant::now() >= d) {
            s.deadline_reached();
            continue;
        }
        match t.read(&mut buf, timeout) {
            Ok(0) => s.eof(),
            Ok(n) => {
                let mut off = 0;
                while off < n && s.finished().is_none() && !s.wants_tls() {
                    let end = n.min(off + FEED_STEP);
                    off += s.feed(&buf[off..end]);
                    if s.pending_output() >= FLUSH_AT && s.finished().is_none() {
                        let out = s.take_output();
                        if t.write_all(&out, timeout).is_err() {
                            return Served::Done(Exit::Failure);
                        }
                    }
                }
                if n == buf.len() && buf.len() < READ_BUF {
                    buf.resize(READ_BUF, 0);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if s.deadline().is_some_and(|d| Instant::now() >= d) {
                    s.deadline_reached();
                } else {
                    s.timed_out();
                }
            }
            Err(_) => s.eof(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::session::Message;
    use qmail_queue::QueueError;
    use std::collections::VecDeque;

    struct NoQueue;
    struct NoMsg;
    impl Message for NoMsg {
        fn pid(&self) -> u32 {
            7
        }
        fn put(&mut self, _: &[u8]) {}
        fn fail(&mut self) {}
        fn from(&mut self, _: &[u8]) {}
        fn to(&mut self, _: &[u8]) {}
        fn close(self) -> Result<(), QueueError> {
            Ok(())
        }
    }
    impl Backend for NoQueue {
        type Message = NoMsg;
        fn open_message(&mut self, _: Option<&[u8]>) -> io::Result<NoMsg> {
            Ok(NoMsg)
        }
        fn now(&mut self) -> u64 {
            1
        }
    }

    /// Scripted reads (None = timeout); records every write call.
    struct Script {
        reads: VecDeque<Option<Vec<u8>>>,
        writes: Vec<Vec<u8>>,
        fail_writes: bool,
    }

    impl Transport for Script {
        fn read(&mut self, buf: &mut [u8], _: Duration) -> io::Result<usize> {
            match self.reads.pop_front() {
                None => Ok(0),
                Some(None) => Err(io::ErrorKind::TimedOut.into()),
                // A stream: what does not fit is read next time.
                Some(Some(mut d)) => {
                    let n = d.len().min(buf.len());
                    buf[..n].copy_from_slice(&d[..n]);
                    if n < d.len() {
                        self.reads.push_front(Some(d.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }
        fn write_all(&mut self, data: &[u8], _: Duration) -> io::Result<()> {
            if self.fail_writes {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.writes.push(data.to_vec());
            Ok(())
        }
    }

    fn script(reads: Vec<Option<&str>>) -> Script {
        Script {
            reads: reads
                .into_iter()
                .map(|r| r.map(|s| s.as_bytes().to_vec()))
                .collect(),
            writes: Vec::new(),
            fail_writes: false,
        }
    }

    fn strings(w: &[Vec<u8>]) -> Vec<String> {
        w.iter()
            .map(|b| String::from_utf8(b.clone()).unwrap())
            .collect()
    }

    #[test]
    fn pipelined_replies_leave_in_one_write() {
        let mut t = script(vec![
            Some("HELO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"),
            Some("DATA\r\n"),
            Some("hi\r\n.\r\nQUIT\r\n"),
        ]);
        let mut s = Session::new(Config::new(b"mx"), NoQueue);
        assert_eq!(serve(&mut s, &mut t), Exit::Quit);
        assert_eq!(
            strings(&t.writes),
            vec![
                "220 mx ESMTP\r\n",
                "250 mx\r\n250 ok\r\n250 ok\r\n",
                "354 go ahead\r\n",
                "250 ok 1 qp 7\r\n221 mx\r\n",
            ]
        );
    }

    #[test]
    fn timeout_eof_and_write_failure() {
        let mut t = script(vec![Some("NOOP\r\n"), None]);
        let mut s = Session::new(Config::new(b"mx"), NoQueue);
        assert_eq!(serve(&mut s, &mut t), Exit::Failure);
        assert_eq!(
            strings(&t.writes),
            vec!["220 mx ESMTP\r\n", "250 ok\r\n", "451 timeout (#4.4.2)\r\n"]
        );

        let mut t = script(vec![Some("NOOP\r\nNOOP")]);
        let mut s = Session::new(Config::new(b"mx"), NoQueue);
        assert_eq!(serve(&mut s, &mut t), Exit::Failure);
        assert_eq!(strings(&t.writes), vec!["220 mx ESMTP\r\n", "250 ok\r\n"]);

        let mut t = script(vec![Some("QUIT\r\n")]);
        t.fail_writes = true;
        let mut s = Session::new(Config::new(b"mx"), NoQueue);
        assert_eq!(serve(&mut s, &mut t), Exit::Failure);
    }

    #[test]
    fn session_deadline_ends_with_451() {
        // A deadline already past: the next wait ends the session, whatever the client
        // would have sent.
        let mut cfg = Config::new(b"mx");
        cfg.timeout_session = 1;
        let mut s = Session::new(cfg, NoQueue);
        assert!(s.deadline().is_some());
        let mut t = script(vec![Some("NOOP\r\n"), Some("NOOP\r\n")]);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(serve(&mut s, &mut t), Exit::Failure);
        assert_eq!(
            strings(&t.writes),
            vec![
                "220 mx ESMTP\r\n",
                "451 session time limit reached (#4.4.2)\r\n"
            ]
        );
        // The wrapper: no wait at all once the deadline has passed; none without one.
        let mut d = Deadline::new(script(vec![Some("x")]), Some(Instant::now()));
        let e = d.read(&mut [0u8; 8], Duration::from_secs(60)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(d.write_all(b"451\r\n", Duration::from_secs(60)).is_ok());
        let mut d = Deadline::new(script(vec![Some("x")]), None);
        assert_eq!(d.read(&mut [0u8; 8], Duration::from_secs(60)).unwrap(), 1);
        let s = Session::new(Config::new(b"mx"), NoQueue);
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn large_pipelines_flush_on_the_way() {
        let many = "NOOP\r\n".repeat(READ_BUF / 6);
        let mut t = script(vec![Some(&many)]);
        let mut s = Session::new(Config::new(b"mx"), NoQueue);
        serve(&mut s, &mut t);
        assert!(t.writes.len() > 2);
        assert!(t.writes.iter().all(|w| w.len() < FLUSH_AT + 100));
        // Every command answered: the buffer grew from FIRST_READ_BUF on the way.
        let all: Vec<u8> = t.writes.concat();
        let replies = String::from_utf8_lossy(&all).matches("250 ok").count();
        assert_eq!(replies, READ_BUF / 6);
    }
}
