//! The end of a message: bounces, removal, and the cleanup of abandoned files.

use super::cleaning::Purpose;
use super::files::{
    bounce_fn, chan_fn, file_exists, getinfo, info_fn, mess_fn, pausedir, todo_fn, warn,
};
use super::sched::CHANNELS;
use super::work::Task;
use super::{Daemon, OSSIFIED, SLEEP_CLEANUP, SLEEP_SYSFAIL, bounce};
use crate::log::{self, Line};
use qmail_queue::{Scan, SubdirScan};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

impl Daemon {
    /// Appends the failure of `recip` to bounce/N. False when it could not: the
    /// recipient is then not marked done, and the failure comes again at its next try.
    /// (netqmail sleeps and tries again for ever, and with it every delivery waits: a
    /// directory or a FIFO at bounce/N stopped it for good.)
    pub(super) fn addbounce(&mut self, id: u64, recip: &[u8], report: &[u8]) -> bool {
        let text = bounce::record(
            recipient::strip_vdom_prepend(&self.cfg.route, recip),
            report,
        );
        let f = bounce_fn(id);
        let trouble = || {
            warn(&[
                "alert: unable to append to ",
                &f,
                "; will try again later\n",
            ]);
            false
        };
        let Ok(mut file) = control::open_nonblocking()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&f)
        else {
            return trouble();
        };
        if file.write_all(&text).is_err() {
            return trouble();
        }
        // netqmail leaves bounce/N to the page cache; rqmail makes the failure durable
        // before the recipient is marked done: the data, and (rule 4) the name bounce/N,
        // since local/S/N or remote/S/N goes before the bounce is queued.
        let _ = file.sync_data();
        let _ = qmail_queue::fsync_parent(Path::new(&f));
        true
    }

    /// Injects the bounce for message `id` if bounce/N exists, then removes bounce/N.
    /// False when it must be tried again later.
    pub(super) fn injectbounce(&mut self, id: u64) -> bool {
        let Some((sender, _)) = getinfo(id) else {
            return false;
        };
        let bf = bounce_fn(id);
        match std::fs::metadata(&bf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            Err(_) => {
                warn(&["warning: unable to stat ", &bf, "\n"]);
                return false;
            }
        }
        match bounce::plan(&sender, &self.cfg.doublebounceto) {
            bounce::Plan::Discard => warn(&["triple bounce: discarding ", &bf, "\n"]),
            bounce::Plan::Inject {
                orig,
                sender: bsender,
                recip: brecip,
                double,
            } => {
                let Ok(mut qq) = qmail_queue::QueueClient::open_default(&self.home) else {
                    log::text("warning: unable to start qmail-queue, will try later\n");
                    return false;
                };
                let qp = qq.pid();
                let composed = match (control::open_read(&bf), control::open_read(mess_fn(id))) {
                    (Ok(mut b), Ok(mut m)) => bounce::compose(
                        &mut |d: &[u8]| qq.put(d),
                        control::now(),
                        &self.cfg.bouncefrom,
                        &self.cfg.bouncehost,
                        &orig,
                        &brecip,
                        double,
                        &mut b,
                        &mut m,
                    )
                    .is_ok(),
                    _ => false,
                };
                if !composed {
                    qq.fail();
                }
                qq.from(&bsender);
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
        }
        if std::fs::remove_file(&bf).is_err() {
            warn(&["warning: unable to unlink ", &bf, "\n"]);
            return false;
        }
        true
    }

    /// Ends message `id` if nothing of it is left to deliver: its bounce, if any, is
    /// injected, then qmail-clean removes mess/S/N and [`Daemon::ended`] info/S/N.
    pub(super) fn messdone(&mut self, id: u64) {
        if self.cleaner.is_busy(id) || self.ending.contains(&id) {
            return; // its end (or its preprocessing) is already under way
        }
        let fail = |d: &mut Daemon| d.sched.finished(id, control::now() + SLEEP_SYSFAIL);
        for c in 0..CHANNELS {
            let f = chan_fn(id, c);
            match file_exists(&f) {
                Ok(true) => return, // still going
                Ok(false) => {}
                Err(_) => {
                    warn(&["warning: unable to stat ", &f, "; will try again later\n"]);
                    return fail(self);
                }
            }
        }
        let f = todo_fn(id);
        match file_exists(&f) {
            Ok(true) => return,
            Ok(false) => {}
            Err(_) => {
                warn(&["warning: unable to stat ", &f, "; will try again later\n"]);
                return fail(self);
            }
        }
        let f = info_fn(id);
        match file_exists(&f) {
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
        if gone_or_reused {
            self.ended(id);
        } else {
            self.clean_request(Purpose::Ended(id));
        }
    }

    /// The last step of a message's end, once mess/S/N is gone: info/S/N goes.
    pub(super) fn ended(&mut self, id: u64) {
        self.ending.insert(id);
        self.work.remove(Task::RemoveInfo(id));
    }

    /// info/S/N's removal is over: the message is gone, and its number free.
    pub(super) fn info_removed(&mut self, id: u64, ok: bool) {
        self.ending.remove(&id);
        if !ok {
            let f = info_fn(id);
            warn(&["warning: unable to unlink ", &f, "; will try again later\n"]);
            self.sched.finished(id, control::now() + SLEEP_SYSFAIL);
            return;
        }
        self.sched.unhold(id);
    }

    pub(super) fn cleanup_wakeup(&self, wakeup: &mut u64) {
        if self.cleanup.is_some() {
            *wakeup = 0;
        }
        *wakeup = (*wakeup).min(self.cleanuptime);
    }

    pub(super) fn cleanup_do(&mut self) {
        if self.cleanup.is_none() {
            if self.recent < self.cleanuptime {
                return;
            }
            self.cleanup = Some(SubdirScan::new("mess"));
        }
        if !self.cleaner.has_room() {
            return;
        }
        let Some(scan) = self.cleanup.as_mut() else {
            return;
        };
        let id = match scan.next(pausedir) {
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
            match file_exists(&f) {
                Ok(false) => {}
                _ => return,
            }
        }
        self.clean_request(Purpose::Abandoned(id));
    }
}
