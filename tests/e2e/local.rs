//! Local delivery: the built qmail-local run with netqmail's argument list and a message
//! file on descriptor 0 (as qmail-lspawn runs it), delivering into real Maildirs, mbox
//! files, programs and the real qmail-queue; qmail-getpw, qmail-newu, qmail-pw2u and
//! maildirmake as qmail-lspawn and an administrator use them.
//!
//! As root, deliveries run as an unprivileged user created for the tests (`rqmlocal`,
//! root mode) or as nobody (single-user mode); qmail-local itself refuses to deliver as
//! root. Not as root, they run as the invoking user.

use rqmail_tests::home::Tmpfs;
use rqmail_tests::users::as_user;
use rqmail_tests::{Home, bin, ensure_qmail_users, is_root, tool, user_ids};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The unprivileged user root-mode tests deliver as, and its password-database home.
const TEST_USER: &str = "rqmlocal";
const TEST_USER_HOME: &str = "/var/tmp/rqmlocal";

/// As root, creates the test user (once, under a lock) and its home, owned by it.
fn ensure_test_user() -> (u32, u32) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    assert!(is_root(), "creating a test user needs root");
    ONCE.call_once(|| {
        let (uid, gid) = rqmail_tests::ensure_system_user(TEST_USER, TEST_USER_HOME);
        fs::create_dir_all(TEST_USER_HOME).expect("mkdir test user home");
        std::os::unix::fs::chown(TEST_USER_HOME, Some(uid), Some(gid)).expect("chown");
        fs::set_permissions(TEST_USER_HOME, fs::Permissions::from_mode(0o755)).expect("chmod");
    });
    user_ids(TEST_USER)
}

