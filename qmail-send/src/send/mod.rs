//! qmail-send: the scheduler that moves every queued message through the states of
//! INTERNALS.
//!
//! * todo/N (queued) is preprocessed: the sender goes to info/S/N, each recipient,
//!   rewritten, to local/S/N or remote/S/N; qmail-clean then removes todo/N and intd/N;
//! * each recipient line `T...` in local/ or remote/ is handed to qmail-lspawn or
//!   qmail-rspawn; success or permanent failure marks it `D` in place; a permanent
//!   failure also appends a paragraph to bounce/N;
//! * when no recipient is left, the file is removed; when both are gone the bounce (if
//!   any) is injected through qmail-queue, qmail-clean removes mess/S/N, and info/S/N
//!   is removed last (the finish module explains this order);
//! * qmail-qctl's requests (the qctl module) hold a message (parked: in no retry list,
//!   its info file marked), release, delete or retry it, or pause a channel; they are
//!   answered once the deliveries already in flight for them have reported.
//!
//! Descriptors (qmail-start sets them up): 0 the log, 1/2 commands to and reports from
//! qmail-lspawn, 3/4 the same for qmail-rspawn, 5/6 qmail-clean.
//!
//! Compared with netqmail the loop starts many deliveries per turn and reads every
//! available report, and preprocessing runs beside it: a few threads preprocess queued
//! messages (and remove finished files) while the loop goes on delivering ([`work`]), so a steady stream of new mail
//! never stops deliveries and deliveries never stop preprocessing. The decisions (which
//! message next, retry times, delivery slots, bounces) are the [`sched`] module's, as plain
//! data; this module carries them out. Delivery numbers are four bytes wide with rqmail's
//! spawns (see [`crate::spawn::proto`]), so concurrency is limited by the spawns'
//! descriptor limit rather than by 255.
//!
//! One turn of the loop: wait (poll) for the spawns, the trigger, queue management, the
//! threads or the next due time; read the spawns' reports and qmail-clean's answers;
//! finish what the threads did; answer queue management; hand out new messages from todo/;
//! start the deliveries that are due; end finished messages; clean up.

pub mod bounce;
mod cleaning;
mod config;
mod prioq;
mod rewrite;
mod sched;

mod deliver;
mod files;
mod finish;
mod qctl;
mod queue;
mod todo;
mod work;

use crate::log::{self, Line};
use crate::spawn::proto::{self, ReportParser, Width};
use config::Config;
use control::Exit;
use qmail_queue::SubdirScan;
use sched::{CHANNELS, ChannelIo, Scheduler};
use std::collections::BTreeSet;
use std::fs::{File, ReadDir};
use std::io::BufReader;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

const CHANADDR: [&str; CHANNELS] = ["local", "remote"];
const CHANSTATUSMSG: [&str; CHANNELS] = [" local ", " remote "];
const TOCHAN: [&str; CHANNELS] = [" to local ", " to remote "];

/// Scan todo/ at least this often (seconds) even without a trigger.
const SLEEP_TODO: u64 = 1500;
const SLEEP_FUZZ: u64 = 1;
const SLEEP_FOREVER: u64 = 86_400;
/// Seconds between scans of mess/ for abandoned messages.
const SLEEP_CLEANUP: u64 = 76_431;
/// Retry delay after a system failure.
const SLEEP_SYSFAIL: u64 = 123;
/// Age after which a message without info/ or todo/ is abandoned.
const OSSIFIED: u64 = 129_600;

/// Most deliveries started per channel in one turn of the loop.
const START_BATCH: usize = 256;
/// Most command bytes waiting for a spawn before new deliveries wait.
const COMM_BUFFER: usize = 64 * 1024;
/// Most report bytes read per channel in one turn.
const REPORT_READ: usize = 64 * 1024;
/// The longest recipient record read from local/ or remote/ or todo/.
const MAX_RECORD: usize = 1024 * 1024;

/// The recipient list a pass is reading on a channel.
struct Pass {
    id: u64,
    job: usize,
    reader: BufReader<File>,
    /// Where the next record starts.
    mpos: u64,
}

/// The connection to one spawn (qmail-lspawn or qmail-rspawn).
struct Spawn {
    out: OwnedFd,
    inp: OwnedFd,
    alive: bool,
    width: Width,
    /// Commands not yet written.
    pending: Vec<u8>,
    reports: ReportParser,
}

