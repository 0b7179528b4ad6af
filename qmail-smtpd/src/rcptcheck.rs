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
//!   envnoathost and percenthack, as qmail-send rewrites them), the delivery is traced
//!   the way qmail-lspawn and qmail-local would do it: users/cdb, else the accounts as
//!   qmail-getpw sees them (with the alias user for everything else), then the
//!   `.qmail` files (including `-default` ones) in the home directory when the address
//!   carries an extension. Only file names are looked at (never the contents), with this
//!   process's own ids. Whenever the answer cannot be known (a directory this user may
//!   not search, a temporary error, no alias user), the recipient is accepted: the check
//!   never refuses mail that qmail-local would deliver.
//!
//! `postmaster@` and `abuse@` (any case, any domain) are always accepted, and so is a
//! recipient that is relayed (RELAYCLIENT, or SMTP AUTH).

use control::cdb::Cdb;
use control::constmap::CaseSet;
use qmail_local::dotqmail;
use qmail_local::getpw::{self, Accounts, Pw};
use qmail_send::send::config::{Config as SendConfig, VirtualDomains};
use qmail_send::send::rewrite::{Channel, rewrite};
use std::io;
use std::os::unix::ffi::OsStrExt;
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
    System(getpw::System),
    Single(getpw::SingleUser),
}

impl Accts {
    /// The accounts qmail-getpw would see in this installation: the system's when this
    /// process runs as root or as qmaild (root mode), else single-user mode's.
    pub fn for_this_process() -> Accts {
        let uid = nix::unistd::getuid();
        if nix::unistd::geteuid().is_root() || control::ids::uid_of("qmaild") == Some(uid) {
            Accts::System(getpw::System)
        } else {
            Accts::Single(getpw::SingleUser::from_process())
        }
    }
}

impl Accounts for Accts {
    fn getpwnam(&self, name: &[u8]) -> Result<Option<Pw>, getpw::Exit> {
        match self {
            Accts::System(a) => a.getpwnam(name),
            Accts::Single(a) => a.getpwnam(name),
        }
    }
    fn owner(&self, dir: &[u8]) -> Result<Option<u32>, getpw::Exit> {
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
    pub route: SendConfig,
}

fn lines(c: &control::Controls, name: &str) -> io::Result<Vec<Vec<u8>>> {
    Ok(c.lines(name)?.unwrap_or_default())
}

/// The routing part of qmail-send's configuration.
pub fn route_config(c: &control::Controls) -> io::Result<SendConfig> {
    let envnoathost = c
        .line_or("envnoathost", true, Some(b"envnoathost"))?
        .unwrap_or_default();
    let locals = CaseSet::new(c.lines_or_me("locals")?.unwrap_or_default());
    Ok(SendConfig {
        lifetime: 0,
        concurrency: [0, 0],
        envnoathost,
        bouncefrom: Vec::new(),
        bouncehost: Vec::new(),
        doublebounceto: Vec::new(),
        locals,
        percenthack: CaseSet::new(lines(c, "percenthack")?),
        vdoms: VirtualDomains::new(&lines(c, "virtualdomains")?),
    })
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
            route: route_config(c)?,
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
            let (channel, addr) = rewrite(&self.route, rcpt);
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

/// What qmail-local would do with `addr` (`local@domain` after qmail-send's rewriting):
/// false only when it would certainly bounce for want of a mailbox.
pub fn local_deliverable(l: &LocalCheck, addr: &[u8]) -> bool {
    let at = addr.iter().rposition(|&c| c == b'@').unwrap_or(addr.len());
    let local = &addr[..at];
    if local.is_empty() {
        // qmail-lspawn throws mail for an empty mailbox name away: accepted.
        return true;
    }
    match Cdb::open_optional(&l.home.join("users/cdb")) {
        Err(_) => return true,
        Ok(Some(db)) => match qmail_local::users::lookup(&db, local) {
            Err(_) => return true,
            Ok(Some(rec)) => {
                return match qmail_local::users::Assignment::parse(&rec) {
                    Some(a) => has_mailbox(&a.home, &a.dash, &a.ext),
                    None => true,
                };
            }
            Ok(None) => {}
        },
        Ok(None) => {}
    }
    match getpw::find(&l.accounts, local) {
        Ok(f) => has_mailbox(&f.pw.dir, f.dash, &f.ext),
        // No alias user, a failing password database, a home that cannot be checked:
        // deliveries would be deferred, not bounced.
        Err(_) => true,
    }
}

/// Whether a .qmail file handles the extension (qmail-local's search): always true
/// without a dash (the user's default delivery); otherwise true when one of the names
/// exists as a regular file, or when that cannot be known.
pub fn has_mailbox(home: &[u8], dash: &[u8], ext: &[u8]) -> bool {
    if dash.is_empty() {
        return true;
    }
    let home = Path::new(std::ffi::OsStr::from_bytes(home));
    let safeext = dotqmail::safe_ext(ext);
    for c in dotqmail::candidates(dash, &safeext) {
        match std::fs::metadata(home.join(std::ffi::OsStr::from_bytes(&c.name))) {
            Ok(st) if st.is_file() => return true,
            Ok(_) => {}
            Err(e) => {
                // As qmail-local: permission problems and temporary errors defer the
                // delivery (so the mailbox may well exist); the rest mean no such file.
                let denied = matches!(
                    e.raw_os_error(),
                    Some(c) if c == nix::libc::EACCES || c == nix::libc::EPERM
                );
                let unknowable = denied || qmail_local::errno::is_temp(&e);
                if unknowable {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(p: &Path) {
        fs::write(p, "").unwrap();
    }

    #[test]
    fn dot_qmail_search() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path().as_os_str().as_bytes();
        assert!(has_mailbox(h, b"", b"anything"));
        assert!(!has_mailbox(h, b"-", b"foo"));
        touch(&d.path().join(".qmail-foo"));
        assert!(has_mailbox(h, b"-", b"foo"));
        assert!(has_mailbox(h, b"-", b"FOO"));
        assert!(!has_mailbox(h, b"-", b"foo-bar"));
        touch(&d.path().join(".qmail-foo-default"));
        assert!(has_mailbox(h, b"-", b"foo-bar"));
        assert!(!has_mailbox(h, b"-", b"bar"));
        // dots and slashes cannot leave the home
        assert!(!has_mailbox(h, b"-", b"../x"));
        fs::create_dir(d.path().join(".qmail-dir")).unwrap();
        assert!(!has_mailbox(h, b"-", b"dir"));
        touch(&d.path().join(".qmail-default"));
        assert!(has_mailbox(h, b"-", b"bar"));
        assert!(has_mailbox(h, b"-", b""));
        // a home that does not exist: no such files
        assert!(!has_mailbox(b"/nonexistent/home", b"-", b"x"));
    }

    #[test]
    fn validrcptto_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.cdb");
        control::cdb::write_atomic(
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

    proptest::proptest! {
        #[test]
        fn any_extension_stays_in_home(ext in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            // Nothing outside the (empty) home can make a mailbox appear.
            let d = tempfile::tempdir().unwrap();
            let home = d.path().join("h");
            fs::create_dir(&home).unwrap();
            touch(&d.path().join(".qmail-x"));
            let h = home.as_os_str().as_bytes();
            proptest::prop_assert!(!has_mailbox(h, b"-", &ext) || ext.contains(&0));
        }
    }
}