/// Who deliveries run as: the test user as root, else the invoking user.
fn delivery_user() -> (String, u32, u32) {
    if is_root() {
        let (u, g) = ensure_test_user();
        (TEST_USER.to_string(), u, g)
    } else {
        let uid = nix::unistd::getuid();
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| "me".into());
        (name, uid.as_raw(), nix::unistd::getgid().as_raw())
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A delivery rig: a home directory owned by the delivery user, a qmail home whose
/// queue that user can write (for forwards), and a place for message files.
struct Rig {
    dir: tempfile::TempDir,
    q: Home,
    user: String,
    uid: u32,
    gid: u32,
}

/// What one qmail-local run gave: the exit code and the report (descriptors 1 and 2
/// joined, as qmail-lspawn joins them).
struct Run {
    code: i32,
    out: String,
}

impl Rig {
    fn new() -> Rig {
        let (user, uid, gid) = delivery_user();
        Rig::for_user(user, uid, gid)
    }

    fn for_user(user: String, uid: u32, gid: u32) -> Rig {
        let dir = tempfile::Builder::new()
            .prefix("rqmail-local-")
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let r = Rig {
            dir,
            q: Home::new(),
            user,
            uid,
            gid,
        };
        fs::create_dir(r.home()).expect("mkdir home");
        fs::set_permissions(r.home(), fs::Permissions::from_mode(0o755)).expect("chmod");
        r.chown(&r.home());
        if is_root() {
            r.q.chown_all(uid, gid);
        }
        r
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn chown(&self, p: &Path) {
        if is_root() {
            std::os::unix::fs::chown(p, Some(self.uid), Some(self.gid)).expect("chown");
        }
    }

    /// Writes `home/name` owned by the user.
    fn put(&self, name: &str, content: &str, mode: u32) {
        let p = self.home().join(name);
        fs::write(&p, content).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        self.chown(&p);
    }

    /// Makes `home/name` a maildir with the built maildirmake, as the user.
    fn maildir(&self, name: &str) -> PathBuf {
        let p = self.home().join(name);
        let out = as_user(self.uid, self.gid, &bin("maildirmake"))
            .arg(&p)
            .output()
            .expect("maildirmake");
        assert_eq!(out.status.code(), Some(0), "maildirmake: {out:?}");
        p
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.home().join(name)).unwrap_or_default()
    }

    /// Runs qmail-local with the message `msg` on descriptor 0: `qmail-local [opts] --
    /// user homedir local dash ext testhost.example sender defaultdelivery`.
    fn local(
        &self,
        opts: &[&str],
        args: (&str, &str, &str),
        sender: &str,
        defaultdelivery: &str,
        msg: &[u8],
    ) -> Run {
        self.local_traced(None, opts, args, sender, defaultdelivery, msg)
    }

    /// [`Rig::local`], under `strace -f -y -e trace=TRACE -o FILE` when `strace` is
    /// `Some((FILE, TRACE))`.
    fn local_traced(
        &self,
        strace: Option<(&Path, &str)>,
        opts: &[&str],
        (local, dash, ext): (&str, &str, &str),
        sender: &str,
        defaultdelivery: &str,
        msg: &[u8],
    ) -> Run {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let msgp = self.dir.path().join(format!("msg{n}"));
        fs::write(&msgp, msg).expect("write message");
        let outp = self.dir.path().join(format!("out{n}"));
        let out = fs::File::create(&outp).expect("out file");
        let mut c = match strace {
            None => as_user(self.uid, self.gid, &bin("qmail-local")),
            Some((file, trace)) => {
                let mut c = Command::new(tool("strace"));
                c.args(["-f", "-qq", "-y", "-e"])
                    .arg(format!("trace={trace}"))
                    .arg("-o")
                    .arg(file);
                let inner = as_user(self.uid, self.gid, &bin("qmail-local"));
                c.arg(inner.get_program()).args(inner.get_args());
                c
            }
        };
        c.args(opts)
            .arg("--")
            .arg(&self.user)
            .arg(self.home())
            .args([
                local,
                dash,
                ext,
                "testhost.example",
                sender,
                defaultdelivery,
            ])
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.q.path().join("bin").display()),
            )
            .env("QMAIL_HOME", self.q.path())
            .current_dir("/")
            .stdin(fs::File::open(&msgp).expect("open message"))
            .stdout(Stdio::from(out.try_clone().expect("dup")))
            .stderr(Stdio::from(out));
        let st = c.status().expect("run qmail-local");
        Run {
            code: st.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&fs::read(&outp).expect("read out")).into_owned(),
        }
    }

    /// The files in a maildir's new/ (name, contents), sorted by name.
    fn new_mail(&self, maildir: &str) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = fs::read_dir(self.home().join(maildir).join("new"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            fs::read(e.path()).expect("read mail"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

const MSG: &[u8] =
    b"From: a@b.example\nSubject: test\n\nFrom the start\n>From quoted\nlast line without newline";

#[test]
fn maildir_delivery_writes_exact_bytes_into_new() {
    let r = Rig::new();
    r.maildir("Maildir");
    r.put(".qmail-box", "# deliver here\n./Maildir/\n", 0o644);
    let run = r.local(
        &[],
        ("joe-box", "-", "box"),
        "s@x.example",
        "./Mailbox\n",
        MSG,
    );
    assert_eq!((run.code, run.out.as_str()), (0, "did 1+0+0\n"));
    let mail = r.new_mail("Maildir");
    assert_eq!(mail.len(), 1);
    let mut want = b"Return-Path: <s@x.example>\nDelivered-To: joe-box@testhost.example\n".to_vec();
    want.extend_from_slice(MSG);
    assert_eq!(mail[0].1, want);
    // SECONDS.MusecPpidQn.HOST, mode 0600, nothing left in tmp/.
    let name = &mail[0].0;
    let parts: Vec<&str> = name.splitn(3, '.').collect();
    assert!(parts[0].parse::<u64>().is_ok(), "{name}");
    assert!(parts[1].starts_with('M') && parts[1].contains('P') && parts[1].ends_with("Q1"));
    let md = fs::metadata(r.home().join("Maildir/new").join(name)).unwrap();
    assert_eq!(md.mode() & 0o777, 0o600);
    assert_eq!(md.uid(), r.uid);
    assert_eq!(
        fs::read_dir(r.home().join("Maildir/tmp")).unwrap().count(),
        0
    );

    // Quoting in Return-Path, the bounce sender, two maildirs in one .qmail.
    r.maildir("Other");
    r.put(".qmail-two", "./Maildir/\n./Other/\n", 0o644);
    let run = r.local(&[], ("joe-two", "-", "two"), "a b@c", "", b"x\n");
    assert_eq!((run.code, run.out.as_str()), (0, "did 2+0+0\n"));
    let want = b"Return-Path: <\"a b\"@c>\nDelivered-To: joe-two@testhost.example\nx\n";
    assert_eq!(r.new_mail("Other")[0].1, want);
    assert_eq!(r.new_mail("Maildir").len(), 2);

    // A maildir that is not there: temporary failure with netqmail's words.
    r.put(".qmail-gone", "./Nowhere/\n", 0o644);
    let run = r.local(&[], ("joe-gone", "-", "gone"), "", "", b"x\n");
    assert_eq!(
        (run.code, run.out.as_str()),
        (111, "Unable to chdir to maildir. (#4.2.1)\n")
    );
}

#[test]
fn default_delivery_when_dot_qmail_is_missing_or_empty() {
    let r = Rig::new();
    r.maildir("Maildir");
    // dash empty: a missing .qmail means the default delivery.
    let run = r.local(&[], ("joe", "", ""), "", "./Maildir/\n", b"hi\n");
    assert_eq!((run.code, run.out.as_str()), (0, "did 1+0+0\n"));
    assert_eq!(
        r.new_mail("Maildir")[0].1,
        b"Return-Path: <>\nDelivered-To: joe@testhost.example\nhi\n"
    );
    // An empty .qmail-x too.
    r.put(".qmail-x", "", 0o644);
    let run = r.local(&[], ("joe-x", "-", "x"), "", "./Maildir/", b"hi\n");
    assert_eq!((run.code, run.out.as_str()), (0, "did 1+0+0\n"));
    // A blank first line (here: the default delivery is empty) is a deferral.
    let run = r.local(&[], ("joe", "", ""), "", "", b"hi\n");
    assert_eq!(
        (run.code, run.out.as_str()),
        (111, "Uh-oh: first line of .qmail file is blank. (#4.2.1)\n")
    );
}

/// Parses an mbox From_ line: `From SENDER Www Mmm DD HH:MM:SS YYYY`.
fn check_from_line(line: &str, sender: &str) {
    let rest = line
        .strip_prefix(&format!("From {sender} "))
        .unwrap_or_else(|| panic!("bad From_ line {line:?}"));
    let f: Vec<&str> = rest.split(' ').collect();
    assert_eq!(f.len(), 5, "{line:?}");
    assert!(["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].contains(&f[0]));
    assert_eq!(f[1].len(), 3);
    assert_eq!(f[2].len(), 2, "day of month with two digits: {line:?}");
    assert_eq!(f[3].len(), 8);
    assert!(f[4].parse::<u32>().is_ok());
}

#[test]
fn mbox_delivery_with_from_line_quoting_and_blank_line() {
    let r = Rig::new();
    r.put(".qmail-mbox", "./Mailbox\n", 0o644);
    for _ in 0..2 {
        let run = r.local(&[], ("joe-mbox", "-", "mbox"), "s p@x.example", "", MSG);
        assert_eq!((run.code, run.out.as_str()), (0, "did 1+0+0\n"));
    }
    let mbox = String::from_utf8(r.read("Mailbox")).unwrap();
    let one_len = mbox.len() / 2;
    let (first, second) = mbox.split_at(one_len);
    assert_eq!(first.len(), second.len());
    for m in [first, second] {
        let (from, rest) = m.split_once('\n').unwrap();
        check_from_line(from, "s-p@x.example");
        assert_eq!(
            rest,
            "Return-Path: <\"s p\"@x.example>\nDelivered-To: joe-mbox@testhost.example\n\
             From: a@b.example\nSubject: test\n\n>From the start\n>>From quoted\n\
             last line without newline\n\n"
        );
    }
    assert_eq!(
        fs::metadata(r.home().join("Mailbox")).unwrap().mode() & 0o777,
        0o600
    );

    // The empty sender is MAILER-DAEMON.
    r.put(".qmail-bounce", "./Bounces\n", 0o644);
    let run = r.local(&[], ("joe-bounce", "-", "bounce"), "", "", b"x\n");
    assert_eq!(run.code, 0);
    let b = String::from_utf8(r.read("Bounces")).unwrap();
    check_from_line(b.lines().next().unwrap(), "MAILER-DAEMON");
    assert!(b.ends_with("\nx\n\n"));

    // A file that cannot be opened: netqmail's words.
    r.put(".qmail-bad", "./no/such/dir/mbox\n", 0o644);
    let run = r.local(&[], ("joe-bad", "-", "bad"), "", "", b"x\n");
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            111,
            "Unable to open ./no/such/dir/mbox: file does not exist. (#4.2.1)\n"
        )
    );
}

/// The first delivery to an mbox that does not exist yet makes the file: its name is a
/// new entry of the directory, which qmail-local fsyncs (after the data, before it
/// reports success) so that a power loss cannot take the whole mbox away with the
/// delivery reported (found with rqmail-powerloss's mbox recipient, see RELIABILITY.md).
/// Later deliveries, to a file that already holds mail, need no directory fsync. The
/// order is read from an strace of qmail-local.
#[test]
fn new_mbox_name_is_fsynced_before_success_is_reported() {
    if !is_root() {
        eprintln!("skipped: strace of a process of another user needs root");
        return;
    }
    let r = Rig::new();
    r.put(".qmail-mbox", "./Mailbox\n", 0o644);
    let home = r.home();
    let home = home.to_str().unwrap();
    let mbox_fsync =
        |l: &str| l.contains("fsync(") && l.ends_with(&format!("<{home}/Mailbox>) = 0"));
    let dir_fsync = |l: &str| l.contains("fsync(") && l.ends_with(&format!("<{home}>) = 0"));
    for (round, want_dir_fsync) in [(1, true), (2, false)] {
        let trace = r.dir.path().join(format!("trace{round}"));
        let run = r.local_traced(
            Some((&trace, "openat,fsync,fdatasync,write,exit_group")),
            &[],
            ("joe-mbox", "-", "mbox"),
            "s@x.example",
            "",
            MSG,
        );
        assert_eq!(
            (run.code, run.out.as_str()),
            (0, "did 1+0+0\n"),
            "round {round}"
        );
        let t = fs::read_to_string(&trace).expect("strace's output");
        let lines: Vec<&str> = t.lines().collect();
        let data = lines
            .iter()
            .position(|l| mbox_fsync(l))
            .unwrap_or_else(|| panic!("round {round}: no fsync of the mbox in:\n{t}"));
        // qmail-local reports "did 1+0+0" on descriptor 1 when it is done.
        let report = lines
            .iter()
            .position(|l| l.contains("write(1") && l.contains("did 1+0+0"))
            .unwrap_or_else(|| panic!("round {round}: no report in:\n{t}"));
        assert!(
            data < report,
            "round {round}: reported before the fsync:\n{t}"
        );
        let synced = lines[data..report].iter().any(|l| dir_fsync(l));
        assert_eq!(
            synced,
            want_dir_fsync,
            "round {round}: directory fsync between the mbox's fsync and the report:\n{}",
            lines[data..=report].join("\n")
        );
    }
    assert!(
        String::from_utf8(r.read("Mailbox"))
            .unwrap()
            .matches("\nFrom ")
            .count()
            == 1
    );
}

#[test]
fn mbox_delivery_waits_for_flock_and_fcntl_locks() {
    let r = Rig::new();
    r.put(".qmail", "./Mailbox\n", 0o644);
    r.put("Mailbox", "", 0o600);
    let mbox = r.home().join("Mailbox");

    // An flock held by this process: the delivery waits until it is released.
    let f = fs::OpenOptions::new().append(true).open(&mbox).unwrap();
    f.lock().unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(|| r.local(&[], ("joe", "", ""), "s@x", "", b"one\n"));
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(fs::metadata(&mbox).unwrap().len(), 0, "wrote under a lock");
        f.unlock().unwrap();
        let run = h.join().unwrap();
        assert_eq!((run.code, run.out.as_str()), (0, "did 1+0+0\n"));
    });
    assert!(r.read("Mailbox").ends_with(b"\none\n\n"));
    let len = fs::metadata(&mbox).unwrap().len();

    // A POSIX (fcntl) lock held by another process: same.
    let mut holder = Command::new(rqmail_tests::python())
        .arg("-c")
        .arg(
            "import fcntl,sys\nf=open(sys.argv[1],'a')\nfcntl.lockf(f,fcntl.LOCK_EX)\n\
             print('locked',flush=True)\nsys.stdin.read()\n",
        )
        .arg(&mbox)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "locked\n");
    std::thread::scope(|s| {
        let h = s.spawn(|| r.local(&[], ("joe", "", ""), "s@x", "", b"two\n"));
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(
            fs::metadata(&mbox).unwrap().len(),
            len,
            "wrote under a lock"
        );
        drop(holder.stdin.take());
        let _ = holder.wait();
        let run = h.join().unwrap();
        assert_eq!((run.code, run.out.as_str()), (0, "did 1+0+0\n"));
    });
    assert!(r.read("Mailbox").ends_with(b"\ntwo\n\n"));
}

