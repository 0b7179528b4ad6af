//! Queue file names and small helpers shared by the parts of qmail-send.

use super::*;

pub(super) fn info_fn(id: u64) -> String {
    fmtqfn("info", id, true)
}
pub(super) fn todo_fn(id: u64) -> String {
    fmtqfn("todo", id, false)
}
pub(super) fn mess_fn(id: u64) -> String {
    fmtqfn("mess", id, true)
}
pub(super) fn foop_fn(id: u64) -> String {
    fmtqfn("foop", id, false)
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

pub(super) fn warn(parts: &[&str]) {
    let mut l = Line::new();
    for p in parts {
        l = l.s(p);
    }
    log::line(l);
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
    std::thread::sleep(std::time::Duration::from_secs(10));
}

/// netqmail's readsubdir: walks dir/0 ... dir/(SPLIT-1), one entry per call.
pub(super) struct SubdirScan {
    name: &'static str,
    pos: u64,
    dir: Option<ReadDir>,
}

pub(super) enum Scan {
    Id(u64),
    Again,
    Done,
}

impl SubdirScan {
    pub(super) fn new(name: &'static str) -> SubdirScan {
        SubdirScan {
            name,
            pos: 0,
            dir: None,
        }
    }

    pub(super) fn next(&mut self) -> Scan {
        let Some(dir) = &mut self.dir else {
            if self.pos >= SPLIT {
                return Scan::Done;
            }
            let p = format!("{}/{}", self.name, self.pos);
            match std::fs::read_dir(&p) {
                Ok(d) => {
                    self.dir = Some(d);
                    self.pos += 1;
                }
                Err(_) => pausedir(&p),
            }
            return Scan::Again;
        };
        match dir.next() {
            None => {
                self.dir = None;
                Scan::Again
            }
            Some(Err(_)) => Scan::Again,
            Some(Ok(e)) => match parse_id(e.file_name().as_encoded_bytes()) {
                Some(id) => Scan::Id(id),
                None => Scan::Again,
            },
        }
    }
}

/// A queue file name: decimal digits only.
pub(super) fn parse_id(name: &[u8]) -> Option<u64> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// The envelope sender and the birth time (info's mtime) of a message.
pub(super) fn getinfo(id: u64) -> Option<(Vec<u8>, u64)> {
    let f = File::open(info_fn(id)).ok()?;
    let mtime = u64::try_from(f.metadata().ok()?.mtime()).unwrap_or(0);
    let mut r = BufReader::with_capacity(128, f);
    match read_bounded(&mut r, 0, MAX_RECORD) {
        Ok(BoundedLine::Line(l)) if l.first() == Some(&b'F') => {
            Some((l[1..l.len() - 1].to_vec(), mtime))
        }
        _ => None,
    }
}
