//! maildir2mbox (maildir2mbox(1)): move the messages of `$MAILDIR` (new/ and cur/) to the
//! end of the mbox `$MAIL`, through the temporary file `$MAILTMP`, as netqmail's does:
//!
//! 1. with nothing to move, exit 0 without touching `$MAIL`;
//! 2. lock `$MAIL` (created, mode 0600, when missing) and keep the lock to the end;
//! 3. copy `$MAIL` into `$MAILTMP` (truncated; umask 077), then append every message,
//!    oldest first: a `From_` line made from the message's first line when that is
//!    `Return-Path: <...>` (`MAILER-DAEMON` for `<>`, else the address with spaces and tabs
//!    as `-`; `XXX` otherwise) and the message's modification time, the message with
//!    `>From ` quoting, an empty line;
//! 4. fsync and close `$MAILTMP`, rename it over `$MAIL`;
//! 5. only then remove the messages from the Maildir (a message that cannot be removed
//!    is reported: it will be moved again next time).
//!
//! `$MAIL` and `$MAILTMP` are relative to the Maildir when they are relative paths.
//! Every failure is fatal (exit 111) with netqmail's message, before anything is
//! removed. Beyond netqmail: the lock is both an `flock` and an `fcntl` lock (as
//! qmail-local's mbox deliveries take them), the directory of `$MAIL` is fsynced after
//! the rename, a last line without a newline is kept (netqmail drops it, and so the
//! whole text of a message with no newline at all), and a `$MAILTMP` that is `$MAIL`
//! itself (the same file) is refused instead of truncating the mbox.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use control::Exit;

use crate::fail::warn;
use crate::headers::myctime;
use crate::mbox::{FromQuoter, lock_wait};
use crate::tools::{chdir_maildir, fatal, now, sys};

const P: &str = "maildir2mbox";

/// The first line of a message is read whole up to this length to make the `From_`
/// line; a longer one counts as a line that is not `Return-Path`.
const FIRST_LINE: usize = 1 << 20;

fn path(name: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(name))
}

/// The `From_` line for a message whose first line is `first` (with its newline, if it
/// has one) and whose modification time is `mtime` (netqmail's rule, byte for byte).
pub fn from_line(first: &[u8], mtime: i64) -> Vec<u8> {
    let mut l = b"From XXX ".to_vec();
    if first.ends_with(b"\n") && first.starts_with(b"Return-Path: <") {
        if first[14] == b'>' {
            l = b"From MAILER-DAEMON ".to_vec();
        } else {
            l = b"From ".to_vec();
            let end = (first.len() - 2).max(14);
            l.extend(first[14..end].iter().map(|&c| match c {
                b' ' | b'\t' => b'-',
                c => c,
            }));
            l.push(b' ');
        }
    }
    l.extend_from_slice(myctime(u64::try_from(mtime).unwrap_or(0)).as_bytes());
    l
}

/// What went wrong, in netqmail's words (the text after `maildir2mbox: fatal: `).
type Fatal = Vec<u8>;

fn env(name: &str) -> Result<Vec<u8>, Fatal> {
    std::env::var_os(name)
        .map(OsStringExt::into_vec)
        .ok_or_else(|| format!("{name} not set").into_bytes())
}

/// Appends the message file `name` to `out`.
fn append_message(out: &mut impl Write, name: &[u8], mtime: i64, tmp: &[u8]) -> Result<(), Fatal> {
    let read_fail = |e: &io::Error| sys(&[b"unable to read $MAILDIR/", name, b": "], e);
    let write_fail = |e: &io::Error| sys(&[b"unable to write to ", tmp, b": "], e);
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path(name))
        .map_err(|e| read_fail(&e))?;
    let mut r = BufReader::with_capacity(64 * 1024, f);
    let mut first = Vec::new();
    (&mut r)
        .take(FIRST_LINE as u64)
        .read_until(b'\n', &mut first)
        .map_err(|e| read_fail(&e))?;
    out.write_all(&from_line(&first, mtime))
        .map_err(|e| write_fail(&e))?;
    let mut q = FromQuoter::new(&mut *out);
    q.write_chunk(&first).map_err(|e| write_fail(&e))?;
    loop {
        let buf = match r.fill_buf() {
            Ok([]) => break,
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_fail(&e)),
        };
        let n = buf.len();
        q.write_chunk(buf).map_err(|e| write_fail(&e))?;
        r.consume(n);
    }
    q.finish().map_err(|e| write_fail(&e))?;
    Ok(())
}

/// Copies the old mbox into the new one.
fn copy_old(old: &mut File, new: &mut impl Write, mbox: &[u8], tmp: &[u8]) -> Result<(), Fatal> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match old.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(sys(&[b"unable to read ", mbox, b": "], &e)),
        };
        new.write_all(&buf[..n])
            .map_err(|e| sys(&[b"unable to write to ", tmp, b": "], &e))?;
    }
}