#[test]
fn program_sees_qmail_command_environment_and_the_message() {
    let r = Rig::new();
    r.put(
        ".qmail-list-default",
        "|printf '%s|' \"$USER\" \"$HOME\" \"$LOCAL\" \"$HOST\" \"$HOST2\" \"$HOST3\" \"$HOST4\" \
         \"$EXT\" \"$EXT2\" \"$EXT3\" \"$EXT4\" \"$DEFAULT\" \"$SENDER\" \"$NEWSENDER\" \
         \"$RECIPIENT\" \"$DTLINE\" \"$RPLINE\" > env.out; printf '%s' \"$UFLINE\" > ufline.out; \
         cat > msg.out; pwd > pwd.out\n",
        0o644,
    );
    let msg = b"Subject: env\n\nbody\n";
    let run = r.local(
        &[],
        ("joe-List-a.b-c", "-", "List-a.b-c"),
        "s@x.example",
        "",
        msg,
    );
    assert_eq!((run.code, run.out.as_str()), (0, "did 0+0+1\n"));
    let env = String::from_utf8(r.read("env.out")).unwrap();
    let f: Vec<&str> = env.split('|').collect();
    let home = r.home().display().to_string();
    assert_eq!(
        &f[..17],
        &[
            r.user.as_str(),
            home.as_str(),
            "joe-List-a.b-c",
            "testhost.example",
            "testhost",
            "testhost",
            "testhost",
            "List-a.b-c",
            "a.b-c",
            "c",
            "",
            "a.b-c",
            "s@x.example",
            "s@x.example",
            "joe-List-a.b-c@testhost.example",
            "Delivered-To: joe-List-a.b-c@testhost.example\n",
            "Return-Path: <s@x.example>\n",
        ]
    );
    let uf = String::from_utf8(r.read("ufline.out")).unwrap();
    check_from_line(uf.strip_suffix('\n').unwrap(), "s@x.example");
    // The message from its first byte, without the added header lines.
    assert_eq!(r.read("msg.out"), msg);
    assert_eq!(
        String::from_utf8(r.read("pwd.out")).unwrap().trim_end(),
        home
    );
}

