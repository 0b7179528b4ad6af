//! The policy cache: one file a domain in `QMAIL_HOME/mtasts/`, written by qmail-remote
//! (as qmailr) and readable by an administrator (mtasts(5)):
//!
//! ```text
//! id: 20160831085700Z
//! fetched: 1765000000
//! expires: 1765604800
//!
//! version: STSv1
//! mode: enforce
//! max_age: 604800
//! mx: mail.example.com
//! ```
//!
//! The header says which TXT `id` the policy was fetched under and when it was fetched
//! and expires (seconds since 1970); after the empty line comes the policy as qmail-remote
//! understood it. A file is replaced whole (written beside and renamed); removing it
//! clears the domain's policy. A file that cannot be read or parsed counts as absent.

use super::policy::{self, Policy};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The cache directory below the home.
pub const DIR: &str = "mtasts";

/// The system calls the cache needs beyond reading and writing files (qmail-remote's
/// confinement): renaming a new file over the old.
pub const SYSCALLS: &[i64] = &[
    libc::SYS_renameat,
    libc::SYS_renameat2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rename,
];

/// The largest cache file read.
const MAX_FILE: u64 = policy::MAX_POLICY as u64 + 1024;

/// A cached policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub fetched: u64,
    pub expires: u64,
    pub policy: Policy,
}

impl Entry {
    pub fn to_text(&self) -> String {
        format!(
            "id: {}\nfetched: {}\nexpires: {}\n\n{}",
            self.id,
            self.fetched,
            self.expires,
            self.policy.to_text()
        )
    }

    pub fn parse(text: &[u8]) -> Option<Entry> {
        let text = std::str::from_utf8(text).ok()?;
        let (head, body) = text.split_once("\n\n")?;
        let (mut id, mut fetched, mut expires) = (None, None, None);
        for line in head.lines() {
            let (k, v) = line.split_once(": ")?;
            match k {
                "id" => id = Some(v.to_string()),
                "fetched" => fetched = v.parse().ok(),
                "expires" => expires = v.parse().ok(),
                _ => {}
            }
        }
        Some(Entry {
            id: id?,
            fetched: fetched?,
            expires: expires?,
            policy: policy::parse_policy(body.as_bytes()).ok()?,
        })
    }
}

/// The cache of one home.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(home: &Path) -> Cache {
        Cache {
            dir: home.join(DIR),
        }
    }

    /// The file of `domain` (a name [`crate::tls::file_name_host`] accepted).
    fn file(&self, domain: &str) -> PathBuf {
        self.dir.join(domain)
    }

    /// The entry for `domain`, if there is a readable one.
    pub fn get(&self, domain: &str) -> Option<Entry> {
        use std::io::Read;
        let f = std::fs::File::open(self.file(domain)).ok()?;
        let mut buf = Vec::new();
        f.take(MAX_FILE).read_to_end(&mut buf).ok()?;
        Entry::parse(&buf)
    }

    /// Stores `e` for `domain`. A cache that cannot be written only costs a fetch later.
    pub fn put(&self, domain: &str, e: &Entry) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{domain}.{}", std::process::id()));
        let r = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(e.to_text().as_bytes())?;
            std::fs::rename(&tmp, self.file(domain))
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mtasts::policy::Mode;

    #[test]
    fn round_trip_and_damage() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(DIR)).unwrap();
        let c = Cache::new(d.path());
        assert_eq!(c.get("example.com"), None);
        let e = Entry {
            id: "abc".into(),
            fetched: 10,
            expires: 20,
            policy: Policy {
                mode: Mode::Enforce,
                max_age: 10,
                mx: vec!["mx.example.com".into()],
            },
        };
        c.put("example.com", &e).unwrap();
        assert_eq!(c.get("example.com"), Some(e.clone()));
        let text = std::fs::read_to_string(d.path().join("mtasts/example.com")).unwrap();
        assert!(text.starts_with("id: abc\nfetched: 10\nexpires: 20\n\nversion: STSv1\n"));
        std::fs::write(d.path().join("mtasts/example.com"), "junk").unwrap();
        assert_eq!(c.get("example.com"), None);
        let none = Cache::new(&d.path().join("nowhere"));
        assert!(none.put("example.com", &e).is_err());
    }
}
