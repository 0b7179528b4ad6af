//! Queue management requests from qmail-qctl(8): hold, release, delete and retry one
//! message, retry everything, pause and resume a channel, report the status.
//!
//! The requests arrive on a UNIX stream socket in the abstract namespace named after the
//! queue directory ([`qmail_queue::qctl::socket_name`]); only root and qmail-send's own
//! user may connect. Every connection is non-blocking and served from the main poll loop,
//! with bounded buffers, like the spawns.
//!
//! How a request meets the deliveries in progress. Each (message, channel) is at any time
//! in exactly one place: waiting in the channel's priority queue, in a job (a pass reading
//! its recipients, or deliveries in flight), or - new here - parked because the message is
//! held. Holding (and deleting, which holds first) a message
//!
//! 1. sets the hold mark on its info file and fsyncs it ([`qmail_queue::mark`]), so the hold
//!    survives a crash;
//! 2. takes it out of both priority queues and ends a pass reading it, so no delivery of it
//!    starts from now on; a job that closes later parks the message instead of queueing
//!    it again;
//! 3. notes the deliveries of the message already in flight. They cannot be recalled (a
//!    mailbox may already hold the message); their reports are handled exactly as usual
//!    (a success or failure marks the recipient done, a failure is added to the bounce),
//!    and the request is answered once every one of them has reported, with their
//!    outcomes.
//!
//! A delete then removes bounce/N (no bounce is sent for a deleted message), local/S/N
//! and remote/S/N, fsyncs their directories, and ends the message as any finished one
//! (mess, then info). After a crash at any point the message is either still held with
//! some recipients (delete again) or has no recipient files left, which every qmail-send
//! takes for a finished message and cleans up.

use super::files::{bounce_fn, chan_fn, file_exists, info_fn, todo_fn, warn};
use super::sched::CHANNELS;
use super::{CHANADDR, Daemon};
use crate::log::{self, Line};
use nix::poll::PollFlags;
use qmail_queue::SPLIT;
use qmail_queue::qctl::{self as qp, Kind, MAX_LINE, Reply, Request};
use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;

/// Most connections at once (only root and qmail-send's user can connect).
const MAX_CONNS: usize = 16;
/// Most reply bytes waiting for a client before it is dropped.
const MAX_OUT: usize = 64 * 1024;
/// Most requests handled in one turn of the loop, so requests never stall deliveries.
const REQUESTS_PER_TURN: usize = 64;
/// Seconds between attempts to listen after a failure.
const LISTEN_RETRY: u64 = 60;

/// What a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Msg(u64),
    Chan(usize),
}

/// A request applied and waiting for the deliveries that were in flight.
struct Waiter {
    conn: u64,
    req: Request,
    target: Target,
    /// (delivery number, report letter: 0 while it runs, K, D or Z).
    dels: Vec<(u64, u8)>,
    already: bool,
}

struct Conn {
    id: u64,
    stream: UnixStream,
    uid: u32,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// A request of this connection is waiting: the next line waits too.
    busy: bool,
    eof: bool,
    /// Close once the output is written.
    closing: bool,
    dead: bool,
}

impl Conn {
    fn has_line(&self) -> bool {
        self.inbuf.contains(&b'\n')
    }

    fn wants_read(&self) -> bool {
        !self.eof && !self.closing && self.inbuf.len() < 4 * MAX_LINE
    }

    fn send(&mut self, r: &Reply) {
        self.out.extend_from_slice(r.line().as_bytes());
        if self.out.len() > MAX_OUT {
            self.dead = true;
        }
    }

    fn flush(&mut self) {
        while !self.out.is_empty() && !self.dead {
            match (&self.stream).write(&self.out) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => self.dead = true,
            }
        }
    }

    fn read(&mut self) {
        let mut buf = [0u8; 2048];
        loop {
            match (&self.stream).read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    if !self.wants_read() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }

    /// Reads and drops what the client sent and nobody will read, so that closing the
    /// connection does not reset it before the client has read the last reply.
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            match (&self.stream).read(&mut buf) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
    }

    /// Whether the connection can go.
    fn finished(&self) -> bool {
        self.dead
            || (self.out.is_empty()
                && (self.closing || (self.eof && !self.busy && !self.has_line())))
    }
}

/// The queue management part of qmail-send's state.
pub(super) struct Qctl {
    listener: Option<UnixListener>,
    /// When to try to listen again (or to accept again after an error).
    retry_at: u64,
    conns: Vec<Conn>,
    next_conn: u64,
    waiters: Vec<Waiter>,
    /// Messages with a delete waiting for their deliveries: they cannot be released.
    deleting: BTreeSet<u64>,
}

