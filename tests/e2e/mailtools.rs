//! The mail readers' tools, driven the way users and .qmail files drive them:
//!
//! * maildir2mbox moving a Maildir filled by the real qmail-local into a real mbox, with
//!   a lock held by the test (flock, and fcntl as mail readers take it) and the `$MAILTMP`
//!   file renamed over `$MAIL`; its failures with netqmail's messages;
//! * maildirwatch writing its screens to a pseudo-terminal the test opens;
//! * qbiff run by the real qmail-local from a .qmail file, writing to a pseudo-terminal
//!   listed in a login record (as root: the record is the private `/var/run/utmp` of a
//!   mount namespace), only when the terminal is the user's and has `biff y`;
//! * qreceipt answering `Notice-Requested-Upon-Delivery-To` through the whole mail system
//!   (qmail-inject, qmail-send, qmail-local, qmail-queue), and its failures;
//! * mailsubj through the real qmail-inject into a test queue.
//!
//! Expected bytes are written out from netqmail's rules; the comparison with netqmail's
//! own programs was made by hand (see the report and the man pages). As root the tools
//! run as nobody (setpriv) in directories nobody owns; otherwise as the invoking user.

use crate::relsys::{System, mail_home, maildir_messages};
use rqmail_tests::single::{
    WAIT, chown_tree, chown_user, nobody, runner_name, user_cmd, wait_until,
};
use rqmail_tests::{Home, bin, is_root, run_with_input, tool};
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

// ------------------------------------------------------------------------ helpers

/// A directory the tools' user owns (nobody when root), searchable by everyone.
fn user_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("rqmail-tools-")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    chown_user(d.path());
    d
}

/// Makes `dir` a Maildir (new, cur, tmp).
fn make_maildir(dir: &Path) {
    for s in ["new", "cur", "tmp"] {
        fs::create_dir_all(dir.join(s)).expect("maildir");
    }
}

/// Sets the access and modification times of `p` to `secs` since 1970.
fn set_time(p: &Path, atime: u64, mtime: u64) {
    let t = |s| UNIX_EPOCH + Duration::from_secs(s);
    fs::File::open(p)
        .expect("open")
        .set_times(
            fs::FileTimes::new()
                .set_accessed(t(atime))
                .set_modified(t(mtime)),
        )
        .expect("set times");
}

/// Writes `data` to `p` with modification time `mtime`.
fn put(p: &Path, data: &[u8], mtime: u64) {
    fs::write(p, data).expect("write");
    set_time(p, mtime, mtime);
}

/// Delivers `msg` from `sender` to `local` with the real qmail-local into `home`'s
/// default delivery `./Maildir/`, as the tools' user. Returns qmail-local's report.
fn qmail_local(home: &Path, local: &str, sender: &str, msg: &[u8]) -> String {
    let m = home.join(".msg");
    fs::write(&m, msg).expect("message");
    let mut c = user_cmd(home, &bin("qmail-local"));
    c.args(["--", &runner_name()])
        .arg(home)
        .args([local, "", "", "testhost.example", sender, "./Maildir/"])
        .stdin(fs::File::open(&m).expect("open message"));
    let out = c.output().expect("qmail-local");
    let _ = fs::remove_file(&m);
    let report = String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned();
    assert_eq!(out.status.code(), Some(0), "qmail-local: {report}");
    report
}

/// The files of a directory, by name.
fn names(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().as_bytes().to_vec())
        .collect();
    v.sort();
    v
}

