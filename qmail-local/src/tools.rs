//! What the mail readers' tools (maildir2mbox, maildirwatch, qbiff, qreceipt) share:
//! netqmail's fatal messages and its reading of `$MAILDIR`.

use std::os::unix::ffi::OsStrExt;

use control::Exit;

use crate::fail::warn;

/// Writes `prog: fatal: text` on standard error; the exit code is 111, as netqmail's
/// strerr_die uses for every fatal error of these programs.
pub fn fatal(prog: &str, text: &[u8]) -> Exit {
    warn(&[prog.as_bytes(), b": fatal: ", text].concat());
    Exit::TEMP
}

/// `text` followed by the system's description of `e` (netqmail's strerr_sys).
pub fn sys(text: &[&[u8]], e: &std::io::Error) -> Vec<u8> {
    let mut v = text.concat();
    v.extend_from_slice(control::describe_error(e).as_bytes());
    v
}

/// Enters the Maildir named by `$MAILDIR` (netqmail's maildir_chdir); the error is
/// netqmail's text.
pub fn chdir_maildir() -> Result<(), Vec<u8>> {
    let Some(dir) = std::env::var_os("MAILDIR") else {
        return Err(b"MAILDIR not set".to_vec());
    };
    std::env::set_current_dir(&dir)
        .map_err(|e| sys(&[b"unable to chdir to ", dir.as_bytes(), b": "], &e))
}

/// The current time in seconds, as the Maildir scan compares it.
pub fn now() -> i64 {
    i64::try_from(control::now()).unwrap_or(i64::MAX)
}
