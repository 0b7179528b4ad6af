//! Lays out a qmail home as netqmail's hier does: directories, owners, groups, modes, the
//! programs (qmail-queue setuid qmailq), the man pages and the queue with its split
//! directories and lock/trigger FIFO.
//!
//! As root the owners are netqmail's ids, looked up by name; otherwise (single-user mode)
//! everything belongs to the invoking user and qmail-queue is not setuid. Existing control
//! files, users/, alias/ contents and queued messages are never touched, so installing
//! over a netqmail home upgrades its programs and keeps its mail.
//!
//! `check` compares an installed home with this layout without changing anything;
//! `accounts` creates the qmail users and groups; `cli` is the program.

#![forbid(unsafe_code)]

mod accounts;
mod check;
mod cli;

pub use accounts::find_id;
pub use cli::main as rqmail_install;

use control::Ids;
use nix::unistd::{Gid, Uid};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Who owns an installed file (group is always `qmail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The owner of binaries (root).
    Owner,
    /// The alias user.
    Alias,
    /// The queue user (setuid qmail-queue).
    Qmailq,
}

impl Who {
    pub(crate) fn uid(self, ids: &Ids) -> Uid {
        match self {
            Who::Owner => ids.owner,
            Who::Alias => ids.alias,
            Who::Qmailq => ids.qmailq,
        }
    }
}

/// Directories below the home, as hier makes them.
pub const DIRS: &[(&str, Who, u32)] = &[
    ("", Who::Owner, 0o755),
    ("control", Who::Owner, 0o755),
    ("users", Who::Owner, 0o755),
    ("bin", Who::Owner, 0o755),
    ("boot", Who::Owner, 0o755),
    ("doc", Who::Owner, 0o755),
    ("man", Who::Owner, 0o755),
    ("man/cat1", Who::Owner, 0o755),
    ("man/cat5", Who::Owner, 0o755),
    ("man/cat7", Who::Owner, 0o755),
    ("man/cat8", Who::Owner, 0o755),
    ("man/man1", Who::Owner, 0o755),
    ("man/man5", Who::Owner, 0o755),
    ("man/man7", Who::Owner, 0o755),
    ("man/man8", Who::Owner, 0o755),
    ("alias", Who::Alias, 0o2755),
];

/// The programs and their modes, as hier installs them. Programs not built yet are skipped.
pub const PROGRAMS: &[(&str, Who, u32)] = &[
    ("qmail-queue", Who::Qmailq, 0o4711),
    // A qmail-queue front end: setuid qmailq only to read the DKIM keys (qmail-dkim(8)).
    ("qmail-dkim", Who::Qmailq, 0o4711),
    // A qmail-queue front end run by qmail-smtpd as qmaild: no privilege of its own.
    ("qmail-authverify", Who::Owner, 0o755),
    ("qmail-lspawn", Who::Owner, 0o700),
    ("qmail-start", Who::Owner, 0o700),
    ("qmail-getpw", Who::Owner, 0o711),
    ("qmail-local", Who::Owner, 0o711),
    ("qmail-remote", Who::Owner, 0o711),
    ("qmail-rspawn", Who::Owner, 0o711),
    ("qmail-clean", Who::Owner, 0o711),
    ("qmail-send", Who::Owner, 0o711),
    ("splogger", Who::Owner, 0o711),
    ("qmail-newu", Who::Owner, 0o700),
    ("qmail-newmrh", Who::Owner, 0o700),
    ("qmail-pw2u", Who::Owner, 0o711),
    ("qmail-inject", Who::Owner, 0o755),
    ("predate", Who::Owner, 0o755),
    ("datemail", Who::Owner, 0o755),
    ("qmail-showctl", Who::Owner, 0o755),
    ("qmail-qread", Who::Owner, 0o755),
    ("qmail-qstat", Who::Owner, 0o755),
    ("qmail-qctl", Who::Owner, 0o755),
    ("qmail-tcpto", Who::Owner, 0o755),
    ("qmail-tcpok", Who::Owner, 0o755),
    ("qmail-smtpd", Who::Owner, 0o755),
    ("qmail-smtpd-server", Who::Owner, 0o755),
    ("qmail-popup", Who::Owner, 0o711),
    ("qmail-pop3d", Who::Owner, 0o755),
    ("qmail-qmqpc", Who::Owner, 0o755),
    ("qmail-qmqpd", Who::Owner, 0o755),
    ("qmail-qmtpd", Who::Owner, 0o755),
    ("sendmail", Who::Owner, 0o755),
    ("tcp-env", Who::Owner, 0o755),
    ("forward", Who::Owner, 0o755),
    ("preline", Who::Owner, 0o755),
    ("condredirect", Who::Owner, 0o755),
    ("bouncesaying", Who::Owner, 0o755),
    ("except", Who::Owner, 0o755),
    ("srsreverse", Who::Owner, 0o755),
    ("maildirmake", Who::Owner, 0o755),
    ("maildir2mbox", Who::Owner, 0o755),
    ("maildirwatch", Who::Owner, 0o755),
    ("qbiff", Who::Owner, 0o755),
    ("qreceipt", Who::Owner, 0o755),
    ("mailsubj", Who::Owner, 0o755),
    ("rqmail-install", Who::Owner, 0o755),
];

/// The programs of a mini-qmail home (`-M`): what injects mail and what hands it to a
/// QMQP server; `bin/qmail-queue` is then a symbolic link to `qmail-qmqpc`.
pub const MINI_PROGRAMS: &[&str] = &[
    "qmail-qmqpc",
    "qmail-inject",
    "sendmail",
    "predate",
    "datemail",
    "qmail-showctl",
    "qmail-smtpd",
    "qmail-smtpd-server",
    "tcp-env",
    "rqmail-install",
];

/// The directories of a mini-qmail home: no queue, no users, no alias.
pub fn mini_dirs() -> impl Iterator<Item = &'static (&'static str, Who, u32)> {
    DIRS.iter()
        .filter(|(rel, _, _)| !matches!(*rel, "users" | "alias" | "boot" | "doc"))
}

/// What to install and where.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The qmail home the programs will use (e.g. /var/qmail).
    pub home: PathBuf,
    /// A staging root prepended to every path (packagers' DESTDIR); empty for none.
    pub destdir: PathBuf,
    /// Where the built programs are.
    pub bindir: PathBuf,
    /// Where the man pages (NAME.N) are; `None` to skip them.
    pub mandir: Option<PathBuf>,
    /// The ids: netqmail's (root) or the invoking user's (single-user mode).
    pub ids: Ids,
}

impl Plan {
    /// The real location of `rel` below the home, inside the staging root.
    pub fn target(&self, rel: &str) -> PathBuf {
        let base = if self.destdir.as_os_str().is_empty() {
            self.home.clone()
        } else {
            let home = self.home.strip_prefix("/").unwrap_or(&self.home);
            self.destdir.join(home)
        };
        if rel.is_empty() { base } else { base.join(rel) }
    }
}

/// An installation step that failed, with the path it concerned.
#[derive(Debug)]
pub struct InstallError {
    pub path: PathBuf,
    pub what: &'static str,
    pub err: io::Error,
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unable to {} {}: {}",
            self.what,
            self.path.display(),
            self.err
        )
    }
}

impl std::error::Error for InstallError {}

fn err(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |err| InstallError { path, what, err }
}

fn own(p: &Path, uid: Uid, gid: Gid, mode: u32, ids: &Ids) -> Result<(), InstallError> {
    if !ids.single_user {
        nix::unistd::chown(p, Some(uid), Some(gid))
            .map_err(io::Error::from)
            .map_err(err(p, "chown"))?;
    }
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(err(p, "chmod"))
}

/// In single-user mode no file is setuid: the invoker owns everything already.
pub(crate) fn effective_mode(mode: u32, ids: &Ids) -> u32 {
    if ids.single_user {
        mode & !0o6000
    } else {
        mode
    }
}

/// Copies `src` to `dst` through a temporary name and a rename, so a running program is
/// never overwritten in place.
fn copy_atomic(src: &Path, dst: &Path) -> Result<(), InstallError> {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dst.with_file_name(format!(".{name}.rqmail-install"));
    fs::copy(src, &tmp).map_err(err(src, "copy"))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(err(&tmp, "fsync"))?;
    fs::rename(&tmp, dst).map_err(err(dst, "rename onto"))
}

/// Why an existing queue cannot be kept by this build, if it was made with another
/// conf-split: numbered subdirectories of mess/ at or above this build's split, or a
/// message in a subdirectory other than its number modulo the split. Its messages would
/// be stranded.
fn foreign_split(queue: &Path) -> Option<String> {
    let split = qmail_queue::SPLIT;
    let rd = fs::read_dir(queue.join("mess")).ok()?;
    let subs: Vec<(u64, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let n = qmail_queue::message_id(e.file_name().as_encoded_bytes())?;
            Some((n, e.path()))
        })
        .collect();
    if let Some(max) = subs.iter().map(|(n, _)| *n).filter(|&n| n >= split).max() {
        return Some(format!(
            "it has subdirectories up to {max} (made with conf-split {}?)",
            max + 1
        ));
    }
    for (n, sub) in &subs {
        let Ok(rd) = fs::read_dir(sub) else { continue };
        for e in rd.flatten() {
            if let Some(id) = qmail_queue::message_id(e.file_name().as_encoded_bytes())
                && id % split != *n
            {
                return Some(format!(
                    "message {id} is in mess/{n}, not mess/{} (made with another conf-split)",
                    id % split
                ));
            }
        }
    }
    None
}

/// Replaces a lock/trigger that is not a named pipe (qmail-send could not be woken through
/// it); its contents mean nothing.
fn repair_trigger(queue: &Path, ids: &Ids) -> Result<(), InstallError> {
    use std::os::unix::fs::FileTypeExt;
    let trigger = queue.join("lock/trigger");
    match fs::symlink_metadata(&trigger) {
        Ok(md) if !md.file_type().is_fifo() => {
            if md.is_dir() {
                fs::remove_dir_all(&trigger)
            } else {
                fs::remove_file(&trigger)
            }
            .map_err(err(&trigger, "remove the non-FIFO"))?;
            qmail_queue::create_queue(queue, ids).map_err(err(queue, "create the queue"))
        }
        _ => Ok(()),
    }
}

fn install_program(plan: &Plan, name: &str, who: Who, mode: u32) -> Result<bool, InstallError> {
    let ids = &plan.ids;
    let src = plan.bindir.join(name);
    if !src.exists() {
        return Ok(false);
    }
    let dst = plan.target("bin").join(name);
    copy_atomic(&src, &dst)?;
    // chown before chmod: chown clears the setuid bit.
    own(
        &dst,
        who.uid(ids),
        ids.qmail,
        effective_mode(mode, ids),
        ids,
    )?;
    Ok(true)
}

fn install_man(plan: &Plan) -> Result<(), InstallError> {
    let ids = &plan.ids;
    if let Some(mandir) = &plan.mandir {
        let rd = fs::read_dir(mandir).map_err(err(mandir, "read"))?;
        let mut pages: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        pages.sort();
        for page in pages {
            let Some(sect) = page.extension().and_then(|s| s.to_str()) else {
                continue;
            };
            if !matches!(sect, "1" | "5" | "7" | "8") {
                continue;
            }
            let Some(fname) = page.file_name() else {
                continue;
            };
            let dst = plan.target(&format!("man/man{sect}")).join(fname);
            copy_atomic(&page, &dst)?;
            own(&dst, ids.owner, ids.qmail, 0o644, ids)?;
        }
    }
    Ok(())
}

fn make_dir(plan: &Plan, rel: &str, who: Who, mode: u32) -> Result<(), InstallError> {
    let ids = &plan.ids;
    let p = plan.target(rel);
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(&p) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(&p, "create directory")(e)),
    }
    own(&p, who.uid(ids), ids.qmail, effective_mode(mode, ids), ids)
}

/// Installs a mini-qmail home: no queue and no qmail-send; `bin/qmail-queue` is a
/// symbolic link to `qmail-qmqpc`, which gives every message to the QMQP servers in
/// `control/qmqpservers`. A home that has a queue is refused (its messages would be
/// stranded). Returns the programs that were not built.
pub fn install_mini(plan: &Plan) -> Result<Vec<String>, InstallError> {
    let queue = plan.target("queue");
    if fs::symlink_metadata(&queue).is_ok() {
        return Err(InstallError {
            path: queue,
            what: "make a mini-qmail home beside",
            err: io::Error::other(
                "a mini-qmail home has no queue, and this one has: deliver or move its \
                 messages and remove it first (nothing was changed)",
            ),
        });
    }
    for (rel, who, mode) in mini_dirs() {
        make_dir(plan, rel, *who, *mode)?;
    }
    let mut skipped = Vec::new();
    for name in MINI_PROGRAMS {
        let (who, mode) = PROGRAMS
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or((Who::Owner, 0o755), |(_, w, m)| (*w, *m));
        if !install_program(plan, name, who, mode)? {
            skipped.push((*name).to_string());
        }
    }
    // bin/qmail-queue -> qmail-qmqpc, replaced through a rename like the programs.
    let link = plan.target("bin").join("qmail-queue");
    let tmp = plan.target("bin").join(".qmail-queue.rqmail-install");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink("qmail-qmqpc", &tmp).map_err(err(&tmp, "make the link"))?;
    let ids = &plan.ids;
    if !ids.single_user {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &tmp,
            Some(ids.owner),
            Some(ids.qmail),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err(&tmp, "change the owner of")(e.into()))?;
    }
    fs::rename(&tmp, &link).map_err(err(&link, "install"))?;
    install_man(plan)?;
    Ok(skipped)
}

/// Installs the home: directories, programs, man pages, queue.
pub fn install(plan: &Plan) -> Result<Vec<String>, InstallError> {
    let ids = &plan.ids;
    let mut skipped = Vec::new();
    let queue = plan.target("queue");
    if let Some(why) = foreign_split(&queue) {
        return Err(InstallError {
            path: queue.join("mess"),
            what: "keep the queue in",
            err: io::Error::other(format!(
                "{why}, but this build's split is {}: rebuild rqmail with RQMAIL_SPLIT set to \
                 the queue's conf-split (nothing was changed)",
                qmail_queue::SPLIT
            )),
        });
    }
    for (rel, who, mode) in DIRS {
        make_dir(plan, rel, *who, *mode)?;
    }
    for (name, who, mode) in PROGRAMS {
        if !install_program(plan, name, *who, *mode)? {
            skipped.push((*name).to_string());
        }
    }
    install_man(plan)?;
    qmail_queue::create_queue(&queue, ids).map_err(err(&queue, "create the queue"))?;
    repair_trigger(&queue, ids)?;
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_with_and_without_staging_root() {
        let mut plan = Plan {
            home: PathBuf::from("/var/qmail"),
            destdir: PathBuf::new(),
            bindir: PathBuf::from("."),
            mandir: None,
            ids: Ids::single_user(),
        };
        assert_eq!(plan.target("bin"), PathBuf::from("/var/qmail/bin"));
        assert_eq!(plan.target(""), PathBuf::from("/var/qmail"));
        plan.destdir = PathBuf::from("/stage");
        assert_eq!(plan.target("bin"), PathBuf::from("/stage/var/qmail/bin"));
    }

    #[test]
    fn single_user_layout() {
        let d = tempfile::tempdir().unwrap();
        let bindir = d.path().join("build");
        fs::create_dir(&bindir).unwrap();
        fs::write(bindir.join("qmail-queue"), b"#!/bin/sh\n").unwrap();
        let plan = Plan {
            home: PathBuf::from("/var/qmail"),
            destdir: d.path().join("stage"),
            bindir,
            mandir: None,
            ids: Ids::single_user(),
        };
        let skipped = install(&plan).unwrap();
        assert!(skipped.contains(&"qmail-send".to_string()));
        let root = d.path().join("stage/var/qmail");
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("bin/qmail-queue"), 0o711);
        assert_eq!(mode("alias"), 0o755);
        assert_eq!(mode("queue/mess/0"), 0o750);
        assert_eq!(mode("control"), 0o755);
        // idempotent, keeps files
        fs::write(root.join("control/me"), "x\n").unwrap();
        install(&plan).unwrap();
        assert_eq!(fs::read(root.join("control/me")).unwrap(), b"x\n");
    }
}
