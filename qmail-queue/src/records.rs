//! The records of the queue's files, read the one way every reader reads them
//! (qmail-send, qmail-qread, qmail-qctl; the fuzz targets drive the same functions).
//!
//! A record is a type byte, its text and a NUL: `u`, `p`, `F`, `T` in todo/N and intd/N
//! (qmail-queue's copy of the envelope, INTERNALS), `F` in info/S/N, `T` (waiting) and `D`
//! (done) in local/S/N and remote/S/N. What follows the last NUL of a file is a record
//! not finished (a crash while it was written): every reader ignores it, as netqmail's
//! getln loops do. A record of any other type, or an empty one, is the caller's
//! "unknown record type".

use std::io::{self, BufRead};

/// What [`read_bounded`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum BoundedLine {
    /// A complete record, delimiter included.
    Line(Vec<u8>),
    /// A record longer than the limit; it has been consumed up to and including its
    /// delimiter (or to end of input).
    TooLong,
    /// End of input; holds the bytes of an unterminated last record (maybe empty).
    Eof(Vec<u8>),
}

/// Reads one record ending with `delim`, at most `max` bytes including the delimiter, so
/// that no file can make a daemon grow without bound.
pub fn read_bounded<R: BufRead>(r: &mut R, delim: u8, max: usize) -> io::Result<BoundedLine> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(if too_long {
                BoundedLine::TooLong
            } else {
                BoundedLine::Eof(line)
            });
        }
        let (chunk, done) = match buf.iter().position(|&c| c == delim) {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = chunk.len();
        if !too_long {
            if line.len() + n > max {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        r.consume(n);
        if done {
            return Ok(if too_long {
                BoundedLine::TooLong
            } else {
                BoundedLine::Line(line)
            });
        }
    }
}

/// The complete records of a file's contents, each with its NUL; what follows the last
/// NUL is left out.
pub fn complete_records(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split_inclusive(|&c| c == 0)
        .filter(|r| r.last() == Some(&0))
}

/// A record's type byte and text (without the NUL that ends it, if it is there).
fn parts(rec: &[u8]) -> Option<(u8, &[u8])> {
    let rec = rec.strip_suffix(&[0]).unwrap_or(rec);
    let (&t, text) = rec.split_first()?;
    Some((t, text))
}

/// One record of todo/N (or intd/N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TodoRecord<'a> {
    /// `u`: the uid that queued the message (0 when it holds no digits, as netqmail's
    /// scan_ulong leaves it).
    Uid(u64),
    /// `p`: the pid of qmail-queue.
    Pid(u64),
    /// `F`: the envelope sender.
    Sender(&'a [u8]),
    /// `T`: a recipient.
    Recipient(&'a [u8]),
    /// Any other type, or an empty record.
    Unknown,
}

/// Reads one record of todo/N.
pub fn todo_record(rec: &[u8]) -> TodoRecord<'_> {
    match parts(rec) {
        Some((b'u', t)) => TodoRecord::Uid(control::scan_ulong(t).unwrap_or(0)),
        Some((b'p', t)) => TodoRecord::Pid(control::scan_ulong(t).unwrap_or(0)),
        Some((b'F', t)) => TodoRecord::Sender(t),
        Some((b'T', t)) => TodoRecord::Recipient(t),
        _ => TodoRecord::Unknown,
    }
}

/// One record of local/S/N or remote/S/N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRecord<'a> {
    /// `T`: a recipient still to be delivered.
    Waiting(&'a [u8]),
    /// `D`: a recipient delivered, or bounced (qmail-send writes the `D` over the `T`).
    Done(&'a [u8]),
    Unknown,
}

/// Reads one record of local/S/N or remote/S/N.
pub fn channel_record(rec: &[u8]) -> ChannelRecord<'_> {
    match parts(rec) {
        Some((b'T', t)) => ChannelRecord::Waiting(t),
        Some((b'D', t)) => ChannelRecord::Done(t),
        _ => ChannelRecord::Unknown,
    }
}

/// The envelope sender in the first record of info/S/N; None unless it is an `F` record.
pub fn info_sender(rec: &[u8]) -> Option<&[u8]> {
    match parts(rec) {
        Some((b'F', t)) => Some(t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bounded_records() {
        let mut r = io::BufReader::with_capacity(3, &b"ab\0cdefgh\0i\0jk"[..]);
        assert_eq!(
            read_bounded(&mut r, 0, 4).unwrap(),
            BoundedLine::Line(b"ab\0".to_vec())
        );
        assert_eq!(read_bounded(&mut r, 0, 4).unwrap(), BoundedLine::TooLong);
        assert_eq!(
            read_bounded(&mut r, 0, 4).unwrap(),
            BoundedLine::Line(b"i\0".to_vec())
        );
        assert_eq!(
            read_bounded(&mut r, 0, 4).unwrap(),
            BoundedLine::Eof(b"jk".to_vec())
        );
        assert_eq!(
            read_bounded(&mut r, 0, 4).unwrap(),
            BoundedLine::Eof(Vec::new())
        );
    }

    #[test]
    fn record_types() {
        assert_eq!(todo_record(b"u1000\0"), TodoRecord::Uid(1000));
        assert_eq!(todo_record(b"ux\0"), TodoRecord::Uid(0));
        assert_eq!(todo_record(b"p42"), TodoRecord::Pid(42));
        assert_eq!(todo_record(b"Fa@b\0"), TodoRecord::Sender(b"a@b"));
        assert_eq!(todo_record(b"F\0"), TodoRecord::Sender(b""));
        assert_eq!(todo_record(b"Tc@d\0"), TodoRecord::Recipient(b"c@d"));
        for bad in [&b"\0"[..], b"", b"Xy\0", b"\0\0", b"tc@d\0"] {
            assert_eq!(todo_record(bad), TodoRecord::Unknown, "{bad:?}");
        }
        assert_eq!(channel_record(b"Ta@b\0"), ChannelRecord::Waiting(b"a@b"));
        assert_eq!(channel_record(b"Da@b\0"), ChannelRecord::Done(b"a@b"));
        assert_eq!(channel_record(b"\0"), ChannelRecord::Unknown);
        assert_eq!(channel_record(b"Fa\0"), ChannelRecord::Unknown);
        assert_eq!(info_sender(b"Fa@b\0"), Some(&b"a@b"[..]));
        assert_eq!(info_sender(b"F\0"), Some(&b""[..]));
        assert_eq!(info_sender(b"\0"), None);
        assert_eq!(info_sender(b"Ta\0"), None);
        let recs: Vec<&[u8]> = complete_records(b"Ta\0\0Db\0Tunfinished").collect();
        assert_eq!(recs, [&b"Ta\0"[..], b"\0", b"Db\0"]);
        assert_eq!(complete_records(b"").count(), 0);
    }

    proptest! {
        #[test]
        fn readers_agree(data in proptest::collection::vec(any::<u8>(), 0..300), max in 1usize..40) {
            // read_bounded yields the complete records (or TooLong for each longer one),
            // then the unfinished tail, and consumes everything.
            let mut r = io::BufReader::with_capacity(7, &data[..]);
            let mut got = Vec::new();
            let tail = loop {
                match read_bounded(&mut r, 0, max).unwrap() {
                    BoundedLine::Line(l) => got.push(Some(l)),
                    BoundedLine::TooLong => got.push(None),
                    BoundedLine::Eof(t) => break t,
                }
            };
            let complete: Vec<&[u8]> = complete_records(&data).collect();
            let used: usize = complete.iter().map(|c| c.len()).sum();
            if data.len() - used > max {
                // An unfinished tail longer than the limit is one more TooLong.
                prop_assert_eq!(got.pop(), Some(None));
                prop_assert!(tail.is_empty());
            } else {
                prop_assert_eq!(tail.as_slice(), &data[used..]);
            }
            prop_assert_eq!(got.len(), complete.len());
            for (g, c) in got.iter().zip(&complete) {
                match g {
                    Some(l) => prop_assert_eq!(l.as_slice(), *c),
                    None => prop_assert!(c.len() > max),
                }
            }
            for c in &complete {
                if let TodoRecord::Sender(t) | TodoRecord::Recipient(t) = todo_record(c) {
                    prop_assert!(!t.contains(&0));
                }
                if let ChannelRecord::Waiting(t) | ChannelRecord::Done(t) = channel_record(c) {
                    prop_assert!(!t.contains(&0));
                }
            }
        }
    }
}
