//! The inspection and control tools: qmail-qread and qmail-qstat on a queue built by hand
//! in netqmail's formats, qmail-showctl on a control directory, qmail-newmrh building
//! morercpthosts.cdb. Expected outputs are written out byte for byte from netqmail's
//! formatting rules.

use rqmail_tests::{Home, is_root};
use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

/// Writes `data` to queue/`rel` (creating directories) with modification time `mtime`.
fn put(home: &Home, rel: &str, data: &[u8], mtime: Option<u64>) {
    let p = home.queue().join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(&p, data).expect("write queue file");
    if let Some(t) = mtime {
        let f = fs::File::options().write(true).open(&p).expect("open");
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(t))
            .expect("set mtime");
    }
}

/// A queue as qmail-send leaves it: messages 24 (split 1), 5, 28 and 51 (split 5; 51 has
/// lost its mess file), 6 (not yet preprocessed: mess and todo, no info).
fn sample_queue(home: &Home) {
    // #24: local and remote recipients, some done, a bounce pending.
    put(home, "mess/1/24", &[b'x'; 321], None);
    put(home, "info/1/24", b"Fjoe@example.org\0", Some(812_090_814));
    put(
        home,
        "local/1/24",
        b"Tann@example.com\0Dbob@example.com\0",
        None,
    );
    put(
        home,
        "remote/1/24",
        b"Dcarl@example.net\0Tdora@example.net\0",
        None,
    );
    put(home, "bounce/24", b"", None);
    // #5: a bounce message (empty sender), remote only.
    put(home, "mess/5/5", b"", None);
    put(home, "info/5/5", b"F\0", Some(1_000_000_000));
    put(home, "remote/5/5", b"Tx@y\0", None);
    // #28: control and 8-bit characters; an unfinished record is not shown.
    put(home, "mess/5/28", b"0123456789", None);
    put(
        home,
        "info/5/28",
        b"Fevil\x01\xffsender\0",
        Some(1_700_000_000),
    );
    put(
        home,
        "local/5/28",
        b"Tcontrol\x07char@example.com\0Tunfinished",
        None,
    );
    // #51: info without mess.
    put(home, "info/5/51", b"Fa@b\0", Some(1_700_000_000));
    // Not a message number: ignored.
    put(home, "info/5/junk", b"Fa@b\0", None);
    // #6: queued, not preprocessed.
    put(home, "mess/6/6", b"hello", None);
    put(home, "todo/6", b"u0\0p1\0Fa@b\0Tc@d\0", None);
}

const SAMPLE_QREAD: &str = "\
26 Sep 1995 04:46:54 GMT  #24  321  <joe@example.org>  bouncing
\tlocal\tann@example.com
  done\tlocal\tbob@example.com
  done\tremote\tcarl@example.net
\tremote\tdora@example.net
9 Sep 2001 01:46:40 GMT  #5  0  <> 
\tremote\tx@y
14 Nov 2023 22:13:20 GMT  #28  10  <evil__sender> 
\tlocal\tcontrol_char@example.com
warning: trouble with #51: file does not exist
";

#[test]
fn qmail_qread_lists_a_hand_built_queue() {
    let home = Home::new();
    sample_queue(&home);
    let out = home.cmd("qmail-qread").output().expect("run qmail-qread");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), SAMPLE_QREAD);
    assert!(out.stderr.is_empty());
}

#[test]
fn qmail_qread_empty_queue_and_failures() {
    let home = Home::new();
    let out = home.cmd("qmail-qread").output().expect("run");
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0));

    // No queue: netqmail's message, on standard output.
    let mut c = home.cmd("qmail-qread");
    c.env("QMAIL_HOME", home.path().join("nonexistent"));
    let out = c.output().expect("run");
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fatal: unable to chdir: file does not exist\n"
    );

    // A missing info/ subdirectory stops the listing where it is met.
    sample_queue(&home);
    fs::remove_dir(home.queue().join("info/3")).expect("rmdir");
    let out = home.cmd("qmail-qread").output().expect("run");
    assert_eq!(out.status.code(), Some(111));
    let head = SAMPLE_QREAD.split("9 Sep 2001").next().expect("head");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{head}fatal: unable to opendir info/3: file does not exist\n")
    );
}

#[test]
fn qmail_qread_needs_access_to_the_queue() {
    assert!(
        is_root(),
        "this test runs qmail-qread as nobody and needs root"
    );
    let home = Home::new();
    sample_queue(&home);
    // The home is reachable; the queue (0750) is not, and once it is, its info/
    // directories (0700, owned by root here) are not.
    let chmod = |p: &std::path::Path, mode: u32| {
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).expect("chmod")
    };
    chmod(home.path(), 0o755);
    let as_nobody = || {
        std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(home.path().join("bin/qmail-qread"))
            .env_clear()
            .env("QMAIL_HOME", home.path())
            .output()
            .expect("run as nobody")
    };
    let out = as_nobody();
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fatal: unable to chdir: access denied\n"
    );
    chmod(&home.queue(), 0o755);
    let out = as_nobody();
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fatal: unable to opendir info/0: access denied\n"
    );
}

#[test]
fn qmail_qstat_counts() {
    let home = Home::new();
    let out = home.cmd("qmail-qstat").output().expect("run qmail-qstat");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "messages in queue: 0\nmessages in queue but not yet preprocessed: 0\n"
    );
    sample_queue(&home);
    let out = home.cmd("qmail-qstat").output().expect("run qmail-qstat");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "messages in queue: 4\nmessages in queue but not yet preprocessed: 1\n"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn qmail_qstat_counts_what_qmail_queue_wrote() {
    // Messages queued by the real qmail-queue, counted without qmail-send running.
    let home = Home::new();
    for i in 0..3 {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        fs::File::from(w)
            .write_all(b"Fa@example.org\0Tb@example.com\0\0")
            .expect("envelope");
        let mut child = home
            .cmd("qmail-queue")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(r))
            .spawn()
            .expect("spawn qmail-queue");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("Subject: {i}\n\nx\n").as_bytes())
            .expect("message");
        drop(stdin);
        assert!(child.wait().expect("wait").success());
    }
    let out = home.cmd("qmail-qstat").output().expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "messages in queue: 3\nmessages in queue but not yet preprocessed: 3\n"
    );
    // Not preprocessed yet, so qmail-qread shows nothing.
    let out = home.cmd("qmail-qread").output().expect("run");
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0));
}
