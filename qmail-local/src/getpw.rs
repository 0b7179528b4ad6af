//! qmail-getpw: which user controls a local address (qmail-getpw(8)), by the rules of
//! [`recipient::getpw`].

use control::Exit;
use recipient::{SingleUserAccounts, SystemAccounts, getpw, getpw_root_mode};
use std::io::Write;
use std::os::unix::ffi::OsStringExt;

/// The whole program.
pub fn main() -> Exit {
    let Some(local) = std::env::args_os().nth(1) else {
        return Exit::PERM;
    };
    let local = local.into_vec();
    let found = if getpw_root_mode() {
        getpw(&SystemAccounts, &local)
    } else {
        getpw(&SingleUserAccounts::from_process(), &local)
    };
    match found {
        Ok(f) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(&f.fields())
                .and_then(|()| out.flush())
                .is_err()
            {
                return Exit::TEMP;
            }
            Exit::OK
        }
        Err(e) => e,
    }
}
