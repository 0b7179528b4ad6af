//! Preprocessing: todo/N becomes info/, local/ and remote/. The file work is
//! [`prepare`], run by the daemon's threads ([`super::work`]); the main loop scans
//! todo/, hands the messages out, and finishes each result: qmail-clean removes todo/N
//! and intd/N, and the message is queued.

use super::cleaning::Purpose;
use super::files::{chan_fn, file_exists, info_fn, mess_fn, pausedir, text_line, todo_fn};
use super::sched::CHANNELS;
use super::work::Done;
use super::{CHANADDR, Daemon, MAX_RECORD, SLEEP_TODO};
use crate::bounded::{BoundedLine, read_bounded};
use crate::log::{self, Line};
use qmail_queue::{SPLIT, TodoRecord, message_id};
use recipient::Route;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What preprocessing one message did.
#[derive(Debug)]
pub struct Prepared {
    pub id: u64,
    /// Its log lines, in order (`new msg`, `info msg`, warnings).
    pub lines: Vec<Line>,
    /// The channels it has recipients for; None when it failed (todo/N stays, and the
    /// next scan of todo/ tries again).
    pub chans: Option<[bool; CHANNELS]>,
}

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
            // At most a FIFO's capacity: a lock/trigger that is no FIFO (a link to
            // /dev/zero, say) would give bytes for ever.
            let mut buf = [0u8; 256];
            for _ in 0..256 {
                if !matches!(t.read(&mut buf), Ok(n) if n > 0) {
                    break;
                }
            }
        }
        self.trigger_pulled = false;
    }

    pub(super) fn todo_wakeup(&self, wakeup: &mut u64) {
        if self.sched.exiting() {
            return;
        }
        if self.tododir.is_some() && self.work.has_room() && self.cleaner.has_room() {
            *wakeup = 0;
        }
        *wakeup = (*wakeup).min(self.nexttodorun);
    }

    /// Hands out the messages in todo/ while the preprocessing threads have room.
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
        while self.work.has_room() && self.cleaner.has_room() {
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
                continue;
            };
            // The number of a message still ending (or whose files qmail-clean is
            // removing): mess/S/N may be gone already, its inode given to a new message
            // by qmail-queue, whose trigger has been spent on this scan. Look again in a
            // second rather than at the next scan without a trigger (SLEEP_TODO).
            if self.cleaner.is_busy(id) || self.ending.contains(&id) {
                self.nexttodorun = self.nexttodorun.min(self.recent + 1);
                continue;
            }
            // A queue management request may have had it preprocessed already. Not
            // followed: a dangling link at todo/N is netqmail's "unable to open".
            if self.work.is_underway(id)
                || std::fs::symlink_metadata(todo_fn(id))
                    .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
            {
                continue;
            }
            self.work.prepare(id, &self.cfg.route);
        }
    }

    /// Logs what a message's preprocessing did and, if its files are on disk, asks
    /// qmail-clean to remove its todo/N and intd/N (it is queued when the answer comes).
    pub(super) fn prep_finish(&mut self, p: Prepared) {
        for l in p.lines {
            log::line(l);
        }
        if let Some(chans) = p.chans {
            self.clean_request(Purpose::Prepared { id: p.id, chans });
        }
    }

    /// Preprocesses message `id` now, for queue management: waits for the thread that
    /// has it, or does it here, and for qmail-clean's answer.
    pub(super) fn preprocess_now(&mut self, id: u64) {
        let done = self.work.wait(|w| !w.is_underway(id));
        let had = done
            .iter()
            .any(|d| matches!(d, Done::Prepared(p) if p.id == id));
        self.work_finish(done);
        self.clean_sync();
        if !had && matches!(file_exists(&todo_fn(id)), Ok(true)) {
            let p = prepare(id, &self.cfg.route);
            self.prep_finish(p);
            self.clean_sync();
        }
    }
}

/// Preprocesses todo/N: writes info/N and local/N or remote/N (recipients rewritten
/// with `route`), fsyncs them and their directories. Removing todo/N is left to the
/// caller (through qmail-clean), once this has succeeded.
pub fn prepare(id: u64, route: &Route) -> Prepared {
    let mut lines = Vec::new();
    let chans = prepare_files(id, route, &mut lines);
    Prepared { id, lines, chans }
}

/// Logs a warning and gives up on the message.
fn fail(lines: &mut Vec<Line>, parts: &[&str]) -> Option<[bool; CHANNELS]> {
    lines.push(text_line(parts));
    None
}

