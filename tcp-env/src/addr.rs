//! How addresses are written into TCPLOCALIP and TCPREMOTEIP.
//!
//! netqmail knew only IPv4 and wrote dotted decimal. rqmail keeps exactly that for IPv4,
//! including IPv4 clients that reach a dual-stack (`::`) listener and so appear as
//! IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1` is written `192.0.2.1`): the same client
//! gets the same TCPREMOTEIP whichever socket accepted it, so tcprules files, logs and
//! qmail-smtpd's Received lines do not change when a listener becomes dual-stack. Other
//! IPv6 addresses are written in the RFC 5952 text form (lowercase hexadecimal, the longest
//! run of zero groups shortened to `::`), without brackets and without a `%zone` suffix.

use std::net::{IpAddr, SocketAddr};

/// The address with IPv4-mapped IPv6 addresses turned back into IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The socket address with its IP made [`canonical`].
pub fn canonical_sock(sa: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(sa.ip()), sa.port())
}

/// The text tcp-env exports for an address.
pub fn format_ip(ip: IpAddr) -> String {
    // std writes IPv4 in dotted decimal and IPv6 as RFC 5952 recommends.
    canonical(ip).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn f(s: &str) -> String {
        format_ip(s.parse().unwrap())
    }

    #[test]
    fn examples() {
        assert_eq!(f("127.0.0.1"), "127.0.0.1");
        assert_eq!(f("0.0.0.0"), "0.0.0.0");
        assert_eq!(f("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(f("::1"), "::1");
        assert_eq!(f("::"), "::");
        assert_eq!(f("2001:DB8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(f("2001:db8:0:0:0:0:2:1"), "2001:db8::2:1");
        assert_eq!(f("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
        assert_eq!(f("fe80::a:b"), "fe80::a:b");
        // IPv4-compatible (deprecated) addresses are not mapped ones: left as IPv6.
        assert_eq!(f("::192.0.2.7"), "::c000:207");
    }

    proptest! {
        #[test]
        fn ipv4_is_dotted_decimal(o in any::<[u8; 4]>()) {
            let v4 = Ipv4Addr::from(o);
            let want = format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]);
            prop_assert_eq!(format_ip(IpAddr::V4(v4)), want.clone());
            prop_assert_eq!(format_ip(IpAddr::V6(v4.to_ipv6_mapped())), want);
        }

        #[test]
        fn ipv6_round_trips(seg in any::<[u16; 8]>()) {
            let v6 = Ipv6Addr::from(seg);
            let s = format_ip(IpAddr::V6(v6));
            prop_assert!(s.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase() || c == b':' || c == b'.'));
            let back: IpAddr = s.parse().unwrap();
            prop_assert_eq!(back, canonical(IpAddr::V6(v6)));
        }
    }
}
