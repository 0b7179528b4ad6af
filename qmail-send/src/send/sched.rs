//! qmail-send's scheduling decisions as plain data, with no file, pipe or clock of its
//! own: which message goes next on a channel, when a message is tried again, which
//! delivery slot a delivery takes, when a temporary failure becomes a bounce, and when a
//! message's pass over a channel is over. The daemon (the parent module) does the reading,
//! writing and logging and tells the [`Scheduler`] what happened, with the time.
//!
//! The rules are netqmail 1.06's qmail-send:
//!
//! * **Order.** Each channel has a queue of (due time, message), earliest first
//!   ([`Prioq`]). A message is taken when it is due, the channel is not paused, qmail-send
//!   is not exiting, and a job is free: there are as many jobs as the channels'
//!   concurrencies together, and each pass of a message over a channel holds one until its
//!   last delivery has reported.
//! * **Retries.** A pass that leaves recipients undelivered puts the message back at
//!   [`nextretry`]: `birth + (floor(sqrt(age)) + chanskip)^2`, age taken when the pass
//!   started, chanskip 10 for local and 20 for remote deliveries, so attempts thin out
//!   quadratically (local: 100, 400, 900 ... seconds after birth for a message that
//!   always fails at once).
//! * **Slots.** A channel runs at most `concurrency` deliveries at once (the control
//!   file, capped by what its spawn announced); a delivery takes the lowest free slot
//!   number, which is the delivery number the spawn sees. Lowering the concurrency lets
//!   the deliveries running above it finish.
//! * **Bounces.** A pass started more than `queuelifetime` seconds after the message's
//!   birth is dying: a temporary failure it reports becomes a permanent one, with
//!   [`TOO_LONG`] added to the report.
//! * **The end.** A pass that reached the end of the recipient list with every recipient
//!   done is [`Closed::Finished`]: the daemon removes the list and, when no other channel
//!   has one, queues the message for its end ([`Scheduler::take_done`]).
//! * **Held messages** (qmail-qctl) wait in no queue; a job that closes parks them.

use super::bounce::TOO_LONG;
use super::prioq::Prioq;
use std::collections::BTreeSet;

/// The delivery channels: local (qmail-lspawn) and remote (qmail-rspawn).
pub const CHANNELS: usize = 2;

/// Seconds between retry steps per channel: local, remote.
pub const CHANSKIP: [u64; CHANNELS] = [10, 20];

/// netqmail's squareroot(): the largest y below 2^16 with y*y <= x.
pub fn squareroot(x: u64) -> u64 {
    x.isqrt().min(65_535)
}

/// When to try a message born at `birth` again on channel `c`, deciding at `now`.
pub fn nextretry(birth: u64, now: u64, c: usize) -> u64 {
    let n = if birth > now {
        0
    } else {
        squareroot(now - birth)
    };
    let n = n + CHANSKIP[c];
    birth.saturating_add(n * n)
}

/// Whether a pass started at `now` over a message born at `birth` is its last chance.
pub fn dying(birth: u64, now: u64, lifetime: u64) -> bool {
    now > birth.saturating_add(lifetime)
}

/// One pass of one message over one channel, alive until its deliveries have reported.
#[derive(Debug)]
struct Job {
    /// The pass itself and each delivery in flight hold one.
    refs: u32,
    id: u64,
    channel: usize,
    /// When the message is due again if recipients are left.
    retry: u64,
    sender: Vec<u8>,
    /// Recipients read and not yet delivered or bounced.
    numtodo: u64,
    hit_eof: bool,
    dying: bool,
}

/// A delivery in flight, in the slot named by its delivery number.
#[derive(Debug)]
struct Slot {
    job: usize,
    delid: u64,
    mpos: u64,
    recip: Vec<u8>,
}

#[derive(Debug)]
struct Channel {
    concurrency: u64,
    /// The most deliveries the spawn accepts.
    spawn_max: u64,
    used: u64,
    slots: Vec<Option<Slot>>,
    free: BTreeSet<u32>,
    waiting: Prioq,
    /// Paused by qmail-qctl: no pass starts, no delivery starts.
    paused: bool,
}

impl Channel {
    fn new(concurrency: u64, spawn_max: u64) -> Channel {
        let mut ch = Channel {
            concurrency: concurrency.min(spawn_max),
            spawn_max,
            used: 0,
            slots: Vec::new(),
            free: BTreeSet::new(),
            waiting: Prioq::default(),
            paused: false,
        };
        ch.grow();
        ch
    }

    /// Makes slots 0..concurrency exist.
    fn grow(&mut self) {
        let want = usize::try_from(self.concurrency).unwrap_or(usize::MAX);
        while self.slots.len() < want {
            let i = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
            self.slots.push(None);
            self.free.insert(i);
        }
    }

    fn slot_free(&self) -> bool {
        self.used < self.concurrency
    }
}

/// What [`Scheduler::take_due`] found on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Start a pass over this message.
    Message(u64),
    /// This message was due but is held: it has left the queue and waits for a release.
    Parked(u64),
}

/// A delivery to hand to the spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The delivery number the spawn sees.
    pub slot: u32,
    /// The number in the log (`starting delivery N`).
    pub delid: u64,
    pub id: u64,
    /// The message's envelope sender (before VERP).
    pub sender: Vec<u8>,
}

/// What a delivery report means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `K`: the recipient is done.
    Success,
    /// `D`: the recipient is done and goes into the bounce.
    Failure,
    /// `Z`: the recipient is tried again with the message's next pass.
    Deferral,
    /// Anything else: taken as a deferral.
    Mangled,
}

