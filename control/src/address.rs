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
}
