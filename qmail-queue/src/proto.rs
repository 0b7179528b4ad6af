//! The requests qmail-qctl sends to a running qmail-send, and its replies.
//!
//! The channel is a UNIX stream socket in Linux's abstract namespace, named after the
//! queue directory's device and inode ([`socket_name`]), so it needs no file in the queue
//! (netqmail's layout and `rqmail-install -c` stay as they are) and two homes on one
//! machine never meet. Both ends check the other's credentials (`SO_PEERCRED`): qmail-send
//! answers only root and its own user; qmail-qctl talks only to a server running as root or
//! as the owner of `lock/sendmutex` (the user qmail-send runs as).
//!
//! Every request is one line of ASCII, at most [`MAX_LINE`] bytes with its newline:
//!
//! ```text
//! hold N | release N | delete N | retry N | retry all
//! pause local | pause remote | resume local | resume remote | status
//! ```
//!
//! A client may send several lines; they are answered one after the other, in order. Each
//! answer is zero or more `wait` lines and then one final line, all of the form
//!
//! ```text
//! KIND WORD [KEY=VALUE ...]
//! ```
//!
//! where KIND is `wait` (the request is applied; deliveries of the message or channel that
//! were already running are being waited for), `ok`, `no` (refused for good: bad request,
//! no such message, not allowed) or `later` (a temporary problem: try again), WORD says
//! what happened and the fields carry numbers and names. The words and fields are listed
//! in qmail-qctl(8).

use std::fmt::Write as _;

/// The longest request or reply line, newline included.
pub const MAX_LINE: usize = 512;

/// The delivery channels, in qmail-send's order.
pub const CHANNELS: [&str; 2] = ["local", "remote"];

/// One request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Keep message N in the queue, undelivered, until released.
    Hold(u64),
    /// Deliver message N again.
    Release(u64),
    /// Remove message N from the queue without delivering it further and without a bounce.
    Delete(u64),
    /// Attempt the waiting recipients of message N now.
    Retry(u64),
    /// Attempt every waiting message now (as `ALRM` does).
    RetryAll,
    /// Start no new deliveries on channel C (0 local, 1 remote).
    Pause(usize),
    /// Start deliveries on channel C again.
    Resume(usize),
    /// Report the channels, their limits and the number of held messages.
    Status,
}

/// A message number, read as the queue's file names are ([`crate::scan::message_id`]).
pub use crate::scan::message_id as parse_id;

/// A channel name: `local` or `remote`.
pub fn parse_channel(s: &[u8]) -> Option<usize> {
    CHANNELS.iter().position(|c| c.as_bytes() == s)
}

impl Request {
    /// Parses one request line (without its newline).
    pub fn parse(line: &[u8]) -> Option<Request> {
        if line.len() >= MAX_LINE {
            return None;
        }
        let mut words = line.split(|&c| c == b' ');
        let verb = words.next()?;
        let arg = words.next();
        if words.next().is_some() {
            return None;
        }
        let id = || arg.and_then(parse_id);
        let chan = || arg.and_then(parse_channel);
        Some(match verb {
            b"hold" => Request::Hold(id()?),
            b"release" => Request::Release(id()?),
            b"delete" => Request::Delete(id()?),
            b"retry" if arg == Some(b"all") => Request::RetryAll,
            b"retry" => Request::Retry(id()?),
            b"pause" => Request::Pause(chan()?),
            b"resume" => Request::Resume(chan()?),
            b"status" if arg.is_none() => Request::Status,
            _ => return None,
        })
    }

    /// The request's line, newline included.
    pub fn line(&self) -> String {
        let chan = |c: usize| CHANNELS.get(c).copied().unwrap_or("local");
        match *self {
            Request::Hold(n) => format!("hold {n}\n"),
            Request::Release(n) => format!("release {n}\n"),
            Request::Delete(n) => format!("delete {n}\n"),
            Request::Retry(n) => format!("retry {n}\n"),
            Request::RetryAll => "retry all\n".to_string(),
            Request::Pause(c) => format!("pause {}\n", chan(c)),
            Request::Resume(c) => format!("resume {}\n", chan(c)),
            Request::Status => "status\n".to_string(),
        }
    }

    /// The verb, as in the request line.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Hold(_) => "hold",
            Request::Release(_) => "release",
            Request::Delete(_) => "delete",
            Request::Retry(_) | Request::RetryAll => "retry",
            Request::Pause(_) => "pause",
            Request::Resume(_) => "resume",
            Request::Status => "status",
        }
    }

    /// The message the request is about, if any.
    pub fn id(&self) -> Option<u64> {
        match *self {
            Request::Hold(n) | Request::Release(n) | Request::Delete(n) | Request::Retry(n) => {
                Some(n)
            }
            _ => None,
        }
    }
}

/// The first word of a reply line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Applied; waiting for deliveries that were already running (more lines follow).
    Wait,
    /// Done.
    Ok,
    /// Refused for good.
    No,
    /// A temporary problem; nothing was changed unless the fields say so.
    Later,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Wait => "wait",
            Kind::Ok => "ok",
            Kind::No => "no",
            Kind::Later => "later",
        }
    }
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: Kind,
    pub word: String,
    pub fields: Vec<(String, String)>,
}

fn word_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn value_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._/".contains(&c))
}

