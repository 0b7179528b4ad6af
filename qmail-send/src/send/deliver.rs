//! Passes over the recipient lists, deliveries and the spawn connections: the
//! scheduler's decisions ([`super::sched`]) carried out with files, pipes and log lines.

use super::files::{chan_fn, getinfo, info_fn, split_fn, warn};
use super::rewrite;
use super::sched::{CHANNELS, Closed, Due, Outcome};
use super::work::{ListRemoval, Task};
use super::{Daemon, MAX_RECORD, Pass, REPORT_READ, SLEEP_SYSFAIL, START_BATCH, TOCHAN};
use crate::bounded::{BoundedLine, read_bounded};
use crate::log::{self, Line};
use crate::spawn::proto;
use qmail_queue::ChannelRecord;
use std::io::{self, BufReader, Seek, SeekFrom, Write};

impl Daemon {
    /// Drops one reference to job `j`; when its pass is over with every recipient done,
    /// removes the recipient list and, if no other channel has one, ends the message.
    pub(super) fn job_close(&mut self, j: usize) {
        if let Closed::Finished { id, channel } = self.sched.close_job(j) {
            self.work.remove(Task::RemoveList { id, channel });
        }
    }

    /// A finished recipient list's removal is over: the message ends when it was its
    /// last.
    pub(super) fn list_removed(&mut self, id: u64, channel: usize, result: ListRemoval) {
        match result {
            ListRemoval::Failed => {
                let f = chan_fn(id, channel);
                warn(&["warning: unable to unlink ", &f, "; will try again later\n"]);
                self.sched
                    .requeue(channel, id, control::now() + SLEEP_SYSFAIL);
            }
            ListRemoval::OtherLeft => {} // the other channel is still going
            ListRemoval::OtherUnknown(c) => {
                warn(&["warning: unable to stat ", &chan_fn(id, c), "\n"]);
                self.sched.finished(id, control::now());
            }
            ListRemoval::Last => self.sched.finished(id, control::now()),
        }
    }

    pub(super) fn del_canexit(&self) -> bool {
        (0..CHANNELS).all(|c| !self.spawns[c].alive || self.sched.used(c) == 0)
    }

    /// Job `j`'s pass on channel `c` read recipient `recip` at `mpos`: starts its
    /// delivery.
    fn del_start(&mut self, c: usize, j: usize, mpos: u64, recip: &[u8]) {
        let Some(start) = self.sched.deliver(j, mpos, recip) else {
            return;
        };
        let sp = &mut self.spawns[c];
        let cmd = proto::command(
            sp.width,
            start.slot,
            split_fn(start.id).as_bytes(),
            &rewrite::sender_for(&start.sender, recip),
            recip,
        );
        sp.pending.extend_from_slice(&cmd);
        log::line(
            Line::new()
                .s("starting delivery ")
                .n(start.delid)
                .s(": msg ")
                .n(start.id)
                .s(TOCHAN[c])
                .safe(recip)
                .s("\n"),
        );
        self.del_status();
    }

