//! mbox files (mbox(5)): `>From ` quoting that streams, and appending a message under a
//! lock, truncating back on failure.
//!
//! Locking: netqmail takes an exclusive `flock` (its lock_ex) and waits at most 30
//! seconds. rqmail takes the `flock` and a POSIX `fcntl` write lock on the whole file
//! (all or nothing, polled for up to 30 seconds), so that readers using either kind are
//! kept out. A lock the file system cannot give (ENOLCK and the like) is skipped, as
//! netqmail proceeds unlocked when lock_ex fails.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use crate::fail::{Fail, cat};
use control::describe_error as error_str;

/// True when `line` starts, after any number of `>`, with `From ` (netqmail's gfrom).
#[cfg(test)]
fn gfrom(line: &[u8]) -> bool {
    let n = line.iter().take_while(|&&c| c == b'>').count();
    line[n..].starts_with(b"From ")
}

/// Quotes a message for an mbox, as netqmail does line by line, but over chunks of any
/// size: every line matching [`gfrom`] gets one more `>` in front. Memory stays constant
/// whatever the line lengths.
#[derive(Debug)]
pub struct FromQuoter<W: Write> {
    out: W,
    /// At the start of a line: how many `>` have been seen (and not yet written).
    gt: u64,
    /// At the start of a line: how many bytes of `From ` have matched after them.
    matched: usize,
    /// True once the current line is decided (written through).
    mid: bool,
    /// The last byte of the message, if any.
    last: Option<u8>,
}

const FROM: &[u8] = b"From ";

impl<W: Write> FromQuoter<W> {
    /// A quoter writing to `out`.
    pub fn new(out: W) -> Self {
        FromQuoter {
            out,
            gt: 0,
            matched: 0,
            mid: false,
            last: None,
        }
    }

    fn write_gts(&mut self, n: u64) -> io::Result<()> {
        let chunk = [b'>'; 256];
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len() as u64) as usize;
            self.out.write_all(&chunk[..k])?;
            left -= k as u64;
        }
        Ok(())
    }

    /// Writes what was held back at the start of a line, unquoted.
    fn release(&mut self) -> io::Result<()> {
        let (gt, m) = (self.gt, self.matched);
        self.write_gts(gt)?;
        self.out.write_all(&FROM[..m])?;
        self.gt = 0;
        self.matched = 0;
        Ok(())
    }

    /// Quotes and writes `data`.
    pub fn write_chunk(&mut self, mut data: &[u8]) -> io::Result<()> {
        if let Some(&c) = data.last() {
            self.last = Some(c);
        }
        while !data.is_empty() {
            if self.mid {
                match data.iter().position(|&c| c == b'\n') {
                    Some(n) => {
                        self.out.write_all(&data[..=n])?;
                        data = &data[n + 1..];
                        self.mid = false;
                    }
                    None => {
                        self.out.write_all(data)?;
                        return Ok(());
                    }
                }
                continue;
            }
            let c = data[0];
            data = &data[1..];
            if self.matched == 0 && c == b'>' {
                self.gt += 1;
            } else if c == FROM[self.matched] {
                self.matched += 1;
                if self.matched == FROM.len() {
                    let gt = self.gt;
                    self.write_gts(gt + 1)?;
                    self.out.write_all(FROM)?;
                    self.gt = 0;
                    self.matched = 0;
                    self.mid = true;
                }
            } else {
                self.release()?;
                self.out.write_all(&[c])?;
                self.mid = c != b'\n';
            }
        }
        Ok(())
    }

    /// Ends the message: whatever was held back, a newline if the last line was partial,
    /// and the blank line that ends an mbox message. Returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.release()?;
        if matches!(self.last, Some(c) if c != b'\n') {
            self.out.write_all(b"\n")?;
        }
        self.out.write_all(b"\n")?;
        Ok(self.out)
    }
}

/// The reference form of the quoting, line by line as netqmail writes it (tests compare
/// the streaming quoter with it).
#[cfg(test)]
fn quote_lines(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = msg;
    while !rest.is_empty() {
        let (line, more) = match rest.iter().position(|&c| c == b'\n') {
            Some(n) => (&rest[..=n], &rest[n + 1..]),
            None => (rest, &b""[..]),
        };
        if gfrom(line) {
            out.push(b'>');
        }
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.push(b'\n');
        }
        rest = more;
    }
    out.push(b'\n');
    out
}

/// How long a locked mbox is waited for.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

enum LockTry {
    Locked,
    Busy,
    Unavailable,
}