/// Runs maildir2mbox as the tools' user in `dir` with `env`; (exit code, stderr).
fn maildir2mbox(dir: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut c = user_cmd(dir, &bin("maildir2mbox"));
    c.envs(env.iter().copied());
    let out = c.output().expect("maildir2mbox");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ------------------------------------------------------------------------ maildir2mbox

const MSG_A: &[u8] = b"Subject: one\n\nFrom the start\n>From quoted\nlast line without newline";

#[test]
fn maildir2mbox_moves_a_maildir_filled_by_qmail_local_into_an_mbox() {
    let d = user_dir();
    let home = d.path();
    make_maildir(&home.join("Maildir"));
    chown_tree(home);
    // Two deliveries by the real qmail-local (Return-Path lines), one of them a bounce.
    qmail_local(home, "me", "joe@a.example", MSG_A);
    qmail_local(home, "me", "", b"Subject: bounce\n\nbody\n");
    let md = home.join("Maildir");
    let mut delivered = names(&md.join("new"));
    assert_eq!(delivered.len(), 2);
    // Oldest first: give them the times netqmail would order them by.
    delivered.sort_by_key(|n| {
        let c = fs::read(md.join("new").join(std::ffi::OsStr::from_bytes(n))).expect("read");
        !c.starts_with(b"Return-Path: <joe@")
    });
    for (i, n) in delivered.iter().enumerate() {
        let p = md.join("new").join(std::ffi::OsStr::from_bytes(n));
        set_time(&p, 1_000_000_000, 1_000_000_000 + i as u64);
    }
    // Messages put there by hand: in cur/ with flags, an odd name, one that is no mail
    // reader's business (a dot file), one delivered "in the future" (not this second's
    // turn yet), and leftovers in tmp/ (old ones are removed, fresh ones kept).
    put(
        &md.join("cur/1000000002.x.host:2,S"),
        b"no header\n",
        1_000_000_002,
    );
    put(
        &md.join(std::ffi::OsStr::from_bytes(b"new/odd name \xff")),
        b"Return-Path: <a b\tc@d>\n\nx\n",
        1_000_000_003,
    );
    put(&md.join("new/.hidden"), b"not mail\n", 1_000_000_000);
    put(&md.join("new/future"), b"later\n", 4_000_000_000);
    put(&md.join("tmp/crashed"), b"old\n", 1_000_000_000);
    fs::write(md.join("tmp/fresh"), b"being written\n").expect("tmp");
    // An existing mbox, relative to the Maildir.
    let mbox = md.join("Mailbox");
    let old = b"From old@x Thu Jan 01 00:00:00 1970\nold\n\n";
    fs::write(&mbox, old).expect("mbox");
    fs::set_permissions(&mbox, fs::Permissions::from_mode(0o644)).expect("chmod");
    chown_tree(home);
    let ino = fs::metadata(&mbox).expect("mbox").ino();

    let md_s = md.to_str().expect("utf-8 path");
    let env = [
        ("MAILDIR", md_s),
        ("MAIL", "Mailbox"),
        ("MAILTMP", "Mailbox.tmp"),
    ];
    let (code, err) = maildir2mbox(home, &env);
    assert_eq!((code, err.as_str()), (0, ""));

    let mut want = old.to_vec();
    want.extend_from_slice(
        b"From joe@a.example Sun Sep 09 01:46:40 2001\n\
Return-Path: <joe@a.example>\n\
Delivered-To: me@testhost.example\n\
Subject: one\n\
\n\
>From the start\n\
>>From quoted\n\
last line without newline\n\
\n\
From MAILER-DAEMON Sun Sep 09 01:46:41 2001\n\
Return-Path: <>\n\
Delivered-To: me@testhost.example\n\
Subject: bounce\n\
\n\
body\n\
\n\
From XXX Sun Sep 09 01:46:42 2001\n\
no header\n\
\n\
From a-b-c@d Sun Sep 09 01:46:43 2001\n\
Return-Path: <a b\tc@d>\n\
\n\
x\n\
\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&fs::read(&mbox).expect("mbox")),
        String::from_utf8_lossy(&want)
    );
    // $MAILTMP, written with umask 077, took $MAIL's place.
    let m = fs::metadata(&mbox).expect("mbox");
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_ne!(m.ino(), ino, "the new mbox is renamed into place");
    assert!(!md.join("Mailbox.tmp").exists());
    // Moved messages are gone; the rest stays.
    assert_eq!(
        names(&md.join("new")),
        [b".hidden".to_vec(), b"future".to_vec()]
    );
    assert!(names(&md.join("cur")).is_empty());
    assert_eq!(names(&md.join("tmp")), [b"fresh".to_vec()]);

    // Nothing new: $MAIL is not touched at all.
    fs::remove_file(md.join("new/future")).expect("rm");
    let before = fs::metadata(&mbox).expect("mbox");
    let (code, err) = maildir2mbox(home, &env);
    assert_eq!((code, err.as_str()), (0, ""));
    let after = fs::metadata(&mbox).expect("mbox");
    assert_eq!((before.ino(), before.mtime()), (after.ino(), after.mtime()));
    assert!(!md.join("Mailbox.tmp").exists());

    // A missing mbox is created.
    fs::remove_file(&mbox).expect("rm");
    put(
        &md.join("new/again"),
        b"Return-Path: <x@y>\n\nz\n",
        1_000_000_000,
    );
    chown_tree(&md);
    let (code, err) = maildir2mbox(home, &env);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        fs::read(&mbox).expect("mbox"),
        b"From x@y Sun Sep 09 01:46:40 2001\nReturn-Path: <x@y>\n\nz\n\n"
    );
}

/// A Maildir with one message and an mbox, both the tools' user's.
fn one_message(home: &Path) -> PathBuf {
    let md = home.join("Maildir");
    make_maildir(&md);
    put(
        &md.join("new/m1"),
        b"Return-Path: <a@b>\n\nhi\n",
        1_000_000_000,
    );
    fs::write(md.join("Mailbox"), b"").expect("mbox");
    chown_tree(home);
    md
}

