//! Envelope addresses from MAIL and RCPT arguments, with netqmail's rules.
//!
//! * The address starts after the first `<` and ends at the next unquoted `>`. Without a
//!   `<` (a client that ignores RFC 821), it starts after the first `:` (leading spaces
//!   skipped) and ends at the next unquoted space; without a `:` the address is empty.
//! * A source route (`@a,@b:user@host`) is dropped: an address starting with `@` loses
//!   everything up to and including its first `:`.
//! * Double quotes are removed and switch quoting on and off (a quoted `>` or space does
//!   not end the address); a backslash makes the next byte literal and is removed.
//! * A missing terminator is not an error: the address runs to the end of the line.
//! * `box@[d.d.d.d]`, where d.d.d.d is one of this host's addresses, becomes
//!   `box@LOCALIPHOST` when control/localiphost (or control/me) is set.
//! * `box@[IPv6:...]` naming one of this host's IPv6 addresses is rewritten the same way
//!   (rqmail; netqmail knows only IPv4).
//! * The result may hold at most [`MAX_ADDR`] bytes; a longer address is a syntax error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest accepted address: netqmail refuses an address whose length plus its
/// terminating NUL exceeds 900.
pub const MAX_ADDR: usize = 899;

/// The address text of a MAIL or RCPT argument (brackets, source route, quotes and
/// backslashes handled), without the length limit or the local-IP rewrite.
pub fn extract(arg: &[u8]) -> Vec<u8> {
    extract_rest(arg).0
}

/// [`extract`], and what follows the address's terminator (the ESMTP parameters of MAIL
/// and RCPT; empty when the address runs to the end of the line).
pub fn extract_rest(arg: &[u8]) -> (Vec<u8>, &[u8]) {
    let (mut rest, terminator) = match arg.iter().position(|&c| c == b'<') {
        Some(lt) => (&arg[lt + 1..], b'>'),
        None => {
            let after_colon = match arg.iter().position(|&c| c == b':') {
                Some(colon) => &arg[colon + 1..],
                None => &arg[arg.len()..],
            };
            let skip = after_colon.iter().take_while(|&&c| c == b' ').count();
            (&after_colon[skip..], b' ')
        }
    };
    if rest.first() == Some(&b'@') {
        rest = match rest.iter().position(|&c| c == b':') {
            Some(colon) => &rest[colon + 1..],
            None => &rest[rest.len()..],
        };
    }
    let mut addr = Vec::with_capacity(rest.len().min(MAX_ADDR + 1));
    let mut escaped = false;
    let mut quoted = false;
    for (i, &c) in rest.iter().enumerate() {
        if escaped {
            addr.push(c);
            escaped = false;
            continue;
        }
        if !quoted && c == terminator {
            return (addr, &rest[i + 1..]);
        }
        match c {
            b'\\' => escaped = true,
            b'"' => quoted = !quoted,
            _ => addr.push(c),
        }
    }
    (addr, &rest[rest.len()..])
}

/// The value of a `SIZE=` parameter (RFC 1870) among the words of `params`, compared
/// without regard to case. A value that is not a decimal number is ignored (as netqmail
/// ignores every parameter); one too large for 64 bits counts as the largest number.
pub fn size_param(params: &[u8]) -> Option<u64> {
    params
        .split(|&c| c == b' ')
        .filter(|w| w.len() > 5 && w[..5].eq_ignore_ascii_case(b"SIZE="))
        .map(|w| &w[5..])
        .find(|v| v.iter().all(u8::is_ascii_digit))
        .map(|v| {
            v.iter().fold(0u64, |n, &d| {
                n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
            })
        })
}

