//! tcprules(1) databases, read as tcpserver(1) reads them.
//!
//! A rule's value is a sequence of entries, each ended by a NUL byte: `D` denies the
//! connection; `+NAME=VALUE` sets the environment variable NAME. `tcprules` writes
//! `127.:deny` as the key `127.` with the value `D\0`, `127.0.0.1:allow,RELAYCLIENT=""`
//! as `127.0.0.1` with `+RELAYCLIENT=\0`, and a plain `allow` as an empty value.
//!
//! The keys tried for a connection from the address IP, first match wins: IP itself,
//! then each prefix of it that ends with a dot (`1.2.3.`, `1.2.`, `1.`), then the empty
//! key. tcpserver also tries `info@IP`, `=host` and their suffixes, which need an ident
//! or a DNS answer; this server asks neither, so those rules never match.

use std::io;
use std::path::Path;

/// What the matching rule says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// The key that matched.
    pub key: Vec<u8>,
    /// A `D` entry was found.
    pub deny: bool,
    /// The `+NAME=VALUE` entries, in order.
    pub vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// Entries ignored as tcpserver ignores them: an unknown first byte, `+` without
    /// `=` or with an empty name, and bytes after the last NUL.
    pub ignored: usize,
}

/// The keys tried for the address `ip`, in tcpserver's order.
pub fn keys(ip: &[u8]) -> Vec<&[u8]> {
    let mut k = vec![ip];
    k.extend(
        (1..=ip.len())
            .rev()
            .filter(|&n| ip[n - 1] == b'.')
            .map(|n| &ip[..n]),
    );
    k.push(b"");
    k
}

/// A rule's value, entry by entry.
pub fn parse_value(key: &[u8], data: &[u8]) -> Rule {
    let mut rule = Rule {
        key: key.to_vec(),
        ..Rule::default()
    };
    let mut rest = data;
    while let Some(end) = rest.iter().position(|&c| c == 0) {
        let entry = &rest[..end];
        rest = &rest[end + 1..];
        match entry.first() {
            Some(b'D') => rule.deny = true,
            Some(b'+') => match entry[1..].iter().position(|&c| c == b'=') {
                Some(eq) if eq > 0 => rule
                    .vars
                    .push((entry[1..1 + eq].to_vec(), entry[2 + eq..].to_vec())),
                _ => rule.ignored += 1,
            },
            _ => rule.ignored += 1,
        }
    }
    if !rest.is_empty() {
        rule.ignored += 1;
    }
    rule
}

/// The rule for a connection from `ip` in the database `path`, opened anew (so that a
/// database `tcprules` has just replaced applies). `Ok(None)`: no key matched, or the
/// file does not exist and `allow_missing` (tcpserver's `-X`) is set.
pub fn lookup(path: &Path, allow_missing: bool, ip: &[u8]) -> io::Result<Option<Rule>> {
    let Some(db) = control::Cdb::open_optional(path)? else {
        if allow_missing {
            return Ok(None);
        }
        return Err(io::Error::from(io::ErrorKind::NotFound));
    };
    for key in keys(ip) {
        if let Some(data) = db.get(key)? {
            return Ok(Some(parse_value(key, &data)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_order() {
        let k: Vec<&[u8]> = vec![b"1.2.3.4", b"1.2.3.", b"1.2.", b"1.", b""];
        assert_eq!(keys(b"1.2.3.4"), k);
        assert_eq!(keys(b"::1"), vec![&b"::1"[..], b""]);
        assert_eq!(keys(b""), vec![&b""[..], b""]);
    }

    #[test]
    fn values_as_tcprules_writes_them() {
        let r = parse_value(b"127.", b"D\0");
        assert!(r.deny && r.vars.is_empty() && r.ignored == 0);
        let r = parse_value(b"127.0.0.1", b"+RELAYCLIENT=\0+X=a=b\0");
        assert!(!r.deny && r.ignored == 0);
        assert_eq!(
            r.vars,
            vec![
                (b"RELAYCLIENT".to_vec(), Vec::new()),
                (b"X".to_vec(), b"a=b".to_vec())
            ]
        );
        let r = parse_value(b"", b"");
        assert_eq!(r, Rule::default());
        // What tcpserver skips: no '=', an empty name, an unknown entry, an unended one.
        let r = parse_value(b"", b"+NOVALUE\0+=x\0?what\0\0+A=1\0+B=2");
        assert_eq!(r.vars, vec![(b"A".to_vec(), b"1".to_vec())]);
        assert_eq!(r.ignored, 5);
        assert!(!r.deny);
    }

    #[test]
    fn lookup_in_a_database() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rules.cdb");
        assert!(lookup(&p, true, b"1.2.3.4").unwrap().is_none());
        assert_eq!(
            lookup(&p, false, b"1.2.3.4").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let entries: Vec<(&[u8], &[u8])> = vec![
            (b"1.2.3.4", b"+A=1\0"),
            (b"1.2.", b"D\0"),
            (b"", b"+DEFAULT=yes\0"),
        ];
        control::write_cdb(&p, &d.path().join("tmp"), entries).unwrap();
        let r = lookup(&p, false, b"1.2.3.4").unwrap().unwrap();
        assert_eq!((r.key.as_slice(), r.deny), (&b"1.2.3.4"[..], false));
        let r = lookup(&p, false, b"1.2.9.9").unwrap().unwrap();
        assert_eq!((r.key.as_slice(), r.deny), (&b"1.2."[..], true));
        let r = lookup(&p, false, b"10.0.0.1").unwrap().unwrap();
        assert_eq!(r.vars, vec![(b"DEFAULT".to_vec(), b"yes".to_vec())]);
    }

    proptest! {
        #[test]
        fn arbitrary_values_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let r = parse_value(b"k", &data);
            prop_assert!(r.vars.iter().all(|(n, v)| !n.is_empty()
                && !n.contains(&0) && !n.contains(&b'=') && !v.contains(&0)));
        }

        #[test]
        fn arbitrary_addresses_give_prefixes(ip in proptest::collection::vec(any::<u8>(), 0..64)) {
            let k = keys(&ip);
            prop_assert_eq!(k[0], &ip[..]);
            prop_assert_eq!(*k.last().unwrap(), &b""[..]);
            for w in &k[1..k.len() - 1] {
                prop_assert!(ip.starts_with(w) && w.ends_with(b"."));
            }
        }
    }
}