impl Outcome {
    /// The report letter queue management counts (a mangled report is a deferral).
    pub fn letter(self) -> u8 {
        match self {
            Outcome::Success => b'K',
            Outcome::Failure => b'D',
            Outcome::Deferral | Outcome::Mangled => b'Z',
        }
    }
}

/// A delivery that has reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub delid: u64,
    pub id: u64,
    /// Its job, to close once the report is handled.
    pub job: usize,
    /// Where its recipient record starts in the recipient list (to mark it done).
    pub mpos: u64,
    pub recip: Vec<u8>,
    pub outcome: Outcome,
    /// The report after its letter (for a dying message's deferral, with [`TOO_LONG`]).
    pub text: Vec<u8>,
}

/// What became of a job when it closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Deliveries of it are still in flight.
    Open,
    /// Recipients are left: the message waits for its retry time (or is parked if held).
    Requeued,
    /// Every recipient of this channel is done: remove the recipient list, then call
    /// [`Scheduler::finished`] (or [`Scheduler::requeue`] if that fails).
    Finished { id: u64, channel: usize },
}

/// What the daemon knows about a channel when it asks for its wakeup time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelIo {
    /// A pass is reading the channel's recipient list.
    pub reading: bool,
    /// The spawn is alive and its command buffer has room.
    pub writable: bool,
}

/// The scheduler's whole state.
#[derive(Debug)]
pub struct Scheduler {
    chans: [Channel; CHANNELS],
    jobs: Vec<Option<Job>>,
    free_jobs: Vec<usize>,
    jobs_used: u64,
    /// Messages whose recipient lists are all gone, waiting for their end.
    done: Prioq,
    /// Messages whose files could not be examined, waiting to be looked at again.
    failed: Prioq,
    held: BTreeSet<u64>,
    next_delid: u64,
    lifetime: u64,
    exiting: bool,
}

impl Scheduler {
    /// `concurrency` from the control files, `spawn_max` what each spawn announced,
    /// `lifetime` queuelifetime.
    pub fn new(
        concurrency: [u64; CHANNELS],
        spawn_max: [u64; CHANNELS],
        lifetime: u64,
    ) -> Scheduler {
        Scheduler {
            chans: [
                Channel::new(concurrency[0], spawn_max[0]),
                Channel::new(concurrency[1], spawn_max[1]),
            ],
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            jobs_used: 0,
            done: Prioq::default(),
            failed: Prioq::default(),
            held: BTreeSet::new(),
            next_delid: 1,
            lifetime,
            exiting: false,
        }
    }

    // ------------------------------------------------------------------ limits

    /// New control values (HUP). True when a channel's concurrency changed.
    pub fn set_limits(&mut self, concurrency: [u64; CHANNELS], lifetime: u64) -> bool {
        self.lifetime = lifetime;
        let mut changed = false;
        for (ch, want) in self.chans.iter_mut().zip(concurrency) {
            let n = want.min(ch.spawn_max);
            if n != ch.concurrency {
                ch.concurrency = n;
                ch.grow();
                changed = true;
            }
        }
        changed
    }

    pub fn concurrency(&self, c: usize) -> u64 {
        self.chans[c].concurrency
    }

    /// Deliveries in flight on channel `c`.
    pub fn used(&self, c: usize) -> u64 {
        self.chans[c].used
    }

    /// Whether another delivery may start on channel `c`.
    pub fn slot_free(&self, c: usize) -> bool {
        self.chans[c].slot_free()
    }

    fn numjobs(&self) -> u64 {
        self.chans.iter().map(|c| c.concurrency).sum()
    }

    /// Whether a pass may start (netqmail's job_avail).
    pub fn job_avail(&self) -> bool {
        self.jobs_used < self.numjobs()
    }

    /// From now on no pass starts (TERM).
    pub fn exit(&mut self) {
        self.exiting = true;
    }

    pub fn exiting(&self) -> bool {
        self.exiting
    }

    // ------------------------------------------------------------------ queues

    /// Puts message `id` in channel `c`'s queue, due at `at`, unless it is held.
    pub fn requeue(&mut self, c: usize, id: u64, at: u64) {
        if !self.held.contains(&id) {
            self.chans[c].waiting.insert(at, id);
        }
    }

    /// A message found in the queue or just preprocessed: `due[c]` is when it is due on
    /// channel c, None when it has no recipient list there. With none at all, the
    /// message is finished.
    pub fn enqueue(&mut self, id: u64, due: [Option<u64>; CHANNELS], now: u64) {
        for (c, at) in due.iter().enumerate() {
            if let Some(at) = at {
                self.requeue(c, id, *at);
            }
        }
        if due.iter().all(Option::is_none) {
            self.done.insert(now, id);
        }
    }

    /// Message `id` has no recipient list left: its end is due at `at`.
    pub fn finished(&mut self, id: u64, at: u64) {
        self.done.insert(at, id);
    }

    /// The next message whose end is due.
    pub fn take_done(&mut self, now: u64) -> Option<u64> {
        self.done.pop_due(now)
    }

    /// Message `id`'s files could not be examined: look again at `at`.
    pub fn failed(&mut self, id: u64, at: u64) {
        self.failed.insert(at, id);
    }

    /// The next message to examine again.
    pub fn take_failed(&mut self, now: u64) -> Option<u64> {
        self.failed.pop_due(now)
    }

    /// The next message due on channel `c`, taken out of its queue, if a pass may start.
    pub fn take_due(&mut self, c: usize, now: u64) -> Option<Due> {
        if self.exiting || self.chans[c].paused || !self.job_avail() {
            return None;
        }
        let id = self.chans[c].waiting.pop_due(now)?;
        Some(if self.held.contains(&id) {
            Due::Parked(id)
        } else {
            Due::Message(id)
        })
    }

