//! The table of hosts that recently timed out (netqmail's tcpto), and the programs that
//! show it (qmail-tcpto) and clear it (qmail-tcpok).
//!
//! `queue/lock/tcpto` is netqmail's file, byte for byte: 64 records of 16 bytes, each an
//! IPv4 address (4 bytes), a count of recent timeouts (1 byte, at most 10; 0 is a free
//! record), 3 unused bytes, the time of the last counted timeout (4 bytes, least
//! significant first) and 4 unused bytes. Writers hold an exclusive flock on it.
//!
//! netqmail knows no IPv6, so IPv6 hosts are kept apart, in `queue/lock/tcpto6` when that
//! file exists: 64 records of 32 bytes (16 address bytes, the count at byte 16, the time
//! at bytes 24 to 27), with the same rules. Without the file, IPv6 hosts are not tracked.
//!
//! The rules: after two or more recent timeouts, a host is skipped for about an hour
//! (64 to 124 minutes, depending on the process id) since the last one; a successful
//! connection resets its count; timeouts less than two minutes apart count once; when the
//! table is full, the record with the smallest `time + count * 1024` is replaced.

use control::Exit;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where a table lives and how its records are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The file name below queue/lock.
    pub name: &'static str,
    /// The whole table, in bytes.
    pub size: usize,
    /// One record.
    pub rec: usize,
    /// Address bytes at the start of a record.
    pub addr: usize,
    /// Offset of the count byte.
    pub count: usize,
    /// Offset of the 4-byte time.
    pub when: usize,
}

/// netqmail's table, for IPv4 hosts.
pub const V4: Layout = Layout {
    name: "tcpto",
    size: 1024,
    rec: 16,
    addr: 4,
    count: 4,
    when: 8,
};

/// rqmail's table for IPv6 hosts.
pub const V6: Layout = Layout {
    name: "tcpto6",
    size: 2048,
    rec: 32,
    addr: 16,
    count: 16,
    when: 24,
};

/// The layout and address bytes for `ip`.
pub fn layout_of(ip: &IpAddr) -> (Layout, Vec<u8>) {
    match ip {
        IpAddr::V4(a) => (V4, a.octets().to_vec()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (V4, v4.octets().to_vec()),
            None => (V6, a.octets().to_vec()),
        },
    }
}

fn count(rec: &[u8], l: &Layout) -> i8 {
    i8::from_ne_bytes([rec[l.count]])
}

fn when(rec: &[u8], l: &Layout) -> u32 {
    u32::from_le_bytes([
        rec[l.when],
        rec[l.when + 1],
        rec[l.when + 2],
        rec[l.when + 3],
    ])
}

fn set_when(rec: &mut [u8], l: &Layout, now: u64) {
    // Only the low 32 bits are kept, as netqmail does.
    let b = (now as u32).to_le_bytes();
    rec[l.when..l.when + 4].copy_from_slice(&b);
}

/// Whether to skip `ip` now (and whether it has a record at all). `buf` holds the table's
/// whole records.
pub fn check(buf: &[u8], l: &Layout, ip: &[u8], now: u64, pid: u32) -> (bool, bool) {
    for rec in buf.chunks_exact(l.rec) {
        if &rec[..l.addr] == ip {
            if count(rec, l) >= 2 {
                let ago = now.wrapping_sub(u64::from(when(rec, l)));
                let wait = u64::from((60 + (pid & 31)) << 6);
                return (ago < wait, true);
            }
            return (false, true);
        }
    }
    (false, false)
}

/// Records the outcome of a connection to `ip` in the table: `timed_out` false resets
/// its count. Returns the index of the record to write back, if any changed.
pub fn update(buf: &mut [u8], l: &Layout, ip: &[u8], timed_out: bool, now: u64) -> Option<usize> {
    let n = buf.len() / l.rec;
    for i in 0..n {
        let rec = &mut buf[i * l.rec..(i + 1) * l.rec];
        if &rec[..l.addr] != ip {
            continue;
        }
        if !timed_out {
            rec[l.count] = 0;
        } else {
            let c = count(rec, l);
            if c != 0 && now < 120 + u64::from(when(rec, l)) {
                return None;
            }
            let c = c.wrapping_add(1).min(10);
            rec[l.count] = c.to_ne_bytes()[0];
            set_when(rec, l, now);
        }
        return Some(i);
    }
    if !timed_out {
        return None;
    }
    let free = (0..n).find(|&i| buf[i * l.rec + l.count] == 0);
    let i = match free {
        Some(i) => i,
        None => {
            // Replace the record that matters least: oldest, fewest timeouts.
            let weight = |i: usize| {
                let rec = &buf[i * l.rec..(i + 1) * l.rec];
                i64::from(when(rec, l)) + (i64::from(count(rec, l)) << 10)
            };
            (0..n).min_by_key(|&i| weight(i))?
        }
    };
    let rec = &mut buf[i * l.rec..(i + 1) * l.rec];
    rec[..l.addr].copy_from_slice(ip);
    set_when(rec, l, now);
    rec[l.count] = 1;
    Some(i)
}

