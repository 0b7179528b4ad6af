//! qmail-send's activity record (qmail-log(5)): lines written to descriptor 0, which
//! qmail-start connects to the logger.
//!
//! Each line is assembled first; the lines of one turn of the main loop are collected
//! and written together when the loop is about to wait ([`flush`]), in writes of at most
//! [`WRITE_MAX`] bytes that end at line ends, so a logger reading the pipe never sees a
//! line cut by another writer's. A delivered message takes seven lines (new msg, info
//! msg, starting delivery, status, delivery, status, end msg): written one by one they
//! were about a fifth of qmail-send's system calls in a slow-MX run, each waking the
//! logger (see bench/RESULTS.md).
//! Untrusted pieces (envelope addresses, delivery reports) go through [`safe`], as
//! netqmail's `logsafe` does.

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::AsFd;

/// Most bytes written at once: PIPE_BUF, the size up to which a write to a pipe is
/// atomic (a longer line goes alone).
pub const WRITE_MAX: usize = 4096;

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

/// Lines collected for one write: `push` hands out a chunk whenever the next line would
/// not fit in [`WRITE_MAX`] bytes.
#[derive(Debug, Default)]
pub struct Pending(Vec<u8>);

impl Pending {
    pub const fn new() -> Pending {
        Pending(Vec::new())
    }

    /// Adds `line`; `out` receives the chunks that are complete.
    pub fn push(&mut self, line: &[u8], mut out: impl FnMut(&[u8])) {
        if !self.0.is_empty() && self.0.len() + line.len() > WRITE_MAX {
            out(&self.0);
            self.0.clear();
        }
        self.0.extend_from_slice(line);
        if self.0.len() >= WRITE_MAX {
            out(&self.0);
            self.0.clear();
        }
    }

    /// Hands out what is left.
    pub fn drain(&mut self, mut out: impl FnMut(&[u8])) {
        if !self.0.is_empty() {
            out(&self.0);
            self.0.clear();
        }
    }
}

thread_local! {
    /// Lines not yet written.
    static PENDING: RefCell<Pending> = const { RefCell::new(Pending::new()) };
}

/// Writes `bytes` to descriptor 0. Errors are ignored, as in netqmail: a dead logger
/// must not stop deliveries.
fn write_out(bytes: &[u8]) {
    let fd = std::io::stdin();
    let mut w = qmail_queue::FdWriter::new(fd.as_fd());
    let _ = w.write_all(bytes);
}

/// Queues a finished line (which must end with `\n`) for descriptor 0; the lines go out
/// in order, at the latest at the next [`flush`].
pub fn put(line: &[u8]) {
    PENDING.with_borrow_mut(|p| p.push(line, write_out));
}

/// Writes the queued lines: before qmail-send waits (for its descriptors, for a thread,
/// for qmail-clean, or in a sleep after an alert) and before it exits.
pub fn flush() {
    PENDING.with_borrow_mut(|p| p.drain(write_out));
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

    #[test]
    fn lines_go_out_whole_in_order_in_chunks_of_at_most_pipe_buf() {
        let mut p = Pending::new();
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let lines: Vec<Vec<u8>> = (0..300u32)
            .map(|i| format!("starting delivery {i}: msg {}\n", i * 7).into_bytes())
            .collect();
        for l in &lines {
            p.push(l, |c| chunks.push(c.to_vec()));
        }
        assert!(chunks.len() > 1, "300 lines are more than one write");
        p.drain(|c| chunks.push(c.to_vec()));
        p.drain(|_| panic!("nothing left"));
        for c in &chunks {
            assert!(c.len() <= WRITE_MAX && c.ends_with(b"\n"));
        }
        assert_eq!(chunks.concat(), lines.concat());
    }

    #[test]
    fn a_line_longer_than_pipe_buf_goes_alone() {
        let mut p = Pending::new();
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let long = [vec![b'x'; WRITE_MAX + 10], b"\n".to_vec()].concat();
        p.push(b"status: local 0/10 remote 0/20\n", |c| {
            chunks.push(c.to_vec())
        });
        p.push(&long, |c| chunks.push(c.to_vec()));
        p.push(b"end msg 1\n", |c| chunks.push(c.to_vec()));
        p.drain(|c| chunks.push(c.to_vec()));
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1], long);
        assert_eq!(chunks[2], b"end msg 1\n");
    }
}