/// Runs maildir2mbox on `md` while `hold` keeps a lock on the mbox; the program must
/// wait (nothing written, nothing removed) until the lock goes.
fn waits_for_lock(md: &Path, hold: impl FnOnce() -> Box<dyn FnOnce()>) {
    let release = hold();
    let mut c = user_cmd(md, &bin("maildir2mbox"));
    c.env("MAILDIR", md)
        .env("MAIL", "Mailbox")
        .env("MAILTMP", "Mailbox.tmp")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("maildir2mbox");
    // Whatever the machine's speed, it cannot get past the lock while it is held.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "did not wait"
    );
    assert!(!md.join("Mailbox.tmp").exists());
    assert_eq!(names(&md.join("new")), [b"m1".to_vec()]);
    release();
    let deadline = Instant::now() + WAIT;
    let st = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "maildir2mbox never got the lock");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.code(), Some(0));
    assert!(names(&md.join("new")).is_empty());
    assert!(
        fs::read(md.join("Mailbox"))
            .expect("mbox")
            .ends_with(b"Return-Path: <a@b>\n\nhi\n\n")
    );
}

#[test]
fn maildir2mbox_waits_for_a_mail_readers_lock() {
    // flock, as netqmail's own programs lock.
    let d = user_dir();
    let md = one_message(d.path());
    let path = md.join("Mailbox");
    waits_for_lock(&md, || {
        let l = rqmail_tests::lock_file(path.to_str().expect("path"));
        Box::new(move || drop(l))
    });

    // An fcntl lock, as many mail readers take it.
    let d = user_dir();
    let md = one_message(d.path());
    let path = md.join("Mailbox");
    waits_for_lock(&md, || {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open mbox");
        let lk = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        nix::fcntl::fcntl(f.as_fd(), nix::fcntl::FcntlArg::F_SETLK(&lk)).expect("fcntl lock");
        Box::new(move || drop(f))
    });
}

