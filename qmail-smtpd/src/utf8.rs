//! SMTPUTF8 (RFC 6531) in qmail-smtpd, when control/smtputf8 turns it on (rqmail only;
//! without it qmail-smtpd is netqmail's: no EHLO keyword, every MAIL parameter ignored,
//! addresses taken byte for byte):
//!
//! * EHLO lists `SMTPUTF8`;
//! * `MAIL FROM:<...> SMTPUTF8` starts a transaction in which the sender and recipients
//!   may hold UTF-8 (RFC 6531 section 3.4); an address that is not valid UTF-8 gets 553
//!   with 5.1.7 (sender) or 5.1.3 (recipient);
//! * without the parameter, an address with a byte above 127 gets `553 ... (#5.6.7)`
//!   (RFC 6531 section 3.5);
//! * the Received field of such a message says `UTF8SMTP`, `UTF8SMTPA`, `UTF8SMTPS` or
//!   `UTF8SMTPSA` (RFC 6531 section 3.7.3 with RFC 3848's names) where it would say
//!   SMTP, ESMTPA, ESMTPS or ESMTPSA: the mark by which qmail-remote knows later that the
//!   message needs SMTPUTF8 even when its envelope is ASCII;
//! * rcpthosts and morercpthosts.cdb match a domain in either form: U-labels
//!   (`bücher.example`) and A-labels (`xn--bcher-kva.example`) name the same host, and
//!   either may be listed. The forms are converted by Punycode and lower case alone
//!   (`control::idna::simple_to_ascii`), without the UTS #46 tables.

use control::RcptHosts;
use control::idna;
use std::io;

/// The EHLO keyword and MAIL parameter.
pub const KEYWORD: &str = "SMTPUTF8";

/// MAIL or RCPT with a non-ASCII address, without SMTPUTF8 on MAIL.
pub const NEEDS_SMTPUTF8: &str =
    "553 sorry, a non-ASCII address needs the SMTPUTF8 parameter on MAIL (#5.6.7)\r\n";
/// A sender that is not UTF-8.
pub const BAD_SENDER: &str = "553 sorry, that sender address is not valid UTF-8 (#5.1.7)\r\n";
/// A recipient that is not UTF-8.
pub const BAD_RECIPIENT: &str = "553 sorry, that recipient address is not valid UTF-8 (#5.1.3)\r\n";

/// True when the MAIL parameters `params` (the text after the address) hold the word
/// SMTPUTF8, in any case and without a value.
pub fn param(params: &[u8]) -> bool {
    params
        .split(|&c| c == b' ')
        .any(|w| w.eq_ignore_ascii_case(KEYWORD.as_bytes()))
}

/// The reply refusing `addr` in a transaction that did (`utf8`) or did not ask for
/// SMTPUTF8, or `None` when the address may be used. `sender` chooses the status code of
/// an address that is not UTF-8.
pub fn refusal(addr: &[u8], utf8: bool, sender: bool) -> Option<&'static str> {
    if !idna::is_non_ascii(addr) {
        return None;
    }
    if !utf8 {
        return Some(NEEDS_SMTPUTF8);
    }
    if std::str::from_utf8(addr).is_err() {
        return Some(if sender { BAD_SENDER } else { BAD_RECIPIENT });
    }
    None
}

/// The Received field's protocol for an SMTPUTF8 transaction: `protocol` as qmail-smtpd
/// names it (SMTP, ESMTPA, ESMTPS (...), ESMTPSA (...)) made into its UTF8 form.
pub fn protocol(protocol: &str) -> String {
    let rest = protocol
        .strip_prefix("ESMTP")
        .or_else(|| protocol.strip_prefix("SMTP"))
        .unwrap_or(protocol);
    format!("UTF8SMTP{rest}")
}