impl Reply {
    /// A reply of `kind` saying `word` (lowercase letters, digits and `-`).
    pub fn new(kind: Kind, word: &str) -> Reply {
        let word = if word_ok(word) { word } else { "unknown" };
        Reply {
            kind,
            word: word.to_string(),
            fields: Vec::new(),
        }
    }

    /// Adds `key=value`; a key or value outside the protocol's characters is left out.
    pub fn field(mut self, key: &str, value: impl std::fmt::Display) -> Reply {
        let value = value.to_string();
        if word_ok(key) && value_ok(&value) {
            self.fields.push((key.to_string(), value));
        }
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` as a number.
    pub fn num(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// The reply's line, newline included.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}", self.kind.name(), self.word);
        for (k, v) in &self.fields {
            let _ = write!(s, " {k}={v}");
        }
        s.push('\n');
        s
    }

    /// Parses one reply line (without its newline).
    pub fn parse(line: &[u8]) -> Option<Reply> {
        if line.len() >= MAX_LINE {
            return None;
        }
        let line = std::str::from_utf8(line).ok()?;
        let mut words = line.split(' ');
        let kind = match words.next()? {
            "wait" => Kind::Wait,
            "ok" => Kind::Ok,
            "no" => Kind::No,
            "later" => Kind::Later,
            _ => return None,
        };
        let word = words.next()?;
        if !word_ok(word) {
            return None;
        }
        let mut fields = Vec::new();
        for w in words {
            let (k, v) = w.split_once('=')?;
            if !word_ok(k) || !value_ok(v) {
                return None;
            }
            fields.push((k.to_string(), v.to_string()));
        }
        Some(Reply {
            kind,
            word: word.to_string(),
            fields,
        })
    }
}

/// The abstract socket name of the queue whose directory has this device and inode
/// number (without the leading NUL of the abstract namespace).
pub fn socket_name(dev: u64, ino: u64) -> Vec<u8> {
    format!("rqmail-qctl/{dev:x}/{ino:x}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Hold(457),
            Request::Release(0),
            Request::Delete(u64::MAX),
            Request::Retry(12),
            Request::RetryAll,
            Request::Pause(0),
            Request::Pause(1),
            Request::Resume(1),
            Request::Status,
        ] {
            let l = r.line();
            assert!(l.ends_with('\n'));
            assert_eq!(Request::parse(&l.as_bytes()[..l.len() - 1]), Some(r), "{l}");
        }
    }

    #[test]
    fn bad_requests() {
        for l in [
            &b""[..],
            b"hold",
            b"hold ",
            b"hold x",
            b"hold -1",
            b"hold +1",
            b"hold 18446744073709551616",
            b"hold 1 2",
            b"hold  1",
            b"HOLD 1",
            b"pause",
            b"pause all",
            b"status now",
            b"retry",
            b"delete 1\r",
            b"frobnicate 1",
        ] {
            assert_eq!(Request::parse(l), None, "{:?}", String::from_utf8_lossy(l));
        }
        // Message numbers are read as the queue's file names are: leading zeros are fine.
        assert_eq!(Request::parse(b"hold 01"), Some(Request::Hold(1)));
    }

    #[test]
    fn replies_round_trip_and_reject_junk() {
        let r = Reply::new(Kind::Ok, "held")
            .field("id", 457)
            .field("success", 1)
            .field("channel", "remote");
        assert_eq!(r.line(), "ok held id=457 success=1 channel=remote\n");
        let p = Reply::parse(b"ok held id=457 success=1 channel=remote").unwrap();
        assert_eq!(p, r);
        assert_eq!(p.num("id"), Some(457));
        assert_eq!(p.get("channel"), Some("remote"));
        assert_eq!(p.get("nothing"), None);
        // Values with spaces or other characters are never produced.
        let r = Reply::new(Kind::No, "bad-request").field("x", "a b");
        assert_eq!(r.line(), "no bad-request\n");
        assert_eq!(Reply::new(Kind::Later, "Bad Word").word, "unknown");
        for l in [
            &b"maybe held"[..],
            b"ok",
            b"ok Held",
            b"ok held id",
            b"ok held =1",
            b"ok held id=\x01",
            b"ok held id=1 ",
        ] {
            assert_eq!(Reply::parse(l), None, "{:?}", String::from_utf8_lossy(l));
        }
    }

    #[test]
    fn socket_names_differ_by_queue() {
        assert_eq!(socket_name(0x801, 0x1234), b"rqmail-qctl/801/1234");
        assert_ne!(socket_name(1, 2), socket_name(2, 1));
    }

    proptest! {
        #[test]
        fn request_parser_never_panics(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Some(r) = Request::parse(&line) {
                // Whatever parses is exactly the canonical line.
                let l = r.line();
                prop_assert_eq!(l.as_bytes(), [&line[..], b"\n"].concat());
            }
        }

        #[test]
        fn reply_parser_never_panics(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Some(r) = Reply::parse(&line) {
                let l = r.line();
                prop_assert_eq!(l.as_bytes(), [&line[..], b"\n"].concat());
            }
        }

        #[test]
        fn ids_round_trip(n in any::<u64>()) {
            prop_assert_eq!(Request::parse(format!("delete {n}").as_bytes()), Some(Request::Delete(n)));
        }
    }
}
