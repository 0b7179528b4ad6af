//! qmail-send: the scheduler that moves every queued message through the states of
//! INTERNALS.
//!
//! * todo/N (queued) is preprocessed: the sender goes to info/S/N, each recipient,
//!   rewritten, to local/S/N or remote/S/N; qmail-clean then removes todo/N and intd/N;
//! * each recipient line `T...` in local/ or remote/ is handed to qmail-lspawn or
//!   qmail-rspawn; success or permanent failure marks it `D` in place; a permanent
//!   failure also appends a paragraph to bounce/N;
//! * when no recipient is left, the file is removed; when both are gone the bounce (if
//!   any) is injected through qmail-queue, info/S/N is removed and qmail-clean removes
//!   mess/S/N.
//!
//! Descriptors (qmail-start sets them up): 0 the log, 1/2 commands to and reports from
//! qmail-lspawn, 3/4 the same for qmail-rspawn, 5/6 qmail-clean.
//!
//! Compared with netqmail the loop starts many deliveries per turn and reads every
//! available report, and preprocesses one queued message per turn between them, so a
//! steady stream of new mail never stops deliveries and deliveries never stop
//! preprocessing. Delivery numbers are four bytes wide with rqmail's spawns (see
//! [`crate::spawn::proto`]), so concurrency is limited by the spawns' descriptor limit
//! rather than by 255.

pub mod bounce;
pub mod config;
pub mod rewrite;
pub mod sched;

use crate::bounded::{BoundedLine, read_bounded};
use crate::log::{self, Line};
use crate::spawn::proto::{self, ReportParser, Width};
use config::Config;
use qmail_queue::layout::{SPLIT, fmtqfn};
use sched::Prioq;
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, ReadDir};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

const CHANNELS: usize = 2;
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

fn info_fn(id: u64) -> String {
    fmtqfn("info", id, true)
}
fn todo_fn(id: u64) -> String {
    fmtqfn("todo", id, false)
}
fn mess_fn(id: u64) -> String {
    fmtqfn("mess", id, true)
}
fn foop_fn(id: u64) -> String {
    fmtqfn("foop", id, false)
}
fn bounce_fn(id: u64) -> String {
    fmtqfn("bounce", id, false)
}
fn chan_fn(id: u64, c: usize) -> String {
    fmtqfn(CHANADDR[c], id, true)
}
/// The message name the spawns get: `S/N`, relative to queue/mess.
fn split_fn(id: u64) -> String {
    format!("{}/{}", id % SPLIT, id)
}

fn warn(parts: &[&str]) {
    let mut l = Line::new();
    for p in parts {
        l = l.s(p);
    }
    log::line(l);
}

