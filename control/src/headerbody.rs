//! Splitting a message into header fields and body (netqmail's headerbody), with bounds.
//!
//! * A header field is a line `name: contents` (see [`crate::hfield::valid`]) plus every
//!   following line that starts with a space or a tab.
//! * A first line starting with `From ` (an mbox separator) becomes the field
//!   `MBOX-Line: From ...`.
//! * The header ends at an empty line (which begins the body), at a line that is not a
//!   header field (the body then begins with an inserted empty line followed by that
//!   line), or at the end of the input (no body at all).
//! * A last line without a newline gets one.
//!
//! Unlike netqmail, which holds any line in memory, a field may be at most
//! [`Limits::field`] bytes and the whole header [`Limits::header`] bytes. A line too long
//! to be held that does not start like a header field is the start of the body, which is
//! copied in blocks and never held in memory.

use std::io::{self, BufRead};

use crate::hfield;

/// Bounds on what is held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One header field, continuation lines included, in bytes.
    pub field: usize,
    /// All header fields together, in bytes.
    pub header: usize,
    /// Envelope recipients (arguments and header addresses together).
    pub recipients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            field: 256 * 1024,
            header: 4 * 1024 * 1024,
            recipients: 100_000,
        }
    }
}

/// Why the header could not be read.
#[derive(Debug)]
pub enum Error {
    Read(io::Error),
    /// Writing the body failed.
    Write(io::Error),
    FieldTooLong,
    HeaderTooLong,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Read(e)
    }
}

/// One line as read: complete (ends in a newline, one added at the end of the input) or
/// cut at the length bound.
struct Line {
    data: Vec<u8>,
    cut: bool,
}

/// Reads a message header field by field, then hands out the body.
pub struct HeaderBody<R> {
    input: R,
    limits: Limits,
    /// No more input will be read (end seen after a line without newline, or at a line
    /// boundary).
    eof: bool,
    /// The field being assembled, if any.
    pending: Option<Vec<u8>>,
    /// Bytes in fields already returned.
    header_bytes: usize,
    /// Set once the header has ended: the bytes that start the body.
    body_start: Option<Vec<u8>>,
}

impl<R: BufRead> HeaderBody<R> {
    /// Starts reading `input`.
    pub fn new(input: R, limits: Limits) -> Self {
        HeaderBody {
            input,
            limits,
            eof: false,
            pending: None,
            header_bytes: 0,
            body_start: None,
        }
    }

    /// Reads a line of at most `max` bytes (netqmail's getln plus a bound).
    fn read_line(&mut self, max: usize) -> io::Result<Option<Line>> {
        if self.eof {
            return Ok(None);
        }
        let mut data = Vec::new();
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                self.eof = true;
                if data.is_empty() {
                    return Ok(None);
                }
                data.push(b'\n');
                return Ok(Some(Line { data, cut: false }));
            }
            let room = max - data.len();
            let take = buf.len().min(room);
            if let Some(nl) = buf[..take].iter().position(|&c| c == b'\n') {
                data.extend_from_slice(&buf[..=nl]);
                self.input.consume(nl + 1);
                return Ok(Some(Line { data, cut: false }));
            }
            data.extend_from_slice(&buf[..take]);
            self.input.consume(take);
            if data.len() >= max {
                return Ok(Some(Line { data, cut: true }));
            }
        }
    }

    fn emit(&mut self, field: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.header_bytes += field.len();
        if self.header_bytes > self.limits.header {
            return Err(Error::HeaderTooLong);
        }
        Ok(field)
    }

    /// The next header field (with its newlines), or `None` when the header has ended.
    pub fn next_field(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if self.body_start.is_some() {
            return Ok(None);
        }
        loop {
            let Some(line) = self.read_line(self.limits.field)? else {
                self.body_start = Some(Vec::new());
                return match self.pending.take() {
                    Some(f) => self.emit(f).map(Some),
                    None => Ok(None),
                };
            };
            if let Some(mut f) = self.pending.take() {
                if line.data[0] == b' ' || line.data[0] == b'\t' {
                    if line.cut || f.len() + line.data.len() > self.limits.field {
                        return Err(Error::FieldTooLong);
                    }
                    f.extend_from_slice(&line.data);
                    self.pending = Some(f);
                    continue;
                }
                // The pending field is complete; look at this line once it is returned.
                self.start(line)?;
                return self.emit(f).map(Some);
            }
            self.start(line)?;
            if self.body_start.is_some() {
                return Ok(None);
            }
        }
    }

    /// A line that is not a continuation: a new field, or the end of the header.
    fn start(&mut self, line: Line) -> Result<(), Error> {
        if line.data == b"\n" {
            self.body_start = Some(line.data);
            return Ok(());
        }
        if line.data.starts_with(b"From ") {
            if line.cut {
                return Err(Error::FieldTooLong);
            }
            let mut f = b"MBOX-Line: ".to_vec();
            f.extend_from_slice(&line.data);
            if f.len() > self.limits.field {
                return Err(Error::FieldTooLong);
            }
            self.pending = Some(f);
            return Ok(());
        }
        if hfield::valid(&line.data) {
            if line.cut {
                return Err(Error::FieldTooLong);
            }
            self.pending = Some(line.data);
            return Ok(());
        }
        let mut b = b"\n".to_vec();
        b.extend_from_slice(&line.data);
        self.body_start = Some(b);
        Ok(())
    }

    /// Once [`next_field`](Self::next_field) has returned `None`: copies the body to
    /// `out` in blocks, adding a newline after a last line that lacks one. Returns the
    /// number of bytes written.
    pub fn copy_body(
        &mut self,
        out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, Error> {
        let start = self.body_start.take().unwrap_or_default();
        let mut written = start.len() as u64;
        let mut last = start.last().copied();
        out(&start).map_err(Error::Write)?;
        if self.eof {
            return Ok(written);
        }
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Read(e)),
            };
            if buf.is_empty() {
                break;
            }
            let n = buf.len();
            last = Some(buf[n - 1]);
            out(buf).map_err(Error::Write)?;
            written += n as u64;
            self.input.consume(n);
        }
        self.eof = true;
        if matches!(last, Some(c) if c != b'\n') {
            out(b"\n").map_err(Error::Write)?;
            written += 1;
        }
        Ok(written)
    }
}

