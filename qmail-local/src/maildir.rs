//! Delivery into a maildir (maildir(5)): write `tmp/UNIQUE`, fsync it, link it to
//! `new/UNIQUE`, fsync `new/`, remove `tmp/UNIQUE`.
//!
//! Unique names use the modern form of the maildir specification,
//! `SECONDS.MmicrosecondsPpidQn.HOST` (n counts deliveries made by this process), instead
//! of netqmail's `SECONDS.PID.HOST`; `/` and `:` in the host name are written as `\057`
//! and `\072`. The name is checked free in `tmp/` first, and created with O_EXCL.
//!
//! The directory is opened once (like netqmail's chdir into it) and every step is made
//! relative to it, so the delivery does not change the process's working directory.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fstatat};
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

use crate::fail::Fail;
use control::errno_temp;

/// The maildir specification's delivery timer.
pub const TIMEOUT: Duration = Duration::from_secs(86400);

static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// The host part of unique names: the host name with `/` and `:` encoded.
pub fn host_part(host: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(host.len());
    for &c in host {
        match c {
            b'/' => out.extend_from_slice(b"\\057"),
            b':' => out.extend_from_slice(b"\\072"),
            c => out.push(c),
        }
    }
    out
}

/// A unique name for the `n`th delivery of process `pid` at `now`.
pub fn unique_name(now: SystemTime, pid: u32, n: u64, host: &[u8]) -> Vec<u8> {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut name = format!("{}.M{}P{}Q{}.", d.as_secs(), d.subsec_micros(), pid, n).into_bytes();
    name.extend_from_slice(&host_part(host));
    name
}

fn hostname() -> Vec<u8> {
    nix::unistd::gethostname()
        .map(|h| h.as_bytes().to_vec())
        .unwrap_or_default()
}

enum Step {
    /// The maildir itself cannot be entered.
    Chdir(nix::errno::Errno),
    /// Reading the message failed.
    Read,
    /// The 24-hour timer ran out.
    Timeout,
    /// Anything else.
    Other,
}

fn step_fail(s: Step) -> Fail {
    match s {
        Step::Chdir(e) if !errno_temp(e as i32) => {
            Fail::temp("Unable to chdir to maildir. (#4.2.1)")
        }
        Step::Read => Fail::temp("Unable to read message. (#4.3.0)"),
        Step::Timeout => Fail::temp("Timeout on maildir delivery. (#4.3.0)"),
        Step::Chdir(_) | Step::Other => Fail::temp("Temporary error on maildir delivery. (#4.3.0)"),
    }
}

/// Delivers the message on `msg` (rewound by the caller) into the maildir `dir`, with
/// `rpline` and `dtline` in front.
pub fn deliver(dir: &[u8], msg: &mut File, rpline: &[u8], dtline: &[u8]) -> Result<(), Fail> {
    let n = DELIVERIES.fetch_add(1, Ordering::Relaxed) + 1;
    deliver_n(dir, msg, rpline, dtline, n).map_err(step_fail)
}

fn deliver_n(dir: &[u8], msg: &mut File, rpline: &[u8], dtline: &[u8], n: u64) -> Result<(), Step> {
    let start = Instant::now();
    let dirfd: OwnedFd = nix::fcntl::open(
        std::ffi::OsStr::from_bytes(dir),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(Step::Chdir)?;
    let pid = std::process::id();
    let host = hostname();
    let mut tries = 0;
    let (tmp, new) = loop {
        let name = unique_name(SystemTime::now(), pid, n, &host);
        let mut tmp = b"tmp/".to_vec();
        tmp.extend_from_slice(&name);
        match fstatat(&dirfd, tmp.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(nix::errno::Errno::ENOENT) => {
                let mut new = b"new/".to_vec();
                new.extend_from_slice(&name);
                break (tmp, new);
            }
            _ => {
                tries += 1;
                if tries == 3 {
                    return Err(Step::Other);
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    };
    let fd = openat(
        &dirfd,
        tmp.as_slice(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|_| Step::Other)?;
    let file = File::from(fd);
    let result = write_and_link(&dirfd, file, msg, rpline, dtline, &tmp, &new, start);
    let _ = unlinkat(&dirfd, tmp.as_slice(), UnlinkatFlags::NoRemoveDir);
    result
}

#[allow(clippy::too_many_arguments)]
fn write_and_link(
    dirfd: &OwnedFd,
    file: File,
    msg: &mut File,
    rpline: &[u8],
    dtline: &[u8],
    tmp: &[u8],
    new: &[u8],
    start: Instant,
) -> Result<(), Step> {
    let mut out = io::BufWriter::with_capacity(64 * 1024, &file);
    out.write_all(rpline).map_err(|_| Step::Other)?;
    out.write_all(dtline).map_err(|_| Step::Other)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if start.elapsed() > TIMEOUT {
            return Err(Step::Timeout);
        }
        let k = match msg.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Step::Read),
        };
        out.write_all(&buf[..k]).map_err(|_| Step::Other)?;
    }
    out.flush().map_err(|_| Step::Other)?;
    drop(out);
    file.sync_all().map_err(|_| Step::Other)?;
    // close() reports errors some file systems only find then (NFS).
    nix::unistd::close(file).map_err(|_| Step::Other)?;
    linkat(dirfd, tmp, dirfd, new, AtFlags::empty()).map_err(|_| Step::Other)?;
    // The link is the delivery; make the new directory entry durable.
    match openat(
        dirfd,
        "new",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => File::from(d).sync_all().map_err(|_| Step::Other)?,
        // A new/ that can be written but not read cannot be fsynced; the link stands.
        Err(nix::errno::Errno::EACCES) => {}
        Err(_) => return Err(Step::Other),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    #[test]
    fn names() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(
            unique_name(t, 42, 3, b"h/o:st"),
            b"1700000000.M123456P42Q3.h\\057o\\072st"
        );
    }

    #[test]
    fn delivers_into_new() {
        let d = tempfile::tempdir().unwrap();
        let md = d.path().join("Maildir");
        for s in ["", "tmp", "new", "cur"] {
            std::fs::create_dir_all(md.join(s)).unwrap();
        }
        let msgp = d.path().join("msg");
        std::fs::write(&msgp, b"Subject: x\n\nFrom body").unwrap();
        let mut msg = File::open(&msgp).unwrap();
        let mut dir = md.as_os_str().as_bytes().to_vec();
        dir.push(b'/');
        deliver(&dir, &mut msg, b"RP\n", b"DT\n").unwrap();
        msg.rewind().unwrap();
        deliver(&dir, &mut msg, b"RP\n", b"DT\n").unwrap();
        let files: Vec<_> = std::fs::read_dir(md.join("new"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(files.len(), 2);
        for f in files {
            assert_eq!(
                std::fs::read(f.path()).unwrap(),
                b"RP\nDT\nSubject: x\n\nFrom body"
            );
        }
        assert_eq!(std::fs::read_dir(md.join("tmp")).unwrap().count(), 0);

        let missing = d.path().join("nope/");
        assert_eq!(
            deliver(missing.as_os_str().as_bytes(), &mut msg, b"", b""),
            Err(Fail::temp("Unable to chdir to maildir. (#4.2.1)"))
        );
        std::fs::remove_dir(md.join("tmp")).unwrap();
        assert_eq!(
            deliver(&dir, &mut msg, b"", b""),
            Err(Fail::temp("Temporary error on maildir delivery. (#4.3.0)"))
        );
    }
}
