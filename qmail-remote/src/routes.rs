//! control/smtproutes: artificial SMTP routes, `domain:relay` or `domain:relay:port`.
//!
//! Lookup is netqmail's: the host itself, then every suffix of it that starts with a dot
//! (`.b.example`, `.example`), then the empty key, case-insensitively; of several lines
//! with the same key the last one counts; lines without a colon are ignored. An empty
//! relay means "look up the MX records as usual". The relay is a host name, a dotted IPv4
//! address, or an address in brackets (`[192.0.2.1]`, `[2001:db8::1]`, `[IPv6:2001:db8::1]`);
//! the port, when given, is 1 to 65535. rqmail also reads `domain::port`: MX records as
//! usual, but this port instead of 25 (netqmail has no meaning for it).

use std::collections::HashMap;

/// The SMTP port.
pub const PORT_SMTP: u16 = 25;

/// Where mail for a host goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Look up the host's MX records (or addresses) and use `port`.
    Mx { port: u16 },
    /// Send to this relay (a name or an address literal) instead.
    Relay { host: Vec<u8>, port: u16 },
}

/// A route whose port is not a number from 1 to 65535.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRoute;

/// The parsed smtproutes.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    map: HashMap<Vec<u8>, Vec<u8>>,
}

impl Routes {
    /// From the lines of control/smtproutes (comments and empty lines already removed).
    pub fn new<I, T>(lines: I) -> Routes
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let mut map = HashMap::new();
        for line in lines {
            let line = line.as_ref();
            let Some(colon) = line.iter().position(|&c| c == b':') else {
                continue;
            };
            // A later line with the same key wins, as in netqmail's constmap.
            map.insert(
                line[..colon].to_ascii_lowercase(),
                line[colon + 1..].to_vec(),
            );
        }
        Routes { map }
    }

    /// The raw value of the entry that matches `host`, if any.
    pub fn lookup(&self, host: &[u8]) -> Option<&[u8]> {
        let lower = host.to_ascii_lowercase();
        for i in 0..=lower.len() {
            if (i == 0 || i == lower.len() || lower[i] == b'.')
                && let Some(v) = self.map.get(&lower[i..])
            {
                return Some(v);
            }
        }
        None
    }

    /// The route for `host`.
    pub fn route(&self, host: &[u8]) -> Result<Route, BadRoute> {
        match self.lookup(host) {
            None => Ok(Route::Mx { port: PORT_SMTP }),
            Some(v) => parse_relay(v),
        }
    }
}

/// Splits a route's value into relay and port.
pub fn parse_relay(v: &[u8]) -> Result<Route, BadRoute> {
    parse_relay_port(v, PORT_SMTP)
}

/// Splits a route's value into relay and port, `default` when it gives none (209 for
/// control/qmtproutes).
pub fn parse_relay_port(v: &[u8], default: u16) -> Result<Route, BadRoute> {
    let (host, rest) = if v.first() == Some(&b'[') {
        match v.iter().position(|&c| c == b']') {
            Some(end) => (&v[..=end], &v[end + 1..]),
            None => (v, &[][..]),
        }
    } else {
        match v.iter().position(|&c| c == b':') {
            Some(c) => (&v[..c], &v[c..]),
            None => (v, &[][..]),
        }
    };
    let port = match rest {
        [] => default,
        [b':', digits @ ..] => parse_port(digits)?,
        _ => return Err(BadRoute),
    };
    if host.is_empty() {
        Ok(Route::Mx { port })
    } else {
        Ok(Route::Relay {
            host: host.to_vec(),
            port,
        })
    }
}

