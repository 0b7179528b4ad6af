//! Processes, users, ports and files for the benchmark.

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A background process (tcpserver, qmail-start, smtp-sink) stopped when dropped.
pub struct Bg {
    pub child: Option<Child>,
}

impl Bg {
    pub fn spawn(name: &str, mut c: Command) -> io::Result<Bg> {
        let child = c
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("unable to start {name}: {e}")))?;
        Ok(Bg { child: Some(child) })
    }

    /// TERM, then waits up to `grace` for the exit; KILL after that.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        loop {
            match c.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = c.kill();
                    return c.wait().ok();
                }
            }
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(io::Error::other(format!(
        "nothing listens on 127.0.0.1:{port}"
    )))
}

/// uid and gid of a user, from /etc/passwd.
pub fn user_ids(name: &str) -> io::Result<(u32, u32)> {
    let text = fs::read_to_string("/etc/passwd")?;
    for l in text.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4
            && f[0] == name
            && let (Ok(u), Ok(g)) = (f[2].parse(), f[3].parse())
        {
            return Ok((u, g));
        }
    }
    Err(io::Error::other(format!("no user {name}")))
}

/// gid of a group, from /etc/group.
pub fn group_id(name: &str) -> io::Result<u32> {
    let text = fs::read_to_string("/etc/group")?;
    for l in text.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 3
            && f[0] == name
            && let Ok(g) = f[2].parse()
        {
            return Ok(g);
        }
    }
    Err(io::Error::other(format!("no group {name}")))
}

/// The effective uid of this process, from /proc.
pub fn euid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|s| s.parse().ok())
        .unwrap_or(u32::MAX)
}

/// A program on PATH or in the usual directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.exists().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Peak resident set size (VmHWM, kB) of a running process.
pub fn vm_hwm(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|r| r.split_whitespace().next().map(str::to_string))
        .and_then(|s| s.parse().ok())
}

/// Reads a whole file, or `None` when it does not exist.
pub fn read_opt(p: &Path) -> Option<Vec<u8>> {
    fs::read(p).ok()
}

/// Writes `data` to `p`, or removes `p` for `None`.
pub fn restore(p: &Path, data: &Option<Vec<u8>>) -> io::Result<()> {
    match data {
        Some(d) => fs::write(p, d),
        None => match fs::remove_file(p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// The output of a command, as text, with a clear error when it fails.
pub fn output(mut c: Command, what: &str) -> io::Result<String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Median of some samples (0 for none).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// A value in kB from /proc/PID/status (`VmHWM:`, `VmPTE:`, ...).
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
}

/// The proportional set size of a process (kB): its private pages, plus its share of
/// the pages it maps together with other processes.
pub fn pss_kb(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
}

/// The processes whose parent is `parent`.
pub fn children(parent: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the command may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) == Some(parent) {
            v.push(pid);
        }
    }
    v
}

unsafe extern "C" {
    fn getrlimit(resource: i32, rlim: *mut [u64; 2]) -> i32;
    fn setrlimit(resource: i32, rlim: *const [u64; 2]) -> i32;
}

/// Raises this process's descriptor limit (inherited by everything it starts) to at least
/// `want`, within the hard limit. Returns the soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    const RLIMIT_NOFILE: i32 = 7;
    let mut lim = [0u64; 2];
    // SAFETY: `lim` is a valid, writable pair of rlim_t (u64 on Linux x86-64 and arm64),
    // the layout of struct rlimit.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim[0] < want {
        let new = [want.min(lim[1]), lim[1]];
        // SAFETY: `new` is a valid struct rlimit for the duration of the call.
        if unsafe { setrlimit(RLIMIT_NOFILE, &new) } == 0 {
            return new[0];
        }
    }
    lim[0]
}

unsafe extern "C" {
    fn getrusage(who: i32, usage: *mut [i64; 18]) -> i32;
}

/// CPU seconds (user + system) and minor page faults of every child this process has
/// waited for so far (getrusage RUSAGE_CHILDREN).
pub fn children_usage() -> (f64, u64) {
    const RUSAGE_CHILDREN: i32 = -1;
    let mut u = [0i64; 18];
    // SAFETY: `u` is 144 writable bytes, the size of struct rusage on 64-bit Linux (two
    // struct timeval, then fourteen longs).
    if unsafe { getrusage(RUSAGE_CHILDREN, &mut u) } != 0 {
        return (0.0, 0);
    }
    let secs = (u[0] + u[2]) as f64 + (u[1] + u[3]) as f64 / 1e6;
    (secs, u[8].max(0) as u64)
}

/// CPU seconds of a running process from /proc/PID/stat: (its own user + system time,
/// that of its children it has waited for), and its command name.
pub fn proc_cpu(pid: u32) -> Option<(String, f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    // After the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime (fields 3 to 17 of proc(5)).
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    Some((comm, tick(11) + tick(12), tick(13) + tick(14)))
}