#[test]
fn maildir2mbox_failures_keep_every_message() {
    let d = user_dir();
    let home = d.path();
    let md = one_message(home);
    let md_s = md.to_str().expect("path");
    let fatal = |s: &str| format!("maildir2mbox: fatal: {s}\n");

    // Missing variables, checked in netqmail's order.
    let cases: &[(&[(&str, &str)], String)] = &[
        (
            &[("MAILDIR", md_s), ("MAILTMP", "t")],
            fatal("MAIL not set"),
        ),
        (
            &[("MAILDIR", md_s), ("MAIL", "m")],
            fatal("MAILTMP not set"),
        ),
        (&[("MAIL", "m"), ("MAILTMP", "t")], fatal("MAILDIR not set")),
    ];
    for (env, want) in cases {
        assert_eq!(maildir2mbox(home, env), (111, want.clone()));
    }
    let nowhere = home.join("nowhere");
    assert_eq!(
        maildir2mbox(
            home,
            &[
                ("MAILDIR", nowhere.to_str().expect("path")),
                ("MAIL", "m"),
                ("MAILTMP", "t")
            ]
        ),
        (
            111,
            fatal(&format!(
                "unable to chdir to {}: file does not exist",
                nowhere.display()
            ))
        )
    );
    let env = [
        ("MAILDIR", md_s),
        ("MAIL", "Mailbox"),
        ("MAILTMP", "Mailbox.tmp"),
    ];

    // $MAILTMP where it cannot be made.
    let (code, err) = maildir2mbox(
        home,
        &[
            ("MAILDIR", md_s),
            ("MAIL", "Mailbox"),
            ("MAILTMP", "no/such/dir"),
        ],
    );
    assert_eq!(
        (code, err),
        (
            111,
            fatal("unable to create no/such/dir: file does not exist")
        )
    );

    // $MAILTMP naming the mbox itself: refused, the mbox kept (netqmail truncates it).
    fs::write(md.join("Mailbox"), b"kept\n").expect("mbox");
    assert_eq!(
        maildir2mbox(
            home,
            &[
                ("MAILDIR", md_s),
                ("MAIL", "Mailbox"),
                ("MAILTMP", "./Mailbox")
            ]
        ),
        (111, fatal("./Mailbox is the same file as Mailbox"))
    );
    assert_eq!(fs::read(md.join("Mailbox")).expect("mbox"), b"kept\n");
    fs::write(md.join("Mailbox"), b"").expect("mbox");

    // A directory among the messages cannot be read: nothing moves.
    fs::create_dir(md.join("new/sub")).expect("mkdir");
    set_time(&md.join("new/sub"), 1_000_000_001, 1_000_000_001);
    chown_tree(home);
    assert_eq!(
        maildir2mbox(home, &env),
        (
            111,
            fatal("unable to read $MAILDIR/new/sub: is a directory")
        )
    );
    assert_eq!(names(&md.join("new")), [b"m1".to_vec(), b"sub".to_vec()]);
    assert_eq!(fs::read(md.join("Mailbox")).expect("mbox"), b"");
    fs::remove_dir(md.join("new/sub")).expect("rmdir");

    // A Maildir without cur/.
    fs::remove_dir(md.join("cur")).expect("rmdir");
    assert_eq!(
        maildir2mbox(home, &env),
        (
            111,
            fatal("unable to scan $MAILDIR/cur: file does not exist")
        )
    );
    fs::create_dir(md.join("cur")).expect("mkdir");
    chown_tree(home);

    // Permissions apply: the tools run as nobody when the tests run as root.
    {
        let mbox = md.join("Mailbox");
        // Writable but unreadable: locked, then not readable.
        fs::set_permissions(&mbox, fs::Permissions::from_mode(0o200)).expect("chmod");
        assert_eq!(
            maildir2mbox(home, &env),
            (111, fatal("unable to read Mailbox: access denied"))
        );
        fs::set_permissions(&mbox, fs::Permissions::from_mode(0o000)).expect("chmod");
        assert_eq!(
            maildir2mbox(home, &env),
            (111, fatal("unable to lock Mailbox: access denied"))
        );
        fs::set_permissions(&mbox, fs::Permissions::from_mode(0o600)).expect("chmod");
        // An unreadable message.
        let m1 = md.join("new/m1");
        fs::set_permissions(&m1, fs::Permissions::from_mode(0o000)).expect("chmod");
        assert_eq!(
            maildir2mbox(home, &env),
            (111, fatal("unable to read $MAILDIR/new/m1: access denied"))
        );
        fs::set_permissions(&m1, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(names(&md.join("new")), [b"m1".to_vec()]);
        assert_eq!(fs::read(&mbox).expect("mbox"), b"");
        // Moved, but new/ does not let the message go: a warning, exit 0.
        fs::set_permissions(md.join("new"), fs::Permissions::from_mode(0o500)).expect("chmod");
        assert_eq!(
            maildir2mbox(home, &env),
            (
                0,
                "maildir2mbox: warning: $MAILDIR/new/m1 will be delivered twice; unable to unlink: access denied\n"
                    .to_string()
            )
        );
        fs::set_permissions(md.join("new"), fs::Permissions::from_mode(0o700)).expect("chmod");
        assert_eq!(
            fs::read(&mbox).expect("mbox"),
            b"From a@b Sun Sep 09 01:46:40 2001\nReturn-Path: <a@b>\n\nhi\n\n"
        );
    }
}

// ------------------------------------------------------------------------ a terminal

/// A pseudo-terminal: the test reads the master side.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    /// A new one; with `raw`, bytes pass unchanged (no CR added before LF).
    fn open(raw: bool) -> Pty {
        let p = nix::pty::openpty(None, None).expect("openpty");
        let path = nix::unistd::ttyname(&p.slave).expect("ttyname");
        if raw {
            let mut t = nix::sys::termios::tcgetattr(&p.slave).expect("tcgetattr");
            nix::sys::termios::cfmakeraw(&mut t);
            nix::sys::termios::tcsetattr(&p.slave, nix::sys::termios::SetArg::TCSANOW, &t)
                .expect("tcsetattr");
        }
        Pty {
            master: p.master,
            slave: p.slave,
            path,
        }
    }

    /// Everything written to the terminal so far: the test writes a mark after it and
    /// reads up to the mark (a terminal passes bytes on in order, but not at once).
    fn drain(&self) -> Vec<u8> {
        const MARK: &[u8] = b"<test mark>";
        nix::unistd::write(&self.slave, MARK).expect("write mark");
        let mut out = Vec::new();
        self.read_until(&mut out, MARK);
        let at = out.len() - MARK.len();
        assert_eq!(&out[at..], MARK, "bytes after the mark");
        out.truncate(at);
        out
    }

    /// Reads into `out` for at most `wait` (or what is there already, for zero).
    fn read_for(&self, out: &mut Vec<u8>, wait: Duration) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            let mut buf = [0u8; 4096];
            match nix::unistd::read(&self.master, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Reads until `out` holds `want` (hang-guarded); panics showing what came.
    fn read_until(&self, out: &mut Vec<u8>, want: &[u8]) {
        let deadline = Instant::now() + WAIT;
        while !out.windows(want.len().max(1)).any(|w| w == want) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {:?}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(out)
            );
            self.read_for(out, Duration::from_millis(200));
        }
    }
}

