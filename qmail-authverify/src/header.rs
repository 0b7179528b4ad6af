//! The header section of a received message, as far as qmail-authverify touches it: where
//! it ends, and the Authentication-Results fields that claim to come from this host
//! (RFC 8601 section 5: a receiver removes them before it adds its own, since anyone
//! could have written them).

/// The length of the header section, including the empty line that ends it (LF or CRLF
/// line ends); the whole message when it has no empty line.
pub fn header_len(msg: &[u8]) -> usize {
    let mut start = 0;
    while start < msg.len() {
        let end = msg[start..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(msg.len(), |i| start + i + 1);
        let line = &msg[start..end];
        if line == b"\n" || line == b"\r\n" {
            return end;
        }
        start = end;
    }
    msg.len()
}

/// The fields of a header section: each field with its continuation lines (lines that
/// start with a space or tab), as byte ranges. A continuation line before any field is
/// a field of its own.
pub fn fields(header: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    while start < header.len() {
        let end = header[start..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(header.len(), |i| start + i + 1);
        let cont = matches!(header[start], b' ' | b'\t');
        match out.last_mut() {
            Some(last) if cont => last.end = end,
            _ => out.push(start..end),
        }
        start = end;
    }
    out
}

/// The authserv-id of an Authentication-Results field (the whole field, name included),
/// or `None` when the field is something else. Comments before the id are skipped.
pub fn authserv_id(field: &[u8]) -> Option<&[u8]> {
    let colon = field.iter().position(|&c| c == b':')?;
    let name = field[..colon].trim_ascii_end();
    if !name.eq_ignore_ascii_case(b"Authentication-Results") {
        return None;
    }
    let mut v = &field[colon + 1..];
    loop {
        v = v.trim_ascii_start();
        if v.first() == Some(&b'(') {
            // A comment, nested at most 16 deep; an unterminated one ends the value.
            let mut depth = 0usize;
            let mut end = v.len();
            for (i, &c) in v.iter().enumerate() {
                match c {
                    b'(' => depth += 1,
                    b')' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
                if depth > 16 {
                    break;
                }
            }
            v = &v[end..];
            continue;
        }
        break;
    }
    let id_end = v
        .iter()
        .position(|&c| c == b';' || c == b'(' || c.is_ascii_whitespace())
        .unwrap_or(v.len());
    Some(&v[..id_end])
}

/// The header section without the Authentication-Results fields whose authserv-id is
/// `id` (compared without regard to case), and how many were removed.
pub fn strip_results(header: &[u8], id: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(header.len());
    let mut removed = 0;
    for r in fields(header) {
        let f = &header[r];
        if authserv_id(f).is_some_and(|a| a.eq_ignore_ascii_case(id)) {
            removed += 1;
        } else {
            out.extend_from_slice(f);
        }
    }
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_ends_at_the_empty_line() {
        assert_eq!(header_len(b"A: b\n\nbody\n"), 6);
        assert_eq!(header_len(b"A: b\r\n\r\nbody\r\n"), 8);
        assert_eq!(header_len(b"A: b\nC: d\n"), 10);
        assert_eq!(header_len(b"\nbody"), 1);
        assert_eq!(header_len(b""), 0);
    }

    #[test]
    fn ids() {
        assert_eq!(
            authserv_id(b"Authentication-Results: mx.example; spf=pass\n"),
            Some(&b"mx.example"[..])
        );
        assert_eq!(
            authserv_id(b"authentication-results : (c (nested)) mx.example 1; none\n"),
            Some(&b"mx.example"[..])
        );
        assert_eq!(
            authserv_id(b"Authentication-Results:\n\tmx.example;\n\tdkim=pass\n"),
            Some(&b"mx.example"[..])
        );
        assert_eq!(authserv_id(b"Subject: mx.example\n"), None);
        assert_eq!(authserv_id(b"no colon"), None);
        assert_eq!(
            authserv_id(b"Authentication-Results: (open"),
            Some(&b""[..])
        );
    }

    #[test]
    fn strips_only_ours() {
        let h = b"Received: x\nAuthentication-Results: MX.example; dkim=pass\n (forged)\n\
            Authentication-Results: other.example; spf=pass\nSubject: s\n\n";
        let (out, n) = strip_results(h, b"mx.example");
        assert_eq!(n, 1);
        assert_eq!(
            out,
            b"Received: x\nAuthentication-Results: other.example; spf=pass\nSubject: s\n\n"
        );
    }

    proptest! {
        #[test]
        fn fields_cover_the_header(h in proptest::collection::vec(any::<u8>(), 0..400)) {
            let f = fields(&h);
            let joined: Vec<u8> = f.iter().flat_map(|r| h[r.clone()].to_vec()).collect();
            prop_assert_eq!(joined, h.clone());
            let (out, n) = strip_results(&h, b"mx.example");
            prop_assert!(out.len() <= h.len());
            prop_assert!(n <= f.len());
            prop_assert!(header_len(&h) <= h.len());
        }

        #[test]
        fn stripping_is_idempotent(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("Authentication-Results: mx.example; none\n".to_string()),
                    Just(" folded\n".to_string()),
                    "[A-Za-z-]{1,10}: [ -~]{0,20}\n",
                ],
                0..12,
            )
        ) {
            let h: String = lines.concat();
            let (once, _) = strip_results(h.as_bytes(), b"mx.example");
            let (twice, n) = strip_results(&once, b"mx.example");
            prop_assert_eq!(n, 0);
            prop_assert_eq!(once, twice);
        }
    }
}
