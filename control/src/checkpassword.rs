//! Starting a checkpassword program (the checkpassword interface, as qmail-smtpd's SMTP
//! AUTH and qmail-popup use it): the program reads `user NUL password NUL timestamp
//! NUL` on descriptor 3, exits 0 when they are right (after running its own
//! subprogram), 1 when they are wrong, 111 for a temporary problem.
//!
//! The program inherits this process's environment, gets every signal at its default
//! action and none blocked, and is looked up in PATH when its name has no `/`.

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::spawn::{
    PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn, posix_spawnp,
};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

/// Starts `argv` with descriptors 0, 1 and 2 on `stdio` and descriptor 3 on a new pipe;
/// returns the program's pid and the pipe's write end (close-on-exec), where the caller
/// writes the three fields. An error says what failed, for the log.
pub fn spawn(argv: &[Vec<u8>], stdio: [BorrowedFd<'_>; 3]) -> Result<(Pid, File), String> {
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_slice()).map_err(|_| "argument with a NUL byte".to_string()))
        .collect::<Result<_, _>>()?;
    let Some(prog) = args.first() else {
        return Err("no checkpassword program".into());
    };
    let (r, w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("unable to open pipe: {e}"))?;
    let err = |e: nix::Error| format!("unable to set up checkpassword: {e}");
    let mut fa = PosixSpawnFileActions::init().map_err(err)?;
    // In order: 0, 1 and 2 are set before 3 is (one of them may be descriptor 3 now).
    for (target, fd) in (0..).zip(stdio.into_iter().chain([r.as_fd()])) {
        if fd.as_raw_fd() == target {
            // dup2 onto itself would keep close-on-exec: clear it instead (this
            // process runs one such program at a time).
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(err)?;
        } else {
            fa.add_dup2(fd.as_raw_fd(), target).map_err(err)?;
        }
    }
    let mut attr = PosixSpawnAttr::init().map_err(err)?;
    let mut all = SigSet::all();
    all.remove(Signal::SIGKILL);
    all.remove(Signal::SIGSTOP);
    attr.set_sigdefault(&all).map_err(err)?;
    attr.set_sigmask(&SigSet::empty()).map_err(err)?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK,
    )
    .map_err(err)?;
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut e = k.as_bytes().to_vec();
            e.push(b'=');
            e.extend_from_slice(v.as_bytes());
            CString::new(e).ok()
        })
        .collect();
    let spawned = if prog.as_bytes().contains(&b'/') {
        posix_spawn(prog.as_c_str(), &fa, &attr, &args, &env)
    } else {
        posix_spawnp(prog.as_c_str(), &fa, &attr, &args, &env)
    };
    drop(r);
    let pid = spawned.map_err(|e| format!("unable to run {}: {e}", prog.to_string_lossy()))?;
    Ok((pid, File::from(w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn sh(script: &str) -> Vec<Vec<u8>> {
        ["/bin/sh", "-c", script, "checkpw"]
            .map(|a| a.as_bytes().to_vec())
            .to_vec()
    }

    fn status(pid: Pid) -> nix::sys::wait::WaitStatus {
        nix::sys::wait::waitpid(pid, None).unwrap()
    }

    #[test]
    fn descriptors_and_fields() {
        let (mut r, w) = std::io::pipe().unwrap();
        let null = File::open("/dev/null").unwrap();
        // 0 from /dev/null, 1 and 2 into the pipe, 3 the fields
        let (pid, mut fd3) = spawn(
            &sh("cat <&3; echo err >&2; test ! -s /dev/stdin"),
            [null.as_fd(), w.as_fd(), w.as_fd()],
        )
        .unwrap();
        drop(w);
        fd3.write_all(b"joe\0pw\0<1@h>\0").unwrap();
        drop(fd3);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"joe\0pw\0<1@h>\0err\n");
        assert_eq!(status(pid), nix::sys::wait::WaitStatus::Exited(pid, 0));

        let stdio = [null.as_fd(), null.as_fd(), null.as_fd()];
        let (pid, _) = spawn(&[b"false".to_vec()], stdio).unwrap();
        assert_eq!(status(pid), nix::sys::wait::WaitStatus::Exited(pid, 1));
        assert!(spawn(&[b"/nonexistent/checkpw".to_vec()], stdio).is_err());
        assert!(spawn(&[], stdio).is_err());
        assert!(spawn(&[b"a\0b".to_vec()], stdio).is_err());
    }
}