/// A terminal shows `\n` as `\r\n`.
fn crlf(s: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 16);
    for &c in s {
        if c == b'\n' {
            v.push(b'\r');
        }
        v.push(c);
    }
    v
}

// ------------------------------------------------------------------------ maildirwatch

#[test]
fn maildirwatch_draws_its_summary_on_a_terminal_twice_a_minute() {
    let d = user_dir();
    let md = d.path().join("Maildir");
    make_maildir(&md);
    put(
        &md.join("new/1"),
        b"Return-Path: <joe@a.example>\nDelivered-To: me@b.example\nFrom: Jo\xe9 <joe@a.example>\nSubject: one\n two\n\nbody \x1b[2J line\nmore\n",
        1_000_000_000,
    );
    put(&md.join("new/2"), b"plain text, no header\n", 1_000_000_001);
    let long = format!("Subject: {}\n\n{}", "x".repeat(200), "y".repeat(300));
    put(&md.join("new/3"), long.as_bytes(), 1_000_000_002);
    put(
        &md.join("new/4"),
        b"Return-Path: <>\nFrom:\n\n",
        1_000_000_003,
    );
    put(&md.join("cur/seen"), b"Subject: not new\n\n", 1_000_000_000);
    // An unreadable message is left out (the tools never run as root).
    put(&md.join("new/5"), b"Subject: secret\n\n", 1_000_000_004);
    chown_tree(d.path());
    fs::set_permissions(md.join("new/5"), fs::Permissions::from_mode(0o000)).expect("chmod");

    let pty = Pty::open(false);
    let mut c = user_cmd(d.path(), &bin("maildirwatch"));
    c.env("MAILDIR", &md)
        .stdin(Stdio::null())
        .stdout(Stdio::from(pty.slave.try_clone().expect("dup")))
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("maildirwatch");
    let mut screen = b"\x1b[;H\x1b[;J".to_vec();
    screen.extend_from_slice(
        b"FROM <joe@a.example> TO <me@b.example>\n\
\x1b[1mFrom: Jo/ <joe@a.example>\x1b[0m\n\
one/ two//body /[2J line/more/\n\
\n\
FROM ? TO <?>\n\
/plain text, no header/\n\
\n\
FROM ? TO <?>\n",
    );
    screen.extend_from_slice("x".repeat(158).as_bytes());
    screen.extend_from_slice(b"\n\nFROM <> TO <?>\n\x1b[1mFrom:\x1b[0m\n/\n\n");
    let first = crlf(&screen);
    let mut got = Vec::new();
    pty.read_until(&mut got, &first);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&first)
    );

    // New mail shows on the next screen, thirty seconds later.
    put(
        &md.join("new/6"),
        b"Return-Path: <new@c.example>\nSubject: arrived\n\n",
        1_000_000_005,
    );
    chown_tree(&md);
    let mut second = screen.clone();
    second.extend_from_slice(b"FROM <new@c.example> TO <?>\narrived//\n\n");
    let mut want = first.clone();
    want.extend_from_slice(&crlf(&second));
    pty.read_until(&mut got, &want);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn maildirwatch_needs_a_maildir() {
    let d = user_dir();
    let run = |env: &[(&str, &Path)]| {
        let mut c = user_cmd(d.path(), &bin("maildirwatch"));
        c.envs(env.iter().map(|(k, v)| (*k, v.as_os_str())));
        let out = c.output().expect("maildirwatch");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let f = |s: &str| {
        (
            Some(111),
            String::new(),
            format!("maildirwatch: fatal: {s}\n"),
        )
    };
    assert_eq!(run(&[]), f("MAILDIR not set"));
    let nowhere = d.path().join("nowhere");
    assert_eq!(
        run(&[("MAILDIR", &nowhere)]),
        f(&format!(
            "unable to chdir to {}: file does not exist",
            nowhere.display()
        ))
    );
    assert_eq!(
        run(&[("MAILDIR", d.path())]),
        f("unable to scan $MAILDIR/new: file does not exist")
    );
}

// ------------------------------------------------------------------------ qbiff

/// A login record (glibc's utmp layout) for `user` on `line`.
fn utmp_record(user: &str, line: &str) -> Vec<u8> {
    let mut r = vec![0u8; 384];
    r[0..2].copy_from_slice(&7i16.to_ne_bytes()); // USER_PROCESS
    r[4..8].copy_from_slice(&(std::process::id() as i32).to_ne_bytes());
    r[8..8 + line.len()].copy_from_slice(line.as_bytes());
    r[44..44 + user.len()].copy_from_slice(user.as_bytes());
    r
}

/// `cmd` run in a mount namespace of its own whose /var/run is `run` (so that its
/// /var/run/utmp is the test's), then as the tools' user.
fn with_utmp(run: &Path, program: &Path) -> Command {
    let (uid, gid) = nobody();
    let mut c = Command::new(tool("unshare"));
    c.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" /var/run && exec \"$@\"",
    ])
    .arg(run)
    .arg(tool("setpriv"))
    .arg(format!("--reuid={uid}"))
    .arg(format!("--regid={gid}"))
    .arg("--clear-groups")
    .arg(program)
    .env_clear()
    .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin");
    c
}

