//! Reading a Maildir as netqmail's maildir.c does, for the programs that read one
//! (qmail-pop3d, maildir2mbox, maildirwatch). Every name is relative to the Maildir,
//! which the caller has made the working directory (netqmail's programs chdir into it).
//!
//! * [`clean_tmp`]: files in `tmp/` whose last access is more than 36 hours old are
//!   left over from a crashed delivery and are removed (every failure is ignored);
//! * [`scan`]: the messages are the entries of `new/` (and `cur/`, when asked for) whose
//!   names do not start with `.` and whose modification time is before the current second
//!   (a message still being written this second waits for the next scan; a time before
//!   1970, which netqmail's unsigned comparison never finds earlier, is left out too),
//!   oldest first. Entries with the same time come in the order of netqmail's priority
//!   queue (a binary heap fed `new/` then `cur/` in directory order), so that a listing is
//!   the same as netqmail's for the same directory. An entry is whatever `stat` follows to:
//!   a symbolic link counts as its target, a dangling one is left out.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Files in tmp/ last read this many seconds ago are left over from a crashed delivery.
pub const TMP_AGE: i64 = 36 * 60 * 60;

fn path(name: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(name))
}

/// Removes the files of `tmp/` not accessed for [`TMP_AGE`] seconds before `now`
/// (netqmail's `maildir_clean`; every failure is ignored, as there).
pub fn clean_tmp(now: i64) {
    let Ok(dir) = fs::read_dir("tmp") else {
        return;
    };
    for e in dir {
        let Ok(e) = e else {
            return;
        };
        if e.file_name().as_bytes().first() == Some(&b'.') {
            continue;
        }
        let p = Path::new("tmp").join(e.file_name());
        if let Ok(m) = fs::metadata(&p)
            && now > m.atime().saturating_add(TMP_AGE)
        {
            let _ = fs::remove_file(&p);
        }
    }
}

/// One message of a Maildir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// `new/NAME` or `cur/NAME`, relative to the Maildir.
    pub name: Vec<u8>,
    /// Modification time, in seconds since 1970.
    pub mtime: i64,
    /// Size on disk in bytes.
    pub size: u64,
}

/// A subdirectory could not be listed. Displayed in netqmail's words: `unable to scan
/// $MAILDIR/new: ` (opening it) or `unable to read $MAILDIR/new: ` (reading it), then the
/// system's error text.
#[derive(Debug)]
pub struct ScanError {
    /// `new` or `cur`.
    pub subdir: &'static str,
    /// True when the directory could not be opened, false when reading it failed.
    pub opening: bool,
    /// The system error.
    pub error: io::Error,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.opening { "scan" } else { "read" };
        write!(
            f,
            "unable to {verb} $MAILDIR/{}: {}",
            self.subdir,
            crate::describe_error(&self.error)
        )
    }
}

impl std::error::Error for ScanError {}

/// netqmail's prioq: a binary heap of (time, index) with its exact insert and
/// delete-min, so that equal times come out in netqmail's order.
#[derive(Debug, Default)]
struct Prioq {
    p: Vec<(i64, usize)>,
}

impl Prioq {
    fn insert(&mut self, e: (i64, usize)) {
        let mut j = self.p.len();
        self.p.push(e);
        while j > 0 {
            let i = (j - 1) / 2;
            if self.p[i].0 <= e.0 {
                break;
            }
            self.p[j] = self.p[i];
            j = i;
        }
        self.p[j] = e;
    }

    fn pop_min(&mut self) -> Option<(i64, usize)> {
        let min = *self.p.first()?;
        let n = self.p.len() - 1;
        let last = self.p[n];
        let mut i = 0;
        loop {
            let mut j = i + i + 2;
            if j > n {
                break;
            }
            if self.p[j - 1].0 <= self.p[j].0 {
                j -= 1;
            }
            if last.0 <= self.p[j].0 {
                break;
            }
            self.p[i] = self.p[j];
            i = j;
        }
        self.p[i] = last;
        self.p.truncate(n);
        Some(min)
    }
}

/// Lists the messages of the Maildir in the working directory, oldest first: those of
/// `new/`, and those of `cur/` when `with_cur` (see the module documentation). `now` is
/// the current time in seconds.
pub fn scan(now: i64, with_cur: bool) -> Result<Vec<Entry>, ScanError> {
    let mut found: Vec<Entry> = Vec::new();
    let mut q = Prioq::default();
    let subdirs: &[&'static str] = if with_cur { &["new", "cur"] } else { &["new"] };
    for &sub in subdirs {
        let fail = |opening, error| ScanError {
            subdir: sub,
            opening,
            error,
        };
        for e in fs::read_dir(sub).map_err(|e| fail(true, e))? {
            let e = e.map_err(|e| fail(false, e))?;
            let name = e.file_name();
            if name.as_bytes().first() == Some(&b'.') {
                continue;
            }
            let mut full = Vec::with_capacity(sub.len() + 1 + name.len());
            full.extend_from_slice(sub.as_bytes());
            full.push(b'/');
            full.extend_from_slice(name.as_bytes());
            if let Ok(m) = fs::metadata(path(&full))
                && (0..now).contains(&m.mtime())
            {
                q.insert((m.mtime(), found.len()));
                found.push(Entry {
                    name: full,
                    mtime: m.mtime(),
                    size: m.size(),
                });
            }
        }
    }
    let mut order = Vec::with_capacity(found.len());
    while let Some((_, i)) = q.pop_min() {
        order.push(std::mem::take(&mut found[i]));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prioq_orders_by_time() {
        let mut q = Prioq::default();
        for (i, t) in [5, 3, 9, 1, 3, 7].into_iter().enumerate() {
            q.insert((t, i));
        }
        let mut times = Vec::new();
        while let Some((t, _)) = q.pop_min() {
            times.push(t);
        }
        assert_eq!(times, [1, 3, 3, 5, 7, 9]);
        assert_eq!(q.pop_min(), None);
    }

    #[test]
    fn equal_times_come_out_in_heap_order() {
        // With every time equal, netqmail's delete-min moves the last element to the
        // root each time: 0, then the last, then the one before, and so on.
        let mut q = Prioq::default();
        for i in 0..5 {
            q.insert((7, i));
        }
        let mut ids = Vec::new();
        while let Some((_, i)) = q.pop_min() {
            ids.push(i);
        }
        assert_eq!(ids, [0, 4, 3, 2, 1]);
    }

    #[test]
    fn errors_read_as_netqmail_writes_them() {
        let e = ScanError {
            subdir: "new",
            opening: true,
            error: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            e.to_string(),
            "unable to scan $MAILDIR/new: file does not exist"
        );
        let e = ScanError {
            subdir: "cur",
            opening: false,
            error: io::Error::from_raw_os_error(libc::EIO),
        };
        assert_eq!(
            e.to_string(),
            "unable to read $MAILDIR/cur: input/output error"
        );
    }

    proptest! {
        #[test]
        fn prioq_is_a_priority_queue(times in proptest::collection::vec(-5i64..5, 0..100)) {
            let mut q = Prioq::default();
            for (i, &t) in times.iter().enumerate() {
                q.insert((t, i));
            }
            let mut out = Vec::new();
            while let Some(e) = q.pop_min() {
                out.push(e);
            }
            prop_assert_eq!(out.len(), times.len());
            prop_assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
            let mut ids: Vec<usize> = out.iter().map(|e| e.1).collect();
            ids.sort_unstable();
            prop_assert_eq!(ids, (0..times.len()).collect::<Vec<_>>());
        }
    }
}
