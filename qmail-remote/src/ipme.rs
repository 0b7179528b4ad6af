//! This host's own addresses (netqmail's ipme): the addresses of every interface that is
//! up, IPv4 and IPv6, plus the unspecified addresses 0.0.0.0 and `::`, which always mean
//! "this host". qmail-remote never delivers to an MX that is one of these or any MX of
//! worse preference: that would loop mail back to itself.

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses, or the error that kept us from listing them.
pub fn addresses() -> io::Result<Vec<IpAddr>> {
    let mut v = vec![
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ];
    for ifa in getifaddrs().map_err(io::Error::from)? {
        if !ifa.flags.contains(InterfaceFlags::IFF_UP) {
            continue;
        }
        let Some(addr) = ifa.address else {
            continue;
        };
        if let Some(a) = addr.as_sockaddr_in() {
            v.push(IpAddr::V4(a.ip()));
        } else if let Some(a) = addr.as_sockaddr_in6() {
            v.push(IpAddr::V6(a.ip()));
        }
    }
    Ok(v)
}

/// True when `ip` is one of `me` (an IPv4-mapped IPv6 address counts as its IPv4 one).
pub fn is_me(me: &[IpAddr], ip: &IpAddr) -> bool {
    let canon = |a: &IpAddr| match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*a, IpAddr::V4),
        _ => *a,
    };
    let ip = canon(ip);
    me.iter().any(|m| canon(m) == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_unspecified_are_me() {
        let me = addresses().unwrap();
        assert!(is_me(&me, &"0.0.0.0".parse().unwrap()));
        assert!(is_me(&me, &"::".parse().unwrap()));
        assert!(is_me(&me, &"127.0.0.1".parse().unwrap()));
        assert!(is_me(&me, &"::ffff:127.0.0.1".parse().unwrap()));
        // Other loopback addresses are not assigned to an interface.
        assert!(!is_me(&me, &"127.0.0.2".parse().unwrap()));
        assert!(!is_me(&me, &"192.0.2.200".parse().unwrap()));
    }
}
