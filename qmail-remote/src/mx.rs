//! From a host name to the addresses to try, in order (netqmail's dns_mxip, dns_ip and
//! dns_cname, with IPv6).
//!
//! * An address literal (`1.2.3.4`, `[1.2.3.4]`, `[2001:db8::1]`, `[IPv6:2001:db8::1]`) is
//!   its own single address, preference 0.
//! * Otherwise the MX records, best preference first, in random order among equals; each
//!   exchange's AAAA then A addresses carry its preference. An exchange that cannot be
//!   found is skipped; one that fails temporarily is skipped too but remembered, so that
//!   finding no address at all is a temporary failure. The root name as exchange (a
//!   "null MX", RFC 7505) has no address.
//! * No MX records (or a name without any data): the host's own AAAA and A addresses,
//!   preference 0 (the implicit MX).

use crate::dns::{DnsError, Lookup};
use std::net::IpAddr;

/// One address to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub ip: IpAddr,
    pub pref: u32,
    /// The host name the address belongs to (the MX exchange or the relay), for TLS.
    pub fqdn: Option<String>,
}

/// The address in an address literal, if `host` is one.
pub fn literal(host: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(host).ok()?;
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let inner = inner
            .strip_prefix("IPv6:")
            .or_else(|| inner.strip_prefix("ipv6:"))
            .unwrap_or(inner);
        return inner.parse().ok();
    }
    s.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn text(host: &[u8]) -> Result<&str, DnsError> {
    std::str::from_utf8(host).map_err(|_| DnsError::Hard)
}

/// The AAAA and A addresses of `name`, with preference `pref`.
fn addresses(l: &mut dyn Lookup, name: &str, pref: u32) -> Result<Vec<Target>, DnsError> {
    if let Some(ip) = literal(name.as_bytes()) {
        return Ok(vec![Target {
            ip,
            pref,
            fqdn: None,
        }]);
    }
    let six = l.addrs(name, true);
    let four = l.addrs(name, false);
    let mut found = Vec::new();
    for v in [&six, &four].into_iter().flatten() {
        found.extend(v.iter().map(|&ip| Target {
            ip,
            pref,
            fqdn: Some(name.to_string()),
        }));
    }
    if !found.is_empty() {
        return Ok(found);
    }
    match (six, four) {
        (Err(DnsError::Soft), _) | (_, Err(DnsError::Soft)) => Err(DnsError::Soft),
        (Err(DnsError::Hard), Err(DnsError::Hard)) => Err(DnsError::Hard),
        _ => Ok(found),
    }
}

/// netqmail's dns_ip: the addresses of a relay named in smtproutes (or a literal).
pub fn ip(l: &mut dyn Lookup, host: &[u8]) -> Result<Vec<Target>, DnsError> {
    if let Some(ip) = literal(host) {
        return Ok(vec![Target {
            ip,
            pref: 0,
            fqdn: None,
        }]);
    }
    addresses(l, text(host)?, 0)
}

/// A small generator for the order among MX records of equal preference.
#[derive(Debug, Clone)]
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed | 1)
    }

    /// A seed from the time and the process id, as netqmail's.
    pub fn from_time_and_pid() -> Random {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Random::new(t ^ (u64::from(std::process::id()) << 16))
    }

    fn below(&mut self, n: usize) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (r >> 33) as usize % n.max(1)
    }
}

/// The outcome of [`mxip`]: the addresses, and whether some MX failed temporarily.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub targets: Vec<Target>,
    pub soft: bool,
}

/// netqmail's dns_mxip with IPv6: the addresses for `host`.
pub fn mxip(l: &mut dyn Lookup, host: &[u8], rnd: &mut Random) -> Result<Found, DnsError> {
    if let Some(ip) = literal(host) {
        return Ok(Found {
            targets: vec![Target {
                ip,
                pref: 0,
                fqdn: None,
            }],
            soft: false,
        });
    }
    let name = text(host)?;
    let mut mxs = match l.mx(name) {
        Err(DnsError::Soft) => return Err(DnsError::Soft),
        Err(DnsError::Hard) => Vec::new(),
        Ok(v) => v,
    };
    if mxs.is_empty() {
        return addresses(l, name, 0).map(|targets| Found {
            targets,
            soft: false,
        });
    }
    // Best preference first; shuffle each group of equal preference.
    mxs.sort_by_key(|m| m.0);
    let mut start = 0;
    while start < mxs.len() {
        let end = start
            + mxs[start..]
                .iter()
                .take_while(|m| m.0 == mxs[start].0)
                .count();
        for i in (start + 1..end).rev() {
            let j = start + rnd.below(i - start + 1);
            mxs.swap(i, j);
        }
        start = end;
    }
    let mut found = Found {
        targets: Vec::new(),
        soft: false,
    };
    for (pref, exchange) in mxs {
        if exchange.is_empty() {
            continue;
        }
        match addresses(l, &exchange, u32::from(pref)) {
            Ok(v) => found.targets.extend(v),
            Err(DnsError::Soft) => found.soft = true,
            Err(DnsError::Hard) => {}
        }
    }
    Ok(found)
}

