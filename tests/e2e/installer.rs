//! rqmail-install: a fresh install passes its own check (root mode with netqmail's ids and
//! single-user mode), the check names every deliberately broken owner, group, mode, FIFO
//! and stray queue file and changes nothing, -U creates the qmail users and groups (in a
//! staging root's own account files, so the machine's accounts stay as they are), and
//! installing over a home laid out as netqmail's hier does keeps its queue, control files,
//! users/ and alias/.

use rqmail_tests::{bin, bin_dir, ensure_qmail_users, is_root, tool, user_ids};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

fn man_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../man")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs rqmail-install with `args`, as `nobody` when `as_nobody` (single-user mode).
fn installer<S: AsRef<OsStr>>(args: &[S], as_nobody: bool) -> Out {
    let mut c = if as_nobody {
        let (uid, gid) = user_ids("nobody");
        let mut c = Command::new(tool("setpriv"));
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(bin("rqmail-install"));
        c
    } else {
        Command::new(bin("rqmail-install"))
    };
    c.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/");
    let out = c.output().expect("run rqmail-install");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temporary directory for a home (`DIR/home`), accessible to nobody when needed.
fn scratch(for_nobody: bool) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::Builder::new()
        .prefix("rqmail-install-")
        .tempdir()
        .expect("tempdir");
    if for_nobody {
        let (uid, gid) = user_ids("nobody");
        std::os::unix::fs::chown(d.path(), Some(uid), Some(gid)).expect("chown");
    }
    let home = d.path().join("home");
    (d, home)
}

/// Installs a home from this build in this process's mode (root: netqmail's ids) or, when
/// `as_nobody`, in single-user mode as nobody.
fn fresh_install(as_nobody: bool) -> (tempfile::TempDir, PathBuf) {
    if is_root() && !as_nobody {
        ensure_qmail_users();
    }
    let (d, home) = scratch(as_nobody);
    let o = installer(
        &[
            OsStr::new("-b"),
            bin_dir().as_os_str(),
            OsStr::new("-m"),
            man_dir().as_os_str(),
            home.as_os_str(),
        ],
        as_nobody,
    );
    assert_eq!(o.code, 0, "install failed: {}", o.stderr);
    (d, home)
}

fn check(home: &Path, as_nobody: bool) -> Out {
    installer(&[OsStr::new("-c"), home.as_os_str()], as_nobody)
}

fn assert_clean(home: &Path, as_nobody: bool) {
    let o = check(home, as_nobody);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, ""),
        "check of a fresh install: {}",
        o.stderr
    );
    assert!(o.stderr.contains("no deviations"), "{}", o.stderr);
}

/// Every line of the check's output, and an assertion helper naming what is expected.
fn expect_lines(o: &Out, expected: &[String]) {
    assert_eq!(o.code, 1, "deviations exit 1: {}{}", o.stdout, o.stderr);
    for e in expected {
        assert!(
            o.stdout.lines().any(|l| l == e),
            "missing line {e:?} in:\n{}",
            o.stdout
        );
    }
    assert_eq!(
        o.stdout.lines().count(),
        expected.len(),
        "unexpected extra lines:\n{}",
        o.stdout
    );
    let n = expected.len();
    assert!(
        o.stderr.contains(&format!(
            "{n} deviation{} found",
            if n == 1 { "" } else { "s" }
        )),
        "{}",
        o.stderr
    );
}

fn line(p: &Path, what: &str) -> String {
    format!("{}: {what}", p.display())
}

/// One entry of a tree snapshot: relative path, mode, uid, gid, contents of a regular file.
type Snap = (PathBuf, u32, u32, u32, Option<Vec<u8>>);

/// Snapshot of a tree, in path order.
fn snapshot(root: &Path) -> Vec<Snap> {
    fn walk(root: &Path, p: &Path, out: &mut Vec<Snap>) {
        let md = fs::symlink_metadata(p).expect("lstat");
        let rel = p.strip_prefix(root).expect("prefix").to_path_buf();
        let data = md.is_file().then(|| fs::read(p).expect("read"));
        out.push((rel, md.mode(), md.uid(), md.gid(), data));
        if md.is_dir() {
            let mut names: Vec<_> = fs::read_dir(p)
                .expect("readdir")
                .flatten()
                .map(|e| e.path())
                .collect();
            names.sort();
            for n in names {
                walk(root, &n, out);
            }
        }
    }
    let mut v = Vec::new();
    walk(root, root, &mut v);
    v
}