/// The table files of a qmail home, used by qmail-remote (run from the home).
#[derive(Debug, Clone)]
pub struct Tables {
    dir: PathBuf,
    pid: u32,
    was_there: bool,
}

/// Opens a table for writing and reading, and locks it. `None` when it cannot be used:
/// then, like netqmail, nothing is tracked.
fn open_locked(path: &Path, l: &Layout) -> Option<(Flock<File>, Vec<u8>)> {
    // Never waiting on a FIFO (netqmail's open_write and open_read).
    let w = control::open_write(path).ok()?;
    let mut r = control::open_read(path).ok()?;
    let lock = Flock::lock(w, FlockArg::LockExclusive).ok()?;
    let mut buf = vec![0u8; l.size];
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(got - got % l.rec);
    if buf.is_empty() {
        return None;
    }
    Some((lock, buf))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tables {
    /// The tables below `home/queue/lock`.
    pub fn new(home: &Path) -> Tables {
        Tables {
            dir: home.join("queue/lock"),
            pid: std::process::id(),
            was_there: false,
        }
    }

    /// True when `ip` timed out repeatedly and recently: do not try it now.
    pub fn skip(&mut self, ip: &IpAddr) -> bool {
        let (l, a) = layout_of(ip);
        self.was_there = false;
        let Some((lock, buf)) = open_locked(&self.dir.join(l.name), &l) else {
            return false;
        };
        drop(lock);
        let (skip, there) = check(&buf, &l, &a, now(), self.pid);
        self.was_there = there;
        skip
    }

    /// Records a connection attempt to `ip` (the one just checked with [`skip`]):
    /// `timed_out` when it timed out, false when it succeeded or failed otherwise.
    ///
    /// [`skip`]: Tables::skip
    pub fn record(&mut self, ip: &IpAddr, timed_out: bool) {
        if !timed_out && !self.was_there {
            return;
        }
        let (l, a) = layout_of(ip);
        let Some((lock, mut buf)) = open_locked(&self.dir.join(l.name), &l) else {
            return;
        };
        if let Some(i) = update(&mut buf, &l, &a, timed_out, now()) {
            // Like netqmail, a failed write is not worth failing the delivery for.
            let _ = lock.write_all_at(&buf[i * l.rec..(i + 1) * l.rec], (i * l.rec) as u64);
        }
    }
}

/// The address in a record, for display.
fn record_ip(rec: &[u8], l: &Layout) -> IpAddr {
    if l.addr == 4 {
        IpAddr::from([rec[0], rec[1], rec[2], rec[3]])
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&rec[..16]);
        IpAddr::from(a)
    }
}

/// qmail-tcpto's lines for one table's bytes.
pub fn show(buf: &[u8], l: &Layout, start: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for rec in buf.chunks_exact(l.rec) {
        let c = count(rec, l);
        if c >= 1 {
            let ago = start.wrapping_sub(u64::from(when(rec, l)));
            let line = format!(
                "{} timed out {} seconds ago; # recent timeouts: {}\n",
                record_ip(rec, l),
                ago,
                rec[l.count]
            );
            out.extend_from_slice(line.as_bytes());
        }
    }
    out
}

fn errtext(e: &io::Error) -> &'static str {
    control::error_str(e)
}

/// The qmail-tcpto program: prints the table. Errors go to standard output, as
/// netqmail's do. Returns the exit code.
pub fn tcpto_main() -> Exit {
    let mut stdout = io::stdout().lock();
    let mut out = Vec::new();
    let code = tcpto_run(&control::qmail_home(), &mut out);
    let _ = stdout.write_all(&out);
    let _ = stdout.flush();
    code
}

