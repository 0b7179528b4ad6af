//! qmail-pop3d's dialogue (the TRANSACTION state) as a state machine without I/O:
//! command bytes go in ([`Pop3d::feed`]), reply bytes come out
//! ([`Pop3d::take_output`]), and the Maildir is reached through a [`Mailbox`] (the real
//! directory in the program, a map in tests and in the fuzzer).
//!
//! Every reply is netqmail 1.06's, byte for byte, quirks included:
//!
//! * STAT counts every message of the session, deleted ones too, but adds up the sizes
//!   of the others only;
//! * RETR takes an optional second number like TOP (`RETR 1 0` is `TOP 1 0`), and
//!   `TOP n` without a line count sends the whole message;
//! * message numbers are read as C's unsigned long, wrapping;
//! * LAST is the highest message number deleted (0 after RSET);
//! * UIDL is the file name without `new/` or `cur/` and without its `:2,...` info;
//! * deletions happen at QUIT only: then each deleted message is unlinked (each failure
//!   answered `-ERR unable to unlink all deleted messages`), each message still in
//!   `new/` is moved to `cur/` with `:2,` added (a failure is ignored), and the answer is
//!   `+OK `. At the end of input or a timeout nothing changes.
//!
//! What netqmail does not have: a command line longer than
//! [`MAX_LINE`](crate::command::MAX_LINE) bytes is answered
//! with [`reply::LINE_TOO_LONG`] and ends the session (netqmail's would grow until it ran
//! out of memory and then end it silently).

use crate::blast::Blast;
use crate::command::{self, Line, Lines, Verb};
use std::io::{self, Read};

/// The replies with a fixed text.
pub(crate) mod reply {
    pub(crate) const OK: &[u8] = b"+OK \r\n";
    pub(crate) const NO_MAILDIR: &[u8] = b"-ERR this user has no $HOME/Maildir\r\n";
    pub(crate) const SCAN: &[u8] = b"-ERR unable to scan $HOME/Maildir\r\n";
    pub(crate) const SYNTAX: &[u8] = b"-ERR syntax error\r\n";
    pub(crate) const UNIMPLEMENTED: &[u8] = b"-ERR unimplemented\r\n";
    pub(crate) const DELETED: &[u8] = b"-ERR already deleted\r\n";
    pub(crate) const NOZERO: &[u8] = b"-ERR messages are counted from 1\r\n";
    pub(crate) const TOOBIG: &[u8] = b"-ERR not that many messages\r\n";
    pub(crate) const NOSUCH: &[u8] = b"-ERR unable to open that message\r\n";
    pub(crate) const NOUNLINK: &[u8] = b"-ERR unable to unlink all deleted messages\r\n";
    /// rqmail only: a command line longer than [`crate::command::MAX_LINE`].
    pub(crate) const LINE_TOO_LONG: &[u8] = b"-ERR line too long\r\n";
}

/// Once this much output is waiting, no further command is taken until it is written.
pub(crate) const FLUSH_AT: usize = 16 * 1024;
/// Bytes of a message read at once.
pub(crate) const READ_STEP: usize = 16 * 1024;

/// One message of the Maildir: its name below the Maildir (`new/...` or `cur/...`) and
/// its size on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub size: u64,
}

/// The Maildir's files, by their names below it.
pub trait Mailbox {
    type Message: Read;
    /// Opens a message for reading.
    fn open(&mut self, name: &[u8]) -> io::Result<Self::Message>;
    /// Removes a message.
    fn unlink(&mut self, name: &[u8]) -> io::Result<()>;
    /// Renames a message.
    fn rename(&mut self, from: &[u8], to: &[u8]) -> io::Result<()>;
}

#[derive(Debug)]
struct Message {
    entry: Entry,
    deleted: bool,
}

/// The session.
pub struct Pop3d<M: Mailbox> {
    mailbox: M,
    msgs: Vec<Message>,
    last: u64,
    lines: Lines,
    out: Vec<u8>,
    sending: Option<(M::Message, Blast)>,
    finished: bool,
}

impl<M: Mailbox> std::fmt::Debug for Pop3d<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3d")
            .field("msgs", &self.msgs)
            .field("last", &self.last)
            .field("sending", &self.sending.is_some())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// netqmail's `fmt_ulong`.
