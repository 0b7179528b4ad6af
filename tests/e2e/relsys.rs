//! Helpers shared by the reliability modules (hostile, fulldisk, privileges, load,
//! crash): a whole mail system on a test home in single-user mode, qmail-smtpd on pipes,
//! Maildirs, /proc readers.
//!
//! When the tests run as root, single-user mode runs every program as `nobody` (setpriv)
//! in a home `nobody` owns, so that no id switching happens.

#![allow(dead_code)]

pub use rqmail_tests::Piped;
pub use rqmail_tests::single::{
    WAIT, chown_tree, chown_user, nobody, script, user_cmd, wait_until,
};
use rqmail_tests::{Home, bin, is_root};
pub use rqmail_tests::{children, proc_status, walk};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A home for single-user mode (owned by nobody when root), with `control/me`,
/// `rcpthosts` and `locals` set to testhost.example, and every local address delivered
/// by the real qmail-local into `alias/Maildir/` (through `alias/.qmail-default`).
pub fn mail_home() -> Home {
    let h = Home::new();
    fs::set_permissions(h.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    h.control("rcpthosts", "testhost.example\n");
    h.control("locals", "testhost.example\n");
    let md = h.path().join("alias/Maildir");
    for d in ["", "tmp", "new", "cur"] {
        fs::create_dir_all(md.join(d)).expect("maildir");
    }
    fs::set_permissions(md, fs::Permissions::from_mode(0o700)).expect("chmod");
    fs::write(h.path().join("alias/.qmail-default"), "./Maildir/\n").expect("dot-qmail");
    if is_root() {
        let (u, g) = nobody();
        h.chown_all(u, g);
    }
    h
}

/// Files in a Maildir's new/ and cur/, with their contents.
pub fn maildir_messages(md: &Path) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = fs::read_dir(md.join(sub)) {
            for e in rd.flatten() {
                if let Ok(b) = fs::read(e.path()) {
                    v.push(b);
                }
            }
        }
    }
    v
}

/// Number of files in a Maildir's new/ and cur/.
pub fn maildir_count(md: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|s| fs::read_dir(md.join(s)).map_or(0, Iterator::count))
        .sum()
}

/// True when the queue holds no message (mess/ is empty everywhere).
pub fn queue_empty(home: &Path) -> bool {
    let mut files = Vec::new();
    for sub in [
        "mess", "info", "local", "remote", "todo", "intd", "bounce", "pid",
    ] {
        walk(&home.join("queue").join(sub), &mut files);
    }
    files.is_empty()
}

/// The mail system: qmail-start (becoming qmail-send) run by `cmd`, its log in a file.
pub struct System {
    pub child: Child,
    pub log: PathBuf,
}

impl System {
    /// qmail-start in single-user mode with `./Maildir/` as the default delivery and its
    /// log in `home/send.log`.
    pub fn start(home: &Path) -> System {
        let c = user_cmd(home, &home.join("bin/qmail-start"));
        System::start_cmd(c, home, &["./Maildir/"])
    }

    /// Starts `cmd` with `args`, logging to `home/send.log` (appended).
    pub fn start_cmd(mut cmd: Command, home: &Path, args: &[&str]) -> System {
        let log = home.join("send.log");
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let before = fs::read_to_string(&log).map_or(0, |s| s.len());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(f))
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("start qmail-start");
        let s = System { child, log };
        wait_until("qmail-send's first status line", || {
            fs::read_to_string(&s.log)
                .map(|t| t[before.min(t.len())..].contains("status: local"))
                .unwrap_or(false)
        });
        s
    }

    /// The log so far.
    pub fn lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// TERM and wait for the exit (hang-guarded); returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("qmail-send did not exit after TERM");
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `kB` field of /proc/PID/status as a number of KiB.
pub fn proc_kb(st: &HashMap<String, String>, key: &str) -> u64 {
    st.get(key)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Open descriptors of a process (None when it is gone).
pub fn open_fds(pid: i32) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count)
}

/// The built program `name` (for tests that need the path).
pub fn prog(name: &str) -> PathBuf {
    bin(name)
}