fn read_table(dir: &Path, l: &Layout, optional: bool, out: &mut Vec<u8>) -> Result<Vec<u8>, ()> {
    let p = dir.join(l.name);
    let fatal = |out: &mut Vec<u8>, what: &str, e: &io::Error| {
        out.extend_from_slice(
            format!("fatal: unable to {what} {}: {}\n", l.name, errtext(e)).as_bytes(),
        );
    };
    let w = match control::open_write(&p) {
        Ok(f) => f,
        Err(e) if optional && e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            fatal(out, "open", &e);
            return Err(());
        }
    };
    let mut r = match control::open_read(&p) {
        Ok(f) => f,
        Err(e) => {
            fatal(out, "open", &e);
            return Err(());
        }
    };
    let lock = match Flock::lock(w, FlockArg::LockExclusive) {
        Ok(l) => l,
        Err((_, e)) => {
            fatal(out, "lock", &io::Error::from(e));
            return Err(());
        }
    };
    let mut buf = Vec::new();
    let res = (&mut r).take(l.size as u64).read_to_end(&mut buf);
    drop(lock);
    if let Err(e) = res {
        fatal(out, "read", &e);
        return Err(());
    }
    Ok(buf)
}

/// qmail-tcpto's work on the home `home`, its output appended to `out`.
pub fn tcpto_run(home: &Path, out: &mut Vec<u8>) -> Exit {
    let dir = home.join("queue/lock");
    for d in [home, dir.as_path()] {
        if let Err(e) = std::fs::read_dir(d) {
            out.extend_from_slice(format!("fatal: unable to chdir: {}\n", errtext(&e)).as_bytes());
            return Exit::TEMP;
        }
    }
    let Ok(v4) = read_table(&dir, &V4, false, out) else {
        return Exit::TEMP;
    };
    let Ok(v6) = read_table(&dir, &V6, true, out) else {
        return Exit::TEMP;
    };
    let start = now();
    out.extend(show(&v4, &V4, start));
    out.extend(show(&v6, &V6, start));
    Exit::OK
}

/// The qmail-tcpok program: clears the table(s). Returns the exit code.
pub fn tcpok_main() -> Exit {
    match tcpok_run(&control::qmail_home()) {
        Ok(()) => Exit::OK,
        Err(msg) => {
            let _ = io::stderr().write_all(format!("qmail-tcpok: fatal: {msg}\n").as_bytes());
            Exit::TEMP
        }
    }
}

