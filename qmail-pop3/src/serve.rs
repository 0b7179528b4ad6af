//! Running a dialogue ([`crate::Popup`] or [`crate::Pop3d`]) over a connection: replies
//! are written before the next read, so that the replies to commands sent together
//! leave together; every read and write waits at most the timeout.

use crate::pop3d::{Mailbox, Pop3d};
use crate::popup::Popup;
use qmail_tls::{READ_BUF, Transport};
use std::io;
use std::time::Duration;

/// netqmail's limit on every read and write of qmail-popup and qmail-pop3d: 20 minutes.
pub const TIMEOUT: Duration = Duration::from_secs(1200);

/// A dialogue driven by [`converse`].
pub trait Dialogue {
    /// Takes client input; returns how many bytes were used.
    fn feed(&mut self, data: &[u8]) -> usize;
    /// The reply bytes produced so far.
    fn take_output(&mut self) -> Vec<u8>;
    /// True when the dialogue takes no more input (for now).
    fn stopped(&self) -> bool;
    /// Produces output that needs no input (a message being sent): `Ok(true)` when it
    /// did, `Ok(false)` when there is nothing to produce.
    fn produce(&mut self) -> io::Result<bool> {
        Ok(false)
    }
}

/// How [`converse`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The dialogue stopped; input read behind its last line has been dropped.
    Stopped,
    /// The client went away, or a read or write timed out or failed.
    Gone,
}

/// Runs `d` over `t` until it stops or the connection ends.
pub fn converse<D: Dialogue, T: Transport>(d: &mut D, t: &mut T, timeout: Duration) -> Ended {
    let mut buf = vec![0u8; READ_BUF];
    let (mut at, mut end) = (0, 0);
    loop {
        let out = d.take_output();
        if !out.is_empty() && t.write_all(&out, timeout).is_err() {
            return Ended::Gone;
        }
        if d.stopped() {
            return Ended::Stopped;
        }
        match d.produce() {
            Err(_) => return Ended::Gone,
            Ok(true) => continue,
            Ok(false) => {}
        }
        if at == end {
            match t.read(&mut buf, timeout) {
                Ok(0) | Err(_) => return Ended::Gone,
                Ok(n) => (at, end) = (0, n),
            }
        }
        at += d.feed(&buf[at..end]);
    }
}

impl Dialogue for Popup {
    fn feed(&mut self, data: &[u8]) -> usize {
        Popup::feed(self, data)
    }
    fn take_output(&mut self) -> Vec<u8> {
        Popup::take_output(self)
    }
    fn stopped(&self) -> bool {
        self.event().is_some()
    }
}

impl<M: Mailbox> Dialogue for Pop3d<M> {
    fn feed(&mut self, data: &[u8]) -> usize {
        Pop3d::feed(self, data)
    }
    fn take_output(&mut self) -> Vec<u8> {
        Pop3d::take_output(self)
    }
    fn stopped(&self) -> bool {
        self.finished()
    }
    fn produce(&mut self) -> io::Result<bool> {
        if !self.sending() {
            return Ok(false);
        }
        self.send_more()?;
        Ok(true)
    }
}
