//! The users tests run as: the netqmail users and groups (made as root when missing),
//! other system users, and the single-user runner (`nobody` when root).

use crate::programs::{is_root, tool};
use std::fs;
use std::path::Path;
use std::process::Command;

/// The netqmail users and groups (INSTALL.ids): name, group (control's one table).
pub use control::ACCOUNTS as QMAIL_USERS;

/// As root, creates the netqmail users and groups that are missing (groupadd/useradd,
/// system accounts without a login shell). Safe to call from many tests and processes at
/// once. Panics when not root or when an account cannot be made.
pub fn ensure_qmail_users() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        assert!(is_root(), "root-mode tests need root");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/lock/rqmail-test-users.lock")
            .or_else(|_| {
                fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open("/tmp/rqmail-test-users.lock")
            })
            .expect("lock file");
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("lock");
        for g in control::GROUP_NAMES {
            if nix::unistd::Group::from_name(g).ok().flatten().is_none() {
                let st = Command::new(tool("groupadd"))
                    .args(["-r", g])
                    .status()
                    .expect("groupadd");
                assert!(st.success(), "groupadd {g} failed");
            }
        }
        for (u, g) in QMAIL_USERS {
            if nix::unistd::User::from_name(u).ok().flatten().is_none() {
                let home = if u == "alias" {
                    "/var/qmail/alias"
                } else {
                    "/var/qmail"
                };
                let st = Command::new(tool("useradd"))
                    .args([
                        "-r",
                        "-M",
                        "-g",
                        g,
                        "-d",
                        home,
                        "-s",
                        "/usr/sbin/nologin",
                        u,
                    ])
                    .status()
                    .expect("useradd");
                assert!(st.success(), "useradd {u} failed");
            }
        }
    });
}

/// The uid and gid of a user that exists. As root, a qmail user is created first when it
/// is missing ([`ensure_qmail_users`]).
pub fn user_ids(name: &str) -> (u32, u32) {
    if is_root() && QMAIL_USERS.iter().any(|(u, _)| *u == name) {
        ensure_qmail_users();
    }
    let u = nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no user {name}"));
    (u.uid.as_raw(), u.gid.as_raw())
}

/// The gid of a group that exists (as root, the qmail groups are created first when
/// missing, with the users: [`ensure_qmail_users`]).
pub fn group_id(name: &str) -> u32 {
    if is_root() {
        ensure_qmail_users();
    }
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no group {name}"))
        .gid
        .as_raw()
}

/// An exclusive lock on `path` (created when missing), held until dropped: for what tests
/// in several processes on this machine share (fixed paths, system users).
pub fn lock_file(path: &str) -> nix::fcntl::Flock<fs::File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("lock file {path}: {e}"));
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap_or_else(|e| panic!("lock {path}: {e}"))
}

/// As root, creates the system user `name` (a group of its own, password-database home
/// `home`, no login shell) unless it exists, under a lock shared by every test process;
/// returns its ids. The home directory itself is the caller's to make.
pub fn ensure_system_user(name: &str, home: &str) -> (u32, u32) {
    assert!(is_root(), "creating a test user needs root");
    let _lock = lock_file(&format!("/tmp/rqmail-test-{name}.lock"));
    if nix::unistd::User::from_name(name).ok().flatten().is_none() {
        let st = Command::new(tool("useradd"))
            .args([
                "-r",
                "-M",
                "-U",
                "-d",
                home,
                "-s",
                "/usr/sbin/nologin",
                name,
            ])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {name} failed");
    }
    user_ids(name)
}

/// The unprivileged user single-user tests run as when the tests run as root.
pub fn nobody() -> (u32, u32) {
    let (u, _) = user_ids("nobody");
    let g = nix::unistd::Group::from_name("nogroup")
        .ok()
        .flatten()
        .map_or(65534, |g| g.gid.as_raw());
    (u, g)
}

/// The ids single-user mode runs as: nobody when root, else ourselves.
pub fn runner_ids() -> (u32, u32) {
    if is_root() {
        nobody()
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    }
}

/// Gives `p` to the single-user runner (nothing to do when not root).
pub fn chown_user(p: &Path) {
    if is_root() {
        let (u, g) = nobody();
        std::os::unix::fs::lchown(p, Some(u), Some(g)).expect("chown");
    }
}

/// Recursively gives `p` to the single-user runner.
pub fn chown_tree(p: &Path) {
    chown_user(p);
    if p.is_dir() && !p.is_symlink() {
        for e in fs::read_dir(p).expect("read_dir").flatten() {
            chown_tree(&e.path());
        }
    }
}

/// `program` run as `uid`/`gid` (through setpriv, without supplementary groups, when the
/// tests run as root; as the invoking user otherwise). The environment is the caller's to
/// set.
pub fn as_user(uid: u32, gid: u32, program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new(tool("setpriv"));
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// The login name of the single-user runner ([`runner_ids`]); "nobody" when its uid has
/// no name.
pub fn runner_name() -> String {
    let (uid, _) = runner_ids();
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| "nobody".into(), |u| u.name)
}