#[test]
fn program_exit_codes_decide_the_result() {
    let r = Rig::new();
    r.maildir("Maildir");
    let cases: &[(&str, &str, i32, &str)] = &[
        ("ok", "|exit 0\n", 0, "did 0+0+1\n"),
        (
            "bounce",
            "|echo 'Sorry, no such list.'; exit 100\n",
            100,
            "Sorry, no such list.\n",
        ),
        ("sysexits", "|exit 67\n", 111, ""),
        ("hard", "|exit 77\n", 100, ""),
        ("defer", "|echo busy; exit 111\n", 111, "busy\n"),
        (
            "crash",
            "|kill -9 $$\n",
            111,
            "Aack, child crashed. (#4.3.0)\n",
        ),
        // 99: success, and the rest of the file is ignored.
        ("stop", "|exit 99\n./Maildir/\n", 0, "did 0+0+1\n"),
        // A failure stops the file: the maildir line after it is not delivered.
        ("fail-first", "|exit 100\n./Maildir/\n", 100, ""),
    ];
    for (ext, dq, code, out) in cases {
        r.put(&format!(".qmail-{ext}"), dq, 0o644);
        let run = r.local(&[], (&format!("joe-{ext}"), "-", ext), "s@x", "", b"m\n");
        assert_eq!((run.code, run.out.as_str()), (*code, *out), "case {ext}");
    }
    assert!(r.new_mail("Maildir").is_empty());
}

#[test]
fn extension_values_never_reach_the_shell_as_code() {
    let r = Rig::new();
    r.put(".qmail-default", "|printf '%s' \"$EXT\" > ext.out\n", 0o644);
    let evil = "$(touch${IFS}pwned)`touch${IFS}pwned2`;touch pwned3";
    let run = r.local(&[], (&format!("joe-{evil}"), "-", evil), "s@x", "", b"m\n");
    assert_eq!((run.code, run.out.as_str()), (0, "did 0+0+1\n"));
    assert_eq!(r.read("ext.out"), evil.as_bytes());
    for p in ["pwned", "pwned2", "pwned3"] {
        assert!(!r.home().join(p).exists(), "{p} was created");
    }
    // Dots and slashes in an extension cannot leave the .qmail namespace.
    r.put(".qmail-a:::b", "|printf folded > folded.out\n", 0o644);
    let run = r.local(&[], ("joe-A./.B", "-", "A./.B"), "s@x", "", b"m\n");
    assert_eq!(run.code, 0, "{}", run.out);
    assert_eq!(r.read("folded.out"), b"folded");
}

#[test]
fn default_files_are_searched_up_the_dashes() {
    let r = Rig::new();
    r.put(
        ".qmail-a-default",
        "|printf \"a-default $DEFAULT\" > which\n",
        0o644,
    );
    r.put(
        ".qmail-default",
        "|printf \"default $DEFAULT\" > which\n",
        0o644,
    );
    let check = |local: &str, ext: &str, want: &str| {
        let run = r.local(&[], (local, "-", ext), "s@x", "", b"m\n");
        assert_eq!((run.code, run.out.as_str()), (0, "did 0+0+1\n"), "{ext}");
        assert_eq!(String::from_utf8(r.read("which")).unwrap(), want, "{ext}");
    };
    check("joe-a-b-c", "a-b-c", "a-default b-c");
    check("joe-A-x", "A-x", "a-default x");
    check("joe-ab", "ab", "default ab");
    check("joe-", "", "default ");
    r.put(".qmail-a-b-c", "|printf exact > which\n", 0o644);
    check("joe-a-b-c", "a-b-c", "exact");

    // Nothing matches: bounce.
    let r2 = Rig::new();
    let run = r2.local(&[], ("joe-zz", "-", "zz"), "s@x", "./Mailbox\n", b"m\n");
    assert_eq!(
        (run.code, run.out.as_str()),
        (100, "Sorry, no mailbox here by that name. (#5.1.1)\n")
    );
}

#[test]
fn delivered_to_loops_bounce() {
    let r = Rig::new();
    r.maildir("Maildir");
    r.put(".qmail", "./Maildir/\n", 0o644);
    let looping = b"Received: x\nDelivered-To: joe@testhost.example\nSubject: y\n\nbody\n";
    let run = r.local(&[], ("joe", "", ""), "s@x", "", looping);
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            100,
            "This message is looping: it already has my Delivered-To line. (#5.4.6)\n"
        )
    );
    // Another recipient's line, or the line in the body, is not a loop.
    let fine = b"Delivered-To: other@testhost.example\n\nDelivered-To: joe@testhost.example\n";
    let run = r.local(&[], ("joe", "", ""), "s@x", "", fine);
    assert_eq!((run.code, run.out.as_str()), (0, "did 1+0+0\n"));
    // The Delivered-To line qmail-local adds makes a second pass a loop.
    let first = r.new_mail("Maildir")[0].1.clone();
    let run = r.local(&[], ("joe", "", ""), "s@x", "", &first);
    assert_eq!(run.code, 100);
}

#[test]
fn home_and_dot_qmail_permission_checks() {
    let r = Rig::new();
    r.maildir("Maildir");
    r.put(".qmail", "./Maildir/\n", 0o644);
    let home = r.home();
    let chmod = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();

    // Sticky home: the user is editing; defer. With -n, a warning.
    chmod(&home, 0o1755);
    let run = r.local(&[], ("joe", "", ""), "s@x", "", b"m\n");
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            111,
            "Home directory is sticky: user is editing his .qmail file. (#4.2.1)\n"
        )
    );
    let run = r.local(&["-n"], ("joe", "", ""), "s@x", "", b"m\n");
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            0,
            "Warning: home directory is sticky.\nmaildir ./Maildir/\ndid 1+0+0\n"
        )
    );
    chmod(&home, 0o757);
    let run = r.local(&[], ("joe", "", ""), "s@x", "", b"m\n");
    assert_eq!(
        (run.code, run.out.as_str()),
        (111, "Uh-oh: home directory is writable. (#4.7.0)\n")
    );
    chmod(&home, 0o755);
    chmod(&home.join(".qmail"), 0o646);
    let run = r.local(&[], ("joe", "", ""), "s@x", "", b"m\n");
    assert_eq!(
        (run.code, run.out.as_str()),
        (111, "Uh-oh: .qmail file is writable. (#4.7.0)\n")
    );
    // The execute bit allows forwards only.
    chmod(&home.join(".qmail"), 0o755);
    let run = r.local(&[], ("joe", "", ""), "s@x", "", b"m\n");
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            111,
            "Uh-oh: .qmail has file delivery but has x bit set. (#4.7.0)\n"
        )
    );
    // An unreadable .qmail is a deferral, not "no such file".
    if is_root() {
        chmod(&home.join(".qmail"), 0o000);
        let run = r.local(&[], ("joe", "", ""), "s@x", "", b"m\n");
        assert_eq!(
            (run.code, run.out.as_str()),
            (111, "Unable to open .qmail: access denied. (#4.3.0)\n")
        );
    }
    assert!(r.new_mail("Maildir").is_empty());
}

