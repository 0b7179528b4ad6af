//! The byte protocol between qmail-send and qmail-lspawn/qmail-rspawn (netqmail's spawn.c
//! and qmail-send.c), with rqmail's negotiated extension for large concurrency.
//!
//! netqmail's protocol ("narrow"):
//! * at start the spawn writes one byte: the most deliveries it runs at once;
//! * a command is the delivery number (one byte), then `S/N\0` (the message, relative to
//!   queue/mess), the envelope sender and `\0`, the recipient and `\0`;
//! * a report is the delivery number (one byte), then the result text (its first letter
//!   `K` success, `Z` temporary failure, `D` permanent failure), then `\0`.
//!
//! One byte limits delivery numbers to 255. rqmail's qmail-send therefore sends, right
//! after reading the start byte, a probe command whose message name is empty, which
//! netqmail's spawns never receive from netqmail's qmail-send and answer with their
//! "messid too short" failure. rqmail's spawns answer it with a report for delivery 0 of
//! `Kwide N`, N being the number of deliveries they can run at once; from then on both
//! sides write delivery numbers as four bytes, most significant first ("wide"). Each
//! side pairs with netqmail's programs unchanged: netqmail's qmail-send never probes, and
//! netqmail's spawns refuse the probe.

/// The recipient of the probe command.
pub const PROBE_RECIP: &[u8] = b"rqmail-spawn-wide";

/// The probe command, in narrow framing: delivery 0, empty message name, empty sender.
pub fn probe_command() -> Vec<u8> {
    let mut v = vec![0u8, 0, 0];
    v.extend_from_slice(PROBE_RECIP);
    v.push(0);
    v
}

/// The text of a positive probe answer.
pub fn probe_answer(max: u32) -> Vec<u8> {
    format!("Kwide {max}").into_bytes()
}

/// Reads a probe answer's text: `Some(max)` when the spawn speaks the wide protocol.
pub fn parse_probe_answer(text: &[u8]) -> Option<u32> {
    let rest = text.strip_prefix(b"Kwide ")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// How delivery numbers are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// One byte (netqmail).
    Narrow,
    /// Four bytes, big-endian (rqmail, after the probe).
    Wide,
}

impl Width {
    /// Bytes per delivery number.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            Width::Narrow => 1,
            Width::Wide => 4,
        }
    }

    /// Encodes a delivery number.
    pub fn put(self, out: &mut Vec<u8>, delnum: u32) {
        match self {
            // Narrow numbers are below 256 by construction (the spawn's limit).
            Width::Narrow => out.push((delnum & 0xff) as u8),
            Width::Wide => out.extend_from_slice(&delnum.to_be_bytes()),
        }
    }

    fn get(self, b: &[u8]) -> u32 {
        match self {
            Width::Narrow => u32::from(b[0]),
            Width::Wide => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        }
    }
}

/// One delivery command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub delnum: u32,
    /// `S/N`, relative to queue/mess.
    pub messid: Vec<u8>,
    pub sender: Vec<u8>,
    pub recip: Vec<u8>,
    /// A field exceeded [`MAX_FIELD`]: everything but the delivery number is garbage
    /// (netqmail's out-of-memory case).
    pub overflow: bool,
}

/// The longest field a spawn keeps: as long as the longest record qmail-send reads from
/// the queue (1 MiB, with its type byte), so that every sender and recipient qmail-send
/// hands over arrives whole (netqmail's spawns keep any length).
pub const MAX_FIELD: usize = 1024 * 1024;

/// Encodes a command.
pub fn command(width: Width, delnum: u32, messid: &[u8], sender: &[u8], recip: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + messid.len() + sender.len() + recip.len());
    width.put(&mut v, delnum);
    for f in [messid, sender, recip] {
        v.extend_from_slice(f);
        v.push(0);
    }
    v
}

/// Encodes a report.
pub fn report(width: Width, delnum: u32, text: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(6 + text.len());
    width.put(&mut v, delnum);
    v.extend_from_slice(text);
    v.push(0);
    v
}

/// The spawn's side: turns the command stream into [`Command`]s.
#[derive(Debug)]
pub struct CommandParser {
    width: Width,
    num: Vec<u8>,
    stage: usize,
    cur: Command,
}

impl Default for CommandParser {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandParser {
    pub fn new() -> CommandParser {
        CommandParser {
            width: Width::Narrow,
            num: Vec::new(),
            stage: 0,
            cur: Command {
                delnum: 0,
                messid: Vec::new(),
                sender: Vec::new(),
                recip: Vec::new(),
                overflow: false,
            },
        }
    }

    /// Switches the framing of delivery numbers (between commands).
    pub fn set_width(&mut self, w: Width) {
        self.width = w;
    }

    /// Feeds bytes; returns after the first complete command (with the number of bytes
    /// consumed), so the caller can switch framing between commands.
    pub fn feed_one(&mut self, data: &[u8]) -> (usize, Option<Command>) {
        for (i, &ch) in data.iter().enumerate() {
            if self.stage == 0 {
                self.num.push(ch);
                if self.num.len() == self.width.len() {
                    self.cur = Command {
                        delnum: self.width.get(&self.num),
                        messid: Vec::new(),
                        sender: Vec::new(),
                        recip: Vec::new(),
                        overflow: false,
                    };
                    self.num.clear();
                    self.stage = 1;
                }
                continue;
            }
            if ch == 0 {
                self.stage += 1;
                if self.stage == 4 {
                    self.stage = 0;
                    let c = std::mem::replace(
                        &mut self.cur,
                        Command {
                            delnum: 0,
                            messid: Vec::new(),
                            sender: Vec::new(),
                            recip: Vec::new(),
                            overflow: false,
                        },
                    );
                    return (i + 1, Some(c));
                }
                continue;
            }
            let f = match self.stage {
                1 => &mut self.cur.messid,
                2 => &mut self.cur.sender,
                _ => &mut self.cur.recip,
            };
            if f.len() < MAX_FIELD {
                f.push(ch);
            } else {
                self.cur.overflow = true;
            }
        }
        (data.len(), None)
    }
}

/// qmail-send's side: turns the report stream into (delivery number, text) pairs.
#[derive(Debug)]
pub struct ReportParser {
    width: Width,
    buf: Vec<u8>,
}

/// netqmail's REPORTMAX: a report is cut to this many bytes.
pub const REPORTMAX: usize = 10_000;

impl ReportParser {
    pub fn new(width: Width) -> ReportParser {
        ReportParser {
            width,
            buf: Vec::new(),
        }
    }