fn try_flock(f: &File) -> LockTry {
    match f.try_lock() {
        Ok(()) => LockTry::Locked,
        Err(std::fs::TryLockError::WouldBlock) => LockTry::Busy,
        Err(std::fs::TryLockError::Error(_)) => LockTry::Unavailable,
    }
}

fn try_fcntl(f: &File) -> LockTry {
    let lk = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    match nix::fcntl::fcntl(f.as_fd(), nix::fcntl::FcntlArg::F_SETLK(&lk)) {
        Ok(_) => LockTry::Locked,
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EACCES) => LockTry::Busy,
        Err(_) => LockTry::Unavailable,
    }
}

fn fcntl_unlock(f: &File) {
    let lk = libc::flock {
        l_type: libc::F_UNLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let _ = nix::fcntl::fcntl(f.as_fd(), nix::fcntl::FcntlArg::F_SETLK(&lk));
}

/// The lock was not free within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockTimeout;

/// Takes both locks on `f`, or none, within `wait`. `Ok(true)` when at least one lock is
/// held, `Ok(false)` when the file system gives none, `Err` on timeout.
pub fn lock(f: &File, wait: Duration) -> Result<bool, LockTimeout> {
    lock_until(f, Some(Instant::now() + wait))
}

/// Takes both locks on `f`, or none, waiting as long as it takes (maildir2mbox waits
/// as netqmail's lock_ex does). True when at least one lock is held, false when the file
/// system gives none.
pub fn lock_wait(f: &File) -> bool {
    lock_until(f, None).unwrap_or(false)
}

fn lock_until(f: &File, deadline: Option<Instant>) -> Result<bool, LockTimeout> {
    let mut pause = Duration::from_millis(10);
    loop {
        let a = try_flock(f);
        if matches!(a, LockTry::Busy) {
            // Nothing held: wait and retry.
        } else {
            let b = try_fcntl(f);
            match b {
                LockTry::Busy => {
                    if matches!(a, LockTry::Locked) {
                        let _ = f.unlock();
                    }
                }
                _ => {
                    return Ok(matches!(a, LockTry::Locked) || matches!(b, LockTry::Locked));
                }
            }
        }
        let now = Instant::now();
        let left = match deadline {
            Some(d) if now >= d => return Err(LockTimeout),
            Some(d) => d - now,
            None => pause,
        };
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Appends the message on `msg` (rewound by the caller) to the mbox file `path`: the
/// `From_`, `Return-Path` and `Delivered-To` lines, the quoted message and a blank
/// line; data fsynced, and the directory too when the file was empty (new). On a read
/// or write failure the file is truncated back to its old length when it was locked.
pub fn deliver(
    path: &[u8],
    msg: &mut File,
    ufline: &[u8],
    rpline: &[u8],
    dtline: &[u8],
) -> Result<(), Fail> {
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| {
            Fail::temp(cat(&[
                b"Unable to open ",
                path,
                b": ",
                error_str(&e).as_bytes(),
                b". (#4.2.1)",
            ]))
        })?;
    let locked = lock(&f, LOCK_WAIT).map_err(|LockTimeout| {
        Fail::temp("File has been locked for 30 seconds straight. (#4.3.0)")
    })?;
    let result = append(&f, msg, ufline, rpline, dtline, path, locked);
    if locked {
        fcntl_unlock(&f);
    }
    result
}

fn append(
    f: &File,
    msg: &mut File,
    ufline: &[u8],
    rpline: &[u8],
    dtline: &[u8],
    name: &[u8],
    locked: bool,
) -> Result<(), Fail> {
    let mut w = f;
    let pos = w.seek(SeekFrom::End(0)).map_err(|e| write_fail(name, &e))?;
    let truncate = |f: &File| {
        if locked {
            let _ = f.set_len(pos);
        }
    };
    let out = io::BufWriter::with_capacity(64 * 1024, f);
    let mut q = FromQuoter::new(out);
    let mut head = Vec::with_capacity(ufline.len() + rpline.len() + dtline.len());
    head.extend_from_slice(ufline);
    head.extend_from_slice(rpline);
    head.extend_from_slice(dtline);
    // The header lines go straight through the quoter's writer, unquoted.
    if let Err(e) = q.out.write_all(&head) {
        drop(q);
        truncate(f);
        return Err(write_fail(name, &e));
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match msg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                drop(q);
                truncate(f);
                return Err(Fail::temp(format!(
                    "Unable to read message: {}. (#4.3.0)",
                    error_str(&e)
                )));
            }
        };
        if let Err(e) = q.write_chunk(&buf[..n]) {
            drop(q);
            truncate(f);
            return Err(write_fail(name, &e));
        }
    }
    // A file that held nothing before this delivery was most likely made by it (the open
    // creates a missing mbox): its name is a new directory entry, durable only once the
    // directory is fsynced too. Done under the lock, so that a delivery after this one
    // never reports success while the name can still be lost.
    let done = q
        .finish()
        .and_then(|mut out| out.flush())
        .and_then(|()| f.sync_all())
        .and_then(|()| {
            if pos == 0 {
                qmail_queue::fsync_parent(std::path::Path::new(std::ffi::OsStr::from_bytes(name)))
            } else {
                Ok(())
            }
        });
    if let Err(e) = done {
        truncate(f);
        return Err(write_fail(name, &e));
    }
    Ok(())
}

