//! Recipient validation at RCPT time (off unless configured), so that mail for a
//! mailbox that does not exist is refused during the session instead of bounced later.
//!
//! Two checks, each enabled on its own; a recipient is refused only when every enabled
//! check that applies to it says it is unknown:
//!
//! * `control/validrcptto.cdb` (the convention of the validrcptto.cdb patch): keys are
//!   addresses in lower case; a key `@domain` accepts every address in that domain. It
//!   applies to every recipient that is not relayed.
//! * `control/checklocalrcpt` holding a number other than 0: for recipients that
//!   qmail-send would deliver locally (control/locals and control/virtualdomains, after
//!   envnoathost and percenthack, as qmail-send rewrites them: [`recipient::rewrite`]),
//!   the delivery is traced the way qmail-lspawn and qmail-local would do it, with their
//!   own rules ([`recipient::deliverable`]): users/cdb, else the answer of
//!   `bin/qmail-getpw` itself, run with this process's ids as qmail-lspawn runs it (so
//!   validation and delivery agree on the user, and this program never looks up
//!   arbitrary users: it is linked statically), then the home directory and the `.qmail`
//!   files (including `-default` ones) when the address carries an extension. Only file
//!   names are looked at (never the contents), with this process's own ids. Whenever
//!   delivery would be deferred after qmail-getpw's answer, or the answer cannot be
//!   known from here (a directory this user may not search), the recipient is accepted:
//!   the check refuses only what qmail-local would bounce for want of a mailbox. When
//!   qmail-getpw itself gives no answer (it cannot be run, exits with an error such as
//!   "no alias user", crashes, or runs past control/timeoutsmtpd), the recipient gets a
//!   temporary error (451): it can be neither accepted nor refused for sure.
//!
//! `postmaster@` and `abuse@` (any case, any domain) are always accepted, and so is a
//! recipient that is relayed (RELAYCLIENT, or SMTP AUTH).

use control::Cdb;
use recipient::{Assignment, Channel, Route};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The control file with the list of valid recipients.
pub const VALIDRCPTTO: &str = "control/validrcptto.cdb";

/// The most of qmail-getpw's answer that is read (qmail-lspawn's bound).
pub const GETPW_LIMIT: usize = 64 * 1024;

/// What to say about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// 550: no such mailbox.
    Unknown,
    /// 451: the answer cannot be known now (qmail-getpw could not be run, failed or
    /// gave no usable answer); the reason, for the log.
    TempFail(String),
}

/// The local-delivery trace.
#[derive(Debug)]
pub struct LocalCheck {
    /// The qmail home (for users/cdb and bin/qmail-getpw).
    pub home: PathBuf,
    /// qmail-lspawn runs deliveries under the users' ids (root mode: this process runs
    /// as root or as qmaild), where it refuses uid 0.
    pub switch_ids: bool,
    /// The longest qmail-getpw may take (control/timeoutsmtpd).
    pub timeout: Duration,
}

impl LocalCheck {
    /// The check for this process: root mode when it runs as root or as qmaild, as
    /// qmail-getpw decides for itself.
    pub fn for_this_process(home: &Path, timeout: Duration) -> LocalCheck {
        let uid = nix::unistd::getuid();
        LocalCheck {
            home: home.to_path_buf(),
            switch_ids: nix::unistd::geteuid().is_root() || control::uid_of("qmaild") == Some(uid),
            timeout,
        }
    }
}

/// The configured checks.
#[derive(Debug)]
pub struct RcptCheck {
    pub validrcptto: Option<Cdb>,
    pub local: Option<LocalCheck>,
    /// How qmail-send routes recipients (locals, virtualdomains, percenthack,
    /// envnoathost).
    pub route: Route,
}

