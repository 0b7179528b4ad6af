//! Root mode: the real qmail ids, a setuid qmailq qmail-queue, qmail-smtpd under
//! tcpserver -u qmaild. These tests need root (CI runs as root); as another user they say
//! so on stderr and pass without checking anything.
//!
//! A setuid qmail-queue ignores QMAIL_HOME, so it is built a second time with the
//! compiled-in home [`SETUID_HOME`] (the README's test command does this and exports
//! `RQMAIL_SETUID_QUEUE` with its path).

use rqmail_tests::{KillOnDrop, Smtp, bin, ensure_qmail_users, is_root, lock_file, user_ids};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The compiled-in home of the setuid test build of qmail-queue.
pub(crate) const SETUID_HOME: &str = "/var/tmp/rqmail-setuid-home";

static LOCK: Mutex<()> = Mutex::new(());

/// Exclusive use of [`SETUID_HOME`]: within this test process (a mutex) and across test
/// processes on this machine (an flock), since the path is fixed at build time.
pub(crate) struct RootHomeLock {
    _flock: nix::fcntl::Flock<std::fs::File>,
    _guard: std::sync::MutexGuard<'static, ()>,
}

pub(crate) fn lock_root_home() -> RootHomeLock {
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    RootHomeLock {
        _flock: lock_file("/var/tmp/rqmail-setuid-home.lock"),
        _guard: guard,
    }
}

fn setuid_queue_binary() -> PathBuf {
    let p = std::env::var_os("RQMAIL_SETUID_QUEUE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "RQMAIL_SETUID_QUEUE is not set: build qmail-queue with \
             RQMAIL_HOME={SETUID_HOME} (the README's test command does) and export its path"
            )
        });
    assert!(p.exists(), "{} does not exist", p.display());
    p
}

/// Installs a root-mode home at SETUID_HOME: netqmail owners, setuid qmail-queue, the
/// other programs from this build.
pub(crate) fn install_root_home() -> PathBuf {
    ensure_qmail_users();
    let home = PathBuf::from(SETUID_HOME);
    let _ = fs::remove_dir_all(&home);
    let ids = control::Ids::lookup().expect("qmail ids");
    // First everything from this build, then the setuid test build of qmail-queue over it.
    install::install(&install::Plan {
        home: home.clone(),
        destdir: PathBuf::new(),
        bindir: rqmail_tests::bin_dir(),
        mandir: None,
        ids: ids.clone(),
    })
    .expect("install");
    let qq = setuid_queue_binary();
    let only_qq = tempfile::tempdir().expect("tmp");
    fs::copy(&qq, only_qq.path().join("qmail-queue")).expect("copy");
    // qmail-dkim, setuid qmailq too, built beside it by the README's test command.
    let dkim = qq.with_file_name("qmail-dkim");
    if dkim.exists() {
        fs::copy(&dkim, only_qq.path().join("qmail-dkim")).expect("copy");
    }
    install::install(&install::Plan {
        home: home.clone(),
        destdir: PathBuf::new(),
        bindir: only_qq.path().to_path_buf(),
        mandir: None,
        ids,
    })
    .expect("install setuid qmail-queue");
    fs::write(home.join("control/me"), "roothost.example\n").expect("me");
    home
}

pub(crate) fn run_as(user: &str, home_env: &Path, prog: &Path, msg: &[u8], env: &[u8]) -> i32 {
    let (uid, gid) = user_ids(user);
    let mut c = rqmail_tests::users::as_user(uid, gid, prog);
    c.env_clear().env("QMAIL_HOME", home_env).current_dir("/");
    rqmail_tests::queue::run_as_queue(c, msg, env).0
}