fn prepare_files(id: u64, route: &Route, lines: &mut Vec<Line>) -> Option<[bool; CHANNELS]> {
    let tf = todo_fn(id);
    let Ok(todo) = control::open_read(&tf) else {
        return fail(lines, &["warning: unable to open ", &tf, "\n"]);
    };
    let mf = mess_fn(id);
    let Ok(mess) = std::fs::metadata(&mf) else {
        return fail(lines, &["warning: unable to stat ", &mf, "\n"]);
    };
    for c in 0..CHANNELS {
        let f = chan_fn(id, c);
        if let Err(e) = std::fs::remove_file(&f)
            && e.kind() != io::ErrorKind::NotFound
        {
            return fail(lines, &["warning: unable to unlink ", &f, "\n"]);
        }
    }
    let inf = info_fn(id);
    if let Err(e) = std::fs::remove_file(&inf)
        && e.kind() != io::ErrorKind::NotFound
    {
        return fail(lines, &["warning: unable to unlink ", &inf, "\n"]);
    }
    let create = |f: &str| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(f)
    };
    let Ok(info) = create(&inf) else {
        return fail(lines, &["warning: unable to create ", &inf, "\n"]);
    };
    lines.push(Line::new().s("new msg ").n(id).s("\n"));
    let mut info = BufWriter::with_capacity(512, info);
    let mut chans: [Option<BufWriter<File>>; CHANNELS] = [None, None];
    let mut r = BufReader::with_capacity(8192, todo);
    let (mut uid, mut pid) = (0u64, 0u64);
    loop {
        let rec = match read_bounded(&mut r, 0, MAX_RECORD) {
            Ok(BoundedLine::Line(l)) => l,
            Ok(BoundedLine::Eof(_)) => break,
            Ok(BoundedLine::TooLong) | Err(_) => {
                return fail(lines, &["warning: trouble reading ", &tf, "\n"]);
            }
        };
        // An empty record (a lone NUL, as a disk error or a hand edit can leave) has no
        // type: netqmail's "unknown record type", never a panic.
        match qmail_queue::todo_record(&rec) {
            TodoRecord::Uid(u) => uid = u,
            TodoRecord::Pid(p) => pid = p,
            TodoRecord::Sender(body) => {
                if info.write_all(&rec).and_then(|()| info.flush()).is_err() {
                    return fail(lines, &["warning: trouble writing to ", &inf, "\n"]);
                }
                lines.push(
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
            TodoRecord::Recipient(body) => {
                let (ch, addr) = recipient::rewrite(route, body);
                let c = ch as usize;
                if chans[c].is_none() {
                    let f = chan_fn(id, c);
                    match create(&f) {
                        Ok(file) => chans[c] = Some(BufWriter::with_capacity(1024, file)),
                        Err(_) => return fail(lines, &["warning: unable to create ", &f, "\n"]),
                    }
                }
                let mut line = Vec::with_capacity(addr.len() + 2);
                line.push(b'T');
                line.extend_from_slice(&addr);
                line.push(0);
                if let Some(w) = chans[c].as_mut()
                    && w.write_all(&line).is_err()
                {
                    return fail(
                        lines,
                        &["warning: trouble writing to ", &chan_fn(id, c), "\n"],
                    );
                }
            }
            TodoRecord::Unknown => {
                return fail(lines, &["warning: unknown record type in ", &tf, "\n"]);
            }
        }
    }
    if info.flush().is_err() {
        return fail(lines, &["warning: trouble writing to ", &inf, "\n"]);
    }
    if info.get_ref().sync_all().is_err() {
        return fail(lines, &["warning: trouble fsyncing ", &inf, "\n"]);
    }
    drop(info);
    let mut flagchan = [false; CHANNELS];
    for c in 0..CHANNELS {
        if let Some(mut w) = chans[c].take() {
            let f = chan_fn(id, c);
            if w.flush().is_err() {
                return fail(lines, &["warning: trouble writing to ", &f, "\n"]);
            }
            if w.get_ref().sync_all().is_err() {
                return fail(lines, &["warning: trouble fsyncing ", &f, "\n"]);
            }
            flagchan[c] = true;
        }
    }
    // The new names must be on disk before todo/N goes away (rule 4: on Linux a file's
    // fsync does not make its directory entry durable).
    let mut dirs = vec![format!("info/{}", id % SPLIT)];
    for (c, used) in flagchan.iter().enumerate() {
        if *used {
            dirs.push(format!("{}/{}", CHANADDR[c], id % SPLIT));
        }
    }
    for d in &dirs {
        if qmail_queue::fsync_dir(Path::new(d)).is_err() {
            return fail(lines, &["warning: trouble fsyncing ", d, "\n"]);
        }
    }
    Some(flagchan)
}
