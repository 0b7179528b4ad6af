//! Bounce messages in qmail's QSBMF format (qmail-send.c's addbounce and injectbounce),
//! and the address quoting they use (netqmail's quote.c).

pub use control::{quote, quote2};

/// The paragraph appended to bounce/N for one failed recipient: `<recip>:`, the report,
/// then a blank line. Newlines in the address become `_`, blank lines inside the report
/// become `/` so the paragraph stays one paragraph.
pub fn record(recip: &[u8], report: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(recip.len() + report.len() + 8);
    t.push(b'<');
    t.extend(recip.iter().map(|&c| if c == b'\n' { b'_' } else { c }));
    t.extend_from_slice(b">:\n");
    t.extend_from_slice(report);
    if !report.is_empty() && report[report.len() - 1] != b'\n' {
        t.push(b'\n');
    }
    let mut pos = t.len() - 2;
    while pos > 0 {
        if t[pos] == b'\n' && t[pos - 1] == b'\n' {
            t[pos] = b'/';
        }
        pos -= 1;
    }
    t.push(b'\n');
    t
}

/// The text added to a temporary failure once the message is older than queuelifetime.
pub const TOO_LONG: &[u8] =
    b"I'm not going to try again; this message has been in the queue too long.\n";

/// The bounce message up to the failure paragraphs. `double` for a bounce of a bounce
/// (its recipient is doublebounceto).
pub fn head(date: u64, bouncefrom: &[u8], bouncehost: &[u8], to: &[u8], double: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(512);
    v.extend_from_slice(b"Date: ");
    v.extend_from_slice(control::date822(date).as_bytes());
    v.extend_from_slice(b"\nFrom: ");
    v.extend(quote(bouncefrom));
    v.push(b'@');
    v.extend_from_slice(bouncehost);
    v.extend_from_slice(b"\nTo: ");
    v.extend(quote2(to));
    v.extend_from_slice(b"\nSubject: failure notice\n\nHi. This is the qmail-send program at ");
    v.extend_from_slice(bouncehost);
    if double {
        v.extend_from_slice(
            b".\nI tried to deliver a bounce message to this address, but the bounce bounced!\n\n",
        );
    } else {
        v.extend_from_slice(
            b".\nI'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\n",
        );
    }
    v
}

/// What becomes of a message's collected failures, decided from the sender of
/// info/S/N.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The sender is `#@[]` (the message was itself a double bounce): bounce/N is
    /// discarded with a `triple bounce` line.
    Discard,
    /// A bounce from `sender` (empty, or `#@[]` for a double bounce) to `recip`.
    Inject {
        /// The original sender, without a trailing `-@[]` (the Return-Path of the copy).
        orig: Vec<u8>,
        sender: Vec<u8>,
        recip: Vec<u8>,
        double: bool,
    },
}

/// netqmail's injectbounce: `owner-@host-@[]` becomes `owner-@host`; `#@[]` is not
/// bounced again; the empty sender's failures go to doublebounceto as a double bounce.
pub fn plan(sender: &[u8], doublebounceto: &[u8]) -> Plan {
    let orig = sender.strip_suffix(b"-@[]").unwrap_or(sender);
    if orig == b"#@[]" {
        return Plan::Discard;
    }
    let double = orig.is_empty();
    let (sender, recip) = if double {
        (b"#@[]".to_vec(), doublebounceto.to_vec())
    } else {
        (Vec::new(), orig.to_vec())
    };
    Plan::Inject {
        orig: orig.to_vec(),
        sender,
        recip,
        double,
    }
}

/// The text of a bounce: [`head`], bounce/N as it is, [`middle`], mess/N as it is, each
/// handed to `put` as read. An error reading either file is returned (the bounce must
/// then not be queued).
#[allow(clippy::too_many_arguments)]
pub fn compose(
    put: &mut impl FnMut(&[u8]),
    date: u64,
    bouncefrom: &[u8],
    bouncehost: &[u8],
    orig: &[u8],
    recip: &[u8],
    double: bool,
    bounce: &mut impl std::io::Read,
    mess: &mut impl std::io::Read,
) -> std::io::Result<()> {
    put(&head(date, bouncefrom, bouncehost, recip, double));
    copy(put, bounce)?;
    put(&middle(orig, double));
    copy(put, mess)
}

