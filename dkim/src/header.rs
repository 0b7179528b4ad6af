//! The header section of a message, as qmail stores messages: lines end in LF (the wire
//! form, which qmail-remote sends, has CR LF in their place; every other byte, a CR
//! included, goes out as it is).
//!
//! The header section is everything before the first empty line; a message without an
//! empty line is all header. [`Collector`] finds its end while the message streams past
//! and keeps at most a given number of bytes; [`Header::parse`] splits it into fields
//! (a field is a line `name:value` and the continuation lines after it, which start with
//! a space or a tab) and refuses a section that is not made of fields.

use std::fmt;
use std::ops::Range;

/// Finds the end of the header section in a message fed in pieces, keeping its bytes.
#[derive(Debug)]
pub struct Collector {
    buf: Vec<u8>,
    limit: usize,
    at_line_start: bool,
}

/// What [`Collector::feed`] found in a piece of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The whole piece belongs to the header section; it goes on.
    More,
    /// The header section ends in this piece: its first `n` bytes (the empty line
    /// included) belong to it, the rest is body.
    End(usize),
}

/// The header section is longer than the collector's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    /// The limit, in bytes.
    pub limit: usize,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "header section longer than {} bytes", self.limit)
    }
}

impl std::error::Error for TooLong {}

impl Collector {
    /// A collector that keeps at most `limit` bytes of header.
    pub fn new(limit: usize) -> Collector {
        Collector {
            buf: Vec::new(),
            limit,
            at_line_start: true,
        }
    }

    /// Takes the next piece of the message. After [`Feed::End`] the collector must not be
    /// fed again.
    pub fn feed(&mut self, piece: &[u8]) -> Result<Feed, TooLong> {
        let mut start = 0;
        let end = loop {
            let Some(i) = piece[start..].iter().position(|&c| c == b'\n') else {
                if start < piece.len() {
                    self.at_line_start = false;
                }
                break None;
            };
            let lf = start + i;
            if self.at_line_start && i == 0 {
                break Some(lf);
            }
            self.at_line_start = true;
            start = lf + 1;
        };
        let keep = end.unwrap_or(piece.len());
        if self.buf.len().saturating_add(keep) > self.limit {
            return Err(TooLong { limit: self.limit });
        }
        self.buf.extend_from_slice(&piece[..keep]);
        Ok(match end {
            Some(lf) => Feed::End(lf + 1),
            None => Feed::More,
        })
    }

    /// The header section collected (without the empty line that ended it).
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Why a header section is not a list of fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// The section starts with a continuation line (a space or a tab).
    LeadingContinuation,
    /// Line `n` (from 1) has no colon.
    NoColon(usize),
    /// Line `n` has a field name that is empty or has characters outside `!` to `~`.
    BadName(usize),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::LeadingContinuation => {
                f.write_str("header section starts with a continuation line")
            }
            Malformed::NoColon(n) => write!(f, "header line {n} is not a field (no colon)"),
            Malformed::BadName(n) => write!(f, "header line {n} has an invalid field name"),
        }
    }
}

impl std::error::Error for Malformed {}

/// A parsed header section: its bytes and the place of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    bytes: Vec<u8>,
    /// Each field: the whole field (without its last LF) and the length of its name.
    fields: Vec<(Range<usize>, usize)>,
}

/// One header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    raw: &'a [u8],
    name_len: usize,
}

fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// `s` without the spaces and tabs at its end.
pub(crate) fn trim_wsp_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., last] = s
        && is_wsp(*last)
    {
        s = rest;
    }
    s
}

impl<'a> Field<'a> {
    /// The field name as written (spaces and tabs before the colon removed).
    pub fn name(&self) -> &'a [u8] {
        trim_wsp_end(&self.raw[..self.name_len])
    }

    /// True when the name is `name`, compared without regard to ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name.as_bytes())
    }

    /// Everything after the colon, continuation lines (with their LF) included.
    pub fn value(&self) -> &'a [u8] {
        &self.raw[self.name_len + 1..]
    }

    /// The whole field as stored, without the LF that ends its last line.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

impl Header {
    /// Splits a header section (as [`Collector::into_bytes`] gives it: lines ending in LF,
    /// the last one possibly without) into fields.
    pub fn parse(bytes: Vec<u8>) -> Result<Header, Malformed> {
        let mut fields: Vec<(Range<usize>, usize)> = Vec::new();
        let mut pos = 0;
        let mut lineno = 0;
        while pos < bytes.len() {
            lineno += 1;
            let end = bytes[pos..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(bytes.len(), |i| pos + i);
            let line = &bytes[pos..end];
            if line.first().copied().is_some_and(is_wsp) {
                match fields.last_mut() {
                    Some((r, _)) => r.end = end,
                    None => return Err(Malformed::LeadingContinuation),
                }
            } else {
                let colon = line
                    .iter()
                    .position(|&c| c == b':')
                    .ok_or(Malformed::NoColon(lineno))?;
                let name = trim_wsp_end(&line[..colon]);
                if name.is_empty() || !name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
                    return Err(Malformed::BadName(lineno));
                }
                fields.push((pos..end, colon));
            }
            pos = end + 1;
        }
        Ok(Header { bytes, fields })
    }

