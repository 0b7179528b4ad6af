//! Harness for the end-to-end tests: find the built programs, make a qmail home of its
//! own for each test, read what landed in its queue, and find the real peers (tcpserver,
//! swaks, Python) the tests talk to.
//!
//! The programs must be built first (`cargo build --workspace`); the README's test command
//! does that. A missing program or peer is a test failure with a message saying so, never a
//! silent skip.

#![forbid(unsafe_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The directory holding the built programs (`target/debug` or `target/release`): the
/// parent of the test executable's `deps/` directory.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RQMAIL_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// The path of a built rqmail program; panics with a hint when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` (the README's test command does)",
        p.display()
    );
    p
}

/// The path of an external program the tests need (tcpserver, swaks, ...); panics with a
/// hint when it is not installed.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/usr/local/bin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run the README's test command, which installs the test peers")
}

/// Python for helpers: `/usr/bin/python3` (the pyenv shim cannot run as other users).
pub fn python() -> PathBuf {
    tool("python3")
}

/// True when the tests run as root (root-mode tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tiny matcher for qmail-log(5) line formats: `{n}` digits, `{w}` a non-empty word
/// without spaces, `{*}` anything (possibly empty); everything else literal.
pub fn fmt_match(pat: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        if p.is_empty() {
            return s.is_empty();
        }
        if let Some(rest) = p.strip_prefix(b"{n}") {
            let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
            return (1..=n).rev().any(|k| go(rest, &s[k..]));
        }
        if let Some(rest) = p.strip_prefix(b"{w}") {
            let n = s.iter().take_while(|&&c| c > b' ' && c < 127).count();
            return (1..=n).rev().any(|k| go(rest, &s[k..]));
        }
        if let Some(rest) = p.strip_prefix(b"{*}") {
            return (0..=s.len()).rev().any(|k| go(rest, &s[k..]));
        }
        !s.is_empty() && s[0] == p[0] && go(&p[1..], &s[1..])
    }
    go(pat.as_bytes(), s.as_bytes())
}

/// Every line qmail-send may write, from qmail-log(5).
pub const QMAIL_LOG_FORMATS: &[&str] = &[
    "status: local {n}/{n} remote {n}/{n}",
    "status: local {n}/{n} remote {n}/{n} exitasap",
    "status: exiting",
    "new msg {n}",
    "info msg {n}: bytes {n} from <{*}> qp {n} uid {n}",
    "starting delivery {n}: msg {n} to local {w}",
    "starting delivery {n}: msg {n} to remote {w}",
    "delivery {n}: success: {*}",
    "delivery {n}: deferral: {*}",
    "delivery {n}: failure: {*}",
    "delivery {n}: report mangled, will defer",
    "bounce msg {n} qp {n}",
    "end msg {n}",
    "triple bounce: discarding bounce/{n}",
    "warning: {*}",
    "alert: {*}",
];

/// Whether `l` is a line qmail-send may write: one of qmail-log(5)'s formats, printable
/// ASCII only.
pub fn qmail_log_line(l: &str) -> bool {
    QMAIL_LOG_FORMATS.iter().any(|f| fmt_match(f, l))
        && l.bytes().all(|c| (0x20..0x7f).contains(&c))
}

/// A qmail home of its own: bin/ with symlinks to the built programs, control/, an empty
/// queue (single-user owners), users/, alias/. Removed when dropped.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

impl Home {
    /// A fresh home with `control/me` set to `testhost.example`. As root, the qmail users
    /// and groups are made first when they are missing ([`ensure_qmail_users`]).
    pub fn new() -> Home {
        if is_root() {
            ensure_qmail_users();
        }
        let dir = tempfile::Builder::new()
            .prefix("rqmail-test-")
            .tempdir()
            .expect("tempdir");
        let h = Home { dir };
        for d in ["bin", "control", "users", "alias"] {
            fs::create_dir_all(h.path().join(d)).expect("mkdir");
        }
        qmail_queue::create_queue(&h.path().join("queue"), &control::Ids::single_user())
            .expect("create queue");
        if let Ok(rd) = fs::read_dir(bin_dir()) {
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name();
                let n = name.to_string_lossy();
                let is_exec = p.is_file()
                    && fs::metadata(&p)
                        .map(|m| m.permissions().mode() & 0o111 != 0)
                        .unwrap_or(false);
                if is_exec && !n.contains('.') && !n.starts_with("rqmail_tests") {
                    let _ = std::os::unix::fs::symlink(&p, h.path().join("bin").join(&name));
                }
            }
        }
        h.control("me", "testhost.example\n");
        h
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The queue directory.
    pub fn queue(&self) -> PathBuf {
        self.path().join("queue")
    }

