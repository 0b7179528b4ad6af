//! Internationalized domain names (IDNA, RFC 5890 as UTS #46 processes them) for the
//! programs that speak SMTPUTF8 (RFC 6531): a domain written with U-labels
//! (`bücher.example`) and its A-label form (`xn--bcher-kva.example`) name the same host.
//!
//! Pure-ASCII names are never touched here: netqmail compares and sends them byte for
//! byte, and so does rqmail. Only a name with a byte above 127 is converted to its
//! A-labels, and only a name with an `xn--` label is converted back to U-labels.
//!
//! Two tiers:
//! * [`domain_to_ascii`] and [`domain_to_unicode`]: the whole of UTS #46 (mapping,
//!   normalization, validity), from the `idna` crate, for names that go to DNS and to
//!   other servers (qmail-remote, which links these tables through hickory-proto anyway);
//! * [`label_to_ascii`]-based [`simple_to_ascii`] and [`simple_to_unicode`]: Punycode and
//!   lower case alone, for comparing names with control files (qmail-smtpd's rcpthosts).
//!   They agree with UTS #46 on names already in normalization form C with nothing to map
//!   but case, which is how clients send them; another spelling just does not match (the
//!   safe side). They keep the UTS #46 tables (188 kB) out of qmail-smtpd.

use std::borrow::Cow;

/// The longest domain converted, in bytes. A longer one is refused (a DNS name has at most
/// 253 octets; the U-label form may be longer than its A-labels, but not by this much).
pub const MAX_DOMAIN: usize = 1024;

/// True when `s` has a byte above 127.
pub fn is_non_ascii(s: &[u8]) -> bool {
    s.iter().any(|&c| c >= 128)
}

/// `domain` as DNS and an SMTP server without SMTPUTF8 see it: unchanged when it is
/// ASCII, its A-labels (lower case) when it has U-labels. `None` when it is not UTF-8,
/// longer than [`MAX_DOMAIN`], or not a valid internationalized name.
pub fn domain_to_ascii(domain: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !is_non_ascii(domain) {
        return Some(Cow::Borrowed(domain));
    }
    if domain.len() > MAX_DOMAIN {
        return None;
    }
    let s = std::str::from_utf8(domain).ok()?;
    let a = idna::domain_to_ascii(s).ok()?;
    // The conversion must give a usable ASCII name (never an empty one).
    (!a.is_empty() && a.is_ascii()).then(|| Cow::Owned(a.into_bytes()))
}

/// True when `domain` has a label starting with `xn--` (in any case): an A-label.
pub fn has_a_label(domain: &[u8]) -> bool {
    domain
        .split(|&c| c == b'.')
        .any(|l| l.len() > 4 && l[..4].eq_ignore_ascii_case(b"xn--"))
}

/// `domain`'s U-label form (lower case, as UTS #46 maps it) when it has an A-label that
/// decodes; `None` otherwise (also for a name that is not ASCII, or too long).
pub fn domain_to_unicode(domain: &[u8]) -> Option<Vec<u8>> {
    if is_non_ascii(domain) || domain.len() > MAX_DOMAIN || !has_a_label(domain) {
        return None;
    }
    let s = std::str::from_utf8(domain).ok()?;
    match idna::domain_to_unicode(s) {
        (u, Ok(())) if u.as_bytes() != s.as_bytes() => Some(u.into_bytes()),
        _ => None,
    }
}

/// One label in A-label form by Punycode alone: ASCII lower-cased, anything else
/// lower-cased and encoded behind `xn--`. `None` for a label Punycode cannot encode or
/// longer than 63 bytes once encoded.
pub fn label_to_ascii(label: &str) -> Option<String> {
    if label.is_ascii() {
        return Some(label.to_ascii_lowercase());
    }
    let lower = label.to_lowercase();
    let a = format!("xn--{}", idna::punycode::encode_str(&lower)?);
    (a.len() <= 63).then_some(a)
}

/// A domain with U-labels in A-label form by [`label_to_ascii`]; `None` when it is
/// ASCII, not UTF-8, too long, or a label does not encode.
pub fn simple_to_ascii(domain: &[u8]) -> Option<Vec<u8>> {
    if !is_non_ascii(domain) || domain.len() > MAX_DOMAIN {
        return None;
    }
    let s = std::str::from_utf8(domain).ok()?;
    let labels: Option<Vec<String>> = s.split('.').map(label_to_ascii).collect();
    Some(labels?.join(".").into_bytes())
}

/// A domain with A-labels in U-label form by Punycode alone (lower case); `None` when it
/// has no A-label, is not ASCII, too long, or an A-label does not decode.
pub fn simple_to_unicode(domain: &[u8]) -> Option<Vec<u8>> {
    if is_non_ascii(domain) || domain.len() > MAX_DOMAIN || !has_a_label(domain) {
        return None;
    }
    let s = std::str::from_utf8(domain).ok()?.to_ascii_lowercase();
    let labels: Option<Vec<String>> = s
        .split('.')
        .map(|l| match l.strip_prefix("xn--") {
            Some(p) => idna::punycode::decode_to_string(p)
                .filter(|u| !u.is_empty() && !u.is_ascii())
                .map(|u| u.to_lowercase()),
            None => Some(l.to_string()),
        })
        .collect();
    Some(labels?.join(".").into_bytes())
}