impl Spawn {
    /// Whether a new command may be queued for the spawn.
    fn writable(&self) -> bool {
        self.alive && self.pending.len() < COMM_BUFFER
    }
}

/// Why qmail-send could not start (logged as `alert: cannot start: ...`).
#[derive(Debug)]
pub struct StartError(pub &'static str);

/// The daemon: the scheduler's decisions carried out on the queue, the spawns,
/// qmail-clean and the log.
pub struct Daemon {
    home: PathBuf,
    cfg: Config,
    sched: Scheduler,
    spawns: [Spawn; CHANNELS],
    passes: [Option<Pass>; CHANNELS],
    work: work::Pool,
    /// Messages whose info file is being removed (their number is not free yet).
    ending: BTreeSet<u64>,
    tododir: Option<ReadDir>,
    nexttodorun: u64,
    trigger: Option<File>,
    trigger_pulled: bool,
    cleanup: Option<SubdirScan>,
    cleanuptime: u64,
    cleaner: cleaning::Cleaner,
    recent: u64,
    runasap: bool,
    readasap: bool,
    qctl: qctl::Qctl,
}

fn set_nonblock(fd: &OwnedFd) -> bool {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) else {
        return false;
    };
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).is_ok()
}

fn read_byte(fd: &OwnedFd) -> Option<u8> {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(fd, &mut b) {
            Ok(1) => return Some(b[0]),
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return None,
        }
    }
}

