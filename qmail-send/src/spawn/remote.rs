//! qmail-rspawn's part: run bin/qmail-remote for one recipient and turn its recipient and
//! message reports (qmail-remote(8)) into one delivery report.

use super::{Status, Step, args_too_long, error_temp, output_pipe, running};
use control::Exit;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The report when qmail-remote's arguments are too long for the kernel (netqmail's
/// qmail-rspawn reports `DUnable to run qmail-remote.` for the same failure).
pub const REMOTE_ARGS_TOO_LONG: &[u8] = b"DUnable to run qmail-remote: the sender or recipient \
is longer than a program argument may be (131071 bytes). (#5.1.0)\n";

/// The most of qmail-remote's output kept (netqmail keeps all of it; qmail-send cuts
/// reports at 10000 bytes anyway).
pub const OUTPUT_LIMIT: usize = 1024 * 1024;

fn cstr(s: &[u8]) -> &[u8] {
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    &s[..end]
}

/// netqmail's qmail-rspawn report(): the exit status and the output of qmail-remote, a
/// series of `\0`-terminated reports: recipient reports (`r` accepted, `h` permanently
/// rejected, `s` temporarily rejected) and then the message report (`K`, `Z`, `D`).
pub fn report(status: Status, s: &[u8]) -> Vec<u8> {
    match status {
        Status::Crashed => return b"Zqmail-remote crashed.\n".to_vec(),
        Status::Exited(Exit::OK) => {}
        Status::Exited(Exit::TEMP) => return b"ZUnable to run qmail-remote.\n".to_vec(),
        Status::Exited(_) => return b"DUnable to run qmail-remote.\n".to_vec(),
    }
    if s.is_empty() {
        return b"Zqmail-remote produced no output.\n".to_vec();
    }
    // The message report's verdict: 1 success, 0 temporary, -1 permanent or none.
    let mut result = -1;
    let mut j = 0;
    for k in 0..s.len() {
        if s[k] == 0 {
            match s[j] {
                b'K' => {
                    result = 1;
                    break;
                }
                b'Z' => {
                    result = 0;
                    break;
                }
                b'D' => break,
                _ => {}
            }
            j = k + 1;
        }
    }
    // The recipient report overrides: temporary or permanent rejection.
    let orr = match s[0] {
        b's' => 0,
        b'h' => -1,
        _ => result,
    };
    let mut out = vec![match orr {
        1 => b'K',
        0 => b'Z',
        _ => b'D',
    }];
    if let Some(p) = s[1..].iter().position(|&c| c == 0) {
        let k = p + 2;
        out.extend_from_slice(cstr(&s[1..]));
        if result <= orr && k < s.len() && matches!(s[k], b'Z' | b'D' | b'K') {
            out.extend_from_slice(cstr(&s[k + 1..]));
        }
    }
    out
}

/// The qmail-rspawn spawner.
#[derive(Debug)]
pub struct Remote {
    pub home: PathBuf,
    /// control/loglevel asks qmail-remote for more than its default level (read when
    /// qmail-rspawn starts): qmail-remote then gets qmail-rspawn's descriptor 2 (the log,
    /// under qmail-start) for its diagnostics, instead of a copy of its report pipe, where
    /// it writes none.
    pub verbose: bool,
}

/// Resets lock/tcpto (1024 zero bytes), as qmail-rspawn does when it starts. Run from
/// queue/mess.
pub fn tcpto_clean() {
    use std::io::Write;
    if let Ok(mut f) = control::open_write("../lock/tcpto") {
        let _ = f.write_all(&[0u8; 1024]);
    }
}

/// qmail-rspawn's confinement (qmail-rspawn(8), CONFINEMENT): no_new_privs only. Landlock
/// rules or a seccomp filter here would bind every qmail-remote it runs, which may be
/// netqmail's or a site's own; the rqmail qmail-remote confines itself.
pub fn confine() {
    let _ = control::confine::Policy::new().no_new_privs().apply();
}

impl super::Spawner for Remote {
    type Stage = ();

