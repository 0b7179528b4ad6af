//! The SMTP dialogue with one server, netqmail's with the TLS patch's additions:
//! greeting, EHLO (HELO when EHLO is refused), STARTTLS when wanted and offered (then EHLO
//! again), MAIL, RCPT for each recipient, DATA, the message, QUIT.
//!
//! MAIL and the RCPTs go in groups of at most [`PIPELINE_BYTES`] bytes when the server
//! offers PIPELINING (RFC 2920); their replies are read in order afterwards, so a group
//! always fits in the socket buffers and neither side can block the other. DATA waits for
//! those replies, since there is nothing to send when every recipient was refused. When
//! the server offers 8BITMIME and the message has a byte above 127, MAIL says
//! `BODY=8BITMIME`.

use crate::conn::{Broken, Conn, HandshakeError};
use crate::mx::Target;
use crate::reply::Reply;
use crate::report::{Output, Report, safe_text};
use crate::tls::{self, Policy};
use crate::utf8;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::Path;

/// The most bytes of commands sent before reading their replies.
pub const PIPELINE_BYTES: usize = 4096;

/// netqmail's message conversion for SMTP: LF becomes CR LF, a dot that starts a line is
/// doubled.
#[derive(Debug, Clone)]
pub struct Stuffer {
    bol: bool,
}

impl Default for Stuffer {
    fn default() -> Self {
        Stuffer { bol: true }
    }
}

impl Stuffer {
    pub fn new() -> Stuffer {
        Stuffer::default()
    }

    /// Converts `input`, appending to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &c in input {
            if self.bol && c == b'.' {
                out.push(b'.');
            }
            if c == b'\n' {
                out.extend_from_slice(b"\r\n");
                self.bol = true;
            } else {
                out.push(c);
                self.bol = false;
            }
        }
    }

    /// True when the input so far ends at the end of a line (or is empty).
    pub fn complete(&self) -> bool {
        self.bol
    }
}

/// What the dialogue needs to know.
#[derive(Debug)]
pub struct Params<'a> {
    pub home: &'a Path,
    pub helo: &'a [u8],
    /// The sender, quoted.
    pub sender: &'a [u8],
    /// The recipients, quoted; `None` for one that cannot be sent (a CR or LF in it).
    pub recips: &'a [Option<Vec<u8>>],
    pub target: &'a Target,
    pub policy: Policy,
    /// TLS from the first byte (port 465).
    pub smtps: bool,
    /// The message needs SMTPUTF8, and why (see [`crate::utf8`]).
    pub smtputf8: Option<utf8::Need>,
}

enum Cmd {
    Mail,
    Rcpt,
    Unsendable,
}

struct Session<'a, 'b> {
    c: Conn,
    p: &'a Params<'b>,
    out: &'a mut Output,
    partner: IpAddr,
    critical: bool,
    /// netqmail's smtptext: the last reply, until a report prints it.
    text: Vec<u8>,
    tls_note: Option<String>,
    /// A required TLS failed (no STARTTLS, a refused certificate) before MAIL.
    tls_failed: bool,
}

/// Talks to the server on `conn` and delivers the message in `msg` (read from its current
/// position). Recipient reports go to `out`; the message report is returned, and whether
/// a TLS policy failed before any mail was sent (DANE then tries the next MX).
pub fn deliver(conn: Conn, p: &Params<'_>, msg: &mut File, out: &mut Output) -> (Report, bool) {
    let mut s = Session {
        c: conn,
        p,
        out,
        partner: p.target.ip,
        critical: false,
        text: Vec::new(),
        tls_note: None,
        tls_failed: false,
    };
    let r = match s.run(msg) {
        Ok(r) | Err(r) => r,
    };
    (r, s.tls_failed)
}

/// A read buffer's size for the message `f`: the message and one byte more (so that
/// one read ends it), 64 KiB at most, 512 bytes at least. A small message then touches
/// one page, not the sixteen a 64 KiB buffer zeroed for every delivery would.
fn buffer_size(f: &File) -> usize {
    const MAX: u64 = 64 * 1024;
    let len = f.metadata().map_or(MAX, |m| m.len()).min(MAX);
    usize::try_from(len).unwrap_or(64 * 1024).max(511) + 1
}

