//! Small helpers on envelope addresses (bytes, since SMTP allows 8-bit local parts).

/// Splits `addr` at its last `@` into (local part, domain). `None` without an `@`.
pub fn split_at_last_at(addr: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = addr.iter().rposition(|&c| c == b'@')?;
    Some((&addr[..at], &addr[at + 1..]))
}

/// The domain of `addr` (after its last `@`), or `None`.
pub fn domain(addr: &[u8]) -> Option<&[u8]> {
    split_at_last_at(addr).map(|(_, d)| d)
}

/// Renders bytes for a log line or diagnostic: printable ASCII kept, everything else
/// (control characters, 8-bit bytes) as `?`, so a remote string can never inject a line.
pub fn printable(s: &[u8]) -> String {
    s.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Bytes that may stand unquoted in a local part (netqmail's quote.c table): letters,
/// digits, ``!#$%&'*+-/=?^_`{|}~`` and the dot (whose placement is checked apart).
fn atom_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-./=?^_`{|}~".contains(&c)
}

/// True when a local part must be written as a quoted string: empty, a byte outside
/// [`atom_ok`] (8-bit bytes included), a dot at either end or two dots in a row.
pub fn quote_needed(s: &[u8]) -> bool {
    s.is_empty()
        || !s.iter().all(|&c| atom_ok(c))
        || s[0] == b'.'
        || s[s.len() - 1] == b'.'
        || s.windows(2).any(|w| w == b"..")
}

/// A local part as RFC 821 wants it (netqmail's quote): unchanged when possible, else in
/// double quotes with CR, LF, `"` and `\` escaped by a backslash.
pub fn quote(s: &[u8]) -> Vec<u8> {
    if !quote_needed(s) {
        return s.to_vec();
    }
    let mut out = Vec::with_capacity(s.len() * 2 + 2);
    out.push(b'"');
    for &c in s {
        if matches!(c, b'\r' | b'\n' | b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
    out
}

/// An address with its local part (before the last `@`) quoted as needed; the empty
/// address stays empty (netqmail's quote2).
pub fn quote2(addr: &[u8]) -> Vec<u8> {
    if addr.is_empty() {
        return Vec::new();
    }
    match addr.iter().rposition(|&c| c == b'@') {
        None => quote(addr),
        Some(at) => {
            let mut out = quote(&addr[..at]);
            out.extend_from_slice(&addr[at..]);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(
            split_at_last_at(b"a@b@c.example"),
            Some((&b"a@b"[..], &b"c.example"[..]))
        );
        assert_eq!(split_at_last_at(b"postmaster"), None);
        assert_eq!(domain(b"x@"), Some(&b""[..]));
        assert_eq!(printable(b"a\r\nb\xff"), "a??b?");
    }

    #[test]
    fn quoting_as_netqmail() {
        assert_eq!(quote2(b"joe@example.com"), b"joe@example.com");
        assert_eq!(quote2(b""), b"");
        assert_eq!(quote2(b"joe smith@x"), b"\"joe smith\"@x");
        assert_eq!(quote2(b"a@b@c"), b"\"a@b\"@c");
        assert_eq!(quote2(b".a@x"), b"\".a\"@x");
        assert_eq!(quote2(b"a..b"), b"\"a..b\"");
        assert_eq!(quote2(b"a\"b\\@x"), b"\"a\\\"b\\\\\"@x");
        assert_eq!(quote2(b"@x"), b"\"\"@x");
        assert_eq!(quote(b"a\r\nb"), b"\"a\\\r\\\nb\"");
        assert!(quote_needed("\u{e9}".as_bytes()));
        assert!(!quote_needed(b"a.b+c=d{e}~"));
        for c in b"()<>,;:[] \"@" {
            assert!(quote_needed(&[*c]), "{}", *c as char);
        }
    }
}
