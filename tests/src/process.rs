//! Processes the tests start and watch: children killed when dropped, programs on pipes
//! with a watchdog, the mail system (qmail-start) with its log, /proc readers, hang
//! guards.

use crate::home::user_cmd;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Hang guard for anything a test waits for (never a timing assertion).
pub const WAIT: Duration = Duration::from_secs(120);

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

/// The one child of `parent` called `name`, once it exists.
pub fn child_named(parent: i32, name: &str) -> i32 {
    let mut pid = 0;
    wait_until(&format!("{name} under {parent}"), || {
        pid = children(parent)
            .into_iter()
            .find(|(_, n)| n == name)
            .map_or(0, |(p, _)| p);
        pid != 0
    });
    pid
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
/// A child process killed when dropped (servers the tests start).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

/// The mail system running on a home: qmail-start (which becomes qmail-send) with its
/// log collected line by line.
pub struct System {
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl System {
    /// Starts qmail-start in single-user mode with `defaultdelivery`.
    pub fn start(home: impl AsRef<Path>) -> System {
        let home = home.as_ref();
        System::start_cmd(
            user_cmd(home, &home.join("bin/qmail-start")),
            &["./Maildir/"],
        )
    }

    /// Starts `c` (qmail-start, or a program that runs it) with `args`, collecting what it
    /// writes to descriptor 1; waits for qmail-send's first status line.
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

    /// TERM, then wait (hang-guarded) for qmail-send to exit. Returns its exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        wait_child(&mut self.child)
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

/// Starts the Python program `script`, written as `dir/name`, with `args`; returns it and
/// the port it printed on its first line (None when that line is not a number, e.g.
/// "busy").
pub fn start_python(
    dir: &Path,
    name: &str,
    script: &str,
    args: &[&Path],
) -> Option<(KillOnDrop, u16)> {
    let p = dir.join(name);
    fs::write(&p, script).expect("write script");
    let mut c = Command::new(crate::programs::python());
    c.arg(&p)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = c.spawn().expect("start python");
    let out = child.stdout.take().expect("stdout");
    let k = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("port line");
    line.trim().parse().ok().map(|port| (k, port))
}

/// A `kB` field of /proc/PID/status as a number of KiB.
pub fn proc_kb(st: &std::collections::HashMap<String, String>, key: &str) -> u64 {
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