#[test]
fn qbiff_from_a_dot_qmail_writes_to_the_users_terminal_when_biff_is_on() {
    if !is_root() {
        eprintln!(
            "qbiff_from_a_dot_qmail_writes_to_the_users_terminal_when_biff_is_on: needs root (a private /var/run/utmp)"
        );
        return;
    }
    let (uid, gid) = nobody();
    let d = user_dir();
    let home = d.path();
    make_maildir(&home.join("Maildir"));
    fs::write(
        home.join(".qmail"),
        format!("./Maildir/\n|{}\n", bin("qbiff").display()),
    )
    .expect("dot-qmail");
    chown_tree(home);
    let run = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(run.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let pty = Pty::open(true);
    let line = pty
        .path
        .strip_prefix("/dev")
        .expect("a terminal under /dev")
        .to_str()
        .expect("name")
        .to_string();
    let msg = b"Subject: Hello \xe9 there\n\nThe body\nsecond line\n";
    let notice =
        b"\r\n\x07*** TO <me> FROM <joe@a.example>\r\n    Hello / there//The body/second line/\r\n";

    // (terminal mode, terminal owner, user of the login record, notice expected)
    let cases: &[(u32, u32, &str, bool)] = &[
        (0o700, uid, "nobody", true),   // biff y, mesg n
        (0o720, uid, "nobody", true),   // biff y, mesg y
        (0o620, uid, "nobody", false),  // biff n, mesg y
        (0o600, uid, "nobody", false),  // biff n, mesg n
        (0o700, 0, "nobody", false),    // biff y, but not nobody's terminal
        (0o700, uid, "nobodyx", false), // nobody is not logged in there
    ];
    for &(mode, owner, who, expect) in cases {
        std::os::unix::fs::chown(&pty.path, Some(owner), Some(gid)).expect("chown tty");
        fs::set_permissions(&pty.path, fs::Permissions::from_mode(mode)).expect("chmod tty");
        let mut utmp = utmp_record("someone", &line);
        utmp.extend(utmp_record(who, &line));
        fs::write(run.path().join("utmp"), utmp).expect("utmp");
        let m = home.join(".msg");
        fs::write(&m, msg).expect("message");
        let mut c = with_utmp(run.path(), &bin("qmail-local"));
        c.args(["--", "nobody"])
            .arg(home)
            .args([
                "me",
                "",
                "",
                "testhost.example",
                "joe@a.example",
                "./Maildir/",
            ])
            .env("QMAIL_HOME", home)
            .current_dir("/")
            .stdin(fs::File::open(&m).expect("message"));
        let out = c.output().expect("qmail-local");
        let report = String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned();
        assert_eq!(
            (out.status.code(), report.as_str()),
            (Some(0), "did 1+0+1\n"),
            "mode {mode:o}"
        );
        let got = pty.drain();
        let want: &[u8] = if expect { notice } else { b"" };
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "mode {mode:o} owner {owner} record {who}"
        );
    }
    // The deliveries themselves went on regardless.
    assert_eq!(names(&home.join("Maildir/new")).len(), cases.len());

    // Without USER, SENDER or LOCAL, qbiff quietly does nothing.
    std::os::unix::fs::chown(&pty.path, Some(uid), Some(gid)).expect("chown tty");
    fs::set_permissions(&pty.path, fs::Permissions::from_mode(0o700)).expect("chmod tty");
    fs::write(run.path().join("utmp"), utmp_record("nobody", &line)).expect("utmp");
    for missing in ["USER", "SENDER", "LOCAL"] {
        let mut c = with_utmp(run.path(), &bin("qbiff"));
        for (k, v) in [("USER", "nobody"), ("SENDER", "a@b"), ("LOCAL", "me")] {
            if k != missing {
                c.env(k, v);
            }
        }
        let (code, out, err) = run_with_input(c, msg);
        assert_eq!((code, out.len(), err.len()), (0, 0, 0), "without {missing}");
        assert!(pty.drain().is_empty(), "without {missing}");
    }
    // With all three, the same run writes.
    let mut c = with_utmp(run.path(), &bin("qbiff"));
    c.env("USER", "nobody")
        .env("SENDER", "a@b")
        .env("LOCAL", "me");
    assert_eq!(run_with_input(c, msg).0, 0);
    assert_eq!(
        String::from_utf8_lossy(&pty.drain()),
        "\r\n\x07*** TO <me> FROM <a@b>\r\n    Hello / there//The body/second line/\r\n"
    );
}

