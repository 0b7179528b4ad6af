//! control/badmailfrom: envelope senders refused by qmail-smtpd.
//!
//! An entry is either a whole address (`user@example.com`) or `@domain`, which matches
//! every address ending in `@domain`. Comparison ignores ASCII case. A missing file
//! refuses nobody.

use crate::constmap::CaseSet;
use crate::file::Controls;
use std::io;

/// The loaded badmailfrom list.
#[derive(Debug, Default)]
pub struct BadMailFrom {
    set: Option<CaseSet>,
}

impl BadMailFrom {
    /// Loads control/badmailfrom; an unreadable file is an error.
    pub fn load(ctl: &Controls) -> io::Result<BadMailFrom> {
        Ok(BadMailFrom {
            set: ctl.lines("badmailfrom")?.map(CaseSet::new),
        })
    }

    /// A list built in memory.
    pub fn from_entries<I, T>(entries: I) -> BadMailFrom
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        BadMailFrom {
            set: Some(CaseSet::new(entries)),
        }
    }

    /// True when `addr` is listed, as a whole or by its `@domain`.
    pub fn matches(&self, addr: &[u8]) -> bool {
        let Some(set) = &self.set else { return false };
        if set.contains(addr) {
            return true;
        }
        match addr.iter().rposition(|&c| c == b'@') {
            Some(at) => set.contains(&addr[at..]),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_domain_entries() {
        let b = BadMailFrom::from_entries(["spammer@example.com", "@junk.example"]);
        assert!(b.matches(b"spammer@example.com"));
        assert!(b.matches(b"SPAMMER@Example.COM"));
        assert!(!b.matches(b"friend@example.com"));
        assert!(b.matches(b"anyone@junk.example"));
        assert!(b.matches(b"a@b@JUNK.example"));
        assert!(!b.matches(b"anyone@sub.junk.example"));
        assert!(!b.matches(b""));
        assert!(!BadMailFrom::default().matches(b"x@y"));
    }
}