/// A CNAME lookup that failed temporarily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CnameSoft;

/// netqmail's dns_cname for a recipient's domain: the canonical name (following up to
/// ten CNAME records), and whether the domain was an alias at all. `Err` only for a
/// temporary failure.
pub fn canonical(l: &mut dyn Lookup, domain: &[u8]) -> Result<(Vec<u8>, bool), CnameSoft> {
    let mut name = domain.to_vec();
    for hops in 0..10 {
        if name.is_empty() || name.last() == Some(&b']') {
            return Ok((name, hops > 0));
        }
        if name.last() == Some(&b'.') {
            name.pop();
            continue;
        }
        let Ok(s) = std::str::from_utf8(&name) else {
            return Ok((name, hops > 0));
        };
        match l.cname(s) {
            Err(DnsError::Soft) => return Err(CnameSoft),
            Err(DnsError::Hard) | Ok(None) => return Ok((name, hops > 0)),
            Ok(Some(target)) => name = target.into_bytes(),
        }
    }
    // An alias loop: not qmail-remote's problem; use the last name, as netqmail does.
    Ok((name, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A zone in memory: (name, type) to answer. Type "MX", "A", "AAAA", "CNAME".
    #[derive(Default)]
    struct Fake {
        mx: HashMap<String, Result<Vec<(u16, String)>, DnsError>>,
        a: HashMap<String, Result<Vec<IpAddr>, DnsError>>,
        aaaa: HashMap<String, Result<Vec<IpAddr>, DnsError>>,
        cname: HashMap<String, Result<Option<String>, DnsError>>,
        asked: Vec<String>,
    }

    impl Lookup for Fake {
        fn mx(&mut self, name: &str) -> Result<Vec<(u16, String)>, DnsError> {
            self.asked.push(format!("MX {name}"));
            self.mx.get(name).cloned().unwrap_or(Err(DnsError::Hard))
        }
        fn addrs(&mut self, name: &str, v6: bool) -> Result<Vec<IpAddr>, DnsError> {
            self.asked
                .push(format!("{} {name}", if v6 { "AAAA" } else { "A" }));
            let m = if v6 { &self.aaaa } else { &self.a };
            m.get(name).cloned().unwrap_or(Err(DnsError::Hard))
        }
        fn cname(&mut self, name: &str) -> Result<Option<String>, DnsError> {
            self.cname.get(name).cloned().unwrap_or(Err(DnsError::Hard))
        }
    }

    fn ips(f: &Found) -> Vec<String> {
        f.targets
            .iter()
            .map(|t| format!("{}/{}", t.ip, t.pref))
            .collect()
    }

    #[test]
    fn literals() {
        assert_eq!(literal(b"[192.0.2.1]"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(literal(b"192.0.2.1"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(literal(b"[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(
            literal(b"[IPv6:2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(literal(b"::1"), None);
        assert_eq!(literal(b"[example.com]"), None);
        assert_eq!(literal(b"1.2.3"), None);
        let mut f = Fake::default();
        let r = mxip(&mut f, b"[192.0.2.1]", &mut Random::new(1)).unwrap();
        assert_eq!(ips(&r), ["192.0.2.1/0"]);
        assert!(f.asked.is_empty());
    }

    #[test]
    fn mx_order_and_failures() {
        let mut f = Fake::default();
        f.mx.insert(
            "example.com".into(),
            Ok(vec![
                (20, "b.example.com".into()),
                (10, "a.example.com".into()),
                (30, "gone.example.com".into()),
                (40, "soft.example.com".into()),
                (50, "".into()),
            ]),
        );
        f.a.insert(
            "a.example.com".into(),
            Ok(vec!["192.0.2.1".parse().unwrap()]),
        );
        f.aaaa.insert(
            "a.example.com".into(),
            Ok(vec!["2001:db8::1".parse().unwrap()]),
        );
        f.a.insert(
            "b.example.com".into(),
            Ok(vec!["192.0.2.2".parse().unwrap()]),
        );
        f.a.insert("soft.example.com".into(), Err(DnsError::Soft));
        let r = mxip(&mut f, b"example.com", &mut Random::new(7)).unwrap();
        assert_eq!(ips(&r), ["2001:db8::1/10", "192.0.2.1/10", "192.0.2.2/20"]);
        assert!(r.soft);
        assert_eq!(r.targets[0].fqdn.as_deref(), Some("a.example.com"));
    }

    #[test]
    fn equal_preferences_are_shuffled() {
        let mut f = Fake::default();
        let names: Vec<String> = (0..5).map(|i| format!("m{i}.example")).collect();
        f.mx.insert(
            "example.com".into(),
            Ok(names.iter().map(|n| (10, n.clone())).collect()),
        );
        for (i, n) in names.iter().enumerate() {
            f.a.insert(n.clone(), Ok(vec![IpAddr::from([192, 0, 2, i as u8])]));
        }
        let mut firsts = std::collections::HashSet::new();
        let mut rnd = Random::new(12345);
        for _ in 0..200 {
            let r = mxip(&mut f, b"example.com", &mut rnd).unwrap();
            assert_eq!(r.targets.len(), 5);
            firsts.insert(r.targets[0].ip);
        }
        assert_eq!(firsts.len(), 5);
    }

    #[test]
    fn implicit_mx_and_errors() {
        let mut f = Fake::default();
        f.a.insert(
            "plain.example".into(),
            Ok(vec!["192.0.2.5".parse().unwrap()]),
        );
        f.aaaa.insert(
            "six.example".into(),
            Ok(vec!["2001:db8::5".parse().unwrap()]),
        );
        f.mx.insert("soft.example".into(), Err(DnsError::Soft));
        f.mx.insert("cnameonly.example".into(), Ok(vec![]));
        f.a.insert("cnameonly.example".into(), Ok(vec![]));
        f.a.insert("asoft.example".into(), Err(DnsError::Soft));
        let mut rnd = Random::new(1);
        assert_eq!(
            ips(&mxip(&mut f, b"plain.example", &mut rnd).unwrap()),
            ["192.0.2.5/0"]
        );
        assert_eq!(
            ips(&mxip(&mut f, b"six.example", &mut rnd).unwrap()),
            ["2001:db8::5/0"]
        );
        assert_eq!(mxip(&mut f, b"soft.example", &mut rnd), Err(DnsError::Soft));
        assert_eq!(mxip(&mut f, b"nx.example", &mut rnd), Err(DnsError::Hard));
        assert_eq!(
            mxip(&mut f, b"asoft.example", &mut rnd),
            Err(DnsError::Soft)
        );
        assert_eq!(
            mxip(&mut f, b"cnameonly.example", &mut rnd)
                .unwrap()
                .targets,
            vec![]
        );
        assert_eq!(mxip(&mut f, b"\xff.example", &mut rnd), Err(DnsError::Hard));
        assert_eq!(
            ip(&mut f, b"192.0.2.9").unwrap()[0].ip,
            "192.0.2.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(ip(&mut f, b"nx.example"), Err(DnsError::Hard));
    }

    #[test]
    fn cnames() {
        let mut f = Fake::default();
        f.cname
            .insert("alias.example".into(), Ok(Some("mid.example".into())));
        f.cname
            .insert("mid.example".into(), Ok(Some("real.example".into())));
        f.cname
            .insert("loop1.example".into(), Ok(Some("loop2.example".into())));
        f.cname
            .insert("loop2.example".into(), Ok(Some("loop1.example".into())));
        f.cname.insert("soft.example".into(), Err(DnsError::Soft));
        assert_eq!(
            canonical(&mut f, b"alias.example"),
            Ok((b"real.example".to_vec(), true))
        );
        assert_eq!(
            canonical(&mut f, b"alias.example."),
            Ok((b"real.example".to_vec(), true))
        );
        assert_eq!(
            canonical(&mut f, b"real.example"),
            Ok((b"real.example".to_vec(), false))
        );
        assert_eq!(
            canonical(&mut f, b"[192.0.2.1]"),
            Ok((b"[192.0.2.1]".to_vec(), false))
        );
        assert_eq!(canonical(&mut f, b"soft.example"), Err(CnameSoft));
        assert!(canonical(&mut f, b"loop1.example").unwrap().1);
    }
}
