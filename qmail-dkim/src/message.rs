//! Reading the message once: every byte goes to the spool file as it came, the header
//! section (bounded) is kept, the body is canonicalised and hashed as it passes. Then the
//! author domain, or the reason the message cannot be signed.
//!
//! The header and the hash are those of the message with its bare CRs made line ends
//! ([`dkim::LineEnds`]); a signed message is stored in that form
//! ([`copy_converted`]), an unsigned one as it came.

use dkim::{
    AddressError, BodyHasher, Canon, Collector, Domain, Feed, Header, LineEnds, Malformed, TooLong,
    mailboxes,
};
use std::fmt;
use std::io::{self, Read, Write};

/// The most header bytes kept in memory; a longer header section is not signed.
pub const HEADER_LIMIT: usize = 256 * 1024;

/// Why a message goes on unsigned although its sender is trusted: something about the
/// message itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSigned {
    TooLong(TooLong),
    Malformed(Malformed),
    NoFrom,
    SeveralFrom(usize),
    BadFrom(AddressError),
    /// The From: field names no mailbox (an empty group).
    NoAuthor,
    /// The author's domain is an address literal.
    LiteralDomain,
}

impl fmt::Display for NotSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotSigned::TooLong(e) => e.fmt(f),
            NotSigned::Malformed(e) => e.fmt(f),
            NotSigned::NoFrom => f.write_str("no From: field"),
            NotSigned::SeveralFrom(n) => write!(f, "{n} From: fields"),
            NotSigned::BadFrom(e) => write!(f, "From: field unreadable: {e}"),
            NotSigned::NoAuthor => f.write_str("From: field names no mailbox"),
            NotSigned::LiteralDomain => f.write_str("From: address has an address literal"),
        }
    }
}

/// What reading the message found.
#[derive(Debug)]
pub struct Spooled {
    /// The header section, or why it cannot be signed.
    pub header: Result<Header, NotSigned>,
    /// The SHA-256 hash of the relaxed body.
    pub body_hash: [u8; 32],
    /// The message's size in bytes.
    pub size: u64,
}

/// Reading or spooling failed.
#[derive(Debug)]
pub enum Failure {
    Read(io::Error),
    Write(io::Error),
}

/// The header collector and the body hash, fed the converted message.
struct Split {
    collector: Option<Collector>,
    too_long: Option<TooLong>,
    header: Option<Vec<u8>>,
    body: BodyHasher,
}

impl Split {
    fn feed(&mut self, piece: &[u8]) {
        let body_part = match self.collector.as_mut().map(|c| c.feed(piece)) {
            None => piece,
            Some(Ok(Feed::More)) => &[][..],
            Some(Ok(Feed::End(used))) => {
                self.header = self.collector.take().map(Collector::into_bytes);
                &piece[used..]
            }
            Some(Err(e)) => {
                // Too long to sign: the rest is still copied, nothing more is kept.
                self.too_long = Some(e);
                self.collector = None;
                &[][..]
            }
        };
        if self.too_long.is_none() {
            self.body.feed(body_part);
        }
    }
}

/// Copies `input` to `spool` to its end, keeping the header section (at most `limit`
/// bytes) and hashing the body.
pub fn read<R: Read, W: Write>(
    mut input: R,
    spool: &mut W,
    limit: usize,
) -> Result<Spooled, Failure> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut converted = Vec::with_capacity(buf.len() * 2);
    let mut ends = LineEnds::new();
    let mut split = Split {
        collector: Some(Collector::new(limit)),
        too_long: None,
        header: None,
        body: BodyHasher::new(Canon::Relaxed),
    };
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Read(e)),
        };
        let piece = &buf[..n];
        spool.write_all(piece).map_err(Failure::Write)?;
        size += n as u64;
        converted.clear();
        ends.feed(piece, &mut converted);
        split.feed(&converted);
    }
    converted.clear();
    ends.finish(&mut converted);
    split.feed(&converted);
    spool.flush().map_err(Failure::Write)?;
    let header = match (split.too_long, split.header, split.collector) {
        (Some(e), _, _) => Err(NotSigned::TooLong(e)),
        (None, Some(h), _) => Header::parse(h).map_err(NotSigned::Malformed),
        // No empty line: the whole message is header.
        (None, None, Some(c)) => Header::parse(c.into_bytes()).map_err(NotSigned::Malformed),
        (None, None, None) => Err(NotSigned::NoFrom),
    };
    let (body_hash, _) = split.body.finish();
    Ok(Spooled {
        header,
        body_hash,
        size,
    })
}

