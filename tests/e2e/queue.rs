//! qmail-queue through its descriptors: the message on fd 0, the envelope on fd 1, the
//! files it leaves in a real queue directory, its exit codes.

pub use rqmail_tests::home::Tmpfs;
use rqmail_tests::queue::run_as_queue;
use rqmail_tests::{Home, bin, is_root, walk};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::process::{Command, Stdio};

/// Runs `cmd` as qmail-queue is run: `msg` on fd 0, `env` readable on fd 1, fd 2
/// inherited. Returns the exit code and the pid.
fn queue_with(mut cmd: Command, msg: &[u8], env: &[u8]) -> (i32, u32) {
    cmd.stderr(Stdio::inherit());
    let (code, pid, _) = run_as_queue(cmd, msg, env);
    (code, pid)
}

fn queue(home: &Home, msg: &[u8], env: &[u8]) -> (i32, u32) {
    queue_with(home.cmd("qmail-queue"), msg, env)
}

fn open_trigger(home: &Home) -> fs::File {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(home.queue().join("lock/trigger"))
        .expect("open trigger")
}

#[test]
fn queues_message_and_envelope_byte_for_byte() {
    let home = Home::new();
    let mut trigger = open_trigger(&home);
    let msg = b"From: a@example.com\nSubject: test\n\nline one\nline two\n";
    let (code, pid) = queue(
        &home,
        msg,
        b"Fa@example.com\0Tb@example.org\0Tc@example.net\0\0",
    );
    assert_eq!(code, 0);
    let q = home.queued();
    assert_eq!(q.len(), 1);
    let m = &q[0];
    let uid = nix::unistd::getuid().as_raw();
    let first = String::from_utf8(m.mess[..m.mess.len() - m.body_after_received().len()].to_vec())
        .expect("utf8");
    let prefix = format!("Received: (qmail {pid} invoked by uid {uid}); ");
    assert!(first.starts_with(&prefix), "{first:?}");
    assert!(first.ends_with(" -0000\n"), "{first:?}");
    assert_eq!(m.body_after_received(), msg);
    assert_eq!(
        m.todo,
        format!("u{uid}\0p{pid}\0Fa@example.com\0Tb@example.org\0Tc@example.net\0").as_bytes()
    );

    // Names and modes as netqmail leaves them.
    let qd = qmail_queue::Queue::in_home(home.path());
    let mess = fs::metadata(qd.mess(m.id)).expect("mess");
    assert_eq!(mess.ino(), m.id, "the message is named by its inode");
    assert_eq!(mess.mode() & 0o7777, 0o644);
    assert_eq!(
        fs::metadata(qd.todo(m.id)).expect("todo").mode() & 0o7777,
        0o644
    );
    assert_eq!(
        fs::read(qd.intd(m.id)).expect("intd"),
        m.todo,
        "intd and todo are one file"
    );
    assert_eq!(
        fs::metadata(qd.intd(m.id)).expect("intd").ino(),
        fs::metadata(qd.todo(m.id)).expect("todo").ino()
    );
    assert!(
        fs::read_dir(home.queue().join("pid"))
            .expect("pid")
            .next()
            .is_none()
    );
    assert!(!qd.info(m.id).exists());

    // The trigger was pulled.
    let mut b = [9u8; 1];
    assert_eq!(trigger.read(&mut b).expect("trigger byte"), 1);
    assert_eq!(b[0], 0);
}

#[test]
fn empty_sender_many_recipients_and_8bit() {
    let home = Home::new();
    let mut env = b"F\0".to_vec();
    for i in 0..500 {
        env.extend_from_slice(format!("Tuser{i}@example.com\0").as_bytes());
    }
    env.extend_from_slice("T\u{e9}l\u{e8}ve@example.com\0\0".as_bytes());
    let (code, _) = queue(&home, b"\xff\x00binary\r\n", &env);
    assert_eq!(code, 0);
    let q = home.queued();
    assert_eq!(q[0].sender(), b"");
    assert_eq!(q[0].recipients().len(), 501);
    assert_eq!(q[0].body_after_received(), b"\xff\x00binary\r\n");
}