impl RcptCheck {
    /// Reads the configuration: `Ok(None)` when neither check is enabled. Any control file
    /// that exists but cannot be read is an error.
    /// `timeout` bounds each run of qmail-getpw.
    pub fn load(
        home: &Path,
        c: &control::Controls,
        timeout: Duration,
    ) -> io::Result<Option<RcptCheck>> {
        let validrcptto = Cdb::open_optional(&home.join(VALIDRCPTTO))?;
        let local = (c.int_or("checklocalrcpt", 0)? != 0)
            .then(|| LocalCheck::for_this_process(home, timeout));
        if validrcptto.is_none() && local.is_none() {
            return Ok(None);
        }
        Ok(Some(RcptCheck {
            validrcptto,
            local,
            route: Route::load(c).map_err(|e| e.error)?,
        }))
    }

    /// The verdict for `rcpt` (as given in RCPT, after the local-IP rewrite). An error is
    /// a validrcptto.cdb that cannot be read.
    pub fn check(&self, rcpt: &[u8]) -> io::Result<Verdict> {
        if always_accepted(rcpt) {
            return Ok(Verdict::Accept);
        }
        let mut applies = false;
        if let Some(db) = &self.validrcptto {
            applies = true;
            if in_validrcptto(db, rcpt)? {
                return Ok(Verdict::Accept);
            }
        }
        if let Some(l) = &self.local {
            let (channel, addr) = recipient::rewrite(&self.route, rcpt);
            if channel == Channel::Local {
                applies = true;
                match local_deliverable(l, &addr) {
                    Ok(true) => return Ok(Verdict::Accept),
                    Ok(false) => {}
                    Err(why) => return Ok(Verdict::TempFail(why)),
                }
            }
        }
        Ok(if applies {
            Verdict::Unknown
        } else {
            Verdict::Accept
        })
    }
}

/// postmaster@ and abuse@ of any domain, and the bare names.
pub fn always_accepted(rcpt: &[u8]) -> bool {
    let local = match rcpt.iter().rposition(|&c| c == b'@') {
        Some(at) => &rcpt[..at],
        None => rcpt,
    };
    local.eq_ignore_ascii_case(b"postmaster") || local.eq_ignore_ascii_case(b"abuse")
}

/// The address, or `@domain`, is a key of the cdb (in lower case).
pub fn in_validrcptto(db: &Cdb, rcpt: &[u8]) -> io::Result<bool> {
    let lower = rcpt.to_ascii_lowercase();
    if db.contains(&lower)? {
        return Ok(true);
    }
    match lower.iter().rposition(|&c| c == b'@') {
        Some(at) => db.contains(&lower[at..]),
        None => Ok(false),
    }
}

/// What local delivery would do with `addr` (`local@domain` after qmail-send's
/// rewriting): false only when qmail-local would bounce it for want of a mailbox; an
/// error (why) when qmail-getpw gave no answer.
pub fn local_deliverable(l: &LocalCheck, addr: &[u8]) -> Result<bool, String> {
    let at = addr.iter().rposition(|&c| c == b'@').unwrap_or(addr.len());
    recipient::deliverable(&l.home, &addr[..at], l.switch_ids, |local| {
        run_getpw(&l.home, local, l.timeout)
    })
}

/// Runs `bin/qmail-getpw local` in the qmail home `home` with this process's ids and
/// environment (descriptor 0 and 2 on /dev/null), as qmail-lspawn runs it, and reads its
/// six fields ([`Assignment::parse`]). An error, with the reason, when it cannot be
/// started, is still running after `timeout` (it is then killed), exits other than 0,
/// or prints something that is not six fields.
pub fn run_getpw(home: &Path, local: &[u8], timeout: Duration) -> Result<Assignment, String> {
    let deadline = Instant::now() + timeout;
    let mut child = Command::new(home.join("bin/qmail-getpw"))
        .arg0("bin/qmail-getpw")
        .arg(OsStr::from_bytes(local))
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("unable to run qmail-getpw: {e}"))?;
    let out = child.stdout.take().map(|o| read_bounded(o, deadline));
    // qmail-getpw has closed its output, so it is exiting: look again after 50 us, then
    // after twice as long each time, at most 1 ms, until the deadline.
    let mut pause = Duration::from_micros(50);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(1));
            }
            Ok(None) => break Err("qmail-getpw timed out".to_string()),
            Err(e) => break Err(format!("unable to wait for qmail-getpw: {e}")),
        }
    };
    let status = status.inspect_err(|_| {
        let _ = child.kill();
        let _ = child.wait();
    })?;
    let out = match out {
        Some(Ok(o)) => o,
        Some(Err(e)) => return Err(format!("unable to read qmail-getpw's answer: {e}")),
        None => return Err("qmail-getpw's output was not a pipe".to_string()),
    };
    match status.code() {
        Some(0) => {}
        Some(c) => return Err(format!("qmail-getpw exited {c}")),
        None => return Err("qmail-getpw crashed".to_string()),
    }
    Assignment::parse(&out).ok_or_else(|| "qmail-getpw's answer is not six fields".to_string())
}