    /// Writes control/NAME.
    pub fn control(&self, name: &str, contents: &str) {
        fs::write(self.path().join("control").join(name), contents).expect("write control");
    }

    /// Removes control/NAME.
    pub fn remove_control(&self, name: &str) {
        let _ = fs::remove_file(self.path().join("control").join(name));
    }

    /// A command running the built program `name` with QMAIL_HOME set to this home and a
    /// small, predictable environment.
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("QMAIL_HOME", self.path())
            .current_dir(self.path());
        c
    }

    /// Makes the whole home readable and writable by `uid` (for single-user tests run as
    /// another user).
    pub fn chown_all(&self, uid: u32, gid: u32) {
        fn walk(p: &Path, uid: u32, gid: u32) {
            let _ = std::os::unix::fs::lchown(p, Some(uid), Some(gid));
            if p.is_dir()
                && !p.is_symlink()
                && let Ok(rd) = fs::read_dir(p)
            {
                for e in rd.flatten() {
                    walk(&e.path(), uid, gid);
                }
            }
        }
        walk(self.path(), uid, gid);
    }

    /// Every message completed in the queue (those with a todo/ entry), sorted by id.
    pub fn queued(&self) -> Vec<Queued> {
        let q = qmail_queue::Queue::in_home(self.path());
        let mut ids: Vec<u64> = fs::read_dir(self.queue().join("todo"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| Queued {
                id,
                mess: fs::read(q.mess(id)).unwrap_or_default(),
                todo: fs::read(q.todo(id)).unwrap_or_default(),
            })
            .collect()
    }

    /// Every regular file under queue/ except lock/ (to prove nothing was left behind).
    pub fn queue_files(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        walk(&self.queue(), &mut v);
        v.retain(|p| !p.starts_with(self.queue().join("lock")));
        v.sort();
        v
    }
}

/// One message as qmail-queue left it.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: u64,
    /// mess/S/N: Received line and message.
    pub mess: Vec<u8>,
    /// todo/N: `uUID\0pPID\0F...\0T...\0`.
    pub todo: Vec<u8>,
}

impl Queued {
    /// The message without qmail-queue's own Received line.
    pub fn body_after_received(&self) -> &[u8] {
        let end = self
            .mess
            .iter()
            .position(|&c| c == b'\n')
            .map_or(0, |i| i + 1);
        &self.mess[end..]
    }

    /// The sender from the envelope.
    pub fn sender(&self) -> Vec<u8> {
        self.records()
            .into_iter()
            .find(|r| r.first() == Some(&b'F'))
            .map(|r| r[1..].to_vec())
            .unwrap_or_default()
    }

    /// The recipients from the envelope.
    pub fn recipients(&self) -> Vec<Vec<u8>> {
        self.records()
            .into_iter()
            .filter(|r| r.first() == Some(&b'T'))
            .map(|r| r[1..].to_vec())
            .collect()
    }

    fn records(&self) -> Vec<Vec<u8>> {
        self.todo
            .split(|&c| c == 0)
            .filter(|r| !r.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
/// Every file below `p` that is not a directory (symbolic links are not followed),
/// appended to `out`; nothing when `p` cannot be read.
pub fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// (pid, command name) of every live process whose parent is `parent` (zombies left out).
pub fn children(parent: i32) -> Vec<(i32, String)> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some((name, ppid, state)) = proc_stat(pid)
            && ppid == parent
            && state != 'Z'
        {
            v.push((pid, name));
        }
    }
    v
}

/// Fields of /proc/PID/status (None when the process is gone).
pub fn proc_status(pid: i32) -> Option<std::collections::HashMap<String, String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(
        s.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// (command name, parent pid, state) from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(String, i32, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    let mut rest = stat[close + 2..].split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((name, ppid, state))
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

/// A child process killed when dropped (servers the tests start).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tcpserver` on 127.0.0.1 with the given program and arguments, run with this
/// home's QMAIL_HOME plus `env`, and waits until it listens. Returns the server and port.
pub fn tcpserver(home: &Home, env: &[(&str, &str)], program: &[&Path]) -> (KillOnDrop, u16) {
    tcpserver_opts(home, env, &[], program)
}

/// A line-oriented SMTP conversation over any stream, for tests that script a dialogue.
pub struct Smtp<S: Read + Write> {
    r: BufReader<S>,
}

impl Smtp<TcpStream> {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> Smtp<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Smtp {
            r: BufReader::new(s),
        }
    }
}

impl<S: Read + Write> Smtp<S> {
    /// Wraps a stream.
    pub fn new(s: S) -> Smtp<S> {
        Smtp {
            r: BufReader::new(s),
        }
    }

