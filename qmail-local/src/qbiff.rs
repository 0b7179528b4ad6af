//! qbiff (qbiff(1)): from a `.qmail` line `|qbiff`, announce the message on every
//! terminal where the user is logged in and has run `biff y`, as netqmail's does.
//!
//! The user is `$USER`; the notice names `$LOCAL` and `$SENDER` (qmail-command(8)'s
//! environment) and shows the subject and the start of the body:
//!
//! ```text
//! \r\n BEL *** TO <local> FROM <sender> \r\n
//!     subject and body, 78 bytes with the four spaces \r\n
//! ```
//!
//! Unprintable bytes become `_` in the first line and `/` in the second. The terminals
//! are the `ut_line`s of the records of `/var/run/utmp` whose user is `$USER`, opened
//! relative to `/dev` (a line that starts with `/`, contains `.` or is empty is skipped);
//! only a terminal owned by the user running qbiff with its owner-execute bit set (what
//! `biff y` sets; `mesg` is not looked at) gets the notice. qbiff always exits 0: a
//! notice that cannot be given never holds up a delivery. Beyond netqmail: a terminal is
//! never created (netqmail opens with O_CREAT) and never becomes qbiff's controlling
//! terminal, and a write that would block is given up.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use control::Exit;

use crate::summary::{printable, summarize};

/// Where the login records are (glibc's _PATH_UTMP, as netqmail compiles it in).
pub const UTMP: &str = "/var/run/utmp";

/// glibc's utmp record on Linux (the same on 32- and 64-bit systems): its size and where
/// `ut_line` and `ut_user` are, each 32 bytes.
pub const RECORD: usize = 384;
const LINE_AT: usize = 8;
const USER_AT: usize = 44;
/// The size of `ut_line` and `ut_user`.
pub const FIELD: usize = 32;

/// How much of the subject and body is shown, the four leading spaces included.
pub const TEXT: usize = 78;

/// The bytes written to each terminal.
pub fn notice(local: &[u8], sender: &[u8], text: &[u8]) -> Vec<u8> {
    let mut tofrom = b"*** TO <".to_vec();
    tofrom.extend_from_slice(local);
    tofrom.extend_from_slice(b"> FROM <");
    tofrom.extend_from_slice(sender);
    tofrom.push(b'>');
    let mut w = b"\r\n\x07".to_vec();
    w.extend_from_slice(&printable(&tofrom, b'_'));
    w.extend_from_slice(b"\r\n");
    w.extend_from_slice(&printable(text, b'/'));
    w.extend_from_slice(b"\r\n");
    w
}

/// netqmail's comparison of a record's `ut_user` with the user name (at most [`FIELD`]
/// bytes): equal up to the first NUL, or over all 32 bytes.
pub fn same_user(ut_user: &[u8], user: &[u8]) -> bool {
    for (i, &a) in ut_user.iter().take(FIELD).enumerate() {
        let b = user.get(i).copied().unwrap_or(0);
        if a != b {
            return false;
        }
        if a == 0 {
            return true;
        }
    }
    true
}

/// The terminal of a record, when it is one qbiff may open below /dev.
pub fn tty_of(ut_line: &[u8]) -> Option<&[u8]> {
    let n = ut_line
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(ut_line.len());
    let line = &ut_line[..n.min(FIELD)];
    let ok = !line.is_empty() && line[0] != b'/' && !line.contains(&b'.');
    ok.then_some(line)
}

/// The terminals listed for `user` in the login records read from `utmp`.
pub fn ttys(utmp: impl Read, user: &[u8]) -> Vec<Vec<u8>> {
    let mut r = BufReader::with_capacity(RECORD * 16, utmp);
    let mut rec = [0u8; RECORD];
    let mut v = Vec::new();
    while r.read_exact(&mut rec).is_ok() {
        if same_user(&rec[USER_AT..USER_AT + FIELD], user)
            && let Some(t) = tty_of(&rec[LINE_AT..LINE_AT + FIELD])
        {
            v.push(t.to_vec());
        }
    }
    v
}