fn set_age(p: &Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    fs::File::open(p)
        .expect("open")
        .set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
        .expect("set times");
}

#[test]
fn check_passes_on_fresh_install_root_and_single_user() {
    // This process's mode: root mode with the qmail ids when root.
    let (_d, home) = fresh_install(false);
    assert_clean(&home, false);
    let qq = fs::metadata(home.join("bin/qmail-queue")).expect("qmail-queue");
    if is_root() {
        assert_eq!(qq.mode() & 0o7777, 0o4711);
        assert_eq!(qq.uid(), user_ids("qmailq").0);
        // Single-user mode: a home installed and checked by nobody.
        let (_d2, home2) = fresh_install(true);
        assert_clean(&home2, true);
        let qq = fs::metadata(home2.join("bin/qmail-queue")).expect("qmail-queue");
        assert_eq!(qq.mode() & 0o7777, 0o711, "no setuid in single-user mode");
        assert_eq!(qq.uid(), user_ids("nobody").0);
        // The root-mode check of nobody's home names its owners as wrong.
        let o = check(&home2, false);
        assert_eq!(o.code, 1);
        assert!(
            o.stdout.contains(&line(
                &home2.join("bin/qmail-queue"),
                &format!(
                    "wrong owner: is nobody (uid {}), should be qmailq (uid {})",
                    user_ids("nobody").0,
                    user_ids("qmailq").0
                )
            )),
            "{}",
            o.stdout
        );
    } else {
        assert_eq!(qq.mode() & 0o7777, 0o711);
    }
    // man pages are installed and part of the check.
    assert!(home.join("man/man8/rqmail-install.8").is_file());
    assert!(home.join("man/cat8").is_dir());
    // The mail readers' tools: netqmail's mode 0755, their pages in man1.
    for p in [
        "maildir2mbox",
        "maildirwatch",
        "qbiff",
        "qreceipt",
        "mailsubj",
    ] {
        let m = fs::metadata(home.join("bin").join(p)).expect(p);
        assert_eq!(m.mode() & 0o7777, 0o755, "{p}");
        assert!(home.join(format!("man/man1/{p}.1")).is_file(), "{p}.1");
    }
}

