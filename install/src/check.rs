//! The check mode: compares a qmail home with the layout [`crate::install`] makes (owners,
//! groups, modes, file types) and the queue's contents with the states of INTERNALS,
//! reporting every deviation and changing nothing.
//!
//! Queue files that a running qmail-queue or qmail-send may be in the middle of writing
//! (a file in `pid/`, `intd/N` without `todo/N`, `mess/S/N` with neither `info/S/N` nor
//! `todo/N`) count as stray only once they are older than qmail-send's limit for such
//! leftovers (36 hours, measured on the access time as qmail-send and qmail-clean do).
//! States that no program ever leaves behind (`todo/N` or `info/S/N` without `mess/S/N`,
//! `local/S/N` or `remote/S/N` with neither `info/S/N` nor `todo/N`, `bounce/N` without
//! `info/S/N`) are reported whatever their age.

use crate::{DIRS, PROGRAMS, effective_mode};
use control::Ids;
use nix::unistd::{Gid, Uid};
use qmail_queue::{HIER, HierKind as Kind, HierOwner as Owner, SPLIT};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// qmail-send's and qmail-clean's age for leftovers of an interrupted qmail-queue
/// (netqmail's OSSIFIED: 36 hours, above qmail-queue's own 24-hour limit).
pub const OSSIFIED: Duration = Duration::from_secs(129_600);

/// One deviation: the path it concerns and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// The home as it is on disk (with any staging root already prepended).
    pub root: PathBuf,
    /// The owners to expect (netqmail's ids, or single-user mode).
    pub ids: Ids,
    /// The time the ages of queue files are measured against.
    pub now: SystemTime,
    /// The age above which leftovers of an interrupted qmail-queue are stray.
    pub ossified: Duration,
    /// The split of mess/, info/, local/, remote/.
    pub split: u64,
}

impl Options {
    /// Checks `root` for `ids` now, with qmail-send's limits and this build's split.
    pub fn new(root: PathBuf, ids: Ids) -> Options {
        Options {
            root,
            ids,
            now: SystemTime::now(),
            ossified: OSSIFIED,
            split: SPLIT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Dir,
    File,
    Fifo,
}

fn type_name(ft: fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_fifo() {
        "a named pipe (FIFO)"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a device"
    }
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Dir => "a directory",
            Type::File => "a regular file",
            Type::Fifo => "a named pipe (FIFO)",
        }
    }

    fn matches(self, ft: fs::FileType) -> bool {
        match self {
            Type::Dir => ft.is_dir(),
            Type::File => ft.is_file(),
            Type::Fifo => ft.is_fifo(),
        }
    }
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(g)) => format!("{} (gid {gid})", g.name),
        _ => format!("gid {gid}"),
    }
}

/// A queue file name's message number ([`qmail_queue::message_id`]).
fn queue_number(name: &str) -> Option<u64> {
    qmail_queue::message_id(name.as_bytes())
}

fn queue_owner(o: Owner, ids: &Ids) -> Uid {
    match o {
        Owner::Qmailq => ids.qmailq,
        Owner::Qmails => ids.qmails,
        Owner::Qmailr => ids.qmailr,
    }
}

/// One message file found in the queue.
#[derive(Debug, Clone)]
struct Found {
    path: PathBuf,
    atime: SystemTime,
}

struct Checker<'a> {
    o: &'a Options,
    findings: Vec<Finding>,
}