/// Clears the tables of `home`: netqmail's, and rqmail's IPv6 table when it exists.
pub fn tcpok_run(home: &Path) -> Result<(), String> {
    let h = home.display();
    let dir = home.join("queue/lock");
    std::fs::read_dir(home).map_err(|e| format!("unable to chdir to {h}: {}", errtext(&e)))?;
    std::fs::read_dir(&dir)
        .map_err(|e| format!("unable to chdir to {h}/queue/lock: {}", errtext(&e)))?;
    for (l, optional) in [(V4, false), (V6, true)] {
        let p = dir.join(l.name);
        let f = match control::open_write(&p) {
            Ok(f) => f,
            Err(e) if optional && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(format!(
                    "unable to write {h}/queue/lock/{}: {}",
                    l.name,
                    errtext(&e)
                ));
            }
        };
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| {
            format!(
                "unable to lock {h}/queue/lock/{}: {}",
                l.name,
                errtext(&io::Error::from(e))
            )
        })?;
        lock.write_all_at(&vec![0u8; l.size], 0)
            .map_err(|e| format!("unable to clear {h}/queue/lock/{}: {}", l.name, errtext(&e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IP: [u8; 4] = [192, 0, 2, 9];

    #[test]
    fn two_timeouts_then_skip_then_reset() {
        let mut buf = vec![0u8; 1024];
        let t0 = 1_700_000_000;
        assert_eq!(check(&buf, &V4, &IP, t0, 0), (false, false));
        assert_eq!(update(&mut buf, &V4, &IP, true, t0), Some(0));
        assert_eq!(
            &buf[..16],
            &[192, 0, 2, 9, 1, 0, 0, 0, 0, 0xf1, 0x53, 0x65, 0, 0, 0, 0]
        );
        // Another timeout within two minutes does not count.
        assert_eq!(update(&mut buf, &V4, &IP, true, t0 + 60), None);
        assert_eq!(check(&buf, &V4, &IP, t0 + 60, 0), (false, true));
        assert_eq!(update(&mut buf, &V4, &IP, true, t0 + 200), Some(0));
        assert_eq!(buf[4], 2);
        // Skipped for (60 + (pid & 31)) * 64 seconds.
        assert_eq!(check(&buf, &V4, &IP, t0 + 200 + 3839, 0), (true, true));
        assert_eq!(check(&buf, &V4, &IP, t0 + 200 + 3840, 0), (false, true));
        assert_eq!(check(&buf, &V4, &IP, t0 + 200 + 3840, 31), (true, true));
        // Success resets the count.
        assert_eq!(update(&mut buf, &V4, &IP, false, t0 + 300), Some(0));
        assert_eq!(buf[4], 0);
        assert_eq!(check(&buf, &V4, &IP, t0 + 300, 0), (false, true));
        // The count stops at 10.
        for k in 0..20 {
            update(&mut buf, &V4, &IP, true, t0 + 1000 + k * 200);
        }
        assert_eq!(buf[4], 10);
    }

    #[test]
    fn full_table_replaces_least_weighty() {
        let mut buf = vec![0u8; 1024];
        for i in 0..64u8 {
            update(&mut buf, &V4, &[10, 0, 0, i], true, 1000 + u64::from(i));
        }
        // Record 0 is the oldest with one timeout: it goes.
        assert_eq!(update(&mut buf, &V4, &[10, 0, 1, 0], true, 5000), Some(0));
        assert_eq!(&buf[..5], &[10, 0, 1, 0, 1]);
        // Success for an unknown host changes nothing.
        assert_eq!(update(&mut buf, &V4, &[10, 9, 9, 9], false, 5000), None);
    }

    #[test]
    fn display() {
        let mut buf = vec![0u8; 1024];
        update(&mut buf, &V4, &IP, true, 1000);
        assert_eq!(
            show(&buf, &V4, 1090),
            b"192.0.2.9 timed out 90 seconds ago; # recent timeouts: 1\n"
        );
        let mut b6 = vec![0u8; 2048];
        let ip6: std::net::Ipv6Addr = "2001:db8::5".parse().unwrap();
        update(&mut b6, &V6, &ip6.octets(), true, 1000);
        assert_eq!(
            show(&b6, &V6, 1001),
            b"2001:db8::5 timed out 1 seconds ago; # recent timeouts: 1\n"
        );
        assert_eq!(b6[16], 1);
        assert_eq!(&b6[24..28], &1000u32.to_le_bytes());
    }

    #[test]
    fn files_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let lock = d.path().join("queue/lock");
        std::fs::create_dir_all(&lock).unwrap();
        std::fs::write(lock.join("tcpto"), vec![0u8; 1024]).unwrap();
        let mut t = Tables::new(d.path());
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let ip6: IpAddr = "2001:db8::5".parse().unwrap();
        assert!(!t.skip(&ip));
        t.record(&ip, true);
        assert!(!t.skip(&ip6));
        t.record(&ip6, true); // no tcpto6: not tracked
        assert!(!lock.join("tcpto6").exists());
        let mut out = Vec::new();
        assert_eq!(tcpto_run(d.path(), &mut out), Exit::OK);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("192.0.2.9 timed out "), "{s}");
        std::fs::write(lock.join("tcpto6"), vec![0u8; 2048]).unwrap();
        assert!(!t.skip(&ip6));
        t.record(&ip6, true);
        let mut out = Vec::new();
        tcpto_run(d.path(), &mut out);
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
        tcpok_run(d.path()).unwrap();
        let mut out = Vec::new();
        tcpto_run(d.path(), &mut out);
        assert!(out.is_empty());
        assert_eq!(std::fs::read(lock.join("tcpto")).unwrap(), vec![0u8; 1024]);
        let mut out = Vec::new();
        assert_eq!(tcpto_run(&d.path().join("nope"), &mut out), Exit::TEMP);
        assert_eq!(out, b"fatal: unable to chdir: file does not exist\n");
        let err = tcpok_run(&d.path().join("nope")).unwrap_err();
        assert!(err.starts_with("unable to chdir to "), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_tables_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..1100),
                                        ip in any::<[u8; 4]>(), now in any::<u64>(), flag in any::<bool>()) {
            let mut b = buf.clone();
            b.truncate(b.len() - b.len() % 16);
            let _ = check(&b, &V4, &ip, now, 7);
            let _ = update(&mut b, &V4, &ip, flag, now);
            let _ = show(&b, &V4, now);
        }
    }
}
