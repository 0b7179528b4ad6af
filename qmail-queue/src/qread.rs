//! qmail-qread: list the messages qmail-send has preprocessed, with their recipients, in
//! netqmail's exact format.
//!
//! For every message with an `info/S/N` file (subdirectories 0 to SPLIT-1 in order; within
//! one, by increasing message number) it prints one line
//!
//! ```text
//! 26 Sep 1995 04:46:54 GMT  #457  1234  <joe@example.org> [ bouncing]
//! ```
//!
//! (the time is info/N's modification time, the size is mess/N's; `bouncing` appears when
//! bounce/N exists; note the two spaces between fields and the space after `>`), then a
//! line per recipient record of local/S/N and then remote/S/N:
//!
//! ```text
//! \tlocal\tann@example.com        (T: not yet delivered)
//!   done\tremote\tbob@example.net (D: done)
//! ```
//!
//! Characters outside printable ASCII are printed as `_`. Problems with one message are a
//! `warning: trouble with #N: REASON` line and the listing goes on; a queue that cannot be
//! entered or an info/ subdirectory that cannot be read is `fatal: ...` and exit code 111.
//! Everything, warnings included, goes to standard output, as with netqmail.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

use crate::layout::{Queue, SPLIT};
use crate::records::{ChannelRecord, channel_record, complete_records};
use crate::scan::ids_in;
use control::Exit;

/// Most bytes of an info/ record read (the sender); longer senders are cut.
pub const MAX_SENDER: usize = 1 << 20;

pub use control::error_str;

/// netqmail's filter for what it prints: bytes outside 32..=126 become `_`.
fn put_safe(out: &mut Vec<u8>, s: &[u8]) {
    out.extend(
        s.iter()
            .map(|&c| if (32..=126).contains(&c) { c } else { b'_' }),
    );
}

