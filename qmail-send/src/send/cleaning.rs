//! The connection to qmail-clean, without waiting for it: requests are queued and
//! written when the pipe takes them, answers are read when they come, in order (one byte
//! per request: netqmail's qmail-clean reads its requests through a buffer and answers
//! each in turn, so requests may follow each other without waiting).
//!
//! A message with a request on its way is busy: its todo/N is not handed out again
//! (preprocessed, todo/N not yet removed) and its number is not taken for a new message
//! (ended, mess/S/N removed, info/S/N not yet) until the answer has been handled.

use super::files::warn;
use super::sched::CHANNELS;
use super::{Daemon, SLEEP_SYSFAIL};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::collections::{BTreeSet, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Most request bytes waiting to be written (about 4000 requests) before the daemon
/// waits for qmail-clean.
pub const MAX_UNSENT: usize = 64 * 1024;

/// Why a request was made: what to do with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `todo/N`: message N is preprocessed; queue it on these channels when removed.
    Prepared { id: u64, chans: [bool; CHANNELS] },
    /// `foop/N`: message N has ended; remove info/S/N when mess/S/N is gone.
    Ended(u64),
    /// `foop/N`: mess/S/N was abandoned (no info, no todo) long ago.
    Abandoned(u64),
}

impl Purpose {
    pub fn id(self) -> u64 {
        match self {
            Purpose::Prepared { id, .. } | Purpose::Ended(id) | Purpose::Abandoned(id) => id,
        }
    }

    /// The request's text, as netqmail's qmail-send writes it (without the `\0`).
    pub fn request(self) -> String {
        match self {
            Purpose::Prepared { id, .. } => format!("todo/{id}"),
            Purpose::Ended(id) | Purpose::Abandoned(id) => format!("foop/{id}"),
        }
    }
}

/// qmail-clean has gone away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// The pipes to qmail-clean and the requests on their way.
pub struct Cleaner {
    out: OwnedFd,
    inp: OwnedFd,
    alive: bool,
    unsent: Vec<u8>,
    waiting: VecDeque<Purpose>,
    busy: BTreeSet<u64>,
}

impl Cleaner {
    pub fn new(out: OwnedFd, inp: OwnedFd) -> Cleaner {
        Cleaner {
            out,
            inp,
            alive: true,
            unsent: Vec::new(),
            waiting: VecDeque::new(),
            busy: BTreeSet::new(),
        }
    }

    /// The descriptors, for making them non-blocking.
    pub fn fds(&self) -> [&OwnedFd; 2] {
        [&self.out, &self.inp]
    }

    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// Whether message `id` has a request on its way.
    pub fn is_busy(&self, id: u64) -> bool {
        self.busy.contains(&id)
    }

    /// Whether requests are waiting for answers.
    pub fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Whether more requests may be queued now.
    pub fn has_room(&self) -> bool {
        self.alive && self.unsent.len() < MAX_UNSENT
    }

    /// What to poll: (the request pipe, when bytes wait for it; the answer pipe, when
    /// answers are due).
    pub fn poll_fds(&self) -> (Option<BorrowedFd<'_>>, Option<BorrowedFd<'_>>) {
        if !self.alive {
            return (None, None);
        }
        (
            (!self.unsent.is_empty()).then(|| self.out.as_fd()),
            (!self.waiting.is_empty()).then(|| self.inp.as_fd()),
        )
    }

    /// Queues a request (written by [`Cleaner::write`]).
    pub fn request(&mut self, p: Purpose) {
        if !self.alive {
            return;
        }
        self.unsent.extend_from_slice(p.request().as_bytes());
        self.unsent.push(0);
        self.waiting.push_back(p);
        self.busy.insert(p.id());
    }

    /// Writes what the pipe takes (the descriptor is non-blocking).
    pub fn write(&mut self) -> Result<(), Gone> {
        while self.alive && !self.unsent.is_empty() {
            match nix::unistd::write(&self.out, &self.unsent) {
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Err(_) => return Err(self.gone()),
            }
        }
        Ok(())
    }

    /// Reads the answers that have come (the descriptor is non-blocking): each with the
    /// request it answers.
    pub fn read(&mut self) -> Result<Vec<(Purpose, u8)>, Gone> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while self.alive && !self.waiting.is_empty() {
            let want = self.waiting.len().min(buf.len());
            match nix::unistd::read(&self.inp, &mut buf[..want]) {
                Ok(0) => return Err(self.gone()),
                Ok(n) => {
                    for &b in &buf[..n] {
                        if let Some(p) = self.waiting.pop_front() {
                            got.push((p, b));
                        }
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(_) => return Err(self.gone()),
            }
        }
        Ok(got)
    }

    /// The answer for message `id` has been handled.
    pub fn done(&mut self, id: u64) {
        if !self.waiting.iter().any(|p| p.id() == id) {
            self.busy.remove(&id);
        }
    }

    fn gone(&mut self) -> Gone {
        self.alive = false;
        self.waiting.clear();
        self.busy.clear();
        self.unsent.clear();
        Gone
    }
}

impl Daemon {
    /// Queues a request to qmail-clean and writes what the pipe takes.
    pub(super) fn clean_request(&mut self, p: Purpose) {
        self.cleaner.request(p);
        if self.cleaner.write().is_err() {
            self.cleandied();
        }
    }