    /// ALRM: everything waiting is due at `now`.
    pub fn retry_all(&mut self, now: u64) {
        for ch in &mut self.chans {
            ch.waiting.set_all(now);
        }
    }

    /// Messages waiting in the channels' queues.
    pub fn waiting(&self) -> usize {
        self.chans.iter().map(|c| c.waiting.len()).sum()
    }

    /// At exit: every waiting (time, message) of channel `c`, taken out.
    pub fn drain_waiting(&mut self, c: usize) -> Vec<(u64, u64)> {
        self.chans[c].waiting.drain()
    }

    /// The earliest time anything is due (None: nothing). `io` tells, per channel,
    /// whether a pass is reading and whether the spawn takes commands.
    pub fn wakeup(&self, io: [ChannelIo; CHANNELS]) -> Option<u64> {
        if self.exiting {
            return None;
        }
        for (ch, io) in self.chans.iter().zip(io) {
            if io.reading && io.writable && ch.slot_free() && !ch.paused {
                return Some(0);
            }
        }
        let mut at: Option<u64> = None;
        let mut consider = |t: Option<(u64, u64)>| {
            if let Some((dt, _)) = t {
                at = Some(at.map_or(dt, |a| a.min(dt)));
            }
        };
        if self.job_avail() {
            for (ch, io) in self.chans.iter().zip(io) {
                if !io.reading && !ch.paused {
                    consider(ch.waiting.min());
                }
            }
        }
        consider(self.failed.min());
        consider(self.done.min());
        at
    }

    // -------------------------------------------------------------------- jobs

