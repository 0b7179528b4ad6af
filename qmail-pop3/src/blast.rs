//! A message as qmail-pop3d sends it for RETR and TOP, byte for byte as netqmail's
//! `blast`: each line (LF-terminated in the Maildir) goes out with CR LF; a line that
//! starts with `.` gets another `.` in front; a CR already at the end of a line is kept
//! (it then goes out as CR CR LF); a last line without LF is sent with CR LF; after the
//! message come an empty line (netqmail's extra blank line, for clients that need it) and
//! the terminating `.`.
//!
//! With a line limit (TOP), the header and the empty line after it are sent, then
//! `limit - 1` lines of the body. The limit is counted as netqmail counts it; see
//! [`Blast::new`].
//!
//! The message is read in pieces of any size and never held whole: memory stays bounded
//! whatever the length of its lines.

/// One message being sent.
#[derive(Debug, Clone)]
pub struct Blast {
    /// 0: no limit; otherwise lines left, as netqmail's `limit`.
    limit: u64,
    in_header: bool,
    at_line_start: bool,
    done: bool,
}

/// What ends every message: netqmail's extra empty line and the terminating dot.
pub(crate) const END: &[u8] = b"\r\n.\r\n";

impl Blast {
    /// Starts a message. `limit` is netqmail's: 0 for the whole message, else one more
    /// than the number of body lines wanted (TOP's argument plus one, wrapping to 0).
    pub fn new(limit: u64) -> Blast {
        Blast {
            limit,
            in_header: true,
            at_line_start: true,
            done: false,
        }
    }

    /// True once the limit is reached: the rest of the message is not wanted.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Converts the next piece of the message into `out`. Returns how many bytes were
    /// used: all of them, unless the limit was reached on the way.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < data.len() && !self.done {
            if self.at_line_start {
                if self.limit != 0 && !self.in_header {
                    self.limit -= 1;
                    if self.limit == 0 {
                        self.done = true;
                        break;
                    }
                }
                if data[i] == b'\n' {
                    self.in_header = false;
                    out.extend_from_slice(b"\r\n");
                    i += 1;
                    continue;
                }
                if data[i] == b'.' {
                    out.push(b'.');
                }
                self.at_line_start = false;
            }
            match data[i..].iter().position(|&c| c == b'\n') {
                Some(lf) => {
                    out.extend_from_slice(&data[i..i + lf]);
                    out.extend_from_slice(b"\r\n");
                    i += lf + 1;
                    self.at_line_start = true;
                }
                None => {
                    out.extend_from_slice(&data[i..]);
                    i = data.len();
                }
            }
        }
        i
    }

    /// Ends the message (at the end of the file, or when [`Blast::done`]).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start && !self.done {
            out.extend_from_slice(b"\r\n");
        }
        self.done = true;
        out.extend_from_slice(END);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// netqmail's blast, line by line, as a model.
    fn model(msg: &[u8], mut limit: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut in_header = true;
        let mut rest = msg;
        loop {
            if rest.is_empty() {
                break;
            }
            let (line, matched, next) = match rest.iter().position(|&c| c == b'\n') {
                Some(p) => (&rest[..p], true, &rest[p + 1..]),
                None => (rest, false, &rest[rest.len()..]),
            };
            rest = next;
            if limit != 0 && !in_header {
                limit -= 1;
                if limit == 0 {
                    break;
                }
            }
            if line.is_empty() {
                in_header = false;
            } else if line[0] == b'.' {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
            if !matched {
                break;
            }
        }
        out.extend_from_slice(END);
        out
    }

    fn run(msg: &[u8], limit: u64, piece: usize) -> Vec<u8> {
        let mut b = Blast::new(limit);
        let mut out = Vec::new();
        for chunk in msg.chunks(piece.max(1)) {
            b.feed(chunk, &mut out);
            if b.done() {
                break;
            }
        }
        b.finish(&mut out);
        out
    }

    #[test]
    fn whole_messages() {
        let m = b"Subject: x\n\n.hidden\nbody\r\n";
        let want = b"Subject: x\r\n\r\n..hidden\r\nbody\r\r\n\r\n.\r\n";
        assert_eq!(run(m, 0, 100), want);
        assert_eq!(run(m, 0, 1), want);
        assert_eq!(run(b"", 0, 1), b"\r\n.\r\n");
        assert_eq!(run(b"no newline", 0, 3), b"no newline\r\n\r\n.\r\n");
        assert_eq!(run(b"\n", 0, 3), b"\r\n\r\n.\r\n");
    }

    #[test]
    fn top_counts_as_netqmail() {
        let m = b"A: 1\nB: 2\n\nl1\nl2\nl3\n";
        // TOP n 0: limit 1, the header and the empty line
        assert_eq!(run(m, 1, 4), b"A: 1\r\nB: 2\r\n\r\n\r\n.\r\n");
        // TOP n 2: limit 3
        assert_eq!(run(m, 3, 4), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n\r\n.\r\n");
        // more than there is
        assert_eq!(run(m, 50, 2), run(m, 0, 2));
        // a message with no empty line never leaves its header
        assert_eq!(run(b"a\nb\n", 1, 1), b"a\r\nb\r\n\r\n.\r\n");
    }

    proptest! {
        #[test]
        fn same_bytes_as_netqmail(msg in proptest::collection::vec(prop::sample::select(b"ab.\r\n\n".to_vec()), 0..200),
                                  limit in 0u64..8, piece in 1usize..40) {
            prop_assert_eq!(run(&msg, limit, piece), model(&msg, limit));
        }
    }
}