fn write_all_fd(fd: &OwnedFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Reads the spawn's start byte and negotiates the framing. Returns (width, limit).
fn handshake(out: &OwnedFd, inp: &OwnedFd) -> Option<(Width, u64)> {
    let first = read_byte(inp)?;
    if !write_all_fd(out, &proto::probe_command()) {
        return None;
    }
    let mut rp = ReportParser::new(Width::Narrow);
    let mut got = Vec::new();
    while got.is_empty() {
        let b = read_byte(inp)?;
        rp.feed(&[b], &mut got);
    }
    match proto::parse_probe_answer(&got[0].1) {
        Some(n) if got[0].0 == 0 => Some((Width::Wide, u64::from(n))),
        _ => Some((Width::Narrow, u64::from(first))),
    }
}

impl Daemon {
    /// Sets up from the descriptors qmail-start passed (in the queue directory).
    pub fn new(home: PathBuf, cfg: Config, fds: [OwnedFd; 6]) -> Result<Daemon, StartError> {
        let [o1, i2, o3, i4, o5, i6] = fds;
        let mut spawns = Vec::with_capacity(CHANNELS);
        let mut spawn_max = [0; CHANNELS];
        for (c, (out, inp)) in [(o1, i2), (o3, i4)].into_iter().enumerate() {
            let (width, max) =
                handshake(&out, &inp).ok_or(StartError("hath the daemon spawn no fire?"))?;
            spawn_max[c] = max;
            spawns.push(Spawn {
                out,
                inp,
                alive: true,
                width,
                pending: Vec::new(),
                reports: ReportParser::new(width),
            });
        }
        let mut it = spawns.into_iter();
        let (Some(s0), Some(s1)) = (it.next(), it.next()) else {
            return Err(StartError("hath the daemon spawn no fire?"));
        };
        let now = control::now();
        let sched = Scheduler::new(cfg.concurrency, spawn_max, cfg.lifetime);
        let mut d = Daemon {
            home,
            cfg,
            sched,
            spawns: [s0, s1],
            passes: [None, None],
            work: work::Pool::start(),
            ending: BTreeSet::new(),
            tododir: None,
            nexttodorun: now,
            trigger: None,
            trigger_pulled: false,
            cleanup: None,
            cleanuptime: now,
            cleaner: cleaning::Cleaner::new(o5, i6),
            recent: now,
            runasap: false,
            readasap: false,
            qctl: qctl::Qctl::new(now),
        };
        for c in 0..CHANNELS {
            // Writes to the spawns must never block (deadlock); reads are batched.
            if !set_nonblock(&d.spawns[c].out) || !set_nonblock(&d.spawns[c].inp) {
                d.spawndied(c);
            }
        }
        if !d.cleaner.fds().iter().all(|fd| set_nonblock(fd)) {
            d.cleandied();
        }
        d.pqstart();
        d.del_status();
        d.trigger_set();
        Ok(d)
    }

    fn spawndied(&mut self, c: usize) {
        log::text("alert: oh no! lost spawn connection! dying...\n");
        self.spawns[c].alive = false;
        self.sched.exit();
    }

    fn cleandied(&mut self) {
        log::text("alert: oh no! lost qmail-clean connection! dying...\n");
        self.sched.exit();
    }

    // ------------------------------------------------------------------ status

    fn del_status(&self) {
        let mut l = Line::new().s("status:");
        for (c, msg) in CHANSTATUSMSG.iter().enumerate() {
            l = l
                .s(msg)
                .n(self.sched.used(c))
                .s("/")
                .n(self.sched.concurrency(c));
        }
        if self.sched.exiting() {
            l = l.s(" exitasap");
        }
        log::line(l.s("\n"));
    }

    // ----------------------------------------------------------------- controls

    fn reread(&mut self) {
        let cfg = match Config::load(&self.home) {
            Ok(c) => c,
            Err(e) => {
                files::warn(&["alert: unable to reread control/", e.0, "\n"]);
                return;
            }
        };
        let changed = self.sched.set_limits(cfg.concurrency, cfg.lifetime);
        self.cfg = cfg;
        if changed {
            self.del_status();
        }
    }

    /// What the scheduler needs to know about each channel's pass and spawn.
    fn channel_io(&self) -> [ChannelIo; CHANNELS] {
        [0, 1].map(|c| ChannelIo {
            reading: self.passes[c].is_some(),
            writable: self.spawns[c].writable(),
        })
    }

    // --------------------------------------------------------------------- main

    /// Runs until TERM (or a lost daemon) and every delivery in progress has ended.
    pub fn run(&mut self, sigfd: &SignalFd) {
        while !self.sched.exiting()
            || !self.del_canexit()
            || self.work.is_busy()
            || self.cleaner.is_waiting()
        {
            self.recent = control::now();
            if self.runasap {
                self.runasap = false;
                self.pqrun();
            }
            if self.readasap {
                self.readasap = false;
                self.reread();
            }
            let mut wakeup = self.recent + SLEEP_FOREVER;
            if let Some(t) = self.sched.wakeup(self.channel_io()) {
                wakeup = wakeup.min(t);
            }
            self.todo_wakeup(&mut wakeup);
            self.cleanup_wakeup(&mut wakeup);
            self.qctl_wakeup(&mut wakeup);
            let timeout = if wakeup <= self.recent {
                PollTimeout::ZERO
            } else {
                let ms = (wakeup - self.recent + SLEEP_FUZZ).saturating_mul(1000);
                PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX))
                    .unwrap_or(PollTimeout::MAX)
            };
            log::flush();
            let (mut rin, mut wout, mut trig, mut sig) = ([false; 2], [false; 2], false, false);
            let (mut qlisten, mut qready) = (false, Vec::new());
            let result = {
                let mut fds: Vec<PollFd> = Vec::with_capacity(6);
                let mut idx: Vec<(u8, usize)> = Vec::with_capacity(6);
                fds.push(PollFd::new(sigfd.as_fd(), PollFlags::POLLIN));
                idx.push((0, 0));
                for (c, sp) in self.spawns.iter().enumerate() {
                    if sp.alive {
                        fds.push(PollFd::new(sp.inp.as_fd(), PollFlags::POLLIN));
                        idx.push((1, c));
                        if !sp.pending.is_empty() {
                            fds.push(PollFd::new(sp.out.as_fd(), PollFlags::POLLOUT));
                            idx.push((2, c));
                        }
                    }
                }
                let (clean_out, clean_in) = self.cleaner.poll_fds();
                if let Some(fd) = clean_out {
                    fds.push(PollFd::new(fd, PollFlags::POLLOUT));
                    idx.push((7, 0));
                }
                if let Some(fd) = clean_in {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    idx.push((8, 0));
                }
                if let Some(fd) = self.work.wake_fd() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    idx.push((6, 0));
                }
                if !self.sched.exiting()
                    && let Some(t) = &self.trigger
                {
                    fds.push(PollFd::new(t.as_fd(), PollFlags::POLLIN));
                    idx.push((3, 0));
                }
                for (fd, events, what) in self.qctl.poll_fds(self.recent) {
                    fds.push(PollFd::new(fd, events));
                    match what {
                        None => idx.push((4, 0)),
                        Some(i) => idx.push((5, i)),
                    }
                }
                let r = poll(&mut fds, timeout);
                for (f, (kind, c)) in fds.iter().zip(&idx) {
                    if let Some(ev) = f.revents().filter(|r| !r.is_empty()) {
                        match kind {
                            0 => sig = true,
                            1 => rin[*c] = true,
                            2 => wout[*c] = true,
                            3 => trig = true,
                            4 => qlisten = true,
                            // The threads' results and qmail-clean's pipes: looked at
                            // every turn.
                            6..=8 => {}
                            _ => {
                                let gone = PollFlags::POLLERR | PollFlags::POLLHUP;
                                qready.push((
                                    *c,
                                    ev.intersects(PollFlags::POLLIN | gone),
                                    ev.intersects(PollFlags::POLLOUT | gone),
                                ));
                            }
                        }
                    }
                }
                r
            };
            match result {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    log::text("warning: trouble in select\n");
                    continue;
                }
                Ok(_) => {}
            }
            self.recent = control::now();
            if sig {
                while let Ok(Some(si)) = sigfd.read_signal() {
                    match i32::try_from(si.ssi_signo)
                        .ok()
                        .and_then(|s| Signal::try_from(s).ok())
                    {
                        Some(Signal::SIGTERM) => self.sched.exit(),
                        Some(Signal::SIGALRM) => self.runasap = true,
                        Some(Signal::SIGHUP) => self.readasap = true,
                        _ => {}
                    }
                }
            }
            self.trigger_pulled = trig;
            for c in 0..CHANNELS {
                if wout[c] {
                    self.comm_do(c);
                }
                if rin[c] {
                    self.del_do(c);
                }
            }
            self.clean_io();
            self.work_collect();
            self.qctl_io(qlisten, &qready);
            self.qctl_do();
            self.todo_do();
            self.pass_do();
            self.cleanup_do();
        }
        self.qctl_exit();
        self.pqfinish();
        log::text("status: exiting\n");
        log::flush();
    }
}