fn run() -> Result<(), Fatal> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let mbox = env("MAIL")?;
    let tmp = env("MAILTMP")?;
    chdir_maildir()?;
    let t = now();
    control::clean_maildir_tmp(t);
    let list = control::scan_maildir(t, true).map_err(|e| e.to_string().into_bytes())?;
    if list.is_empty() {
        return Ok(());
    }

    let lock_fail = |e: &io::Error| sys(&[b"unable to lock ", &mbox, b": "], e);
    let lockf = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK)
        .open(path(&mbox))
        .map_err(|e| lock_fail(&e))?;
    if !lock_wait(&lockf) {
        // The file system gives no lock of either kind: netqmail stops here.
        let e = lockf
            .lock()
            .err()
            .unwrap_or_else(|| io::Error::from_raw_os_error(libc::ENOLCK));
        return Err(lock_fail(&e));
    }
    // The lock is held until the end, as netqmail's is (dropping the file releases it).
    let moved = move_messages(&mbox, &tmp, &list)?;
    for name in moved {
        if let Err(e) = std::fs::remove_file(path(&name)) {
            warn(&sys(
                &[
                    P.as_bytes(),
                    b": warning: $MAILDIR/",
                    &name,
                    b" will be delivered twice; unable to unlink: ",
                ],
                &e,
            ));
        }
    }
    drop(lockf);
    Ok(())
}

/// Steps 3 and 4, under the lock. Returns the names to remove.
fn move_messages(
    mbox: &[u8],
    tmp: &[u8],
    list: &[control::MaildirEntry],
) -> Result<Vec<Vec<u8>>, Fatal> {
    let mut old = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path(mbox))
        .map_err(|e| sys(&[b"unable to read ", mbox, b": "], &e))?;
    // Truncating $MAILTMP must never truncate the mbox itself (netqmail's would).
    if let (Ok(a), Ok(b)) = (old.metadata(), std::fs::metadata(path(tmp)))
        && (a.dev(), a.ino()) == (b.dev(), b.ino())
    {
        return Err([tmp, b" is the same file as ", mbox].concat());
    }
    let new = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NONBLOCK)
        .open(path(tmp))
        .map_err(|e| sys(&[b"unable to create ", tmp, b": "], &e))?;
    let write_fail = |e: &io::Error| sys(&[b"unable to write to ", tmp, b": "], e);
    let mut out = io::BufWriter::with_capacity(64 * 1024, &new);
    copy_old(&mut old, &mut out, mbox, tmp)?;
    let mut moved = Vec::with_capacity(list.len());
    for e in list {
        append_message(&mut out, &e.name, e.mtime, tmp)?;
        moved.push(e.name.clone());
    }
    out.flush().map_err(|e| write_fail(&e))?;
    drop(out);
    new.sync_all().map_err(|e| write_fail(&e))?;
    // close() reports what some file systems only find then (NFS).
    nix::unistd::close(new).map_err(|e| write_fail(&io::Error::from(e)))?;
    std::fs::rename(path(tmp), path(mbox))
        .map_err(|e| sys(&[b"unable to move ", tmp, b" to ", mbox, b": "], &e))?;
    qmail_queue::fsync_parent(path(mbox))
        .map_err(|e| sys(&[b"unable to sync the directory of ", mbox, b": "], &e))?;
    Ok(moved)
}

/// maildir2mbox(1).
pub fn main() -> Exit {
    match run() {
        Ok(()) => Exit::OK,
        Err(text) => fatal(P, &text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn from_lines_as_netqmail_makes_them() {
        // 3 Jan 1996 01:05:34 UTC; each first line with the sender it gives.
        let cases: &[(&[u8], &str)] = &[
            (b"Return-Path: <god@heaven.af.mil>\n", "god@heaven.af.mil"),
            (b"Return-Path: <>\n", "MAILER-DAEMON"),
            (b"Return-Path: <a b\tc@d>\n", "a-b-c@d"),
            // Not a Return-Path line, or one without its newline.
            (b"From: x\n", "XXX"),
            (b"Return-Path: <a@b>", "XXX"),
            (b"", "XXX"),
            (b"return-path: <a@b>\n", "XXX"),
            // netqmail drops the last two bytes, whatever they are.
            (b"Return-Path: <a@b> x\n", "a@b>-"),
            (b"Return-Path: <\n", ""),
            (b"Return-Path: <x\n", ""),
        ];
        for &(first, sender) in cases {
            assert_eq!(
                String::from_utf8_lossy(&from_line(first, 820_631_134)),
                format!("From {sender} Wed Jan 03 01:05:34 1996\n"),
                "{first:?}"
            );
        }
        assert_eq!(
            from_line(b"Return-Path: <", 0),
            b"From XXX Thu Jan 01 00:00:00 1970\n"
        );
    }

    proptest! {
        #[test]
        fn from_line_is_one_line(first in proptest::collection::vec(any::<u8>(), 0..60), t in -10i64..4_000_000_000) {
            let mut first = first;
            first.retain(|&c| c != b'\n');
            let mut with_nl = b"Return-Path: <".to_vec();
            with_nl.extend_from_slice(&first);
            with_nl.push(b'\n');
            for l in [from_line(&first, t), from_line(&with_nl, t)] {
                prop_assert!(l.starts_with(b"From "));
                prop_assert_eq!(l.iter().filter(|&&c| c == b'\n').count(), 1);
                prop_assert!(l.ends_with(b"\n"));
            }
        }
    }
}