#[test]
fn bad_envelopes_exit_and_leave_nothing() {
    let long = {
        let mut v = b"F".to_vec();
        v.extend(std::iter::repeat_n(b'a', 1003));
        v.extend(b"\0\0");
        v
    };
    let cases: [(&[u8], i32); 6] = [
        (b"Xa@b\0\0", 91),
        (b"Fa@b\0Xc@d\0\0", 91),
        (b"Fa@b\0Tc@d\0", 54),
        (b"", 54),
        (b"Fa@b", 54),
        (&long, 11),
    ];
    for (env, want) in cases {
        let home = Home::new();
        let (code, _) = queue(&home, b"message\n", env);
        assert_eq!(code, want, "envelope {:?}", String::from_utf8_lossy(env));
        assert!(
            home.queue_files().is_empty(),
            "left behind: {:?}",
            home.queue_files()
        );
    }
    // 1002 bytes is the longest address accepted.
    let home = Home::new();
    let mut ok = b"F".to_vec();
    ok.extend(std::iter::repeat_n(b'a', 1002));
    ok.extend(b"\0T");
    ok.extend(std::iter::repeat_n(b'b', 1002));
    ok.extend(b"\0\0");
    assert_eq!(queue(&home, b"m\n", &ok).0, 0);
}

#[test]
fn missing_home_and_queue_directories() {
    let home = Home::new();
    let mut c = home.cmd("qmail-queue");
    c.env("QMAIL_HOME", home.path().join("nonexistent"));
    assert_eq!(queue_with(c, b"m\n", b"F\0\0").0, 61);

    let empty = tempfile::tempdir().expect("tmp");
    let mut c = home.cmd("qmail-queue");
    c.env("QMAIL_HOME", empty.path());
    assert_eq!(queue_with(c, b"m\n", b"F\0\0").0, 62);

    fs::remove_dir(home.queue().join("todo")).expect("rm todo");
    assert_eq!(queue(&home, b"m\n", b"F\0Ta@b\0\0").0, 66);
    assert!(home.queue_files().is_empty(), "{:?}", home.queue_files());

    fs::remove_dir(home.queue().join("intd")).expect("rm intd");
    assert_eq!(queue(&home, b"m\n", b"F\0Ta@b\0\0").0, 65);
    assert!(home.queue_files().is_empty(), "{:?}", home.queue_files());
}

#[test]
fn unwritable_queue_is_a_queue_error_not_a_crash() {
    if is_root() {
        // root ignores permissions; the full-disk test covers write failures as root.
        return;
    }
    let home = Home::new();
    fs::set_permissions(home.queue().join("pid"), fs::Permissions::from_mode(0o500))
        .expect("chmod");
    assert_eq!(queue(&home, b"m\n", b"F\0Ta@b\0\0").0, 63);
}

/// A really full filesystem: a 64 KiB tmpfs holding the queue (root only).
#[test]
fn full_filesystem_exits_53_and_leaves_nothing() {
    if !is_root() {
        eprintln!("full_filesystem_exits_53_and_leaves_nothing: needs root to mount a tmpfs");
        return;
    }
    let tmp = Tmpfs::new("64k");
    let homedir = tmp.path();
    for d in ["bin", "control"] {
        fs::create_dir(homedir.join(d)).expect("mkdir");
    }
    qmail_queue::create_queue(&homedir.join("queue"), &control::Ids::single_user())
        .expect("queue on tmpfs");
    let mut c = Command::new(bin("qmail-queue"));
    c.env_clear().env("QMAIL_HOME", homedir);
    let big = vec![b'x'; 256 * 1024];
    let (code, _) = queue_with(c, &big, b"Fa@b\0Tc@d\0\0");
    assert_eq!(code, 53);
    let mut left = Vec::new();
    for sub in ["mess", "intd", "todo", "pid"] {
        walk(&homedir.join("queue").join(sub), &mut left);
    }
    assert!(left.is_empty(), "half-queued files left: {left:?}");

    // With room again (a small message), the same queue works.
    let mut c = Command::new(bin("qmail-queue"));
    c.env_clear().env("QMAIL_HOME", homedir);
    assert_eq!(queue_with(c, b"small\n", b"Fa@b\0Tc@d\0\0").0, 0);
}