#[test]
fn dash_n_describes_the_instructions() {
    let r = Rig::new();
    r.put(
        ".qmail-all",
        "# comment\n./Mailbox  \n/var/mail/x/\n|prog arg1  arg2\t\n&fwd@a.example\nbare@b.example\n+list\n",
        0o644,
    );
    let run = r.local(&["-n"], ("joe-all", "-", "all"), "s@x", "", b"");
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            0,
            "mbox ./Mailbox\nmaildir /var/mail/x/\nprogram prog arg1  arg2\n\
             forward fwd@a.example\nforward bare@b.example\ndid 2+2+1\n"
        )
    );
    assert!(!r.home().join("Mailbox").exists());
}

#[test]
fn forwards_go_through_the_real_qmail_queue() {
    let r = Rig::new();
    r.maildir("Maildir");
    r.put(
        ".qmail-fwd",
        "&one@remote.example\n./Maildir/\ntwo@remote.example\n",
        0o644,
    );
    let msg = b"Subject: fwd\n\nforwarded body\n";
    let run = r.local(&[], ("joe-fwd", "-", "fwd"), "orig@sender.example", "", msg);
    assert_eq!(run.code, 0, "{}", run.out);
    let (did, qp) = run.out.split_once('\n').unwrap();
    assert_eq!(did, "did 1+2+0");
    let qp = qp.strip_prefix("qp ").unwrap().trim_end();
    assert!(qp.parse::<u32>().unwrap() > 0);
    let q = r.q.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender(), b"orig@sender.example");
    assert_eq!(
        q[0].recipients(),
        vec![
            b"one@remote.example".to_vec(),
            b"two@remote.example".to_vec()
        ]
    );
    // The forward carries Delivered-To but no Return-Path.
    let mut want = b"Delivered-To: joe-fwd@testhost.example\n".to_vec();
    want.extend_from_slice(msg);
    assert_eq!(q[0].body_after_received(), want);
    assert_eq!(r.new_mail("Maildir").len(), 1);
}

#[test]
fn forwarding_sender_follows_the_owner_files() {
    let r = Rig::new();
    r.put(
        ".qmail-list",
        "&sub@remote.example\n|printf '%s' \"$NEWSENDER\" > ns\n",
        0o644,
    );
    let forward = |sender: &str| {
        let before = r.q.queued().len();
        let run = r.local(&[], ("joe-list", "-", "list"), sender, "", b"m\n");
        assert_eq!(run.code, 0, "{}", run.out);
        assert_eq!(r.q.queued().len(), before + 1);
        String::from_utf8(r.read("ns")).unwrap()
    };
    let ns = forward("s@x.example");
    assert_eq!(ns, "s@x.example");
    r.put(".qmail-list-owner", "./owner-mail\n", 0o644);
    let ns = forward("s@x.example");
    assert_eq!(ns, "joe-list-owner@testhost.example");
    r.put(".qmail-list-owner-default", "./owner-mail\n", 0o644);
    let ns = forward("s@x.example");
    assert_eq!(ns, "joe-list-owner-@testhost.example-@[]");
    // Bounces keep their sender.
    let ns = forward("");
    assert_eq!(ns, "");
    let ns = forward("#@[]");
    assert_eq!(ns, "#@[]");
    let senders: Vec<Vec<u8>> = r.q.queued().iter().map(|m| m.sender()).collect();
    for s in [
        &b"s@x.example"[..],
        b"joe-list-owner@testhost.example",
        b"joe-list-owner-@testhost.example-@[]",
        b"",
        b"#@[]",
    ] {
        assert!(senders.iter().any(|x| x == s), "{s:?} not in {senders:?}");
    }
}

#[test]
fn failed_forward_is_reported_with_qmail_queue_text() {
    let r = Rig::new();
    r.put(".qmail", "&one@remote.example\n", 0o644);
    // A queue that is not there: qmail-queue fails; the report carries netqmail's text.
    fs::remove_dir_all(r.q.queue().join("todo")).unwrap();
    let run = r.local(&[], ("joe", "", ""), "s@x", "", b"m\n");
    assert_eq!(run.code, 111, "{}", run.out);
    assert!(
        run.out.starts_with("Unable to forward message: qq ") && run.out.ends_with(").\n"),
        "{}",
        run.out
    );
}

#[test]
fn helper_programs_in_dot_qmail_lines() {
    let r = Rig::new();
    // preline: the three lines, then the message.
    r.put(".qmail-pre", "|preline cat > pre.out\n", 0o644);
    let run = r.local(&[], ("joe-pre", "-", "pre"), "s@x.example", "", b"m\n");
    assert_eq!((run.code, run.out.as_str()), (0, "did 0+0+1\n"));
    let pre = String::from_utf8(r.read("pre.out")).unwrap();
    let mut lines = pre.lines();
    check_from_line(lines.next().unwrap(), "s@x.example");
    assert_eq!(
        lines.collect::<Vec<_>>(),
        [
            "Return-Path: <s@x.example>",
            "Delivered-To: joe-pre@testhost.example",
            "m"
        ]
    );
    // bouncesaying: a bounce with the given text.
    r.put(
        ".qmail-gone",
        "|bouncesaying 'This address is gone.'\n",
        0o644,
    );
    let run = r.local(&[], ("joe-gone", "-", "gone"), "s@x", "", b"m\n");
    assert_eq!(
        (run.code, run.out.as_str()),
        (100, "This address is gone.\n")
    );
    // bouncesaying with a program that fails: no bounce.
    r.put(".qmail-cond", "|bouncesaying 'no' false\n", 0o644);
    let run = r.local(&[], ("joe-cond", "-", "cond"), "s@x", "", b"m\n");
    assert_eq!((run.code, run.out.as_str()), (0, "did 0+0+1\n"));
    // except turns success into a bounce.
    r.put(".qmail-exc", "|except true\n", 0o644);
    let run = r.local(&[], ("joe-exc", "-", "exc"), "s@x", "", b"m\n");
    assert_eq!((run.code, run.out.as_str()), (100, ""));
    // condredirect: forwards with the original sender, and stops the file (99).
    r.maildir("Maildir");
    r.put(
        ".qmail-cr",
        "|condredirect other@remote.example true\n./Maildir/\n",
        0o644,
    );
    let run = r.local(&[], ("joe-cr", "-", "cr"), "s@x.example", "", b"m\n");
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(run.out.starts_with("condredirect: qp "), "{}", run.out);
    assert!(run.out.ends_with("did 0+0+1\n"));
    assert!(r.new_mail("Maildir").is_empty());
    // forward: with NEWSENDER.
    r.put(
        ".qmail-f",
        "|forward a@remote.example b@remote.example\n",
        0o644,
    );
    let run = r.local(&[], ("joe-f", "-", "f"), "s@x.example", "", b"m\n");
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(run.out.starts_with("forward: qp "), "{}", run.out);
    let q = r.q.queued();
    assert_eq!(q.len(), 2);
    let cr = q
        .iter()
        .find(|m| m.recipients() == [b"other@remote.example".to_vec()])
        .expect("condredirect's message");
    assert_eq!(cr.sender(), b"s@x.example");
    assert_eq!(
        cr.body_after_received(),
        b"Delivered-To: joe-cr@testhost.example\nm\n"
    );
    let f = q
        .iter()
        .find(|m| m.recipients().len() == 2)
        .expect("forward's message");
    assert_eq!(f.sender(), b"s@x.example");
}

