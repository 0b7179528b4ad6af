//! control/rcpthosts and control/morercpthosts.cdb: the domains this host accepts mail for.
//!
//! As in netqmail: without rcpthosts every recipient is accepted (and morercpthosts.cdb is
//! not consulted). An entry `example.com` matches that host only; an entry `.example.com`
//! matches every host under it. An address without `@` is accepted (envnoathost will
//! qualify it). Hosts are compared without regard to case.

use crate::cdb::Cdb;
use crate::constmap::CaseSet;
use crate::file::Controls;
use std::io;

/// The loaded recipient-host lists.
#[derive(Debug)]
pub struct RcptHosts {
    /// `None` when control/rcpthosts does not exist: everything is allowed.
    hosts: Option<CaseSet>,
    more: Option<Cdb>,
}

impl RcptHosts {
    /// Loads rcpthosts and, when rcpthosts exists, morercpthosts.cdb.
    pub fn load(ctl: &Controls) -> io::Result<RcptHosts> {
        let Some(lines) = ctl.lines("rcpthosts")? else {
            return Ok(RcptHosts {
                hosts: None,
                more: None,
            });
        };
        let more = Cdb::open_optional(&ctl.path("morercpthosts.cdb"))?;
        Ok(RcptHosts {
            hosts: Some(CaseSet::new(lines)),
            more,
        })
    }

    /// A list built in memory (for tests and other callers).
    pub fn from_entries<I, T>(entries: Option<I>) -> RcptHosts
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        RcptHosts {
            hosts: entries.map(CaseSet::new),
            more: None,
        }
    }

    /// True when rcpthosts exists (relaying is restricted).
    pub fn restricted(&self) -> bool {
        self.hosts.is_some()
    }

    /// Whether mail to `addr` may be accepted. An error means morercpthosts.cdb could not
    /// be read: a temporary failure.
    pub fn allowed(&self, addr: &[u8]) -> io::Result<bool> {
        let Some(hosts) = &self.hosts else {
            return Ok(true);
        };
        let Some(at) = addr.iter().rposition(|&c| c == b'@') else {
            return Ok(true);
        };
        let host = addr[at + 1..].to_ascii_lowercase();
        for j in 0..host.len() {
            if (j == 0 || host[j] == b'.') && hosts.contains(&host[j..]) {
                return Ok(true);
            }
        }
        if let Some(more) = &self.more {
            for j in 0..host.len() {
                if (j == 0 || host[j] == b'.') && more.contains(&host[j..])? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_suffix_entries() {
        let r = RcptHosts::from_entries(Some(["example.com", ".sub.example.org"]));
        assert!(r.allowed(b"u@example.com").unwrap());
        assert!(r.allowed(b"u@EXAMPLE.com").unwrap());
        assert!(!r.allowed(b"u@a.example.com").unwrap());
        assert!(r.allowed(b"u@a.sub.example.org").unwrap());
        assert!(r.allowed(b"u@x.y.sub.example.org").unwrap());
        assert!(!r.allowed(b"u@sub.example.org").unwrap());
        assert!(!r.allowed(b"u@evil.com").unwrap());
        assert!(r.allowed(b"postmaster").unwrap());
        assert!(!r.allowed(b"u@").unwrap());
        // the last @ decides
        assert!(!r.allowed(b"u@example.com@evil.com").unwrap());
    }

    #[test]
    fn absent_rcpthosts_allows_all() {
        let r = RcptHosts::from_entries(None::<Vec<&str>>);
        assert!(!r.restricted());
        assert!(r.allowed(b"u@anything.example").unwrap());
    }

    #[test]
    fn morercpthosts_cdb() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("control");
        std::fs::create_dir(&c).unwrap();
        std::fs::write(c.join("rcpthosts"), "one.example\n").unwrap();
        crate::cdb::write_atomic(
            &c.join("morercpthosts.cdb"),
            &c.join("morercpthosts.tmp"),
            [(&b"two.example"[..], &b""[..]), (b".three.example", b"")],
        )
        .unwrap();
        let ctl = Controls::open(d.path()).unwrap();
        let r = RcptHosts::load(&ctl).unwrap();
        assert!(r.allowed(b"a@one.example").unwrap());
        assert!(r.allowed(b"a@Two.Example").unwrap());
        assert!(r.allowed(b"a@x.three.example").unwrap());
        assert!(!r.allowed(b"a@four.example").unwrap());
    }
}
