//! Netstrings (`12:hello world!,`), the framing of QMQP and QMTP.
//!
//! A netstring is a length in decimal, a colon, that many bytes, and a comma. Everything
//! here is bounded: a length is refused as soon as its digits pass the caller's limit, so
//! no digit string can overflow a counter or ask for an allocation the caller did not
//! agree to.
//!
//! * [`encode`], [`encode_into`]: the writer;
//! * [`parse`]: one netstring at the start of a buffer (for replies read whole);
//! * [`Input`]: a buffered byte source with an optional byte budget, for servers that
//!   stream a message of any length into qmail-queue without holding it.
//!
//! netqmail's readers accept a length with no digits (`:`) as 0 and compute nonsense for
//! bytes that are not digits; these readers refuse both as [`Error::Malformed`]. A length
//! may have leading zeros, as netqmail allows.

use std::io::{self, Read};

/// The largest length netqmail's QMQP and QMTP servers accept: they give up (exit 111)
/// once a length passes 200,000,000 before its last digit.
pub const MAX_LEN: u64 = 2_000_000_000;

/// Why a netstring could not be read.
#[derive(Debug)]
pub enum Error {
    /// The input ended (or the byte budget ran out) before the netstring did.
    Eof,
    /// Not a netstring: a byte other than a digit before the colon, no digits, or
    /// something other than a comma after the content.
    Malformed,
    /// A length above the limit the caller gave.
    TooLong,
    /// The budget of bytes the caller allowed ran out.
    Budget,
    /// Reading failed (a timeout among others).
    Io(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Eof => f.write_str("end of input inside a netstring"),
            Error::Malformed => f.write_str("malformed netstring"),
            Error::TooLong => f.write_str("netstring length beyond the limit"),
            Error::Budget => f.write_str("netstring beyond the enclosing length"),
            Error::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Appends the netstring of `data` to `out`.
pub fn encode_into(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(data);
    out.push(b',');
}

/// The netstring of `data`.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    encode_into(&mut out, data);
    out
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole netstring: its content and the bytes after its comma.
    Done { content: &'a [u8], rest: &'a [u8] },
    /// A correct beginning; more bytes are needed.
    Partial,
}

/// Parses one netstring at the start of `buf`, whose length may be at most `max`.
pub fn parse(buf: &[u8], max: u64) -> Result<Parsed<'_>, Error> {
    let mut len: u64 = 0;
    let mut digits = 0usize;
    for (i, &c) in buf.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                len = len * 10 + u64::from(c - b'0');
                digits += 1;
                if len > max {
                    return Err(Error::TooLong);
                }
            }
            b':' if digits > 0 => {
                let start = i + 1;
                let n = usize::try_from(len).map_err(|_| Error::TooLong)?;
                let Some(end) = start.checked_add(n) else {
                    return Err(Error::TooLong);
                };
                return match buf.get(end) {
                    None => Ok(Parsed::Partial),
                    Some(b',') => Ok(Parsed::Done {
                        content: &buf[start..end],
                        rest: &buf[end + 1..],
                    }),
                    Some(_) => Err(Error::Malformed),
                };
            }
            _ => return Err(Error::Malformed),
        }
    }
    Ok(Parsed::Partial)
}

/// A buffered reader of netstrings with an optional budget: a count of bytes that may
/// still be read (QMQP's outer netstring, QMTP's recipient list), past which every read
/// fails with [`Error::Budget`].
pub struct Input<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    budget: Option<u64>,
}

impl<R> std::fmt::Debug for Input<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("buffered", &(self.end - self.pos))
            .field("budget", &self.budget)
            .finish()
    }
}

impl<R: Read> Input<R> {
    /// Reads from `inner` in blocks of `bufsize` bytes (at least 1).
    pub fn new(inner: R, bufsize: usize) -> Input<R> {
        Input {
            inner,
            buf: vec![0u8; bufsize.max(1)].into_boxed_slice(),
            pos: 0,
            end: 0,
            budget: None,
        }
    }

    /// Limits the bytes that may still be read to `n` (`None`: no limit).
    pub fn set_budget(&mut self, n: Option<u64>) {
        self.budget = n;
    }

    /// The bytes that may still be read, when limited.
    pub fn budget(&self) -> Option<u64> {
        self.budget
    }