/// The address `addr` with its domain (after the last `@`) in A-labels; the local part is
/// left as it is. `None` when the domain has U-labels that do not convert.
pub fn address_to_ascii_domain(addr: &[u8]) -> Option<Cow<'_, [u8]>> {
    let Some(at) = addr.iter().rposition(|&c| c == b'@') else {
        return Some(Cow::Borrowed(addr));
    };
    match domain_to_ascii(&addr[at + 1..])? {
        Cow::Borrowed(_) => Some(Cow::Borrowed(addr)),
        Cow::Owned(d) => {
            let mut v = addr[..=at].to_vec();
            v.extend_from_slice(&d);
            Some(Cow::Owned(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn u_labels_become_a_labels() {
        assert_eq!(
            domain_to_ascii("bücher.example".as_bytes()).unwrap(),
            &b"xn--bcher-kva.example"[..]
        );
        assert_eq!(
            domain_to_ascii("BÜCHER.Example".as_bytes()).unwrap(),
            &b"xn--bcher-kva.example"[..]
        );
        assert_eq!(
            domain_to_ascii("例え.テスト".as_bytes()).unwrap(),
            &b"xn--r8jz45g.xn--zckzah"[..]
        );
        // ASCII is left exactly as it is, case and oddities included.
        assert!(matches!(
            domain_to_ascii(b"Mixed_Case.EXAMPLE"),
            Some(Cow::Borrowed(b"Mixed_Case.EXAMPLE"))
        ));
        assert!(matches!(
            domain_to_ascii(b"[1.2.3.4]"),
            Some(Cow::Borrowed(_))
        ));
        // Not UTF-8, or not a valid name.
        assert_eq!(domain_to_ascii(b"b\xfccher.example"), None);
        assert_eq!(
            domain_to_ascii("a\u{200b}b.example".as_bytes()).map(|c| c.into_owned()),
            Some(b"ab.example".to_vec())
        );
        assert_eq!(domain_to_ascii("xn--a.ü".as_bytes()), None);
        assert_eq!(domain_to_ascii("ü".repeat(600).as_bytes()), None);
    }

    #[test]
    fn a_labels_become_u_labels() {
        assert_eq!(
            domain_to_unicode(b"xn--bcher-kva.example").unwrap(),
            "bücher.example".as_bytes()
        );
        assert_eq!(
            domain_to_unicode(b"XN--BCHER-KVA.example").unwrap(),
            "bücher.example".as_bytes()
        );
        assert_eq!(domain_to_unicode(b"plain.example"), None);
        assert_eq!(domain_to_unicode("bücher.example".as_bytes()), None);
        assert_eq!(domain_to_unicode(b"xn--.example"), None);
        assert!(has_a_label(b"a.Xn--b.c"));
        assert!(!has_a_label(b"xn--"));
    }

    #[test]
    fn punycode_alone() {
        assert_eq!(
            simple_to_ascii("BÜCHER.Example".as_bytes()).unwrap(),
            b"xn--bcher-kva.example"
        );
        assert_eq!(simple_to_ascii(b"plain.example"), None);
        assert_eq!(simple_to_ascii(b"\xff.example"), None);
        assert_eq!(
            simple_to_unicode(b"XN--BCHER-KVA.Example").unwrap(),
            "bücher.example".as_bytes()
        );
        assert_eq!(simple_to_unicode(b"xn--abc-.example"), None);
        assert_eq!(simple_to_unicode(b"plain.example"), None);
        assert_eq!(label_to_ascii(&"ü".repeat(60)), None);
    }

    #[test]
    fn addresses_keep_their_local_part() {
        assert_eq!(
            address_to_ascii_domain("grå@bücher.example".as_bytes()).unwrap(),
            "grå@xn--bcher-kva.example".as_bytes()
        );
        assert!(matches!(
            address_to_ascii_domain("grå@plain.example".as_bytes()),
            Some(Cow::Borrowed(_))
        ));
        assert!(matches!(
            address_to_ascii_domain(b""),
            Some(Cow::Borrowed(b""))
        ));
        assert_eq!(address_to_ascii_domain(b"a@\xff"), None);
    }

    proptest! {
        #[test]
        fn conversions_never_panic(s in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(a) = domain_to_ascii(&s) {
                prop_assert!(!is_non_ascii(&a));
            }
            if let Some(u) = domain_to_unicode(&s) {
                prop_assert!(std::str::from_utf8(&u).is_ok());
            }
            let _ = address_to_ascii_domain(&s);
        }

        #[test]
        fn punycode_alone_agrees_with_uts46(labels in proptest::collection::vec("[a-zA-Z0-9]{0,5}[äöüéßçñøåÄÖÜÉÇÑØÅ][a-z0-9]{0,5}", 1..4)) {
            let d = format!("{}.Example", labels.join("."));
            let full = domain_to_ascii(d.as_bytes()).expect("converts").into_owned();
            prop_assert_eq!(simple_to_ascii(d.as_bytes()), Some(full.clone()));
            prop_assert_eq!(simple_to_unicode(&full), domain_to_unicode(&full));
        }

        #[test]
        fn simple_conversions_never_panic(s in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(a) = simple_to_ascii(&s) {
                prop_assert!(!is_non_ascii(&a));
            }
            if let Some(u) = simple_to_unicode(&s) {
                prop_assert!(std::str::from_utf8(&u).is_ok());
            }
        }

        #[test]
        fn round_trip(labels in proptest::collection::vec("[a-z0-9]{0,5}[äöüéßçñøå][a-z0-9]{0,5}", 1..4)) {
            let d = format!("{}.example", labels.join("."));
            let a = domain_to_ascii(d.as_bytes()).expect("converts").into_owned();
            prop_assert!(has_a_label(&a));
            let u = domain_to_unicode(&a).expect("back");
            // UTS #46 maps ß to itself (non-transitional) and lower-cases: the same name.
            prop_assert_eq!(String::from_utf8(u).unwrap(), d);
        }
    }
}
