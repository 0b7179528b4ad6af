//! SMTPUTF8 (RFC 6531) and internationalized domain names in qmail-remote.
//!
//! * **Domains go as A-labels.** The host argument, the domains of the sender and the
//!   recipients, control/helohost and the domains and relays of control/smtproutes and
//!   control/qmtproutes are converted from U-labels (`bücher.example`) to A-labels
//!   (`xn--bcher-kva.example`) when they have a byte above 127 (pure-ASCII names are left
//!   exactly as they are). DNS is asked for the A-labels; a host argument that does not
//!   convert is a permanent failure. A sender or recipient domain that does not convert is
//!   sent as it is (then only a server offering SMTPUTF8 gets it).
//! * **When a message needs SMTPUTF8.** qmail's queue has no place for the flag, so it is
//!   read from what the queue does keep: the message needs SMTPUTF8 when, after the
//!   domains are converted, the sender or a recipient still has UTF-8 beyond ASCII (a
//!   local part such as `grå@`), or when the newest Received field with a `with` clause
//!   names a UTF8 protocol (`UTF8SMTP`, `UTF8SMTPA`, `UTF8SMTPS`, `UTF8SMTPSA`, or the
//!   `UTF8ESMTP...` of older patches): the field qmail-smtpd writes when a client gave
//!   SMTPUTF8, so that a message with UTF-8 header fields keeps the flag on its way on.
//!   An address with bytes above 127 that are not UTF-8 is sent as netqmail sends it.
//! * **Sending.** MAIL carries `SMTPUTF8` only for such a message and only to a server
//!   whose EHLO reply lists it; a server that does not is a permanent failure (RFC 6531
//!   section 3.2) with 5.6.7 (non-ASCII addresses) or 5.6.9 (a UTF-8 message). Every other
//!   message goes exactly as netqmail sends it.

use control::idna;
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// The EHLO keyword and MAIL parameter.
pub const KEYWORD: &str = "SMTPUTF8";

/// The most bytes of the header section read to find the Received field.
pub const MAX_HEADER: usize = 64 * 1024;

/// Why a message needs SMTPUTF8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A sender or recipient with UTF-8 in its local part (or a domain that is not IDNA).
    Addresses,
    /// The message came with SMTPUTF8 (its Received field says so).
    Message,
}

impl Need {
    /// The end of the permanent failure when the server does not offer SMTPUTF8.
    pub fn failure(self) -> &'static str {
        match self {
            Need::Addresses => {
                " but it does not offer SMTPUTF8, which the non-ASCII addresses of this message need (#5.6.7)"
            }
            Need::Message => {
                " but it does not offer SMTPUTF8, which this message needs: it came with SMTPUTF8 and may have UTF-8 header fields (#5.6.9)"
            }
        }
    }
}

/// True when `s` is UTF-8 with a character beyond ASCII.
fn is_utf8_beyond_ascii(s: &[u8]) -> bool {
    idna::is_non_ascii(s) && std::str::from_utf8(s).is_ok()
}

/// A domain as DNS, EHLO and the routes see it: A-labels for U-labels, anything else as
/// it is.
pub fn ascii_name(name: &[u8]) -> Cow<'_, [u8]> {
    idna::domain_to_ascii(name).unwrap_or(Cow::Borrowed(name))
}

/// The host argument in A-labels; `None` when it has U-labels that do not convert.
pub fn host(name: &[u8]) -> Option<Cow<'_, [u8]>> {
    idna::domain_to_ascii(name)
}

/// An envelope address with its domain in A-labels when it converts.
pub fn address(addr: &[u8]) -> Cow<'_, [u8]> {
    idna::address_to_ascii_domain(addr).unwrap_or(Cow::Borrowed(addr))
}

/// smtproutes and qmtproutes lines (`domain:relay:port`) with the domain and the relay
/// in A-labels when they have U-labels.
pub fn route_lines(lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    lines
        .into_iter()
        .map(|l| {
            if !idna::is_non_ascii(&l) {
                return l;
            }
            let mut parts: Vec<Vec<u8>> = l.splitn(3, |&c| c == b':').map(<[u8]>::to_vec).collect();
            for p in parts.iter_mut().take(2) {
                let a = ascii_name(p).into_owned();
                *p = a;
            }
            parts.join(&b':')
        })
        .collect()
}

