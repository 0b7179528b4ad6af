//! The DATA phase: the bytes after "354" up to CR LF . CR LF, turned into the message
//! qmail-queue stores, exactly as netqmail's `blast()` does it.
//!
//! * CR LF becomes LF; a CR not followed by LF is kept.
//! * A line starting with `.` loses that dot (dot-unstuffing); a line that is exactly
//!   `.` ends the message. Only CR LF . CR LF ends it: `.` followed by CR and something
//!   other than LF is kept as `.` CR and that something.
//! * An LF not preceded by CR (a "bare LF") is an error: the client is told to read
//!   <http://pobox.com/~djb/docs/smtplf.html> and the connection ends.
//! * While still in the header (until the first empty line), lines starting with
//!   `Received` (8 letters, any case) or `Delivered` (9 letters, any case) are counted as
//!   hops; the count is taken on the bytes as sent.
//! * With a size limit (databytes) of N, the N+1st stored byte marks the message as
//!   failed; nothing more is stored, but the data is still read to its end.

/// What became of the input given to [`Blast::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// All input consumed; the message goes on.
    More,
    /// The final CR LF . CR LF was seen; bytes after it were not consumed.
    End,
    /// A bare LF: the connection must end with 451.
    StrayNewline,
}

/// The DATA state machine for one message.
#[derive(Debug, Clone)]
pub struct Blast {
    /// netqmail's states: 0 inside a line, 1 after CR LF, 2 after CR LF ., 3 after
    /// CR LF . CR, 4 after a CR that may start CR LF.
    state: u8,
    in_header: bool,
    /// Bytes since the last LF, while in the header (counted up to 9).
    pos: u8,
    maybe_received: bool,
    maybe_empty: bool,
    maybe_delivered: bool,
    hops: u32,
    /// netqmail's bytestooverflow: 0 means no limit or already overflowed.
    bytes_to_overflow: u64,
    overflowed: bool,
}

const RECEIVED_LC: &[u8; 8] = b"received";
const RECEIVED_UC: &[u8; 8] = b"RECEIVED";
const DELIVERED_LC: &[u8; 9] = b"delivered";
const DELIVERED_UC: &[u8; 9] = b"DELIVERED";

impl Blast {
    /// A new message; `databytes` 0 means no size limit.
    pub fn new(databytes: u64) -> Blast {
        let databytes = if databytes == u64::MAX {
            u64::MAX - 1
        } else {
            databytes
        };
        Blast {
            state: 1,
            in_header: true,
            pos: 0,
            maybe_received: true,
            maybe_empty: true,
            maybe_delivered: true,
            hops: 0,
            bytes_to_overflow: if databytes == 0 { 0 } else { databytes + 1 },
            overflowed: false,
        }
    }

    /// Received and Delivered-To lines counted in the header.
    pub fn hops(&self) -> u32 {
        self.hops
    }

    /// True once the message went over the size limit.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Stores bytes, counting them against the size limit.
    fn put(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        if self.overflowed {
            return;
        }
        if self.bytes_to_overflow == 0 {
            out.extend_from_slice(data);
            return;
        }
        let n = data.len() as u64;
        if n < self.bytes_to_overflow {
            self.bytes_to_overflow -= n;
            out.extend_from_slice(data);
        } else {
            // The byte that brings the counter to 0 fails the message and is not stored.
            let keep = (self.bytes_to_overflow - 1) as usize;
            out.extend_from_slice(&data[..keep]);
            self.bytes_to_overflow = 0;
            self.overflowed = true;
        }
    }

    fn count_hops(&mut self, ch: u8) {
        let pos = usize::from(self.pos);
        if pos < 9 {
            if ch != DELIVERED_LC[pos] && ch != DELIVERED_UC[pos] {
                self.maybe_delivered = false;
            }
            if self.maybe_delivered && pos == 8 {
                self.hops = self.hops.saturating_add(1);
            }
            if pos < 8 && ch != RECEIVED_LC[pos] && ch != RECEIVED_UC[pos] {
                self.maybe_received = false;
            }
            if self.maybe_received && pos == 7 {
                self.hops = self.hops.saturating_add(1);
            }
            if pos < 2 && ch != b"\r\n"[pos] {
                self.maybe_empty = false;
            }
            if self.maybe_empty && pos == 1 {
                self.in_header = false;
            }
            self.pos += 1;
        }
        if ch == b'\n' {
            self.pos = 0;
            self.maybe_received = true;
            self.maybe_empty = true;
            self.maybe_delivered = true;
        }
    }

