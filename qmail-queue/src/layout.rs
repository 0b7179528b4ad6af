//! The queue's directories and file names (INTERNALS), and how an empty queue is made.
//!
//! ```text
//! queue/pid/            qmail-queue's first file, named PID.TIME.SEQ        qmailq 0700
//! queue/mess/S/N        the message, named by its inode number N, S = N % split  qmailq 0750
//! queue/intd/N          the envelope being written (u, p, F, T records)     qmailq 0700
//! queue/todo/N          a link to intd/N: the message is complete           qmailq 0750
//! queue/info/S/N        sender (written by qmail-send)                      qmails 0700
//! queue/local/S/N       local recipients                                    qmails 0700
//! queue/remote/S/N      remote recipients                                   qmails 0700
//! queue/bounce/N        accumulated bounce text                             qmails 0700
//! queue/lock/           sendmutex, tcpto, tcpto6 (IPv6), trigger (FIFO)     qmailq 0750
//! ```

use control::Ids;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The number of subdirectories of mess/, info/, local/ and remote/: netqmail's
/// conf-split ([`control::SPLIT`]).
pub use control::SPLIT;

/// netqmail's fmtqfn: `dir/N` or, split, `dir/(N % SPLIT)/N`.
pub fn fmtqfn(dir: &str, id: u64, split: bool) -> String {
    if split {
        format!("{dir}/{}/{id}", id % SPLIT)
    } else {
        format!("{dir}/{id}")
    }
}

/// A queue directory (normally QMAIL_HOME/queue).
#[derive(Debug, Clone)]
pub struct Queue {
    root: PathBuf,
}

impl Queue {
    /// The queue under a qmail home.
    pub fn in_home(home: &Path) -> Queue {
        Queue {
            root: home.join("queue"),
        }
    }

    /// A queue at an explicit path.
    pub fn at(root: PathBuf) -> Queue {
        Queue { root }
    }

    /// The queue directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn split(&self, dir: &str, id: u64) -> PathBuf {
        self.root.join(fmtqfn(dir, id, true))
    }

    fn flat(&self, dir: &str, id: u64) -> PathBuf {
        self.root.join(fmtqfn(dir, id, false))
    }

    /// mess/S/N
    pub fn mess(&self, id: u64) -> PathBuf {
        self.split("mess", id)
    }
    /// info/S/N
    pub fn info(&self, id: u64) -> PathBuf {
        self.split("info", id)
    }
    /// local/S/N
    pub fn local(&self, id: u64) -> PathBuf {
        self.split("local", id)
    }
    /// remote/S/N
    pub fn remote(&self, id: u64) -> PathBuf {
        self.split("remote", id)
    }
    /// intd/N
    pub fn intd(&self, id: u64) -> PathBuf {
        self.flat("intd", id)
    }
    /// todo/N
    pub fn todo(&self, id: u64) -> PathBuf {
        self.flat("todo", id)
    }
    /// bounce/N
    pub fn bounce(&self, id: u64) -> PathBuf {
        self.flat("bounce", id)
    }
    /// lock/trigger
    pub fn trigger(&self) -> PathBuf {
        self.root.join("lock/trigger")
    }
}

/// Who owns what in the queue, as netqmail's hier sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Path below the queue directory.
    pub path: &'static str,
    pub kind: Kind,
    pub owner: Owner,
    pub mode: u32,
}

/// What kind of file an [`Entry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A directory with SPLIT numbered subdirectories of the same owner and mode.
    SplitDir,
    /// A regular file of this many zero bytes.
    File(usize),
    Fifo,
}

/// The qmail user owning an [`Entry`]; the group is always `qmail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Qmailq,
    Qmails,
    Qmailr,
}

impl Owner {
    fn uid(self, ids: &Ids) -> nix::unistd::Uid {
        match self {
            Owner::Qmailq => ids.qmailq,
            Owner::Qmails => ids.qmails,
            Owner::Qmailr => ids.qmailr,
        }
    }
}