    /// How many bytes are read from the source and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.end - self.pos
    }

    fn fill(&mut self) -> Result<(), Error> {
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Err(Error::Eof),
                Ok(n) => {
                    self.pos = 0;
                    self.end = n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    fn charge(&mut self, n: u64) -> Result<(), Error> {
        if let Some(b) = &mut self.budget {
            if *b < n {
                return Err(Error::Budget);
            }
            *b -= n;
        }
        Ok(())
    }

    /// The next byte.
    pub fn byte(&mut self) -> Result<u8, Error> {
        self.charge(1)?;
        if self.pos == self.end {
            self.fill()?;
        }
        let c = self.buf[self.pos];
        self.pos += 1;
        Ok(c)
    }

    /// A length and its colon; at most `max`.
    pub fn length(&mut self, max: u64) -> Result<u64, Error> {
        let mut len: u64 = 0;
        let mut digits = false;
        loop {
            match self.byte()? {
                c @ b'0'..=b'9' => {
                    len = len * 10 + u64::from(c - b'0');
                    digits = true;
                    if len > max {
                        return Err(Error::TooLong);
                    }
                }
                b':' if digits => return Ok(len),
                _ => return Err(Error::Malformed),
            }
        }
    }

    /// The comma that ends a netstring.
    pub fn comma(&mut self) -> Result<(), Error> {
        match self.byte()? {
            b',' => Ok(()),
            _ => Err(Error::Malformed),
        }
    }

    /// Hands the next `n` bytes to `sink`, in pieces as they arrive.
    pub fn copy(&mut self, n: u64, mut sink: impl FnMut(&[u8])) -> Result<(), Error> {
        if let Some(b) = self.budget
            && b < n
        {
            // Consume what the budget allows, as a byte-at-a-time reader would.
            let allowed = b;
            self.copy_unbudgeted(allowed, &mut sink)?;
            self.budget = Some(0);
            return Err(Error::Budget);
        }
        self.charge(n)?;
        self.copy_unbudgeted(n, &mut sink)
    }

    fn copy_unbudgeted(&mut self, mut n: u64, sink: &mut impl FnMut(&[u8])) -> Result<(), Error> {
        while n > 0 {
            if self.pos == self.end {
                self.fill()?;
            }
            let avail = self.end - self.pos;
            let take = usize::try_from(n).map_or(avail, |n| n.min(avail));
            sink(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: u64) -> Result<(), Error> {
        self.copy(n, |_| {})
    }

    /// A whole netstring of at most `max` bytes, into memory.
    pub fn netstring(&mut self, max: u64) -> Result<Vec<u8>, Error> {
        let n = self.length(max)?;
        let mut v = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        self.copy(n, |b| v.extend_from_slice(b))?;
        self.comma()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(b: &[u8]) -> Input<&[u8]> {
        Input::new(b, 3)
    }

    #[test]
    fn writer() {
        assert_eq!(encode(b"hello world!"), b"12:hello world!,");
        assert_eq!(encode(b""), b"0:,");
        let mut v = b"x".to_vec();
        encode_into(&mut v, b"ab");
        assert_eq!(v, b"x2:ab,");
    }

    #[test]
    fn parse_cases() {
        assert_eq!(
            parse(b"3:abc,rest", 10).unwrap(),
            Parsed::Done {
                content: b"abc",
                rest: b"rest"
            }
        );
        assert_eq!(
            parse(b"003:abc,", 10).unwrap(),
            Parsed::Done {
                content: b"abc",
                rest: b""
            }
        );
        assert_eq!(parse(b"", 10).unwrap(), Parsed::Partial);
        assert_eq!(parse(b"12", 100).unwrap(), Parsed::Partial);
        assert_eq!(parse(b"3:ab", 10).unwrap(), Parsed::Partial);
        assert!(matches!(parse(b"3:abcd", 10), Err(Error::Malformed)));
        assert!(matches!(parse(b":", 10), Err(Error::Malformed)));
        assert!(matches!(parse(b"1a:", 10), Err(Error::Malformed)));
        assert!(matches!(parse(b"-1:", 10), Err(Error::Malformed)));
        assert!(matches!(parse(b"11:", 10), Err(Error::TooLong)));
        assert!(matches!(
            parse(b"99999999999999999999999999:", MAX_LEN),
            Err(Error::TooLong)
        ));
    }

    #[test]
    fn input_cases() {
        let mut i = input(b"5:hello,0:,2:ab;");
        assert_eq!(i.netstring(100).unwrap(), b"hello");
        assert_eq!(i.netstring(100).unwrap(), b"");
        assert!(matches!(i.netstring(100), Err(Error::Malformed)));
        let mut i = input(b"5:hel");
        assert!(matches!(i.netstring(100), Err(Error::Eof)));
        let mut i = input(b"123456789012:");
        assert!(matches!(i.length(MAX_LEN), Err(Error::TooLong)));
        let mut i = input(b"x:");
        assert!(matches!(i.length(MAX_LEN), Err(Error::Malformed)));
    }

    #[test]
    fn budget() {
        let mut i = input(b"5:hello,5:hello,");
        i.set_budget(Some(10));
        assert_eq!(i.netstring(100).unwrap(), b"hello");
        assert_eq!(i.budget(), Some(2));
        assert!(matches!(i.netstring(100), Err(Error::Budget)));
        let mut i = input(b"5:hello,");
        i.set_budget(Some(4));
        assert_eq!(i.length(100).unwrap(), 5);
        assert!(matches!(i.skip(5), Err(Error::Budget)));
        assert_eq!(i.budget(), Some(0));
    }

    proptest! {
        #[test]
        fn round_trip(parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
                      bufsize in 1usize..64) {
            let mut wire = Vec::new();
            for p in &parts {
                encode_into(&mut wire, p);
            }
            let mut rest = &wire[..];
            for p in &parts {
                match parse(rest, MAX_LEN).unwrap() {
                    Parsed::Done { content, rest: r } => { prop_assert_eq!(content, &p[..]); rest = r; }
                    Parsed::Partial => prop_assert!(false),
                }
            }
            prop_assert!(rest.is_empty());
            let mut i = Input::new(&wire[..], bufsize);
            i.set_budget(Some(wire.len() as u64));
            for p in &parts {
                prop_assert_eq!(i.netstring(MAX_LEN).unwrap(), p.clone());
            }
            prop_assert_eq!(i.budget(), Some(0));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200),
                                       max in 0u64..1000, budget in proptest::option::of(0u64..300)) {
            let _ = parse(&b, max);
            let mut i = Input::new(&b[..], 7);
            i.set_budget(budget);
            while let Ok(v) = i.netstring(max) {
                prop_assert!(v.len() as u64 <= max);
            }
        }

        #[test]
        fn every_prefix_is_partial(p in proptest::collection::vec(any::<u8>(), 0..100)) {
            let w = encode(&p);
            for cut in 0..w.len() {
                prop_assert_eq!(parse(&w[..cut], MAX_LEN).unwrap(), Parsed::Partial);
            }
        }
    }
}
