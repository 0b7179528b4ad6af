//! The Maildir as qmail-pop3d sees it, as netqmail's maildir.c and qmail-pop3d.c see it:
//!
//! * files in `tmp/` whose last access is more than 36 hours old are removed first;
//! * the messages are the entries of `new/` and `cur/` whose names do not start with `.`
//!   and whose modification time is before the current second (a message still being
//!   delivered this second waits for the next session), ordered by that time; entries
//!   with the same time come in the order of netqmail's priority queue (a binary heap fed
//!   `new/` then `cur/` in directory order), so that message numbers are the same as
//!   netqmail's for the same Maildir;
//! * an entry is whatever `stat` follows to (a symbolic link counts as its target, a
//!   dangling one is left out); its size is the size on disk, with LF line ends.
//!
//! [`Dir`] is the [`crate::pop3d::Mailbox`] on the real file system: every name is
//! relative to the Maildir, which is the working directory.

use crate::pop3d::{Entry, Mailbox};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Files in tmp/ last read this many seconds ago are left over from a crashed delivery.
pub(crate) const TMP_AGE: i64 = 36 * 60 * 60;

fn path(name: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(name))
}

/// Removes the files of `tmp/` not accessed for [`TMP_AGE`] seconds (netqmail's
/// `maildir_clean`; every failure is ignored, as there).
pub(crate) fn clean_tmp(now: i64) {
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

/// Lists the messages of the Maildir in the working directory, oldest first. An error
/// is netqmail's "unable to scan $HOME/Maildir".
pub fn scan(now: i64) -> io::Result<Vec<Entry>> {
    let mut found: Vec<Entry> = Vec::new();
    let mut q = Prioq::default();
    for sub in ["new", "cur"] {
        for e in fs::read_dir(sub)? {
            let e = e?;
            let name = e.file_name();
            if name.as_bytes().first() == Some(&b'.') {
                continue;
            }
            let mut full = Vec::with_capacity(sub.len() + 1 + name.len());
            full.extend_from_slice(sub.as_bytes());
            full.push(b'/');
            full.extend_from_slice(name.as_bytes());
            if let Ok(m) = fs::metadata(path(&full))
                && m.mtime() < now
            {
                q.insert((m.mtime(), found.len()));
                found.push(Entry {
                    name: full,
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

/// The Maildir in the working directory.
#[derive(Debug, Default)]
pub struct Dir;

impl Mailbox for Dir {
    type Message = File;

    fn open(&mut self, name: &[u8]) -> io::Result<File> {
        // Non-blocking, as netqmail's open_read: a FIFO among the messages reads as empty
        // instead of hanging the session.
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path(name))
    }

    fn unlink(&mut self, name: &[u8]) -> io::Result<()> {
        fs::remove_file(path(name))
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) -> io::Result<()> {
        fs::rename(path(from), path(to))
    }
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
