//! POP3 command lines, read the way netqmail's commands.c reads them (both qmail-popup
//! and qmail-pop3d use it): a line ends at LF, and `control::split_command` takes it
//! apart (one CR removed, the line cut at its first NUL so that no NUL reaches a user
//! name or a password, the word before the first space compared without regard to
//! ASCII case, the argument after it with leading spaces skipped).
//!
//! Unlike netqmail, a line has a bound: [`MAX_LINE`] bytes before its LF.

/// The longest command line taken, in bytes before its LF. netqmail has no bound (a
/// longer line grows its memory until it runs out); RFC 2449 allows 255 bytes.
pub const MAX_LINE: usize = 16384;

/// The command words qmail-popup and qmail-pop3d know. Each program answers the ones it
/// does not serve as netqmail answers an unknown word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    User,
    Pass,
    Apop,
    /// RFC 2449; qmail-popup only (netqmail has none).
    Capa,
    /// RFC 2595; qmail-popup only (netqmail has none).
    Stls,
    Quit,
    Noop,
    Stat,
    List,
    Uidl,
    Dele,
    Retr,
    Rset,
    Last,
    Top,
    Unknown,
}

/// The verb named by `word`, compared without regard to ASCII case.
pub(crate) fn verb(word: &[u8]) -> Verb {
    const TABLE: [(&[u8], Verb); 15] = [
        (b"user", Verb::User),
        (b"pass", Verb::Pass),
        (b"apop", Verb::Apop),
        (b"capa", Verb::Capa),
        (b"stls", Verb::Stls),
        (b"quit", Verb::Quit),
        (b"noop", Verb::Noop),
        (b"stat", Verb::Stat),
        (b"list", Verb::List),
        (b"uidl", Verb::Uidl),
        (b"dele", Verb::Dele),
        (b"retr", Verb::Retr),
        (b"rset", Verb::Rset),
        (b"last", Verb::Last),
        (b"top", Verb::Top),
    ];
    TABLE
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map_or(Verb::Unknown, |&(_, v)| v)
}

/// A parsed command line, borrowing from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    pub verb: Verb,
    /// The word as sent.
    pub word: &'a [u8],
    /// The text after the first space, leading spaces skipped.
    pub arg: &'a [u8],
}

/// Parses one command line given without its LF.
pub fn parse(line: &[u8]) -> Command<'_> {
    let (word, arg) = control::split_command(line);
    Command {
        verb: verb(word),
        word,
        arg,
    }
}

/// netqmail's `scan_ulong`: the value of the leading decimal digits of `s` and how many
/// there were. The value wraps modulo 2^64 as C's unsigned long does, so that message
/// numbers and line counts mean what they mean to netqmail's qmail-pop3d.
pub fn scan_ulong(s: &[u8]) -> (u64, usize) {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let value = s[..digits].iter().fold(0u64, |v, &c| {
        v.wrapping_mul(10).wrapping_add(u64::from(c - b'0'))
    });
    (value, digits)
}

/// What [`Lines::take`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// A whole line, without its LF.
    Complete(Vec<u8>),
    /// More than [`MAX_LINE`] bytes without a LF.
    TooLong,
}