pub(crate) fn todo_ids(home: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = fs::read_dir(home.join("queue/todo"))
        .expect("todo")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn setuid_qmail_queue_ignores_qmail_home_and_writes_as_qmailq() {
    if !is_root() {
        eprintln!("setuid_qmail_queue_ignores_qmail_home_and_writes_as_qmailq: needs root");
        return;
    }
    let _g = lock_root_home();
    let home = install_root_home();
    let qq = home.join("bin/qmail-queue");
    let meta = fs::metadata(&qq).expect("qq");
    assert_eq!(meta.mode() & 0o7777, 0o4711);
    assert_eq!(meta.uid(), user_ids("qmailq").0);

    // A decoy home the invoker points QMAIL_HOME at: it must stay empty.
    let decoy = rqmail_tests::Home::new();
    rqmail_tests::Home::chown_all(&decoy, 65534, 65534);
    let code = run_as(
        "nobody",
        decoy.path(),
        &qq,
        b"Subject: x\n\nhi\n",
        b"Fa@b.example\0Tc@d.example\0\0",
    );
    assert_eq!(code, 0);
    assert!(
        decoy.queued().is_empty(),
        "QMAIL_HOME was honoured by a setuid program"
    );

    let ids = todo_ids(&home);
    assert_eq!(ids.len(), 1);
    let q = qmail_queue::Queue::in_home(&home);
    let mess = fs::metadata(q.mess(ids[0])).expect("mess");
    assert_eq!(
        mess.uid(),
        user_ids("qmailq").0,
        "queue files belong to qmailq"
    );
    let (nobody, _) = user_ids("nobody");
    let text = fs::read_to_string(q.mess(ids[0])).expect("mess");
    assert!(
        text.contains(&format!(" invoked by uid {nobody}); ")),
        "{text}"
    );
    let todo = fs::read(q.todo(ids[0])).expect("todo");
    assert!(todo.starts_with(format!("u{nobody}\0p").as_bytes()));

    // Invoked by qmaild: "from network"; by alias: "by alias"; by qmails: "for bounce".
    for (user, words) in [
        ("qmaild", "from network"),
        ("alias", "by alias"),
        ("qmails", "for bounce"),
    ] {
        let before = todo_ids(&home);
        assert_eq!(
            run_as(user, Path::new("/nonexistent"), &qq, b"\n", b"F\0Tx@y\0\0"),
            0
        );
        let after = todo_ids(&home);
        let new: Vec<_> = after.iter().filter(|i| !before.contains(i)).collect();
        assert_eq!(new.len(), 1);
        let text = fs::read_to_string(q.mess(*new[0])).expect("mess");
        assert!(
            text.starts_with("Received: (qmail ") && text.contains(&format!(" invoked {words}); ")),
            "{text}"
        );
    }
}

#[test]
fn smtpd_as_qmaild_through_setuid_qmail_queue() {
    if !is_root() {
        eprintln!("smtpd_as_qmaild_through_setuid_qmail_queue: needs root");
        return;
    }
    let _g = lock_root_home();
    let home = install_root_home();
    fs::write(home.join("control/rcpthosts"), "roothost.example\n").expect("rcpthosts");
    let (uid, _) = user_ids("qmaild");
    let (_server, port) = smtpd_as_qmaild(&home, &[]);
    let mut s = Smtp::connect(port);
    assert!(s.reply()[0].starts_with("220 roothost.example ESMTP"));
    assert!(s.cmd("HELO client.example")[0].starts_with("250 "));
    assert!(s.cmd("MAIL FROM:<a@remote.example>")[0].starts_with("250 "));
    assert!(s.cmd("RCPT TO:<user@roothost.example>")[0].starts_with("250 "));
    assert!(s.cmd("RCPT TO:<user@elsewhere.example>")[0].starts_with("553 "));
    assert!(s.cmd("DATA")[0].starts_with("354 "));
    let r = s.cmd("Subject: root mode\r\n\r\nhello\r\n.");
    assert!(r[0].starts_with("250 ok "), "{r:?}");
    s.cmd("QUIT");

    let ids = todo_ids(&home);
    assert_eq!(ids.len(), 1);
    let q = qmail_queue::Queue::in_home(&home);
    let text = fs::read_to_string(q.mess(ids[0])).expect("mess");
    assert!(text.contains(" invoked from network); "), "{text}");
    assert!(text.contains("Subject: root mode\n\nhello\n"), "{text}");
    assert_eq!(
        fs::metadata(q.mess(ids[0])).expect("m").uid(),
        user_ids("qmailq").0
    );
    let todo = fs::read(q.todo(ids[0])).expect("todo");
    assert!(todo.starts_with(format!("u{uid}\0").as_bytes()));
    assert!(todo.ends_with(b"Fa@remote.example\0Tuser@roothost.example\0"));
    let _ = bin("qmail-smtpd");
}

/// qmail-start as root from the installed home, with `cat` as the logger and
/// ./Maildir/ as the default delivery, in `dir`.
pub(crate) fn start_root_system(home: &Path, dir: &Path) -> crate::relsys::System {
    let mut c = std::process::Command::new(home.join("bin/qmail-start"));
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAIL_HOME", home)
        .current_dir(dir);
    crate::relsys::System::start_cmd(c, &["./Maildir/", "cat"])
}

/// qmail-smtpd of the root-mode home under tcpserver as qmaild:nofiles on 127.0.0.1, with
/// `env` added to its environment; returns the server (killed when dropped) and the port.
pub(crate) fn smtpd_as_qmaild(home: &Path, env: &[(&str, &str)]) -> (KillOnDrop, u16) {
    rqmail_tests::net::tcpserver_as_qmaild(home, "qmail-smtpd", env)
}
