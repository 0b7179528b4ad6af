//! The check every name passes before it reaches TCPLOCALHOST or TCPREMOTEHOST.
//!
//! A PTR record is written by whoever controls the reverse zone of the client's address,
//! so the name is remote-controlled text. netqmail exported it as it came; rqmail exports
//! it only when it is a host name by RFC 952/1123 rules, lowercased as netqmail did:
//!
//! * one trailing dot is dropped; what is left has at most 253 characters;
//! * labels separated by single dots, each 1 to 63 characters of `a-z`, `0-9` and `-`,
//!   neither starting nor ending with `-`;
//! * the last label is not all digits (so a PTR record cannot pose as an IP address such
//!   as `127.0.0.1`).
//!
//! Anything else is treated as no name at all.

/// Longest name accepted, without the trailing dot.
pub const MAX_NAME: usize = 253;
/// Longest label accepted.
pub const MAX_LABEL: usize = 63;

/// The lowercased name when `raw` is an acceptable host name, else `None`.
pub fn validate(raw: &[u8]) -> Option<String> {
    let name = raw.strip_suffix(b".").unwrap_or(raw);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    let mut last_all_digits = false;
    for label in name.split(|&c| c == b'.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return None;
        }
        if !label
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            return None;
        }
        if label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            return None;
        }
        last_all_digits = label.iter().all(u8::is_ascii_digit);
    }
    if last_all_digits {
        return None;
    }
    // Only ASCII letters, digits, '-' and '.' remain, so this is valid UTF-8.
    String::from_utf8(name.to_ascii_lowercase()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepted() {
        assert_eq!(
            validate(b"Mail.Example.COM").as_deref(),
            Some("mail.example.com")
        );
        assert_eq!(validate(b"localhost").as_deref(), Some("localhost"));
        assert_eq!(
            validate(b"host-1.example.").as_deref(),
            Some("host-1.example")
        );
        assert_eq!(validate(b"1.2.3.example").as_deref(), Some("1.2.3.example"));
        assert_eq!(validate(b"x1").as_deref(), Some("x1"));
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(long.len(), 253);
        assert_eq!(validate(long.as_bytes()), Some(long));
    }

    #[test]
    fn refused() {
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"a..b",
            b".a",
            b"a b",
            b"evil;rm -rf",
            b"a_b.example",
            b"-a.example",
            b"a-.example",
            b"127.0.0.1",
            b"1.2.3.4.",
            b"12345",
            b"host\n.example",
            b"host\0x",
            b"caf\xc3\xa9.example",
            b"a.b..",
            b"$(reboot)",
        ] {
            assert_eq!(validate(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(validate("a".repeat(64).as_bytes()), None);
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62)
        );
        assert_eq!(validate(long.as_bytes()), None);
    }

    proptest! {
        #[test]
        fn output_is_always_safe(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(n) = validate(&raw) {
                prop_assert!(!n.is_empty() && n.len() <= MAX_NAME);
                prop_assert!(n.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.'));
                prop_assert!(!n.starts_with('.') && !n.ends_with('.') && !n.contains(".."));
            }
        }

        #[test]
        fn good_names_pass(labels in proptest::collection::vec("[a-zA-Z]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?", 1..5)) {
            let name = labels.join(".");
            prop_assert_eq!(validate(name.as_bytes()), Some(name.to_ascii_lowercase()));
        }
    }
}
