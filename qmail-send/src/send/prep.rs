//! Preprocessing kept apart from delivery scheduling: a few threads turn todo/N into
//! info/, local/ and remote/ ([`super::todo::prepare`]) while the main loop goes on
//! reading reports and starting deliveries.
//!
//! Preprocessing is bound by its fsyncs (the info and recipient files, then their
//! directories), not by the processor. netqmail does it in its one loop, one message
//! between two `select`s, so a stream of injections builds a backlog in todo/ (the "silly
//! qmail syndrome") and a full todo/ holds back every delivery. Here several messages are
//! preprocessed at once, so their fsyncs overlap and the file system commits them together;
//! each message still goes through every durable step of its own, in the same order, and
//! qmail-clean removes todo/N only once the main loop has its finished result (so only
//! once its info and recipient files and their directory entries are on disk).
//!
//! The main loop hands out message numbers and collects results ([`Pool::take_done`]); a
//! pipe ([`Pool::wake_fd`]) wakes its `poll` when a result is ready. [`InFlight`] is the
//! bookkeeping: a message is never preprocessed twice at once, at most
//! [`InFlight::capacity`] are underway, and queue management can wait for one message.

use super::todo::{Prepared, prepare};
use recipient::Route;
use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

/// Threads preprocessing at once.
pub const THREADS: usize = 8;
/// Messages handed out and not yet collected, at most, per thread.
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

type Work = (u64, Arc<Route>);

/// The preprocessing threads and the way back from them.
pub struct Pool {
    work: Option<Sender<Work>>,
    results: Receiver<Prepared>,
    /// Results made by the main thread itself (no thread could be started).
    inline: Vec<Prepared>,
    wake_r: Option<OwnedFd>,
    in_flight: InFlight,
}

fn wake_pipe() -> Option<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()
}

impl Pool {
    /// Starts the threads. Without a pipe or a thread, messages are preprocessed by the
    /// main loop itself, one at a time, as netqmail does.
    pub fn start() -> Pool {
        let (done_tx, results) = channel::<Prepared>();
        let none = |results| Pool {
            work: None,
            results,
            inline: Vec::new(),
            wake_r: None,
            in_flight: InFlight::new(1),
        };
        let Some((wake_r, wake_w)) = wake_pipe() else {
            return none(results);
        };
        let wake_w = Arc::new(wake_w);
        let (work_tx, work_rx) = channel::<Work>();
        let work_rx = Arc::new(Mutex::new(work_rx));
        let mut started = 0;
        for n in 0..THREADS {
            let (rx, tx, wake) = (work_rx.clone(), done_tx.clone(), wake_w.clone());
            let t = std::thread::Builder::new()
                .name(format!("prep{n}"))
                .stack_size(256 * 1024)
                .spawn(move || worker(&rx, &tx, &wake));
            if t.is_ok() {
                started += 1;
            }
        }
        if started == 0 {
            return none(results);
        }
        Pool {
            work: Some(work_tx),
            results,
            inline: Vec::new(),
            wake_r: Some(wake_r),
            in_flight: InFlight::new(DEPTH * started),
        }
    }

    /// The descriptor that becomes readable when results are waiting.
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wake_r.as_ref().map(AsFd::as_fd)
    }

    pub fn has_room(&self) -> bool {
        self.in_flight.has_room()
    }

    pub fn is_busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    pub fn is_underway(&self, id: u64) -> bool {
        self.in_flight.contains(id)
    }

    /// Hands message `id` out; false when it is already underway or there is no room.
    pub fn submit(&mut self, id: u64, route: &Arc<Route>) -> bool {
        if !self.in_flight.start(id) {
            return false;
        }
        match &self.work {
            Some(tx) if tx.send((id, route.clone())).is_ok() => {}
            _ => self.inline.push(prepare(id, route)),
        }
        true
    }

    /// The results ready now.
    pub fn take_done(&mut self) -> Vec<Prepared> {
        if let Some(r) = &self.wake_r {
            let mut buf = [0u8; 256];
            while matches!(nix::unistd::read(r, &mut buf), Ok(n) if n > 0) {}
        }
        let mut v = std::mem::take(&mut self.inline);
        v.extend(self.results.try_iter());
        for p in &v {
            self.in_flight.finish(p.id);
        }
        v
    }

    /// Waits for message `id`'s result (queue management needs it now); returns it with
    /// every other result that came in meanwhile.
    pub fn wait_for(&mut self, id: u64) -> Vec<Prepared> {
        let mut v = self.take_done();
        while self.in_flight.contains(id) {
            match self.results.recv() {
                Ok(p) => {
                    self.in_flight.finish(p.id);
                    v.push(p);
                }
                Err(_) => {
                    // Every thread is gone: nothing more will come.
                    self.in_flight = InFlight::new(self.in_flight.capacity());
                    break;
                }
            }
        }
        v
    }
}

fn worker(work: &Mutex<Receiver<Work>>, done: &Sender<Prepared>, wake: &OwnedFd) {
    loop {
        let next = match work.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((id, route)) = next else {
            return; // the main loop is gone
        };
        if done.send(prepare(id, &route)).is_err() {
            return;
        }
        // A full pipe is already readable: the byte is not needed then.
        let _ = nix::unistd::write(wake, b"+");
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
