//! What qmail-remote prints on its standard output (qmail-remote(8)): zero or more
//! recipient reports (`r` accepted, `h` permanently rejected, `s` temporarily rejected),
//! then one message report (`K` success, `Z` temporary failure, `D` permanent failure),
//! each ending in a 0 byte. qmail-rspawn reads them; the texts are netqmail's, because
//! qmail-send writes them into its log and into bounces.

use std::net::IpAddr;

/// The message report: its letter and its text (which ends in a newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub letter: u8,
    pub text: Vec<u8>,
}

impl Report {
    fn new(letter: u8, text: &str) -> Report {
        Report {
            letter,
            text: text.as_bytes().to_vec(),
        }
    }

    /// `Z` with a fixed text.
    pub fn temp(text: &str) -> Report {
        Report::new(b'Z', text)
    }

    /// `D` with a fixed text.
    pub fn perm(text: &str) -> Report {
        Report::new(b'D', text)
    }

    pub fn oserr() -> Report {
        Report::temp("System resources temporarily unavailable. (#4.3.0)\n")
    }

    pub fn noconn() -> Report {
        Report::temp("Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n")
    }

    pub fn read() -> Report {
        Report::temp("Unable to read message. (#4.3.0)\n")
    }

    pub fn dnscanon() -> Report {
        Report::temp("CNAME lookup failed temporarily. (#4.4.3)\n")
    }

    pub fn dns_temp() -> Report {
        Report::temp("Sorry, I couldn't find any host by that name. (#4.1.2)\n")
    }

    pub fn chdir() -> Report {
        Report::temp("Unable to switch to home directory. (#4.3.0)\n")
    }

    pub fn control() -> Report {
        Report::temp("Unable to read control files. (#4.3.0)\n")
    }

    /// A route in control/smtproutes that names no usable port (rqmail's own text).
    pub fn bad_route() -> Report {
        Report::temp("Unusable route in control/smtproutes. (#4.3.5)\n")
    }

    pub fn partial_line() -> Report {
        Report::perm("SMTP cannot transfer messages with partial final lines. (#5.6.2)\n")
    }

    pub fn usage() -> Report {
        Report::perm("I (qmail-remote) was invoked improperly. (#5.3.5)\n")
    }

    /// The name does not exist in DNS.
    pub fn dns_perm(host: &[u8]) -> Report {
        let mut text = b"Sorry, I couldn't find any host named ".to_vec();
        text.extend(safe(host));
        text.extend_from_slice(b". (#5.1.2)\n");
        Report { letter: b'D', text }
    }

    pub fn nomx() -> Report {
        Report::perm("Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n")
    }

    pub fn ambigmx() -> Report {
        Report::perm(
            "Sorry. Although I'm listed as a best-preference MX or A for that host,\n\
             it isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\n",
        )
    }

    /// The connection broke (or timed out) in the middle of the dialogue. `why` is an
    /// explanation netqmail does not give (TLS errors, overlong replies), placed where the
    /// qmail TLS patch puts its TLS error.
    pub fn dropped(partner: IpAddr, critical: bool, why: Option<&str>) -> Report {
        let mut text = format!("Connected to {partner} but connection died. ").into_bytes();
        if critical {
            text.extend_from_slice(b"Possible duplicate! ");
        }
        if let Some(w) = why {
            text.extend(safe_text(w.as_bytes()));
            text.push(b' ');
        }
        text.extend_from_slice(b"(#4.4.2)\n");
        Report { letter: b'Z', text }
    }
}

/// netqmail's outsafe: every byte outside `!`..`~` becomes `?`.
pub fn safe(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    s.iter()
        .map(|&c| if (33..=126).contains(&c) { c } else { b'?' })
}

/// Like [`safe`] but keeps spaces (for explanations made of words).
pub fn safe_text(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    s.iter()
        .map(|&c| if (32..=126).contains(&c) { c } else { b'?' })
}

/// The output being built: recipient reports as they happen, the message report last.
#[derive(Debug, Default)]
pub struct Output {
    buf: Vec<u8>,
}

impl Output {
    pub fn new() -> Output {
        Output::default()
    }

    /// A recipient report: `letter` (`r`, `h` or `s`) and its text.
    pub fn recipient(&mut self, letter: u8, text: &[u8]) {
        self.buf.push(letter);
        self.buf
            .extend(text.iter().map(|&c| if c == 0 { b'?' } else { c }));
        self.buf.push(0);
    }

    /// Everything to print: the recipient reports and the message report.
    pub fn finish(mut self, r: &Report) -> Vec<u8> {
        self.buf.push(r.letter);
        self.buf
            .extend(r.text.iter().map(|&c| if c == 0 { b'?' } else { c }));
        self.buf.push(0);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            Report::dropped(ip, false, None).text,
            b"Connected to 192.0.2.7 but connection died. (#4.4.2)\n"
        );
        assert_eq!(
            Report::dropped(ip, true, Some("TLS: bad\n")).text,
            b"Connected to 192.0.2.7 but connection died. Possible duplicate! TLS: bad? (#4.4.2)\n"
        );
        assert_eq!(
            Report::dns_perm(b"a b\x01.example").text,
            b"Sorry, I couldn't find any host named a?b?.example. (#5.1.2)\n"
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(
            Report::dropped(v6, false, None)
                .text
                .starts_with(b"Connected to 2001:db8::1 but")
        );
    }

    #[test]
    fn output_framing() {
        let mut o = Output::new();
        o.recipient(b'r', b"");
        o.recipient(b'h', b"x\0y\n");
        let v = o.finish(&Report::nomx());
        assert_eq!(
            v,
            b"r\0hx?y\n\0DSorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n\0"
        );
    }
}
