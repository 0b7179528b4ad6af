//! The file work that may wait for the disk, kept apart from delivery scheduling: a few
//! threads preprocess todo/N into info/, local/ and remote/ ([`super::todo::prepare`])
//! and remove finished recipient lists and info files, while the main loop goes on
//! reading reports and starting deliveries.
//!
//! Preprocessing is bound by its fsyncs (the info and recipient files, then their
//! directories), not by the processor, and a removal waits for the file system's journal
//! while those fsyncs run. netqmail does all of it in its one loop, one message between
//! two `select`s, so a stream of injections builds a backlog in todo/ (the "silly qmail
//! syndrome") and a full todo/ holds back every delivery. Here several messages are
//! preprocessed at once, so their fsyncs overlap and the file system commits them
//! together; each message still goes through every durable step of its own, in the same
//! order, and qmail-clean removes todo/N only once the main loop has its finished result
//! (so only once its info and recipient files and their directory entries are on disk).
//!
//! The main loop hands out [`Task`]s and collects what is [`Done`] ([`Pool::take_done`]);
//! a pipe ([`Pool::wake_fd`]) wakes its `poll` when a result is ready. Removals go before
//! preprocessing. [`InFlight`] is the preprocessing bookkeeping: a message is never
//! preprocessed twice at once, at most [`InFlight::capacity`] are underway, and queue
//! management can wait for one message.

use super::Daemon;
use super::files::{chan_fn, info_fn};
use super::sched::CHANNELS;
use super::todo::{Prepared, prepare};
use recipient::Route;
use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};

/// Threads at work at once.
pub const THREADS: usize = 8;
/// Messages handed out for preprocessing and not yet collected, at most, per thread.
pub const DEPTH: usize = 2;

/// Which messages are being preprocessed.
#[derive(Debug, Default)]
pub struct InFlight {
    ids: BTreeSet<u64>,
    capacity: usize,
}

impl InFlight {
    pub fn new(capacity: usize) -> InFlight {
        InFlight {
            ids: BTreeSet::new(),
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether another message may be handed out.
    pub fn has_room(&self) -> bool {
        self.ids.len() < self.capacity
    }

    pub fn contains(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Takes message `id` on; false when it is already underway or there is no room.
    pub fn start(&mut self, id: u64) -> bool {
        self.has_room() && self.ids.insert(id)
    }

    /// Message `id`'s result was collected.
    pub fn finish(&mut self, id: u64) {
        self.ids.remove(&id);
    }
}

/// Work for a thread.
#[derive(Debug)]
pub enum Task {
    /// Preprocess todo/N.
    Prepare(u64, Arc<Route>),
    /// Every recipient of message `id` on `channel` is done: remove the list, and look
    /// for the other channel's.
    RemoveList { id: u64, channel: usize },
    /// Message `id` has ended and mess/S/N is gone: remove info/S/N.
    RemoveInfo(u64),
}

/// What became of a recipient list's removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRemoval {
    /// It could not be removed.
    Failed,
    /// Removed; the other channel's list is still there.
    OtherLeft,
    /// Removed; the other channel's list could not be looked at.
    OtherUnknown(usize),
    /// Removed; it was the message's last.
    Last,
}

/// A finished task.
#[derive(Debug)]
pub enum Done {
    Prepared(Prepared),
    ListRemoved {
        id: u64,
        channel: usize,
        result: ListRemoval,
    },
    InfoRemoved {
        id: u64,
        ok: bool,
    },
}

fn perform(t: Task) -> Done {
    match t {
        Task::Prepare(id, route) => Done::Prepared(prepare(id, &route)),
        Task::RemoveList { id, channel } => Done::ListRemoved {
            id,
            channel,
            result: remove_list(id, channel),
        },
        Task::RemoveInfo(id) => Done::InfoRemoved {
            id,
            ok: std::fs::remove_file(info_fn(id)).is_ok(),
        },
    }
}

fn remove_list(id: u64, channel: usize) -> ListRemoval {
    if std::fs::remove_file(chan_fn(id, channel)).is_err() {
        return ListRemoval::Failed;
    }
    for c in (0..CHANNELS).filter(|&c| c != channel) {
        match std::fs::metadata(chan_fn(id, c)) {
            Ok(_) => return ListRemoval::OtherLeft,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return ListRemoval::OtherUnknown(c),
        }
    }
    ListRemoval::Last
}

/// The tasks waiting for a thread: removals first.
#[derive(Default)]
struct Queue {
    removals: VecDeque<Task>,
    prepares: VecDeque<Task>,
    closed: bool,
}

type Shared = (Mutex<Queue>, Condvar);

/// The threads and the way back from them.
pub struct Pool {
    shared: Option<Arc<Shared>>,
    results: Receiver<Done>,
    /// Results made by the main thread itself (no thread could be started).
    inline: Vec<Done>,
    wake_r: Option<OwnedFd>,
    in_flight: InFlight,
    removals: usize,
}

fn wake_pipe() -> Option<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()
}

impl Pool {
    /// Starts the threads. Without a pipe or a thread, the main loop does the work
    /// itself, one task at a time, as netqmail does.
    pub fn start() -> Pool {
        let (done_tx, results) = channel::<Done>();
        let mut pool = Pool {
            shared: None,
            results,
            inline: Vec::new(),
            wake_r: None,
            in_flight: InFlight::new(1),
            removals: 0,
        };
        let Some((wake_r, wake_w)) = wake_pipe() else {
            return pool;
        };
        let wake_w = Arc::new(wake_w);
        let shared: Arc<Shared> = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let mut started = 0;
        for n in 0..THREADS {
            let (q, tx, wake) = (shared.clone(), done_tx.clone(), wake_w.clone());
            let t = std::thread::Builder::new()
                .name(format!("send-work{n}"))
                .stack_size(256 * 1024)
                .spawn(move || worker(&q, &tx, &wake));
            if t.is_ok() {
                started += 1;
            }
        }
        if started > 0 {
            pool.shared = Some(shared);
            pool.wake_r = Some(wake_r);
            pool.in_flight = InFlight::new(DEPTH * started);
        }
        pool
    }

