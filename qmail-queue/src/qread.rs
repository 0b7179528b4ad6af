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

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::layout::{Queue, SPLIT};

/// Most bytes of an info/ record read (the sender); longer senders are cut.
pub const MAX_SENDER: u64 = 1 << 20;

pub use control::errstr::error_str;

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
    let mut ids: Vec<u64> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let b = name.as_encoded_bytes();
            if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(b).ok()?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The summary line of a message (without its newline, before the `_` filter).
pub fn stats_line(mtime: i64, id: u64, size: u64, sender: &[u8], bouncing: bool) -> Vec<u8> {
    let date = control::datetime::date822(u64::try_from(mtime).unwrap_or(0));
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
    let mut records = data.split(|&c| c == 0);
    // The piece after the last NUL is an unfinished record: never printed.
    let _unfinished = records.next_back();
    for r in records {
        let done = match r.first() {
            Some(b'D') => true,
            Some(b'T') => false,
            _ => continue,
        };
        if done {
            out.extend_from_slice(b"  done");
        }
        out.extend_from_slice(format!("\t{channel}\t").as_bytes());
        put_safe(out, &r[1..]);
        out.push(b'\n');
    }
}

/// What listing one message produced: its lines, or the error that stopped it.
fn message(q: &Queue, id: u64) -> Result<Vec<u8>, io::Error> {
    let size = fs::metadata(q.mess(id))?.len();
    let bouncing = fs::metadata(q.bounce(id)).is_ok();
    let info = File::open(q.info(id))?;
    let mut first = Vec::new();
    BufReader::new(&info)
        .take(MAX_SENDER)
        .read_until(0, &mut first)?;
    let mtime = info.metadata()?.mtime();
    drop(info);
    // The record is "F" + sender + NUL: skip its type letter, stop at the NUL.
    let sender = first.get(1..).unwrap_or_default();
    let sender = sender.split(|&c| c == 0).next().unwrap_or_default();
    let mut out = Vec::new();
    put_safe(&mut out, &stats_line(mtime, id, size, sender, bouncing));
    out.push(b'\n');
    Ok(out)
}

/// One channel's recipients; `Ok(None)` when the file does not exist.
fn channel(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut data)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let mut out = Vec::new();
    recipient_lines(&mut out, name, &data);
    Ok(out)
}

fn trouble(out: &mut dyn Write, id: u64, e: &io::Error) -> io::Result<()> {
    writeln!(out, "warning: trouble with #{id}: {}", error_str(e))
}

/// Lists the queue directory `root` on `out`; returns the exit code.
pub fn list(root: &Path, out: &mut dyn Write) -> io::Result<i32> {
    let q = Queue::at(root.to_path_buf());
    for s in 0..SPLIT {
        let ids = match message_ids(&root.join("info").join(s.to_string())) {
            Ok(ids) => ids,
            Err(e) => {
                writeln!(out, "fatal: unable to opendir info/{s}: {}", error_str(&e))?;
                return Ok(111);
            }
        };
        for id in ids {
            match message(&q, id) {
                Ok(lines) => out.write_all(&lines)?,
                Err(e) => {
                    trouble(out, id, &e)?;
                    continue;
                }
            }
            for (path, name) in [(q.local(id), "local"), (q.remote(id), "remote")] {
                match channel(&path, name) {
                    Ok(lines) => out.write_all(&lines)?,
                    Err(e) => trouble(out, id, &e)?,
                }
            }
        }
    }
    Ok(0)
}

/// The program: enters QMAIL_HOME/queue, as netqmail does, and lists it on standard
/// output.
pub fn main() -> i32 {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let entered = std::env::set_current_dir(control::qmail_home())
        .and_then(|()| std::env::set_current_dir("queue"));
    let code = match entered {
        Err(e) => {
            let _ = writeln!(out, "fatal: unable to chdir: {}", error_str(&e));
            111
        }
        Ok(()) => list(Path::new("."), &mut out).unwrap_or(111),
    };
    match out.flush() {
        Ok(()) => code,
        Err(_) => 111,
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