#[test]
fn check_names_each_broken_owner_group_mode_and_fifo_and_changes_nothing() {
    if !is_root() {
        eprintln!("check_names_each_broken_owner_group_mode_and_fifo: needs root (owners)");
        return;
    }
    let (_d, home) = fresh_install(false);
    let (qmailq, _) = user_ids("qmailq");
    let (qmails, _) = user_ids("qmails");
    let (alias, _) = user_ids("alias");
    let qmail_gid = nix::unistd::Group::from_name("qmail")
        .ok()
        .flatten()
        .expect("group qmail")
        .gid
        .as_raw();
    let chown =
        |p: &Path, u: u32, g: u32| std::os::unix::fs::chown(p, Some(u), Some(g)).expect("chown");
    let chmod =
        |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");

    // qmail-queue given to root (chown clears its setuid bit): owner and mode.
    let qq = home.join("bin/qmail-queue");
    chown(&qq, 0, qmail_gid);
    // alias/ given to the wrong group.
    chown(&home.join("alias"), alias, 0);
    // A split directory with a loose mode, a queue directory owned by the wrong user.
    chmod(&home.join("queue/mess/5"), 0o755);
    chown(&home.join("queue/info/11"), qmailq, qmail_gid);
    // The trigger replaced by a regular file.
    let trigger = home.join("queue/lock/trigger");
    fs::remove_file(&trigger).expect("rm trigger");
    fs::write(&trigger, b"").expect("write");
    chown(&trigger, qmails, qmail_gid);
    chmod(&trigger, 0o622);
    // A missing file and a missing split directory.
    fs::remove_file(home.join("queue/lock/sendmutex")).expect("rm");
    fs::remove_dir(home.join("queue/remote/22")).expect("rmdir");
    // A man page with the wrong mode.
    let page = home.join("man/man8/qmail-queue.8");
    chmod(&page, 0o600);

    let before = snapshot(&home);
    let o = check(&home, false);
    let name = |u: u32| {
        let n = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
            .ok()
            .flatten()
            .expect("user")
            .name;
        format!("{n} (uid {u})")
    };
    expect_lines(
        &o,
        &[
            line(
                &home.join("alias"),
                &format!("wrong group: is root (gid 0), should be qmail (gid {qmail_gid})"),
            ),
            line(
                &qq,
                &format!("wrong owner: is {}, should be {}", name(0), name(qmailq)),
            ),
            line(&qq, "wrong mode: is 0711, should be 4711"),
            line(&page, "wrong mode: is 0600, should be 0644"),
            line(
                &home.join("queue/mess/5"),
                "wrong mode: is 0755, should be 0750",
            ),
            line(
                &home.join("queue/info/11"),
                &format!(
                    "wrong owner: is {}, should be {}",
                    name(qmailq),
                    name(qmails)
                ),
            ),
            line(&home.join("queue/remote/22"), "does not exist"),
            line(&home.join("queue/lock/sendmutex"), "does not exist"),
            line(
                &trigger,
                "wrong type: is a regular file, should be a named pipe (FIFO)",
            ),
        ],
    );
    assert_eq!(before, snapshot(&home), "the check changed something");

    // Installing again repairs every one of them.
    let o = installer(
        &[
            OsStr::new("-b"),
            bin_dir().as_os_str(),
            OsStr::new("-m"),
            man_dir().as_os_str(),
            home.as_os_str(),
        ],
        false,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_clean(&home, false);
}

#[test]
fn check_names_broken_mode_and_fifo_in_single_user_mode() {
    let as_nobody = is_root();
    let (_d, home) = fresh_install(as_nobody);
    let trigger = home.join("queue/lock/trigger");
    fs::remove_file(&trigger).expect("rm trigger");
    fs::create_dir(&trigger).expect("mkdir");
    if as_nobody {
        let (uid, gid) = user_ids("nobody");
        std::os::unix::fs::chown(&trigger, Some(uid), Some(gid)).expect("chown");
    }
    fs::set_permissions(&trigger, fs::Permissions::from_mode(0o622)).expect("chmod");
    let control = home.join("control");
    fs::set_permissions(&control, fs::Permissions::from_mode(0o700)).expect("chmod");
    let o = check(&home, as_nobody);
    expect_lines(
        &o,
        &[
            line(&control, "wrong mode: is 0700, should be 0755"),
            line(
                &trigger,
                "wrong type: is a directory, should be a named pipe (FIFO)",
            ),
        ],
    );
}

#[test]
fn check_reports_stray_queue_files_and_not_work_in_progress() {
    let as_nobody = is_root();
    let (_d, home) = fresh_install(as_nobody);
    let q = qmail_queue::Queue::in_home(&home);
    let (uid, gid) = if as_nobody {
        user_ids("nobody")
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    };
    let put = |p: &Path, data: &[u8], old: bool| {
        fs::write(p, data).expect("write");
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
        if old {
            set_age(p, 3 * 86400);
        }
    };
    let three_days = true;
    // Work in progress or complete: not deviations.
    put(&home.join("queue/pid/4242.1700000000.1"), b"", false);
    put(&q.mess(500), b"x", false);
    put(&q.intd(500), b"u0\0p1\0F\0", false);
    put(&q.mess(501), b"x", three_days);
    put(&q.intd(501), b"x", three_days);
    put(&q.todo(501), b"x", three_days);
    put(&q.mess(502), b"x", three_days);
    put(&q.info(502), b"Fa@b\0", three_days);
    put(&q.remote(502), b"Tc@d\0", three_days);
    // Stray: left by an interrupted qmail-queue three days ago.
    let pid_old = home.join("queue/pid/99.1600000000.1");
    put(&pid_old, b"", three_days);
    put(&q.mess(503), b"x", three_days);
    put(&q.intd(503), b"x", three_days);
    put(&q.mess(504), b"x", three_days);
    // Broken or stuck states no program leaves behind.
    put(&q.todo(505), b"x", false);
    put(&q.local(506), b"Tx@y\0", false);
    put(&q.bounce(507), b"x", false);
    // Names that do not belong in the queue.
    let junk = home.join("queue/todo/core");
    put(&junk, b"x", false);
    let misplaced = home.join("queue/info/0/508");
    put(&misplaced, b"Fa@b\0", false);
    put(&q.mess(508), b"x", false);
    let stranger = home.join("queue/junk");
    fs::create_dir(&stranger).expect("mkdir");

    let o = check(&home, as_nobody);
    expect_lines(
        &o,
        &[
            line(
                &pid_old,
                "stray: left in pid/ by an interrupted qmail-queue more than 36 hours ago",
            ),
            line(
                &q.intd(503),
                "stray: no todo/503, left by an interrupted qmail-queue more than 36 hours ago",
            ),
            line(
                &q.mess(503),
                "stray: neither info nor todo/503, older than 36 hours (qmail-send removes it)",
            ),
            line(
                &q.mess(504),
                "stray: neither info nor todo/504, older than 36 hours (qmail-send removes it)",
            ),
            line(
                &q.todo(505),
                "broken: message 505 has no mess file, it cannot be delivered",
            ),
            line(
                &q.local(506),
                "stray: neither info nor todo/506, qmail-send never reads it",
            ),
            line(&q.bounce(507), "stray: message 507 has no info file"),
            line(&junk, "unknown entry in the queue"),
            line(
                &misplaced,
                &format!(
                    "in the wrong split subdirectory: message 508 belongs in {}",
                    home.join("queue/info/2").display()
                ),
            ),
            line(&stranger, "unknown entry in the queue"),
        ],
    );
}

/// Lays out a home as netqmail's hier does (owners only in root mode), with files in
/// control/, users/, alias/, netqmail-only programs and man pages, and two queued
/// messages: one preprocessed by qmail-send (mess, info, remote), one just injected (mess,
/// intd, todo).
fn netqmail_home(home: &Path, root: bool) -> (u64, u64) {
    let ids = if root {
        control::Ids::lookup().expect("qmail ids")
    } else {
        control::Ids::single_user()
    };
    let own = |p: &Path, uid: nix::unistd::Uid, mode: u32| {
        if root {
            nix::unistd::chown(p, Some(uid), Some(ids.qmail)).expect("chown");
        }
        let mode = if root { mode } else { mode & 0o777 };
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let dir = |rel: &str, uid, mode| {
        let p = if rel.is_empty() {
            home.to_path_buf()
        } else {
            home.join(rel)
        };
        fs::create_dir_all(&p).expect("mkdir");
        own(&p, uid, mode);
    };
    let file = |rel: &str, data: &[u8], uid, mode| {
        let p = home.join(rel);
        fs::write(&p, data).expect("write");
        own(&p, uid, mode);
    };
    dir("", ids.owner, 0o755);
    for d in ["control", "users", "bin", "boot", "doc", "man"] {
        dir(d, ids.owner, 0o755);
    }
    for s in ["1", "5", "7", "8"] {
        dir(&format!("man/cat{s}"), ids.owner, 0o755);
        dir(&format!("man/man{s}"), ids.owner, 0o755);
    }
    dir("alias", ids.alias, 0o2755);
    dir("queue", ids.qmailq, 0o750);
    dir("queue/pid", ids.qmailq, 0o700);
    dir("queue/intd", ids.qmailq, 0o700);
    dir("queue/todo", ids.qmailq, 0o750);
    dir("queue/bounce", ids.qmails, 0o700);
    for (d, uid, mode) in [
        ("mess", ids.qmailq, 0o750),
        ("info", ids.qmails, 0o700),
        ("local", ids.qmails, 0o700),
        ("remote", ids.qmails, 0o700),
    ] {
        dir(&format!("queue/{d}"), uid, mode);
        for i in 0..qmail_queue::SPLIT {
            dir(&format!("queue/{d}/{i}"), uid, mode);
        }
    }
    dir("queue/lock", ids.qmailq, 0o750);
    file("queue/lock/tcpto", &[7u8; 1024], ids.qmailr, 0o644);
    file("queue/lock/sendmutex", b"", ids.qmails, 0o600);
    nix::unistd::mkfifo(
        &home.join("queue/lock/trigger"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    own(&home.join("queue/lock/trigger"), ids.qmails, 0o622);
    // netqmail's own files: boot scripts, docs, programs rqmail does not have, old binaries.
    file(
        "boot/home",
        b"#!/bin/sh\n# netqmail boot script\n",
        ids.owner,
        0o755,
    );
    file("doc/FAQ", b"netqmail FAQ\n", ids.owner, 0o644);
    file("bin/qsmhook", b"netqmail qsmhook\n", ids.owner, 0o755);
    file(
        "bin/qmail-queue",
        b"netqmail qmail-queue\n",
        ids.qmailq,
        0o4711,
    );
    file("bin/qmail-send", b"netqmail qmail-send\n", ids.owner, 0o711);
    file("man/man8/qsmhook.8", b".TH qsmhook 8\n", ids.owner, 0o644);
    file("man/cat8/qsmhook.0", b"qsmhook(8)\n", ids.owner, 0o644);
    // Configuration.
    file("control/me", b"old.example\n", ids.owner, 0o644);
    file(
        "control/rcpthosts",
        b"old.example\n.old.example\n",
        ids.owner,
        0o644,
    );
    file("control/concurrencyremote", b"40\n", ids.owner, 0o644);
    file(
        "users/assign",
        b"=joe:joe:1000:1000:/home/joe:::\n.\n",
        ids.owner,
        0o644,
    );
    file(
        "users/cdb",
        b"not really a cdb, kept as it is\n",
        ids.owner,
        0o644,
    );
    file(
        "alias/.qmail-postmaster",
        b"&joe@old.example\n",
        ids.alias,
        0o644,
    );
    // Two messages.
    let q = qmail_queue::Queue::in_home(home);
    let (a, b) = (120_001u64, 120_002u64);
    let rel = |p: PathBuf| {
        p.strip_prefix(home)
            .expect("in home")
            .to_string_lossy()
            .into_owned()
    };
    let msg = b"Received: (qmail 1 invoked by uid 0); 1 Jan 2024 00:00:00 -0000\nSubject: kept\n\nhello\n";
    file(&rel(q.mess(a)), msg, ids.qmailq, 0o644);
    file(&rel(q.info(a)), b"Fsender@old.example\0", ids.qmails, 0o600);
    file(
        &rel(q.remote(a)),
        b"Tfar@remote.example\0",
        ids.qmails,
        0o600,
    );
    file(&rel(q.mess(b)), msg, ids.qmailq, 0o644);
    let env = b"u0\0p1\0Fsender@old.example\0Tjoe@old.example\0\0";
    file(&rel(q.intd(b)), env, ids.qmailq, 0o644);
    fs::hard_link(q.intd(b), q.todo(b)).expect("link todo");
    (a, b)
}

#[test]
fn upgrade_over_a_netqmail_home_keeps_queue_control_and_users() {
    let root = is_root();
    if root {
        ensure_qmail_users();
    }
    let (_d, home) = scratch(false);
    let (a, b) = netqmail_home(&home, root);
    let kept = |s: &[Snap]| -> Vec<_> {
        s.iter()
            // rqmail adds qmail-remote's IPv6 timeout table; everything else is kept.
            .filter(|(p, ..)| p != Path::new("queue/lock/tcpto6"))
            .filter(|(p, ..)| {
                ["control", "users", "alias", "queue", "boot", "doc"]
                    .iter()
                    .any(|d| p.starts_with(d))
                    || p == Path::new("bin/qsmhook")
                    || p.starts_with("man/cat8")
                    || p == Path::new("man/man8/qsmhook.8")
            })
            .cloned()
            .collect()
    };
    let before = snapshot(&home);
    let passwd = fs::read("/etc/passwd").expect("passwd");
    let group = fs::read("/etc/group").expect("group");

    // As root -U too: the qmail users exist, so it must leave the accounts alone.
    let bins = bin_dir();
    let mut args: Vec<&OsStr> = vec![OsStr::new("-b"), bins.as_os_str(), OsStr::new("-m")];
    let man = man_dir();
    args.push(man.as_os_str());
    if root {
        args.push(OsStr::new("-U"));
    }
    args.push(home.as_os_str());
    let o = installer(&args, false);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stderr.contains("created"), "{}", o.stderr);
    assert_eq!(
        fs::read("/etc/passwd").expect("passwd"),
        passwd,
        "users changed"
    );
    assert_eq!(
        fs::read("/etc/group").expect("group"),
        group,
        "groups changed"
    );

    let after = snapshot(&home);
    assert_eq!(
        kept(&before),
        kept(&after),
        "the queue, control/, users/, alias/ or netqmail's own files changed"
    );
    // The programs are rqmail's now.
    assert_eq!(
        fs::read(home.join("bin/qmail-queue")).expect("qq"),
        fs::read(bin("qmail-queue")).expect("built qq")
    );
    assert!(home.join("bin/qmail-start").is_file());
    assert!(home.join("man/man8/rqmail-install.8").is_file());
    assert_eq!(
        fs::metadata(home.join("queue/lock/tcpto6"))
            .map(|m| m.len())
            .ok(),
        Some(2048),
        "the IPv6 timeout table is added"
    );
    assert_clean(&home, false);

    // rqmail's tools read the kept queue: qmail-qread lists the preprocessed message,
    // qmail-qstat counts both.
    let qread = Command::new(home.join("bin/qmail-qread"))
        .env_clear()
        .env("QMAIL_HOME", &home)
        .output()
        .expect("qread");
    let text = String::from_utf8_lossy(&qread.stdout);
    assert!(
        text.contains(&format!("#{a}  ")) && text.contains("<sender@old.example>"),
        "{text}"
    );
    assert!(text.contains("\tremote\tfar@remote.example"), "{text}");
    let qstat = Command::new(home.join("bin/qmail-qstat"))
        .env_clear()
        .env("QMAIL_HOME", &home)
        .output()
        .expect("qstat");
    let text = String::from_utf8_lossy(&qstat.stdout);
    assert!(text.contains("messages in queue: 2"), "{text}");
    assert!(
        text.contains("messages in queue but not yet preprocessed: 1"),
        "{text}"
    );
    let _ = b;
}

#[test]
fn install_refuses_a_queue_made_with_another_split() {
    let (_d, home) = scratch(false);
    fs::create_dir_all(home.join("queue/mess/99")).expect("mkdir");
    fs::write(home.join("queue/mess/99/1099"), b"x").expect("write");
    if is_root() {
        ensure_qmail_users();
    }
    let o = installer(
        &[OsStr::new("-b"), bin_dir().as_os_str(), home.as_os_str()],
        false,
    );
    assert_eq!(o.code, 111, "{}", o.stderr);
    assert!(
        o.stderr.contains("made with conf-split 100") && o.stderr.contains("nothing was changed"),
        "{}",
        o.stderr
    );
    assert!(!home.join("bin").exists(), "something was installed");
}

#[test]
fn create_users_in_a_staging_root_and_keep_existing_ones() {
    if !is_root() {
        let o = installer(&["-U", "/tmp/rqmail-never-made"], false);
        assert_eq!(o.code, 100, "{}", o.stderr);
        return;
    }
    // Not root: -U is refused.
    let o = installer(&["-U", "/tmp/rqmail-never-made"], true);
    assert_eq!(o.code, 100, "{}", o.stderr);
    assert!(o.stderr.contains("needs root"), "{}", o.stderr);
    assert!(!Path::new("/tmp/rqmail-never-made").exists());

    let (d, _) = scratch(false);
    let stage = d.path().join("stage");
    let etc = stage.join("etc");
    fs::create_dir_all(&etc).expect("mkdir");
    // A system image that already has qmaild (uid 4242) and nofiles (gid 4243).
    fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nqmaild:x:4242:4243::/var/qmail:/bin/false\n",
    )
    .expect("passwd");
    fs::write(etc.join("group"), "root:x:0:\nnofiles:x:4243:\n").expect("group");
    fs::write(
        etc.join("shadow"),
        "root:*:19000:0:99999:7:::\nqmaild:!:19000::::::\n",
    )
    .expect("shadow");
    fs::write(etc.join("gshadow"), "root:*::\nnofiles:!::\n").expect("gshadow");
    let sys_passwd = fs::read("/etc/passwd").expect("passwd");

    let o = installer(
        &[
            OsStr::new("-U"),
            OsStr::new("-d"),
            stage.as_os_str(),
            OsStr::new("-b"),
            bin_dir().as_os_str(),
            OsStr::new("/var/qmail"),
        ],
        false,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        fs::read("/etc/passwd").expect("passwd"),
        sys_passwd,
        "the machine's accounts changed"
    );
    for name in [
        "qmail", "alias", "qmaill", "qmailp", "qmailq", "qmailr", "qmails",
    ] {
        assert!(
            o.stderr.contains(&format!("created {name}\n")),
            "{name}: {}",
            o.stderr
        );
    }
    assert!(
        !o.stderr.contains("created qmaild") && !o.stderr.contains("created nofiles"),
        "{}",
        o.stderr
    );

    let passwd = fs::read_to_string(etc.join("passwd")).expect("passwd");
    let group = fs::read_to_string(etc.join("group")).expect("group");
    let gid = |g: &str| install::find_id(&group, g).unwrap_or_else(|| panic!("group {g}: {group}"));
    let field = |u: &str, i: usize| -> String {
        passwd
            .lines()
            .find(|l| l.starts_with(&format!("{u}:")))
            .unwrap_or_else(|| panic!("user {u}: {passwd}"))
            .split(':')
            .nth(i)
            .expect("field")
            .to_string()
    };
    assert_eq!(field("qmaild", 2), "4242", "an existing user keeps its uid");
    assert_eq!(gid("nofiles"), 4243);
    for (u, g) in [
        ("alias", "nofiles"),
        ("qmaill", "nofiles"),
        ("qmailp", "nofiles"),
        ("qmailq", "qmail"),
        ("qmailr", "qmail"),
        ("qmails", "qmail"),
    ] {
        assert_eq!(field(u, 3), gid(g).to_string(), "{u}'s group");
    }
    assert_eq!(field("alias", 5), "/var/qmail/alias");
    assert_eq!(field("qmailq", 5), "/var/qmail");

    // The staged files belong to the staged ids, and the staged check agrees.
    let qmailq: u32 = field("qmailq", 2).parse().expect("uid");
    let staged = stage.join("var/qmail");
    assert_eq!(
        fs::metadata(staged.join("queue/mess")).expect("mess").uid(),
        qmailq
    );
    assert_eq!(
        fs::metadata(staged.join("bin/qmail-queue"))
            .expect("qq")
            .uid(),
        qmailq
    );
    assert_eq!(
        fs::metadata(staged.join("queue")).expect("q").gid(),
        gid("qmail")
    );
    let o = installer(
        &[
            OsStr::new("-c"),
            OsStr::new("-d"),
            stage.as_os_str(),
            OsStr::new("/var/qmail"),
        ],
        false,
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{}", o.stderr);

    // A second run creates nothing and leaves the account files as they are.
    let (p1, g1) = (
        fs::read(etc.join("passwd")).expect("p"),
        fs::read(etc.join("group")).expect("g"),
    );
    let o = installer(
        &[
            OsStr::new("-U"),
            OsStr::new("-d"),
            stage.as_os_str(),
            OsStr::new("-b"),
            bin_dir().as_os_str(),
            OsStr::new("/var/qmail"),
        ],
        false,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stderr.contains("created"), "{}", o.stderr);
    assert_eq!(fs::read(etc.join("passwd")).expect("p"), p1);
    assert_eq!(fs::read(etc.join("group")).expect("g"), g1);
}

#[test]
fn usage_errors() {
    let o = installer(&["-c", "-b", "/tmp", "/var/qmail"], false);
    assert_eq!(o.code, 100, "{}", o.stderr);
    let o = installer(&["-x"], false);
    assert_eq!(o.code, 100, "{}", o.stderr);
    assert!(o.stderr.contains("usage: rqmail-install"), "{}", o.stderr);
    let o = installer(&["-c", "relative/home"], false);
    assert_eq!(o.code, 111, "{}", o.stderr);
}