/// Reads a whole message into (fields, body), for the tests.
#[cfg(test)]
fn split<R: BufRead>(input: R, limits: Limits) -> Result<(Vec<Vec<u8>>, Vec<u8>), Error> {
    let mut hb = HeaderBody::new(input, limits);
    let mut fields = Vec::new();
    while let Some(f) = hb.next_field()? {
        fields.push(f);
    }
    let mut body = Vec::new();
    hb.copy_body(&mut |b| std::io::Write::write_all(&mut body, b))?;
    Ok((fields, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(s: &[u8]) -> (Vec<String>, String) {
        let (f, b) = split(s, Limits::default()).unwrap();
        (
            f.into_iter()
                .map(|x| String::from_utf8(x).unwrap())
                .collect(),
            String::from_utf8(b).unwrap(),
        )
    }

    #[test]
    fn fields_and_body() {
        assert_eq!(
            sp(b"To: a\n b\nSubject: x\n\nbody\n"),
            (
                vec!["To: a\n b\n".into(), "Subject: x\n".into()],
                "\nbody\n".into()
            )
        );
        assert_eq!(sp(b"To: a"), (vec!["To: a\n".into()], "".into()));
        assert_eq!(sp(b""), (vec![], "".into()));
        assert_eq!(sp(b"\n"), (vec![], "\n".into()));
        assert_eq!(
            sp(b"To: a\n\nno newline"),
            (vec!["To: a\n".into()], "\nno newline\n".into())
        );
        assert_eq!(
            sp(b"From joe Mon\nTo: a\nnot a header\nmore\n"),
            (
                vec!["MBOX-Line: From joe Mon\n".into(), "To: a\n".into()],
                "\nnot a header\nmore\n".into()
            )
        );
        assert_eq!(sp(b"hello world\n"), (vec![], "\nhello world\n".into()));
        assert_eq!(sp(b" To: a\n"), (vec![], "\n To: a\n".into()));
        assert_eq!(
            sp(b"To: a\r\n\r\nx"),
            (vec!["To: a\r\n".into()], "\n\r\nx\n".into())
        );
    }

    #[test]
    fn bounds() {
        let lim = Limits {
            field: 16,
            header: 40,
            recipients: 10,
        };
        let r = split(&b"To: 0123456789abcdef\n\n"[..], lim);
        assert!(matches!(r, Err(Error::FieldTooLong)));
        let r = split(&b"To: 0123\n 456789abcdef\n\n"[..], lim);
        assert!(matches!(r, Err(Error::FieldTooLong)));
        let r = split(
            &b"A: 1\nB: 2\nC: 3\nD: 4\nE: 5\nF: 6\nG: 7\nH: 8\nI: 9\n\n"[..],
            lim,
        );
        assert!(matches!(r, Err(Error::HeaderTooLong)));
        // A long line that is not a field starts the body and is copied whole.
        let long = [b'x'; 100];
        let (f, b) = split(&long[..], lim).unwrap();
        assert!(f.is_empty());
        assert_eq!(b.len(), 102);
        assert_eq!(&b[1..101], &long[..]);
        // A long body line is fine.
        let mut m = b"To: a\n\n".to_vec();
        m.extend_from_slice(&[b'y'; 1000]);
        let (f, b) = split(&m[..], lim).unwrap();
        assert_eq!(f, [b"To: a\n".to_vec()]);
        assert_eq!(b.len(), 1002);
    }
}