// ------------------------------------------------------------------------ qreceipt

#[test]
fn qreceipt_answers_a_notice_request_through_the_mail_system() {
    let h = mail_home();
    let alias = h.path().join("alias");
    make_maildir(&alias.join("JoeMaildir"));
    fs::write(
        alias.join(".qmail-joe"),
        format!(
            "./JoeMaildir/\n|{} joe@testhost.example\n",
            h.path().join("bin/qreceipt").display()
        ),
    )
    .expect("dot-qmail");
    chown_tree(&alias);
    let sys = System::start(h.path());

    let inject = |msg: &str| {
        let mut c = user_cmd(h.path(), &h.path().join("bin/qmail-inject"));
        c.args(["-f", "sender@testhost.example"]);
        let (code, _, err) = run_with_input(c, msg.as_bytes());
        assert_eq!(code, 0, "qmail-inject: {}", String::from_utf8_lossy(&err));
    };
    inject(
        "To: joe@testhost.example\nSubject: please confirm\nMessage-ID: <m1@a.example>\n\
Notice-Requested-Upon-Delivery-To: \"Joe\" <joe@testhost.example>, other@x.example\n\nhello\n",
    );
    // Not asked for joe: no notice.
    inject(
        "To: joe@testhost.example\nSubject: no receipt\n\
Notice-Requested-Upon-Delivery-To: someone@testhost.example\n\nhello\n",
    );
    let joe = alias.join("JoeMaildir");
    let inbox = alias.join("Maildir");
    wait_until("both messages in joe's Maildir", || {
        maildir_messages(&joe).len() == 2
    });
    wait_until("the notice in the sender's Maildir", || {
        !maildir_messages(&inbox).is_empty()
    });
    assert_eq!(sys.terminate(), Some(0));
    let got = maildir_messages(&inbox);
    assert_eq!(got.len(), 1, "one notice only");
    let n = &got[0];
    assert!(
        n.starts_with(b"Return-Path: <>\nDelivered-To: sender@testhost.example\nReceived: (qmail "),
        "{}",
        String::from_utf8_lossy(n)
    );
    let text = b"\nFrom: DELIVERY NOTICE SYSTEM <sender@testhost.example>\n\
To: <sender@testhost.example>\n\
Subject: success notice\n\
\n\
Hi! This is the qreceipt program. Your message was delivered to the\n\
following address: joe@testhost.example. Thanks for asking.\n\
Your Message-ID: <m1@a.example>\n";
    assert!(n.ends_with(text), "{}", String::from_utf8_lossy(n));
    // Exactly the Received line between the delivery lines and the notice.
    assert_eq!(n.iter().filter(|&&c| c == b'\n').count(), 3 + 7);
}

#[test]
fn qreceipt_queues_the_notice_itself_and_fails_as_netqmail() {
    let h = Home::new();
    let msg = b"Message-Id: <1@x>\nNotice-Requested-Upon-Delivery-To: me@b.example\n\nbody\n";
    let qreceipt = |env: &[(&str, &str)], args: &[&str], input: &[u8]| {
        let mut c = h.cmd("qreceipt");
        c.args(args).envs(env.iter().copied());
        let (code, out, err) = run_with_input(c, input);
        assert!(out.is_empty());
        (code, String::from_utf8_lossy(&err).into_owned())
    };
    // Through the real qmail-queue into the test queue.
    assert_eq!(
        qreceipt(&[("SENDER", "joe smith@a.example")], &["me@b.example"], msg),
        (0, String::new())
    );
    let q = h.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender(), b"");
    assert_eq!(q[0].recipients(), [b"joe smith@a.example".to_vec()]);
    assert_eq!(
        String::from_utf8_lossy(q[0].body_after_received()),
        "From: DELIVERY NOTICE SYSTEM <\"joe smith\"@a.example>\n\
To: <\"joe smith\"@a.example>\n\
Subject: success notice\n\
\n\
Hi! This is the qreceipt program. Your message was delivered to the\n\
following address: me@b.example. Thanks for asking.\n\
Your Message-Id: <1@x>\n"
    );

    // No notice: not asked, asked in the body, bounces and double bounces.
    for (sender, input) in [
        (
            "a@b",
            &b"Notice-Requested-Upon-Delivery-To: other@b.example\n\n"[..],
        ),
        (
            "a@b",
            b"Subject: x\n\nNotice-Requested-Upon-Delivery-To: me@b.example\n",
        ),
        ("", msg),
        ("#@[]", msg),
    ] {
        assert_eq!(
            qreceipt(&[("SENDER", sender)], &["me@b.example"], input),
            (0, String::new())
        );
    }
    assert_eq!(h.queued().len(), 1);

    // Usage, unparsable requests, qmail-queue's verdicts.
    let usage = (
        100,
        "qreceipt: usage: qreceipt deliveryaddress\n".to_string(),
    );
    assert_eq!(qreceipt(&[("SENDER", "a@b")], &[], msg), usage);
    assert_eq!(qreceipt(&[], &["me@b.example"], msg), usage);
    let bad = b"Notice-Requested-Upon-Delivery-To: \"me@b.example\n\n";
    assert_eq!(
        qreceipt(&[("SENDER", "a@b")], &["me@b.example"], bad),
        (
            100,
            "qreceipt: fatal: unable to parse this: Notice-Requested-Upon-Delivery-To: \"me@b.example\n"
                .to_string()
        )
    );
    for (code, want) in [
        (
            "31",
            (100, "qreceipt: fatal: permanent qmail-queue error\n"),
        ),
        (
            "53",
            (111, "qreceipt: fatal: temporary qmail-queue error\n"),
        ),
    ] {
        let fake = h.path().join("fakeqq");
        fs::write(&fake, format!("#!/bin/sh\ncat >/dev/null\nexit {code}\n")).expect("fake");
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
        let got = qreceipt(
            &[
                ("SENDER", "a@b"),
                ("QMAILQUEUE", fake.to_str().expect("path")),
            ],
            &["me@b.example"],
            msg,
        );
        assert_eq!(got, (want.0, want.1.to_string()));
    }
    assert_eq!(h.queued().len(), 1);
}

