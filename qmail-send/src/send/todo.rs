//! Preprocessing: todo/N becomes info/, local/ and remote/.

use super::files::{chan_fn, file_exists, info_fn, mess_fn, pausedir, todo_fn, warn};
use super::sched::CHANNELS;
use super::{CHANADDR, Daemon, MAX_RECORD, SLEEP_TODO};
use crate::bounded::{BoundedLine, read_bounded};
use crate::log::{self, Line};
use qmail_queue::{SPLIT, message_id};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

impl Daemon {
    /// (Re)opens lock/trigger for reading. The old descriptor is closed first: while any
    /// reader keeps the FIFO open, the byte qmail-queue wrote stays in it and a new
    /// descriptor would be readable at once, forever (a busy loop). Whatever is left is
    /// drained as well, in case a writer held the FIFO open across the reopen.
    pub(super) fn trigger_set(&mut self) {
        self.trigger = None;
        self.trigger = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("lock/trigger")
            .ok();
        if let Some(t) = self.trigger.as_mut() {
            let mut buf = [0u8; 256];
            while matches!(t.read(&mut buf), Ok(n) if n > 0) {}
        }
        self.trigger_pulled = false;
    }

    pub(super) fn todo_wakeup(&self, wakeup: &mut u64) {
        if self.sched.exiting() {
            return;
        }
        if self.tododir.is_some() {
            *wakeup = 0;
        }
        *wakeup = (*wakeup).min(self.nexttodorun);
    }

    pub(super) fn todo_do(&mut self) {
        if self.sched.exiting() {
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
        let Some(id) = message_id(e.file_name().as_encoded_bytes()) else {
            return;
        };
        // A queue management request may have had it preprocessed already.
        if let Ok(false) = file_exists(&todo_fn(id)) {
            return;
        }
        self.preprocess(id);
    }

    /// Preprocesses todo/N: writes info/, local/, remote/, then has qmail-clean remove
    /// todo/N and intd/N.
    pub(super) fn preprocess(&mut self, id: u64) {
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
        self.sched.unhold(id); // a new message under an old number is not held
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
            // A record is its type byte, its text and the NUL that ends it. An empty
            // record (a lone NUL, as a disk error or a hand edit can leave) has no type:
            // netqmail's "unknown record type", never a panic.
            let (kind, body) = match rec.split_last() {
                Some((_, [kind, body @ ..])) => (*kind, body),
                _ => (0, &[][..]),
            };
            match kind {
                b'u' => uid = control::scan_ulong(body).unwrap_or(0),
                b'p' => pid = control::scan_ulong(body).unwrap_or(0),
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
                    let (ch, addr) = recipient::rewrite(&self.cfg.route, body);
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
            if qmail_queue::fsync_dir(Path::new(d)).is_err() {
                warn(&["warning: trouble fsyncing ", d, "\n"]);
                return;
            }
        }
        if !self.clean_warn(&tf) {
            return;
        }
        let now = control::now();
        self.sched
            .enqueue(id, flagchan.map(|used| used.then_some(now)), now);
    }
}