/// Binds the control socket of the queue in the current directory.
fn listen() -> io::Result<UnixListener> {
    let md = std::fs::metadata(".")?;
    let name = qp::socket_name(md.dev(), md.ino());
    let addr = SocketAddr::from_abstract_name(name)?;
    let l = UnixListener::bind_addr(&addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

impl Qctl {
    /// Starts listening (in the queue directory).
    pub(super) fn new(now: u64) -> Qctl {
        let mut q = Qctl {
            listener: None,
            retry_at: now,
            conns: Vec::new(),
            next_conn: 0,
            waiters: Vec::new(),
            deleting: BTreeSet::new(),
        };
        q.try_listen(now);
        q
    }

    fn try_listen(&mut self, now: u64) {
        match listen() {
            Ok(l) => self.listener = Some(l),
            Err(e) => {
                let why = e.to_string();
                warn(&[
                    "warning: unable to listen for qmail-qctl requests: ",
                    &why,
                    "; will try again later\n",
                ]);
                self.retry_at = now + LISTEN_RETRY;
            }
        }
    }

    /// The descriptors to poll: (fd, events, what) with what = None for the listener,
    /// Some(i) for connection i.
    pub(super) fn poll_fds(&self, now: u64) -> Vec<(BorrowedFd<'_>, PollFlags, Option<usize>)> {
        let mut v = Vec::new();
        if let Some(l) = &self.listener
            && now >= self.retry_at
        {
            v.push((l.as_fd(), PollFlags::POLLIN, None));
        }
        for (i, c) in self.conns.iter().enumerate() {
            let mut ev = PollFlags::empty();
            if c.wants_read() {
                ev |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            if !ev.is_empty() {
                v.push((c.stream.as_fd(), ev, Some(i)));
            }
        }
        v
    }
}

/// The text of a request for the log: `hold msg 457`, `pause remote`, `retry all`.
fn log_request(req: &Request, uid: u32) {
    let l = Line::new().s("qctl: ").s(req.verb());
    let l = match *req {
        Request::Hold(n) | Request::Release(n) | Request::Delete(n) | Request::Retry(n) => {
            l.s(" msg ").n(n)
        }
        Request::RetryAll => l.s(" all"),
        Request::Pause(c) | Request::Resume(c) => l.s(" ").s(CHANADDR[c]),
        Request::Status => l,
    };
    log::line(l.s(" uid ").n(u64::from(uid)).s("\n"));
}

fn trouble(what: &str, f: &str) -> Reply {
    warn(&["warning: qctl: unable to ", what, " ", f, "\n"]);
    Reply::new(Kind::Later, "trouble")
}

impl Daemon {
    /// Wakeup time for queue management: now when a request is ready to be handled.
    pub(super) fn qctl_wakeup(&self, wakeup: &mut u64) {
        let q = &self.qctl;
        if q.conns
            .iter()
            .any(|c| !c.busy && !c.closing && c.has_line())
            || q.waiters.iter().any(|w| w.dels.iter().all(|d| d.1 != 0))
        {
            *wakeup = 0;
        }
        if q.listener.is_none() || q.retry_at > self.recent {
            *wakeup = (*wakeup).min(q.retry_at);
        }
    }

    /// Reads, writes and accepts what poll found ready.
    pub(super) fn qctl_io(&mut self, listener: bool, ready: &[(usize, bool, bool)]) {
        for &(i, r, w) in ready {
            if let Some(c) = self.qctl.conns.get_mut(i) {
                if w {
                    c.flush();
                }
                if r {
                    c.read();
                }
            }
        }
        if listener {
            self.qctl_accept();
        }
    }

    fn qctl_accept(&mut self) {
        for _ in 0..MAX_CONNS {
            let Some(l) = &self.qctl.listener else {
                return;
            };
            let stream = match l.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // Out of descriptors, say: do not spin on a ready listener.
                    self.qctl.retry_at = self.recent + 1;
                    return;
                }
            };
            let uid =
                nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                    .map(|c| c.uid());
            let me = nix::unistd::geteuid().as_raw();
            let refuse = match uid {
                Ok(u) if u == 0 || u == me => None,
                Ok(u) => {
                    log::line(
                        Line::new()
                            .s("warning: qctl: refused a request from uid ")
                            .n(u64::from(u))
                            .s("\n"),
                    );
                    Some(Reply::new(Kind::No, "forbidden"))
                }
                Err(_) => Some(Reply::new(Kind::No, "forbidden")),
            };
            let refuse = refuse.or_else(|| {
                (self.qctl.conns.len() >= MAX_CONNS).then(|| Reply::new(Kind::Later, "busy"))
            });
            if let Some(r) = refuse {
                let _ = stream.set_nonblocking(true);
                let _ = (&stream).write(r.line().as_bytes());
                let mut buf = [0u8; 1024];
                let _ = (&stream).read(&mut buf); // see Conn::drain
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let id = self.qctl.next_conn;
            self.qctl.next_conn += 1;
            self.qctl.conns.push(Conn {
                id,
                stream,
                uid: uid.unwrap_or(0),
                inbuf: Vec::new(),
                out: Vec::new(),
                busy: false,
                eof: false,
                closing: false,
                dead: false,
            });
        }
    }

    /// Handles ready requests, answers the waiters whose deliveries have all reported,
    /// and drops finished connections.
    pub(super) fn qctl_do(&mut self) {
        if self.qctl.listener.is_none() && self.recent >= self.qctl.retry_at {
            self.qctl.try_listen(self.recent);
        }
        let mut budget = REQUESTS_PER_TURN;
        let mut i = 0;
        while i < self.qctl.conns.len() && budget > 0 {
            let c = &mut self.qctl.conns[i];
            if c.busy || c.closing || c.dead {
                i += 1;
                continue;
            }
            let line = match c.inbuf.iter().position(|&b| b == b'\n') {
                Some(n) if n < MAX_LINE => {
                    let l: Vec<u8> = c.inbuf.drain(..=n).collect();
                    l[..n].to_vec()
                }
                Some(_) => {
                    c.send(&Reply::new(Kind::No, "bad-request"));
                    c.closing = true;
                    continue;
                }
                None if c.inbuf.len() >= MAX_LINE || (c.eof && !c.inbuf.is_empty()) => {
                    c.send(&Reply::new(Kind::No, "bad-request"));
                    c.closing = true;
                    continue;
                }
                None => {
                    i += 1;
                    continue;
                }
            };
            budget -= 1;
            let (conn, uid) = (c.id, c.uid);
            match Request::parse(&line) {
                None => self.qctl_reply(conn, &Reply::new(Kind::No, "bad-request")),
                Some(req) => self.qctl_request(conn, uid, req),
            }
        }
        self.qctl_finish_waiters(false);
        for c in &mut self.qctl.conns {
            c.flush();
        }
        self.qctl.conns.retain_mut(|c| {
            if !c.finished() {
                return true;
            }
            if c.closing && !c.dead {
                c.drain();
            }
            false
        });
    }

    fn qctl_reply(&mut self, conn: u64, r: &Reply) {
        if let Some(c) = self.qctl.conns.iter_mut().find(|c| c.id == conn) {
            c.send(r);
        }
    }

    fn qctl_request(&mut self, conn: u64, uid: u32, req: Request) {
        if self.sched.exiting() && req != Request::Status {
            return self.qctl_reply(conn, &Reply::new(Kind::Later, "exiting"));
        }
        let r = match req {
            Request::Hold(id) | Request::Delete(id) => match self.qctl_hold(id) {
                Err(r) => r,
                Ok(changed) => {
                    log_request(&req, uid);
                    if let Request::Delete(_) = req {
                        self.qctl.deleting.insert(id);
                    }
                    let dels = self.inflight(|_, m| m == id);
                    return self.qctl_wait(conn, req, Target::Msg(id), dels, !changed);
                }
            },
            Request::Release(id) => self.qctl_release(id, &req, uid),
            Request::Retry(id) => self.qctl_retry(id, &req, uid),
            Request::RetryAll => {
                log_request(&req, uid);
                self.pqrun();
                let n = self.sched.waiting();
                Reply::new(Kind::Ok, "retrying").field("waiting", n)
            }
            Request::Pause(c) => {
                let already = self.sched.pause(c);
                log_request(&req, uid);
                if let Some(pass) = self.passes[c].take() {
                    // The rest of its recipients are due as soon as the channel resumes.
                    self.sched.set_retry(pass.job, self.recent);
                    self.job_close(pass.job);
                }
                let dels = self.inflight(|ch, _| ch == c);
                return self.qctl_wait(conn, req, Target::Chan(c), dels, already);
            }
            Request::Resume(c) => {
                let already = self.sched.resume(c);
                log_request(&req, uid);
                Reply::new(Kind::Ok, "resumed")
                    .field("channel", CHANADDR[c])
                    .field("already", u8::from(already))
            }
            Request::Status => {
                let mut r = Reply::new(Kind::Ok, "status");
                for (c, name) in CHANADDR.iter().enumerate() {
                    r = r
                        .field(&format!("{name}-used"), self.sched.used(c))
                        .field(&format!("{name}-limit"), self.sched.concurrency(c))
                        .field(&format!("{name}-paused"), u8::from(self.sched.paused(c)));
                }
                r.field("held", self.sched.held_count())
                    .field("exiting", u8::from(self.sched.exiting()))
            }
        };
        self.qctl_reply(conn, &r);
    }

    /// Registers a waiter, telling the client when it has to wait.
    fn qctl_wait(
        &mut self,
        conn: u64,
        req: Request,
        target: Target,
        dels: Vec<(u64, u8)>,
        already: bool,
    ) {
        if !dels.is_empty() {
            let r = Reply::new(Kind::Wait, "busy").field("deliveries", dels.len());
            self.qctl_reply(conn, &r);
        }
        if let Some(c) = self.qctl.conns.iter_mut().find(|c| c.id == conn) {
            c.busy = true;
        }
        self.qctl.waiters.push(Waiter {
            conn,
            req,
            target,
            dels,
            already,
        });
    }

    /// The deliveries in flight that `f(channel, message)` selects, as waiter entries.
    fn inflight(&self, f: impl Fn(usize, u64) -> bool) -> Vec<(u64, u8)> {
        self.sched
            .in_flight(f)
            .into_iter()
            .map(|d| (d, 0))
            .collect()
    }

    /// Records the report letter of a delivery some request may be waiting for.
    pub(super) fn qctl_outcome(&mut self, delid: u64, letter: u8) {
        for w in &mut self.qctl.waiters {
            for d in &mut w.dels {
                if d.0 == delid {
                    d.1 = letter;
                }
            }
        }
    }

    /// Makes sure message `id` has left todo/ (a request may come before qmail-send has
    /// preprocessed it).
    fn qctl_preprocessed(&mut self, id: u64) -> Result<(), Reply> {
        let tf = todo_fn(id);
        match file_exists(&tf) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(_) => return Err(trouble("stat", &tf)),
        }
        self.preprocess_now(id);
        match file_exists(&tf) {
            Ok(false) => Ok(()),
            _ => Err(Reply::new(Kind::Later, "trouble")),
        }
    }

    /// Marks message `id` held and parks it. Ok(whether the mark changed).
    fn qctl_hold(&mut self, id: u64) -> Result<bool, Reply> {
        self.qctl_preprocessed(id)?;
        let f = info_fn(id);
        let changed = match qmail_queue::qctl::set_hold(Path::new(&f), true) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Reply::new(Kind::No, "not-found").field("id", id));
            }
            Err(_) => return Err(trouble("mark", &f)),
        };
        self.park(id);
        Ok(changed)
    }

    /// No delivery of message `id` starts from now on: out of the priority queues, no
    /// pass reading it; jobs that close later park it (see `job_close`).
    pub(super) fn park(&mut self, id: u64) {
        self.sched.hold(id);
        for c in 0..CHANNELS {
            if self.passes[c].as_ref().is_some_and(|p| p.id == id)
                && let Some(pass) = self.passes[c].take()
            {
                self.job_close(pass.job);
            }
        }
    }

    fn qctl_release(&mut self, id: u64, req: &Request, uid: u32) -> Reply {
        if self.qctl.deleting.contains(&id) {
            return Reply::new(Kind::No, "deleting").field("id", id);
        }
        let f = info_fn(id);
        let changed = match qmail_queue::qctl::set_hold(Path::new(&f), false) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return match file_exists(&todo_fn(id)) {
                    // Not preprocessed yet, so not held.
                    Ok(true) => Reply::new(Kind::Ok, "released")
                        .field("id", id)
                        .field("already", 1),
                    _ => Reply::new(Kind::No, "not-found").field("id", id),
                };
            }
            Err(_) => return trouble("unmark", &f),
        };
        log_request(req, uid);
        self.sched.unhold(id);
        for c in 0..CHANNELS {
            let cf = chan_fn(id, c);
            if file_exists(&cf).unwrap_or(true) && !self.sched.scheduled(id, c) {
                self.sched.requeue(c, id, self.recent);
            }
        }
        Reply::new(Kind::Ok, "released")
            .field("id", id)
            .field("already", u8::from(!changed))
    }

    fn qctl_retry(&mut self, id: u64, req: &Request, uid: u32) -> Reply {
        if self.sched.is_held(id) {
            return Reply::new(Kind::No, "held").field("id", id);
        }
        match (file_exists(&info_fn(id)), file_exists(&todo_fn(id))) {
            (_, Ok(true)) => {
                // It is attempted as soon as it is preprocessed.
                return Reply::new(Kind::Ok, "retrying")
                    .field("id", id)
                    .field("channels", 0)
                    .field("busy", 0);
            }
            (Ok(true), _) => {}
            (Ok(false), Ok(false)) => return Reply::new(Kind::No, "not-found").field("id", id),
            _ => return trouble("stat", &info_fn(id)),
        }
        log_request(req, uid);
        let (n, busy) = self.sched.retry_now(id, self.recent);
        Reply::new(Kind::Ok, "retrying")
            .field("id", id)
            .field("channels", n)
            .field("busy", busy)
    }

    /// Removes what is left of a held message: its bounce and recipient lists, made
    /// durable, then ends it as any finished message.
    fn qctl_remove(&mut self, id: u64) -> Reply {
        let mut dirs = Vec::new();
        let mut files = vec![(bounce_fn(id), "bounce".to_string())];
        for (c, name) in CHANADDR.iter().enumerate() {
            files.push((chan_fn(id, c), format!("{name}/{}", id % SPLIT)));
        }
        for (f, dir) in files {
            match std::fs::remove_file(&f) {
                Ok(()) => dirs.push(dir),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => return trouble("unlink", &f),
            }
        }
        for d in &dirs {
            if qmail_queue::fsync_dir(Path::new(d)).is_err() {
                return trouble("fsync", d);
            }
        }
        self.messdone(id);
        self.settle();
        let finished = !file_exists(&info_fn(id)).unwrap_or(true);
        Reply::new(Kind::Ok, "deleted")
            .field("id", id)
            .field("finished", u8::from(finished))
    }

    /// Answers every waiter whose deliveries have all reported (at exit: every waiter).
    pub(super) fn qctl_finish_waiters(&mut self, exiting: bool) {
        let mut i = 0;
        while i < self.qctl.waiters.len() {
            let done = self.qctl.waiters[i].dels.iter().all(|d| d.1 != 0);
            if !done && !exiting {
                i += 1;
                continue;
            }
            let mut w = self.qctl.waiters.swap_remove(i);
            if let (true, false, Request::Delete(id)) = (done, exiting, w.req) {
                // Nothing may be in flight when the files go: park it again (a no-op
                // unless something scheduled it meanwhile) and wait for any stragglers.
                self.park(id);
                let more = self.inflight(|_, m| m == id);
                if !more.is_empty() {
                    w.dels.extend(more);
                    self.qctl.waiters.push(w);
                    continue;
                }
            }
            if let Request::Delete(id) = w.req {
                self.qctl.deleting.remove(&id);
            }
            let count = |l: u8| w.dels.iter().filter(|d| d.1 == l).count();
            let r = if !done {
                // A spawn went away with deliveries in flight: the hold stays; a delete
                // can be asked for again after the restart.
                Reply::new(Kind::Later, "exiting").field("applied", 1)
            } else {
                let r = match (w.req, w.target) {
                    (Request::Delete(id), _) => self.qctl_remove(id),
                    (_, Target::Msg(id)) => Reply::new(Kind::Ok, "held")
                        .field("id", id)
                        .field("already", u8::from(w.already))
                        .field(
                            "finished",
                            u8::from(!file_exists(&info_fn(id)).unwrap_or(true)),
                        ),
                    (_, Target::Chan(c)) => Reply::new(Kind::Ok, "paused")
                        .field("channel", CHANADDR[c])
                        .field("already", u8::from(w.already)),
                };
                if r.kind == Kind::Ok {
                    r.field("success", count(b'K'))
                        .field("failure", count(b'D'))
                        .field("deferral", count(b'Z'))
                } else {
                    r
                }
            };
            self.qctl_reply(w.conn, &r);
            if let Some(c) = self.qctl.conns.iter_mut().find(|c| c.id == w.conn) {
                c.busy = false;
            }
        }
    }

    /// At exit: answer what can be answered and write the replies out.
    pub(super) fn qctl_exit(&mut self) {
        self.qctl_finish_waiters(true);
        for c in &mut self.qctl.conns {
            c.flush();
        }
        self.qctl.conns.clear();
    }
}