/// Whether the rest of `f` has a byte above 127; `None` when `f` cannot be rewound.
fn has_8bit(f: &mut File) -> Option<bool> {
    let pos = f.stream_position().ok()?;
    let mut buf = vec![0u8; buffer_size(f)];
    let mut found = false;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if buf[..n].iter().any(|&c| c >= 128) {
                    found = true;
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    f.seek(SeekFrom::Start(pos)).ok()?;
    Some(found)
}

impl Session<'_, '_> {
    fn dropped(&self, b: &Broken) -> Report {
        Report::dropped(self.partner, self.critical, b.why().as_deref())
    }

    fn send(&mut self, data: &[u8]) -> Result<(), Report> {
        self.c.send(data).map_err(|b| self.dropped(&b))
    }

    fn reply(&mut self) -> Result<Reply, Report> {
        let r = self.c.reply().map_err(|b| self.dropped(&b))?;
        self.text = r.text.clone();
        Ok(r)
    }

    fn code(&mut self) -> Result<u16, Report> {
        Ok(self.reply()?.num())
    }

    fn command(&mut self, verb: &[u8], arg: &[u8]) -> Result<Reply, Report> {
        let mut line = verb.to_vec();
        line.extend_from_slice(arg);
        line.extend_from_slice(b"\r\n");
        self.send(&line)?;
        self.reply()
    }

    /// "Remote host said: ..." when a reply is waiting to be reported.
    fn said(&mut self, into: &mut Vec<u8>) {
        if !self.text.is_empty() {
            into.extend_from_slice(b"Remote host said: ");
            into.append(&mut self.text);
        }
    }

    /// netqmail's quit: says QUIT without waiting for the answer, then reports `letter`,
    /// `prepend`, the server's address, `append`, a dot, and the last reply.
    fn quit(&mut self, letter: u8, prepend: &str, append: &str) -> Report {
        // A failure to say goodbye changes nothing.
        let _ = self.c.send(b"QUIT\r\n");
        self.report(letter, prepend, append)
    }

    fn report(&mut self, letter: u8, prepend: &str, append: &str) -> Report {
        let mut text = format!("{prepend}{}{append}.\n", self.partner).into_bytes();
        self.said(&mut text);
        if let Some(n) = &self.tls_note {
            text.extend_from_slice(n.as_bytes());
        }
        Report { letter, text }
    }

    fn run(&mut self, msg: &mut File) -> Result<Report, Report> {
        if self.p.smtps {
            let policy = match &self.p.policy {
                Policy::Off => Policy::Opportunistic,
                p => p.clone(),
            };
            self.handshake(&policy)?;
            if self.code()? != 220 {
                return Err(self.quit(b'Z', "TLS Connected to ", " but greeting failed"));
            }
        } else if self.code()? != 220 {
            return Err(self.quit(b'Z', "Connected to ", " but greeting failed"));
        }
        let mut ehlo = self.command(b"EHLO ", self.p.helo)?;
        if !self.p.smtps && self.p.policy != Policy::Off && self.starttls(&ehlo)? {
            ehlo = self.command(b"EHLO ", self.p.helo)?;
        }
        let esmtp = ehlo.num() == 250;
        if !esmtp && self.command(b"HELO ", self.p.helo)?.num() != 250 {
            return Err(self.quit(b'Z', "Connected to ", " but my name was rejected"));
        }
        let pipelining = esmtp && ehlo.has_keyword("PIPELINING");
        let eightbit = esmtp && ehlo.has_keyword("8BITMIME") && has_8bit(msg) == Some(true);
        let smtputf8 = match self.p.smtputf8 {
            Some(need) if !(esmtp && ehlo.has_keyword(utf8::KEYWORD)) => {
                self.text.clear();
                return Err(self.quit(b'D', "Connected to ", need.failure()));
            }
            need => need.is_some(),
        };
        self.envelope(pipelining, eightbit, smtputf8)?;
        self.data(msg)
    }

    /// STARTTLS if wanted and possible. Ok(true) when TLS is now on.
    fn starttls(&mut self, ehlo: &Reply) -> Result<bool, Report> {
        let policy = self.p.policy.clone();
        let host = self.p.target.fqdn.clone().unwrap_or_default();
        let offered = ehlo.num() == 250 && ehlo.has_keyword("STARTTLS");
        if !offered {
            if policy.required() {
                self.tls_failed = true;
                self.text.clear();
                let pre = format!(
                    "No TLS achieved while {}; connecting to ",
                    policy.requirement(&host)
                );
                return Err(self.quit(b'Z', &pre, ""));
            }
            return Ok(false);
        }
        if self.command(b"STARTTLS", b"")?.num() != 220 {
            if policy.required() {
                self.tls_failed = true;
                let pre = format!(
                    "STARTTLS rejected while {}; connecting to ",
                    policy.requirement(&host)
                );
                return Err(self.quit(b'Z', &pre, ""));
            }
            return Ok(false);
        }
        self.text.clear();
        self.handshake(&policy)?;
        Ok(true)
    }

    fn handshake(&mut self, policy: &Policy) -> Result<(), Report> {
        let cfg = match tls::config(self.p.home, policy) {
            Ok(c) => c,
            Err(e) => {
                self.text.clear();
                let pre = format!(
                    "TLS unable to load {}: {}; connecting to ",
                    e.file,
                    clean(&e.why)
                );
                return Err(self.quit(b'Z', &pre, ""));
            }
        };
        match self.c.handshake(cfg, tls::server_name(self.p.target)) {
            Ok(()) => {
                if let Some(t) = self.c.tls() {
                    let note = tls::describe(t, policy);
                    tracing::debug!("{}", note.trim_end());
                    self.tls_note = Some(note);
                }
                Ok(())
            }
            Err(e) => {
                self.text.clear();
                self.tls_failed = policy.required();
                tracing::debug!(
                    "TLS: handshake with {} failed: {}",
                    self.p.target.ip,
                    match &e {
                        HandshakeError::Certificate(why) | HandshakeError::Other(why) => why,
                    }
                );
                let pre = match (e, policy) {
                    (HandshakeError::Certificate(why), Policy::CaFile(f)) => {
                        format!(
                            "TLS unable to verify server with {f}: {}; connected to ",
                            clean(&why)
                        )
                    }
                    (HandshakeError::Certificate(why), Policy::Dane(d)) => format!(
                        "TLS unable to verify server with the DANE TLSA records of {}: {}; connected to ",
                        d.name,
                        clean(&d.failure().unwrap_or(why))
                    ),
                    (HandshakeError::Certificate(why), Policy::Roots) => format!(
                        "TLS unable to verify server with the system's roots: {}; connected to ",
                        clean(&why)
                    ),
                    (HandshakeError::Other(why), Policy::Dane(d)) => format!(
                        "TLS connect failed with the DANE TLSA records of {} \
                         (result-type=validation-failure): {}; connected to ",
                        d.name,
                        clean(&why)
                    ),
                    (HandshakeError::Certificate(why), Policy::Sts(d)) => format!(
                        "TLS unable to verify server for the MTA-STS policy of {d}: {} ({}); connected to ",
                        crate::mtasts::certificate_result(&why),
                        clean(&why)
                    ),
                    (HandshakeError::Certificate(why) | HandshakeError::Other(why), _) => {
                        format!("TLS connect failed: {}; connected to ", clean(&why))
                    }
                };
                // No QUIT: the session is in no state to carry it.
                Err(self.report(b'Z', &pre, ""))
            }
        }
    }

    /// MAIL and RCPT, pipelined or one by one; recipient reports as the replies come.
    fn envelope(&mut self, pipelining: bool, eightbit: bool, smtputf8: bool) -> Result<(), Report> {
        let mut cmds: Vec<(Cmd, Vec<u8>)> = Vec::new();
        let mut mail = b"MAIL FROM:<".to_vec();
        mail.extend_from_slice(self.p.sender);
        mail.push(b'>');
        if eightbit {
            mail.extend_from_slice(b" BODY=8BITMIME");
        }
        if smtputf8 {
            mail.extend_from_slice(b" SMTPUTF8");
        }
        mail.extend_from_slice(b"\r\n");
        cmds.push((Cmd::Mail, mail));
        for r in self.p.recips {
            match r {
                Some(a) => {
                    let mut l = b"RCPT TO:<".to_vec();
                    l.extend_from_slice(a);
                    l.extend_from_slice(b">\r\n");
                    cmds.push((Cmd::Rcpt, l));
                }
                None => cmds.push((Cmd::Unsendable, Vec::new())),
            }
        }
        let mut bother = false;
        let mut i = 0;
        while i < cmds.len() {
            let mut end = i + 1;
            if pipelining {
                let mut size = cmds[i].1.len();
                while end < cmds.len() && size + cmds[end].1.len() <= PIPELINE_BYTES {
                    size += cmds[end].1.len();
                    end += 1;
                }
            }
            let batch: Vec<u8> = cmds[i..end]
                .iter()
                .flat_map(|c| c.1.iter().copied())
                .collect();
            if !batch.is_empty() {
                self.send(&batch)?;
            }
            for (kind, _) in &cmds[i..end] {
                match kind {
                    Cmd::Mail => {
                        let code = self.code()?;
                        if code >= 500 {
                            return Err(self.quit(
                                b'D',
                                "Connected to ",
                                " but sender was rejected",
                            ));
                        }
                        if code >= 400 {
                            return Err(self.quit(
                                b'Z',
                                "Connected to ",
                                " but sender was rejected",
                            ));
                        }
                    }
                    Cmd::Rcpt => {
                        let code = self.code()?;
                        if code >= 400 {
                            let mut t =
                                format!("{} does not like recipient.\n", self.partner).into_bytes();
                            self.said(&mut t);
                            self.out
                                .recipient(if code >= 500 { b'h' } else { b's' }, &t);
                        } else {
                            self.out.recipient(b'r', b"");
                            bother = true;
                        }
                    }
                    Cmd::Unsendable => self.out.recipient(
                        b'h',
                        b"Sorry, I won't send an address with CR or LF in it. (#5.1.3)\n",
                    ),
                }
            }
            i = end;
        }
        if !bother {
            return Err(self.quit(b'D', "Giving up on ", ""));
        }
        Ok(())
    }

    /// DATA, the message, and the verdict.
    fn data(&mut self, msg: &mut File) -> Result<Report, Report> {
        self.send(b"DATA\r\n")?;
        let code = self.code()?;
        if code >= 500 {
            return Err(self.quit(b'D', "", " failed on DATA command"));
        }
        if code >= 400 {
            return Err(self.quit(b'Z', "", " failed on DATA command"));
        }
        let mut st = Stuffer::new();
        let mut buf = vec![0u8; buffer_size(msg).min(32 * 1024 + 1)];
        // Dot-stuffing and CRLF at most double a piece, and one line end may carry over.
        let mut wire = Vec::with_capacity(2 * buf.len() + 8);
        loop {
            let n = match msg.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Report::read()),
            };
            wire.clear();
            st.push(&buf[..n], &mut wire);
            self.send(&wire)?;
        }
        if !st.complete() {
            return Err(Report::partial_line());
        }
        self.critical = true;
        self.send(b".\r\n")?;
        let code = self.code()?;
        self.critical = false;
        if code >= 500 {
            return Err(self.quit(b'D', "", " failed after I sent the message"));
        }
        if code >= 400 {
            return Err(self.quit(b'Z', "", " failed after I sent the message"));
        }
        Ok(self.quit(b'K', "", " accepted message"))
    }
}

