//! Quoting a local part for a header or an SMTP path (netqmail's quote).
//!
//! As little quoting as possible: a local part made only of characters that are safe in
//! both RFC 821 and RFC 822, with no leading, trailing or doubled dot, stays as it is;
//! anything else is put in double quotes with `"`, `\`, CR and LF backslash-quoted.

/// True when `s` must be quoted.
pub fn need(s: &[u8]) -> bool {
    if s.is_empty() {
        return true;
    }
    let safe = |c: u8| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'/'
                    | b'='
                    | b'?'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'{'
                    | b'|'
                    | b'}'
                    | b'~'
            )
    };
    if !s.iter().all(|&c| safe(c)) {
        return true;
    }
    s[0] == b'.' || s[s.len() - 1] == b'.' || s.windows(2).any(|w| w == b"..")
}

/// `s`, quoted when it must be.
pub fn quote(s: &[u8]) -> Vec<u8> {
    if !need(s) {
        return s.to_vec();
    }
    let mut out = Vec::with_capacity(s.len() + 2);
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

/// An address with its local part (everything before the last `@`) quoted when it must
/// be; the empty address stays empty.
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
    fn quoting() {
        assert_eq!(quote2(b"joe@example.com"), b"joe@example.com");
        assert_eq!(quote2(b""), b"");
        assert_eq!(quote2(b"joe smith@x"), b"\"joe smith\"@x");
        assert_eq!(quote2(b"a@b@c"), b"\"a@b\"@c");
        assert_eq!(quote2(b".a@x"), b"\".a\"@x");
        assert_eq!(quote2(b"a..b"), b"\"a..b\"");
        assert_eq!(quote2(b"a\"b\\@x"), b"\"a\\\"b\\\\\"@x");
        assert_eq!(quote2(b"@x"), b"\"\"@x");
        assert!(need("é".as_bytes()));
        assert!(!need(b"a+b=c{d}~"));
        for c in [
            b'(', b')', b'<', b'>', b',', b';', b':', b'[', b']', b' ', b'"', b'@',
        ] {
            assert!(need(&[c]), "{}", c as char);
        }
    }
}
