//! TCP on the loopback: free ports, waiting for a listener, tcpserver running a program
//! for each connection.

use crate::home::Home;
use crate::process::KillOnDrop;
use crate::programs::tool;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
/// Waits until something listens on TCP port `port` (any local address, IPv4 or IPv6).
///
/// It asks the kernel's socket tables (/proc/net/tcp and tcp6) instead of connecting: a
/// probe connection would be a session like any other, and a test that looks for "the"
/// session among a server's children could find the probe's.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if listening(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

/// True when a socket in the LISTEN state (0A) is bound to local port `port`.
fn listening(port: u16) -> bool {
    let want = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[3] == "0A" && f[1].rsplit(':').next() == Some(want.as_str())
            })
        })
    })
}
/// Starts `tcpserver` on 127.0.0.1 with the given program and arguments, run with this
/// home's QMAIL_HOME plus `env`, and waits until it listens. Returns the server and port.
pub fn tcpserver(home: &Home, env: &[(&str, &str)], program: &[&Path]) -> (KillOnDrop, u16) {
    tcpserver_opts(home, env, &[], program)
}
/// Like [`tcpserver`], with extra tcpserver options placed before the address, e.g.
/// `["-u", "65534", "-g", "65534"]` to run each connection's program as another user.
pub fn tcpserver_opts(
    home: &Home,
    env: &[(&str, &str)],
    opts: &[&str],
    program: &[&Path],
) -> (KillOnDrop, u16) {
    let program: Vec<&std::ffi::OsStr> = program.iter().map(|p| p.as_os_str()).collect();
    tcpserver_with(home.path(), env, opts, &program, Stdio::inherit(), None)
}

/// tcpserver on a free port of 127.0.0.1, running `program` (with its arguments) for
/// each connection in a small environment (PATH, QMAIL_HOME set to `home`, then `env`),
/// with the tcpserver options `opts`, descriptor 2 on `stderr` and, when given, `dir` as
/// the working directory. Waits until it listens; returns the server and its port.
pub fn tcpserver_with(
    home: &Path,
    env: &[(&str, &str)],
    opts: &[&str],
    program: &[&std::ffi::OsStr],
    stderr: Stdio,
    dir: Option<&Path>,
) -> (KillOnDrop, u16) {
    let port = free_port();
    let mut c = Command::new(tool("tcpserver"));
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAIL_HOME", home);
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(["-q", "-R", "-H", "-l", "testhost.example"])
        .args(opts)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(program)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let child = c.spawn().expect("start tcpserver");
    let k = KillOnDrop(child);
    wait_for_port(port);
    (k, port)
}

/// `program` of a root-mode home (its bin/) under tcpserver as qmaild:nofiles on
/// 127.0.0.1, as netqmail's FAQ 5.6 runs qmail-smtpd: local host name roothost.example,
/// only QMAIL_HOME and `env` in the environment. Waits until it listens; returns the
/// server and its port.
pub fn tcpserver_as_qmaild(home: &Path, program: &str, env: &[(&str, &str)]) -> (KillOnDrop, u16) {
    let (uid, _) = crate::users::user_ids("qmaild");
    let gid = crate::users::group_id("nofiles");
    let port = free_port();
    let mut c = Command::new(tool("tcpserver"));
    c.env_clear().env("QMAIL_HOME", home);
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c
        .args(["-q", "-R", "-H", "-l", "roothost.example", "-u"])
        .arg(uid.to_string())
        .arg("-g")
        .arg(gid.to_string())
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(home.join("bin").join(program))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("tcpserver");
    let server = KillOnDrop(child);
    wait_for_port(port);
    (server, port)
}

/// A program under tcpserver ([`tcpserver_with`]) whose connections write descriptor 2 to
/// a log file of the test's.
pub struct LoggedServer {
    _tcpserver: KillOnDrop,
    pub port: u16,
    log: PathBuf,
}

impl LoggedServer {
    /// Starts tcpserver as [`tcpserver_with`] does, descriptor 2 going to `log` (made
    /// anew).
    pub fn start(
        home: &Path,
        env: &[(&str, &str)],
        opts: &[&str],
        program: &[&std::ffi::OsStr],
        log: PathBuf,
        dir: Option<&Path>,
    ) -> LoggedServer {
        let stderr = Stdio::from(fs::File::create(&log).expect("log"));
        let (k, port) = tcpserver_with(home, env, opts, program, stderr, dir);
        LoggedServer {
            _tcpserver: k,
            port,
            log,
        }
    }

    /// tcpserver's pid.
    pub fn pid(&self) -> i32 {
        self._tcpserver.0.id() as i32
    }

    /// What the connections wrote to descriptor 2 so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (hang guard: 20 s) until the log contains `what`; returns the log.
    pub fn wait_log(&self, what: &str) -> String {
        for _ in 0..400 {
            let l = self.log();
            if l.contains(what) {
                return l;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what:?} never logged; log: {}", self.log());
    }
}