/// The local part as it goes into MAIL or RCPT: a UTF-8 local part needs no quotes when
/// it would need none with its non-ASCII characters taken as letters (RFC 6531's
/// extended atext); anything else is quoted as netqmail quotes it.
pub fn quote_local(local: &[u8]) -> Vec<u8> {
    if is_utf8_beyond_ascii(local) {
        let as_ascii: Vec<u8> = local
            .iter()
            .map(|&c| if c >= 128 { b'x' } else { c })
            .collect();
        if !control::quote_needed(&as_ascii) {
            return local.to_vec();
        }
    }
    control::quote(local)
}

/// Whether the envelope (domains already converted) needs SMTPUTF8.
pub fn envelope_needs<'a>(sender: &[u8], recips: impl IntoIterator<Item = &'a [u8]>) -> bool {
    is_utf8_beyond_ascii(sender) || recips.into_iter().any(is_utf8_beyond_ascii)
}

/// What the newest Received field with a `with` clause says: `Some(true)` when it names a
/// UTF8 protocol, `Some(false)` for another, `None` when `field` is not a Received field
/// or has no `with` clause (qmail-queue's own `Received: (qmail N invoked ...)`).
fn received_verdict(field: &[u8]) -> Option<bool> {
    let colon = field.iter().position(|&c| c == b':')?;
    if !field[..colon]
        .trim_ascii()
        .eq_ignore_ascii_case(b"received")
    {
        return None;
    }
    // The value without comments, up to the `;` before the date.
    let mut text = Vec::with_capacity(field.len());
    let mut depth = 0u32;
    let mut escaped = false;
    for &c in &field[colon + 1..] {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            b'\\' if depth > 0 => escaped = true,
            b'(' => depth = depth.saturating_add(1),
            b')' if depth > 0 => depth -= 1,
            b';' if depth == 0 => break,
            _ if depth > 0 => {}
            _ => text.push(c),
        }
    }
    let mut words = text
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    words.find(|w| w.eq_ignore_ascii_case(b"with"))?;
    let proto = words.next().unwrap_or_default();
    Some(proto.len() >= 4 && proto[..4].eq_ignore_ascii_case(b"UTF8"))
}

/// Whether the header section at the start of `head` says the message came with
/// SMTPUTF8 (see the module's text). Fields are unfolded; the section ends at the first
/// empty line.
pub fn received_says_utf8(head: &[u8]) -> bool {
    let mut field: Vec<u8> = Vec::new();
    for line in head.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if matches!(line.first(), Some(b' ' | b'\t')) && !field.is_empty() {
            field.push(b' ');
            field.extend_from_slice(line);
            continue;
        }
        if let Some(v) = received_verdict(&field) {
            return v;
        }
        if line.is_empty() {
            return false;
        }
        field.clear();
        field.extend_from_slice(line);
    }
    received_verdict(&field).unwrap_or(false)
}