/// The queue part of netqmail's hier, in creation order ("" is the queue directory).
pub const HIER: &[Entry] = &[
    Entry {
        path: "",
        kind: Kind::Dir,
        owner: Owner::Qmailq,
        mode: 0o750,
    },
    Entry {
        path: "pid",
        kind: Kind::Dir,
        owner: Owner::Qmailq,
        mode: 0o700,
    },
    Entry {
        path: "intd",
        kind: Kind::Dir,
        owner: Owner::Qmailq,
        mode: 0o700,
    },
    Entry {
        path: "todo",
        kind: Kind::Dir,
        owner: Owner::Qmailq,
        mode: 0o750,
    },
    Entry {
        path: "bounce",
        kind: Kind::Dir,
        owner: Owner::Qmails,
        mode: 0o700,
    },
    Entry {
        path: "mess",
        kind: Kind::SplitDir,
        owner: Owner::Qmailq,
        mode: 0o750,
    },
    Entry {
        path: "info",
        kind: Kind::SplitDir,
        owner: Owner::Qmails,
        mode: 0o700,
    },
    Entry {
        path: "local",
        kind: Kind::SplitDir,
        owner: Owner::Qmails,
        mode: 0o700,
    },
    Entry {
        path: "remote",
        kind: Kind::SplitDir,
        owner: Owner::Qmails,
        mode: 0o700,
    },
    Entry {
        path: "lock",
        kind: Kind::Dir,
        owner: Owner::Qmailq,
        mode: 0o750,
    },
    Entry {
        path: "lock/tcpto",
        kind: Kind::File(1024),
        owner: Owner::Qmailr,
        mode: 0o644,
    },
    // rqmail only: qmail-remote's timeout table for IPv6 hosts (netqmail knows no IPv6;
    // its programs ignore the file).
    Entry {
        path: "lock/tcpto6",
        kind: Kind::File(2048),
        owner: Owner::Qmailr,
        mode: 0o644,
    },
    Entry {
        path: "lock/sendmutex",
        kind: Kind::File(0),
        owner: Owner::Qmails,
        mode: 0o600,
    },
    Entry {
        path: "lock/trigger",
        kind: Kind::Fifo,
        owner: Owner::Qmails,
        mode: 0o622,
    },
];

fn set_owner_mode(p: &Path, e: &Entry, ids: &Ids) -> io::Result<()> {
    if !ids.single_user {
        nix::unistd::chown(p, Some(e.owner.uid(ids)), Some(ids.qmail)).map_err(io::Error::from)?;
    }
    fs::set_permissions(p, fs::Permissions::from_mode(e.mode))
}

fn make_dir(p: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(p) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Creates (or completes) an empty queue at `queue` with hier's modes, and with hier's
/// owners unless `ids` is single-user. Existing files and messages are kept.
pub fn create(queue: &Path, ids: &Ids) -> io::Result<()> {
    for e in HIER {
        let p = if e.path.is_empty() {
            queue.to_path_buf()
        } else {
            queue.join(e.path)
        };
        match e.kind {
            Kind::Dir => make_dir(&p)?,
            Kind::SplitDir => {
                make_dir(&p)?;
                for i in 0..SPLIT {
                    let s = p.join(i.to_string());
                    make_dir(&s)?;
                    set_owner_mode(&s, e, ids)?;
                }
            }
            Kind::File(len) => {
                if !p.exists() {
                    fs::write(&p, vec![0u8; len])?;
                }
            }
            Kind::Fifo => {
                match nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(io::Error::from(e)),
                }
            }
        }
        set_owner_mode(&p, e, ids)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn names() {
        assert_eq!(fmtqfn("mess", 457, true), "mess/20/457");
        assert_eq!(fmtqfn("todo", 457, false), "todo/457");
        let q = Queue::at(PathBuf::from("/q"));
        assert_eq!(q.info(23), PathBuf::from("/q/info/0/23"));
        assert_eq!(q.intd(5), PathBuf::from("/q/intd/5"));
    }

    #[test]
    fn create_makes_hier() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("queue");
        create(&q, &Ids::single_user()).unwrap();
        create(&q, &Ids::single_user()).unwrap(); // idempotent
        let m = |p: &str| fs::metadata(q.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m(""), 0o750);
        assert_eq!(m("mess/22"), 0o750);
        assert_eq!(m("info/0"), 0o700);
        assert_eq!(m("lock/trigger"), 0o622);
        assert!(
            fs::metadata(q.join("lock/trigger"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(fs::metadata(q.join("lock/tcpto")).unwrap().len(), 1024);
        assert!(!q.join("mess/23").exists());
    }
}
