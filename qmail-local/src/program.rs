//! `|command` deliveries (qmail-command(8)): `/bin/sh -c command` in the home directory,
//! the message on standard input from its first byte, the report descriptors shared, and
//! the environment of qmail-command(8).
//!
//! Addresses reach the command only through environment variables, never inside the
//! command line; the command line is the user's own text from the .qmail file.

use control::Exit;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use crate::fail::{Fail, cat};
use control::describe_error as error_str;

/// What a command's exit means (qmail-command(8)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: delivered.
    Delivered,
    /// 99: delivered; ignore the rest of the .qmail file.
    DeliveredStop,
    /// 100, sysexits' 64, 65, 70, 76, 77, 78, and 112: permanent failure.
    Bounce,
    /// Anything else: temporary failure.
    Defer,
}

/// netqmail's reading of a command's exit code.
pub fn outcome(code: Exit) -> Outcome {
    match code {
        Exit::OK => Outcome::Delivered,
        Exit::DELIVERED_STOP => Outcome::DeliveredStop,
        Exit::PERM
        | Exit::EX_USAGE
        | Exit::EX_DATAERR
        | Exit::EX_SOFTWARE
        | Exit::EX_PROTOCOL
        | Exit::EX_NOPERM
        | Exit::EX_CONFIG
        | Exit::QLX_USAGE => Outcome::Bounce,
        _ => Outcome::Defer,
    }
}

/// Runs `command` with `env` added to the inherited environment (and `DEFAULT` removed
/// unless `env` sets it). Standard input, output and error are inherited: the caller has
/// rewound standard input.
pub fn run(command: &[u8], env: &[(OsString, OsString)]) -> Result<Outcome, Fail> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(OsStr::from_bytes(command))
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    if !env.iter().any(|(k, _)| k == "DEFAULT") {
        cmd.env_remove("DEFAULT");
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().map_err(|e| {
        let what: &[u8] = match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::ENOMEM) => b"Unable to fork: ",
            _ => b"Unable to run /bin/sh: ",
        };
        Fail::temp(cat(&[what, error_str(&e).as_bytes(), b". (#4.3.0)"]))
    })?;
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Fail::temp("Aack, child crashed. (#4.3.0)")),
        }
    };
    match status.code() {
        Some(c) => Ok(outcome(Exit::from_status(c))),
        None => {
            let _ = status.signal();
            Err(Fail::temp("Aack, child crashed. (#4.3.0)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let o = |c| outcome(Exit::from_status(c));
        assert_eq!(o(0), Outcome::Delivered);
        assert_eq!(o(99), Outcome::DeliveredStop);
        for c in [100, 64, 65, 70, 76, 77, 78, 112] {
            assert_eq!(o(c), Outcome::Bounce);
        }
        for c in [1, 2, 111, 101, 126, 127, 255] {
            assert_eq!(o(c), Outcome::Defer);
        }
    }

    #[test]
    fn environment_reaches_the_command_unquoted() {
        let env = vec![(OsString::from("EXT"), OsString::from("$(exit 100);`x`"))];
        // The value is data, not code: the command sees it literally.
        assert_eq!(
            run(b"test \"$EXT\" = '$(exit 100);`x`'", &env).unwrap(),
            Outcome::Delivered
        );
        assert_eq!(run(b"exit 99", &env).unwrap(), Outcome::DeliveredStop);
        assert_eq!(run(b"exit 77", &env).unwrap(), Outcome::Bounce);
        assert_eq!(run(b"exit 3", &env).unwrap(), Outcome::Defer);
        assert_eq!(
            run(b"kill -9 $$", &env),
            Err(Fail::temp("Aack, child crashed. (#4.3.0)"))
        );
    }
}
