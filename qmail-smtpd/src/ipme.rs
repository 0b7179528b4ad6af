//! This host's addresses (netqmail's ipme, and the IPv6 ones rqmail adds): 0.0.0.0, which always means "this
//! host", plus the address of every interface that is up.
//!
//! netqmail asks the kernel with SIOCGIFCONF; rqmail uses getifaddrs(3), which also lists
//! secondary addresses that carry no interface label.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The addresses, 0.0.0.0 first. An error means the interfaces could not be listed.
pub fn addresses() -> io::Result<Vec<Ipv4Addr>> {
    let mut v = vec![Ipv4Addr::UNSPECIFIED];
    let ifs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    for ifa in ifs {
        if !ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
            continue;
        }
        if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            let ip = sin.ip();
            if !v.contains(&ip) {
                v.push(ip);
            }
        }
    }
    Ok(v)
}

/// This host's IPv6 addresses: `::` (taken, like 0.0.0.0, to mean this host) plus the
/// address of every interface that is up.
pub fn addresses6() -> io::Result<Vec<Ipv6Addr>> {
    let mut v = vec![Ipv6Addr::UNSPECIFIED];
    let ifs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    for ifa in ifs {
        if !ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
            continue;
        }
        if let Some(sin6) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in6()) {
            let ip = sin6.ip();
            if !v.contains(&ip) {
                v.push(ip);
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_unspecified_are_mine() {
        let v = addresses().unwrap();
        assert_eq!(v[0], Ipv4Addr::UNSPECIFIED);
        assert!(v.contains(&Ipv4Addr::LOCALHOST), "{v:?}");
        let v6 = addresses6().unwrap();
        assert_eq!(v6[0], Ipv6Addr::UNSPECIFIED);
    }
}