#[test]
fn qmail_local_refuses_to_deliver_as_root() {
    assert!(is_root(), "this test needs root");
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(d.path().join(".qmail"), "|touch ran\n").unwrap();
    let msg = d.path().join("msg");
    fs::write(&msg, "m\n").unwrap();
    let out = Command::new(bin("qmail-local"))
        .arg("--")
        .args(["root"])
        .arg(d.path())
        .args(["root", "", "", "testhost.example", "", "./Mailbox\n"])
        .stdin(fs::File::open(&msg).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        out.stderr,
        b"Not allowed to perform deliveries as root. (#4.3.0)\n"
    );
    assert!(!d.path().join("ran").exists());
}

#[test]
fn usage_errors() {
    let out = Command::new(bin("qmail-local"))
        .args(["joe", "relative/home", "joe", "", "", "h", "", "./Mailbox"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        out.stderr,
        b"qmail-local: usage: qmail-local [ -nN ] user homedir local dash ext domain sender aliasempty\n"
    );
    let out = Command::new(bin("qmail-local"))
        .arg("joe")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(100));
    // getopt as netqmail's: an unknown letter is named, a word starting with "--" ends
    // the options silently (the one operand left is then too few).
    let usage: &[u8] = b"qmail-local: usage: qmail-local [ -nN ] user homedir local dash ext domain sender aliasempty\n";
    let out = Command::new(bin("qmail-local"))
        .args(["-nx", "joe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        out.stderr,
        [&b"qmail-local: illegal option -- x\n"[..], usage].concat()
    );
    let out = Command::new(bin("qmail-local"))
        .args(["--x", "joe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(out.stderr, usage);
}

/// preline's options, with netqmail's getopt: the complaint, then the usage; "--" ends
/// the options.
#[test]
fn preline_options() {
    let run = |args: &[&str]| {
        Command::new(bin("preline"))
            .args(args)
            .env("UFLINE", "u")
            .env("RPLINE", "r")
            .env("DTLINE", "d")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["-q", "echo"]);
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        out.stderr,
        b"preline: illegal option -- q\npreline: usage: preline cmd [ arg ... ]\n"
    );
    // After "--", "-d" is tr's (delete the x's), not preline's (drop DTLINE); tr reads
    // all its input, so preline never writes into a closed pipe.
    let out = run(&["-fr", "--", "tr", "-d", "x"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"d");
}

/// qmail-lspawn's reading of users/cdb (netqmail's nughde_get), written here from its
/// description so that the test does not trust rqmail's own library.
fn lspawn_lookup(cdb: &Path, local: &str) -> Option<Vec<u8>> {
    let db = control::Cdb::open_optional(cdb)
        .expect("open users/cdb")
        .expect("users/cdb exists");
    let wild = db.get(b"").expect("read").expect("wildcard record");
    let mut lower = format!("!{local}\0").into_bytes();
    lower.make_ascii_lowercase();
    let mut i = lower.len();
    let mut flagwild = false;
    while i > 0 {
        if (!flagwild || i == 1 || wild.contains(&lower[i - 1]))
            && let Some(mut v) = db.get(&lower[..i]).expect("read")
        {
            if flagwild {
                v.extend_from_slice(&local.as_bytes()[i - 1..]);
            }
            v.push(0);
            return Some(v);
        }
        i -= 1;
        flagwild = true;
    }
    None
}

/// Splits six NUL-terminated fields.
fn fields(b: &[u8]) -> Vec<String> {
    let v: Vec<String> = b
        .split(|&c| c == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert_eq!(v.len(), 7, "six NUL-terminated fields: {b:?}");
    assert_eq!(v[6], "");
    v[..6].to_vec()
}

#[test]
fn qmail_newu_builds_the_cdb_qmail_lspawn_reads() {
    let h = Home::new();
    let assign = "=joe.shmoe:joe:503:78:/home/joe:::\n\
                  +:alias:7790:2108:/var/qmail/alias:-::\n\
                  +joe-:joe:507:100:/home/joe:-::\n\
                  =joe:joe:507:100:/home/joe:::\n\
                  +list=:joe:507:100:/home/joe:-:lists-:\n\
                  .\n";
    fs::write(h.path().join("users/assign"), assign).unwrap();
    let out = h.cmd("qmail-newu").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let cdb = h.path().join("users/cdb");
    assert_eq!(fs::metadata(&cdb).unwrap().mode() & 0o777, 0o644);
    assert!(!h.path().join("users/cdb.tmp").exists());
    let get = |l: &str| lspawn_lookup(&cdb, l).map(|v| fields(&v));
    assert_eq!(
        get("Joe.Shmoe").unwrap(),
        ["joe", "503", "78", "/home/joe", "", ""]
    );
    assert_eq!(
        get("joe").unwrap(),
        ["joe", "507", "100", "/home/joe", "", ""]
    );
    assert_eq!(
        get("joe-Direct").unwrap(),
        ["joe", "507", "100", "/home/joe", "-", "Direct"]
    );
    assert_eq!(
        get("bill").unwrap(),
        ["alias", "7790", "2108", "/var/qmail/alias", "-", "bill"]
    );
    assert_eq!(get("list=x").unwrap()[5], "lists-x");

    // A broken assign leaves the old cdb alone.
    let before = fs::read(&cdb).unwrap();
    fs::write(h.path().join("users/assign"), "=a:b:1:2:/h::\n.\n").unwrap();
    let out = h.cmd("qmail-newu").output().unwrap();
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        out.stderr,
        b"qmail-newu: fatal: bad format in users/assign\n"
    );
    assert_eq!(fs::read(&cdb).unwrap(), before);
    fs::write(h.path().join("users/assign"), "=a:b:1:2:/h:::\n").unwrap();
    assert_eq!(
        h.cmd("qmail-newu").output().unwrap().status.code(),
        Some(111)
    );
    fs::remove_file(h.path().join("users/assign")).unwrap();
    let out = h.cmd("qmail-newu").output().unwrap();
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        out.stderr,
        b"qmail-newu: fatal: unable to open users/assign\n"
    );
    assert_eq!(fs::read(&cdb).unwrap(), before);
}

#[test]
fn assignment_from_users_cdb_drives_a_delivery() {
    // An address assigned through users/assign to the delivery user with a home of the
    // test's own: qmail-newu, the lookup, then qmail-local with those fields.
    let r = Rig::new();
    r.maildir("Maildir");
    r.put(".qmail-sales", "./Maildir/\n", 0o644);
    let assign = format!(
        "+sales-:{}:{}:{}:{}:-:sales:\n.\n",
        r.user,
        r.uid,
        r.gid,
        r.home().display()
    );
    fs::write(r.q.path().join("users/assign"), assign).unwrap();
    let out = r.q.cmd("qmail-newu").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let f = fields(&lspawn_lookup(&r.q.path().join("users/cdb"), "sales-").unwrap());
    assert_eq!(f[0], r.user);
    assert_eq!(f[1], r.uid.to_string());
    assert_eq!((f[4].as_str(), f[5].as_str()), ("-", "sales"));
    let run = r.local(&[], ("sales-", &f[4], &f[5]), "s@x", "", b"m\n");
    assert_eq!((run.code, run.out.as_str()), (0, "did 1+0+0\n"));
    assert_eq!(r.new_mail("Maildir").len(), 1);
}

#[test]
fn qmail_pw2u_output_feeds_qmail_newu() {
    let h = Home::new();
    let d = tempfile::tempdir().unwrap();
    let (uid, gid) = (5000, 100);
    let home = d.path().join("joe");
    fs::create_dir(&home).unwrap();
    let other = d.path().join("other");
    fs::create_dir(&other).unwrap();
    // Not created: the default rules skip alias, which is fatal.
    let alias_home = d.path().join("alias");
    let passwd = format!(
        "root:x:0:0:root:/root:/bin/sh\n\
         alias:*:7790:2108::{a}:/bin/true\n\
         joe:x:{uid}:{gid}:Joe:{h}:/bin/sh\n\
         Caps:x:{uid}:{gid}::{h}:/bin/sh\n\
         bob:x:{b}:{gid}::{o}:/bin/sh\n\
         broken line\n",
        h = home.display(),
        o = other.display(),
        a = alias_home.display(),
        b = uid + 1,
    );
    fs::write(h.path().join("users/mailnames"), "joe:joe:js\n").unwrap();
    fs::write(h.path().join("users/subusers"), "sales:joe:sales:\n").unwrap();
    fs::write(h.path().join("users/append"), "=extra:joe:1:2:/x:::\n").unwrap();
    let run = |args: &[&str]| {
        let mut c = h.cmd("qmail-pw2u");
        c.args(args);
        rqmail_tests::run_with_input(c, passwd.as_bytes())
    };
    let (code, out, err) = run(&["-H"]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let out = String::from_utf8(out).unwrap();
    let j = format!(":joe:{uid}:{gid}:{}:", home.display());
    let a = format!(":alias:7790:2108:{}:", alias_home.display());
    let want = format!(
        "+{a}-::\n=alias{a}::\n+alias-{a}-::\n\
         =joe{j}::\n+joe-{j}-::\n=js{j}::\n+js-{j}-::\n\
         =bob:bob:{b}:{gid}:{o}:::\n+bob-:bob:{b}:{gid}:{o}:-::\n\
         =sales{j}-:sales:\n+sales-{j}-:sales-:\n\
         =extra:joe:1:2:/x:::\n.\n",
        b = uid + 1,
        o = other.display(),
    );
    assert_eq!(out, want);
    // The default (-o) skips users whose home is missing or not theirs: alias's home
    // does not exist, so there is no alias user: fatal.
    let (code, _, err) = run(&[]);
    assert_eq!(code, 111);
    assert_eq!(err, b"qmail-pw2u: fatal: unable to find alias user\n");
    let (code, _, err) = run(&["-x"]);
    assert_eq!(code, 100);
    assert_eq!(err, b"qmail-pw2u: illegal option -- x\n");

    fs::write(h.path().join("users/assign"), &want).unwrap();
    let o = h.cmd("qmail-newu").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let cdb = h.path().join("users/cdb");
    let f = fields(&lspawn_lookup(&cdb, "sales-q4").unwrap());
    assert_eq!(
        (f[0].as_str(), f[4].as_str(), f[5].as_str()),
        ("joe", "-", "sales-q4")
    );
    let f = fields(&lspawn_lookup(&cdb, "JS-x").unwrap());
    assert_eq!((f[0].as_str(), f[5].as_str()), ("joe", "x"));
    let f = fields(&lspawn_lookup(&cdb, "nobody-here").unwrap());
    assert_eq!((f[0].as_str(), f[5].as_str()), ("alias", "nobody-here"));
}

#[test]
fn maildirmake_makes_a_private_maildir() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("Maildir");
    let out = Command::new(bin("maildirmake")).arg(&m).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    for s in ["tmp", "new", "cur"] {
        let md = fs::metadata(m.join(s)).unwrap();
        assert!(md.is_dir());
        assert_eq!(md.mode() & 0o777, 0o700);
    }
    assert_eq!(fs::metadata(&m).unwrap().mode() & 0o777, 0o700);
    let out = Command::new(bin("maildirmake")).arg(&m).output().unwrap();
    assert_eq!(out.status.code(), Some(111));
    let mut want = b"maildirmake: fatal: unable to mkdir ".to_vec();
    want.extend_from_slice(m.as_os_str().as_bytes());
    want.extend_from_slice(b": file already exists\n");
    assert_eq!(out.stderr, want);
    let out = Command::new(bin("maildirmake")).output().unwrap();
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(out.stderr, b"maildirmake: usage: maildirmake name\n");
}

/// Runs qmail-getpw as qmail-lspawn does (as qmailp:nofiles in root mode).
fn getpw_as(uid: u32, gid: u32, env: &[(&str, &Path)], local: &str) -> (i32, Vec<u8>) {
    let mut c = as_user(uid, gid, &bin("qmail-getpw"));
    c.arg(local).env_clear().current_dir("/");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run qmail-getpw");
    (out.status.code().unwrap_or(-1), out.stdout)
}

#[test]
fn root_mode_getpw_then_local_as_the_user() {
    assert!(is_root(), "root mode needs root");
    ensure_qmail_users();
    let (uid, gid) = ensure_test_user();
    let (qp_uid, _) = user_ids("qmailp");
    let nofiles = rqmail_tests::group_id("nofiles");
    let getpw = |local: &str| getpw_as(qp_uid, nofiles, &[], local);

    let (code, out) = getpw(TEST_USER);
    assert_eq!(code, 0);
    assert_eq!(
        fields(&out),
        [
            TEST_USER,
            &uid.to_string(),
            &gid.to_string(),
            TEST_USER_HOME,
            "",
            ""
        ]
    );
    let (code, out) = getpw(&format!("{}-Foo-Bar", TEST_USER.to_uppercase()));
    assert_eq!(code, 0);
    assert_eq!(fields(&out)[4..], ["-", "Foo-Bar"]);
    // root never gets mail; nor does an account whose home it does not own (nobody's
    // is missing): alias does.
    let alias = nix::unistd::User::from_name("alias").unwrap().unwrap();
    for local in ["root", "nobody", "Postmaster", "no-such-user"] {
        let (code, out) = getpw(local);
        assert_eq!(code, 0);
        let f = fields(&out);
        assert_eq!(f[0], "alias");
        assert_eq!(f[1], alias.uid.as_raw().to_string());
        assert_eq!((f[4].as_str(), f[5].as_str()), ("-", local));
    }
    assert_eq!(getpw_as(qp_uid, nofiles, &[], "").0, 0);

    // Now deliver as qmail-lspawn would: as the user, with the fields from qmail-getpw,
    // to a .qmail in the user's real home that points at a private maildir.
    let tag = format!(
        "t{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let r = Rig::for_user(TEST_USER.into(), uid, gid);
    r.maildir("Maildir");
    let dq = Path::new(TEST_USER_HOME).join(format!(".qmail-{tag}"));
    fs::write(&dq, format!("{}/\n", r.home().join("Maildir").display())).unwrap();
    fs::set_permissions(&dq, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&dq, Some(uid), Some(gid)).unwrap();
    let local = format!("{TEST_USER}-{tag}");
    let (code, out) = getpw(&local);
    assert_eq!(code, 0);
    let f = fields(&out);
    let msgp = r.dir.path().join("lspawn-msg");
    fs::write(&msgp, "Subject: root mode\n\nhello\n").unwrap();
    let out = as_user(
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        &bin("qmail-local"),
    )
    .arg("--")
    .args([
        &f[0],
        &f[3],
        &local,
        &f[4],
        &f[5],
        "testhost.example",
        "s@x",
        "./Mailbox\n",
    ])
    .env_clear()
    .stdin(fs::File::open(&msgp).unwrap())
    .output()
    .unwrap();
    let _ = fs::remove_file(&dq);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"did 1+0+0\n");
    let mail = r.new_mail("Maildir");
    assert_eq!(mail.len(), 1);
    assert_eq!(
        mail[0].1,
        format!(
            "Return-Path: <s@x>\nDelivered-To: {local}@testhost.example\nSubject: root mode\n\nhello\n"
        )
        .as_bytes()
    );
    let md = fs::metadata(r.home().join("Maildir/new").join(&mail[0].0)).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, gid));
}

