//! Running the subprogram after USER/PASS or APOP, as netqmail's qmail-popup runs it
//! (the checkpassword interface, `control::spawn_checkpassword`): descriptor 0 reads
//! from the client, 1 and 2 write to it, descriptor 3 reads `user NUL password NUL
//! timestamp NUL`. qmail-popup waits for it as long as it runs: the whole POP3 session runs under
//! it (the checkpassword program becomes the user and runs qmail-pop3d).

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStringExt;

/// How the subprogram ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Exited(i32),
    /// Killed by a signal (netqmail's "aack, child crashed").
    Crashed,
}

/// Starts `argv` with its descriptors 0, 1 and 2 on `input`, `output` and `output`;
/// returns its pid and the write end of its descriptor 3.
pub(crate) fn spawn(
    argv: &[OsString],
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
) -> Result<(Pid, File), String> {
    let argv: Vec<Vec<u8>> = argv.iter().cloned().map(OsString::into_vec).collect();
    control::spawn_checkpassword(&argv, [input, output, output])
}

/// Waits for `pid` to end.
pub(crate) fn wait(pid: Pid) -> Outcome {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Outcome::Exited(code),
            Ok(WaitStatus::Signaled(..)) => return Outcome::Crashed,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Outcome::Crashed,
        }
    }
}