    /// Feeds bytes; complete reports are appended to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<(u32, Vec<u8>)>) {
        let n = self.width.len();
        for &ch in data {
            self.buf.push(ch);
            if self.buf.len() > REPORTMAX {
                // Keep the first REPORTMAX - 1 bytes; the latest byte takes the last place.
                self.buf.truncate(REPORTMAX - 1);
                self.buf.push(ch);
            }
            if ch == 0 && self.buf.len() > n {
                let delnum = self.width.get(&self.buf);
                let text = self.buf[n..self.buf.len() - 1].to_vec();
                out.push((delnum, text));
                self.buf.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn narrow_commands_round_trip() {
        let mut p = CommandParser::new();
        let mut data = command(Width::Narrow, 0, b"3/457", b"a@b", b"c@d");
        data.extend(command(Width::Narrow, 200, b"1/24", b"", b"x@y"));
        let (n, c) = p.feed_one(&data);
        let c = c.unwrap();
        assert_eq!(
            (c.delnum, &c.messid[..], &c.sender[..], &c.recip[..]),
            (0, &b"3/457"[..], &b"a@b"[..], &b"c@d"[..])
        );
        let (m, c) = p.feed_one(&data[n..]);
        assert_eq!(n + m, data.len());
        assert_eq!(c.unwrap().delnum, 200);
    }

    #[test]
    fn wide_and_probe() {
        let mut p = CommandParser::new();
        let (_, c) = p.feed_one(&probe_command());
        let c = c.unwrap();
        assert!(c.messid.is_empty() && c.sender.is_empty());
        assert_eq!(c.recip, PROBE_RECIP);
        p.set_width(Width::Wide);
        let data = command(Width::Wide, 70_000, b"1/24", b"s", b"r@h");
        let (_, c) = p.feed_one(&data);
        assert_eq!(c.unwrap().delnum, 70_000);
        assert_eq!(parse_probe_answer(&probe_answer(5000)), Some(5000));
        assert_eq!(
            parse_probe_answer(b"DInternal error: messid too short. (#5.3.5)\n"),
            None
        );
    }

    #[test]
    fn reports() {
        let mut r = ReportParser::new(Width::Narrow);
        let mut out = Vec::new();
        let mut data = report(Width::Narrow, 0, b"Kdid 1\n");
        data.extend(report(Width::Narrow, 7, b"Zlater"));
        for chunk in data.chunks(3) {
            r.feed(chunk, &mut out);
        }
        assert_eq!(
            out,
            vec![(0, b"Kdid 1\n".to_vec()), (7, b"Zlater".to_vec())]
        );
        let mut w = ReportParser::new(Width::Wide);
        out.clear();
        w.feed(&report(Width::Wide, 256, b"Dno"), &mut out);
        assert_eq!(out, vec![(256, b"Dno".to_vec())]);
        // A report of delivery 0 in wide framing starts with zero bytes.
        out.clear();
        w.feed(&report(Width::Wide, 0, b"K"), &mut out);
        assert_eq!(out, vec![(0, b"K".to_vec())]);
    }

    #[test]
    fn fields_up_to_one_mib_are_kept() {
        let mut p = CommandParser::new();
        let sender = vec![b's'; MAX_FIELD];
        let (_, c) = p.feed_one(&command(Width::Narrow, 1, b"1/24", &sender, b"r@h"));
        let c = c.unwrap();
        assert!(!c.overflow);
        assert_eq!(c.sender, sender);
        let recip = vec![b'r'; MAX_FIELD + 1];
        let (_, c) = p.feed_one(&command(Width::Narrow, 2, b"1/24", b"s", &recip));
        let c = c.unwrap();
        assert!(c.overflow);
        assert_eq!(c.delnum, 2);
        // The next command is read as usual.
        let (_, c) = p.feed_one(&command(Width::Narrow, 3, b"1/24", b"s", b"r@h"));
        assert!(!c.unwrap().overflow);
    }

    #[test]
    fn long_reports_are_cut() {
        let mut r = ReportParser::new(Width::Narrow);
        let mut out = Vec::new();
        let text = vec![b'a'; 20_000];
        r.feed(&report(Width::Narrow, 1, &text), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.len(), REPORTMAX - 2);
    }

    proptest! {
        #[test]
        fn command_parser_total(data in proptest::collection::vec(any::<u8>(), 0..600), wide in any::<bool>()) {
            let mut p = CommandParser::new();
            if wide { p.set_width(Width::Wide); }
            let mut rest = &data[..];
            while !rest.is_empty() {
                let (n, _) = p.feed_one(rest);
                prop_assert!(n > 0 && n <= rest.len());
                rest = &rest[n..];
            }
        }

        #[test]
        fn report_parser_total(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut r = ReportParser::new(Width::Wide);
            let mut out = Vec::new();
            r.feed(&data, &mut out);
            for (_, t) in out { prop_assert!(!t.contains(&0)); }
        }
    }
}