    /// Writes waiting requests and handles the answers that have come.
    pub(super) fn clean_io(&mut self) {
        if !self.cleaner.is_alive() {
            return;
        }
        if self.cleaner.write().is_err() {
            return self.cleandied();
        }
        match self.cleaner.read() {
            Ok(answers) => {
                for (p, answer) in answers {
                    self.clean_answer(p, answer);
                }
            }
            Err(Gone) => self.cleandied(),
        }
    }

    /// Waits until every request has been answered and handled (queue management needs
    /// the files gone before it replies).
    pub(super) fn clean_sync(&mut self) {
        while self.cleaner.is_alive() && self.cleaner.is_waiting() {
            crate::log::flush();
            {
                let (out, inp) = self.cleaner.poll_fds();
                let mut fds: Vec<PollFd> = Vec::with_capacity(2);
                if let Some(fd) = out {
                    fds.push(PollFd::new(fd, PollFlags::POLLOUT));
                }
                if let Some(fd) = inp {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
            self.clean_io();
        }
    }

    fn clean_answer(&mut self, p: Purpose, answer: u8) {
        let id = p.id();
        if answer != b'+' {
            warn(&[
                "warning: qmail-clean unable to clean up ",
                &p.request(),
                "\n",
            ]);
        }
        match p {
            // todo/N stays: the next scan of todo/ preprocesses it again.
            Purpose::Prepared { .. } if answer != b'+' => {}
            Purpose::Prepared { chans, .. } => {
                self.sched.unhold(id); // a new message under an old number is not held
                let now = control::now();
                self.sched
                    .enqueue(id, chans.map(|used| used.then_some(now)), now);
            }
            Purpose::Ended(_) if answer != b'+' => {
                self.sched.finished(id, control::now() + SLEEP_SYSFAIL);
            }
            Purpose::Ended(_) => self.ended(id),
            Purpose::Abandoned(_) => {}
        }
        self.cleaner.done(id);
    }
}

#[cfg(test)]
mod tests {
    use super::{Cleaner, Gone, Purpose};
    use nix::fcntl::OFlag;
    use std::os::fd::OwnedFd;

    /// A cleaner on two pipes: (cleaner, the request pipe's read end, the answer pipe's
    /// write end).
    fn cleaner() -> (Cleaner, OwnedFd, OwnedFd) {
        let (req_r, req_w) = nix::unistd::pipe2(OFlag::O_NONBLOCK).unwrap();
        let (ans_r, ans_w) = nix::unistd::pipe2(OFlag::O_NONBLOCK).unwrap();
        (Cleaner::new(req_w, ans_r), req_r, ans_w)
    }

    #[test]
    fn requests_go_out_in_order_and_answers_come_back_to_them() {
        let (mut c, req, ans) = cleaner();
        let chans = [true, false];
        c.request(Purpose::Prepared { id: 457, chans });
        c.request(Purpose::Ended(12));
        c.request(Purpose::Abandoned(3));
        assert!(c.is_busy(457) && c.is_busy(12) && c.is_busy(3) && !c.is_busy(4));
        assert!(c.poll_fds().0.is_some(), "bytes to write");
        c.write().unwrap();
        assert!(c.poll_fds().0.is_none());
        let mut buf = [0u8; 64];
        let n = nix::unistd::read(&req, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"todo/457\0foop/12\0foop/3\0");
        // Nothing answered yet.
        assert_eq!(c.read().unwrap(), []);
        nix::unistd::write(&ans, b"+!").unwrap();
        assert_eq!(
            c.read().unwrap(),
            [
                (Purpose::Prepared { id: 457, chans }, b'+'),
                (Purpose::Ended(12), b'!')
            ]
        );
        c.done(457);
        c.done(12);
        assert!(!c.is_busy(457) && !c.is_busy(12) && c.is_busy(3));
        assert!(c.is_waiting());
        nix::unistd::write(&ans, b"+").unwrap();
        assert_eq!(c.read().unwrap(), [(Purpose::Abandoned(3), b'+')]);
        c.done(3);
        assert!(!c.is_waiting() && !c.is_busy(3));
    }

    #[test]
    fn a_message_stays_busy_while_any_request_of_it_waits() {
        let (mut c, _req, ans) = cleaner();
        c.request(Purpose::Ended(9));
        c.request(Purpose::Abandoned(9));
        c.write().unwrap();
        nix::unistd::write(&ans, b"+").unwrap();
        assert_eq!(c.read().unwrap().len(), 1);
        c.done(9);
        assert!(c.is_busy(9), "the second request still waits");
    }

    #[test]
    fn a_closed_answer_pipe_means_qmail_clean_is_gone() {
        let (mut c, _req, ans) = cleaner();
        c.request(Purpose::Ended(1));
        c.write().unwrap();
        drop(ans);
        assert_eq!(c.read(), Err(Gone));
        assert!(!c.is_alive() && !c.is_waiting() && !c.is_busy(1) && !c.has_room());
        c.request(Purpose::Ended(2));
        assert!(!c.is_waiting(), "nothing is queued for a dead qmail-clean");
    }
}