    /// Consumes `input`, appending the bytes to store to `out`. Returns how many input
    /// bytes were consumed (all of them unless the message ended) and the progress.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Progress) {
        let mut i = 0;
        while i < input.len() {
            // Fast path: the body, inside a line.
            if !self.in_header && self.state == 0 {
                let run = input[i..]
                    .iter()
                    .position(|&c| c == b'\r' || c == b'\n')
                    .unwrap_or(input.len() - i);
                if run > 0 {
                    self.put(out, &input[i..i + run]);
                    i += run;
                    continue;
                }
            }
            let ch = input[i];
            i += 1;
            if self.in_header {
                self.count_hops(ch);
            }
            match self.state {
                0 => {
                    if ch == b'\n' {
                        return (i, Progress::StrayNewline);
                    }
                    if ch == b'\r' {
                        self.state = 4;
                        continue;
                    }
                }
                1 => {
                    if ch == b'\n' {
                        return (i, Progress::StrayNewline);
                    }
                    if ch == b'.' {
                        self.state = 2;
                        continue;
                    }
                    if ch == b'\r' {
                        self.state = 4;
                        continue;
                    }
                    self.state = 0;
                }
                2 => {
                    if ch == b'\n' {
                        return (i, Progress::StrayNewline);
                    }
                    if ch == b'\r' {
                        self.state = 3;
                        continue;
                    }
                    self.state = 0;
                }
                3 => {
                    if ch == b'\n' {
                        return (i, Progress::End);
                    }
                    self.put(out, b".\r");
                    if ch == b'\r' {
                        self.state = 4;
                        continue;
                    }
                    self.state = 0;
                }
                _ => {
                    if ch == b'\n' {
                        self.state = 1;
                    } else if ch != b'\r' {
                        self.put(out, b"\r");
                        self.state = 0;
                    }
                }
            }
            self.put(out, &[ch]);
        }
        (i, Progress::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs the whole input through a fresh machine, byte chunks of `chunk`.
    fn run(input: &[u8], databytes: u64, chunk: usize) -> (Vec<u8>, Progress, usize, Blast) {
        let mut b = Blast::new(databytes);
        let mut out = Vec::new();
        let mut used = 0;
        for c in input.chunks(chunk.max(1)) {
            let (n, p) = b.feed(c, &mut out);
            used += n;
            if p != Progress::More {
                return (out, p, used, b);
            }
        }
        (out, Progress::More, used, b)
    }

    /// netqmail's blast(), transcribed byte by byte, as an oracle for the fast path.
    fn oracle(input: &[u8], databytes: u64) -> (Vec<u8>, Progress, usize, u32, bool) {
        let mut out = Vec::new();
        let mut b2o: u64 = if databytes == 0 { 0 } else { databytes + 1 };
        let mut failed = false;
        fn put_one(c: u8, out: &mut Vec<u8>, b2o: &mut u64, failed: &mut bool) {
            if *b2o != 0 {
                *b2o -= 1;
                if *b2o == 0 {
                    *failed = true;
                }
            }
            if !*failed {
                out.push(c);
            }
        }
        macro_rules! put {
            ($c:expr, $out:expr) => {
                put_one($c, $out, &mut b2o, &mut failed)
            };
        }
        let (mut state, mut fih, mut pos) = (1, true, 0usize);
        let (mut mx, mut my, mut mz) = (true, true, true);
        let mut hops = 0;
        for (i, &ch) in input.iter().enumerate() {
            if fih {
                if pos < 9 {
                    if ch != b"delivered"[pos] && ch != b"DELIVERED"[pos] {
                        mz = false;
                    }
                    if mz && pos == 8 {
                        hops += 1;
                    }
                    if pos < 8 && ch != b"received"[pos] && ch != b"RECEIVED"[pos] {
                        mx = false;
                    }
                    if mx && pos == 7 {
                        hops += 1;
                    }
                    if pos < 2 && ch != b"\r\n"[pos] {
                        my = false;
                    }
                    if my && pos == 1 {
                        fih = false;
                    }
                    pos += 1;
                }
                if ch == b'\n' {
                    pos = 0;
                    mx = true;
                    my = true;
                    mz = true;
                }
            }
            match state {
                0 => {
                    if ch == b'\n' {
                        return (out, Progress::StrayNewline, i + 1, hops, failed);
                    }
                    if ch == b'\r' {
                        state = 4;
                        continue;
                    }
                }
                1 => {
                    if ch == b'\n' {
                        return (out, Progress::StrayNewline, i + 1, hops, failed);
                    }
                    if ch == b'.' {
                        state = 2;
                        continue;
                    }
                    if ch == b'\r' {
                        state = 4;
                        continue;
                    }
                    state = 0;
                }
                2 => {
                    if ch == b'\n' {
                        return (out, Progress::StrayNewline, i + 1, hops, failed);
                    }
                    if ch == b'\r' {
                        state = 3;
                        continue;
                    }
                    state = 0;
                }
                3 => {
                    if ch == b'\n' {
                        return (out, Progress::End, i + 1, hops, failed);
                    }
                    put!(b'.', &mut out);
                    put!(b'\r', &mut out);
                    if ch == b'\r' {
                        state = 4;
                        continue;
                    }
                    state = 0;
                }
                _ => {
                    if ch == b'\n' {
                        state = 1;
                    } else if ch != b'\r' {
                        put!(b'\r', &mut out);
                        state = 0;
                    }
                }
            }
            put!(ch, &mut out);
        }
        (out, Progress::More, input.len(), hops, failed)
    }

    #[test]
    fn crlf_to_lf_and_end() {
        let (out, p, used, b) = run(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", 0, 1000);
        assert_eq!(out, b"Subject: x\n\nhello\n");
        assert_eq!(p, Progress::End);
        assert_eq!(used, 24);
        assert_eq!(b.hops(), 0);
        let (out, p, _, _) = run(b".\r\n", 0, 1000);
        assert_eq!((out.as_slice(), p), (&b""[..], Progress::End));
    }

    #[test]
    fn dot_unstuffing() {
        let (out, ..) = run(b"..dot\r\n.x\r\n...\r\n.\r\n", 0, 1000);
        assert_eq!(out, b".dot\nx\n..\n");
        // ". CR x" keeps the dot and the CR
        let (out, ..) = run(b".\rx\r\n.\r\r\n.\r\n", 0, 1000);
        assert_eq!(out, b".\rx\n.\r\n");
        // a lone CR is kept; CR CR LF stores CR LF
        let (out, ..) = run(b"a\rb\r\r\n.\r\n", 0, 1000);
        assert_eq!(out, b"a\rb\r\n");
    }

    #[test]
    fn only_crlf_dot_crlf_ends() {
        let (_, p, ..) = run(b"a\r\n.\rb\r\n", 0, 1000);
        assert_eq!(p, Progress::More);
        let (_, p, ..) = run(b"a\r\nb.\r\n", 0, 1000);
        assert_eq!(p, Progress::More);
    }

    #[test]
    fn bare_lf_is_an_error() {
        for input in [&b"a\nb"[..], b"\n", b"a\r\n\n", b"a\r\n.\n"] {
            assert_eq!(run(input, 0, 1000).1, Progress::StrayNewline, "{input:?}");
        }
    }

    #[test]
    fn hop_counting() {
        let mut msg = Vec::new();
        for i in 0..50 {
            msg.extend_from_slice(format!("Received: {i}\r\nDELIVERED-TO: x\r\n").as_bytes());
        }
        msg.extend_from_slice(b"\r\nReceived: in body\r\n.\r\n");
        let (_, p, _, b) = run(&msg, 0, 7);
        assert_eq!(p, Progress::End);
        assert_eq!(b.hops(), 100);
        // case mixes per letter, no colon needed; "Deliver" alone is not a hop
        let (_, _, _, b) = run(b"rEcEiVeDx\r\nDeliver\r\nDelivered\r\n X\r\n.\r\n", 0, 1000);
        assert_eq!(b.hops(), 2);
    }

    #[test]
    fn databytes_limit() {
        let (out, _, _, b) = run(b"12345\r\n.\r\n", 6, 1000);
        assert_eq!(out, b"12345\n");
        assert!(!b.overflowed());
        let (out, p, _, b) = run(b"123456\r\n.\r\n", 6, 1000);
        assert_eq!(out, b"123456");
        assert!(b.overflowed());
        assert_eq!(p, Progress::End);
    }

    proptest! {
        #[test]
        fn matches_netqmail_oracle(
            input in proptest::collection::vec(prop::sample::select(b"\r\n.aRrEeCcIiVvDdLlT:x ".to_vec()), 0..400),
            databytes in prop::sample::select(vec![0u64, 1, 2, 5, 20, 100, 1000]),
            chunk in 1usize..50,
        ) {
            let (out, p, used, b) = run(&input, databytes, chunk);
            let (o_out, o_p, o_used, o_hops, o_failed) = oracle(&input, databytes);
            prop_assert_eq!(out, o_out);
            prop_assert_eq!(p, o_p);
            prop_assert_eq!(used, o_used);
            prop_assert_eq!(b.hops(), o_hops);
            prop_assert_eq!(b.overflowed(), o_failed);
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2000), databytes in 0u64..3000, chunk in 1usize..300) {
            let (out, _, used, _) = run(&input, databytes, chunk);
            prop_assert!(out.len() <= used);
            if databytes > 0 {
                prop_assert!(out.len() as u64 <= databytes);
            }
        }
    }
}