impl Checker<'_> {
    fn report(&mut self, path: &Path, problem: impl Into<String>) {
        self.findings.push(Finding {
            path: path.to_path_buf(),
            problem: problem.into(),
        });
    }

    fn hours(&self) -> u64 {
        self.o.ossified.as_secs() / 3600
    }

    fn old(&self, atime: SystemTime) -> bool {
        self.o
            .now
            .duration_since(atime)
            .is_ok_and(|age| age > self.o.ossified)
    }

    /// Compares one installed file with what hier gives it. Returns false when it is missing.
    fn expect(&mut self, p: &Path, want: Type, owner: Uid, mode: u32) -> bool {
        let md = match fs::metadata(p) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.report(p, "does not exist");
                return false;
            }
            Err(e) => {
                self.report(p, format!("unable to stat: {e}"));
                return false;
            }
        };
        if !want.matches(md.file_type()) {
            self.report(
                p,
                format!(
                    "wrong type: is {}, should be {}",
                    type_name(md.file_type()),
                    want.name()
                ),
            );
        }
        if md.uid() != owner.as_raw() {
            self.report(
                p,
                format!(
                    "wrong owner: is {}, should be {}",
                    user_name(md.uid()),
                    user_name(owner.as_raw())
                ),
            );
        }
        let gid = self.o.ids.qmail.as_raw();
        if !self.o.ids.single_user && md.gid() != gid {
            self.report(
                p,
                format!(
                    "wrong group: is {}, should be {}",
                    group_name(md.gid()),
                    group_name(gid)
                ),
            );
        }
        if md.mode() & 0o7777 != mode {
            self.report(
                p,
                format!(
                    "wrong mode: is {:04o}, should be {:04o}",
                    md.mode() & 0o7777,
                    mode
                ),
            );
        }
        true
    }

    fn read_dir(&mut self, dir: &Path) -> Vec<(String, PathBuf, fs::Metadata)> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                self.report(dir, format!("unable to read: {e}"));
                return Vec::new();
            }
        };
        let mut v = Vec::new();
        for e in rd {
            let e = match e {
                Ok(e) => e,
                Err(err) => {
                    self.report(dir, format!("unable to read: {err}"));
                    break;
                }
            };
            let path = e.path();
            // Gone in the meantime (a live queue): nothing to say about it.
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue;
            };
            v.push((e.file_name().to_string_lossy().into_owned(), path, md));
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn layout(&mut self) {
        let ids = self.o.ids.clone();
        for (rel, who, mode) in DIRS {
            let p = if rel.is_empty() {
                self.o.root.clone()
            } else {
                self.o.root.join(rel)
            };
            self.expect(&p, Type::Dir, who.uid(&ids), effective_mode(*mode, &ids));
        }
        for (name, who, mode) in PROGRAMS {
            let p = self.o.root.join("bin").join(name);
            self.expect(&p, Type::File, who.uid(&ids), effective_mode(*mode, &ids));
        }
        for sub in [
            "man1", "man5", "man7", "man8", "cat1", "cat5", "cat7", "cat8",
        ] {
            let dir = self.o.root.join("man").join(sub);
            for (_, p, _) in self.read_dir(&dir) {
                self.expect(&p, Type::File, ids.owner, 0o644);
            }
        }
    }

    fn queue_layout(&mut self, queue: &Path) {
        let ids = self.o.ids.clone();
        for e in HIER {
            let p = if e.path.is_empty() {
                queue.to_path_buf()
            } else {
                queue.join(e.path)
            };
            let owner = queue_owner(e.owner, &ids);
            match e.kind {
                Kind::Dir => {
                    self.expect(&p, Type::Dir, owner, e.mode);
                }
                Kind::File(_) => {
                    self.expect(&p, Type::File, owner, e.mode);
                }
                Kind::Fifo => {
                    self.expect(&p, Type::Fifo, owner, e.mode);
                }
                Kind::SplitDir => {
                    if self.expect(&p, Type::Dir, owner, e.mode) {
                        for i in 0..self.o.split {
                            self.expect(&p.join(i.to_string()), Type::Dir, owner, e.mode);
                        }
                    }
                }
            }
        }
    }

    /// Entries of queue/ and queue/lock/ that hier does not make.
    fn unknown_entries(&mut self, queue: &Path) {
        let top: BTreeSet<&str> = HIER
            .iter()
            .map(|e| e.path)
            .filter(|p| !p.is_empty() && !p.contains('/'))
            .collect();
        for (name, p, _) in self.read_dir(queue) {
            if !top.contains(name.as_str()) {
                self.report(&p, "unknown entry in the queue");
            }
        }
        let lock: BTreeSet<&str> = HIER
            .iter()
            .filter_map(|e| e.path.strip_prefix("lock/"))
            .collect();
        for (name, p, _) in self.read_dir(&queue.join("lock")) {
            if !lock.contains(name.as_str()) {
                self.report(&p, "unknown entry in the queue");
            }
        }
    }

    /// The numbered regular files of a flat queue directory (intd, todo, bounce).
    fn flat(&mut self, dir: &Path) -> BTreeMap<u64, Found> {
        let mut found = BTreeMap::new();
        for (name, p, md) in self.read_dir(dir) {
            match queue_number(&name) {
                Some(id) if md.file_type().is_file() => {
                    found.insert(
                        id,
                        Found {
                            path: p,
                            atime: md.accessed().unwrap_or(self.o.now),
                        },
                    );
                }
                _ => self.report(&p, "unknown entry in the queue"),
            }
        }
        found
    }

    /// The message files of a split directory (mess, info, local, remote), checking that
    /// each sits in its own subdirectory and that the split matches this build's.
    fn split_dir(&mut self, dir: &Path) -> BTreeMap<u64, Found> {
        let split = self.o.split;
        let mut found = BTreeMap::new();
        let mut foreign_dirs = 0u64;
        let mut foreign_max = 0u64;
        let mut foreign_files = 0u64;
        for (name, sub, md) in self.read_dir(dir) {
            let n = queue_number(&name);
            if !md.file_type().is_dir() || n.is_none() {
                self.report(&sub, "unknown entry in the queue");
                continue;
            }
            let n = n.unwrap_or_default();
            if n >= split {
                foreign_dirs += 1;
                foreign_max = foreign_max.max(n);
                foreign_files += fs::read_dir(&sub).map(|rd| rd.count() as u64).unwrap_or(0);
                continue;
            }
            for (fname, p, fmd) in self.read_dir(&sub) {
                match queue_number(&fname) {
                    Some(id) if fmd.file_type().is_file() => {
                        if id % split != n {
                            self.report(
                                &p,
                                format!(
                                    "in the wrong split subdirectory: message {id} belongs in {}",
                                    dir.join((id % split).to_string()).display()
                                ),
                            );
                        }
                        found.insert(
                            id,
                            Found {
                                path: p,
                                atime: fmd.accessed().unwrap_or(self.o.now),
                            },
                        );
                    }
                    _ => self.report(&p, "unknown entry in the queue"),
                }
            }
        }
        if foreign_dirs > 0 {
            self.report(
                dir,
                format!(
                    "split mismatch: numbered subdirectories up to {foreign_max} exist, but this \
                     build's split is {split} (the queue was made with another conf-split; \
                     rebuild with RQMAIL_SPLIT={}); {foreign_files} files in them are invisible \
                     to qmail-send",
                    foreign_max + 1
                ),
            );
        }
        found
    }

    fn contents(&mut self, queue: &Path) {
        let h = self.hours();
        for (_, p, md) in self.read_dir(&queue.join("pid")) {
            if !md.file_type().is_file() {
                self.report(&p, "unknown entry in the queue");
            } else if self.old(md.accessed().unwrap_or(self.o.now)) {
                self.report(
                    &p,
                    format!(
                        "stray: left in pid/ by an interrupted qmail-queue more than {h} hours ago"
                    ),
                );
            }
        }
        let intd = self.flat(&queue.join("intd"));
        let todo = self.flat(&queue.join("todo"));
        let bounce = self.flat(&queue.join("bounce"));
        let mess = self.split_dir(&queue.join("mess"));
        let info = self.split_dir(&queue.join("info"));
        let local = self.split_dir(&queue.join("local"));
        let remote = self.split_dir(&queue.join("remote"));

        for (id, f) in &intd {
            if !todo.contains_key(id) && self.old(f.atime) {
                self.report(
                    &f.path,
                    format!(
                        "stray: no todo/{id}, left by an interrupted qmail-queue more than {h} \
                         hours ago"
                    ),
                );
            }
        }
        for (id, f) in &mess {
            if !info.contains_key(id) && !todo.contains_key(id) && self.old(f.atime) {
                self.report(
                    &f.path,
                    format!(
                        "stray: neither info nor todo/{id}, older than {h} hours (qmail-send \
                         removes it)"
                    ),
                );
            }
        }
        for (id, f) in todo.iter().chain(info.iter()) {
            if !mess.contains_key(id) {
                self.report(
                    &f.path,
                    format!("broken: message {id} has no mess file, it cannot be delivered"),
                );
            }
        }
        for (id, f) in local.iter().chain(remote.iter()) {
            if !info.contains_key(id) && !todo.contains_key(id) {
                self.report(
                    &f.path,
                    format!("stray: neither info nor todo/{id}, qmail-send never reads it"),
                );
            }
        }
        for (id, f) in &bounce {
            if !info.contains_key(id) {
                self.report(&f.path, format!("stray: message {id} has no info file"));
            }
        }
    }
}