fn nomem_free_exists(p: &str) -> io::Result<bool> {
    match std::fs::metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn pausedir(dir: &str) {
    warn(&["alert: unable to opendir ", dir, ", sleeping...\n"]);
    std::thread::sleep(std::time::Duration::from_secs(10));
}

/// netqmail's readsubdir: walks dir/0 ... dir/(SPLIT-1), one entry per call.
struct SubdirScan {
    name: &'static str,
    pos: u64,
    dir: Option<ReadDir>,
}

enum Scan {
    Id(u64),
    Again,
    Done,
}

impl SubdirScan {
    fn new(name: &'static str) -> SubdirScan {
        SubdirScan {
            name,
            pos: 0,
            dir: None,
        }
    }

    fn next(&mut self) -> Scan {
        let Some(dir) = &mut self.dir else {
            if self.pos >= SPLIT {
                return Scan::Done;
            }
            let p = format!("{}/{}", self.name, self.pos);
            match std::fs::read_dir(&p) {
                Ok(d) => {
                    self.dir = Some(d);
                    self.pos += 1;
                }
                Err(_) => pausedir(&p),
            }
            return Scan::Again;
        };
        match dir.next() {
            None => {
                self.dir = None;
                Scan::Again
            }
            Some(Err(_)) => Scan::Again,
            Some(Ok(e)) => match parse_id(e.file_name().as_encoded_bytes()) {
                Some(id) => Scan::Id(id),
                None => Scan::Again,
            },
        }
    }
}

/// A queue file name: decimal digits only.
fn parse_id(name: &[u8]) -> Option<u64> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// The envelope sender and the birth time (info's mtime) of a message.
fn getinfo(id: u64) -> Option<(Vec<u8>, u64)> {
    let f = File::open(info_fn(id)).ok()?;
    let mtime = u64::try_from(f.metadata().ok()?.mtime()).unwrap_or(0);
    let mut r = BufReader::with_capacity(128, f);
    match read_bounded(&mut r, 0, MAX_RECORD) {
        Ok(BoundedLine::Line(l)) if l.first() == Some(&b'F') => {
            Some((l[1..l.len() - 1].to_vec(), mtime))
        }
        _ => None,
    }
}

struct Job {
    refs: u32,
    id: u64,
    channel: usize,
    retry: u64,
    sender: Vec<u8>,
    numtodo: u64,
    flaghiteof: bool,
    flagdying: bool,
}

struct Del {
    job: usize,
    delid: u64,
    mpos: u64,
    recip: Vec<u8>,
}

struct Pass {
    id: u64,
    job: usize,
    reader: BufReader<File>,
    mpos: u64,
}

/// One delivery channel: the connection to a spawn and what runs through it.
struct Chan {
    out: OwnedFd,
    inp: OwnedFd,
    alive: bool,
    width: Width,
    /// The most deliveries the spawn accepts.
    spawn_max: u64,
    concurrency: u64,
    used: u64,
    dels: Vec<Option<Del>>,
    free: BTreeSet<u32>,
    pending: Vec<u8>,
    reports: ReportParser,
    pq: Prioq,
    pass: Option<Pass>,
}

impl Chan {
    fn comm_canwrite(&self) -> bool {
        self.pending.len() < COMM_BUFFER
    }

    fn del_avail(&self) -> bool {
        self.alive && self.comm_canwrite() && self.used < self.concurrency
    }

    /// Makes slots 0..concurrency exist.
    fn grow(&mut self) {
        let want = usize::try_from(self.concurrency).unwrap_or(usize::MAX);
        while self.dels.len() < want {
            let i = u32::try_from(self.dels.len()).unwrap_or(u32::MAX);
            self.dels.push(None);
            self.free.insert(i);
        }
    }
}

/// Why qmail-send could not start (logged as `alert: cannot start: ...`).
#[derive(Debug)]
pub struct StartError(pub &'static str);

/// The scheduler's whole state.
pub struct Send {
    home: PathBuf,
    cfg: Config,
    chans: [Chan; CHANNELS],
    jobs: Vec<Option<Job>>,
    free_jobs: Vec<usize>,
    jobs_used: u64,
    pqdone: Prioq,
    pqfail: Prioq,
    tododir: Option<ReadDir>,
    nexttodorun: u64,
    trigger: Option<File>,
    trigger_pulled: bool,
    cleanup: Option<SubdirScan>,
    cleanuptime: u64,
    clean_out: File,
    clean_in: BufReader<File>,
    masterdelid: u64,
    recent: u64,
    exitasap: bool,
    runasap: bool,
    readasap: bool,
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

impl Send {
    /// Sets up from the descriptors qmail-start passed (in the queue directory).
    pub fn new(home: PathBuf, cfg: Config, fds: [OwnedFd; 6]) -> Result<Send, StartError> {
        let [o1, i2, o3, i4, o5, i6] = fds;
        let mut chans = Vec::with_capacity(CHANNELS);
        for (c, (out, inp)) in [(o1, i2), (o3, i4)].into_iter().enumerate() {
            let (width, spawn_max) =
                handshake(&out, &inp).ok_or(StartError("hath the daemon spawn no fire?"))?;
            let concurrency = cfg.concurrency[c].min(spawn_max);
            chans.push(Chan {
                out,
                inp,
                alive: true,
                width,
                spawn_max,
                concurrency,
                used: 0,
                dels: Vec::new(),
                free: BTreeSet::new(),
                pending: Vec::new(),
                reports: ReportParser::new(width),
                pq: Prioq::default(),
                pass: None,
            });
        }
        let mut it = chans.into_iter();
        let (Some(c0), Some(c1)) = (it.next(), it.next()) else {
            return Err(StartError("hath the daemon spawn no fire?"));
        };
        let now = control::datetime::now();
        let mut s = Send {
            home,
            cfg,
            chans: [c0, c1],
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            jobs_used: 0,
            pqdone: Prioq::default(),
            pqfail: Prioq::default(),
            tododir: None,
            nexttodorun: now,
            trigger: None,
            trigger_pulled: false,
            cleanup: None,
            cleanuptime: now,
            clean_out: File::from(o5),
            clean_in: BufReader::with_capacity(16, File::from(i6)),
            masterdelid: 1,
            recent: now,
            exitasap: false,
            runasap: false,
            readasap: false,
        };
        for c in 0..CHANNELS {
            // Writes to the spawns must never block (deadlock); reads are batched.
            if !set_nonblock(&s.chans[c].out) || !set_nonblock(&s.chans[c].inp) {
                s.spawndied(c);
            }
            s.chans[c].grow();
        }
        s.pqstart();
        s.del_status();
        s.trigger_set();
        Ok(s)
    }

    fn numjobs(&self) -> u64 {
        self.chans.iter().map(|c| c.concurrency).sum()
    }

    fn spawndied(&mut self, c: usize) {
        log::text("alert: oh no! lost spawn connection! dying...\n");
        self.chans[c].alive = false;
        self.exitasap = true;
    }

    fn cleandied(&mut self) {
        log::text("alert: oh no! lost qmail-clean connection! dying...\n");
        self.exitasap = true;
    }

    /// Asks qmail-clean to remove `what` (`todo/N` or `foop/N`). `None` when qmail-clean
    /// is gone, else its answer byte.
    fn clean(&mut self, what: &str) -> Option<u8> {
        let mut cmd = what.as_bytes().to_vec();
        cmd.push(0);
        if self.clean_out.write_all(&cmd).is_err() {
            self.cleandied();
            return None;
        }
        let mut b = [0u8; 1];
        loop {
            match self.clean_in.read(&mut b) {
                Ok(1) => return Some(b[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => {
                    self.cleandied();
                    return None;
                }
            }
        }
    }

    fn clean_warn(&mut self, what: &str) -> bool {
        match self.clean(what) {
            None => false,
            Some(b'+') => true,
            Some(_) => {
                warn(&["warning: qmail-clean unable to clean up ", what, "\n"]);
                false
            }
        }
    }

    // ------------------------------------------------------------------ status

    fn del_status(&self) {
        let mut l = Line::new().s("status:");
        for (msg, ch) in CHANSTATUSMSG.iter().zip(&self.chans) {
            l = l.s(msg).n(ch.used).s("/").n(ch.concurrency);
        }
        if self.exitasap {
            l = l.s(" exitasap");
        }
        log::line(l.s("\n"));
    }

    // ------------------------------------------------------------ priority queues

    fn pqadd(&mut self, id: u64) {
        let fail = |s: &mut Send, f: &str| {
            warn(&["warning: unable to stat ", f, "; will try again later\n"]);
            s.pqfail
                .insert(control::datetime::now() + SLEEP_SYSFAIL, id);
        };
        let f = info_fn(id);
        match nomem_free_exists(&f) {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => return fail(self, &f),
        }
        let f = todo_fn(id);
        match nomem_free_exists(&f) {
            Ok(true) => return,
            Ok(false) => {}
            Err(_) => return fail(self, &f),
        }
        let mut found = [None; CHANNELS];
        for (c, slot) in found.iter_mut().enumerate() {
            let f = chan_fn(id, c);
            match std::fs::metadata(&f) {
                Ok(m) => *slot = Some(u64::try_from(m.mtime()).unwrap_or(0)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => return fail(self, &f),
            }
        }
        for (c, dt) in found.iter().enumerate() {
            if let Some(dt) = dt {
                self.chans[c].pq.insert(*dt, id);
            }
        }
        if found.iter().all(Option::is_none) {
            self.pqdone.insert(control::datetime::now(), id);
        }
    }

    fn pqstart(&mut self) {
        let mut rs = SubdirScan::new("info");
        loop {
            match rs.next() {
                Scan::Id(id) => self.pqadd(id),
                Scan::Again => {}
                Scan::Done => return,
            }
        }
    }

    /// At exit: record each waiting message's next attempt as its file's mtime.
    fn pqfinish(&mut self) {
        for c in 0..CHANNELS {
            for (dt, id) in self.chans[c].pq.drain() {
                let f = chan_fn(id, c);
                let t = nix::sys::time::TimeVal::new(i64::try_from(dt).unwrap_or(i64::MAX), 0);
                if nix::sys::stat::utimes(f.as_str(), &t, &t).is_err() {
                    warn(&[
                        "warning: unable to utime ",
                        &f,
                        "; message will be retried too soon\n",
                    ]);
                }
            }
        }
    }

    /// ALRM: everything waiting is due now.
    fn pqrun(&mut self) {
        for c in 0..CHANNELS {
            self.chans[c].pq.set_all(self.recent);
        }
    }

    // ------------------------------------------------------------------- jobs

    fn job_avail(&self) -> bool {
        self.jobs_used < self.numjobs()
    }

    fn job_open(
        &mut self,
        id: u64,
        channel: usize,
        retry: u64,
        sender: Vec<u8>,
        flagdying: bool,
    ) -> usize {
        let job = Job {
            refs: 1,
            id,
            channel,
            retry,
            sender,
            numtodo: 0,
            flaghiteof: false,
            flagdying,
        };
        self.jobs_used += 1;
        match self.free_jobs.pop() {
            Some(j) => {
                self.jobs[j] = Some(job);
                j
            }
            None => {
                self.jobs.push(Some(job));
                self.jobs.len() - 1
            }
        }
    }

    fn job_close(&mut self, j: usize) {
        let Some(job) = self.jobs.get_mut(j).and_then(Option::as_mut) else {
            return;
        };
        job.refs = job.refs.saturating_sub(1);
        if job.refs > 0 {
            return;
        }
        let Some(job) = self.jobs[j].take() else {
            return;
        };
        self.free_jobs.push(j);
        self.jobs_used -= 1;
        let mut dt = job.retry;
        if job.flaghiteof && job.numtodo == 0 {
            let f = chan_fn(job.id, job.channel);
            if std::fs::remove_file(&f).is_err() {
                warn(&["warning: unable to unlink ", &f, "; will try again later\n"]);
                dt = control::datetime::now() + SLEEP_SYSFAIL;
            } else {
                for c in 0..CHANNELS {
                    if c == job.channel {
                        continue;
                    }
                    let f = chan_fn(job.id, c);
                    match std::fs::metadata(&f) {
                        Ok(_) => return, // the other channel is still going
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(_) => {
                            warn(&["warning: unable to stat ", &f, "\n"]);
                            break;
                        }
                    }
                }
                self.pqdone.insert(control::datetime::now(), job.id);
                return;
            }
        }
        self.chans[job.channel].pq.insert(dt, job.id);
    }

    // ---------------------------------------------------------------- bounces

    fn addbounce(&mut self, id: u64, recip: &[u8], report: &[u8]) {
        let text = bounce::record(rewrite::strip_vdom_prepend(&self.cfg, recip), report);
        let f = bounce_fn(id);
        let mut file = loop {
            match OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&f)
            {
                Ok(file) => break file,
                Err(_) => {
                    log::text("alert: unable to append to bounce message; HELP! sleeping...\n");
                    std::thread::sleep(std::time::Duration::from_secs(10));
                }
            }
        };
        let mut pos = 0;
        while pos < text.len() {
            match file.write(&text[pos..]) {
                Ok(n) if n > 0 => pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => {
                    log::text("alert: unable to append to bounce message; HELP! sleeping...\n");
                    std::thread::sleep(std::time::Duration::from_secs(10));
                }
            }
        }
        // netqmail leaves bounce/N to the page cache; rqmail makes the failure durable
        // before the recipient is marked done.
        let _ = file.sync_data();
    }

    /// Injects the bounce for message `id` if bounce/N exists, then removes bounce/N.
    /// False when it must be tried again later.
    fn injectbounce(&mut self, id: u64) -> bool {
        let Some((mut sender, _)) = getinfo(id) else {
            return false;
        };
        // owner-@host-@[] -> owner-@host
        if sender.len() >= 4 && sender.ends_with(b"-@[]") {
            sender.truncate(sender.len() - 4);
        }
        let bf = bounce_fn(id);
        match std::fs::metadata(&bf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            Err(_) => {
                warn(&["warning: unable to stat ", &bf, "\n"]);
                return false;
            }
        }
        if sender == b"#@[]" {
            warn(&["triple bounce: discarding ", &bf, "\n"]);
        } else {
            let Ok(mut qq) = qmail_queue::QueueClient::open_default(&self.home) else {
                log::text("warning: unable to start qmail-queue, will try later\n");
                return false;
            };
            let qp = qq.pid();
            let double = sender.is_empty();
            let (bsender, brecip): (&[u8], Vec<u8>) = if double {
                (b"#@[]", self.cfg.doublebounceto.clone())
            } else {
                (b"", sender.clone())
            };
            qq.put(&bounce::head(
                control::datetime::now(),
                &self.cfg.bouncefrom,
                &self.cfg.bouncehost,
                &brecip,
                double,
            ));
            copy_into(&mut qq, &bf);
            qq.put(&bounce::middle(&sender, double));
            copy_into(&mut qq, &mess_fn(id));
            qq.from(bsender);
            qq.to(&brecip);
            if qq.close().is_err() {
                log::text("warning: trouble injecting bounce message, will try later\n");
                return false;
            }
            log::line(
                Line::new()
                    .s("bounce msg ")
                    .n(id)
                    .s(" qp ")
                    .n(u64::from(qp))
                    .s("\n"),
            );
        }
        if std::fs::remove_file(&bf).is_err() {
            warn(&["warning: unable to unlink ", &bf, "\n"]);
            return false;
        }
        true
    }

    // ------------------------------------------------------------- deliveries

    fn del_canexit(&self) -> bool {
        self.chans.iter().all(|c| !c.alive || c.used == 0)
    }

    fn del_start(&mut self, j: usize, mpos: u64, recip: &[u8]) {
        let Some(job) = self.jobs.get(j).and_then(Option::as_ref) else {
            return;
        };
        let c = job.channel;
        let (id, sender) = (job.id, job.sender.clone());
        let ch = &mut self.chans[c];
        if !ch.alive || !ch.comm_canwrite() {
            return;
        }
        let limit = u32::try_from(ch.concurrency).unwrap_or(u32::MAX);
        let Some(&i) = ch.free.range(..limit).next() else {
            return;
        };
        ch.free.remove(&i);
        let delid = self.masterdelid;
        self.masterdelid += 1;
        ch.dels[i as usize] = Some(Del {
            job: j,
            delid,
            mpos,
            recip: recip.to_vec(),
        });
        ch.used += 1;
        let cmd = proto::command(
            ch.width,
            i,
            split_fn(id).as_bytes(),
            &rewrite::sender_for(&sender, recip),
            recip,
        );
        ch.pending.extend_from_slice(&cmd);
        if let Some(job) = self.jobs[j].as_mut() {
            job.refs += 1;
        }
        log::line(
            Line::new()
                .s("starting delivery ")
                .n(delid)
                .s(": msg ")
                .n(id)
                .s(TOCHAN[c])
                .safe(recip)
                .s("\n"),
        );
        self.del_status();
    }

    fn markdone(&self, c: usize, id: u64, pos: u64) {
        let f = chan_fn(id, c);
        let ok = (|| -> io::Result<()> {
            let mut file = OpenOptions::new().write(true).open(&f)?;
            file.seek(SeekFrom::Start(pos))?;
            file.write_all(b"D")
        })();
        if ok.is_err() {
            warn(&[
                "warning: trouble marking ",
                &f,
                "; message will be delivered twice!\n",
            ]);
        }
    }

    fn del_report(&mut self, c: usize, delnum: u32, mut text: Vec<u8>) {
        let slot = usize::try_from(delnum).unwrap_or(usize::MAX);
        let Some(del) = self.chans[c].dels.get_mut(slot).and_then(Option::take) else {
            log::text("warning: internal error: delivery report out of range\n");
            return;
        };
        let (jid, dying) = match self.jobs.get(del.job).and_then(Option::as_ref) {
            Some(j) => (j.id, j.flagdying),
            None => (0, false),
        };
        if text.first() == Some(&b'Z') && dying {
            text[0] = b'D';
            text.extend_from_slice(bounce::TOO_LONG);
        }
        let head = Line::new().s("delivery ").n(del.delid);
        match text.first() {
            Some(b'K') => {
                log::line(head.s(": success: ").safe(&text[1..]).s("\n"));
                self.markdone(c, jid, del.mpos);
                if let Some(j) = self.jobs[del.job].as_mut() {
                    j.numtodo = j.numtodo.saturating_sub(1);
                }
            }
            Some(b'Z') => log::line(head.s(": deferral: ").safe(&text[1..]).s("\n")),
            Some(b'D') => {
                log::line(head.s(": failure: ").safe(&text[1..]).s("\n"));
                self.addbounce(jid, &del.recip, &text[1..]);
                self.markdone(c, jid, del.mpos);
                if let Some(j) = self.jobs[del.job].as_mut() {
                    j.numtodo = j.numtodo.saturating_sub(1);
                }
            }
            _ => log::line(head.s(": report mangled, will defer\n")),
        }
        self.job_close(del.job);
        self.chans[c].free.insert(delnum);
        self.chans[c].used -= 1;
        self.del_status();
    }

    fn del_do(&mut self, c: usize) {
        if !self.chans[c].alive {
            return;
        }
        let mut total = 0;
        let mut buf = vec![0u8; 8192];
        while total < REPORT_READ {
            match nix::unistd::read(&self.chans[c].inp, &mut buf) {
                Ok(0) => {
                    self.spawndied(c);
                    return;
                }
                Ok(n) => {
                    total += n;
                    let mut got = Vec::new();
                    self.chans[c].reports.feed(&buf[..n], &mut got);
                    for (d, text) in got {
                        self.del_report(c, d, text);
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    fn comm_do(&mut self, c: usize) {
        let ch = &mut self.chans[c];
        if !ch.alive || ch.pending.is_empty() {
            return;
        }
        match nix::unistd::write(&ch.out, &ch.pending) {
            Ok(n) => {
                ch.pending.drain(..n);
            }
            Err(nix::errno::Errno::EPIPE) => self.spawndied(c),
            Err(_) => {}
        }
    }

    // ----------------------------------------------------------------- passes

    /// One step of reading a channel's recipient list. True when it did something.
    fn pass_dochan(&mut self, c: usize) -> bool {
        if self.exitasap {
            return false;
        }
        if self.chans[c].pass.is_none() {
            if !self.job_avail() {
                return false;
            }
            let Some((dt, id)) = self.chans[c].pq.min() else {
                return false;
            };
            if dt > self.recent {
                return false;
            }
            self.chans[c].pq.delmin();
            let f = chan_fn(id, c);
            let opened = File::open(&f)
                .ok()
                .and_then(|file| getinfo(id).map(|info| (file, info)));
            let Some((file, (sender, birth))) = opened else {
                warn(&["warning: trouble opening ", &f, "; will try again later\n"]);
                self.chans[c].pq.insert(self.recent + SLEEP_SYSFAIL, id);
                return true;
            };
            let retry = sched::nextretry(birth, self.recent, c);
            let dying = self.recent > birth.saturating_add(self.cfg.lifetime);
            let j = self.job_open(id, c, retry, sender, dying);
            self.chans[c].pass = Some(Pass {
                id,
                job: j,
                reader: BufReader::with_capacity(4096, file),
                mpos: 0,
            });
        }
        if !self.chans[c].del_avail() {
            return false;
        }
        let Some(pass) = self.chans[c].pass.as_mut() else {
            return false;
        };
        let (id, j) = (pass.id, pass.job);
        let r = read_bounded(&mut pass.reader, 0, MAX_RECORD);
        let line = match r {
            Ok(BoundedLine::Line(l)) => l,
            Ok(BoundedLine::Eof(_)) => {
                self.chans[c].pass = None;
                if let Some(job) = self.jobs[j].as_mut() {
                    job.flaghiteof = true;
                }
                self.job_close(j);
                return true;
            }
            Ok(BoundedLine::TooLong) | Err(_) => {
                let f = chan_fn(id, c);
                warn(&["warning: trouble reading ", &f, "; will try again later\n"]);
                self.chans[c].pass = None;
                self.job_close(j);
                return true;
            }
        };
        let mpos = pass.mpos;
        pass.mpos += line.len() as u64;
        match line[0] {
            b'T' => {
                if let Some(job) = self.jobs[j].as_mut() {
                    job.numtodo += 1;
                }
                self.del_start(j, mpos, &line[1..line.len() - 1]);
            }
            b'D' => {}
            _ => {
                let f = chan_fn(id, c);
                warn(&["warning: unknown record type in ", &f, "!\n"]);
                self.chans[c].pass = None;
                self.job_close(j);
            }
        }
        true
    }

    fn messdone(&mut self, id: u64) {
        let fail = |s: &mut Send| {
            s.pqdone
                .insert(control::datetime::now() + SLEEP_SYSFAIL, id)
        };
        for c in 0..CHANNELS {
            let f = chan_fn(id, c);
            match nomem_free_exists(&f) {
                Ok(true) => return, // still going
                Ok(false) => {}
                Err(_) => {
                    warn(&["warning: unable to stat ", &f, "; will try again later\n"]);
                    return fail(self);
                }
            }
        }
        let f = todo_fn(id);
        match nomem_free_exists(&f) {
            Ok(true) => return,
            Ok(false) => {}
            Err(_) => {
                warn(&["warning: unable to stat ", &f, "; will try again later\n"]);
                return fail(self);
            }
        }
        let f = info_fn(id);
        match nomem_free_exists(&f) {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                warn(&["warning: unable to stat ", &f, "; will try again later\n"]);
                return fail(self);
            }
        }
        if !self.injectbounce(id) {
            return fail(self);
        }
        log::line(Line::new().s("end msg ").n(id).s("\n"));
        // netqmail removes info/S/N first and then has qmail-clean remove mess/S/N, so a
        // crash between the two leaves mess/S/N behind until the 36-hour cleanup. Here
        // mess/S/N goes first: after a crash in between, info/S/N is still there and the
        // message simply ends again. Once mess/S/N is gone its number may be reused by a
        // new message; such a mess/S/N is newer than our info/S/N (written after the old
        // message was complete), and is left alone.
        let gone_or_reused = match (std::fs::metadata(&f), std::fs::metadata(mess_fn(id))) {
            (Ok(info), Ok(mess)) => match (info.modified(), mess.modified()) {
                (Ok(i), Ok(m)) => m > i,
                _ => false,
            },
            (_, Err(e)) if e.kind() == io::ErrorKind::NotFound => true,
            (Err(_), _) | (_, Err(_)) => {
                warn(&[
                    "warning: unable to stat ",
                    &mess_fn(id),
                    "; will try again later\n",
                ]);
                return fail(self);
            }
        };
        if !gone_or_reused {
            match self.clean(&foop_fn(id)) {
                None => return,
                Some(b'+') => {}
                Some(_) => {
                    warn(&[
                        "warning: qmail-clean unable to clean up ",
                        &foop_fn(id),
                        "\n",
                    ]);
                    return fail(self);
                }
            }
        }
        if std::fs::remove_file(&f).is_err() {
            warn(&["warning: unable to unlink ", &f, "; will try again later\n"]);
            fail(self);
        }
    }

    fn pass_do(&mut self) {
        for c in 0..CHANNELS {
            for _ in 0..START_BATCH {
                if !self.pass_dochan(c) {
                    break;
                }
            }
            self.comm_do(c);
        }
        if let Some((dt, id)) = self.pqfail.min()
            && dt <= self.recent
        {
            self.pqfail.delmin();
            self.pqadd(id);
        }
        if let Some((dt, id)) = self.pqdone.min()
            && dt <= self.recent
        {
            self.pqdone.delmin();
            self.messdone(id);
        }
    }

    fn pass_wakeup(&self, wakeup: &mut u64) {
        if self.exitasap {
            return;
        }
        for c in &self.chans {
            if c.pass.is_some() && c.del_avail() {
                *wakeup = 0;
                return;
            }
        }
        if self.job_avail() {
            for c in &self.chans {
                if c.pass.is_none()
                    && let Some((dt, _)) = c.pq.min()
                {
                    *wakeup = (*wakeup).min(dt);
                }
            }
        }
        if let Some((dt, _)) = self.pqfail.min() {
            *wakeup = (*wakeup).min(dt);
        }
        if let Some((dt, _)) = self.pqdone.min() {
            *wakeup = (*wakeup).min(dt);
        }
    }

    // ------------------------------------------------------------------ todo

    fn trigger_set(&mut self) {
        self.trigger = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("lock/trigger")
            .ok();
        self.trigger_pulled = false;
    }

    fn todo_wakeup(&self, wakeup: &mut u64) {
        if self.exitasap {
            return;
        }
        if self.tododir.is_some() {
            *wakeup = 0;
        }
        *wakeup = (*wakeup).min(self.nexttodorun);
    }

    fn todo_do(&mut self) {
        if self.exitasap {
            return;
        }
        if self.tododir.is_none() {
            if !self.trigger_pulled && self.recent < self.nexttodorun {
                return;
            }
            self.trigger_set();
            match std::fs::read_dir("todo") {
                Ok(d) => self.tododir = Some(d),
                Err(_) => {
                    pausedir("todo");
                    return;
                }
            }
            self.nexttodorun = self.recent + SLEEP_TODO;
        }
        let Some(dir) = self.tododir.as_mut() else {
            return;
        };
        let e = match dir.next() {
            None => {
                self.tododir = None;
                return;
            }
            Some(Err(_)) => return,
            Some(Ok(e)) => e,
        };
        let Some(id) = parse_id(e.file_name().as_encoded_bytes()) else {
            return;
        };
        self.preprocess(id);
    }

    /// Preprocesses todo/N: writes info/, local/, remote/, then has qmail-clean remove
    /// todo/N and intd/N.
    fn preprocess(&mut self, id: u64) {
        let tf = todo_fn(id);
        let Ok(todo) = File::open(&tf) else {
            warn(&["warning: unable to open ", &tf, "\n"]);
            return;
        };
        let mf = mess_fn(id);
        let Ok(mess) = std::fs::metadata(&mf) else {
            warn(&["warning: unable to stat ", &mf, "\n"]);
            return;
        };
        for c in 0..CHANNELS {
            let f = chan_fn(id, c);
            if let Err(e) = std::fs::remove_file(&f)
                && e.kind() != io::ErrorKind::NotFound
            {
                warn(&["warning: unable to unlink ", &f, "\n"]);
                return;
            }
        }
        let inf = info_fn(id);
        if let Err(e) = std::fs::remove_file(&inf)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn(&["warning: unable to unlink ", &inf, "\n"]);
            return;
        }
        let create = |f: &str| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(f)
        };
        let Ok(info) = create(&inf) else {
            warn(&["warning: unable to create ", &inf, "\n"]);
            return;
        };
        log::line(Line::new().s("new msg ").n(id).s("\n"));
        let mut info = BufWriter::with_capacity(512, info);
        let mut chans: [Option<BufWriter<File>>; CHANNELS] = [None, None];
        let mut r = BufReader::with_capacity(8192, todo);
        let (mut uid, mut pid) = (0u64, 0u64);
        loop {
            let rec = match read_bounded(&mut r, 0, MAX_RECORD) {
                Ok(BoundedLine::Line(l)) => l,
                Ok(BoundedLine::Eof(_)) => break,
                Ok(BoundedLine::TooLong) | Err(_) => {
                    warn(&["warning: trouble reading ", &tf, "\n"]);
                    return;
                }
            };
            let body = &rec[1..rec.len() - 1];
            match rec[0] {
                b'u' => uid = control::file::scan_ulong(body).unwrap_or(0),
                b'p' => pid = control::file::scan_ulong(body).unwrap_or(0),
                b'F' => {
                    if info.write_all(&rec).and_then(|()| info.flush()).is_err() {
                        warn(&["warning: trouble writing to ", &inf, "\n"]);
                        return;
                    }
                    log::line(
                        Line::new()
                            .s("info msg ")
                            .n(id)
                            .s(": bytes ")
                            .n(mess.len())
                            .s(" from <")
                            .safe(body)
                            .s("> qp ")
                            .n(pid)
                            .s(" uid ")
                            .n(uid)
                            .s("\n"),
                    );
                }
                b'T' => {
                    let (ch, addr) = rewrite::rewrite(&self.cfg, body);
                    let c = ch as usize;
                    if chans[c].is_none() {
                        let f = chan_fn(id, c);
                        match create(&f) {
                            Ok(file) => chans[c] = Some(BufWriter::with_capacity(1024, file)),
                            Err(_) => {
                                warn(&["warning: unable to create ", &f, "\n"]);
                                return;
                            }
                        }
                    }
                    let mut line = Vec::with_capacity(addr.len() + 2);
                    line.push(b'T');
                    line.extend_from_slice(&addr);
                    line.push(0);
                    if let Some(w) = chans[c].as_mut()
                        && w.write_all(&line).is_err()
                    {
                        warn(&["warning: trouble writing to ", &chan_fn(id, c), "\n"]);
                        return;
                    }
                }
                _ => {
                    warn(&["warning: unknown record type in ", &tf, "\n"]);
                    return;
                }
            }
        }
        if info.flush().is_err() {
            warn(&["warning: trouble writing to ", &inf, "\n"]);
            return;
        }
        if info.get_ref().sync_all().is_err() {
            warn(&["warning: trouble fsyncing ", &inf, "\n"]);
            return;
        }
        drop(info);
        let mut flagchan = [false; CHANNELS];
        for c in 0..CHANNELS {
            if let Some(mut w) = chans[c].take() {
                let f = chan_fn(id, c);
                if w.flush().is_err() {
                    warn(&["warning: trouble writing to ", &f, "\n"]);
                    return;
                }
                if w.get_ref().sync_all().is_err() {
                    warn(&["warning: trouble fsyncing ", &f, "\n"]);
                    return;
                }
                flagchan[c] = true;
            }
        }
        // The new names must be on disk before todo/N goes away (rule 4: on Linux a
        // file's fsync does not make its directory entry durable).
        let mut dirs = vec![format!("info/{}", id % SPLIT)];
        for (c, used) in flagchan.iter().enumerate() {
            if *used {
                dirs.push(format!("{}/{}", CHANADDR[c], id % SPLIT));
            }
        }
        for d in &dirs {
            if qmail_queue::durable::fsync_dir(Path::new(d)).is_err() {
                warn(&["warning: trouble fsyncing ", d, "\n"]);
                return;
            }
        }
        if !self.clean_warn(&tf) {
            return;
        }
        let now = control::datetime::now();
        for (c, used) in flagchan.iter().enumerate() {
            if *used {
                self.chans[c].pq.insert(now, id);
            }
        }
        if !flagchan.iter().any(|&u| u) {
            self.pqdone.insert(now, id);
        }
    }

    // --------------------------------------------------------------- cleanups

    fn cleanup_wakeup(&self, wakeup: &mut u64) {
        if self.cleanup.is_some() {
            *wakeup = 0;
        }
        *wakeup = (*wakeup).min(self.cleanuptime);
    }

    fn cleanup_do(&mut self) {
        if self.cleanup.is_none() {
            if self.recent < self.cleanuptime {
                return;
            }
            self.cleanup = Some(SubdirScan::new("mess"));
        }
        let Some(scan) = self.cleanup.as_mut() else {
            return;
        };
        let id = match scan.next() {
            Scan::Id(id) => id,
            Scan::Again => return,
            Scan::Done => {
                self.cleanup = None;
                self.cleanuptime = self.recent + SLEEP_CLEANUP;
                return;
            }
        };
        let Ok(m) = std::fs::metadata(mess_fn(id)) else {
            return; // probably qmail-queue removed it
        };
        let atime = u64::try_from(m.atime()).unwrap_or(0);
        if self.recent <= atime.saturating_add(OSSIFIED) {
            return;
        }
        for f in [info_fn(id), todo_fn(id)] {
            match nomem_free_exists(&f) {
                Ok(false) => {}
                _ => return,
            }
        }
        self.clean_warn(&foop_fn(id));
    }

    // ----------------------------------------------------------------- controls

    fn reread(&mut self) {
        let cfg = match Config::load(&self.home) {
            Ok(c) => c,
            Err(e) => {
                warn(&["alert: unable to reread control/", e.0, "\n"]);
                return;
            }
        };
        let mut changed = false;
        for c in 0..CHANNELS {
            let n = cfg.concurrency[c].min(self.chans[c].spawn_max);
            if n != self.chans[c].concurrency {
                self.chans[c].concurrency = n;
                self.chans[c].grow();
                changed = true;
            }
        }
        self.cfg = cfg;
        if changed {
            self.del_status();
        }
    }

    // --------------------------------------------------------------------- main

    /// Runs until TERM (or a lost daemon) and every delivery in progress has ended.
    pub fn run(&mut self, sigfd: &SignalFd) {
        while !self.exitasap || !self.del_canexit() {
            self.recent = control::datetime::now();
            if self.runasap {
                self.runasap = false;
                self.pqrun();
            }
            if self.readasap {
                self.readasap = false;
                self.reread();
            }
            let mut wakeup = self.recent + SLEEP_FOREVER;
            self.pass_wakeup(&mut wakeup);
            self.todo_wakeup(&mut wakeup);
            self.cleanup_wakeup(&mut wakeup);
            let timeout = if wakeup <= self.recent {
                PollTimeout::ZERO
            } else {
                let ms = (wakeup - self.recent + SLEEP_FUZZ).saturating_mul(1000);
                PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX))
                    .unwrap_or(PollTimeout::MAX)
            };
            let (mut rin, mut wout, mut trig, mut sig) = ([false; 2], [false; 2], false, false);
            let result = {
                let mut fds: Vec<PollFd> = Vec::with_capacity(6);
                let mut idx: Vec<(u8, usize)> = Vec::with_capacity(6);
                fds.push(PollFd::new(sigfd.as_fd(), PollFlags::POLLIN));
                idx.push((0, 0));
                for (c, ch) in self.chans.iter().enumerate() {
                    if ch.alive {
                        fds.push(PollFd::new(ch.inp.as_fd(), PollFlags::POLLIN));
                        idx.push((1, c));
                        if !ch.pending.is_empty() {
                            fds.push(PollFd::new(ch.out.as_fd(), PollFlags::POLLOUT));
                            idx.push((2, c));
                        }
                    }
                }
                if !self.exitasap
                    && let Some(t) = &self.trigger
                {
                    fds.push(PollFd::new(t.as_fd(), PollFlags::POLLIN));
                    idx.push((3, 0));
                }
                let r = poll(&mut fds, timeout);
                for (f, (kind, c)) in fds.iter().zip(&idx) {
                    if f.revents().is_some_and(|r| !r.is_empty()) {
                        match kind {
                            0 => sig = true,
                            1 => rin[*c] = true,
                            2 => wout[*c] = true,
                            _ => trig = true,
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
            self.recent = control::datetime::now();
            if sig {
                while let Ok(Some(si)) = sigfd.read_signal() {
                    match i32::try_from(si.ssi_signo)
                        .ok()
                        .and_then(|s| Signal::try_from(s).ok())
                    {
                        Some(Signal::SIGTERM) => self.exitasap = true,
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
            self.todo_do();
            self.pass_do();
            self.cleanup_do();
        }
        self.pqfinish();
        log::text("status: exiting\n");
    }
}

fn copy_into(qq: &mut qmail_queue::QueueClient, path: &str) {
    let Ok(mut f) = File::open(path) else {
        qq.fail();
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => qq.put(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                qq.fail();
                return;
            }
        }
    }
}

fn cannot_start(why: &str) -> i32 {
    warn(&["alert: cannot start: ", why, "\n"]);
    111
}

/// The qmail-send program. Returns its exit code.
pub fn main() -> i32 {
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
    let Ok(mutex) = OpenOptions::new().write(true).open("lock/sendmutex") else {
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
    let mut send = match Send::new(home, cfg, fds) {
        Ok(s) => s,
        Err(e) => return cannot_start(e.0),
    };
    send.run(&sigfd);
    0
}
