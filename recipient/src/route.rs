//! Where a recipient goes: qmail-send's rewriting during preprocessing (envnoathost,
//! percenthack, locals, virtualdomains), which qmail-smtpd's recipient validation applies
//! too, and removing a virtual domain's prefix again for bounces.

use control::CaseSet;
use control::Controls;
use std::collections::HashMap;
use std::io;

/// `control/virtualdomains`: `key:prepend` lines, keys compared without regard to case.
/// A line without a colon is ignored; when a key appears twice the later line wins
/// (netqmail's constmap finds the most recently added entry first).
#[derive(Debug, Clone, Default)]
pub struct VirtualDomains {
    map: HashMap<Vec<u8>, Vec<u8>>,
}

impl VirtualDomains {
    /// Builds the map from the file's lines.
    pub fn new(lines: &[Vec<u8>]) -> VirtualDomains {
        let mut map = HashMap::new();
        for l in lines {
            if let Some(colon) = l.iter().position(|&c| c == b':') {
                map.insert(l[..colon].to_ascii_lowercase(), l[colon + 1..].to_vec());
            }
        }
        VirtualDomains { map }
    }

    /// The prepend string for `key` (maybe empty: an exception).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }
}

/// The control files that decide where a recipient goes.
#[derive(Debug, Clone, Default)]
pub struct Route {
    /// The domain of an address without one (`control/envnoathost`, default `me`).
    pub envnoathost: Vec<u8>,
    /// `control/locals` (default: `me`); `None` when neither file exists, which makes
    /// qmail-send refuse to run (recipient validation then knows no local domain).
    pub locals: Option<CaseSet>,
    /// `control/percenthack`.
    pub percenthack: CaseSet,
    /// `control/virtualdomains`.
    pub vdoms: VirtualDomains,
}

/// A control file of the route that exists but cannot be read.
#[derive(Debug)]
pub struct RouteError {
    /// Its name below control/.
    pub file: &'static str,
    pub error: io::Error,
}

impl Route {
    /// Reads envnoathost, locals, percenthack and virtualdomains with netqmail's defaults
    /// (qmail-send's getcontrols).
    pub fn load(c: &Controls) -> Result<Route, RouteError> {
        let err = |file| move |error| RouteError { file, error };
        let envnoathost = c
            .line_or(
                "envnoathost",
                true,
                Some(control::DEFAULT_ENVNOATHOST.as_bytes()),
            )
            .map_err(err("envnoathost"))?
            .unwrap_or_default();
        let locals = c
            .lines_or_me("locals")
            .map_err(err("locals"))?
            .map(CaseSet::new);
        let percenthack = CaseSet::new(
            c.lines("percenthack")
                .map_err(err("percenthack"))?
                .unwrap_or_default(),
        );
        let vdoms = VirtualDomains::new(
            &c.lines("virtualdomains")
                .map_err(err("virtualdomains"))?
                .unwrap_or_default(),
        );
        Ok(Route {
            envnoathost,
            locals,
            percenthack,
            vdoms,
        })
    }

    fn is_local(&self, domain: &[u8]) -> bool {
        self.locals.as_ref().is_some_and(|l| l.contains(domain))
    }
}

/// Where a recipient goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Local = 0,
    Remote = 1,
}

fn rpos(s: &[u8], c: u8) -> Option<usize> {
    s.iter().rposition(|&x| x == c)
}

/// Rewrites one envelope recipient as qmail-send's preprocessing does:
/// 1. no `@`: append `@envnoathost`;
/// 2. while the domain is in percenthack and the local part has a `%`, the last `%`
///    becomes the `@` (the old domain is dropped);
/// 3. a domain in locals is local, unchanged;
/// 4. virtualdomains is tried for the whole address, the domain, each `.suffix` of the
///    domain, and finally the empty key: the first match with a non-empty prepend makes the
///    address local as `prepend-address`; an empty prepend stops the search;
/// 5. anything else is remote, unchanged.
pub fn rewrite(cfg: &Route, recip: &[u8]) -> (Channel, Vec<u8>) {
    let mut addr = recip.to_vec();
    let mut i = match rpos(&addr, b'@') {
        Some(i) => i,
        None => {
            let i = addr.len();
            addr.push(b'@');
            addr.extend_from_slice(&cfg.envnoathost);
            i
        }
    };
    while cfg.percenthack.contains(&addr[i + 1..]) {
        let Some(j) = rpos(&addr[..i], b'%') else {
            break;
        };
        addr.truncate(i);
        i = j;
        addr[i] = b'@';
    }
    let at = rpos(&addr, b'@').unwrap_or(i);
    if cfg.is_local(&addr[at + 1..]) {
        return (Channel::Local, addr);
    }
    let len = addr.len();
    for i in 0..=len {
        let boundary = i == 0 || i == at + 1 || i == len || (i > at && addr[i] == b'.');
        if !boundary {
            continue;
        }
        if let Some(x) = cfg.vdoms.get(&addr[i..]) {
            if x.is_empty() {
                break;
            }
            let mut out = x.to_vec();
            out.push(b'-');
            out.extend_from_slice(&addr);
            return (Channel::Local, out);
        }
    }
    (Channel::Remote, addr)
}