/// Checks a mini-qmail home (`rqmail-install -M`): its directories and programs,
/// `bin/qmail-queue` a link to `qmail-qmqpc`, `control/qmqpservers` present, no queue.
pub fn check_mini(o: &Options) -> Vec<Finding> {
    let mut c = Checker {
        o,
        findings: Vec::new(),
    };
    if !o.root.is_dir() {
        c.report(&o.root, "does not exist or is not a directory");
        return c.findings;
    }
    let ids = o.ids.clone();
    for (rel, who, mode) in crate::mini_dirs() {
        let p = if rel.is_empty() {
            o.root.clone()
        } else {
            o.root.join(rel)
        };
        c.expect(&p, Type::Dir, who.uid(&ids), effective_mode(*mode, &ids));
    }
    for name in crate::MINI_PROGRAMS {
        if let Some((_, who, mode)) = PROGRAMS.iter().find(|(n, _, _)| n == name) {
            let p = o.root.join("bin").join(name);
            c.expect(&p, Type::File, who.uid(&ids), effective_mode(*mode, &ids));
        }
    }
    let link = o.root.join("bin/qmail-queue");
    match fs::read_link(&link) {
        Ok(t) if t == Path::new("qmail-qmqpc") || t == o.root.join("bin/qmail-qmqpc") => {}
        Ok(t) => c.report(
            &link,
            format!("points to {}: should point to qmail-qmqpc", t.display()),
        ),
        Err(_) => c.report(&link, "should be a symbolic link to qmail-qmqpc"),
    }
    let servers = o.root.join("control/qmqpservers");
    if !servers.is_file() {
        c.report(
            &servers,
            "does not exist: qmail-qmqpc has no server to send to",
        );
    }
    let queue = o.root.join("queue");
    if fs::symlink_metadata(&queue).is_ok() {
        c.report(&queue, "exists: a mini-qmail home has no queue");
    }
    c.findings
}

