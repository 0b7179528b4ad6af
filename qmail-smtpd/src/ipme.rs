//! This host's addresses (netqmail's ipme, and the IPv6 ones rqmail adds): 0.0.0.0, which always means "this
//! host", plus the address of every interface that is up.
//!
//! netqmail asks the kernel with SIOCGIFCONF; rqmail uses getifaddrs(3), which also lists
//! secondary addresses that carry no interface label.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

/// This host's IPv4 addresses (0.0.0.0 first) and IPv6 addresses (`::` first, taken
/// like 0.0.0.0 to mean this host), from one listing of the interfaces that are up. An
/// error means the interfaces could not be listed.
pub fn addresses() -> io::Result<(Vec<Ipv4Addr>, Vec<Ipv6Addr>)> {
    let mut v4 = vec![Ipv4Addr::UNSPECIFIED];
    let mut v6 = vec![Ipv6Addr::UNSPECIFIED];
    let ifs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    for ifa in ifs {
        if !ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
            continue;
        }
        let Some(a) = ifa.address.as_ref() else {
            continue;
        };
        if let Some(sin) = a.as_sockaddr_in() {
            let ip = sin.ip();
            if !v4.contains(&ip) {
                v4.push(ip);
            }
        } else if let Some(sin6) = a.as_sockaddr_in6() {
            let ip = sin6.ip();
            if !v6.contains(&ip) {
                v6.push(ip);
            }
        }
    }
    Ok((v4, v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_unspecified_are_mine() {
        let (v, v6) = addresses().unwrap();
        assert_eq!(v[0], Ipv4Addr::UNSPECIFIED);
        assert!(v.contains(&Ipv4Addr::LOCALHOST), "{v:?}");
        assert_eq!(v6[0], Ipv6Addr::UNSPECIFIED);
    }
}
