//! qmail-clean: removes queue files on qmail-send's behalf (it runs as qmailq, which owns
//! them).
//!
//! Protocol (descriptor 0 in, descriptor 1 out), one command at a time:
//! * `foop/N\0`: remove `intd/N` and `mess/S/N` (a message that is completely done);
//! * `todo/N\0`: remove `intd/N` and `todo/N` (a message that has been preprocessed).
//!
//! The answer is one byte: `+` done (missing files count as removed), `!` a file could not
//! be removed, `x` the command is malformed. Every 31st command also removes files in
//! `pid/` whose access time is more than 36 hours old (a crashed qmail-queue's leftovers).

use crate::bounded::{BoundedLine, read_bounded};
use control::Exit;
use qmail_queue::fmtqfn;
use std::io::{self, BufReader, Write};
use std::os::fd::AsFd;
use std::path::Path;

/// Files older than this (seconds) are abandoned: it must exceed qmail-queue's 24 hours.
pub const OSSIFIED: u64 = 129_600;

/// The longest command accepted, `\0` included (netqmail's limit).
pub const MAX_COMMAND: usize = 100;

/// A parsed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Remove intd/N and mess/S/N.
    Foop(u64),
    /// Remove intd/N and todo/N.
    Todo(u64),
    /// Answer `x`.
    Malformed,
}

/// Parses one command, without its terminating `\0`.
pub fn parse(cmd: &[u8]) -> Request {
    // netqmail counts the \0: 7 to 100 bytes with it.
    if cmd.len() < 6 || cmd.len() > MAX_COMMAND - 1 {
        return Request::Malformed;
    }
    let Some(id) = qmail_queue::message_id(&cmd[5..]) else {
        return Request::Malformed;
    };
    match &cmd[..5] {
        b"foop/" => Request::Foop(id),
        b"todo/" => Request::Todo(id),
        _ => Request::Malformed,
    }
}

fn unlink_ok(p: &Path) -> bool {
    match std::fs::remove_file(p) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Carries out a request in the queue directory `queue`; returns the answer byte.
pub fn perform(queue: &Path, r: Request) -> u8 {
    let files = match r {
        Request::Malformed => return b'x',
        Request::Foop(id) => [fmtqfn("intd", id, false), fmtqfn("mess", id, true)],
        Request::Todo(id) => [fmtqfn("intd", id, false), fmtqfn("todo", id, false)],
    };
    for f in &files {
        if !unlink_ok(&queue.join(f)) {
            return b'!';
        }
    }
    b'+'
}

/// qmail-clean's confinement (qmail-clean(8), CONFINEMENT): no_new_privs, the queue
/// only, no TCP, and the system calls of a program that reads, writes and removes files.
/// Its descriptor 2 is closed: a kernel without Landlock or seccomp goes unmentioned
/// here (qmail-send logs it once).
pub fn confine(queue: &Path) {
    use control::confine::{FsAccess, Policy, syscalls};
    let _ = Policy::new()
        .no_new_privs()
        .allow(queue, FsAccess::ReadWrite)
        .deny_tcp()
        .syscalls(&[syscalls::RUNTIME, syscalls::FILES])
        .apply();
}

/// Removes files in `queue/pid` not accessed for [`OSSIFIED`] seconds.
pub fn clean_pid(queue: &Path, now: u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(queue.join("pid")) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        let atime = u64::try_from(m.atime()).unwrap_or(0);
        if now < atime.saturating_add(OSSIFIED) {
            continue;
        }
        let _ = std::fs::remove_file(&p);
    }
}

/// The qmail-clean program. Returns its exit code.
pub fn main() -> Exit {
    let queue = control::qmail_home().join("queue");
    if std::env::set_current_dir(&queue).is_err() {
        return Exit::TEMP;
    }
    confine(&queue);
    let queue = Path::new(".");
    let stdin = io::stdin();
    let mut input = BufReader::with_capacity(1024, qmail_queue::FdReader::new(stdin.as_fd()));
    let stdout = io::stdout();
    let mut out = qmail_queue::FdWriter::new(stdout.as_fd());
    let mut countdown = 0u32;
    loop {
        if countdown == 0 {
            clean_pid(queue, control::now());
            countdown = 30;
        } else {
            countdown -= 1;
        }
        let answer = match read_bounded(&mut input, 0, MAX_COMMAND) {
            Ok(BoundedLine::Line(l)) => perform(queue, parse(&l[..l.len() - 1])),
            Ok(BoundedLine::TooLong) => b'x',
            Ok(BoundedLine::Eof(_)) | Err(_) => return Exit::OK,
        };
        if out.write_all(&[answer]).is_err() {
            return Exit::PERM;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands() {
        assert_eq!(parse(b"foop/457"), Request::Foop(457));
        assert_eq!(parse(b"todo/1"), Request::Todo(1));
        assert_eq!(parse(b"todo/"), Request::Malformed);
        assert_eq!(parse(b"mess/12"), Request::Malformed);
        assert_eq!(parse(b"foop/12a"), Request::Malformed);
        assert_eq!(parse(b"foop/-1"), Request::Malformed);
        let long = format!("foop/{}", "1".repeat(94));
        assert_eq!(parse(long.as_bytes()), Request::Malformed);
        let ok = format!("foop/{}", "0".repeat(94));
        assert_eq!(parse(ok.as_bytes()), Request::Foop(0));
    }

    #[test]
    fn perform_removes() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path();
        qmail_queue::create_queue(q, &control::Ids::single_user()).unwrap();
        std::fs::write(q.join("intd/46"), b"x").unwrap();
        std::fs::write(q.join(fmtqfn("mess", 46, true)), b"x").unwrap();
        assert_eq!(perform(q, Request::Foop(46)), b'+');
        assert!(!q.join("intd/46").exists());
        assert!(!q.join(fmtqfn("mess", 46, true)).exists());
        assert_eq!(perform(q, Request::Foop(46)), b'+');
        std::fs::create_dir(q.join("todo/47")).unwrap();
        assert_eq!(perform(q, Request::Todo(47)), b'!');
        assert_eq!(perform(q, Request::Malformed), b'x');
    }

    proptest! {
        #[test]
        fn parse_never_panics(cmd in proptest::collection::vec(any::<u8>(), 0..120)) {
            let r = parse(&cmd);
            if let Request::Foop(id) | Request::Todo(id) = r {
                prop_assert!(cmd.len() >= 6 && cmd.len() <= 99);
                prop_assert_eq!(id.to_string().len() <= cmd.len() - 5, true);
            }
        }
    }
}
