//! What landed in a test home's queue, and queueing with the real qmail-queue.

use crate::home::{Home, user_cmd, walk};
use crate::programs::bin;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

impl Home {
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

/// Queues a message with the real qmail-queue run by `cmd`: message on fd 0, envelope
/// on fd 1. Returns qmail-queue's exit code.
pub fn queue_with(mut cmd: Command, msg: &[u8], sender: &str, rcpts: &[&str]) -> i32 {
    cmd.stderr(Stdio::inherit());
    run_as_queue(cmd, msg, &envelope(sender, rcpts)).0
}

/// The envelope qmail-queue reads on descriptor 1: `Fsender\0`, `Trecipient\0` each,
/// and a final `\0`.
pub fn envelope(sender: &str, rcpts: &[&str]) -> Vec<u8> {
    let mut env = format!("F{sender}\0").into_bytes();
    for r in rcpts {
        env.extend(format!("T{r}\0").into_bytes());
    }
    env.push(0);
    env
}

/// Runs `cmd` as qmail-queue is run: `msg` written to descriptor 0 and the raw
/// `envelope` readable on descriptor 1 (each from a thread of its own, write errors
/// ignored: the program may stop reading), descriptor 2 as `cmd` has it. Returns the exit
/// code (-1 for a signal), the pid, and descriptor 2's output when `cmd` pipes it.
pub fn run_as_queue(mut cmd: Command, msg: &[u8], envelope: &[u8]) -> (i32, u32, Vec<u8>) {
    let (env_r, env_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    cmd.stdin(Stdio::piped()).stdout(Stdio::from(env_r));
    let mut child = cmd.spawn().expect("spawn qmail-queue");
    // `cmd` holds the envelope pipe's read end: without dropping it, a qmail-queue that
    // stops reading early (exit 11 on an address over 1002 bytes) would leave the writer
    // thread blocked for ever.
    drop(cmd);
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    let msg = msg.to_vec();
    let env = envelope.to_vec();
    let t1 = std::thread::spawn(move || {
        let _ = stdin.write_all(&msg);
    });
    let t2 = std::thread::spawn(move || {
        let _ = fs::File::from(env_w).write_all(&env);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = t1.join();
    let _ = t2.join();
    (out.status.code().unwrap_or(-1), pid, out.stderr)
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
