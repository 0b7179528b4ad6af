//! Reading delimiter-terminated records with a limit, so that no input can make a daemon
//! grow without bound.

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

/// Reads one record ending with `delim`, at most `max` bytes including the delimiter.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
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
}