    /// Reads one (possibly multi-line) reply; returns its lines without CRLF.
    pub fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.r.read_line(&mut l).expect("read reply");
            assert!(
                n > 0,
                "connection closed while reading a reply; got {lines:?}"
            );
            let l = l.trim_end_matches(['\r', '\n']).to_string();
            let more = l.as_bytes().get(3) == Some(&b'-');
            lines.push(l);
            if !more {
                return lines;
            }
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, data: &[u8]) {
        self.r.get_mut().write_all(data).expect("send");
    }

    /// Sends a command line (CRLF added) and returns the reply.
    pub fn cmd(&mut self, line: &str) -> Vec<String> {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut S {
        self.r.get_mut()
    }
}

/// Runs a program with `input` on stdin and returns (exit code, stdout, stderr).
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> (i32, Vec<u8>, Vec<u8>) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

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

/// One message a [`Sink`] received.
#[derive(Debug, Clone, Default)]
pub struct SinkMessage {
    /// The MAIL FROM argument as sent (e.g. `<a@b>`).
    pub from: String,
    /// The RCPT TO arguments as sent.
    pub rcpts: Vec<String>,
    /// The data up to the final dot, dot-unstuffed, lines ending in LF.
    pub data: Vec<u8>,
}

/// A minimal SMTP server on 127.0.0.1 standing in for a remote MX: it answers 250 to
/// everything and keeps every message. With a gate, each connection's greeting waits
/// until the gate file exists (so that a test can look at a client while it waits).
/// Stops accepting when dropped.
pub struct Sink {
    pub port: u16,
    messages: std::sync::Arc<std::sync::Mutex<Vec<SinkMessage>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Sink {
    /// Starts the sink; `gate` holds the greetings back until that file exists.
    pub fn start(gate: Option<PathBuf>) -> Sink {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let l = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let port = l.local_addr().expect("addr").port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (messages.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let m = m.clone();
                let gate = gate.clone();
                std::thread::spawn(move || {
                    let _ = Sink::serve(conn, &m, gate.as_deref());
                });
            }
        });
        Sink {
            port,
            messages,
            stop,
        }
    }

    fn serve(
        conn: TcpStream,
        messages: &std::sync::Mutex<Vec<SinkMessage>>,
        gate: Option<&Path>,
    ) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(300)))?;
        if let Some(g) = gate {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !g.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let mut w = conn.try_clone()?;
        let mut r = BufReader::new(conn);
        w.write_all(b"220 sink.example ESMTP\r\n")?;
        let mut cur = SinkMessage::default();
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            let upper = text.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                w.write_all(b"250-sink.example\r\n250 PIPELINING\r\n")?;
            } else if upper.starts_with("MAIL FROM:") {
                cur = SinkMessage {
                    from: text[10..].trim().to_string(),
                    ..SinkMessage::default()
                };
                w.write_all(b"250 ok\r\n")?;
            } else if upper.starts_with("RCPT TO:") {
                cur.rcpts.push(text[8..].trim().to_string());
                w.write_all(b"250 ok\r\n")?;
            } else if upper == "DATA" {
                w.write_all(b"354 go\r\n")?;
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line)? == 0 {
                        return Ok(());
                    }
                    let l = line.strip_suffix(b"\r\n").unwrap_or(&line);
                    let l = l.strip_suffix(b"\n").unwrap_or(l);
                    if l == b"." {
                        break;
                    }
                    let l = l.strip_prefix(b".").unwrap_or(l);
                    cur.data.extend_from_slice(l);
                    cur.data.push(b'\n');
                }
                messages
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(std::mem::take(&mut cur));
                w.write_all(b"250 ok queued\r\n")?;
            } else if upper == "QUIT" {
                w.write_all(b"221 bye\r\n")?;
                return Ok(());
            } else {
                w.write_all(b"250 ok\r\n")?;
            }
        }
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<SinkMessage> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// qmail-smtpd on pipes with a watchdog that kills it after `limit` (so that a hang
/// fails the test instead of stalling the suite).
pub struct Piped {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    _watchdog: mpsc::Sender<()>,
}