/// Error words from a library, printable and on one line.
fn clean(s: &str) -> String {
    String::from_utf8(safe_text(s.as_bytes()).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stuff(input: &[u8]) -> (Vec<u8>, bool) {
        let mut s = Stuffer::new();
        let mut out = Vec::new();
        s.push(input, &mut out);
        (out, s.complete())
    }

    #[test]
    fn dot_stuffing_and_crlf() {
        assert_eq!(stuff(b""), (b"".to_vec(), true));
        assert_eq!(
            stuff(b"a\n.\n..b\nc.d\n"),
            (b"a\r\n..\r\n...b\r\nc.d\r\n".to_vec(), true)
        );
        assert_eq!(stuff(b".x"), (b"..x".to_vec(), false));
        // A CR already in the message is passed through, as netqmail does.
        assert_eq!(stuff(b"a\r\n"), (b"a\r\r\n".to_vec(), true));
    }

    proptest! {
        #[test]
        fn stuffing_is_chunking_independent(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..300) {
            let cut = cut.min(data.len());
            let (whole, c1) = stuff(&data);
            let mut s = Stuffer::new();
            let mut parts = Vec::new();
            s.push(&data[..cut], &mut parts);
            s.push(&data[cut..], &mut parts);
            prop_assert_eq!(&whole, &parts);
            prop_assert_eq!(c1, s.complete());
            // No line of the output is a lone dot, and undoing the stuffing gives the input.
            let text = whole.clone();
            let mut undone = Vec::new();
            for line in text.split_inclusive(|&c| c == b'\n') {
                prop_assert!(line != b".\r\n");
                let l = if line.first() == Some(&b'.') { &line[1..] } else { line };
                let l = l.strip_suffix(b"\r\n").map(|x| { let mut v = x.to_vec(); v.push(b'\n'); v }).unwrap_or_else(|| l.to_vec());
                undone.extend(l);
            }
            prop_assert_eq!(undone, data);
        }
    }
}