fn parse_port(d: &[u8]) -> Result<u16, BadRoute> {
    if d.is_empty() || d.len() > 5 || !d.iter().all(u8::is_ascii_digit) {
        return Err(BadRoute);
    }
    let n = d.iter().fold(0u32, |a, &c| a * 10 + u32::from(c - b'0'));
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(BadRoute),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn relay(h: &str, port: u16) -> Result<Route, BadRoute> {
        Ok(Route::Relay {
            host: h.as_bytes().to_vec(),
            port,
        })
    }

    #[test]
    fn netqmail_examples() {
        let r = Routes::new([
            "inside.af.mil:firewall.af.mil:26",
            ".af.mil:",
            ":heaven.af.mil",
        ]);
        assert_eq!(r.route(b"inside.af.mil"), relay("firewall.af.mil", 26));
        assert_eq!(r.route(b"INSIDE.AF.MIL"), relay("firewall.af.mil", 26));
        assert_eq!(r.route(b"x.af.mil"), Ok(Route::Mx { port: 25 }));
        assert_eq!(r.route(b"a.b.af.mil"), Ok(Route::Mx { port: 25 }));
        // af.mil itself is not matched by .af.mil: it falls to the default route.
        assert_eq!(r.route(b"af.mil"), relay("heaven.af.mil", 25));
        assert_eq!(r.route(b"example.com"), relay("heaven.af.mil", 25));
    }

    #[test]
    fn no_routes_and_odd_lines() {
        let r = Routes::new(Vec::<Vec<u8>>::new());
        assert_eq!(r.route(b"example.com"), Ok(Route::Mx { port: 25 }));
        let r = Routes::new(["no colon here", "a.example:first", "A.EXAMPLE:second"]);
        assert_eq!(r.route(b"a.example"), relay("second", 25));
        assert_eq!(r.route(b"b.example"), Ok(Route::Mx { port: 25 }));
    }

    #[test]
    fn literals_ports_and_errors() {
        assert_eq!(parse_relay(b"[::1]:2525"), relay("[::1]", 2525));
        assert_eq!(
            parse_relay(b"[IPv6:2001:db8::1]"),
            relay("[IPv6:2001:db8::1]", 25)
        );
        assert_eq!(parse_relay(b"192.0.2.1:587"), relay("192.0.2.1", 587));
        assert_eq!(parse_relay(b":2525"), Ok(Route::Mx { port: 2525 }));
        assert_eq!(parse_relay(b""), Ok(Route::Mx { port: 25 }));
        assert_eq!(parse_relay(b"relay:0"), Err(BadRoute));
        assert_eq!(parse_relay(b"relay:65536"), Err(BadRoute));
        assert_eq!(parse_relay(b"relay:25x"), Err(BadRoute));
        assert_eq!(parse_relay(b"relay:"), Err(BadRoute));
        assert_eq!(parse_relay(b"[::1]x"), Err(BadRoute));
        assert_eq!(parse_relay(b"relay:1:2"), Err(BadRoute));
        assert_eq!(
            parse_relay_port(b"hub.example", 209),
            relay("hub.example", 209)
        );
        assert_eq!(parse_relay_port(b"", 209), Ok(Route::Mx { port: 209 }));
        assert_eq!(parse_relay_port(b"hub:2090", 209), relay("hub", 2090));
    }

    proptest! {
        #[test]
        fn never_panics(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..10),
                        host in proptest::collection::vec(any::<u8>(), 0..40)) {
            let r = Routes::new(&lines);
            let _ = r.route(&host);
        }

        #[test]
        fn exact_entry_always_wins(host in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,3}",
                                   relay_name in "[a-z]{1,10}\\.example",
                                   port in 1u16..) {
            let r = Routes::new([
                ":default.example".to_string(),
                format!(".{host}:wrong.example"),
                format!("{host}:{relay_name}:{port}"),
            ]);
            prop_assert_eq!(r.route(host.as_bytes()), relay(&relay_name, port));
            let upper = host.to_ascii_uppercase();
            prop_assert_eq!(r.route(upper.as_bytes()), relay(&relay_name, port));
            let sub = format!("x.{host}");
            prop_assert_eq!(r.route(sub.as_bytes()), relay("wrong.example", 25));
        }
    }
}