impl Piped {
    pub fn start(mut cmd: Command, limit: Duration) -> Piped {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start qmail-smtpd");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if rx.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        });
        Piped {
            child,
            stdin,
            stdout,
            _watchdog: tx,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Takes the input side (to write from another thread).
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin")
    }

    /// Closes the input side.
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// True when the program closed its output (for qmail-smtpd: the connection is over).
    pub fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 64];
        matches!(self.stdout.read(&mut b), Ok(0))
    }

    /// Closes the input side and waits for the exit code.
    pub fn wait(&mut self) -> i32 {
        self.stdin = None;
        self.child.wait().expect("wait").code().unwrap_or(-1)
    }
}

impl Read for Piped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl Write for Piped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.stdin.as_mut() {
            Some(s) => s.write(buf),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AsRef<Path> for Home {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

/// Single-user mode in tests: programs run as `nobody` when the suite runs as root (as
/// the invoking user otherwise), with the files they need given to that user.
/// Test certificates made with openssl: ECDSA P-256 keys, PEM files in a directory.
pub mod certs {
    use super::tool;
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

    const EC: [&str; 5] = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];

    fn openssl(dir: &Path, args: &[&str]) {
        let st = Command::new(tool("openssl"))
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl {args:?} failed");
    }

    /// A self-signed certificate with `subject` (openssl marks it an authority):
    /// `dir/name.key` and `dir/name.pem`, returned as (key, certificate).
    pub fn authority(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let mut a = vec!["req", "-x509"];
        a.extend(EC);
        a.extend([
            "-keyout", &key, "-out", &pem, "-days", "30", "-subj", subject,
        ]);
        openssl(dir, &a);
        (dir.join(key), dir.join(pem))
    }

    /// A version 3 certificate with `subject` and the openssl `extensions` (lines of an
    /// extension file), signed by `ca` = (key, certificate): `dir/name.key` and
    /// `dir/name.pem`, returned as (key, certificate).
    pub fn signed(
        dir: &Path,
        name: &str,
        subject: &str,
        ca: &(PathBuf, PathBuf),
        extensions: &str,
    ) -> (PathBuf, PathBuf) {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        fs::write(dir.join(&ext), extensions).expect("extension file");
        let mut a = vec!["req"];
        a.extend(EC);
        a.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
        openssl(dir, &a);
        let (ca_key, ca_pem) = (ca.0.to_string_lossy(), ca.1.to_string_lossy());
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "30",
                "-extfile",
                &ext,
            ],
        );
        (dir.join(key), dir.join(pem))
    }
}

pub mod single {
    use super::{Home, bin, is_root, tool, user_ids};
    use std::fs;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// Hang guard for anything a test waits for (never a timing assertion).
    pub const WAIT: Duration = Duration::from_secs(120);

    /// A home for root-mode tests: the qmail users exist, the home is searchable by
    /// everyone and its queue has netqmail's owners and modes. Returns the home and the ids.
    pub fn root_mode_home() -> (Home, control::Ids) {
        assert!(
            is_root(),
            "root-mode tests need root; run the suite as root"
        );
        super::ensure_qmail_users();
        let ids = control::Ids::lookup().expect("qmail ids");
        let h = Home::new();
        fs::set_permissions(h.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        qmail_queue::create_queue(&h.queue(), &ids).expect("queue with qmail owners");
        (h, ids)
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

    /// A command running `program` in single-user mode (as nobody when root) with
    /// QMAIL_HOME set to `home` and `home` as its working directory.
    pub fn user_cmd(home: impl AsRef<Path>, program: &Path) -> Command {
        let home = home.as_ref();
        let mut c = if is_root() {
            let mut c = Command::new(tool("setpriv"));
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(program);
            c
        } else {
            Command::new(program)
        };
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("QMAIL_HOME", home)
            .current_dir(home);
        c
    }

    /// Writes an executable script into the home's bin/, replacing the built program.
    pub fn script(home: &Home, name: &str, body: &str) {
        let p = home.path().join("bin").join(name);
        let _ = fs::remove_file(&p);
        fs::write(&p, body).expect("write script");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        chown_user(&p);
    }

    /// Creates a file below the home as the single-user runner.
    pub fn user_file(home: &Home, rel: &str, data: &[u8]) -> PathBuf {
        let p = home.path().join(rel);
        fs::write(&p, data).expect("write");
        chown_user(&p);
        p
    }

    /// Polls `f` until it is true; panics after [`WAIT`] naming `what`.
    pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}");
    }