fn write_fail(name: &[u8], e: &io::Error) -> Fail {
    Fail::temp(cat(&[
        b"Unable to write ",
        name,
        b": ",
        error_str(e).as_bytes(),
        b". (#4.3.0)",
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream(msg: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut q = FromQuoter::new(Vec::new());
        let mut start = 0;
        for &c in cuts {
            let c = c.min(msg.len()).max(start);
            q.write_chunk(&msg[start..c]).unwrap();
            start = c;
        }
        q.write_chunk(&msg[start..]).unwrap();
        q.finish().unwrap()
    }

    #[test]
    fn gfrom_matches_netqmail() {
        assert!(gfrom(b"From x"));
        assert!(gfrom(b">From x"));
        assert!(gfrom(b">>>From "));
        assert!(!gfrom(b"From"));
        assert!(!gfrom(b"from x"));
        assert!(!gfrom(b" From x"));
        assert!(!gfrom(b"> From x"));
        assert!(!gfrom(b""));
    }

    #[test]
    fn quoting_examples() {
        assert_eq!(
            stream(b"From a\n>From b\nx From c\n\nFrom", &[]),
            b">From a\n>>From b\nx From c\n\nFrom\n\n"
        );
        assert_eq!(stream(b"", &[]), b"\n");
        assert_eq!(stream(b"a\n", &[]), b"a\n\n");
        assert_eq!(stream(b"a", &[]), b"a\n\n");
        assert_eq!(stream(b"From ", &[]), b">From \n\n");
        assert_eq!(stream(b">>", &[]), b">>\n\n");
        assert_eq!(
            stream(b">\n>Fro\nFrom x", &[1, 3, 5, 9]),
            b">\n>Fro\n>From x\n\n"
        );
    }

    proptest! {
        #[test]
        fn streaming_equals_line_by_line(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just(b"From x".to_vec()),
                    Just(b">From ".to_vec()),
                    Just(b">>>From y".to_vec()),
                    Just(b"Fro".to_vec()),
                    Just(b">".to_vec()),
                    Just(b"".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..12),
                ],
                0..12),
            cuts in proptest::collection::vec(0usize..120, 0..6),
            end_nl in any::<bool>(),
        ) {
            let mut msg = lines.join(&b'\n');
            if end_nl { msg.push(b'\n'); }
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(stream(&msg, &cuts), quote_lines(&msg));
        }
    }

    #[test]
    fn appends_and_locks() {
        let d = tempfile::tempdir().unwrap();
        let mbox = d.path().join("Mailbox");
        let msgp = d.path().join("msg");
        std::fs::write(&msgp, b"Subject: x\n\nFrom me\nbye").unwrap();
        let mut msg = File::open(&msgp).unwrap();
        let path = mbox.as_os_str().as_bytes();
        deliver(
            path,
            &mut msg,
            b"From a@b Thu Jan 01 00:00:00 1970\n",
            b"RP\n",
            b"DT\n",
        )
        .unwrap();
        msg.rewind().unwrap();
        deliver(
            path,
            &mut msg,
            b"From a@b Thu Jan 01 00:00:00 1970\n",
            b"RP\n",
            b"DT\n",
        )
        .unwrap();
        let one = b"From a@b Thu Jan 01 00:00:00 1970\nRP\nDT\nSubject: x\n\n>From me\nbye\n\n";
        assert_eq!(std::fs::read(&mbox).unwrap(), [&one[..], &one[..]].concat());

        // A lock held elsewhere makes the wait time out.
        let other = File::open(&mbox).unwrap();
        other.lock().unwrap();
        let f = OpenOptions::new().append(true).open(&mbox).unwrap();
        assert_eq!(lock(&f, Duration::from_millis(50)), Err(LockTimeout));
        other.unlock().unwrap();
        assert_eq!(lock(&f, Duration::from_millis(50)), Ok(true));
    }
}
