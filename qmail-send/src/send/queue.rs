//! The priority queues' start from info/ and their record in the recipient files'
//! modification times at exit.

use super::files::{chan_fn, file_exists, info_fn, pausedir, todo_fn, warn};
use super::sched::CHANNELS;
use super::{Daemon, SLEEP_SYSFAIL};
use qmail_queue::{Scan, SubdirScan};
use std::io;
use std::os::unix::fs::MetadataExt;

impl Daemon {
    /// Looks at message `id`'s files and queues it: due on each channel with a recipient
    /// list at the list's modification time (qmail-send's record of the next attempt),
    /// finished when it has none, left alone while it is still in todo/.
    pub(super) fn pqadd(&mut self, id: u64) {
        let fail = |d: &mut Daemon, f: &str| {
            warn(&["warning: unable to stat ", f, "; will try again later\n"]);
            d.sched.failed(id, control::now() + SLEEP_SYSFAIL);
        };
        let f = info_fn(id);
        match std::fs::metadata(&f) {
            Ok(m) if qmail_queue::qctl::is_held(m.mode()) => self.sched.hold(id),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => return fail(self, &f),
        }
        let f = todo_fn(id);
        match file_exists(&f) {
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
        self.sched.enqueue(id, found, control::now());
    }

    pub(super) fn pqstart(&mut self) {
        let mut rs = SubdirScan::new("info");
        loop {
            match rs.next(pausedir) {
                Scan::Id(id) => self.pqadd(id),
                Scan::Again => {}
                Scan::Done => return,
            }
        }
    }

    /// At exit: record each waiting message's next attempt as its file's mtime.
    pub(super) fn pqfinish(&mut self) {
        for c in 0..CHANNELS {
            for (dt, id) in self.sched.drain_waiting(c) {
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
    pub(super) fn pqrun(&mut self) {
        self.sched.retry_all(self.recent);
    }
}