/// Writes `woof` to the terminal `line` (relative to /dev, the working directory) when
/// the user running qbiff owns it and has set its owner-execute bit.
fn tell(line: &[u8], woof: &[u8]) {
    let Ok(f): io::Result<File> = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(std::ffi::OsStr::from_bytes(line))
    else {
        return;
    };
    let Ok(st) = f.metadata() else {
        return;
    };
    if st.mode() & 0o100 == 0 || st.uid() != nix::unistd::getuid().as_raw() {
        return;
    }
    let _ = (&f).write_all(woof);
}

fn env(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(OsStringExt::into_vec)
}

fn run() -> Option<()> {
    std::env::set_current_dir("/dev").ok()?;
    let user = env("USER")?;
    let sender = env("SENDER")?;
    let local = env("LOCAL")?;
    if user.len() > FIELD {
        return None;
    }
    let s = summarize(io::stdin().lock(), b"    ", TEXT, true).ok()?;
    let woof = notice(&local, &sender, &s.text);
    let utmp = File::open(UTMP).ok()?;
    for line in ttys(utmp, &user) {
        tell(&line, &woof);
    }
    Some(())
}

/// qbiff(1): always exits 0.
pub fn main() -> Exit {
    let _ = run();
    Exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(user: &[u8], line: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; RECORD];
        r[0] = 7; // USER_PROCESS
        r[LINE_AT..LINE_AT + line.len()].copy_from_slice(line);
        r[USER_AT..USER_AT + user.len()].copy_from_slice(user);
        r
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn the_record_is_glibcs() {
        assert_eq!(std::mem::size_of::<libc::utmpx>(), RECORD);
        assert_eq!(std::mem::offset_of!(libc::utmpx, ut_line), LINE_AT);
        assert_eq!(std::mem::offset_of!(libc::utmpx, ut_user), USER_AT);
        assert_eq!(libc::__UT_LINESIZE, FIELD);
        assert_eq!(libc::__UT_NAMESIZE, FIELD);
    }

    #[test]
    fn notice_bytes() {
        assert_eq!(
            notice(b"joe-ext", b"a@b\n", b"    hi\n\nbody\x07\n"),
            b"\r\n\x07*** TO <joe-ext> FROM <a@b_>\r\n    hi//body//\r\n"
        );
    }

    #[test]
    fn terminals_of_a_user() {
        let mut utmp = record(b"joe", b"pts/3");
        utmp.extend(record(b"joey", b"pts/4"));
        utmp.extend(record(b"jo", b"pts/5"));
        utmp.extend(record(b"joe", b"/dev/pts/6"));
        utmp.extend(record(b"joe", b"../etc/passwd"));
        utmp.extend(record(b"joe", b""));
        utmp.extend(record(b"joe", b"tty1"));
        utmp.extend(&record(b"joe", b"pts/9")[..100]);
        assert_eq!(
            ttys(&utmp[..], b"joe"),
            [b"pts/3".to_vec(), b"tty1".to_vec()]
        );
        let long = [b'u'; 32];
        let utmp = record(&long, &[b'x'; 32]);
        assert_eq!(ttys(&utmp[..], &long), [vec![b'x'; 32]]);
        assert!(ttys(&utmp[..], &long[..31]).is_empty());
    }

    proptest! {
        #[test]
        fn user_match_is_strncmp(a in proptest::collection::vec(1u8..=255, 0..=32), b in proptest::collection::vec(1u8..=255, 0..=32)) {
            let mut field = [0u8; FIELD];
            field[..a.len()].copy_from_slice(&a);
            prop_assert_eq!(same_user(&field, &b), a == b);
        }

        #[test]
        fn notices_are_three_lines(local in proptest::collection::vec(any::<u8>(), 0..40), sender in proptest::collection::vec(any::<u8>(), 0..40), text in proptest::collection::vec(any::<u8>(), 0..78)) {
            let n = notice(&local, &sender, &text);
            prop_assert_eq!(n.iter().filter(|&&c| c == b'\n').count(), 3);
            prop_assert_eq!(n.iter().filter(|&&c| c == 7).count(), 1);
            prop_assert!(n.iter().all(|&c| (32..=126).contains(&c) || c == b'\r' || c == b'\n' || c == 7));
        }
    }
}