    /// The fields, top to bottom.
    pub fn fields(&self) -> impl DoubleEndedIterator<Item = Field<'_>> + '_ {
        self.fields.iter().map(|(r, n)| Field {
            raw: &self.bytes[r.clone()],
            name_len: *n,
        })
    }

    /// The fields named `name` (ASCII case ignored), top to bottom.
    pub fn all<'h>(&'h self, name: &'h str) -> impl DoubleEndedIterator<Item = Field<'h>> + 'h {
        self.fields().filter(move |f| f.is(name))
    }

    /// How many fields are named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.all(name).count()
    }

    /// The header section's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(msg: &[u8], piece: usize, limit: usize) -> Result<(Vec<u8>, usize), TooLong> {
        let mut c = Collector::new(limit);
        let mut off = 0;
        for p in msg.chunks(piece.max(1)) {
            if let Feed::End(n) = c.feed(p)? {
                return Ok((c.into_bytes(), off + n));
            }
            off += p.len();
        }
        Ok((c.into_bytes(), msg.len()))
    }

    #[test]
    fn finds_the_empty_line() {
        let msg = b"A: 1\nB: 2\n\nbody\n\nmore\n";
        for piece in 1..msg.len() {
            let (h, n) = collect(msg, piece, 1000).unwrap();
            assert_eq!(h, b"A: 1\nB: 2\n");
            assert_eq!(&msg[n..], b"body\n\nmore\n");
        }
    }

    #[test]
    fn empty_header_and_no_body() {
        assert_eq!(collect(b"\nbody\n", 3, 10).unwrap(), (vec![], 1));
        assert_eq!(
            collect(b"A: 1\nB: 2", 4, 100).unwrap(),
            (b"A: 1\nB: 2".to_vec(), 9)
        );
        assert_eq!(collect(b"", 4, 100).unwrap(), (vec![], 0));
    }

    #[test]
    fn limit_is_kept() {
        assert_eq!(collect(b"A: 1\n\n", 1, 5).unwrap().0, b"A: 1\n");
        assert_eq!(
            collect(b"A: 12\n\n", 2, 5).unwrap_err(),
            TooLong { limit: 5 }
        );
    }

    #[test]
    fn fields_and_continuations() {
        let h =
            Header::parse(b"From: a@b\nSubject : hi\n\tthere\nX:\nsubject:again".to_vec()).unwrap();
        let f: Vec<_> = h.fields().collect();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].name(), b"From");
        assert_eq!(f[0].value(), b" a@b");
        assert_eq!(f[1].name(), b"Subject");
        assert_eq!(f[1].raw(), b"Subject : hi\n\tthere");
        assert_eq!(f[1].value(), b" hi\n\tthere");
        assert_eq!(f[2].value(), b"");
        assert_eq!(h.count("SUBJECT"), 2);
        assert_eq!(h.all("subject").last().unwrap().value(), b"again");
    }

    #[test]
    fn malformed_sections() {
        assert_eq!(
            Header::parse(b" x\nA: b\n".to_vec()),
            Err(Malformed::LeadingContinuation)
        );
        assert_eq!(
            Header::parse(b"A: b\nnot a field\n".to_vec()),
            Err(Malformed::NoColon(2))
        );
        assert_eq!(
            Header::parse(b"A: b\n: x\n".to_vec()),
            Err(Malformed::BadName(2))
        );
        assert_eq!(
            Header::parse(b"From x: y\n".to_vec()),
            Err(Malformed::BadName(1))
        );
        assert_eq!(
            Header::parse(b"A\xff: y\n".to_vec()),
            Err(Malformed::BadName(1))
        );
    }

    proptest! {
        #[test]
        fn collector_split_does_not_depend_on_pieces(
            msg in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b' '), any::<u8>()], 0..200),
            piece in 1usize..50,
        ) {
            let whole = collect(&msg, msg.len().max(1), 1000).unwrap();
            let pieces = collect(&msg, piece, 1000).unwrap();
            prop_assert_eq!(&whole, &pieces);
            let (h, n) = whole;
            // The header is the message up to the first empty line, which is not kept.
            prop_assert!(msg.starts_with(&h));
            prop_assert!(n == msg.len() || (n >= 1 && msg[n - 1] == b'\n'));
            prop_assert!(!h.windows(2).any(|w| w == b"\n\n"));
            prop_assert!(!h.starts_with(b"\n"));
        }

        #[test]
        fn parsed_fields_cover_the_section(
            bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b':'), Just(b' '), Just(b'x'), any::<u8>()], 0..200),
        ) {
            if let Ok(h) = Header::parse(bytes.clone()) {
                let mut again = Vec::new();
                for f in h.fields() {
                    prop_assert!(!f.name().is_empty());
                    prop_assert!(f.name().iter().all(|&c| (b'!'..=b'~').contains(&c)));
                    again.extend_from_slice(f.raw());
                    again.push(b'\n');
                }
                // Fields joined by LF give back the section (its last LF aside).
                let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                prop_assert_eq!(again.strip_suffix(b"\n").unwrap_or(&again), trimmed);
            }
        }
    }
}