    /// Starts a pass over message `id` on channel `c` (after [`Scheduler::take_due`]):
    /// its retry time and whether it is dying are decided now. Returns the job.
    pub fn open_job(&mut self, id: u64, c: usize, sender: Vec<u8>, birth: u64, now: u64) -> usize {
        let job = Job {
            refs: 1,
            id,
            channel: c,
            retry: nextretry(birth, now, c),
            sender,
            numtodo: 0,
            hit_eof: false,
            dying: dying(birth, now, self.lifetime),
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

    /// The rest of job `j`'s recipients are due at `at` (a pause ends its pass).
    pub fn set_retry(&mut self, j: usize, at: u64) {
        if let Some(job) = self.jobs.get_mut(j).and_then(Option::as_mut) {
            job.retry = at;
        }
    }

    /// The pass of job `j` has read its whole recipient list.
    pub fn hit_eof(&mut self, j: usize) {
        if let Some(job) = self.jobs.get_mut(j).and_then(Option::as_mut) {
            job.hit_eof = true;
        }
    }

    /// A failure of job `j` that could not be recorded in bounce/N: its recipient is not
    /// marked done, so the job still has it to do (its list is not removed).
    pub fn not_done(&mut self, j: usize) {
        if let Some(job) = self.jobs.get_mut(j).and_then(Option::as_mut) {
            job.numtodo += 1;
        }
    }

    /// Drops one reference to job `j` (its pass ended, or one of its deliveries reported).
    pub fn close_job(&mut self, j: usize) -> Closed {
        let Some(job) = self.jobs.get_mut(j).and_then(Option::as_mut) else {
            return Closed::Open;
        };
        job.refs = job.refs.saturating_sub(1);
        if job.refs > 0 {
            return Closed::Open;
        }
        let Some(job) = self.jobs[j].take() else {
            return Closed::Open;
        };
        self.free_jobs.push(j);
        self.jobs_used -= 1;
        if job.hit_eof && job.numtodo == 0 {
            return Closed::Finished {
                id: job.id,
                channel: job.channel,
            };
        }
        self.requeue(job.channel, job.id, job.retry);
        Closed::Requeued
    }

    /// Whether channel `c` has a job for message `id`.
    pub fn has_job(&self, id: u64, c: usize) -> bool {
        self.jobs
            .iter()
            .flatten()
            .any(|j| j.id == id && j.channel == c)
    }

    /// Whether (message, channel) is already waiting somewhere or being delivered.
    pub fn scheduled(&self, id: u64, c: usize) -> bool {
        self.chans[c].waiting.contains(id) || self.failed.contains(id) || self.has_job(id, c)
    }

    // -------------------------------------------------------------- deliveries

    /// Job `j`'s pass read recipient `recip` (its record at `mpos`): the recipient is
    /// counted, and gets a delivery slot if one is free.
    pub fn deliver(&mut self, j: usize, mpos: u64, recip: &[u8]) -> Option<Start> {
        let job = self.jobs.get_mut(j).and_then(Option::as_mut)?;
        job.numtodo += 1;
        let ch = &mut self.chans[job.channel];
        if !ch.slot_free() {
            return None;
        }
        let limit = u32::try_from(ch.concurrency).unwrap_or(u32::MAX);
        let slot = *ch.free.range(..limit).next()?;
        ch.free.remove(&slot);
        let delid = self.next_delid;
        self.next_delid += 1;
        ch.slots[slot as usize] = Some(Slot {
            job: j,
            delid,
            mpos,
            recip: recip.to_vec(),
        });
        ch.used += 1;
        job.refs += 1;
        Some(Start {
            slot,
            delid,
            id: job.id,
            sender: job.sender.clone(),
        })
    }

    /// The spawn of channel `c` reported `text` for delivery number `slot`. None when no
    /// delivery has that number (the report is out of range). The slot is free again;
    /// the caller handles the report and then closes its job.
    pub fn report(&mut self, c: usize, slot: u32, mut text: Vec<u8>) -> Option<Report> {
        let ch = &mut self.chans[c];
        let del = ch.slots.get_mut(slot as usize).and_then(Option::take)?;
        ch.free.insert(slot);
        ch.used -= 1;
        let job = self.jobs.get_mut(del.job).and_then(Option::as_mut);
        if text.first() == Some(&b'Z') && job.as_ref().is_some_and(|j| j.dying) {
            text[0] = b'D';
            text.extend_from_slice(TOO_LONG);
        }
        let outcome = match text.first() {
            Some(b'K') => Outcome::Success,
            Some(b'D') => Outcome::Failure,
            Some(b'Z') => Outcome::Deferral,
            _ => Outcome::Mangled,
        };
        let id = job.as_ref().map_or(0, |j| j.id);
        if let (Outcome::Success | Outcome::Failure, Some(job)) = (outcome, job) {
            job.numtodo = job.numtodo.saturating_sub(1);
        }
        if !text.is_empty() {
            text.remove(0);
        }
        Some(Report {
            delid: del.delid,
            id,
            job: del.job,
            mpos: del.mpos,
            recip: del.recip,
            outcome,
            text,
        })
    }

    /// The delivery numbers (`delid`) in flight that `f(channel, message)` selects.
    pub fn in_flight(&self, f: impl Fn(usize, u64) -> bool) -> Vec<u64> {
        let mut v = Vec::new();
        for (c, ch) in self.chans.iter().enumerate() {
            for d in ch.slots.iter().flatten() {
                if let Some(job) = self.jobs.get(d.job).and_then(Option::as_ref)
                    && f(c, job.id)
                {
                    v.push(d.delid);
                }
            }
        }
        v
    }

    // ----------------------------------------------------- queue management

    /// Holds message `id`: it leaves both channels' queues and is parked when a job of it
    /// closes. (The caller ends any pass reading it.)
    pub fn hold(&mut self, id: u64) {
        self.held.insert(id);
        for ch in &mut self.chans {
            ch.waiting.remove(id);
        }
    }

    /// Message `id` is no longer held (released, ended, or its number reused).
    pub fn unhold(&mut self, id: u64) {
        self.held.remove(&id);
    }

    pub fn is_held(&self, id: u64) -> bool {
        self.held.contains(&id)
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Message `id` is due now on every channel where it waits. Returns (channels made
    /// due, channels where a pass of it is running).
    pub fn retry_now(&mut self, id: u64, now: u64) -> (usize, usize) {
        let (mut n, mut busy) = (0, 0);
        for c in 0..CHANNELS {
            if self.chans[c].waiting.remove(id) {
                self.chans[c].waiting.insert(now, id);
                n += 1;
            } else if self.has_job(id, c) {
                busy += 1;
            }
        }
        (n, busy)
    }

    /// Pauses channel `c`; true if it already was.
    pub fn pause(&mut self, c: usize) -> bool {
        std::mem::replace(&mut self.chans[c].paused, true)
    }

    /// Resumes channel `c`; true if it was not paused.
    pub fn resume(&mut self, c: usize) -> bool {
        !std::mem::replace(&mut self.chans[c].paused, false)
    }

    pub fn paused(&self, c: usize) -> bool {
        self.chans[c].paused
    }
}

#[cfg(test)]
mod tests {
    use super::{
        CHANNELS, ChannelIo, Closed, Due, Outcome, Scheduler, Start, dying, nextretry, squareroot,
    };
    use crate::send::bounce::TOO_LONG;

    const LOCAL: usize = 0;
    const REMOTE: usize = 1;
    const WEEK: u64 = 604_800;
    const T0: u64 = 1_000_000_000;

    fn reference_sqrt(x: u64) -> u64 {
        // The bit-by-bit loop of qmail-send.c, for comparison.
        let (mut y, mut yy) = (0u64, 0u64);
        for j in (0..=15).rev() {
            let y21 = (y << (j + 1)) + (1u64 << (j + j));
            if y21 <= x - yy {
                y += 1 << j;
                yy += y21;
            }
        }
        y
    }

    fn sched(local: u64, remote: u64) -> Scheduler {
        Scheduler::new([local, remote], [u64::from(u32::MAX); CHANNELS], WEEK)
    }

    /// Opens a pass over `id` on `c` as the daemon does after take_due.
    fn pass(s: &mut Scheduler, id: u64, c: usize, birth: u64, now: u64) -> usize {
        assert_eq!(s.take_due(c, now), Some(Due::Message(id)));
        s.open_job(id, c, b"joe@x.example".to_vec(), birth, now)
    }

    // ------------------------------------------------------------ retry schedule

    #[test]
    fn sqrt_matches_netqmail() {
        for x in (0..100_000).chain([u64::from(u32::MAX), 1 << 31]) {
            assert_eq!(squareroot(x), reference_sqrt(x), "{x}");
        }
        assert_eq!(squareroot(1 << 40), 65_535, "netqmail's result has 16 bits");
    }

    #[test]
    fn retry_schedule_is_birth_plus_a_square() {
        let b = T0;
        assert_eq!(nextretry(b, b, LOCAL), b + 100);
        assert_eq!(nextretry(b, b, REMOTE), b + 400);
        assert_eq!(nextretry(b, b + 99, LOCAL), b + 19 * 19);
        assert_eq!(nextretry(b, b + 100, LOCAL), b + 400);
        assert_eq!(nextretry(b, b + 400, REMOTE), b + 1600);
        // A clock that went back: age 0.
        assert_eq!(nextretry(b + 5, b, LOCAL), b + 105);
        // A week-old message: sqrt(604800) = 777, remote: (777+20)^2.
        assert_eq!(nextretry(b, b + WEEK, REMOTE), b + 797 * 797);
    }

    #[test]
    fn attempts_of_a_message_that_always_fails_at_once() {
        // Each attempt is made when due and decides the next one from its own time.
        for (c, want) in [
            (LOCAL, [100, 400, 900, 1600, 2500, 3600]),
            (REMOTE, [400, 1600, 3600, 6400, 10_000, 14_400]),
        ] {
            let mut t = T0;
            let mut got = Vec::new();
            for _ in 0..6 {
                t = nextretry(T0, t, c);
                got.push(t - T0);
            }
            assert_eq!(got, want, "channel {c}");
        }
        // Remote attempts fall on the squares of multiples of 20 seconds: in a week, 38
        // after the first (the last at 760^2 s); the 39th, at 780^2 s, is the first past
        // queuelifetime.
        let mut t = T0;
        let mut n = 0;
        while !dying(T0, t, WEEK) {
            t = nextretry(T0, t, REMOTE);
            n += 1;
        }
        assert_eq!(n, 39);
        assert_eq!(t - T0, 780 * 780);
    }

    // -------------------------------------------------------------- bounce timing

    #[test]
    fn a_pass_started_after_queuelifetime_is_dying() {
        assert!(!dying(T0, T0 + WEEK, WEEK));
        assert!(dying(T0, T0 + WEEK + 1, WEEK));
        assert!(!dying(u64::MAX - 1, u64::MAX, WEEK), "no overflow");
        assert!(dying(T0, T0 + 1, 0), "queuelifetime 0: one attempt only");
    }

    #[test]
    fn a_dying_deferral_becomes_a_failure_with_the_lifetime_text() {
        let mut s = sched(10, 20);
        s.enqueue(7, [None, Some(T0)], T0);
        let j = pass(&mut s, 7, REMOTE, T0 - WEEK - 1, T0);
        let a = s.deliver(j, 0, b"a@far.example").unwrap();
        let b = s.deliver(j, 15, b"b@far.example").unwrap();
        let c = s.deliver(j, 30, b"c@far.example").unwrap();
        s.hit_eof(j);
        assert_eq!(s.close_job(j), Closed::Open);
        let r = s
            .report(REMOTE, a.slot, b"Zconnection refused\n".to_vec())
            .unwrap();
        assert_eq!(r.outcome, Outcome::Failure);
        let mut want = b"connection refused\n".to_vec();
        want.extend_from_slice(TOO_LONG);
        assert_eq!(r.text, want);
        assert_eq!(r.recip, b"a@far.example");
        assert_eq!(s.close_job(r.job), Closed::Open);
        // Successes and failures stay what they are.
        let r = s.report(REMOTE, b.slot, b"Kok\n".to_vec()).unwrap();
        assert_eq!((r.outcome, &r.text[..]), (Outcome::Success, &b"ok\n"[..]));
        assert_eq!(s.close_job(r.job), Closed::Open);
        let r = s
            .report(REMOTE, c.slot, b"Dno such user\n".to_vec())
            .unwrap();
        assert_eq!(
            (r.outcome, &r.text[..]),
            (Outcome::Failure, &b"no such user\n"[..])
        );
        // Every recipient is done: the list goes.
        assert_eq!(
            s.close_job(r.job),
            Closed::Finished {
                id: 7,
                channel: REMOTE
            }
        );
    }

    #[test]
    fn a_deferral_within_queuelifetime_stays_a_deferral() {
        let mut s = sched(10, 20);
        s.enqueue(7, [Some(T0), None], T0);
        let j = pass(&mut s, 7, LOCAL, T0 - WEEK, T0);
        let d = s.deliver(j, 0, b"joe@here").unwrap();
        s.hit_eof(j);
        s.close_job(j);
        let r = s
            .report(LOCAL, d.slot, b"Zmailbox full\n".to_vec())
            .unwrap();
        assert_eq!(
            (r.outcome, &r.text[..]),
            (Outcome::Deferral, &b"mailbox full\n"[..])
        );
        assert_eq!(s.close_job(r.job), Closed::Requeued);
        // Back in the queue at its retry time, decided when the pass started.
        let next = nextretry(T0 - WEEK, T0, LOCAL);
        assert_eq!(s.take_due(LOCAL, next - 1), None);
        assert_eq!(s.take_due(LOCAL, next), Some(Due::Message(7)));
    }

    #[test]
    fn a_message_that_always_defers_bounces_at_its_first_attempt_past_queuelifetime() {
        // The whole life of one remote message through the scheduler, the clock jumping
        // to each due time: a deferral each time until the pass is dying.
        let mut s = sched(10, 20);
        let birth = T0;
        s.enqueue(1, [None, Some(birth)], birth);
        let mut now = birth;
        let mut attempts = Vec::new();
        loop {
            let j = pass(&mut s, 1, REMOTE, birth, now);
            attempts.push(now - birth);
            let d = s.deliver(j, 0, b"joe@far.example").unwrap();
            s.hit_eof(j);
            assert_eq!(s.close_job(j), Closed::Open);
            let r = s.report(REMOTE, d.slot, b"Ztry later\n".to_vec()).unwrap();
            if r.outcome == Outcome::Failure {
                assert!(r.text.ends_with(TOO_LONG));
                assert_eq!(
                    s.close_job(r.job),
                    Closed::Finished {
                        id: 1,
                        channel: REMOTE
                    }
                );
                break;
            }
            assert_eq!(r.outcome, Outcome::Deferral);
            assert_eq!(s.close_job(r.job), Closed::Requeued);
            assert_eq!(s.take_due(REMOTE, now), None, "not due again at once");
            now = s.wakeup([ChannelIo::default(); CHANNELS]).unwrap();
        }
        assert_eq!(attempts.len(), 40);
        assert_eq!(&attempts[..4], [0, 400, 1600, 3600]);
        assert_eq!(attempts[38], 760 * 760);
        assert_eq!(attempts[39], 780 * 780);
        assert!(attempts[38] <= WEEK && attempts[39] > WEEK);
    }

    #[test]
    fn hup_changes_queuelifetime_for_passes_that_start_later() {
        let mut s = sched(10, 20);
        s.enqueue(3, [Some(T0), None], T0);
        let j = pass(&mut s, 3, LOCAL, T0 - 100, T0);
        assert!(!s.set_limits([10, 20], 50));
        let d = s.deliver(j, 0, b"joe@here").unwrap();
        let r = s.report(LOCAL, d.slot, b"Zlater\n".to_vec()).unwrap();
        assert_eq!(
            r.outcome,
            Outcome::Deferral,
            "decided when the pass started"
        );
        s.close_job(r.job);
        s.close_job(j);
        let j = pass(&mut s, 3, LOCAL, T0 - 100, T0 + 1000);
        let d = s.deliver(j, 0, b"joe@here").unwrap();
        let r = s.report(LOCAL, d.slot, b"Zlater\n".to_vec()).unwrap();
        assert_eq!(r.outcome, Outcome::Failure);
    }

    // --------------------------------------------------------- concurrency slots

    #[test]
    fn at_most_concurrency_deliveries_lowest_slot_first() {
        let mut s = sched(3, 20);
        s.enqueue(1, [Some(T0), None], T0);
        let j = pass(&mut s, 1, LOCAL, T0, T0);
        let starts: Vec<Start> = (0..3)
            .map(|i| {
                s.deliver(j, i * 10, format!("u{i}@here").as_bytes())
                    .unwrap()
            })
            .collect();
        assert_eq!(starts.iter().map(|d| d.slot).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(
            starts.iter().map(|d| d.delid).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(s.used(LOCAL), 3);
        assert!(!s.slot_free(LOCAL));
        assert_eq!(s.deliver(j, 30, b"u3@here"), None, "no fourth slot");
        // The remote channel has its own slots.
        assert!(s.slot_free(REMOTE));
        // Slot 1 reports and is the next one taken; delivery ids keep growing.
        s.report(LOCAL, 1, b"Kok\n".to_vec()).unwrap();
        assert_eq!(s.used(LOCAL), 2);
        let again = s.deliver(j, 40, b"u4@here").unwrap();
        assert_eq!((again.slot, again.delid), (1, 4));
        assert_eq!(again.sender, b"joe@x.example");
    }

    #[test]
    fn the_spawns_limit_caps_concurrency() {
        let mut s = Scheduler::new([500, 500], [255, 1000], WEEK);
        assert_eq!((s.concurrency(LOCAL), s.concurrency(REMOTE)), (255, 500));
        assert!(s.set_limits([1000, 2000], WEEK));
        assert_eq!((s.concurrency(LOCAL), s.concurrency(REMOTE)), (255, 1000));
        assert!(!s.set_limits([1000, 2000], WEEK), "nothing changed");
    }

    #[test]
    fn lowering_concurrency_lets_running_deliveries_finish() {
        let mut s = sched(4, 20);
        s.enqueue(1, [Some(T0), None], T0);
        let j = pass(&mut s, 1, LOCAL, T0, T0);
        for i in 0..4 {
            assert_eq!(s.deliver(j, i, b"a@here").unwrap().slot, i as u32);
        }
        assert!(s.set_limits([2, 20], WEEK));
        assert!(!s.slot_free(LOCAL));
        // Slot 3 (above the new limit) reports: still one too many.
        assert!(s.report(LOCAL, 3, b"Kok\n".to_vec()).is_some());
        assert!(!s.slot_free(LOCAL));
        assert!(s.report(LOCAL, 2, b"Kok\n".to_vec()).is_some());
        assert!(!s.slot_free(LOCAL), "two running, limit two");
        assert!(s.report(LOCAL, 0, b"Kok\n".to_vec()).is_some());
        // Only slots below the limit are handed out.
        assert_eq!(s.deliver(j, 9, b"b@here").unwrap().slot, 0);
        assert!(s.set_limits([3, 20], WEEK));
        assert_eq!(s.deliver(j, 10, b"c@here").unwrap().slot, 2);
    }

    #[test]
    fn reports_for_unknown_slots_are_out_of_range() {
        let mut s = sched(2, 2);
        assert_eq!(
            s.report(LOCAL, 0, b"Kok\n".to_vec()),
            None,
            "nothing running"
        );
        assert_eq!(s.report(LOCAL, 99, b"Kok\n".to_vec()), None, "no such slot");
        s.enqueue(1, [Some(T0), None], T0);
        let j = pass(&mut s, 1, LOCAL, T0, T0);
        let d = s.deliver(j, 0, b"a@here").unwrap();
        assert_eq!(
            s.report(REMOTE, d.slot, b"Kok\n".to_vec()),
            None,
            "other channel"
        );
        assert!(s.report(LOCAL, d.slot, b"Kok\n".to_vec()).is_some());
        assert_eq!(
            s.report(LOCAL, d.slot, b"Kok\n".to_vec()),
            None,
            "reported twice"
        );
        assert_eq!(s.used(LOCAL), 0);
    }

    #[test]
    fn mangled_reports_are_deferrals() {
        let mut s = sched(2, 2);
        s.enqueue(1, [Some(T0), None], T0);
        let j = pass(&mut s, 1, LOCAL, T0, T0);
        for text in [&b"Xwhat\n"[..], b""] {
            let d = s.deliver(j, 0, b"a@here").unwrap();
            let r = s.report(LOCAL, d.slot, text.to_vec()).unwrap();
            assert_eq!(r.outcome, Outcome::Mangled);
            assert_eq!(r.outcome.letter(), b'Z');
            s.close_job(r.job);
        }
        s.hit_eof(j);
        assert_eq!(s.close_job(j), Closed::Requeued, "two recipients left");
    }

    #[test]
    fn a_failure_not_recorded_keeps_the_list() {
        let mut s = sched(2, 2);
        s.enqueue(1, [Some(T0), None], T0);
        let j = pass(&mut s, 1, LOCAL, T0, T0);
        let d = s.deliver(j, 0, b"a@here").unwrap();
        let r = s
            .report(LOCAL, d.slot, b"Dno such user\n".to_vec())
            .unwrap();
        assert_eq!(r.outcome, Outcome::Failure);
        // bounce/N could not be appended to: the recipient is not done.
        s.not_done(r.job);
        s.close_job(r.job);
        s.hit_eof(j);
        assert_eq!(s.close_job(j), Closed::Requeued, "the recipient is left");
    }

    #[test]
    fn jobs_are_limited_by_the_sum_of_the_concurrencies() {
        let mut s = sched(1, 2);
        for id in 1..=5 {
            s.enqueue(id, [None, Some(T0)], T0);
        }
        let jobs: Vec<usize> = (1..=3).map(|id| pass(&mut s, id, REMOTE, T0, T0)).collect();
        assert!(!s.job_avail());
        assert_eq!(s.take_due(REMOTE, T0), None, "three jobs for 1 + 2 slots");
        assert_eq!(
            s.wakeup([ChannelIo::default(); CHANNELS]),
            None,
            "no wakeup for what cannot start"
        );
        s.hit_eof(jobs[1]);
        assert_eq!(
            s.close_job(jobs[1]),
            Closed::Finished {
                id: 2,
                channel: REMOTE
            }
        );
        assert!(s.job_avail());
        assert_eq!(s.take_due(REMOTE, T0), Some(Due::Message(4)));
        // A closed job's number is used again.
        assert_eq!(s.open_job(4, REMOTE, Vec::new(), T0, T0), jobs[1]);
    }

    // -------------------------------------------------------------- order of jobs

    #[test]
    fn messages_go_out_in_order_of_due_time() {
        let mut s = sched(10, 20);
        s.enqueue(30, [Some(T0 + 5), None], T0);
        s.enqueue(10, [Some(T0 + 9), Some(T0)], T0);
        s.enqueue(20, [Some(T0 + 5), None], T0);
        s.enqueue(40, [None, None], T0);
        assert_eq!(s.take_due(LOCAL, T0), None, "nothing local is due yet");
        assert_eq!(s.take_due(REMOTE, T0), Some(Due::Message(10)));
        assert_eq!(s.take_due(REMOTE, T0), None);
        assert_eq!(s.take_due(LOCAL, T0 + 100), Some(Due::Message(20)));
        assert_eq!(s.take_due(LOCAL, T0 + 100), Some(Due::Message(30)));
        assert_eq!(s.take_due(LOCAL, T0 + 100), Some(Due::Message(10)));
        assert_eq!(s.take_due(LOCAL, T0 + 100), None);
        // A message with no recipient list is finished at once.
        assert_eq!(s.take_done(T0), Some(40));
        assert_eq!(s.take_done(T0), None);
    }

    #[test]
    fn a_message_with_both_channels_ends_when_both_lists_are_gone() {
        let mut s = sched(10, 20);
        s.enqueue(5, [Some(T0), Some(T0)], T0);
        let jl = pass(&mut s, 5, LOCAL, T0, T0);
        let jr = pass(&mut s, 5, REMOTE, T0, T0);
        assert!(s.has_job(5, LOCAL) && s.has_job(5, REMOTE));
        let dl = s.deliver(jl, 0, b"a@here").unwrap();
        let dr = s.deliver(jr, 0, b"b@far").unwrap();
        s.hit_eof(jl);
        s.hit_eof(jr);
        s.close_job(jl);
        s.close_job(jr);
        let r = s.report(REMOTE, dr.slot, b"Kok\n".to_vec()).unwrap();
        assert_eq!(
            s.close_job(r.job),
            Closed::Finished {
                id: 5,
                channel: REMOTE
            }
        );
        let r = s.report(LOCAL, dl.slot, b"Kok\n".to_vec()).unwrap();
        assert_eq!(
            s.close_job(r.job),
            Closed::Finished {
                id: 5,
                channel: LOCAL
            }
        );
        // The daemon removed both lists and found no other: the message ends.
        s.finished(5, T0 + 1);
        assert_eq!(s.take_done(T0), None);
        assert_eq!(s.take_done(T0 + 1), Some(5));
        assert!(!s.has_job(5, LOCAL) && !s.has_job(5, REMOTE));
    }

    #[test]
    fn a_pass_that_could_not_read_its_list_waits_for_its_retry_time() {
        let mut s = sched(10, 20);
        s.enqueue(8, [Some(T0), None], T0);
        let j = pass(&mut s, 8, LOCAL, T0, T0);
        // Trouble reading: the pass ends without reaching the end of the list.
        assert_eq!(s.close_job(j), Closed::Requeued);
        assert_eq!(s.take_due(LOCAL, T0 + 99), None);
        assert_eq!(s.take_due(LOCAL, T0 + 100), Some(Due::Message(8)));
    }

    #[test]
    fn alrm_makes_everything_due_now() {
        let mut s = sched(10, 20);
        s.enqueue(1, [Some(T0 + 5000), None], T0);
        s.enqueue(2, [None, Some(T0 + 9000)], T0);
        assert_eq!(s.waiting(), 2);
        s.retry_all(T0);
        assert_eq!(s.take_due(LOCAL, T0), Some(Due::Message(1)));
        assert_eq!(s.take_due(REMOTE, T0), Some(Due::Message(2)));
    }

    #[test]
    fn no_pass_starts_on_a_paused_channel_or_once_exiting() {
        let mut s = sched(10, 20);
        s.enqueue(1, [Some(T0), Some(T0)], T0);
        assert!(!s.pause(LOCAL));
        assert!(s.pause(LOCAL));
        assert_eq!(s.take_due(LOCAL, T0), None);
        assert_eq!(
            s.wakeup([ChannelIo::default(); CHANNELS]),
            Some(T0),
            "remote is due"
        );
        assert!(!s.resume(LOCAL));
        assert!(s.resume(LOCAL));
        s.exit();
        assert_eq!(s.take_due(LOCAL, T0), None);
        assert_eq!(s.take_due(REMOTE, T0), None);
        assert_eq!(s.wakeup([ChannelIo::default(); CHANNELS]), None);
    }

    #[test]
    fn held_messages_wait_nowhere_until_released() {
        let mut s = sched(10, 20);
        s.enqueue(1, [Some(T0), None], T0);
        s.enqueue(2, [Some(T0), None], T0);
        let j = pass(&mut s, 1, LOCAL, T0, T0);
        s.hold(1);
        s.hold(2);
        assert_eq!(s.waiting(), 0);
        assert_eq!(s.held_count(), 2);
        // A job of a held message closes: parked, not queued.
        assert_eq!(s.close_job(j), Closed::Requeued);
        assert_eq!(s.take_due(LOCAL, T0 + 1000), None);
        assert!(!s.scheduled(1, LOCAL));
        // Found in the queue while held: parked too.
        s.enqueue(2, [Some(T0), None], T0);
        assert_eq!(s.waiting(), 0);
        s.unhold(1);
        assert!(!s.is_held(1));
        s.requeue(LOCAL, 1, T0);
        assert!(s.scheduled(1, LOCAL));
        assert_eq!(s.take_due(LOCAL, T0), Some(Due::Message(1)));
    }

    #[test]
    fn a_held_message_that_is_due_is_reported_as_parked() {
        let mut s = sched(10, 20);
        s.enqueue(1, [Some(T0), None], T0);
        s.held.insert(1); // held without leaving the queue
        assert_eq!(s.take_due(LOCAL, T0), Some(Due::Parked(1)));
        assert_eq!(s.waiting(), 0);
    }

    #[test]
    fn retry_now_moves_a_waiting_message_and_counts_running_passes() {
        let mut s = sched(10, 20);
        s.enqueue(1, [Some(T0 + 500), Some(T0)], T0);
        let _j = pass(&mut s, 1, REMOTE, T0, T0);
        assert_eq!(s.retry_now(1, T0 + 1), (1, 1));
        assert_eq!(s.take_due(LOCAL, T0 + 1), Some(Due::Message(1)));
        assert_eq!(s.retry_now(9, T0), (0, 0));
    }

    #[test]
    fn in_flight_lists_the_deliveries_of_a_message_or_channel() {
        let mut s = sched(10, 20);
        s.enqueue(1, [Some(T0), Some(T0)], T0);
        s.enqueue(2, [Some(T0), None], T0);
        let j1 = pass(&mut s, 1, LOCAL, T0, T0);
        let a = s.deliver(j1, 0, b"a@here").unwrap();
        let k1 = pass(&mut s, 1, REMOTE, T0, T0);
        let b = s.deliver(k1, 0, b"b@far").unwrap();
        s.hit_eof(j1);
        s.close_job(j1);
        let j2 = pass(&mut s, 2, LOCAL, T0, T0);
        let c = s.deliver(j2, 0, b"c@here").unwrap();
        let mut of1 = s.in_flight(|_, id| id == 1);
        of1.sort_unstable();
        assert_eq!(of1, [a.delid, b.delid]);
        let mut local = s.in_flight(|ch, _| ch == LOCAL);
        local.sort_unstable();
        assert_eq!(local, [a.delid, c.delid]);
    }

    // -------------------------------------------------------------------- wakeup

    #[test]
    fn wakeup_is_now_while_a_pass_can_start_deliveries() {
        let mut s = sched(1, 20);
        let reading = ChannelIo {
            reading: true,
            writable: true,
        };
        let idle = ChannelIo::default();
        assert_eq!(s.wakeup([idle, idle]), None, "nothing to do");
        assert_eq!(s.wakeup([reading, idle]), Some(0));
        let blocked = ChannelIo {
            reading: true,
            writable: false,
        };
        assert_eq!(
            s.wakeup([blocked, idle]),
            None,
            "the spawn's buffer is full"
        );
        s.enqueue(1, [Some(T0), None], T0);
        let j = pass(&mut s, 1, LOCAL, T0, T0);
        s.deliver(j, 0, b"a@here").unwrap();
        assert_eq!(s.wakeup([reading, idle]), None, "every slot is busy");
        s.enqueue(2, [Some(T0 + 7), Some(T0 + 9)], T0);
        assert_eq!(s.wakeup([reading, idle]), Some(T0 + 9), "local is reading");
        assert_eq!(s.wakeup([idle, idle]), Some(T0 + 7));
        s.failed(3, T0 + 2);
        assert_eq!(s.wakeup([idle, idle]), Some(T0 + 2));
        s.finished(4, T0 + 1);
        assert_eq!(s.wakeup([idle, idle]), Some(T0 + 1));
        assert_eq!(s.take_failed(T0 + 1), None);
        assert_eq!(s.take_failed(T0 + 2), Some(3));
    }
}