/// [`received_says_utf8`] for the message in `f` from its current position, which is
/// kept. False when `f` cannot be rewound (a pipe: only the envelope then decides).
pub fn message_needs(f: &mut File) -> bool {
    let Ok(pos) = f.stream_position() else {
        return false;
    };
    let mut head = Vec::with_capacity(4096);
    let mut buf = [0u8; 4096];
    while head.len() < MAX_HEADER {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                if head.windows(2).any(|w| w == b"\n\n") {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    head.truncate(MAX_HEADER);
    if f.seek(SeekFrom::Start(pos)).is_err() {
        return false;
    }
    received_says_utf8(&head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SMTPD_UTF8: &str = "Received: (qmail 4 invoked from network); 6 Dec 2026 10:00:00 -0000\nReceived: from unknown (HELO c.example) (127.0.0.1)\n  by mx.example with UTF8SMTPS (TLS1_3 TLS13_AES_256_GCM_SHA384 encrypted); 6 Dec 2026 10:00:00 -0000\nSubject: x\n\nbody\n";

    #[test]
    fn the_received_mark() {
        assert!(received_says_utf8(SMTPD_UTF8.as_bytes()));
        assert!(received_says_utf8(
            b"Delivered-To: a@b\nReceived: from x by y with UTF8SMTP; date\n\n"
        ));
        assert!(received_says_utf8(
            b"Received: from x\r\n\tby y\r\n\twith utf8esmtpa id 1; date\r\n\r\n"
        ));
        // The newest Received field with a `with` clause decides.
        assert!(!received_says_utf8(
            b"Received: from x by y with SMTP; d\nReceived: from z by x with UTF8SMTP; d\n\n"
        ));
        assert!(!received_says_utf8(
            b"Received: (qmail 1 invoked by uid 0); d\nSubject: x\n\n"
        ));
        // Comments and the date do not count.
        assert!(!received_says_utf8(
            b"Received: from x (comment with UTF8SMTP) by y; with UTF8SMTP\n\n"
        ));
        assert!(!received_says_utf8(
            b"Received: from x (a \\) with UTF8SMTP) by y with ESMTP; d\n\n"
        ));
        // Only the header section.
        assert!(!received_says_utf8(
            b"Subject: x\n\nReceived: from x by y with UTF8SMTP; d\n"
        ));
        assert!(!received_says_utf8(
            b"X-Received: from x by y with UTF8SMTP; d\n\n"
        ));
        assert!(!received_says_utf8(b""));
        assert!(received_says_utf8(b"Received: by y with UTF8SMTP"));
    }

    #[test]
    fn envelopes() {
        assert!(!envelope_needs(b"a@b.example", [&b"c@d.example"[..]]));
        assert!(envelope_needs("grå@b.example".as_bytes(), []));
        assert!(envelope_needs(b"", ["δοκιμή@d.example".as_bytes()]));
        // Latin-1 is not UTF-8: sent as netqmail sends it.
        assert!(!envelope_needs(b"gr\xe5@b.example", [&b"x@y"[..]]));
        // A domain that did not convert.
        assert!(envelope_needs(b"", ["x@a\u{fffd}b.example".as_bytes()]));
    }

    #[test]
    fn names() {
        assert_eq!(
            address("grå@bücher.example".as_bytes()),
            "grå@xn--bcher-kva.example".as_bytes()
        );
        assert_eq!(address(b"a@Plain.Example"), &b"a@Plain.Example"[..]);
        assert_eq!(
            host("bücher.example".as_bytes()).unwrap(),
            &b"xn--bcher-kva.example"[..]
        );
        assert_eq!(host(b"[127.0.0.1]").unwrap(), &b"[127.0.0.1]"[..]);
        assert_eq!(host(b"\xff.example"), None);
        assert_eq!(ascii_name("Ä.example".as_bytes()), &b"xn--4ca.example"[..]);
        assert_eq!(
            route_lines(vec![
                "bücher.example:relay.example:26".as_bytes().to_vec(),
                "plain.example:[127.0.0.1]".as_bytes().to_vec(),
                ":smärt.example".as_bytes().to_vec(),
            ]),
            vec![
                b"xn--bcher-kva.example:relay.example:26".to_vec(),
                b"plain.example:[127.0.0.1]".to_vec(),
                b":xn--smrt-moa.example".to_vec(),
            ]
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_local("grå".as_bytes()), "grå".as_bytes());
        assert_eq!(quote_local("δοκιμή.x".as_bytes()), "δοκιμή.x".as_bytes());
        assert_eq!(quote_local("grå blå".as_bytes()), "\"grå blå\"".as_bytes());
        assert_eq!(quote_local(b"gr\xe5"), b"\"gr\xe5\"");
        assert_eq!(quote_local(b"joe"), b"joe");
        assert_eq!(quote_local(b"a b"), b"\"a b\"");
    }

    #[test]
    fn the_message_file_is_rewound() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, SMTPD_UTF8.as_bytes()).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        assert!(message_needs(&mut f));
        assert_eq!(f.stream_position().unwrap(), 0);
        let mut all = String::new();
        f.read_to_string(&mut all).unwrap();
        assert_eq!(all, SMTPD_UTF8);
    }

    proptest! {
        #[test]
        fn header_scanning_never_panics(head in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = received_says_utf8(&head);
        }

        #[test]
        fn only_the_with_word_decides(proto in "[A-Za-z0-9]{1,12}", comment in "[ -'*-~]{0,30}") {
            let f = format!("Received: from a ({comment}) by b with {proto} ({comment}); d\n\n");
            let utf8 = proto.to_ascii_uppercase().starts_with("UTF8");
            prop_assert_eq!(received_says_utf8(f.as_bytes()), utf8);
        }

        #[test]
        fn quoted_locals_are_netqmails_for_ascii(local in proptest::collection::vec(0u8..128, 0..30)) {
            prop_assert_eq!(quote_local(&local), control::quote(&local));
        }
    }
}
