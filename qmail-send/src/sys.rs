//! The one module of this crate that calls into libc without a safe wrapper: taking the
//! descriptors qmail-start hands over, placing descriptors at fixed numbers, and fork.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of descriptor `fd`, which the process inherited from its parent as part
/// of a documented descriptor protocol (qmail-send's descriptors 1 to 6). Returns `None`
/// when the descriptor is not open.
pub fn inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    // F_GETFD only asks whether the descriptor is open; it changes nothing.
    let open = nix::fcntl::fcntl(
        // SAFETY: borrow_raw only needs `fd` to stay open for the duration of the call;
        // fcntl(F_GETFD) on a closed descriptor simply fails with EBADF.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .is_ok();
    if !open {
        return None;
    }
    // SAFETY: the descriptor is open, and by the protocol with our parent nothing else in
    // this process uses or owns it; it is taken exactly once, at startup.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes descriptor `to` a copy of `from` (netqmail's fd_copy). Used only in a child
/// between fork and exec, or at startup before any other descriptor is in use.
pub fn dup_to(from: RawFd, to: RawFd) -> std::io::Result<()> {
    if from == to {
        return Ok(());
    }
    // SAFETY: dup2 works on plain integers; the caller owns the descriptor numbers it
    // names (they are the fixed numbers of qmail's descriptor protocols).
    let r = unsafe { libc::dup2(from, to) };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Closes descriptor `fd` if it is open (errors ignored).
pub fn close_raw(fd: RawFd) {
    // SAFETY: closing a descriptor number this process is arranging for its child; no
    // Rust object in the child refers to it any more.
    unsafe {
        libc::close(fd);
    }
}

/// What fork returned.
pub enum Forked {
    Child,
    Parent,
}

/// fork(2). Only called from single-threaded programs (qmail-start), whose child then
/// arranges descriptors and ids and execs.
pub fn fork() -> std::io::Result<Forked> {
    // SAFETY: the callers are single-threaded processes, so the child inherits no lock
    // held by another thread and may allocate freely before it execs.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Ok(nix::unistd::ForkResult::Parent { .. }) => Ok(Forked::Parent),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// Restores the default disposition of SIGPIPE (Rust's runtime ignores it, and an ignored
/// signal stays ignored across exec) and unblocks every signal: the state netqmail's
/// programs hand to the programs they exec.
pub fn reset_signals_for_exec() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    // SAFETY: SIG_DFL installs no handler code; changing a disposition to the default is
    // always sound.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// The local time of `secs` since the epoch as (month 0-11, day, hour, minute, second),
/// for syslog's timestamp.
pub fn local_time(secs: i64) -> Option<(usize, i32, i32, i32, i32)> {
    let t: libc::time_t = secs;
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live, properly aligned locals for the whole call;
    // localtime_r writes only into `tm` and is thread-safe.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some((
        usize::try_from(tm.tm_mon).ok()?,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    ))
}

/// Makes `cmd`'s child set its descriptor limit to (`soft`, `hard`) just before exec:
/// the spawns raise their own limit to run many deliveries, but the programs they run get
/// the limit the spawn was started with.
pub fn on_exec_set_nofile(cmd: &mut std::process::Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: the closure runs in the child between fork and exec. It only calls
    // setrlimit, which is async-signal-safe, on a value copied into the closure, and
    // allocates nothing (last_os_error builds an error from errno without allocating).
    unsafe {
        cmd.pre_exec(move || {
            // Lowering a soft limit cannot fail; if it did, the child keeps the raised one.
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
}

/// Makes `cmd`'s child take group `gid` (as its only group) and user `uid` just before
/// exec, as netqmail's prot_gid and prot_uid do. If that fails the child exits with
/// `fail_code` without running anything.
pub fn on_exec_become(
    cmd: &mut std::process::Command,
    uid: u32,
    gid: u32,
    fail_code: control::Exit,
) {
    let fail_code = fail_code.code();
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // setgroups, setgid, setuid and _exit, which are async-signal-safe, with values
    // copied into it; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let groups = [gid as libc::gid_t];
            if libc::setgroups(1, groups.as_ptr()) == -1
                || libc::setgid(gid) == -1
                || libc::setuid(uid) == -1
            {
                libc::_exit(fail_code);
            }
            Ok(())
        });
    }
}