/// Copies a spooled message to `out` with its bare CRs made line ends: the form whose
/// header and hash [`read`] computed.
pub fn copy_converted<R: Read, W: Write>(mut spool: R, out: &mut W) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut converted = Vec::with_capacity(buf.len() * 2);
    let mut ends = LineEnds::new();
    loop {
        let n = match spool.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        converted.clear();
        ends.feed(&buf[..n], &mut converted);
        out.write_all(&converted)?;
    }
    converted.clear();
    ends.finish(&mut converted);
    out.write_all(&converted)?;
    out.flush()
}

/// The domain of the (first) author in the one From: field, lower case.
pub fn author_domain(header: &Header) -> Result<String, NotSigned> {
    let mut from = header.all("from");
    let Some(field) = from.next() else {
        return Err(NotSigned::NoFrom);
    };
    let more = from.count();
    if more > 0 {
        return Err(NotSigned::SeveralFrom(more + 1));
    }
    let boxes = mailboxes(field.value()).map_err(NotSigned::BadFrom)?;
    match boxes.into_iter().next().map(|m| m.domain) {
        None => Err(NotSigned::NoAuthor),
        Some(Domain::Literal(_)) => Err(NotSigned::LiteralDomain),
        Some(Domain::Name(d)) => Ok(String::from_utf8_lossy(&d).to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(msg: &[u8], limit: usize) -> (Spooled, Vec<u8>) {
        let mut out = Vec::new();
        // Small reads, to cross every boundary.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(b.len()).min(7);
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let s = read(Trickle(msg), &mut out, limit).unwrap();
        (s, out)
    }

    fn relaxed_hash(body: &[u8]) -> [u8; 32] {
        let mut h = BodyHasher::new(Canon::Relaxed);
        h.feed(body);
        h.finish().0
    }

    #[test]
    fn copies_everything_and_hashes_the_body() {
        let msg = b"From: a@Example.COM\nSubject: x\n\nbody  line \n\n";
        let (s, out) = spool(msg, 1000);
        assert_eq!(out, msg);
        assert_eq!(s.size, msg.len() as u64);
        assert_eq!(s.body_hash, relaxed_hash(b"body  line \n\n"));
        let h = s.header.unwrap();
        assert_eq!(author_domain(&h).unwrap(), "example.com");
    }

    #[test]
    fn header_only_message() {
        let (s, _) = spool(b"From: <a@b.example>", 1000);
        assert_eq!(author_domain(&s.header.unwrap()).unwrap(), "b.example");
        assert_eq!(s.body_hash, relaxed_hash(b""));
    }

    #[test]
    fn reasons_not_to_sign() {
        let why = |m: &[u8]| {
            let (s, out) = spool(m, 64);
            assert_eq!(out, m);
            s.header.and_then(|h| author_domain(&h)).unwrap_err()
        };
        assert_eq!(why(b"Subject: x\n\nb\n"), NotSigned::NoFrom);
        assert_eq!(why(b""), NotSigned::NoFrom);
        assert_eq!(
            why(b"From: a@b\nfrom: c@d\n\nb\n"),
            NotSigned::SeveralFrom(2)
        );
        assert_eq!(
            why(b"From: alice\n\nb\n"),
            NotSigned::BadFrom(AddressError::NoDomain)
        );
        assert_eq!(why(b"From: list:;\n\n"), NotSigned::NoAuthor);
        assert_eq!(why(b"From: a@[192.0.2.1]\n\n"), NotSigned::LiteralDomain);
        assert!(matches!(
            why(b"From: a@b\nnot a field\n\nb\n"),
            NotSigned::Malformed(Malformed::NoColon(2))
        ));
        let long = format!("From: a@b\nX: {}\n\nbody\n", "y".repeat(100));
        assert!(matches!(why(long.as_bytes()), NotSigned::TooLong(_)));
    }

    #[test]
    fn bare_crs_are_line_ends_for_the_signature() {
        let msg = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\nlone\rCR\r";
        let (s, out) = spool(msg, 1000);
        assert_eq!(out, msg, "the spool keeps the message as it came");
        let h = s.header.unwrap();
        assert_eq!(h.bytes(), b"From: a@example.com\nSubject: x\n");
        assert_eq!(s.body_hash, relaxed_hash(b"body\nlone\nCR\n"));
        let mut conv = Vec::new();
        copy_converted(&msg[..], &mut conv).unwrap();
        assert_eq!(conv, b"From: a@example.com\nSubject: x\n\nbody\nlone\nCR\n");
    }

    #[test]
    fn read_and_write_errors() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("gone"))
            }
        }
        assert!(matches!(
            read(Broken, &mut Vec::new(), 10),
            Err(Failure::Read(_))
        ));
        let mut full = [0u8; 3];
        assert!(matches!(
            read(&b"From: a@b\n\n"[..], &mut &mut full[..], 100),
            Err(Failure::Write(_))
        ));
    }
}
