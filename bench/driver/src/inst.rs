//! One qmail installation under test (rqmail's bench home, or another qmail's home), and
//! its queue: counting, emptying and filling it without qmail-queue.

use crate::sys;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A qmail home whose programs are measured.
pub struct Inst {
    /// "rqmail" or "other".
    pub label: String,
    pub home: PathBuf,
    /// rqmail programs also get QMAIL_HOME (ignored by setuid ones).
    pub rqmail: bool,
    /// Files changed for the benchmark, with what they held before (restored at the end).
    saved: Vec<(PathBuf, Option<Vec<u8>>)>,
}

/// The envelope sender and domains the benchmark uses.
pub const SENDER: &str = "bench@bench.example";
pub const LOCAL_RCPT: &str = "bench@bench.example";
pub const REMOTE_RCPT: &str = "bench@sink.example";

impl Inst {
    pub fn new(label: &str, home: PathBuf, rqmail: bool) -> Inst {
        Inst {
            label: label.to_string(),
            home,
            rqmail,
            saved: Vec::new(),
        }
    }

    pub fn bin(&self, prog: &str) -> PathBuf {
        self.home.join("bin").join(prog)
    }

    /// The command that serves this installation's qmail-smtpd on 127.0.0.1:`port`:
    /// tcpserver running qmail-smtpd (a fork and an exec per connection), or, with
    /// `server` and for rqmail, rqmail's qmail-smtpd-server (a fork per connection, no
    /// exec; same options); `opts` go before the address (`-c`, `-b`, ...). The other
    /// installation has no qmail-smtpd-server: it always gets tcpserver.
    pub fn smtpd_front(
        &self,
        tcpserver: &Path,
        server: bool,
        opts: &[String],
        uid: u32,
        gid: u32,
        port: u16,
    ) -> Command {
        let server = server && self.rqmail;
        let mut c = Command::new(if server {
            self.bin("qmail-smtpd-server")
        } else {
            tcpserver.to_path_buf()
        });
        self.env(&mut c);
        c.args(["-q", "-R", "-H", "-l", "bench.example"])
            .args(opts)
            .args(["-u", &uid.to_string(), "-g", &gid.to_string(), "127.0.0.1"])
            .arg(port.to_string());
        if !server {
            c.arg(self.bin("qmail-smtpd"));
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    pub fn queue(&self) -> PathBuf {
        self.home.join("queue")
    }

    /// A command for one of this installation's programs with an empty environment
    /// (PATH, and QMAIL_HOME for rqmail).
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(self.bin(prog));
        self.env(&mut c);
        c
    }

    pub fn env(&self, c: &mut Command) {
        c.env_clear().env(
            "PATH",
            format!(
                "{}:/usr/local/bin:/usr/bin:/bin",
                self.home.join("bin").display()
            ),
        );
        if self.rqmail {
            c.env("QMAIL_HOME", &self.home);
        }
        c.current_dir("/");
    }

    /// Remembers `rel` (below the home) once, so that [`Inst::restore_all`] puts it back.
    pub fn save(&mut self, rel: &str) {
        let p = self.home.join(rel);
        if !self.saved.iter().any(|(q, _)| *q == p) {
            let old = sys::read_opt(&p);
            self.saved.push((p, old));
        }
    }

    /// Writes control/NAME (saved first); `None` removes it.
    pub fn set_control(&mut self, name: &str, text: Option<&str>) -> io::Result<()> {
        let rel = format!("control/{name}");
        self.save(&rel);
        sys::restore(&self.home.join(rel), &text.map(|t| t.as_bytes().to_vec()))
    }

    /// Puts back every file changed through [`Inst::save`].
    pub fn restore_all(&mut self) {
        for (p, data) in self.saved.drain(..) {
            if let Err(e) = sys::restore(&p, &data) {
                eprintln!("bench: warning: unable to restore {}: {e}", p.display());
            }
        }
    }

    /// Hands one message to this installation's qmail-queue; true when it exits 0.
    pub fn inject(&self, msg: &[u8], env: &[u8]) -> io::Result<bool> {
        Ok(self.inject_status(msg, env)?.success())
    }

    /// As [`inject`](Self::inject), with qmail-queue's exit status.
    pub fn inject_status(&self, msg: &[u8], env: &[u8]) -> io::Result<std::process::ExitStatus> {
        let (r0, mut w0) = io::pipe()?;
        w0.write_all(msg)?;
        drop(w0);
        let (r1, mut w1) = io::pipe()?;
        w1.write_all(env)?;
        drop(w1);
        let st = self
            .cmd("qmail-queue")
            .stdin(Stdio::from(r0))
            .stdout(Stdio::from(r1))
            .stderr(Stdio::null())
            .status()?;
        Ok(st)
    }
}

impl Drop for Inst {
    fn drop(&mut self) {
        self.restore_all();
    }
}

/// A message of about `size` bytes, as a mail client would hand it over.
pub fn message(size: usize, to: &str) -> Vec<u8> {
    let mut m = format!(
        "From: {SENDER}\nTo: {to}\nSubject: rqmail benchmark\nMessage-ID: <bench@bench.example>\n\n"
    )
    .into_bytes();
    let line =
        b"The quick brown fox jumps over the lazy dog, again and again, for the benchmark.\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    m
}

/// The envelope for qmail-queue: one sender, one recipient.
pub fn envelope(to: &str) -> Vec<u8> {
    format!("F{SENDER}\0T{to}\0\0").into_bytes()
}

const FLAT: [&str; 4] = ["pid", "intd", "todo", "bounce"];
const SPLIT: [&str; 4] = ["mess", "info", "local", "remote"];

fn files_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    files_in(dir).into_iter().filter(|p| p.is_dir()).collect()
}