// ------------------------------------------------------------------------ mailsubj

#[test]
fn mailsubj_sends_through_qmail_inject() {
    let h = Home::new();
    let mailsubj = |args: &[&str], input: &[u8]| {
        let mut c = h.cmd("mailsubj");
        c.args(args).env("QMAILUSER", "me");
        let (code, out, err) = run_with_input(c, input);
        assert!(out.is_empty());
        (code, String::from_utf8_lossy(&err).into_owned())
    };
    assert_eq!(
        mailsubj(
            &[
                "Weekly report \\t 50%",
                "joe@example.com,",
                "Ann <ann@example.org>,",
                "local"
            ],
            b"line one\nline two"
        ),
        (0, String::new())
    );
    let q = h.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender(), b"me@testhost.example");
    let mut rcpts = q[0].recipients();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            b"ann@example.org".to_vec(),
            b"joe@example.com".to_vec(),
            b"local@testhost.example".to_vec()
        ]
    );
    let m = String::from_utf8_lossy(q[0].body_after_received()).into_owned();
    let lines: Vec<&str> = m.lines().collect();
    assert!(lines.contains(&"Subject: Weekly report \\t 50%"), "{m}");
    assert!(
        lines.contains(&"To: joe@example.com, Ann <ann@example.org>, local@testhost.example"),
        "{m}"
    );
    assert!(lines.contains(&"From: me@testhost.example"), "{m}");
    assert!(lines.iter().any(|l| l.starts_with("Date: ")), "{m}");
    assert!(m.ends_with("\n\nline one\nline two\n"), "{m}");

    // Usage; a subject without recipients gives an empty To field, and qmail-inject
    // queues the message for no one, as netqmail's does.
    assert_eq!(
        mailsubj(&[], b"x"),
        (
            100,
            "mailsubj: usage: mailsubj subject recip ...\n".to_string()
        )
    );
    assert_eq!(mailsubj(&["subject only"], b"x\n"), (0, String::new()));
    let q = h.queued();
    assert_eq!(q.len(), 2);
    let only = q
        .iter()
        .find(|m| {
            m.body_after_received()
                .windows(21)
                .any(|w| w == b"Subject: subject only")
        })
        .expect("the message with no recipient");
    assert!(only.recipients().is_empty());

    // Input that cannot be read: nothing is sent.
    let mut c = h.cmd("mailsubj");
    c.args(["s", "a@b.example"])
        .env("QMAILUSER", "me")
        .stdin(fs::File::open(h.path()).expect("a directory"));
    let out = c.output().expect("mailsubj");
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "mailsubj: fatal: unable to read input: is a directory\n"
    );

    // No qmail-inject.
    fs::remove_file(h.path().join("bin/qmail-inject")).expect("rm");
    assert_eq!(
        mailsubj(&["s", "a@b.example"], b"x\n"),
        (
            111,
            format!(
                "mailsubj: fatal: unable to run {}: file does not exist\n",
                h.path().join("bin/qmail-inject").display()
            )
        )
    );
    assert_eq!(h.queued().len(), 2);
}
