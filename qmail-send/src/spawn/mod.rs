//! What qmail-lspawn and qmail-rspawn share (netqmail's spawn.c): the command loop that
//! reads delivery commands from descriptor 0, runs one child per delivery, and writes each
//! delivery's report to descriptor 1 when the child has exited and its output is complete.
//!
//! The loop polls descriptor 0, a signalfd for SIGCHLD and one pipe per running delivery,
//! so the number of simultaneous deliveries is limited by the descriptor limit (raised to
//! its hard maximum at start), not by select's FD_SETSIZE.

pub(crate) mod local;
pub(crate) mod proto;
pub(crate) mod remote;

use control::Exit;
use proto::{Command, CommandParser, Width};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exited(Exit),
    /// Killed by a signal.
    Crashed,
}

/// A child that is running, with the read end of the pipe holding its output.
#[derive(Debug)]
pub struct Running {
    pub pid: Pid,
    pub out: OwnedFd,
}

/// What a spawner decided.
#[derive(Debug)]
pub enum Step<S> {
    /// Wait for this child, then call [`Spawner::finish`] with the stage.
    Run(Running, S),
    /// The delivery is over; the report text (starting with K, Z or D).
    Done(Vec<u8>),
}

/// The part that differs between qmail-lspawn and qmail-rspawn.
pub trait Spawner {
    /// Per-delivery state between children.
    type Stage;
    /// Starts a delivery of the open message to `recip` (which has an `@` at `at`).
    fn start(&mut self, mess: File, sender: &[u8], recip: &[u8], at: usize) -> Step<Self::Stage>;
    /// A child of this delivery has exited and its output is complete.
    fn finish(
        &mut self,
        stage: Self::Stage,
        status: Status,
        output: Vec<u8>,
        overflow: bool,
    ) -> Step<Self::Stage>;
    /// How many bytes of a child's output to keep; beyond, `overflow` is set.
    fn output_limit(&self, stage: &Self::Stage) -> usize;
}

pub use control::error_temp;

/// True when starting a child failed because its arguments were too long (E2BIG), a
/// failure that no retry mends. Linux takes at most MAX_ARG_STRLEN (32 pages, 131072
/// bytes on x86-64) per argument with its `\0`: a longer sender or recipient cannot be
/// given to qmail-getpw, qmail-local or qmail-remote at all.
pub fn args_too_long(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::E2BIG)
}

/// A pipe for a child's output: (read end, write end for stdout, copy for stderr).
pub fn output_pipe() -> io::Result<(OwnedFd, OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let w2 = w.try_clone()?;
    Ok((r, w, w2))
}

/// Turns a spawned std child into a [`Running`] (the child is reaped by the loop).
pub fn running(child: std::process::Child, out: OwnedFd) -> Running {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    drop(child);
    Running { pid, out }
}

/// The descriptor limit the spawn was started with, when it raised it.
static ORIGINAL_NOFILE: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Raises the soft descriptor limit to the hard one; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                let _ = ORIGINAL_NOFILE.set((soft, hard));
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// Gives a child the descriptor limit the spawn was started with (resource limits pass
/// from qmail-start to qmail-local unchanged, as in netqmail).
pub fn child_limits(cmd: &mut std::process::Command) {
    if let Some(&(soft, hard)) = ORIGINAL_NOFILE.get() {
        crate::sys::on_exec_set_nofile(cmd, soft, hard);
    }
}

/// The most deliveries a spawn announces in narrow framing.
pub const NARROW_MAX: u32 = 255;
/// The wide limit for a descriptor limit ([`control::spawn_limit`]).
pub fn wide_max(nofile: u64) -> u32 {
    control::spawn_limit(nofile)
}

struct Slot<S> {
    stage: Option<S>,
    pid: Option<Pid>,
    status: Option<Status>,
    out: Option<OwnedFd>,
    output: Vec<u8>,
    overflow: bool,
}

/// The shared loop.
pub struct Server<P: Spawner> {
    spawner: P,
    /// The owner every message file must have (qmailq).
    uidq: u32,
    width: Width,
    max: u32,
    wide_max: u32,
    slots: HashMap<u32, Slot<P::Stage>>,
    pids: HashMap<i32, u32>,
    parser: CommandParser,
    writing: bool,
    commands_seen: u64,
    out: Vec<u8>,
}

