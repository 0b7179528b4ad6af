//! Running the checkpassword program for SMTP AUTH (the checkpassword interface): the
//! program gets `user NUL password NUL timestamp NUL` on descriptor 3, exits 0 when they
//! are right (after running its own subprogram), 1 (or anything else) when they are
//! wrong, and 111 for a temporary problem.
//!
//! The program runs with this process's ids and environment, descriptors 0 and 1 on
//! /dev/null (never the client's connection), descriptor 2 as ours when that is private
//! (see [`crate::log`]), default signal handling, and at most the session's timeout;
//! after that it is killed and the attempt counts as a temporary failure.

use crate::auth::Credentials;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exit code 0.
    Accepted,
    /// Any other exit code except 111.
    Rejected,
    /// Exit code 111: the program could not decide.
    TempFail,
    /// It crashed, or was killed after the timeout.
    Crashed,
    /// It could not be started (a pipe, /dev/null or the program itself).
    NoStart(String),
}

/// Runs `argv` (a program name without `/` is looked up in PATH) with `creds` on
/// descriptor 3 and waits at most `timeout` for it.
pub fn check(
    argv: &[Vec<u8>],
    creds: &Credentials,
    timeout: Duration,
    keep_stderr: bool,
) -> Verdict {
    match spawn(argv, keep_stderr) {
        Err(e) => Verdict::NoStart(e),
        Ok((pid, mut w)) => {
            let mut data = creds.fd3();
            // A program that exits without reading gives EPIPE here; its exit code decides.
            let _ = w.write_all(&data);
            data.fill(0);
            std::hint::black_box(&data);
            drop(w);
            wait(pid, timeout)
        }
    }
}

fn spawn(argv: &[Vec<u8>], keep_stderr: bool) -> Result<(nix::unistd::Pid, std::fs::File), String> {
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("unable to open /dev/null: {e}"))?;
    let stderr = std::io::stderr();
    let fd2 = if keep_stderr {
        stderr.as_fd()
    } else {
        devnull.as_fd()
    };
    control::spawn_checkpassword(argv, [devnull.as_fd(), devnull.as_fd(), fd2])
}

fn wait(pid: nix::unistd::Pid, timeout: Duration) -> Verdict {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => {
                return match control::Exit::from_status(c) {
                    control::Exit::OK => Verdict::Accepted,
                    control::Exit::TEMP => Verdict::TempFail,
                    _ => Verdict::Rejected,
                };
            }
            Ok(WaitStatus::Signaled(..)) => return Verdict::Crashed,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Verdict::Crashed,
        }
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Verdict::Crashed;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            user: b"joe".to_vec(),
            pass: b"secret".to_vec(),
            timestamp: b"<1.2@h>".to_vec(),
        }
    }

    fn sh(script: &str) -> Vec<Vec<u8>> {
        vec![
            b"/bin/sh".to_vec(),
            b"-c".to_vec(),
            script.as_bytes().to_vec(),
            b"checkpw".to_vec(),
        ]
    }

    #[test]
    fn reads_descriptor_3_and_exit_codes_decide() {
        let t = Duration::from_secs(30);
        // fd 3 holds exactly the three fields; stdin and stdout are /dev/null.
        let ok = sh(
            "test \"$(od -An -c <&3 | tr -d ' \\n')\" = 'joe\\0secret\\0<1.2@h>\\0' && test ! -s /dev/stdin",
        );
        assert_eq!(check(&ok, &creds(), t, false), Verdict::Accepted);
        assert_eq!(check(&sh("exit 1"), &creds(), t, false), Verdict::Rejected);
        assert_eq!(check(&sh("exit 2"), &creds(), t, false), Verdict::Rejected);
        assert_eq!(
            check(&sh("exit 111"), &creds(), t, false),
            Verdict::TempFail
        );
        assert_eq!(
            check(&sh("kill -9 $$"), &creds(), t, false),
            Verdict::Crashed
        );
        // found in PATH
        assert_eq!(
            check(&[b"true".to_vec()], &creds(), t, false),
            Verdict::Accepted
        );
        assert_eq!(
            check(&[b"false".to_vec()], &creds(), t, false),
            Verdict::Rejected
        );
        assert!(matches!(
            check(
                &[b"/nonexistent/checkpassword".to_vec()],
                &creds(),
                t,
                false
            ),
            Verdict::NoStart(_)
        ));
        assert!(matches!(
            check(&[], &creds(), t, false),
            Verdict::NoStart(_)
        ));
    }

    #[test]
    fn a_hanging_program_is_killed() {
        let v = check(
            &sh("exec sleep 60"),
            &creds(),
            Duration::from_millis(200),
            false,
        );
        assert_eq!(v, Verdict::Crashed);
    }
}