/// Checks a home and its queue; returns every deviation found, in a stable order.
pub fn check(o: &Options) -> Vec<Finding> {
    let mut c = Checker {
        o,
        findings: Vec::new(),
    };
    match fs::metadata(&o.root) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            c.report(&o.root, "wrong type: should be a directory");
            return c.findings;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            c.report(&o.root, "does not exist");
            return c.findings;
        }
        Err(e) => {
            c.report(&o.root, format!("unable to stat: {e}"));
            return c.findings;
        }
    }
    c.layout();
    let queue = o.root.join("queue");
    c.queue_layout(&queue);
    if queue.is_dir() {
        c.unknown_entries(&queue);
        c.contents(&queue);
    }
    c.findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Plan, install};
    use std::fs::FileTimes;
    use std::os::unix::fs::PermissionsExt;

    fn fresh() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let bindir = d.path().join("build");
        fs::create_dir(&bindir).unwrap();
        for (name, _, _) in PROGRAMS {
            fs::write(bindir.join(name), b"#!/bin/sh\n").unwrap();
        }
        let home = d.path().join("home");
        install(&Plan {
            home: home.clone(),
            destdir: PathBuf::new(),
            bindir,
            mandir: None,
            ids: Ids::single_user(),
        })
        .unwrap();
        (d, home)
    }

    fn opts(home: &Path) -> Options {
        Options {
            split: 23,
            ..Options::new(home.to_path_buf(), Ids::single_user())
        }
    }

    fn problems(home: &Path) -> Vec<String> {
        check(&opts(home)).iter().map(ToString::to_string).collect()
    }

    fn age(p: &Path, secs: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs);
        fs::File::open(p)
            .unwrap()
            .set_times(FileTimes::new().set_accessed(t).set_modified(t))
            .unwrap();
    }

    #[test]
    fn mini_install_is_clean_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let bindir = d.path().join("build");
        fs::create_dir(&bindir).unwrap();
        for (name, _, _) in PROGRAMS {
            fs::write(bindir.join(name), b"#!/bin/sh\n").unwrap();
        }
        let home = d.path().join("mini");
        let plan = Plan {
            home: home.clone(),
            destdir: PathBuf::new(),
            bindir,
            mandir: None,
            ids: Ids::single_user(),
        };
        crate::install_mini(&plan).unwrap();
        assert_eq!(
            fs::read_link(home.join("bin/qmail-queue")).unwrap(),
            Path::new("qmail-qmqpc")
        );
        assert!(!home.join("queue").exists());
        assert!(!home.join("bin/qmail-send").exists());
        let found: Vec<String> = check_mini(&opts(&home))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("qmqpservers"));
        fs::write(home.join("control/qmqpservers"), "127.0.0.1\n").unwrap();
        assert!(check_mini(&opts(&home)).is_empty());
        // Installing again replaces the link; a full home is refused.
        crate::install_mini(&plan).unwrap();
        fs::create_dir(home.join("queue")).unwrap();
        assert!(crate::install_mini(&plan).is_err());
        assert_eq!(check_mini(&opts(&home)).len(), 1);
    }

    #[test]
    fn fresh_install_is_clean() {
        let (_d, home) = fresh();
        assert_eq!(problems(&home), Vec::<String>::new());
    }

    #[test]
    fn missing_home() {
        let d = tempfile::tempdir().unwrap();
        let p = problems(&d.path().join("nope"));
        assert_eq!(p.len(), 1);
        assert!(p[0].ends_with("nope: does not exist"), "{p:?}");
    }

    #[test]
    fn wrong_mode_type_and_missing() {
        let (_d, home) = fresh();
        let trig = home.join("queue/lock/trigger");
        fs::remove_file(&trig).unwrap();
        fs::write(&trig, b"").unwrap();
        fs::set_permissions(&trig, fs::Permissions::from_mode(0o622)).unwrap();
        fs::set_permissions(home.join("queue/todo"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::remove_dir(home.join("queue/info/7")).unwrap();
        let p = problems(&home);
        let want = [
            format!(
                "{}: wrong type: is a regular file, should be a named pipe (FIFO)",
                trig.display()
            ),
            format!(
                "{}: wrong mode: is 0755, should be 0750",
                home.join("queue/todo").display()
            ),
            format!("{}: does not exist", home.join("queue/info/7").display()),
        ];
        for w in &want {
            assert!(p.contains(w), "{w} not in {p:?}");
        }
        assert_eq!(p.len(), 3, "{p:?}");
    }

    #[test]
    fn stray_and_broken_queue_files() {
        let (_d, home) = fresh();
        let q = qmail_queue::Queue::in_home(&home);
        // A complete message, being preprocessed: fine.
        fs::write(q.mess(100), b"x").unwrap();
        fs::write(q.intd(100), b"x").unwrap();
        fs::write(q.todo(100), b"x").unwrap();
        // A message qmail-queue is writing now: fine.
        fs::write(q.mess(101), b"x").unwrap();
        fs::write(q.intd(101), b"x").unwrap();
        fs::write(home.join("queue/pid/1234.1.1"), b"").unwrap();
        // Leftovers of an interrupted qmail-queue, three days old.
        fs::write(q.mess(102), b"x").unwrap();
        fs::write(q.intd(102), b"x").unwrap();
        age(&q.mess(102), 3 * 86400);
        age(&q.intd(102), 3 * 86400);
        fs::write(home.join("queue/pid/99.1.1"), b"").unwrap();
        age(&home.join("queue/pid/99.1.1"), 3 * 86400);
        // A delivered-to-nowhere remote file and a todo without its message.
        fs::write(q.remote(103), b"x").unwrap();
        fs::write(q.todo(104), b"x").unwrap();
        // A bounce without info, a file in the wrong split, junk names.
        fs::write(q.bounce(105), b"x").unwrap();
        fs::write(home.join("queue/mess/1/106"), b"x").unwrap();
        fs::write(home.join("queue/todo/abc"), b"x").unwrap();
        fs::write(home.join("queue/stuff"), b"x").unwrap();
        let p = problems(&home);
        let has = |path: PathBuf, what: &str| {
            let prefix = format!("{}: {what}", path.display());
            assert!(
                p.iter().any(|l| l.starts_with(&prefix)),
                "{prefix} not in {p:?}"
            );
        };
        has(q.mess(102), "stray: neither info nor todo/102");
        has(q.intd(102), "stray: no todo/102");
        has(home.join("queue/pid/99.1.1"), "stray: left in pid/");
        has(q.remote(103), "stray: neither info nor todo/103");
        has(q.todo(104), "broken: message 104 has no mess file");
        has(q.bounce(105), "stray: message 105 has no info file");
        has(
            home.join("queue/mess/1/106"),
            "in the wrong split subdirectory",
        );
        has(home.join("queue/todo/abc"), "unknown entry in the queue");
        has(home.join("queue/stuff"), "unknown entry in the queue");
        assert_eq!(p.len(), 9, "{p:?}");
    }

    #[test]
    fn split_mismatch() {
        let (_d, home) = fresh();
        for i in 23..100 {
            fs::create_dir(home.join(format!("queue/mess/{i}"))).unwrap();
        }
        fs::write(home.join("queue/mess/57/57"), b"x").unwrap();
        let p = problems(&home);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("split mismatch: numbered subdirectories up to 99 exist, but this build's split is 23"), "{p:?}");
        assert!(p[0].contains("RQMAIL_SPLIT=100"), "{p:?}");
        assert!(p[0].contains("1 files in them"), "{p:?}");
    }

    #[test]
    fn queue_numbers() {
        assert_eq!(queue_number("123"), Some(123));
        assert_eq!(queue_number("+1"), None);
        assert_eq!(queue_number(""), None);
        assert_eq!(queue_number("1a"), None);
        assert_eq!(queue_number("99999999999999999999999"), None);
    }
}