    fn start(&mut self, mess: File, sender: &[u8], recip: &[u8], at: usize) -> Step<()> {
        let Ok((r, w, w2)) = output_pipe() else {
            return Step::Done(b"ZUnable to run qmail-remote.\n".to_vec());
        };
        let prog = self.home.join("bin/qmail-remote");
        let mut c = Command::new(&prog);
        c.arg0("qmail-remote")
            .arg(OsStr::from_bytes(&recip[at + 1..]))
            .arg(OsStr::from_bytes(sender))
            .arg(OsStr::from_bytes(recip))
            .stdin(Stdio::from(mess))
            .stdout(Stdio::from(w));
        if self.verbose {
            c.stderr(Stdio::inherit());
        } else {
            c.stderr(Stdio::from(w2));
        }
        super::child_limits(&mut c);
        match c.spawn() {
            Ok(child) => Step::Run(running(child, r), ()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Step::Done(
                format!(
                    "ZUnable to run qmail-remote: {} does not exist. (#4.3.0)\n",
                    prog.display()
                )
                .into_bytes(),
            ),
            Err(e) if args_too_long(&e) => Step::Done(REMOTE_ARGS_TOO_LONG.to_vec()),
            Err(e) if error_temp(&e) => Step::Done(b"ZUnable to run qmail-remote.\n".to_vec()),
            Err(_) => Step::Done(b"DUnable to run qmail-remote.\n".to_vec()),
        }
    }

    fn finish(&mut self, _: (), status: Status, output: Vec<u8>, _: bool) -> Step<()> {
        Step::Done(report(status, &output))
    }

    fn output_limit(&self, _: &()) -> usize {
        OUTPUT_LIMIT
    }
}

/// The owner queue messages must have: qmailq when running as qmailr (qmail-start's root
/// mode) or as root; the invoking user in single-user mode.
pub fn message_owner() -> Result<u32, control::IdError> {
    use control::{IdError, uid_of};
    let me = nix::unistd::getuid();
    let root_mode = me.is_root() || uid_of("qmailr") == Some(me);
    if !root_mode {
        return Ok(me.as_raw());
    }
    uid_of("qmailq")
        .map(|u| u.as_raw())
        .ok_or(IdError::NoUser("qmailq"))
}

/// The qmail-rspawn program. Returns its exit code.
pub fn main() -> Exit {
    let Some(home) = super::enter_queue() else {
        return Exit::TEMP;
    };
    let uidq = match message_owner() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("qmail-rspawn: fatal: {e}");
            return Exit::TEMP;
        }
    };
    tcpto_clean();
    let wide = super::wide_max(super::raise_nofile());
    let (level, _) = control::diagnostics::choose_level("qmail-remote", &home, None);
    let verbose = level > control::diagnostics::LevelFilter::INFO;
    confine();
    super::Server::new(Remote { home, verbose }, uidq, wide).run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn translations() {
        let ok = b"r\0Kexample.com accepted message./Remote host said: 250 ok\n\0";
        assert_eq!(
            report(Status::Exited(Exit::OK), ok),
            b"Kexample.com accepted message./Remote host said: 250 ok\n"
        );
        // Recipient accepted: the text is the recipient report's (empty) then the
        // message report's.
        let rej = b"hSorry, no mailbox here by that name. (#5.1.1)\n\0DGiving up.\n\0";
        assert_eq!(
            report(Status::Exited(Exit::OK), rej),
            b"DSorry, no mailbox here by that name. (#5.1.1)\nGiving up.\n"
        );
        let soft = b"sTry again later.\n\0Kaccepted\0";
        assert_eq!(
            report(Status::Exited(Exit::OK), soft),
            b"ZTry again later.\n"
        );
        let conn = b"ZConnected to 1.2.3.4 but connection died. (#4.4.2)\n\0";
        assert_eq!(
            report(Status::Exited(Exit::OK), conn),
            b"ZConnected to 1.2.3.4 but connection died. (#4.4.2)\n"
        );
        assert_eq!(
            report(Status::Exited(Exit::OK), b""),
            b"Zqmail-remote produced no output.\n"
        );
        assert_eq!(report(Status::Crashed, b""), b"Zqmail-remote crashed.\n");
        assert_eq!(
            report(Status::Exited(Exit::TEMP), b""),
            b"ZUnable to run qmail-remote.\n"
        );
        assert_eq!(
            report(Status::Exited(Exit::from_status(1)), b""),
            b"DUnable to run qmail-remote.\n"
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in proptest::collection::vec(any::<u8>(), 0..300)) {
            let r = report(Status::Exited(Exit::OK), &s);
            prop_assert!(matches!(r[0], b'K' | b'Z' | b'D'));
        }
    }
}
