//! Recipient rewriting during preprocessing (envnoathost, percenthack, locals,
//! virtualdomains), VERP senders, and removing a virtual domain's prefix for bounces.

use super::config::Config;

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
pub fn rewrite(cfg: &Config, recip: &[u8]) -> (Channel, Vec<u8>) {
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
    if cfg.locals.contains(&addr[at + 1..]) {
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

/// The sender a delivery sees: a VERP sender `owner-@host-@[]` becomes
/// `owner-recipbox=reciphost@host` for recipient `recipbox@reciphost`.
pub fn sender_for(sender: &[u8], recip: &[u8]) -> Vec<u8> {
    let i = sender.len();
    if i >= 4 && sender.ends_with(b"-@[]") {
        let j = rpos(&sender[..i - 4], b'@').unwrap_or(i - 4);
        if let Some(k) = rpos(recip, b'@')
            && j + 5 <= i
        {
            let mut v = Vec::with_capacity(i + recip.len());
            v.extend_from_slice(&sender[..j]);
            v.extend_from_slice(&recip[..k]);
            v.push(b'=');
            v.extend_from_slice(&recip[k + 1..]);
            v.push(b'@');
            v.extend_from_slice(&sender[j + 1..i - 4]);
            return v;
        }
    }
    sender.to_vec()
}

/// The recipient as it is named in a bounce: for an address rewritten by a virtual domain
/// (`prepend-box@domain`), the original `box@domain`.
pub fn strip_vdom_prepend<'a>(cfg: &Config, recip: &'a [u8]) -> &'a [u8] {
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
    use crate::send::config::VirtualDomains;
    use control::constmap::CaseSet;
    use proptest::prelude::*;

    fn cfg(vd: &[&str]) -> Config {
        Config {
            lifetime: 604_800,
            concurrency: [10, 20],
            envnoathost: b"envnoathost.example".to_vec(),
            bouncefrom: b"MAILER-DAEMON".to_vec(),
            bouncehost: b"me.example".to_vec(),
            doublebounceto: b"postmaster@me.example".to_vec(),
            locals: CaseSet::new(["me.example", "localhost"]),
            percenthack: CaseSet::new(["me.example", "relay.example"]),
            vdoms: VirtualDomains::new(
                &vd.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>(),
            ),
        }
    }

    fn rw(c: &Config, r: &str) -> (Channel, String) {
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
    fn verp() {
        assert_eq!(
            sender_for(b"owner-@list.example-@[]", b"joe@far.example"),
            b"owner-joe=far.example@list.example"
        );
        assert_eq!(
            sender_for(b"owner-@list.example-@[]", b"nohost"),
            b"owner-@list.example-@[]"
        );
        assert_eq!(sender_for(b"-@[]", b"a@b"), b"-@[]");
        assert_eq!(sender_for(b"plain@x", b"a@b"), b"plain@x");
        assert_eq!(sender_for(b"", b"a@b"), b"");
    }

    proptest! {
        #[test]
        fn rewrite_total(r in proptest::collection::vec(any::<u8>(), 0..80)) {
            let c = cfg(&[".x:p", ":q", "a.example:"]);
            let (_, a) = rewrite(&c, &r);
            prop_assert!(a.contains(&b'@'));
            let _ = strip_vdom_prepend(&c, &a);
            let _ = sender_for(&r, &a);
        }
    }
}