/// The recipient as it is named in a bounce: for an address rewritten by a virtual domain
/// (`prepend-box@domain`), the original `box@domain`.
pub fn strip_vdom_prepend<'a>(cfg: &Route, recip: &'a [u8]) -> &'a [u8] {
    let Some(at) = rpos(recip, b'@') else {
        return recip;
    };
    let domain = &recip[at + 1..];
    let dlen = domain.len();
    for i in 0..=dlen {
        if !(i == 0 || i == dlen || domain[i] == b'.') {
            continue;
        }
        if let Some(prepend) = cfg.vdoms.get(&domain[i..]) {
            if prepend.is_empty()
                || !recip.starts_with(prepend)
                || recip.get(prepend.len()) != Some(&b'-')
            {
                break;
            }
            return &recip[prepend.len() + 1..];
        }
    }
    recip
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(vd: &[&str]) -> Route {
        Route {
            envnoathost: b"envnoathost.example".to_vec(),
            locals: Some(CaseSet::new(["me.example", "localhost"])),
            percenthack: CaseSet::new(["me.example", "relay.example"]),
            vdoms: VirtualDomains::new(
                &vd.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>(),
            ),
        }
    }

    fn rw(c: &Route, r: &str) -> (Channel, String) {
        let (ch, a) = rewrite(c, r.as_bytes());
        (ch, String::from_utf8(a).unwrap())
    }

    #[test]
    fn locals_and_remote() {
        let c = cfg(&[]);
        assert_eq!(
            rw(&c, "joe@ME.example"),
            (Channel::Local, "joe@ME.example".into())
        );
        assert_eq!(
            rw(&c, "joe@other.example"),
            (Channel::Remote, "joe@other.example".into())
        );
        assert_eq!(
            rw(&c, "joe"),
            (Channel::Remote, "joe@envnoathost.example".into())
        );
    }

    #[test]
    fn percent_hack() {
        let c = cfg(&[]);
        assert_eq!(
            rw(&c, "joe%far.example@relay.example"),
            (Channel::Remote, "joe@far.example".into())
        );
        assert_eq!(
            rw(&c, "a%b%relay.example@me.example"),
            (Channel::Remote, "a@b".into())
        );
        assert_eq!(
            rw(&c, "a%b@far.example"),
            (Channel::Remote, "a%b@far.example".into())
        );
    }

    #[test]
    fn virtual_domains() {
        let c = cfg(&[
            "nowhere.mil:joe-foo",
            ".fax:uucp-fax",
            "info@special.example:special",
            "except.nowhere.mil:",
            ":alias-catchall",
        ]);
        assert_eq!(
            rw(&c, "info@nowhere.mil"),
            (Channel::Local, "joe-foo-info@nowhere.mil".into())
        );
        assert_eq!(
            rw(&c, "x@a.b.fax"),
            (Channel::Local, "uucp-fax-x@a.b.fax".into())
        );
        assert_eq!(
            rw(&c, "info@special.example"),
            (Channel::Local, "special-info@special.example".into())
        );
        assert_eq!(
            rw(&c, "x@except.nowhere.mil"),
            (Channel::Remote, "x@except.nowhere.mil".into())
        );
        assert_eq!(
            rw(&c, "x@elsewhere.example"),
            (Channel::Local, "alias-catchall-x@elsewhere.example".into())
        );
        // locals win over virtualdomains.
        assert_eq!(
            rw(&c, "x@localhost"),
            (Channel::Local, "x@localhost".into())
        );
        assert_eq!(
            strip_vdom_prepend(&c, b"joe-foo-info@nowhere.mil"),
            b"info@nowhere.mil"
        );
        assert_eq!(strip_vdom_prepend(&c, b"uucp-fax-x@a.b.fax"), b"x@a.b.fax");
        assert_eq!(
            strip_vdom_prepend(&c, b"other-x@nowhere.mil"),
            b"other-x@nowhere.mil"
        );
        assert_eq!(
            strip_vdom_prepend(&c, b"x@except.nowhere.mil"),
            b"x@except.nowhere.mil"
        );
        assert_eq!(
            strip_vdom_prepend(&c, b"alias-catchall-x@elsewhere.example"),
            b"x@elsewhere.example"
        );
    }

    #[test]
    fn no_locals_file_and_no_me() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control")).unwrap();
        let c = Controls::open(d.path()).unwrap();
        let r = Route::load(&c).unwrap();
        assert!(r.locals.is_none());
        assert_eq!(r.envnoathost, b"envnoathost");
        assert_eq!(rewrite(&r, b"joe@envnoathost").0, Channel::Remote);
        std::fs::write(d.path().join("control/me"), "mx.example\n").unwrap();
        std::fs::write(
            d.path().join("control/virtualdomains"),
            "a.example:alice\nnocolon\nA.example:bob\n",
        )
        .unwrap();
        let c = Controls::open(d.path()).unwrap();
        let r = Route::load(&c).unwrap();
        assert_eq!(r.envnoathost, b"mx.example");
        assert!(r.locals.as_ref().unwrap().contains(b"MX.example"));
        assert_eq!(r.vdoms.get(b"a.EXAMPLE"), Some(&b"bob"[..]));
        assert_eq!(r.vdoms.get(b"nocolon"), None);
        std::fs::create_dir(d.path().join("control/percenthack")).unwrap();
        let e = Route::load(&Controls::open(d.path()).unwrap()).unwrap_err();
        assert_eq!(e.file, "percenthack");
    }

    proptest! {
        #[test]
        fn rewrite_total(r in proptest::collection::vec(any::<u8>(), 0..80)) {
            let c = cfg(&[".x:p", ":q", "a.example:"]);
            let (_, a) = rewrite(&c, &r);
            prop_assert!(a.contains(&b'@'));
            let _ = strip_vdom_prepend(&c, &a);
        }
    }
}