#[test]
fn no_free_inode_exits_64_and_leaves_no_pid_file() {
    if !is_root() {
        eprintln!("no_free_inode_exits_64_and_leaves_no_pid_file: needs root to mount a tmpfs");
        return;
    }
    let tmp = Tmpfs::with_options("size=4m,nr_inodes=1000,mode=0755");
    let homedir = tmp.path();
    for d in ["bin", "control"] {
        fs::create_dir(homedir.join(d)).expect("mkdir");
    }
    qmail_queue::create_queue(&homedir.join("queue"), &control::Ids::single_user())
        .expect("queue on tmpfs");
    // Exactly one free inode: the pid file takes it, and the link to mess/ (tmpfs counts
    // every link as an inode) fails with ENOSPC.
    let st = nix::sys::statvfs::statvfs(homedir).expect("statvfs");
    let used = st.files() - st.files_free();
    tmp.remount(&format!("nr_inodes={}", used + 1));
    let st = nix::sys::statvfs::statvfs(homedir).expect("statvfs");
    assert_eq!(st.files_free(), 1, "one free inode");
    let mut c = Command::new(bin("qmail-queue"));
    c.env_clear().env("QMAIL_HOME", homedir);
    let (code, _) = queue_with(c, b"Subject: x\n\nx\n", b"Fa@b\0Tc@d\0\0");
    assert_eq!(code, 64, "trouble making the mess file");
    let mut left = Vec::new();
    for sub in ["pid", "mess", "intd", "todo"] {
        walk(&homedir.join("queue").join(sub), &mut left);
    }
    assert!(left.is_empty(), "files left behind: {left:?}");
    assert_eq!(
        nix::sys::statvfs::statvfs(homedir)
            .expect("statvfs")
            .files_free(),
        1,
        "the inode is free again"
    );

    // No inode at all: the pid file cannot be made (exit 63), nothing is left either.
    tmp.remount(&format!("nr_inodes={used}"));
    let mut c = Command::new(bin("qmail-queue"));
    c.env_clear().env("QMAIL_HOME", homedir);
    assert_eq!(queue_with(c, b"x\n", b"Fa@b\0Tc@d\0\0").0, 63);
    let mut left = Vec::new();
    walk(&homedir.join("queue/pid"), &mut left);
    assert!(left.is_empty(), "files left behind: {left:?}");

    // Inodes again: the same queue works.
    tmp.remount("nr_inodes=1000");
    let mut c = Command::new(bin("qmail-queue"));
    c.env_clear().env("QMAIL_HOME", homedir);
    assert_eq!(queue_with(c, b"x\n", b"Fa@b\0Tc@d\0\0").0, 0);
}

/// The 24-hour limit: SIGALRM (what alarm(86400) delivers) makes qmail-queue exit 52
/// at once, without cleaning up, as netqmail's does; qmail-send removes the leftovers
/// after 36 hours.
#[test]
fn alarm_exits_52_without_cleaning_up() {
    let home = Home::new();
    let (env_r, _env_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let mut child = home
        .cmd("qmail-queue")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(env_r))
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"part of a message\n").expect("write");
    // Wait until the message file exists and pid/ is gone (qmail-queue links mess/ and
    // then removes pid/): qmail-queue is then blocked reading fd 0. Waiting for any
    // file raced with that step: the signal came while only pid/ existed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mess = home.queue().join("mess");
    while !matches!(&home.queue_files()[..], [only] if only.starts_with(&mess)) {
        assert!(
            std::time::Instant::now() < deadline,
            "qmail-queue made no file"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGALRM,
    )
    .expect("kill");
    let st = child.wait().expect("wait");
    assert_eq!(st.code(), Some(52));
    let left = home.queue_files();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(home.queue().join("mess")), "{left:?}");
    assert!(home.queued().is_empty());
}