/// The file names in `dir` that are message numbers, in increasing order (other names are
/// skipped, as netqmail's readsubdir does).
fn message_ids(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids: Vec<u64> = ids_in(dir)?.filter_map(Result::ok).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The summary line of a message (without its newline, before the `_` filter).
pub fn stats_line(mtime: i64, id: u64, size: u64, sender: &[u8], bouncing: bool) -> Vec<u8> {
    let date = control::date822(u64::try_from(mtime).unwrap_or(0));
    let date = date.trim_end_matches('\n');
    let date = date.strip_suffix(" -0000").unwrap_or(date);
    let mut s = format!("{date} GMT  #{id}  {size}  <").into_bytes();
    s.extend_from_slice(sender);
    s.extend_from_slice(b"> ");
    if bouncing {
        s.extend_from_slice(b" bouncing");
    }
    s
}

/// The recipient lines of one local/ or remote/ file's contents: a complete record
/// (NUL-terminated) starting with `T` is undelivered, with `D` done; others are skipped.
pub fn recipient_lines(out: &mut Vec<u8>, channel: &str, data: &[u8]) {
    // The piece after the last NUL is an unfinished record: never printed.
    for r in complete_records(data) {
        let addr = match channel_record(r) {
            ChannelRecord::Done(a) => {
                out.extend_from_slice(b"  done");
                a
            }
            ChannelRecord::Waiting(a) => a,
            ChannelRecord::Unknown => continue,
        };
        out.extend_from_slice(format!("\t{channel}\t").as_bytes());
        put_safe(out, addr);
        out.push(b'\n');
    }
}

/// The message numbers named in `dir` (any order); `None` when it cannot be listed.
fn name_set(dir: &Path) -> Option<HashSet<u64>> {
    Some(ids_in(dir).ok()?.filter_map(Result::ok).collect())
}

/// One directory of the queue, opened once: its files are then reached by name relative to
/// it (one path component per lookup instead of three). When it could not be opened, the
/// error is given for each of its files, as opening each of them would have given it.
struct Dir {
    fd: Result<OwnedFd, Errno>,
    /// The names in it, when it was listed: a message not among them has no such file
    /// and is not asked for (qmail-send writes local/ and remote/ before info/).
    names: Option<HashSet<u64>>,
}

impl Dir {
    fn open(path: &Path, list: bool) -> Dir {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let names = match (&fd, list) {
            (Ok(_), true) => name_set(path),
            _ => None,
        };
        Dir { fd, names }
    }

    fn lacks(&self, id: u64) -> bool {
        self.names.as_ref().is_some_and(|n| !n.contains(&id))
    }

    /// Opens message `id` (file name `name`) in this directory; `Ok(None)` when there is
    /// no such file.
    fn open_file(&self, id: u64, name: &str) -> io::Result<Option<File>> {
        if self.lacks(id) {
            return Ok(None);
        }
        let dir = self.fd.as_ref().map_err(|&e| io::Error::from(e))?;
        // Never waiting for a FIFO's writer, as netqmail's open_read; no device.
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        match nix::fcntl::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => control::reject_device(File::from(fd)).map(Some),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn size(&self, name: &str) -> io::Result<u64> {
        let dir = self.fd.as_ref().map_err(|&e| io::Error::from(e))?;
        let st = nix::sys::stat::fstatat(dir, name, AtFlags::empty())?;
        Ok(u64::try_from(st.st_size).unwrap_or(0))
    }
}

/// The four directories of one split subdirectory.
struct Split {
    mess: Dir,
    info: Dir,
    local: Dir,
    remote: Dir,
}

impl Split {
    fn open(root: &Path, s: u64) -> Split {
        let d = |name: &str, list| Dir::open(&root.join(name).join(s.to_string()), list);
        Split {
            mess: d("mess", false),
            info: d("info", false),
            local: d("local", true),
            remote: d("remote", true),
        }
    }
}

/// Reads from `f` into `data` until end of file, or (when `until` is given) until a chunk
/// holds that byte, or until `max` bytes. A regular file's short read is its end: unlike
/// `read_to_end` this makes no extra stat, seek or read per file.
fn read_file(mut f: &File, data: &mut Vec<u8>, until: Option<u8>, max: usize) -> io::Result<()> {
    const CHUNK: usize = 4096;
    while data.len() < max {
        let start = data.len();
        let want = CHUNK.min(max - start);
        data.resize(start + want, 0);
        let n = loop {
            match f.read(&mut data[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    data.truncate(start);
                    return Err(e);
                }
            }
        };
        data.truncate(start + n);
        let found = until.is_some_and(|c| data[start..].contains(&c));
        if n < want || found {
            break;
        }
    }
    Ok(())
}

/// What listing one message produced: its lines, or the error that stopped it.
fn message(
    q: &Queue,
    d: &Split,
    id: u64,
    name: &str,
    bounces: Option<&HashSet<u64>>,
) -> Result<Vec<u8>, io::Error> {
    let size = d.mess.size(name)?;
    let bouncing = match bounces {
        Some(set) => set.contains(&id),
        None => fs::metadata(q.bounce(id)).is_ok(),
    };
    let info = d
        .info
        .open_file(id, name)?
        .ok_or_else(|| io::Error::from(Errno::ENOENT))?;
    let mut first = Vec::new();
    read_file(&info, &mut first, Some(0), MAX_SENDER)?;
    let mtime = info.metadata()?.mtime();
    drop(info);
    Ok(summary(&first, mtime, id, size, bouncing))
}

/// The summary line of a message, printable, with its newline, from the start of its
/// info file: the record is "F" + sender + NUL, so the sender is what follows the type
/// letter, up to the NUL (netqmail prints it whatever the letter is).
pub fn summary(info_start: &[u8], mtime: i64, id: u64, size: u64, bouncing: bool) -> Vec<u8> {
    let sender = info_start.get(1..).unwrap_or_default();
    let sender = sender.split(|&c| c == 0).next().unwrap_or_default();
    let mut out = Vec::new();
    put_safe(&mut out, &stats_line(mtime, id, size, sender, bouncing));
    out.push(b'\n');
    out
}

/// One channel's recipient lines; none when the file does not exist.
fn channel(dir: &Dir, id: u64, file: &str, name: &str, data: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    data.clear();
    match dir.open_file(id, file)? {
        Some(f) => read_file(&f, data, None, usize::MAX)?,
        None => return Ok(Vec::new()),
    }
    let mut out = Vec::new();
    recipient_lines(&mut out, name, data);
    Ok(out)
}

fn trouble(out: &mut dyn Write, id: u64, e: &io::Error) -> io::Result<()> {
    writeln!(out, "warning: trouble with #{id}: {}", error_str(e))
}

/// Lists the queue directory `root` on `out`; returns the exit code.
pub fn list(root: &Path, out: &mut dyn Write) -> io::Result<Exit> {
    let q = Queue::at(root.to_path_buf());
    let bounces = name_set(&root.join("bounce"));
    let mut data = Vec::new();
    for s in 0..SPLIT {
        let ids = match message_ids(&root.join("info").join(s.to_string())) {
            Ok(ids) => ids,
            Err(e) => {
                writeln!(out, "fatal: unable to opendir info/{s}: {}", error_str(&e))?;
                return Ok(Exit::TEMP);
            }
        };
        let d = Split::open(root, s);
        for id in ids {
            // The file name, made once for the four files of the message.
            let file = id.to_string();
            match message(&q, &d, id, &file, bounces.as_ref()) {
                Ok(lines) => out.write_all(&lines)?,
                Err(e) => {
                    trouble(out, id, &e)?;
                    continue;
                }
            }
            for (dir, name) in [(&d.local, "local"), (&d.remote, "remote")] {
                match channel(dir, id, &file, name, &mut data) {
                    Ok(lines) => out.write_all(&lines)?,
                    Err(e) => trouble(out, id, &e)?,
                }
            }
        }
    }
    Ok(Exit::OK)
}

/// The program: enters QMAIL_HOME/queue, as netqmail does, and lists it on standard
/// output.
pub fn main() -> Exit {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let entered = std::env::set_current_dir(control::qmail_home())
        .and_then(|()| std::env::set_current_dir("queue"));
    let code = match entered {
        Err(e) => {
            let _ = writeln!(out, "fatal: unable to chdir: {}", error_str(&e));
            Exit::TEMP
        }
        Ok(()) => list(Path::new("."), &mut out).unwrap_or(Exit::TEMP),
    };
    match out.flush() {
        Ok(()) => code,
        Err(_) => Exit::TEMP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stats() {
        assert_eq!(
            stats_line(812_090_814, 457, 1234, b"joe@example.org", false),
            b"26 Sep 1995 04:46:54 GMT  #457  1234  <joe@example.org> "
        );
        assert_eq!(
            stats_line(0, 1, 0, b"", true),
            b"1 Jan 1970 00:00:00 GMT  #1  0  <>  bouncing"
        );
    }

    #[test]
    fn recipients() {
        let mut out = Vec::new();
        recipient_lines(
            &mut out,
            "local",
            b"Tann@example.com\0Dbob@example.com\0Xjunk\0\0Tcut",
        );
        assert_eq!(
            out,
            b"\tlocal\tann@example.com\n  done\tlocal\tbob@example.com\n"
        );
        let mut out = Vec::new();
        recipient_lines(&mut out, "remote", b"Tbad\x01\xff\n\0");
        assert_eq!(out, b"\tremote\tbad___\n");
    }

    proptest! {
        #[test]
        fn recipient_output_is_printable(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut out = Vec::new();
            recipient_lines(&mut out, "local", &data);
            prop_assert!(out.iter().all(|&c| (32..=126).contains(&c) || c == b'\t' || c == b'\n'));
            let complete = data.split(|&c| c == 0).count() - 1;
            prop_assert!(out.iter().filter(|&&c| c == b'\n').count() <= complete);
        }
    }
}
