//! Queue file names and small helpers shared by the parts of qmail-send.

use super::{CHANADDR, MAX_RECORD};
use crate::bounded::{BoundedLine, read_bounded};
use crate::log::{self, Line};
use qmail_queue::{SPLIT, fmtqfn};
use std::io::{self, BufReader};
use std::os::unix::fs::MetadataExt;

pub(super) fn info_fn(id: u64) -> String {
    fmtqfn("info", id, true)
}
pub(super) fn todo_fn(id: u64) -> String {
    fmtqfn("todo", id, false)
}
pub(super) fn mess_fn(id: u64) -> String {
    fmtqfn("mess", id, true)
}
pub(super) fn bounce_fn(id: u64) -> String {
    fmtqfn("bounce", id, false)
}
pub(super) fn chan_fn(id: u64, c: usize) -> String {
    fmtqfn(CHANADDR[c], id, true)
}
/// The message name the spawns get: `S/N`, relative to queue/mess.
pub(super) fn split_fn(id: u64) -> String {
    format!("{}/{}", id % SPLIT, id)
}

/// A log line of trusted pieces.
pub(super) fn text_line(parts: &[&str]) -> Line {
    parts.iter().fold(Line::new(), |l, p| l.s(p))
}

/// Logs a line of trusted pieces.
pub(super) fn warn(parts: &[&str]) {
    log::line(text_line(parts));
}

/// Whether `p` exists; any error but "not found" is an error.
pub(super) fn file_exists(p: &str) -> io::Result<bool> {
    match std::fs::metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

pub(super) fn pausedir(dir: &str) {
    warn(&["alert: unable to opendir ", dir, ", sleeping...\n"]);
    log::flush();
    std::thread::sleep(std::time::Duration::from_secs(10));
}

/// The envelope sender and the birth time (info's mtime) of a message.
pub(super) fn getinfo(id: u64) -> Option<(Vec<u8>, u64)> {
    let f = control::open_read(info_fn(id)).ok()?;
    let mtime = u64::try_from(f.metadata().ok()?.mtime()).unwrap_or(0);
    let mut r = BufReader::with_capacity(128, f);
    match read_bounded(&mut r, 0, MAX_RECORD) {
        Ok(BoundedLine::Line(l)) => Some((qmail_queue::info_sender(&l)?.to_vec(), mtime)),
        _ => None,
    }
}
