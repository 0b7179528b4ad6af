//! Quoting a local part for a header or an SMTP path (netqmail's quote).
//!
//! As little quoting as possible: a local part made only of characters that are safe in
//! both RFC 821 and RFC 822, with no leading, trailing or doubled dot, stays as it is;
//! anything else is put in double quotes with `"`, `\`, CR and LF backslash-quoted.

pub use control::address::quote_needed as need;
pub use control::address::{quote, quote2};

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
