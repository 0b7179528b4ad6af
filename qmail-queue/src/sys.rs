//! The one place in this crate that uses `unsafe`: qmail-queue's 24-hour alarm, the custom
//! error descriptor a queue program gets, and its reads of the message into a buffer that
//! is not zeroed first.
//!
//! netqmail's qmail-queue calls alarm(86400) and exits 52 from its SIGALRM handler,
//! without cleaning up (the main flow may be halfway through a step; qmail-send removes
//! what is left after 36 hours). rqmail does the same: no thread, one system call.

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

extern "C" fn on_alarm(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe and ends the process at once; nothing else runs.
    unsafe { libc::_exit(control::Exit::QQ_TIMEOUT.code()) }
}

/// Makes SIGALRM end the process with exit code 52 and sets the alarm `secs` from now
/// (also used by qmail-queue front ends such as qmail-dkim, which must cancel it before
/// they exec the next program).
pub fn arm_death_alarm(secs: u64) {
    let action = SigAction::new(
        SigHandler::Handler(on_alarm),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only calls _exit (async-signal-safe) and touches no state, so it
    // is sound whenever it interrupts the program; nothing else in qmail-queue handles
    // SIGALRM.
    let _ = unsafe { sigaction(Signal::SIGALRM, &action) };
    nix::unistd::alarm::set(u32::try_from(secs).unwrap_or(u32::MAX));
}

/// Makes `fd` descriptor `target` of `cmd`'s child (without close-on-exec) just before
/// exec; the parent's `fd` is closed when `cmd` is dropped. If that fails the child exits
/// 81 (qmail-queue's internal bug) without running anything.
pub fn on_exec_move_fd(cmd: &mut std::process::Command, fd: std::os::fd::OwnedFd, target: i32) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    let fail = control::Exit::QQ_BUG.code();
    // SAFETY: the closure runs in the child between fork and exec and calls only dup2,
    // fcntl and _exit (async-signal-safe) on descriptor numbers copied into it; it
    // allocates nothing. `fd` is moved into the closure, so it stays open in the parent
    // until the Command is dropped, which is after the fork.
    unsafe {
        cmd.pre_exec(move || {
            let keep = &fd;
            let _ = keep;
            if raw == target {
                if libc::fcntl(target, libc::F_SETFD, 0) == -1 {
                    libc::_exit(fail);
                }
            } else if libc::dup2(raw, target) == -1 {
                libc::_exit(fail);
            }
            Ok(())
        });
    }
}

/// Reads from `fd` into the spare capacity of `buf` (at most that much) and adds what was
/// read to its length; 0 at end of input (or when `buf` has no spare capacity). The
/// buffer is not zeroed first: qmail-queue's message buffer is filled by the kernel only.
pub fn read_spare(fd: std::os::fd::BorrowedFd<'_>, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let spare = buf.spare_capacity_mut();
    // SAFETY: the pointer and length describe `spare`, memory owned by `buf` and valid for
    // writes of `spare.len()` bytes; read(2) writes at most that many and nothing else.
    let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    // SAFETY: read(2) initialized the first `n` bytes of the spare capacity (n is at most
    // its length), so the new length covers initialized bytes only.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}