/// netqmail's ip_scan: four dot-separated decimal numbers, each taken modulo 256 (netqmail
/// stores each into a byte). Returns the address and the number of bytes used.
pub fn scan_ip(s: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    let mut pos = 0;
    for (i, octet) in octets.iter_mut().enumerate() {
        if i > 0 {
            if s.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
        let digits = s[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let mut v: u8 = 0;
        for &d in &s[pos..pos + digits] {
            v = v.wrapping_mul(10).wrapping_add(d - b'0');
        }
        *octet = v;
        pos += digits;
    }
    Some((Ipv4Addr::from(octets), pos))
}

/// netqmail's ip_scanbracket: `[d.d.d.d]`; returns the address and the bytes used.
pub fn scan_bracket(s: &[u8]) -> Option<(Ipv4Addr, usize)> {
    if s.first() != Some(&b'[') {
        return None;
    }
    let (ip, len) = scan_ip(&s[1..])?;
    if s.get(len + 1) != Some(&b']') {
        return None;
    }
    Some((ip, len + 2))
}

/// An IPv6 address literal `[IPv6:...]` (RFC 5321; the tag in any case).
pub fn scan_bracket6(s: &[u8]) -> Option<Ipv6Addr> {
    let inner = s.strip_prefix(b"[")?.strip_suffix(b"]")?;
    if inner.len() < 5 || !inner[..5].eq_ignore_ascii_case(b"IPv6:") {
        return None;
    }
    std::str::from_utf8(&inner[5..]).ok()?.parse().ok()
}

/// Replaces a domain part that is exactly `[d.d.d.d]` or `[IPv6:...]`, naming one of
/// this host's addresses, with `liphost`.
pub fn rewrite_local_literal(addr: &mut Vec<u8>, liphost: &[u8], is_me: impl Fn(IpAddr) -> bool) {
    let Some(at) = addr.iter().rposition(|&c| c == b'@') else {
        return;
    };
    let domain = &addr[at + 1..];
    let ip = match scan_bracket(domain) {
        Some((ip, len)) if len == domain.len() => Some(IpAddr::V4(ip)),
        _ => scan_bracket6(domain).map(IpAddr::V6),
    };
    if ip.is_some_and(is_me) {
        addr.truncate(at + 1);
        addr.extend_from_slice(liphost);
    }
}

/// The whole of netqmail's addrparse: `None` for a syntax error (an address too long).
/// IPv4 literals only, as netqmail; the tests compare.
#[cfg(test)]
fn parse(arg: &[u8], liphost: Option<&[u8]>, is_me: impl Fn(Ipv4Addr) -> bool) -> Option<Vec<u8>> {
    parse_any(arg, liphost, |ip| match ip {
        IpAddr::V4(v4) => is_me(v4),
        IpAddr::V6(_) => false,
    })
}

/// [`parse`] with IPv6 literals too: `box@[IPv6:...]` naming one of this host's
/// addresses becomes `box@LOCALIPHOST` as well.
pub fn parse_any(
    arg: &[u8],
    liphost: Option<&[u8]>,
    is_me: impl Fn(IpAddr) -> bool,
) -> Option<Vec<u8>> {
    let mut addr = extract(arg);
    if let Some(l) = liphost {
        rewrite_local_literal(&mut addr, l, is_me);
    }
    (addr.len() <= MAX_ADDR).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn x(arg: &str) -> String {
        String::from_utf8(extract(arg.as_bytes())).unwrap()
    }

    #[test]
    fn angle_brackets() {
        assert_eq!(x("FROM:<a@b.example>"), "a@b.example");
        assert_eq!(
            x("FROM:<a@b.example> SIZE=100 BODY=8BITMIME"),
            "a@b.example"
        );
        assert_eq!(x("FROM:<>"), "");
        assert_eq!(x("TO:junk<a@b>"), "a@b");
        assert_eq!(x("TO:<a@b"), "a@b");
        assert_eq!(x("TO:<a b@c>"), "a b@c");
    }

    #[test]
    fn rfc821_fallback() {
        assert_eq!(x("FROM:a@b.example"), "a@b.example");
        assert_eq!(x("FROM:   a@b.example SIZE=1"), "a@b.example");
        assert_eq!(x("FROM a@b.example"), "");
        assert_eq!(x(""), "");
        assert_eq!(x("TO:"), "");
        assert_eq!(x("TO:\"a b\"@c d"), "a b@c");
    }

    #[test]
    fn source_routes() {
        assert_eq!(x("TO:<@r1,@r2:u@h>"), "u@h");
        assert_eq!(x("TO:<@r1>"), "");
        assert_eq!(x("TO:@r1:u@h"), "u@h");
        assert_eq!(x("TO:<u@r1:x>"), "u@r1:x");
    }

    #[test]
    fn quotes_and_backslashes() {
        assert_eq!(x("TO:<\"a>b\"@c>"), "a>b@c");
        assert_eq!(x("TO:<a\\>b@c>"), "a>b@c");
        assert_eq!(x("TO:<a\\\\b@c>"), "a\\b@c");
        assert_eq!(x("TO:<a\\\"b@c>"), "a\"b@c");
        assert_eq!(x("TO:<ab\\"), "ab");
        assert_eq!(x("TO:<\"unterminated>"), "unterminated>");
    }

    #[test]
    fn bracket_scanning() {
        assert_eq!(
            scan_bracket(b"[127.0.0.1]"),
            Some((Ipv4Addr::new(127, 0, 0, 1), 11))
        );
        assert_eq!(
            scan_bracket(b"[127.0.0.257]x"),
            Some((Ipv4Addr::new(127, 0, 0, 1), 13))
        );
        assert_eq!(
            scan_bracket(b"[0127.00.0.01]"),
            Some((Ipv4Addr::new(127, 0, 0, 1), 14))
        );
        assert_eq!(scan_bracket(b"[1.2.3]"), None);
        assert_eq!(scan_bracket(b"[1.2.3.4"), None);
        assert_eq!(scan_bracket(b"1.2.3.4]"), None);
        assert_eq!(scan_bracket(b"[1..3.4]"), None);
        assert_eq!(scan_bracket(b"[]"), None);
        assert_eq!(scan_bracket(b""), None);
    }

    #[test]
    fn local_ip_rewrite() {
        let me = |ip: Ipv4Addr| ip == Ipv4Addr::new(127, 0, 0, 1) || ip.is_unspecified();
        let p = |a: &str| {
            parse(a.as_bytes(), Some(b"mx.example"), me).map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(p("TO:<u@[127.0.0.1]>").unwrap(), "u@mx.example");
        assert_eq!(p("TO:<u@[0.0.0.0]>").unwrap(), "u@mx.example");
        assert_eq!(p("TO:<u@[127.0.0.2]>").unwrap(), "u@[127.0.0.2]");
        assert_eq!(p("TO:<u@[127.0.0.1]x>").unwrap(), "u@[127.0.0.1]x");
        assert_eq!(p("TO:<u@x@[127.0.0.1]>").unwrap(), "u@x@mx.example");
        assert_eq!(p("TO:<[127.0.0.1]>").unwrap(), "[127.0.0.1]");
        let no = parse(b"TO:<u@[127.0.0.1]>", None, me).unwrap();
        assert_eq!(no, b"u@[127.0.0.1]");
    }

    #[test]
    fn length_limit_is_899() {
        let ok = format!("TO:<{}>", "a".repeat(899));
        assert_eq!(parse(ok.as_bytes(), None, |_| false).unwrap().len(), 899);
        let long = format!("TO:<{}>", "a".repeat(900));
        assert_eq!(parse(long.as_bytes(), None, |_| false), None);
        // the limit applies after the local-IP rewrite
        let local = format!("TO:<{}@[127.0.0.1]>", "a".repeat(880));
        let me = |_| true;
        assert!(parse(local.as_bytes(), Some(b"h"), me).is_some());
        assert!(parse(local.as_bytes(), Some("h".repeat(30).as_bytes()), me).is_none());
    }

    #[test]
    fn parameters_after_the_address() {
        assert_eq!(
            extract_rest(b"FROM:<a@b> SIZE=100 BODY=8BITMIME").1,
            b" SIZE=100 BODY=8BITMIME"
        );
        assert_eq!(extract_rest(b"FROM:<\"x>y\"@b> SIZE=1").1, b" SIZE=1");
        assert_eq!(extract_rest(b"FROM:a@b SIZE=7").1, b"SIZE=7");
        assert_eq!(extract_rest(b"FROM:<a@b").1, b"");
        assert_eq!(size_param(b" SIZE=100 BODY=8BITMIME"), Some(100));
        assert_eq!(size_param(b" size=0"), Some(0));
        assert_eq!(size_param(b" BODY=7BIT"), None);
        assert_eq!(size_param(b" SIZE=12x SIZE=5"), Some(5));
        assert_eq!(size_param(b" SIZE="), None);
        assert_eq!(size_param(b" SIZE=99999999999999999999999"), Some(u64::MAX));
        assert_eq!(size_param(b"XSIZE=5"), None);
    }

    #[test]
    fn ipv6_literals() {
        let me6: Ipv6Addr = "::1".parse().unwrap();
        let me = |ip: IpAddr| ip == IpAddr::V6(me6) || ip == IpAddr::V4(Ipv4Addr::LOCALHOST);
        let p = |a: &str| {
            parse_any(a.as_bytes(), Some(b"mx.example"), me).map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(p("TO:<u@[IPv6:::1]>").unwrap(), "u@mx.example");
        assert_eq!(p("TO:<u@[ipv6:0:0:0:0:0:0:0:1]>").unwrap(), "u@mx.example");
        assert_eq!(
            p("TO:<u@[IPv6:2001:db8::1]>").unwrap(),
            "u@[IPv6:2001:db8::1]"
        );
        assert_eq!(p("TO:<u@[IPv6:::1]x>").unwrap(), "u@[IPv6:::1]x");
        assert_eq!(p("TO:<u@[::1]>").unwrap(), "u@[::1]");
        assert_eq!(p("TO:<u@[127.0.0.1]>").unwrap(), "u@mx.example");
        assert_eq!(scan_bracket6(b"[IPv6:zz]"), None);
        // the IPv4-only entry point leaves IPv6 literals alone
        assert_eq!(
            parse(b"TO:<u@[IPv6:::1]>", Some(b"mx"), |_| true).unwrap(),
            b"u@[IPv6:::1]"
        );
    }

    proptest! {
        #[test]
        fn size_param_never_panics(p in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = size_param(&p);
            let (a, rest) = extract_rest(&p);
            prop_assert!(a.len() + rest.len() <= p.len());
        }

        #[test]
        fn ipv6_literals_round_trip(seg in proptest::collection::vec(any::<u16>(), 8), upper in any::<bool>()) {
            let ip = Ipv6Addr::new(seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7]);
            let tag = if upper { "IPV6" } else { "IPv6" };
            let lit = format!("[{tag}:{ip}]");
            prop_assert_eq!(scan_bracket6(lit.as_bytes()), Some(ip));
            let arg = format!("TO:<u@{lit}>");
            let got = parse_any(arg.as_bytes(), Some(b"me.example"), |x| x == IpAddr::V6(ip));
            prop_assert_eq!(got.as_deref(), Some(&b"u@me.example"[..]));
        }

        #[test]
        fn literal_scanning_never_panics(s in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = scan_bracket6(&s);
            let mut a = b"u@".to_vec();
            a.extend_from_slice(&s);
            rewrite_local_literal(&mut a, b"h", |_| true);
            prop_assert!(a.starts_with(b"u@"));
        }

        #[test]
        fn size_values_round_trip(n in any::<u64>(), before in "( [A-Z]+=[A-Za-z0-9]+){0,3}") {
            let arg = format!("FROM:<a@b>{before} SIZE={n}");
            prop_assert_eq!(size_param(extract_rest(arg.as_bytes()).1), Some(n));
        }

        #[test]
        fn extract_never_panics_and_never_grows(arg in proptest::collection::vec(any::<u8>(), 0..600)) {
            let a = extract(&arg);
            prop_assert!(a.len() <= arg.len());
            let _ = parse(&arg, Some(b"local.example"), |_| true);
        }

        #[test]
        fn plain_addresses_round_trip(local in "[a-zA-Z0-9.+=_-]{1,40}", dom in "[a-z0-9.-]{1,40}", params in "( [A-Z]+=[A-Za-z0-9]+){0,3}") {
            let addr = format!("{local}@{dom}");
            for form in [format!("FROM:<{addr}>{params}"), format!("FROM: <{addr}>"), format!("FROM:{addr}{params}")] {
                let got = parse(form.as_bytes(), None, |_| false);
                prop_assert_eq!(got.as_deref(), Some(addr.as_bytes()));
            }
        }

        #[test]
        fn parsed_addresses_are_bounded(arg in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Some(a) = parse(&arg, Some(b"mx.example"), |_| true) {
                prop_assert!(a.len() <= MAX_ADDR);
            }
        }

        #[test]
        fn scan_ip_matches_display(a in any::<u8>(), b in any::<u8>(), c in any::<u8>(), d in any::<u8>()) {
            let s = format!("[{a}.{b}.{c}.{d}]");
            prop_assert_eq!(scan_bracket(s.as_bytes()), Some((Ipv4Addr::new(a, b, c, d), s.len())));
        }
    }
}
