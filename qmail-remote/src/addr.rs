//! Envelope addresses as they go into MAIL FROM and RCPT TO: the local part quoted as
//! RFC 821 needs (as little as possible; a UTF-8 local part as RFC 6531 needs, see
//! `utf8::quote_local`), the domain as given or replaced by its canonical name.

/// Splits an address at its last `@`: the local part and the domain. An address without
/// `@` (such as the empty bounce sender) has no domain.
pub fn split(addr: &[u8]) -> (&[u8], Option<&[u8]>) {
    match addr.iter().rposition(|&c| c == b'@') {
        Some(at) => (&addr[..at], Some(&addr[at + 1..])),
        None => (addr, None),
    }
}

/// The address as sent: an address without `@` goes as it is; otherwise the quoted local
/// part, `@`, and `domain`.
pub fn mangle(addr: &[u8], domain: Option<&[u8]>) -> Vec<u8> {
    let (local, d) = split(addr);
    match (d, domain) {
        (None, _) => addr.to_vec(),
        (Some(orig), canon) => {
            let mut out = crate::utf8::quote_local(local);
            out.push(b'@');
            out.extend_from_slice(canon.unwrap_or(orig));
            out
        }
    }
}

/// True when the bytes may be sent inside an SMTP command line: no CR, LF or NUL (which
/// would end or corrupt the command).
pub fn command_safe(s: &[u8]) -> bool {
    !s.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::quote;
    use control::quote_needed as needs_quote;
    use proptest::prelude::*;

    #[test]
    fn quoting() {
        assert_eq!(quote(b"joe"), b"joe");
        assert_eq!(quote(b"joe.smith+x"), b"joe.smith+x");
        assert_eq!(quote(b""), b"\"\"");
        assert_eq!(quote(b"a b"), b"\"a b\"");
        assert_eq!(quote(b".joe"), b"\".joe\"");
        assert_eq!(quote(b"joe."), b"\"joe.\"");
        assert_eq!(quote(b"a..b"), b"\"a..b\"");
        assert_eq!(quote(b"a\"b\\c"), b"\"a\\\"b\\\\c\"");
        assert_eq!(quote(b"a@b"), b"\"a@b\"");
        assert_eq!(quote("é".as_bytes()), "\"é\"".as_bytes());
    }

    #[test]
    fn mangling() {
        assert_eq!(mangle(b"", None), b"");
        assert_eq!(mangle(b"#@[]", None), b"#@[]");
        assert_eq!(mangle(b"a b@x.example", None), b"\"a b\"@x.example");
        assert_eq!(
            mangle(b"joe@alias.example", Some(b"real.example")),
            b"joe@real.example"
        );
        assert_eq!(mangle(b"x@y@z.example", None), b"\"x@y\"@z.example");
    }

    proptest! {
        #[test]
        fn quoted_local_parts_are_one_token(local in proptest::collection::vec(any::<u8>(), 0..40)) {
            let q = quote(&local);
            if needs_quote(&local) {
                prop_assert!(q.len() >= 2 && q[0] == b'"' && q[q.len() - 1] == b'"');
                // Inside the quotes every `"` and `\` is escaped.
                let inner = &q[1..q.len() - 1];
                let mut i = 0;
                let mut unescaped = Vec::new();
                while i < inner.len() {
                    if inner[i] == b'\\' {
                        prop_assert!(i + 1 < inner.len());
                        unescaped.push(inner[i + 1]);
                        i += 2;
                    } else {
                        prop_assert!(inner[i] != b'"');
                        unescaped.push(inner[i]);
                        i += 1;
                    }
                }
                prop_assert_eq!(unescaped, local);
            } else {
                prop_assert_eq!(q, local);
            }
        }
    }
}