    pub(super) fn markdone(&self, c: usize, id: u64, pos: u64) {
        let f = chan_fn(id, c);
        let ok = (|| -> io::Result<()> {
            let mut file = control::open_write(&f)?;
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

    pub(super) fn del_report(&mut self, c: usize, delnum: u32, text: Vec<u8>) {
        let Some(r) = self.sched.report(c, delnum, text) else {
            log::text("warning: internal error: delivery report out of range\n");
            return;
        };
        self.qctl_outcome(r.delid, r.outcome.letter());
        let head = Line::new().s("delivery ").n(r.delid);
        match r.outcome {
            Outcome::Success => {
                log::line(head.s(": success: ").safe(&r.text).s("\n"));
                self.markdone(c, r.id, r.mpos);
            }
            Outcome::Deferral => log::line(head.s(": deferral: ").safe(&r.text).s("\n")),
            Outcome::Failure => {
                log::line(head.s(": failure: ").safe(&r.text).s("\n"));
                if self.addbounce(r.id, &r.recip, &r.text) {
                    self.markdone(c, r.id, r.mpos);
                } else {
                    self.sched.not_done(r.job);
                }
            }
            Outcome::Mangled => log::line(head.s(": report mangled, will defer\n")),
        }
        self.job_close(r.job);
        self.del_status();
    }

    pub(super) fn del_do(&mut self, c: usize) {
        if !self.spawns[c].alive {
            return;
        }
        let mut total = 0;
        let mut buf = vec![0u8; 8192];
        while total < REPORT_READ {
            match nix::unistd::read(&self.spawns[c].inp, &mut buf) {
                Ok(0) => {
                    self.spawndied(c);
                    return;
                }
                Ok(n) => {
                    total += n;
                    let mut got = Vec::new();
                    self.spawns[c].reports.feed(&buf[..n], &mut got);
                    for (d, text) in got {
                        self.del_report(c, d, text);
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    pub(super) fn comm_do(&mut self, c: usize) {
        let sp = &mut self.spawns[c];
        if !sp.alive || sp.pending.is_empty() {
            return;
        }
        match nix::unistd::write(&sp.out, &sp.pending) {
            Ok(n) => {
                sp.pending.drain(..n);
            }
            Err(nix::errno::Errno::EPIPE) => self.spawndied(c),
            Err(_) => {}
        }
    }

    /// Starts a pass over the next message due on channel `c`: None when nothing is due,
    /// else whether a pass is open.
    fn pass_open(&mut self, c: usize) -> Option<bool> {
        let id = match self.sched.take_due(c, self.recent)? {
            Due::Parked(_) => return Some(false), // held (it should not have been queued)
            Due::Message(id) => id,
        };
        let f = chan_fn(id, c);
        // As netqmail, the file named is the one that could not be read: the recipient
        // list, or the message's info file.
        let opened = match control::open_read(&f) {
            Ok(file) => getinfo(id).map(|info| (file, info)).ok_or(info_fn(id)),
            Err(_) => Err(f),
        };
        let (file, (sender, birth)) = match opened {
            Ok(o) => o,
            Err(f) => {
                warn(&["warning: trouble opening ", &f, "; will try again later\n"]);
                self.sched.requeue(c, id, self.recent + SLEEP_SYSFAIL);
                return Some(false);
            }
        };
        let job = self.sched.open_job(id, c, sender, birth, self.recent);
        self.passes[c] = Some(Pass {
            id,
            job,
            reader: BufReader::with_capacity(4096, file),
            mpos: 0,
        });
        Some(true)
    }

    /// Ends the pass on channel `c` (if any) and closes its job.
    fn pass_end(&mut self, c: usize, hit_eof: bool) {
        if let Some(pass) = self.passes[c].take() {
            if hit_eof {
                self.sched.hit_eof(pass.job);
            }
            self.job_close(pass.job);
        }
    }

    /// One step of reading a channel's recipient list. True when it did something.
    pub(super) fn pass_dochan(&mut self, c: usize) -> bool {
        if self.sched.exiting() || self.sched.paused(c) {
            return false;
        }
        // A new pass goes on to its first recipient at once, as in netqmail.
        if self.passes[c].is_none() {
            match self.pass_open(c) {
                None => return false,
                Some(false) => return true,
                Some(true) => {}
            }
        }
        if !self.spawns[c].writable() || !self.sched.slot_free(c) {
            return false;
        }
        let Some(pass) = self.passes[c].as_mut() else {
            return false;
        };
        let (id, j) = (pass.id, pass.job);
        let line = match read_bounded(&mut pass.reader, 0, MAX_RECORD) {
            Ok(BoundedLine::Line(l)) => l,
            Ok(BoundedLine::Eof(_)) => {
                self.pass_end(c, true);
                return true;
            }
            Ok(BoundedLine::TooLong) | Err(_) => {
                let f = chan_fn(id, c);
                warn(&["warning: trouble reading ", &f, "; will try again later\n"]);
                self.pass_end(c, false);
                return true;
            }
        };
        let mpos = pass.mpos;
        pass.mpos += line.len() as u64;
        match qmail_queue::channel_record(&line) {
            ChannelRecord::Waiting(recip) => self.del_start(c, j, mpos, recip),
            ChannelRecord::Done(_) => {}
            ChannelRecord::Unknown => {
                let f = chan_fn(id, c);
                warn(&["warning: unknown record type in ", &f, "!\n"]);
                self.pass_end(c, false);
            }
        }
        true
    }

    pub(super) fn pass_do(&mut self) {
        for c in 0..CHANNELS {
            for _ in 0..START_BATCH {
                if !self.pass_dochan(c) {
                    break;
                }
            }
            self.comm_do(c);
        }
        for _ in 0..START_BATCH {
            let Some(id) = self.sched.take_failed(self.recent) else {
                break;
            };
            self.pqadd(id);
        }
        // Messages end while qmail-clean takes requests (the rest wait for the next turn).
        for _ in 0..START_BATCH {
            if !self.cleaner.has_room() {
                break;
            }
            let Some(id) = self.sched.take_done(self.recent) else {
                break;
            };
            self.messdone(id);
        }
    }
}