/// rcpthosts for `addr`, with its domain also tried in its other forms when the form
/// given is not listed: a domain with U-labels as A-labels and in lower case, a domain
/// with A-labels as U-labels.
pub fn rcpthosts_allowed(hosts: &RcptHosts, addr: &[u8]) -> io::Result<bool> {
    if hosts.allowed(addr)? {
        return Ok(true);
    }
    let Some(at) = addr.iter().rposition(|&c| c == b'@') else {
        return Ok(false);
    };
    let domain = &addr[at + 1..];
    let mut forms = Vec::new();
    if idna::is_non_ascii(domain) {
        if let Some(a) = idna::simple_to_ascii(domain) {
            forms.extend(idna::simple_to_unicode(&a));
            forms.push(a);
        }
    } else {
        forms.extend(idna::simple_to_unicode(domain));
    }
    for d in forms {
        let mut a = addr[..=at].to_vec();
        a.extend_from_slice(&d);
        if hosts.allowed(&a)? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_parameter() {
        assert!(param(b" SMTPUTF8"));
        assert!(param(b" smtputf8 BODY=8BITMIME"));
        assert!(param(b" SIZE=10 SmtpUtf8"));
        assert!(!param(b""));
        assert!(!param(b" SMTPUTF8=yes"));
        assert!(!param(b" XSMTPUTF8"));
        assert!(!param(b" BODY=SMTPUTF8"));
    }

    #[test]
    fn refusals() {
        assert_eq!(refusal(b"plain@example.com", false, true), None);
        assert_eq!(refusal(b"plain@example.com", true, false), None);
        assert_eq!(refusal("grå@example.com".as_bytes(), true, true), None);
        assert_eq!(
            refusal("grå@example.com".as_bytes(), false, true),
            Some(NEEDS_SMTPUTF8)
        );
        assert_eq!(
            refusal("u@bücher.example".as_bytes(), false, false),
            Some(NEEDS_SMTPUTF8)
        );
        assert_eq!(refusal(b"gr\xe5@example.com", true, true), Some(BAD_SENDER));
        assert_eq!(
            refusal(b"gr\xe5@example.com", true, false),
            Some(BAD_RECIPIENT)
        );
        for r in [NEEDS_SMTPUTF8, BAD_SENDER, BAD_RECIPIENT] {
            assert!(r.starts_with("553 ") && r.ends_with(")\r\n"));
        }
    }

    #[test]
    fn protocols() {
        assert_eq!(protocol("SMTP"), "UTF8SMTP");
        assert_eq!(protocol("ESMTPA"), "UTF8SMTPA");
        assert_eq!(
            protocol("ESMTPS (TLS1_3 AES256 encrypted)"),
            "UTF8SMTPS (TLS1_3 AES256 encrypted)"
        );
        assert_eq!(
            protocol("ESMTPSA (TLS1_3 X encrypted, authenticated)"),
            "UTF8SMTPSA (TLS1_3 X encrypted, authenticated)"
        );
    }

    #[test]
    fn rcpthosts_in_both_forms() {
        let u = RcptHosts::from_entries(Some(["bücher.example", ".städte.example"]));
        assert!(rcpthosts_allowed(&u, "x@bücher.example".as_bytes()).unwrap());
        assert!(rcpthosts_allowed(&u, b"x@xn--bcher-kva.example").unwrap());
        assert!(rcpthosts_allowed(&u, b"x@XN--BCHER-KVA.example").unwrap());
        assert!(rcpthosts_allowed(&u, "x@a.STÄDTE.example".as_bytes()).unwrap());
        assert!(!rcpthosts_allowed(&u, b"x@other.example").unwrap());
        let a = RcptHosts::from_entries(Some(["xn--bcher-kva.example"]));
        assert!(rcpthosts_allowed(&a, "x@bücher.example".as_bytes()).unwrap());
        assert!(rcpthosts_allowed(&a, "x@BÜCHER.example".as_bytes()).unwrap());
        assert!(!rcpthosts_allowed(&a, "x@bucher.example".as_bytes()).unwrap());
        assert!(!rcpthosts_allowed(&a, b"x@b\xfccher.example").unwrap());
        assert!(rcpthosts_allowed(&a, b"postmaster").unwrap());
    }

    proptest! {
        #[test]
        fn refusal_and_rcpthosts_never_panic(addr in proptest::collection::vec(any::<u8>(), 0..200), utf8 in any::<bool>()) {
            let r = refusal(&addr, utf8, false);
            if !addr.iter().any(|&c| c >= 128) {
                prop_assert_eq!(r, None);
            }
            if utf8 && std::str::from_utf8(&addr).is_ok() {
                prop_assert_eq!(r, None);
            }
            let h = RcptHosts::from_entries(Some(["xn--bcher-kva.example", "bücher.example"]));
            let _ = rcpthosts_allowed(&h, &addr);
        }
    }
}
