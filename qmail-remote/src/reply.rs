//! SMTP replies as qmail-remote reads them, without I/O: bytes in, complete replies out.
//!
//! A reply is one or more lines; a line whose fourth byte is `-` is followed by another.
//! The code is the first line's three digits (a reply that does not start with three
//! digits has no code, and qmail-remote treats it as a temporary failure). The text kept
//! for reports is netqmail's: every line, carriage returns dropped, at most 5000 bytes.
//! Everything is bounded: a reply longer than [`MAX_REPLY`] bytes is an error, and only
//! the first [`MAX_LINES`] lines (each cut at [`MAX_LINE`] bytes) are kept for the EHLO
//! keywords.

/// netqmail's HUGESMTPTEXT: the most text kept from one reply.
pub const MAX_TEXT: usize = 5000;
/// The most bytes one reply may take, all lines together.
pub const MAX_REPLY: usize = 64 * 1024;
/// The lines kept for keyword parsing.
pub const MAX_LINES: usize = 100;
/// The bytes kept of each line for keyword parsing.
pub const MAX_LINE: usize = 512;

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// The code of the first line, or `None` when it does not start with three digits.
    pub code: Option<u16>,
    /// netqmail's smtptext: the reply's bytes without carriage returns, at most
    /// [`MAX_TEXT`] of them.
    pub text: Vec<u8>,
    /// Each line after its first four bytes, without the line end (bounded).
    pub lines: Vec<Vec<u8>>,
}

impl Reply {
    /// The code as netqmail's comparisons need it: a reply without a code counts as a
    /// temporary failure (rqmail's choice; netqmail computes a number from whatever bytes
    /// came).
    pub fn num(&self) -> u16 {
        self.code.unwrap_or(421)
    }

    /// The EHLO keywords (upper case) of a 250 reply: the first word of every line but the
    /// first, cut at `=` as some servers write `AUTH=LOGIN`.
    pub fn keywords(&self) -> Vec<String> {
        self.lines
            .iter()
            .skip(1)
            .filter_map(|l| {
                let w: Vec<u8> = l
                    .iter()
                    .copied()
                    .take_while(|&c| c != b' ' && c != b'\t' && c != b'=')
                    .collect();
                if w.is_empty() {
                    None
                } else {
                    Some(String::from_utf8_lossy(&w).to_ascii_uppercase())
                }
            })
            .collect()
    }

    /// True when the EHLO reply lists `kw`.
    pub fn has_keyword(&self, kw: &str) -> bool {
        self.keywords().iter().any(|k| k == kw)
    }
}

/// A reply that broke the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// Collects the bytes of one reply.
#[derive(Debug, Default)]
pub struct Parser {
    reply: Reply,
    total: usize,
    line: Vec<u8>,
    first: bool,
}

impl Parser {
    pub fn new() -> Parser {
        Parser {
            first: true,
            ..Parser::default()
        }
    }

    /// Feeds bytes. Returns how many were used and, when they completed the reply, the
    /// reply (the rest belongs to the next one).
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, Option<Reply>), TooLong> {
        for (i, &c) in data.iter().enumerate() {
            self.total += 1;
            if self.total > MAX_REPLY {
                return Err(TooLong);
            }
            if c != b'\r' && self.reply.text.len() < MAX_TEXT {
                self.reply.text.push(c);
            }
            if c != b'\n' {
                if self.line.len() < MAX_LINE + 4 {
                    self.line.push(c);
                }
                continue;
            }
            if let Some(r) = self.end_line() {
                return Ok((i + 1, Some(r)));
            }
        }
        Ok((data.len(), None))
    }

    fn end_line(&mut self) -> Option<Reply> {
        let line = std::mem::take(&mut self.line);
        if self.first {
            self.first = false;
            self.reply.code = code(&line);
        }
        if self.reply.lines.len() < MAX_LINES {
            let mut rest = line.get(4..).unwrap_or(&[]).to_vec();
            if rest.last() == Some(&b'\r') {
                rest.pop();
            }
            rest.truncate(MAX_LINE);
            self.reply.lines.push(rest);
        }
        if line.get(3) == Some(&b'-') {
            return None;
        }
        let r = std::mem::take(&mut self.reply);
        *self = Parser::new();
        Some(r)
    }
}

