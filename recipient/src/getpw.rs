//! qmail-getpw's rules: which user controls a local address (qmail-getpw(8)). The
//! program (in qmail-local) and qmail-smtpd's recipient validation both use them.
//!
//! `qmail-getpw local` prints six NUL-terminated fields — user, uid, gid, home, dash,
//! ext — and exits 0, or prints nothing and exits with one of qmail-lspawn's codes (see
//! [`Exit`]). qmail-lspawn runs it (as qmailp) when users/cdb has no entry for an
//! address, and hands the fields to qmail-local.
//!
//! Rules, as netqmail's: an account is a user when its uid is not 0, its home directory
//! exists and the account owns it. Names are looked up in lower case and must be shorter
//! than 32 bytes. The longest prefix of `local` that is a user, ending at the end or at a
//! `-`, wins; everything else belongs to `alias` (ext = the whole local part).
//!
//! Root mode and single-user mode: when qmail-getpw runs as root, as qmailp or as qmaild,
//! the accounts are the system's (the password database). Otherwise it runs in single-user
//! mode: the only account is the invoking user (home: `$HOME` when set and absolute,
//! else the password database's), and `alias` is the invoking user with home
//! `QMAIL_HOME/alias`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use control::is_temp;

// The exit codes qmail-lspawn understands (its qlx.h) are control's Exit: PERM (no
// argument), TEMP (the answer could not be written), QLX_NFS (a home directory could not
// be checked for a temporary reason), QLX_NOALIAS (no alias user), QLX_SYS (the password
// database failed).
use control::Exit;

use control::BREAK;
/// Account names must be shorter than this (netqmail's GETPW_USERLEN).
pub const USERLEN: usize = 32;
/// The catch-all user.
pub const ALIAS: &[u8] = b"alias";

/// One account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pw {
    pub name: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub dir: Vec<u8>,
}

/// Where accounts come from (the password database, single-user mode, or a test).
pub trait Accounts {
    /// The account called `name`: `Err(Exit::QLX_SYS)` when the lookup itself failed.
    fn getpwnam(&self, name: &[u8]) -> Result<Option<Pw>, Exit>;
    /// The owner of `dir`: `Ok(None)` when it cannot be seen (does not exist),
    /// `Err(Exit::QLX_NFS)` for a temporary failure.
    fn owner(&self, dir: &[u8]) -> Result<Option<u32>, Exit>;
}

/// The answer: the account, and the `.qmail` dash and extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pw: Pw,
    pub dash: &'static [u8],
    pub ext: Vec<u8>,
}

impl Found {
    /// The six NUL-terminated fields qmail-lspawn reads.
    pub fn fields(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for f in [
            &self.pw.name[..],
            self.pw.uid.to_string().as_bytes(),
            self.pw.gid.to_string().as_bytes(),
            &self.pw.dir,
            self.dash,
            &self.ext,
        ] {
            v.extend_from_slice(f);
            v.push(0);
        }
        v
    }
}

/// Finds the user controlling `local`.
pub fn find<A: Accounts>(acc: &A, local: &[u8]) -> Result<Found, Exit> {
    let mut end = local.len();
    loop {
        if end < USERLEN && (end == local.len() || local[end] == BREAK) {
            let name = local[..end].to_ascii_lowercase();
            if let Some(pw) = acc.getpwnam(&name)?
                && pw.uid != 0
                && acc.owner(&pw.dir)? == Some(pw.uid)
            {
                let (dash, ext): (&'static [u8], Vec<u8>) = if end == local.len() {
                    (b"", Vec::new())
                } else {
                    (b"-", local[end + 1..].to_vec())
                };
                return Ok(Found { pw, dash, ext });
            }
        }
        if end == 0 {
            break;
        }
        end -= 1;
    }
    match acc.getpwnam(ALIAS)? {
        Some(pw) => Ok(Found {
            pw,
            dash: b"-",
            ext: local.to_vec(),
        }),
        None => Err(Exit::QLX_NOALIAS),
    }
}

fn owner_of(dir: &[u8]) -> Result<Option<u32>, Exit> {
    match std::fs::metadata(std::ffi::OsStr::from_bytes(dir)) {
        Ok(st) => Ok(Some(st.uid())),
        Err(e) if is_temp(&e) => Err(Exit::QLX_NFS),
        Err(_) => Ok(None),
    }
}