fn cannot_start(why: &str) -> Exit {
    files::warn(&["alert: cannot start: ", why, "\n"]);
    log::flush();
    Exit::TEMP
}

/// The qmail-send program. Returns its exit code.
pub fn main() -> Exit {
    let home = control::qmail_home();
    if std::env::set_current_dir(&home).is_err() {
        return cannot_start("unable to switch to home directory");
    }
    let Ok(cfg) = Config::load(&home) else {
        return cannot_start("unable to read controls");
    };
    if std::env::set_current_dir("queue").is_err() {
        return cannot_start("unable to switch to queue directory");
    }
    // Once for the whole mail system: the programs confine themselves silently.
    if let Some(w) = control::confine::support_warning() {
        log::text(&format!("warning: {w}\n"));
    }
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGALRM, Signal::SIGHUP] {
        mask.add(s);
    }
    if mask.thread_block().is_err() {
        return cannot_start("unable to block signals");
    }
    let Ok(sigfd) = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    else {
        return cannot_start("unable to make a signalfd");
    };
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let Ok(mutex) = control::open_write("lock/sendmutex") else {
        return cannot_start("unable to open mutex");
    };
    let Ok(_lock) = nix::fcntl::Flock::lock(mutex, nix::fcntl::FlockArg::LockExclusiveNonblock)
    else {
        return cannot_start("qmail-send is already running");
    };
    let mut fds = Vec::with_capacity(6);
    for n in 1..=6 {
        match crate::sys::inherited_fd(n) {
            Some(fd) => fds.push(fd),
            None => return cannot_start("hath the daemon spawn no fire?"),
        }
    }
    let Ok(fds) = <[OwnedFd; 6]>::try_from(fds) else {
        return cannot_start("hath the daemon spawn no fire?");
    };
    let mut daemon = match Daemon::new(home, cfg, fds) {
        Ok(d) => d,
        Err(e) => return cannot_start(e.0),
    };
    daemon.run(&sigfd);
    Exit::OK
}