fn code(line: &[u8]) -> Option<u16> {
    let d = line.get(..3)?;
    if !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(d.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0')))
}

/// Parses every reply in `data` (for tests and fuzzing): the replies and whether the
/// bounds were broken.
pub fn parse_all(data: &[u8]) -> (Vec<Reply>, bool) {
    let mut p = Parser::new();
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        match p.feed(rest) {
            Ok((n, r)) => {
                out.extend(r);
                rest = &rest[n..];
            }
            Err(TooLong) => return (out, true),
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_and_multi_line() {
        let (r, bad) = parse_all(b"220 hi there\r\n250-mx.example\r\n250-PIPELINING\r\n250-SIZE 100\r\n250-AUTH=LOGIN\r\n250 STARTTLS\r\n");
        assert!(!bad);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].code, Some(220));
        assert_eq!(r[0].text, b"220 hi there\n");
        assert_eq!(r[1].code, Some(250));
        assert_eq!(
            r[1].text,
            b"250-mx.example\n250-PIPELINING\n250-SIZE 100\n250-AUTH=LOGIN\n250 STARTTLS\n"
        );
        assert_eq!(
            r[1].keywords(),
            vec!["PIPELINING", "SIZE", "AUTH", "STARTTLS"]
        );
        assert!(r[1].has_keyword("STARTTLS"));
        assert!(!r[0].has_keyword("STARTTLS"));
    }

    #[test]
    fn split_feeds_and_leftover() {
        let mut p = Parser::new();
        assert_eq!(p.feed(b"25").unwrap(), (2, None));
        assert_eq!(p.feed(b"0-a\n").unwrap(), (4, None));
        let (n, r) = p.feed(b"250 b\nxyz").unwrap();
        assert_eq!(n, 6);
        let r = r.unwrap();
        assert_eq!(r.code, Some(250));
        assert_eq!(r.text, b"250-a\n250 b\n");
        // The parser starts afresh for the next reply.
        let (_, r2) = p.feed(b"550 no\n").unwrap();
        assert_eq!(r2.unwrap().code, Some(550));
    }

    #[test]
    fn malformed_codes() {
        let (r, _) = parse_all(b"abc\n2\n\n25x ok\n");
        assert_eq!(r.len(), 4);
        assert!(r.iter().all(|r| r.code.is_none()));
        assert_eq!(r[0].num(), 421);
        // A bare code line ends the reply.
        let (r, _) = parse_all(b"354\r\n");
        assert_eq!(r[0].code, Some(354));
        assert_eq!(r[0].text, b"354\n");
    }

    #[test]
    fn text_is_cut_at_5000_and_reply_bounded() {
        let mut data = Vec::new();
        for _ in 0..200 {
            data.extend_from_slice(b"250-0123456789012345678901234567890123456789\r\n");
        }
        data.extend_from_slice(b"250 end\r\n");
        let (r, bad) = parse_all(&data);
        assert!(!bad);
        assert_eq!(r[0].text.len(), MAX_TEXT);
        assert_eq!(r[0].lines.len(), MAX_LINES);
        let long = vec![b'x'; MAX_REPLY + 1];
        let (r, bad) = parse_all(&long);
        assert!(bad);
        assert!(r.is_empty());
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_bounded(data in proptest::collection::vec(any::<u8>(), 0..4000)) {
            let (replies, _) = parse_all(&data);
            for r in &replies {
                prop_assert!(r.text.len() <= MAX_TEXT);
                prop_assert!(!r.text.contains(&b'\r'));
                prop_assert!(r.lines.len() <= MAX_LINES);
                prop_assert!(r.lines.iter().all(|l| l.len() <= MAX_LINE));
                let _ = r.keywords();
            }
        }

        #[test]
        fn well_formed_replies_round_trip(
            code in 200u16..600,
            lines in proptest::collection::vec("[ -~]{0,60}", 1..8),
            crlf in any::<bool>(),
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let mut s = String::new();
            for (i, l) in lines.iter().enumerate() {
                let sep = if i + 1 == lines.len() { ' ' } else { '-' };
                s.push_str(&format!("{code}{sep}{l}{end}"));
            }
            let (r, bad) = parse_all(s.as_bytes());
            prop_assert!(!bad);
            prop_assert_eq!(r.len(), 1);
            prop_assert_eq!(r[0].code, Some(code));
            prop_assert_eq!(r[0].text.clone(), s.replace('\r', "").into_bytes());
            prop_assert_eq!(r[0].lines.len(), lines.len());
        }
    }
}