fn copy(put: &mut impl FnMut(&[u8]), r: &mut impl std::io::Read) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => put(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The separator between the failure paragraphs and the original message.
pub fn middle(sender: &[u8], double: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(80 + sender.len());
    v.extend_from_slice(if double {
        b"--- Below this line is the original bounce.\n\n".as_slice()
    } else {
        b"--- Below this line is a copy of the message.\n\n".as_slice()
    });
    v.extend_from_slice(b"Return-Path: <");
    v.extend(quote2(sender));
    v.extend_from_slice(b">\n");
    v
}

#[cfg(test)]
mod tests {
    use super::{head, middle, quote, quote2, record};
    use proptest::prelude::*;

    #[test]
    fn quoting() {
        assert_eq!(quote(b"MAILER-DAEMON"), b"MAILER-DAEMON");
        assert_eq!(quote(b"a b"), b"\"a b\"");
        assert_eq!(quote(b"a\"b\\"), b"\"a\\\"b\\\\\"");
        assert_eq!(quote(b".a"), b"\".a\"");
        assert_eq!(quote(b"a..b"), b"\"a..b\"");
        assert_eq!(quote(b""), b"\"\"");
        assert_eq!(quote2(b"joe smith@x.example"), b"\"joe smith\"@x.example");
        assert_eq!(quote2(b""), b"");
        assert_eq!(quote2(b"#@[]"), b"#@[]");
        assert_eq!(quote2(b"nobody"), b"nobody");
    }

    #[test]
    fn records() {
        assert_eq!(
            record(
                b"joe@x.example",
                b"Sorry, no mailbox here by that name. (#5.1.1)\n"
            ),
            b"<joe@x.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        );
        assert_eq!(
            record(b"a\nb@x", b"one\n\n\ntwo"),
            b"<a_b@x>:\none\n//two\n\n"
        );
        assert_eq!(record(b"a@x", b""), b"<a@x>:\n\n");
    }

    #[test]
    fn head_text() {
        let h = head(
            812_090_814,
            b"MAILER-DAEMON",
            b"me.example",
            b"joe@x.example",
            false,
        );
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "Date: 26 Sep 1995 04:46:54 -0000\nFrom: MAILER-DAEMON@me.example\nTo: joe@x.example\n\
Subject: failure notice\n\nHi. This is the qmail-send program at me.example.\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        );
        assert_eq!(
            middle(b"", true),
            b"--- Below this line is the original bounce.\n\nReturn-Path: <>\n"
        );
    }

    #[test]
    fn plans() {
        use super::{Plan, plan};
        assert_eq!(plan(b"#@[]", b"dbl"), Plan::Discard);
        assert_eq!(plan(b"#@[]-@[]", b"dbl"), Plan::Discard);
        let inject = |orig: &[u8], sender: &[u8], recip: &[u8], double| Plan::Inject {
            orig: orig.to_vec(),
            sender: sender.to_vec(),
            recip: recip.to_vec(),
            double,
        };
        assert_eq!(plan(b"", b"dbl"), inject(b"", b"#@[]", b"dbl", true));
        assert_eq!(plan(b"-@[]", b"dbl"), inject(b"", b"#@[]", b"dbl", true));
        assert_eq!(
            plan(b"owner-@list.example-@[]", b"dbl"),
            inject(b"owner-@list.example", b"", b"owner-@list.example", false)
        );
        assert_eq!(plan(b"a@b", b"dbl"), inject(b"a@b", b"", b"a@b", false));
    }

    #[test]
    fn composed_text() {
        let mut out = Vec::new();
        let r = super::compose(
            &mut |d: &[u8]| out.extend_from_slice(d),
            812_090_814,
            b"MAILER-DAEMON",
            b"me.example",
            b"a@b",
            b"a@b",
            false,
            &mut &b"<x@y>:\nno\n\n"[..],
            &mut &b"Subject: s\n\nbody\n"[..],
        );
        assert!(r.is_ok());
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(
            "<x@y>:\nno\n\n--- Below this line is a copy of the message.\n\n\
Return-Path: <a@b>\nSubject: s\n\nbody\n"
        ));
    }

    proptest! {
        #[test]
        fn record_is_one_paragraph(r in proptest::collection::vec(any::<u8>(), 0..60), rep in proptest::collection::vec(any::<u8>(), 0..200)) {
            let rep: Vec<u8> = rep.into_iter().filter(|&c| c != 0).collect();
            let t = record(&r, &rep);
            prop_assert!(t.ends_with(b"\n\n"));
            prop_assert!(!t[..t.len() - 1].windows(2).any(|w| w == b"\n\n"));
        }
    }
}