    /// The descriptor that becomes readable when results are waiting.
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wake_r.as_ref().map(AsFd::as_fd)
    }

    /// Whether another message may be handed out for preprocessing.
    pub fn has_room(&self) -> bool {
        self.in_flight.has_room()
    }

    /// Whether any task is underway.
    pub fn is_busy(&self) -> bool {
        !self.in_flight.is_empty() || self.removals > 0
    }

    /// Whether message `id` is being preprocessed.
    pub fn is_underway(&self, id: u64) -> bool {
        self.in_flight.contains(id)
    }

    /// Hands message `id` out for preprocessing; false when it is already underway or
    /// there is no room.
    pub fn prepare(&mut self, id: u64, route: &Arc<Route>) -> bool {
        if !self.in_flight.start(id) {
            return false;
        }
        self.submit(Task::Prepare(id, route.clone()));
        true
    }

    /// Hands a removal out.
    pub fn remove(&mut self, t: Task) {
        self.removals += 1;
        self.submit(t);
    }

    fn submit(&mut self, t: Task) {
        let Some((m, cv)) = self.shared.as_deref() else {
            self.inline.push(perform(t));
            return;
        };
        match m.lock() {
            Ok(mut q) => {
                match t {
                    Task::Prepare(..) => q.prepares.push_back(t),
                    _ => q.removals.push_back(t),
                }
                cv.notify_one();
            }
            Err(_) => self.inline.push(perform(t)),
        }
    }

    fn collected(&mut self, d: &Done) {
        match d {
            Done::Prepared(p) => self.in_flight.finish(p.id),
            _ => self.removals = self.removals.saturating_sub(1),
        }
    }

    /// The results ready now.
    pub fn take_done(&mut self) -> Vec<Done> {
        if let Some(r) = &self.wake_r {
            let mut buf = [0u8; 256];
            while matches!(nix::unistd::read(r, &mut buf), Ok(n) if n > 0) {}
        }
        let mut v = std::mem::take(&mut self.inline);
        v.extend(self.results.try_iter());
        for d in &v {
            self.collected(d);
        }
        v
    }

    /// Waits until `until(self)` holds (message `id` preprocessed, every removal done:
    /// queue management needs it now); returns every result that came in meanwhile.
    pub fn wait(&mut self, until: impl Fn(&Pool) -> bool) -> Vec<Done> {
        crate::log::flush();
        let mut v = self.take_done();
        while !until(self) {
            match self.results.recv() {
                Ok(d) => {
                    self.collected(&d);
                    v.push(d);
                }
                Err(_) => {
                    // Every thread is gone: nothing more will come.
                    self.in_flight = InFlight::new(self.in_flight.capacity());
                    self.removals = 0;
                    break;
                }
            }
        }
        v
    }

    /// Removals underway.
    pub fn removals(&self) -> usize {
        self.removals
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some((m, cv)) = self.shared.as_deref()
            && let Ok(mut q) = m.lock()
        {
            q.closed = true;
            cv.notify_all();
        }
    }
}

fn worker(shared: &Shared, done: &Sender<Done>, wake: &OwnedFd) {
    let (m, cv) = shared;
    loop {
        let task = {
            let Ok(mut q) = m.lock() else {
                return;
            };
            loop {
                if let Some(t) = q.removals.pop_front().or_else(|| q.prepares.pop_front()) {
                    break t;
                }
                if q.closed {
                    return;
                }
                q = match cv.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
        };
        if done.send(perform(task)).is_err() {
            return; // the main loop is gone
        }
        // A full pipe is already readable: the byte is not needed then.
        let _ = nix::unistd::write(wake, b"+");
    }
}

impl Daemon {
    /// Finishes what the threads have done.
    pub(super) fn work_collect(&mut self) {
        let done = self.work.take_done();
        self.work_finish(done);
    }

    pub(super) fn work_finish(&mut self, done: Vec<Done>) {
        for d in done {
            match d {
                Done::Prepared(p) => self.prep_finish(p),
                Done::ListRemoved {
                    id,
                    channel,
                    result,
                } => self.list_removed(id, channel, result),
                Done::InfoRemoved { id, ok } => self.info_removed(id, ok),
            }
        }
    }

    /// Waits for every removal underway and for qmail-clean's answers, and finishes them
    /// (queue management replies only once the files are gone).
    pub(super) fn settle(&mut self) {
        loop {
            self.clean_sync();
            if self.work.removals() == 0 {
                return;
            }
            let done = self.work.wait(|w| w.removals() == 0);
            self.work_finish(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;

    #[test]
    fn a_message_is_preprocessed_once_at_a_time_within_capacity() {
        let mut f = InFlight::new(2);
        assert!(f.is_empty() && f.has_room());
        assert!(f.start(5));
        assert!(!f.start(5), "already underway");
        assert!(f.contains(5));
        assert!(f.start(9));
        assert!(!f.has_room());
        assert!(!f.start(11), "no room");
        f.finish(5);
        assert!(!f.contains(5));
        assert!(f.start(11));
        f.finish(9);
        f.finish(11);
        assert!(f.is_empty());
        assert!(f.start(5), "again once collected");
    }
}