fn num(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

impl<M: Mailbox> Pop3d<M> {
    /// A session over the messages `entries` (oldest first). Its first output is the
    /// `+OK ` that answers the client's PASS or APOP.
    pub fn new(mailbox: M, entries: Vec<Entry>) -> Pop3d<M> {
        Pop3d {
            mailbox,
            msgs: entries
                .into_iter()
                .map(|entry| Message {
                    entry,
                    deleted: false,
                })
                .collect(),
            last: 0,
            lines: Lines::default(),
            out: reply::OK.to_vec(),
            sending: None,
            finished: false,
        }
    }

    /// The reply bytes produced so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// How many reply bytes are waiting.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// True when the session is over (QUIT, or a line too long).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// True while a message is being sent: [`Pop3d::send_more`] until it is not.
    pub fn sending(&self) -> bool {
        self.sending.is_some()
    }

    /// The end of input or a timeout: the session ends and nothing is deleted.
    pub fn eof(&mut self) {
        self.sending = None;
        self.finished = true;
    }

    /// Takes client input; returns how many bytes were used. It stops early when a
    /// message is to be sent, when the session ends, and when [`FLUSH_AT`] bytes of
    /// output are waiting: the caller writes, then feeds the rest.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        while used < data.len()
            && !self.finished
            && self.sending.is_none()
            && self.out.len() < FLUSH_AT
        {
            let (n, line) = self.lines.take(&data[used..]);
            used += n;
            match line {
                None => {}
                Some(Line::TooLong) => {
                    self.out.extend_from_slice(reply::LINE_TOO_LONG);
                    self.finished = true;
                }
                Some(Line::Complete(l)) => self.command(&l),
            }
        }
        used
    }

    fn command(&mut self, line: &[u8]) {
        let c = command::parse(line);
        match c.verb {
            Verb::Quit => self.quit(),
            Verb::Stat => self.stat(),
            Verb::List => self.listing(c.arg, false),
            Verb::Uidl => self.listing(c.arg, true),
            Verb::Dele => self.dele(c.arg),
            Verb::Retr | Verb::Top => self.top(c.arg),
            Verb::Rset => {
                for m in &mut self.msgs {
                    m.deleted = false;
                }
                self.last = 0;
                self.out.extend_from_slice(reply::OK);
            }
            Verb::Last => {
                self.out.extend_from_slice(b"+OK ");
                num(&mut self.out, self.last);
                self.out.extend_from_slice(b"\r\n");
            }
            Verb::Noop => self.out.extend_from_slice(reply::OK),
            _ => self.out.extend_from_slice(reply::UNIMPLEMENTED),
        }
    }

    /// netqmail's `msgno`: the index of the message numbered at the start of `arg`, or
    /// the error reply.
    fn msgno(&mut self, arg: &[u8]) -> Option<usize> {
        let (u, digits) = command::scan_ulong(arg);
        let err = if digits == 0 {
            reply::SYNTAX
        } else if u == 0 {
            reply::NOZERO
        } else if u > self.msgs.len() as u64 {
            reply::TOOBIG
        } else if self.msgs[(u - 1) as usize].deleted {
            reply::DELETED
        } else {
            return Some((u - 1) as usize);
        };
        self.out.extend_from_slice(err);
        None
    }

    fn stat(&mut self) {
        let total = self
            .msgs
            .iter()
            .filter(|m| !m.deleted)
            .fold(0u64, |t, m| t.wrapping_add(m.entry.size));
        self.out.extend_from_slice(b"+OK ");
        num(&mut self.out, self.msgs.len() as u64);
        self.out.push(b' ');
        num(&mut self.out, total);
        self.out.extend_from_slice(b"\r\n");
    }

    fn list_line(&mut self, i: usize, uidl: bool) {
        num(&mut self.out, i as u64 + 1);
        self.out.push(b' ');
        let e = &self.msgs[i].entry;
        if uidl {
            let unique = e.name.get(4..).unwrap_or_default();
            let end = unique
                .iter()
                .position(|&c| c == b':')
                .unwrap_or(unique.len());
            self.out.extend_from_slice(&unique[..end]);
        } else {
            num(&mut self.out, e.size);
        }
        self.out.extend_from_slice(b"\r\n");
    }

    fn listing(&mut self, arg: &[u8], uidl: bool) {
        if !arg.is_empty() {
            if let Some(i) = self.msgno(arg) {
                self.out.extend_from_slice(b"+OK ");
                self.list_line(i, uidl);
            }
            return;
        }
        self.out.extend_from_slice(reply::OK);
        for i in 0..self.msgs.len() {
            if !self.msgs[i].deleted {
                self.list_line(i, uidl);
            }
        }
        self.out.extend_from_slice(b".\r\n");
    }

    fn dele(&mut self, arg: &[u8]) {
        if let Some(i) = self.msgno(arg) {
            self.msgs[i].deleted = true;
            self.last = self.last.max(i as u64 + 1);
            self.out.extend_from_slice(reply::OK);
        }
    }

    fn top(&mut self, arg: &[u8]) {
        let Some(i) = self.msgno(arg) else {
            return;
        };
        let (_, digits) = command::scan_ulong(arg);
        let rest = &arg[digits..];
        let rest = &rest[rest.iter().take_while(|&&c| c == b' ').count()..];
        let limit = match command::scan_ulong(rest) {
            (_, 0) => 0,
            (n, _) => n.wrapping_add(1),
        };
        match self.mailbox.open(&self.msgs[i].entry.name) {
            Err(_) => self.out.extend_from_slice(reply::NOSUCH),
            Ok(f) => {
                self.out.extend_from_slice(reply::OK);
                self.sending = Some((f, Blast::new(limit)));
            }
        }
    }

    /// Sends the next piece of the message being sent. An error reading it ends the
    /// session at once, as in netqmail (the client has had `+OK` and part of the
    /// message; the connection closes).
    pub fn send_more(&mut self) -> io::Result<()> {
        let Some((f, blast)) = self.sending.as_mut() else {
            return Ok(());
        };
        let mut buf = vec![0u8; READ_STEP];
        let n = match f.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => {
                self.sending = None;
                self.finished = true;
                return Err(e);
            }
        };
        blast.feed(&buf[..n], &mut self.out);
        if n == 0 || blast.done() {
            blast.finish(&mut self.out);
            self.sending = None;
        }
        Ok(())
    }

    fn quit(&mut self) {
        for i in 0..self.msgs.len() {
            let name = &self.msgs[i].entry.name;
            if self.msgs[i].deleted {
                if self.mailbox.unlink(name).is_err() {
                    self.out.extend_from_slice(reply::NOUNLINK);
                }
            } else if let Some(unique) = name.strip_prefix(b"new/") {
                let mut to = b"cur/".to_vec();
                to.extend_from_slice(unique);
                to.extend_from_slice(b":2,");
                // As in netqmail: a failure leaves the message in new/.
                let _ = self.mailbox.rename(name, &to);
            }
        }
        self.out.extend_from_slice(reply::OK);
        self.finished = true;
    }
}

#[cfg(test)]
mod tests;
