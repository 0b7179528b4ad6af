//! qmail-send's activity record (qmail-log(5)): lines written to descriptor 0, which
//! qmail-start connects to the logger.
//!
//! Each line is assembled first and written with one write, so a logger reading the pipe
//! never sees two lines interleaved. Untrusted pieces (envelope addresses, delivery
//! reports) go through [`safe`], as netqmail's `logsafe` does.

use std::io::Write;
use std::os::fd::AsFd;

/// netqmail's `logsafe`: newline becomes `/`; `%`, spaces, control characters and 8-bit
/// bytes become `_`.
pub fn safe(s: &[u8]) -> Vec<u8> {
    s.iter()
        .map(|&c| match c {
            b'\n' => b'/',
            b'%' => b'_',
            33..=126 => c,
            _ => b'_',
        })
        .collect()
}

/// Builds one log line from pieces.
#[derive(Debug, Default)]
pub struct Line(Vec<u8>);

impl Line {
    pub fn new() -> Line {
        Line(Vec::with_capacity(128))
    }
    /// Appends trusted text as is.
    pub fn s(mut self, t: &str) -> Line {
        self.0.extend_from_slice(t.as_bytes());
        self
    }
    /// Appends a number.
    pub fn n(mut self, v: u64) -> Line {
        self.0.extend_from_slice(v.to_string().as_bytes());
        self
    }
    /// Appends untrusted bytes through [`safe`].
    pub fn safe(mut self, t: &[u8]) -> Line {
        self.0.extend(safe(t));
        self
    }
    /// The bytes of the line.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Writes a finished line (which must end with `\n`) to descriptor 0. Errors are ignored,
/// as in netqmail: a dead logger must not stop deliveries.
pub fn put(line: &[u8]) {
    let fd = std::io::stdin();
    let mut w = qmail_queue::FdWriter::new(fd.as_fd());
    let _ = w.write_all(line);
}

/// Writes a trusted one-piece line to descriptor 0.
pub fn text(t: &str) {
    put(t.as_bytes());
}

/// Writes a [`Line`].
pub fn line(l: Line) {
    put(l.bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logsafe_rules() {
        assert_eq!(safe(b"did 0+0+1/\n"), b"did_0+0+1//");
        assert_eq!(safe(b"a%b\tc\x7f\xff~!"), b"a_b_c__~!");
        assert_eq!(safe(b""), b"");
    }
}