/// Number of message files in a queue directory (flat, or below its split subdirectories).
pub fn count(queue: &Path, dir: &str) -> usize {
    let d = queue.join(dir);
    if SPLIT.contains(&dir) {
        subdirs(&d).iter().map(|s| files_in(s).len()).sum()
    } else {
        files_in(&d).len()
    }
}

/// Number of messages in the queue (files in mess/).
pub fn messages(queue: &Path) -> usize {
    count(queue, "mess")
}

/// Removes every message file, keeping the directories.
pub fn empty(queue: &Path) -> io::Result<()> {
    for d in FLAT {
        for f in files_in(&queue.join(d)) {
            fs::remove_file(&f)?;
        }
    }
    for d in SPLIT {
        for s in subdirs(&queue.join(d)) {
            for f in files_in(&s) {
                fs::remove_file(&f)?;
            }
        }
    }
    Ok(())
}

/// The queue's split: its number of numbered mess/ subdirectories.
pub fn split(queue: &Path) -> u64 {
    subdirs(&queue.join("mess"))
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.parse::<u64>().is_ok())
        })
        .count() as u64
}

/// Fills the queue with `n` preprocessed messages (mess, info, remote), as qmail-send leaves
/// them after todo processing: what qmail-qread and qmail-qstat read. Files are written
/// directly (no qmail-queue), so 100,000 messages take seconds.
pub fn fill(queue: &Path, n: u64, first_id: u64) -> io::Result<()> {
    let split = split(queue);
    if split == 0 {
        return Err(io::Error::other(format!(
            "{}: no mess/ subdirectories",
            queue.display()
        )));
    }
    let mess = message(600, REMOTE_RCPT);
    let info = format!("F{SENDER}\0").into_bytes();
    let remote = format!("T{REMOTE_RCPT}\0").into_bytes();
    for id in first_id..first_id + n {
        let s = (id % split).to_string();
        let name = id.to_string();
        fs::write(queue.join("mess").join(&s).join(&name), &mess)?;
        fs::write(queue.join("info").join(&s).join(&name), &info)?;
        fs::write(queue.join("remote").join(&s).join(&name), &remote)?;
    }
    Ok(())
}

/// True when a qmail-send holds this queue's lock/sendmutex.
pub fn send_running(queue: &Path) -> bool {
    let Ok(f) = fs::OpenOptions::new()
        .write(true)
        .open(queue.join("lock/sendmutex"))
    else {
        return false;
    };
    match f.try_lock() {
        Ok(()) => {
            let _ = f.unlock();
            false
        }
        Err(_) => true,
    }
}