/// Collects input into lines.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Takes bytes from `data` up to and including the first LF. Returns how many bytes
    /// were taken and, when a line is complete (or too long), the line.
    pub(crate) fn take(&mut self, data: &[u8]) -> (usize, Option<Line>) {
        let room = MAX_LINE + 1 - self.partial.len();
        match data.iter().take(room).position(|&c| c == b'\n') {
            Some(lf) => {
                self.partial.extend_from_slice(&data[..lf]);
                (
                    lf + 1,
                    Some(Line::Complete(std::mem::take(&mut self.partial))),
                )
            }
            None if data.len() >= room => {
                self.partial.clear();
                (room, Some(Line::TooLong))
            }
            None => {
                self.partial.extend_from_slice(data);
                (data.len(), None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn words_and_arguments() {
        let c = parse(b"USER joe\r");
        assert_eq!((c.verb, c.arg), (Verb::User, &b"joe"[..]));
        let c = parse(b"pAsS   two words  ");
        assert_eq!((c.verb, c.arg), (Verb::Pass, &b"two words  "[..]));
        assert_eq!(parse(b"QUIT").arg, b"");
        assert_eq!(parse(b"").verb, Verb::Unknown);
        assert_eq!(parse(b"\r").verb, Verb::Unknown);
        assert_eq!(parse(b"NOOP\tx").verb, Verb::Unknown);
        assert_eq!(parse(b" NOOP").verb, Verb::Unknown);
        assert_eq!(parse(b"TOP 1 2").verb, Verb::Top);
        assert_eq!(parse(b"TOP 1 2").arg, b"1 2");
        assert_eq!(parse(b"TOPS").verb, Verb::Unknown);
        assert_eq!(parse(b"stls").verb, Verb::Stls);
        assert_eq!(parse(b"Capa").verb, Verb::Capa);
        // one CR only
        assert_eq!(parse(b"NOOP\r\r").verb, Verb::Unknown);
        assert_eq!(parse(b"USER a\r\r").arg, b"a\r");
    }

    #[test]
    fn numbers_wrap_like_unsigned_long() {
        assert_eq!(scan_ulong(b"12 3"), (12, 2));
        assert_eq!(scan_ulong(b"x"), (0, 0));
        assert_eq!(scan_ulong(b""), (0, 0));
        assert_eq!(scan_ulong(b"007"), (7, 3));
        assert_eq!(scan_ulong(b"18446744073709551615"), (u64::MAX, 20));
        assert_eq!(scan_ulong(b"18446744073709551617"), (1, 20));
    }

    #[test]
    fn lines_are_bounded() {
        let mut l = Lines::default();
        assert_eq!(l.take(b"US"), (2, None));
        assert_eq!(
            l.take(b"ER x\r\nPASS"),
            (6, Some(Line::Complete(b"USER x\r".to_vec())))
        );
        assert_eq!(l.take(b"\n"), (1, Some(Line::Complete(Vec::new()))));
        // exactly MAX_LINE bytes and a LF is a line; one more byte is not
        let long = vec![b'a'; MAX_LINE];
        assert_eq!(l.take(&long), (MAX_LINE, None));
        assert_eq!(l.take(b"\n"), (1, Some(Line::Complete(long.clone()))));
        assert_eq!(l.take(&long), (MAX_LINE, None));
        assert_eq!(l.take(b"a\n"), (1, Some(Line::TooLong)));
        assert_eq!(l.take(b"\n"), (1, Some(Line::Complete(Vec::new()))));
    }

    proptest! {
        #[test]
        fn verbs_are_case_insensitive(v in prop::sample::select(vec!["user", "pass", "apop", "capa", "stls", "quit", "noop", "stat", "list", "uidl", "dele", "retr", "rset", "last", "top"]),
                                      mask in any::<u8>(), arg in "[ -~]{0,40}") {
            let word: String = v.chars().enumerate().map(|(i, c)| if mask & (1 << i) != 0 { c.to_ascii_uppercase() } else { c }).collect();
            let line = format!("{word} {arg}\r");
            let c = parse(line.as_bytes());
            prop_assert_eq!(c.verb, verb(v.as_bytes()));
            prop_assert!(c.verb != Verb::Unknown);
            prop_assert_eq!(c.arg, arg.trim_start_matches(' ').as_bytes());
        }

        #[test]
        fn lines_reassemble_whatever_the_pieces(data in proptest::collection::vec(any::<u8>(), 0..2000),
                                                 cuts in proptest::collection::vec(1usize..64, 1..40)) {
            let mut whole = Lines::default();
            let mut expect = Vec::new();
            let mut at = 0;
            while at < data.len() {
                let (n, l) = whole.take(&data[at..]);
                prop_assert!(n > 0);
                at += n;
                expect.extend(l);
            }
            let mut pieces = Lines::default();
            let mut got = Vec::new();
            let (mut at, mut i) = (0, 0);
            while at < data.len() {
                let end = (at + cuts[i % cuts.len()]).min(data.len());
                let mut p = at;
                while p < end {
                    let (n, l) = pieces.take(&data[p..end]);
                    p += n;
                    got.extend(l);
                }
                at = end;
                i += 1;
            }
            prop_assert_eq!(got, expect);
        }
    }
}
