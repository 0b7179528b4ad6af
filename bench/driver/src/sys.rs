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