/// Reads `r` until end of input, at most [`GETPW_LIMIT`] bytes kept, until `deadline`.
fn read_bounded(mut r: std::process::ChildStdout, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        qmail_tls::wait_ready(r.as_fd(), nix::poll::PollFlags::POLLIN, left)?;
        match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                let keep = n.min(GETPW_LIMIT - out.len());
                out.extend_from_slice(&buf[..keep]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_with_getpw(script: &str) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("bin")).unwrap();
        let p = d.path().join("bin/qmail-getpw");
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn qmail_getpw_answers_and_failures() {
        let t = Duration::from_secs(30);
        // Its argument, and the six fields back.
        let d = home_with_getpw(r#"printf '%s\0' joe 500 100 /home/joe - "${1#joe-}""#);
        let a = run_getpw(d.path(), b"joe-Lists", t).unwrap();
        assert_eq!((a.user, a.uid, a.gid), (b"joe".to_vec(), 500, 100));
        assert_eq!(
            (a.home, a.dash, a.ext),
            (b"/home/joe".to_vec(), b"-".to_vec(), b"Lists".to_vec())
        );
        // A temporary failure (no alias user), a crash, an answer cut short, nothing to run.
        let d = home_with_getpw("exit 116");
        assert_eq!(
            run_getpw(d.path(), b"x", t).unwrap_err(),
            "qmail-getpw exited 116"
        );
        let d = home_with_getpw("kill -9 $$");
        assert_eq!(
            run_getpw(d.path(), b"x", t).unwrap_err(),
            "qmail-getpw crashed"
        );
        let d = home_with_getpw(r"printf '%s\0' joe 500");
        assert_eq!(
            run_getpw(d.path(), b"x", t).unwrap_err(),
            "qmail-getpw's answer is not six fields"
        );
        let d = tempfile::tempdir().unwrap();
        assert!(
            run_getpw(d.path(), b"x", t)
                .unwrap_err()
                .starts_with("unable to run qmail-getpw")
        );
        // One that hangs is killed after the timeout.
        let d = home_with_getpw("exec sleep 60");
        let started = std::time::Instant::now();
        assert_eq!(
            run_getpw(d.path(), b"x", Duration::from_millis(200)).unwrap_err(),
            "qmail-getpw timed out"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        // An endless answer is read to its end, but only GETPW_LIMIT bytes are kept.
        let d = home_with_getpw(r"head -c 200000 /dev/zero");
        let a = run_getpw(d.path(), b"x", t).unwrap();
        assert_eq!(a.user, b"");
    }

    #[test]
    fn validrcptto_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.cdb");
        control::write_cdb(
            &p,
            &d.path().join("v.tmp"),
            [(&b"joe@a.example"[..], &b""[..]), (b"@b.example", b"")],
        )
        .unwrap();
        let db = Cdb::open_optional(&p).unwrap().unwrap();
        assert!(in_validrcptto(&db, b"Joe@A.Example").unwrap());
        assert!(!in_validrcptto(&db, b"bill@a.example").unwrap());
        assert!(in_validrcptto(&db, b"anyone@B.example").unwrap());
        assert!(!in_validrcptto(&db, b"joe").unwrap());
        assert!(always_accepted(b"PostMaster@x.example"));
        assert!(always_accepted(b"abuse"));
        assert!(!always_accepted(b"postmasterx@y"));
    }
}
