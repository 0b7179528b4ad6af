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
//!   own rules ([`recipient::deliverable`]): users/cdb, else the accounts as qmail-getpw
//!   sees them (with the alias user for everything else), then the home directory and
//!   the `.qmail` files (including `-default` ones) when the address carries an
//!   extension. Only file names are looked at (never the contents), with this process's
//!   own ids. Whenever delivery would be deferred, or the answer cannot be known (a
//!   directory this user may not search, a temporary error, no alias user), the
//!   recipient is accepted: the check refuses only what qmail-local would bounce for
//!   want of a mailbox.
//!
//! `postmaster@` and `abuse@` (any case, any domain) are always accepted, and so is a
//! recipient that is relayed (RELAYCLIENT, or SMTP AUTH).

use control::Cdb;
use control::Exit;
use recipient::{Accounts, Channel, Pw, Route, SingleUserAccounts, SystemAccounts};
use std::io;
use std::path::{Path, PathBuf};

/// The control file with the list of valid recipients.
pub const VALIDRCPTTO: &str = "control/validrcptto.cdb";

/// What to say about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// 550: no such mailbox.
    Unknown,
}

/// Where accounts come from: the system's (root mode, or running as qmaild) or
/// single-user mode's, as qmail-getpw decides.
#[derive(Debug)]
pub enum Accts {
    System(SystemAccounts),
    Single(SingleUserAccounts),
}

impl Accts {
    /// The accounts qmail-getpw would see in this installation: the system's when this
    /// process runs as root or as qmaild (root mode), else single-user mode's.
    pub fn for_this_process() -> Accts {
        let uid = nix::unistd::getuid();
        if nix::unistd::geteuid().is_root() || control::uid_of("qmaild") == Some(uid) {
            Accts::System(SystemAccounts)
        } else {
            Accts::Single(SingleUserAccounts::from_process())
        }
    }
}

impl Accounts for Accts {
    fn getpwnam(&self, name: &[u8]) -> Result<Option<Pw>, Exit> {
        match self {
            Accts::System(a) => a.getpwnam(name),
            Accts::Single(a) => a.getpwnam(name),
        }
    }
    fn owner(&self, dir: &[u8]) -> Result<Option<u32>, Exit> {
        match self {
            Accts::System(a) => a.owner(dir),
            Accts::Single(a) => a.owner(dir),
        }
    }
}

/// The local-delivery trace.
#[derive(Debug)]
pub struct LocalCheck {
    /// The qmail home (for users/cdb).
    pub home: PathBuf,
    pub accounts: Accts,
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
    pub fn load(home: &Path, c: &control::Controls) -> io::Result<Option<RcptCheck>> {
        let validrcptto = Cdb::open_optional(&home.join(VALIDRCPTTO))?;
        let local = (c.int_or("checklocalrcpt", 0)? != 0).then(|| LocalCheck {
            home: home.to_path_buf(),
            accounts: Accts::for_this_process(),
        });
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
                if local_deliverable(l, &addr) {
                    return Ok(Verdict::Accept);
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
/// rewriting): false only when qmail-local would bounce it for want of a mailbox.
pub fn local_deliverable(l: &LocalCheck, addr: &[u8]) -> bool {
    let at = addr.iter().rposition(|&c| c == b'@').unwrap_or(addr.len());
    let switch_ids = matches!(l.accounts, Accts::System(_));
    recipient::deliverable(&l.home, &l.accounts, &addr[..at], switch_ids)
}

#[cfg(test)]
mod tests {
    use super::*;

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