#[test]
fn single_user_mode_as_nobody() {
    assert!(
        is_root(),
        "this test runs everything as nobody; run the suite as root"
    );
    let (uid, gid) = user_ids("nobody");
    let r = Rig::for_user("nobody".into(), uid, gid);
    let q = r.q.path().to_path_buf();
    fs::create_dir_all(q.join("alias")).unwrap();
    std::os::unix::fs::chown(q.join("alias"), Some(uid), Some(gid)).unwrap();
    let home = r.home();
    let env: [(&str, &Path); 2] = [("QMAIL_HOME", &q), ("HOME", &home)];

    // qmail-getpw: nobody is the only user, with $HOME; everything else is alias, the
    // invoking user with QMAIL_HOME/alias.
    let (code, out) = getpw_as(uid, gid, &env, "Nobody-Ext");
    assert_eq!(code, 0);
    assert_eq!(
        fields(&out),
        [
            "nobody",
            &uid.to_string(),
            &gid.to_string(),
            &home.display().to_string(),
            "-",
            "Ext"
        ]
    );
    let (code, out) = getpw_as(uid, gid, &env, "postmaster");
    assert_eq!(code, 0);
    assert_eq!(
        fields(&out),
        [
            "alias",
            &uid.to_string(),
            &gid.to_string(),
            &q.join("alias").display().to_string(),
            "-",
            "postmaster"
        ]
    );
    // A home nobody does not own is not nobody's.
    let env_root_home: [(&str, &Path); 2] = [("QMAIL_HOME", &q), ("HOME", Path::new("/"))];
    let (code, out) = getpw_as(uid, gid, &env_root_home, "nobody");
    assert_eq!(code, 0);
    assert_eq!(fields(&out)[0], "alias");

    // qmail-local as nobody into nobody's home; a forward through nobody's own queue.
    r.maildir("Maildir");
    r.put(".qmail-ext", "./Maildir/\n&fwd@remote.example\n", 0o644);
    let run = r.local(&[], ("nobody-Ext", "-", "Ext"), "s@x", "", b"m\n");
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(run.out.starts_with("did 1+1+0\nqp "));
    let mail = r.new_mail("Maildir");
    assert_eq!(
        fs::metadata(home.join("Maildir/new").join(&mail[0].0))
            .unwrap()
            .uid(),
        uid
    );
    let queued = r.q.queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].recipients(), [b"fwd@remote.example".to_vec()]);
}

