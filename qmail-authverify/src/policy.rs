//! What the results decide: control/authreject and the verdict.

use std::fmt;

/// The control file naming the results that refuse a message.
pub const AUTHREJECT: &str = "authreject";

/// Which failures refuse a message (control/authreject); everything else is only
/// recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reject {
    /// `dmarc`: the From: domain's DMARC policy is `reject` and the message fails DMARC.
    pub dmarc: bool,
    /// `spf`: the envelope sender's SPF result is `fail`.
    pub spf: bool,
}

/// A line of control/authreject that is neither `dmarc` nor `spf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine(pub usize, pub String);

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "control/{AUTHREJECT} line {}: {:?} is neither dmarc nor spf",
            self.0, self.1
        )
    }
}

impl Reject {
    /// Reads the lines of control/authreject: one word per line (`dmarc`, `spf`), any case;
    /// empty lines and lines starting with `#` are ignored.
    pub fn parse(lines: &[Vec<u8>]) -> Result<Reject, BadLine> {
        let mut r = Reject::default();
        for (i, l) in lines.iter().enumerate() {
            let w = String::from_utf8_lossy(l).trim().to_ascii_lowercase();
            match w.as_str() {
                "" => {}
                _ if w.starts_with('#') => {}
                "dmarc" => r.dmarc = true,
                "spf" => r.spf = true,
                _ => return Err(BadLine(i + 1, w)),
            }
        }
        Ok(r)
    }
}

/// What the checks found, reduced to what the policy needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// The SPF result of the envelope sender (or of the HELO name for a bounce) is fail.
    pub spf_fail: bool,
    /// The domain whose SPF check failed.
    pub spf_domain: String,
    /// The message fails DMARC and the From: domain's policy is reject.
    pub dmarc_reject: bool,
    /// The From: domain.
    pub dmarc_domain: String,
    /// A check could not be made because DNS failed: what failed.
    pub temp: Option<String>,
}

/// The answer for the SMTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Record the results and queue the message.
    Accept,
    /// Refuse for good: the reply line (without CRLF).
    Permanent(String),
    /// Refuse for now: the reply line (without CRLF).
    Temporary(String),
}

/// The verdict: a refusal the control file asks for, else a temporary failure when DNS
/// failed (a result that could not be made is never a pass), else acceptance.
pub fn decide(reject: Reject, f: &Findings) -> Verdict {
    if reject.spf && f.spf_fail {
        return Verdict::Permanent(format!(
            "550 5.7.23 SPF of {} does not allow this host to send its mail (#5.7.23)",
            printable(&f.spf_domain)
        ));
    }
    if reject.dmarc && f.dmarc_reject {
        return Verdict::Permanent(format!(
            "550 5.7.1 message rejected by the DMARC policy of {} (#5.7.1)",
            printable(&f.dmarc_domain)
        ));
    }
    if let Some(what) = &f.temp {
        return Verdict::Temporary(format!(
            "451 4.4.3 {} could not be checked: DNS lookup failed, try again later (#4.4.3)",
            printable(what)
        ));
    }
    Verdict::Accept
}

/// At most 200 printable ASCII characters (others `?`): for reply lines.
fn printable(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(t: &str) -> Vec<Vec<u8>> {
        t.lines().map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn control_file() {
        assert_eq!(Reject::parse(&[]).unwrap(), Reject::default());
        assert_eq!(
            Reject::parse(&lines("# reject these\nDMARC\n\n spf \n")).unwrap(),
            Reject {
                dmarc: true,
                spf: true
            }
        );
        assert_eq!(
            Reject::parse(&lines("dmarc\nquarantine\n")).unwrap_err(),
            BadLine(2, "quarantine".into())
        );
    }

    #[test]
    fn decisions() {
        let both = Reject {
            dmarc: true,
            spf: true,
        };
        let mut f = Findings::default();
        assert_eq!(decide(both, &f), Verdict::Accept);
        f.temp = Some("SPF of example.com".into());
        assert!(matches!(decide(both, &f), Verdict::Temporary(t) if t.starts_with("451 ")));
        f.dmarc_reject = true;
        f.dmarc_domain = "example.com\r\nX".into();
        match decide(both, &f) {
            Verdict::Permanent(t) => {
                assert!(t.starts_with("550 5.7.1 "), "{t}");
                assert!(t.contains("example.com??X"), "{t}");
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            decide(Reject::default(), &f),
            Verdict::Temporary(_)
        ));
        f.temp = None;
        assert_eq!(decide(Reject::default(), &f), Verdict::Accept);
        f.spf_fail = true;
        assert!(matches!(
            decide(both, &f),
            Verdict::Permanent(t) if t.starts_with("550 5.7.23 ")
        ));
    }
}