impl<P: Spawner> Server<P> {
    pub fn new(spawner: P, uidq: u32, wide_max: u32) -> Server<P> {
        Server {
            spawner,
            uidq,
            width: Width::Narrow,
            max: NARROW_MAX,
            wide_max,
            slots: HashMap::new(),
            pids: HashMap::new(),
            parser: CommandParser::new(),
            writing: true,
            commands_seen: 0,
            out: Vec::new(),
        }
    }

    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        if self.writing {
            let stdout = io::stdout();
            let mut w = qmail_queue::FdWriter::new(stdout.as_fd());
            if w.write_all(&self.out).is_err() {
                // netqmail's okwrite: give up writing, keep delivering.
                self.writing = false;
            }
        }
        self.out.clear();
    }

    fn report(&mut self, delnum: u32, text: &[u8]) {
        self.out.extend(proto::report(self.width, delnum, text));
    }

    fn err(&mut self, delnum: u32, text: &str) {
        self.report(delnum, text.as_bytes());
    }

    fn docmd(&mut self, c: Command) {
        self.commands_seen += 1;
        let d = c.delnum;
        if self.commands_seen == 1
            && self.width == Width::Narrow
            && d == 0
            && c.messid.is_empty()
            && c.sender.is_empty()
            && c.recip == proto::PROBE_RECIP
            && !c.overflow
        {
            let a = proto::probe_answer(self.wide_max);
            self.report(0, &a);
            self.width = Width::Wide;
            self.parser.set_width(Width::Wide);
            self.max = self.wide_max;
            return;
        }
        if c.overflow {
            return self.err(d, "Zqmail-spawn out of memory. (#4.3.0)\n");
        }
        if d >= self.max {
            return self.err(d, "ZInternal error: delnum too big. (#4.3.5)\n");
        }
        if self.slots.contains_key(&d) {
            return self.err(d, "ZInternal error: delnum in use. (#4.3.5)\n");
        }
        for (i, &ch) in c.messid.iter().enumerate() {
            if !(ch.is_ascii_digit() || (i > 0 && ch == b'/')) {
                return self.err(d, "DInternal error: messid has nonnumerics. (#5.3.5)\n");
            }
        }
        if c.messid.len() + 1 > 100 {
            return self.err(d, "DInternal error: messid too long. (#5.3.5)\n");
        }
        if c.messid.is_empty() {
            return self.err(d, "DInternal error: messid too short. (#5.3.5)\n");
        }
        let Some(at) = c.recip.iter().rposition(|&ch| ch == b'@') else {
            return self.err(d, "DSorry, address must include host name. (#5.1.3)\n");
        };
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&c.messid));
        // Never waits for a FIFO's writer; what is not a file is refused just below.
        let Ok(mess) = control::open_nonblocking().read(true).open(&path) else {
            return self.err(d, "Zqmail-spawn unable to open message. (#4.3.0)\n");
        };
        let Ok(meta) = mess.metadata() else {
            return self.err(d, "Zqmail-spawn unable to fstat message. (#4.3.0)\n");
        };
        if !meta.file_type().is_file() {
            return self.err(d, "ZSorry, message has wrong type. (#4.3.5)\n");
        }
        if meta.uid() != self.uidq {
            return self.err(d, "ZSorry, message has wrong owner. (#4.3.5)\n");
        }
        let step = self.spawner.start(mess, &c.sender, &c.recip, at);
        self.step(d, step);
    }

    fn step(&mut self, d: u32, step: Step<P::Stage>) {
        match step {
            Step::Done(text) => {
                self.slots.remove(&d);
                self.report(d, &text);
            }
            Step::Run(r, stage) => {
                self.pids.insert(r.pid.as_raw(), d);
                self.slots.insert(
                    d,
                    Slot {
                        stage: Some(stage),
                        pid: Some(r.pid),
                        status: None,
                        out: Some(r.out),
                        output: Vec::new(),
                        overflow: false,
                    },
                );
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.exited(pid, Status::Exited(Exit::from_status(code)))
                }
                Ok(WaitStatus::Signaled(pid, _, _)) => self.exited(pid, Status::Crashed),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn exited(&mut self, pid: Pid, st: Status) {
        if let Some(d) = self.pids.remove(&pid.as_raw())
            && let Some(s) = self.slots.get_mut(&d)
        {
            s.pid = None;
            s.status = Some(st);
        }
    }

    fn maybe_finish(&mut self, d: u32) {
        let ready = matches!(self.slots.get(&d), Some(s) if s.out.is_none() && s.pid.is_none());
        if !ready {
            return;
        }
        let Some(mut s) = self.slots.remove(&d) else {
            return;
        };
        let (Some(stage), Some(status)) = (s.stage.take(), s.status) else {
            return;
        };
        let output = std::mem::take(&mut s.output);
        let step = self.spawner.finish(stage, status, output, s.overflow);
        self.step(d, step);
    }

    fn read_output(&mut self, d: u32) {
        let Some(s) = self.slots.get_mut(&d) else {
            return;
        };
        let Some(fd) = &s.out else {
            return;
        };
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => s.out = None,
            Ok(n) => {
                let limit = match &s.stage {
                    Some(st) => self.spawner.output_limit(st),
                    None => 0,
                };
                let room = limit.saturating_sub(s.output.len());
                if n > room {
                    s.overflow = true;
                }
                s.output.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => s.out = None,
        }
    }

    /// Runs until descriptor 0 ends and every delivery has reported. Returns the exit code.
    pub fn run(mut self) -> Exit {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        if mask.thread_block().is_err() {
            return Exit::TEMP;
        }
        let Ok(sigfd) = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        else {
            return Exit::TEMP;
        };
        // The start byte: how many deliveries at once, in netqmail's framing.
        self.out.push(NARROW_MAX as u8);
        self.flush();

        let stdin = io::stdin();
        let mut reading = true;
        let mut inbuf = vec![0u8; 4096];
        loop {
            if !reading && self.slots.is_empty() {
                return Exit::OK;
            }
            let order: Vec<u32> = self
                .slots
                .iter()
                .filter(|(_, s)| s.out.is_some())
                .map(|(d, _)| *d)
                .collect();
            let ready_stdin;
            let ready_sig;
            let mut ready: Vec<u32> = Vec::new();
            {
                let mut fds: Vec<PollFd> = Vec::with_capacity(order.len() + 2);
                fds.push(PollFd::new(sigfd.as_fd(), PollFlags::POLLIN));
                for d in &order {
                    if let Some(Some(fd)) = self.slots.get(d).map(|s| s.out.as_ref()) {
                        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    }
                }
                // Descriptor 0 only while reading: at its end it would report POLLHUP
                // forever.
                if reading {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    }
                }
                ready_sig = hit(&fds[0]);
                for (i, d) in order.iter().enumerate() {
                    if fds.get(i + 1).is_some_and(hit) {
                        ready.push(*d);
                    }
                }
                ready_stdin = reading && fds.get(order.len() + 1).is_some_and(hit);
            }
            if ready_sig {
                while let Ok(Some(_)) = sigfd.read_signal() {}
                self.reap();
            }
            if ready_stdin {
                match nix::unistd::read(&stdin, &mut inbuf) {
                    Ok(0) => reading = false,
                    Ok(n) => {
                        let mut rest = &inbuf[..n];
                        while !rest.is_empty() {
                            let (used, cmd) = self.parser.feed_one(rest);
                            rest = &rest[used..];
                            if let Some(c) = cmd {
                                self.docmd(c);
                            }
                        }
                    }
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                    Err(_) => reading = false,
                }
            }
            for d in &ready {
                self.read_output(*d);
            }
            // Children may have exited while we were busy: reap before deciding.
            self.reap();
            let done: Vec<u32> = self
                .slots
                .iter()
                .filter(|(_, s)| s.out.is_none() && s.pid.is_none())
                .map(|(d, _)| *d)
                .collect();
            for d in done {
                self.maybe_finish(d);
            }
            self.flush();
        }
    }
}

/// True when poll reported anything for `f`.
fn hit(f: &PollFd) -> bool {
    f.revents().is_some_and(|r| !r.is_empty())
}

/// Common startup of both spawns: enter QMAIL_HOME/queue/mess.
pub fn enter_queue() -> Option<PathBuf> {
    let home = control::qmail_home();
    std::env::set_current_dir(&home).ok()?;
    std::env::set_current_dir("queue/mess").ok()?;
    Some(home)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(wide_max(1024), 480);
        assert_eq!(wide_max(10), 1);
        assert_eq!(wide_max(u64::MAX), control::SPAWN_CEILING);
        assert!(error_temp(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(!error_temp(&io::Error::from_raw_os_error(libc::ENOENT)));
    }
}