#[test]
fn full_disk_defers_and_leaves_no_partial_mail() {
    assert!(is_root(), "this test mounts a small tmpfs and needs root");
    let r = Rig::new();
    let full = r.home().join("full");
    let _fs = Tmpfs::mount_on(
        &full,
        &format!("size=64k,mode=0755,uid={},gid={}", r.uid, r.gid),
    );
    r.maildir("full/Maildir");
    r.put("full/Mailbox", "From old\n\nkept\n\n", 0o600);
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| if i % 70 == 69 { b'\n' } else { b'x' })
        .collect();

    r.put(".qmail-md", "./full/Maildir/\n", 0o644);
    let run = r.local(&[], ("joe-md", "-", "md"), "s@x", "", &big);
    assert_eq!(
        (run.code, run.out.as_str()),
        (111, "Temporary error on maildir delivery. (#4.3.0)\n")
    );
    assert!(r.new_mail("full/Maildir").is_empty());
    assert_eq!(fs::read_dir(full.join("Maildir/tmp")).unwrap().count(), 0);

    r.put(".qmail-mb", "./full/Mailbox\n", 0o644);
    let run = r.local(&[], ("joe-mb", "-", "mb"), "s@x", "", &big);
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            111,
            "Unable to write ./full/Mailbox: out of disk space. (#4.3.0)\n"
        )
    );
    // Cut back to what it held before.
    assert_eq!(r.read("full/Mailbox"), b"From old\n\nkept\n\n");

    // A message that fits still goes in.
    let run = r.local(&[], ("joe-mb", "-", "mb"), "s@x", "", b"small\n");
    assert_eq!((run.code, run.out.as_str()), (0, "did 1+0+0\n"));
    assert!(r.read("full/Mailbox").ends_with(b"\nsmall\n\n"));
}