fn from_user(u: nix::unistd::User) -> Pw {
    Pw {
        name: u.name.into_bytes(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        dir: u.dir.into_os_string().into_vec(),
    }
}

use std::os::unix::ffi::OsStringExt;

/// The system's password database.
#[derive(Debug, Default)]
pub struct System;

impl Accounts for System {
    fn getpwnam(&self, name: &[u8]) -> Result<Option<Pw>, Exit> {
        // A name that is not UTF-8 cannot be asked for; no such account.
        let Ok(n) = std::str::from_utf8(name) else {
            return Ok(None);
        };
        if n.is_empty() {
            return Ok(None);
        }
        match nix::unistd::User::from_name(n) {
            Ok(u) => Ok(u.map(from_user)),
            // POSIX lets these mean "no such account".
            Err(nix::errno::Errno::ENOENT)
            | Err(nix::errno::Errno::ESRCH)
            | Err(nix::errno::Errno::EBADF)
            | Err(nix::errno::Errno::EPERM) => Ok(None),
            Err(_) => Err(Exit::QLX_SYS),
        }
    }

    fn owner(&self, dir: &[u8]) -> Result<Option<u32>, Exit> {
        owner_of(dir)
    }
}

/// Single-user mode: the invoking user, and alias.
#[derive(Debug, Clone)]
pub struct SingleUser {
    /// The invoking user (its home possibly replaced by `$HOME`).
    pub me: Option<Pw>,
    /// The alias account: the invoking user's ids, home QMAIL_HOME/alias.
    pub alias: Pw,
}

impl SingleUser {
    /// The accounts of this process: getuid's password entry, `$HOME`, QMAIL_HOME.
    pub fn from_process() -> SingleUser {
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        let home_env = std::env::var_os("HOME")
            .filter(|h| h.as_bytes().first() == Some(&b'/'))
            .map(OsStringExt::into_vec);
        let me = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(from_user)
            .map(|mut pw| {
                if let Some(h) = &home_env {
                    pw.dir = h.clone();
                }
                pw
            });
        let alias_home = control::qmail_home().join("alias");
        SingleUser {
            me,
            alias: Pw {
                name: ALIAS.to_vec(),
                uid: uid.as_raw(),
                gid: gid.as_raw(),
                dir: alias_home.into_os_string().into_vec(),
            },
        }
    }
}

impl Accounts for SingleUser {
    fn getpwnam(&self, name: &[u8]) -> Result<Option<Pw>, Exit> {
        if let Some(me) = &self.me
            && me.name == name
        {
            return Ok(Some(me.clone()));
        }
        if name == ALIAS {
            return Ok(Some(self.alias.clone()));
        }
        Ok(None)
    }

    fn owner(&self, dir: &[u8]) -> Result<Option<u32>, Exit> {
        owner_of(dir)
    }
}

/// True when qmail-getpw uses the system's accounts: it runs as root, as qmailp (as
/// qmail-lspawn runs it in root mode) or as qmaild (as qmail-smtpd runs it for recipient
/// validation, control/checklocalrcpt, in an installation whose qmail-smtpd runs as
/// qmaild).
pub fn root_mode() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let uid = nix::unistd::getuid();
    ["qmailp", "qmaild"]
        .iter()
        .any(|n| control::uid_of(n) == Some(uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    struct Fake {
        users: HashMap<Vec<u8>, Pw>,
        owners: HashMap<Vec<u8>, Result<u32, Exit>>,
    }

    impl Accounts for Fake {
        fn getpwnam(&self, name: &[u8]) -> Result<Option<Pw>, Exit> {
            if name == b"broken" {
                return Err(Exit::QLX_SYS);
            }
            Ok(self.users.get(name).cloned())
        }
        fn owner(&self, dir: &[u8]) -> Result<Option<u32>, Exit> {
            match self.owners.get(dir) {
                None => Ok(None),
                Some(Ok(u)) => Ok(Some(*u)),
                Some(Err(e)) => Err(*e),
            }
        }
    }

    fn pw(name: &str, uid: u32, dir: &str) -> Pw {
        Pw {
            name: name.into(),
            uid,
            gid: 100,
            dir: dir.into(),
        }
    }

    fn fake(with_alias: bool) -> Fake {
        let mut users = HashMap::new();
        let mut owners = HashMap::new();
        for (n, u, d, o) in [
            ("joe", 500, "/home/joe", Ok(500)),
            ("joe-x", 501, "/home/joex", Ok(501)),
            ("root", 0, "/root", Ok(0)),
            ("ftp", 502, "/srv/ftp", Ok(0)),
            ("gone", 503, "/home/gone", Ok(9)),
            ("nfs", 504, "/nfs/x", Err(Exit::QLX_NFS)),
            ("nohome", 505, "/nonexistent", Ok(12345)),
        ] {
            users.insert(n.as_bytes().to_vec(), pw(n, u, d));
            owners.insert(d.as_bytes().to_vec(), o);
        }
        owners.remove(&b"/nonexistent"[..]);
        if with_alias {
            users.insert(b"alias".to_vec(), pw("alias", 7790, "/var/qmail/alias"));
        }
        Fake { users, owners }
    }

    fn answer(local: &str) -> Result<(String, String, String), Exit> {
        find(&fake(true), local.as_bytes()).map(|f| {
            (
                String::from_utf8(f.pw.name).unwrap(),
                String::from_utf8(f.dash.to_vec()).unwrap(),
                String::from_utf8(f.ext).unwrap(),
            )
        })
    }

    fn s(a: &str, b: &str, c: &str) -> Result<(String, String, String), Exit> {
        Ok((a.into(), b.into(), c.into()))
    }

    #[test]
    fn rules_match_netqmail() {
        assert_eq!(answer("joe"), s("joe", "", ""));
        assert_eq!(answer("JOE"), s("joe", "", ""));
        assert_eq!(answer("Joe-Foo-Bar"), s("joe", "-", "Foo-Bar"));
        // The longest prefix wins.
        assert_eq!(answer("joe-x-y"), s("joe-x", "-", "y"));
        assert_eq!(answer("joe-x"), s("joe-x", "", ""));
        // Prefixes end only at a dash.
        assert_eq!(answer("joex"), s("alias", "-", "joex"));
        // uid 0, foreign home, missing home: alias.
        assert_eq!(answer("root"), s("alias", "-", "root"));
        assert_eq!(answer("ftp-a"), s("alias", "-", "ftp-a"));
        assert_eq!(answer("gone"), s("alias", "-", "gone"));
        assert_eq!(answer("nohome"), s("alias", "-", "nohome"));
        assert_eq!(answer("Postmaster"), s("alias", "-", "Postmaster"));
        assert_eq!(answer(""), s("alias", "-", ""));
        assert_eq!(answer("-joe"), s("alias", "-", "-joe"));
        assert_eq!(answer("nfs"), Err(Exit::QLX_NFS));
        assert_eq!(answer("broken-joe"), Err(Exit::QLX_SYS));
        assert_eq!(find(&fake(false), b"nobody"), Err(Exit::QLX_NOALIAS));
    }

    #[test]
    fn long_names_are_not_users() {
        let mut f = fake(true);
        let long = "a".repeat(32);
        f.users
            .insert(long.clone().into_bytes(), pw(&long, 600, "/home/long"));
        f.owners.insert(b"/home/long".to_vec(), Ok(600));
        assert_eq!(find(&f, long.as_bytes()).unwrap().pw.name, b"alias");
        let ok = "a".repeat(31);
        f.users
            .insert(ok.clone().into_bytes(), pw(&ok, 601, "/home/ok"));
        f.owners.insert(b"/home/ok".to_vec(), Ok(601));
        assert_eq!(find(&f, ok.as_bytes()).unwrap().pw.name, ok.as_bytes());
    }

    #[test]
    fn output_fields() {
        let f = find(&fake(true), b"joe-A.b").unwrap();
        assert_eq!(f.fields(), b"joe\x00500\x00100\x00/home/joe\0-\0A.b\0");
    }

    proptest! {
        #[test]
        fn always_an_answer(local in proptest::collection::vec(any::<u8>(), 0..80)) {
            let f = find(&fake(true), &local);
            if let Ok(f) = f {
                prop_assert_eq!(f.fields().iter().filter(|&&c| c == 0).count() >= 6, true);
                if f.pw.name == b"alias" {
                    prop_assert_eq!(f.ext, local);
                } else {
                    prop_assert!(local.len() >= f.pw.name.len());
                }
            }
        }
    }
}