    /// Lines of a file (empty when it does not exist).
    pub fn file_lines(p: &Path) -> Vec<String> {
        fs::read_to_string(p)
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Queues a message with the real qmail-queue run by `cmd`: message on fd 0, envelope
    /// on fd 1. Returns qmail-queue's exit code.
    pub fn queue_with(mut cmd: Command, msg: &[u8], sender: &str, rcpts: &[&str]) -> i32 {
        let mut env = format!("F{sender}\0").into_bytes();
        for r in rcpts {
            env.extend(format!("T{r}\0").into_bytes());
        }
        env.push(0);
        let (env_r, env_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::from(env_r))
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn qmail-queue");
        let mut stdin = child.stdin.take().expect("stdin");
        let msg = msg.to_vec();
        let t1 = std::thread::spawn(move || {
            let _ = stdin.write_all(&msg);
        });
        let t2 = std::thread::spawn(move || {
            let _ = fs::File::from(env_w).write_all(&env);
        });
        let st = child.wait().expect("wait");
        let _ = t1.join();
        let _ = t2.join();
        st.code().unwrap_or(-1)
    }

    /// Queues a message in single-user mode with the real qmail-queue.
    pub fn inject(home: &Home, msg: &str, sender: &str, rcpts: &[&str]) {
        let code = queue_with(
            user_cmd(home, &bin("qmail-queue")),
            msg.as_bytes(),
            sender,
            rcpts,
        );
        assert_eq!(code, 0, "qmail-queue failed");
    }

    /// The mail system running on a home: qmail-start (which becomes qmail-send) with its
    /// log collected line by line.
    pub struct System {
        pub child: Child,
        log: Arc<Mutex<Vec<String>>>,
        reader: Option<std::thread::JoinHandle<()>>,
    }

    impl System {
        /// Starts qmail-start in single-user mode with `defaultdelivery`.
        pub fn start(home: &Home) -> System {
            System::start_cmd(
                user_cmd(home, &home.path().join("bin/qmail-start")),
                &["./Maildir/"],
            )
        }

        pub fn start_cmd(mut c: Command, args: &[&str]) -> System {
            c.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            let mut child = c.spawn().expect("start qmail-start");
            let out = child.stdout.take().expect("stdout");
            let log = Arc::new(Mutex::new(Vec::new()));
            let l2 = log.clone();
            let reader = std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match r.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            let s = String::from_utf8_lossy(&line)
                                .trim_end_matches('\n')
                                .to_string();
                            l2.lock().expect("lock").push(s);
                        }
                    }
                }
            });
            let s = System {
                child,
                log,
                reader: Some(reader),
            };
            s.wait_log("the first status line", |l| l.contains("status: local"));
            s
        }

        pub fn pid(&self) -> nix::unistd::Pid {
            nix::unistd::Pid::from_raw(self.child.id() as i32)
        }

        pub fn lines(&self) -> Vec<String> {
            self.log.lock().expect("lock").clone()
        }

        pub fn count(&self, f: impl Fn(&str) -> bool) -> usize {
            self.log
                .lock()
                .expect("lock")
                .iter()
                .filter(|l| f(l))
                .count()
        }

        pub fn wait_log(&self, what: &str, f: impl Fn(&str) -> bool) {
            self.wait_count(what, 1, f);
        }

        /// Waits for `n` log lines matching `f`; on timeout the panic shows the log.
        pub fn wait_count(&self, what: &str, n: usize, f: impl Fn(&str) -> bool) {
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if self.count(&f) >= n {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!(
                "timed out waiting for {what}; qmail-send's log: {:#?}",
                self.lines()
            );
        }

        pub fn signal(&self, s: nix::sys::signal::Signal) {
            nix::sys::signal::kill(self.pid(), s).expect("kill");
        }

        /// TERM, then wait for qmail-send to exit 0 and the log to end. Returns the log.
        pub fn stop(mut self) -> Vec<String> {
            self.signal(nix::sys::signal::Signal::SIGTERM);
            let st = wait_child(&mut self.child);
            assert_eq!(st, Some(0), "qmail-send exit status");
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
            self.lines()
        }

        /// kill -9 qmail-send.
        pub fn kill(mut self) {
            self.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = wait_child(&mut self.child);
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
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

    pub fn wait_child(c: &mut Child) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(st) = c.try_wait().expect("try_wait") {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process did not exit");
    }
}
