//! The qmail users and groups (netqmail's conf-users and conf-groups), looked up by name.
//!
//! As root, programs switch to these ids; a missing one is a fatal error naming it. Not
//! started as root, rqmail runs in single-user mode: every id is the invoking user's and no
//! program switches ids.

use nix::unistd::{Gid, Group, Uid, User};
use std::fmt;

/// The qmail users, in conf-users order (the order qmail-showctl lists their ids in).
pub const USER_NAMES: [&str; 8] = [
    "alias", "qmaild", "qmaill", "root", "qmailp", "qmailq", "qmailr", "qmails",
];
/// The qmail groups, in the order qmail-showctl lists them and INSTALL.ids creates them.
pub const GROUP_NAMES: [&str; 2] = ["nofiles", "qmail"];
/// The users INSTALL.ids creates (every one of [`USER_NAMES`] but root, the owner of the
/// programs), each with its primary group. rqmail-install and the test harness make the
/// accounts from this table.
pub const ACCOUNTS: [(&str, &str); 7] = [
    ("alias", "nofiles"),
    ("qmaild", "nofiles"),
    ("qmaill", "nofiles"),
    ("qmailp", "nofiles"),
    ("qmailq", "qmail"),
    ("qmailr", "qmail"),
    ("qmails", "qmail"),
];

/// The ids every qmail program knows about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// Owner of ~alias and its deliveries (uida).
    pub alias: Uid,
    /// qmail-smtpd and other network daemons (uidd).
    pub qmaild: Uid,
    /// The logger (uidl).
    pub qmaill: Uid,
    /// Owner of binaries and control files (uido, normally root).
    pub owner: Uid,
    /// qmail-pw2u and friends (uidp).
    pub qmailp: Uid,
    /// The queue: qmail-queue and qmail-clean (uidq).
    pub qmailq: Uid,
    /// Remote delivery: qmail-rspawn and qmail-remote (uidr).
    pub qmailr: Uid,
    /// qmail-send (uids).
    pub qmails: Uid,
    /// The qmail group (gidq).
    pub qmail: Gid,
    /// The nofiles group (gidn).
    pub nofiles: Gid,
    /// True when these are the invoking user's ids (single-user mode).
    pub single_user: bool,
}

/// A qmail id that could not be found, or a lookup failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// No such user in the password database.
    NoUser(&'static str),
    /// No such group.
    NoGroup(&'static str),
    /// The lookup itself failed.
    Lookup(&'static str, nix::Error),
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::NoUser(n) => write!(f, "unable to find user {n}"),
            IdError::NoGroup(n) => write!(f, "unable to find group {n}"),
            IdError::Lookup(n, e) => write!(f, "unable to look up {n}: {e}"),
        }
    }
}

impl std::error::Error for IdError {}

/// Prepares this process's user and group lookups, once. In a statically linked program
/// (README.md, "How the programs are linked") they come from /etc/passwd and /etc/group
/// only: glibc linked in cannot load the shared modules other sources need. Dynamically
/// linked programs keep every source /etc/nsswitch.conf names. The lookups of this
/// module call it; code that asks the password or group database directly must call it
/// first. (It reads /etc/nsswitch.conf, so it is not done at every program's start.)
pub fn prepare_lookups() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if crate::sys::linked_statically() {
            crate::sys::nss_files_only();
        }
    });
}

fn user(name: &'static str) -> Result<Uid, IdError> {
    prepare_lookups();
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid),
        Ok(None) => Err(IdError::NoUser(name)),
        Err(e) => Err(IdError::Lookup(name, e)),
    }
}

fn group(name: &'static str) -> Result<Gid, IdError> {
    prepare_lookups();
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(IdError::NoGroup(name)),
        Err(e) => Err(IdError::Lookup(name, e)),
    }
}

/// Looks up one user by name, `None` when it does not exist.
pub fn uid_of(name: &str) -> Option<Uid> {
    prepare_lookups();
    User::from_name(name).ok().flatten().map(|u| u.uid)
}

impl Ids {
    /// Builds the ids from two lookups by name (the password database, or a staging
    /// root's files), in conf-users and conf-groups order.
    pub fn from_lookups<E>(
        user: impl Fn(&'static str) -> Result<Uid, E>,
        group: impl Fn(&'static str) -> Result<Gid, E>,
    ) -> Result<Ids, E> {
        Ok(Ids {
            alias: user("alias")?,
            qmaild: user("qmaild")?,
            qmaill: user("qmaill")?,
            owner: user("root")?,
            qmailp: user("qmailp")?,
            qmailq: user("qmailq")?,
            qmailr: user("qmailr")?,
            qmails: user("qmails")?,
            qmail: group("qmail")?,
            nofiles: group("nofiles")?,
            single_user: false,
        })
    }

    /// Looks every qmail id up by name.
    pub fn lookup() -> Result<Ids, IdError> {
        Ids::from_lookups(user, group)
    }

    /// Every id set to the invoking user's real ids.
    pub fn single_user() -> Ids {
        let u = nix::unistd::getuid();
        let g = nix::unistd::getgid();
        Ids {
            alias: u,
            qmaild: u,
            qmaill: u,
            owner: u,
            qmailp: u,
            qmailq: u,
            qmailr: u,
            qmails: u,
            qmail: g,
            nofiles: g,
            single_user: true,
        }
    }

    /// The ids for this process: looked up by name when running as root, single-user
    /// mode otherwise.
    pub fn for_this_process() -> Result<Ids, IdError> {
        if root_mode() {
            Ids::lookup()
        } else {
            Ok(Ids::single_user())
        }
    }
}

/// True when this process runs as root (effective uid 0) and therefore uses the qmail ids.
pub fn root_mode() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_user_uses_own_ids() {
        let ids = Ids::single_user();
        assert!(ids.single_user);
        assert_eq!(ids.qmailq, nix::unistd::getuid());
        assert_eq!(ids.nofiles, nix::unistd::getgid());
    }

    #[test]
    fn one_table_of_accounts() {
        let created: Vec<&str> = ACCOUNTS.iter().map(|(u, _)| *u).collect();
        let expected: Vec<&str> = USER_NAMES.into_iter().filter(|u| *u != "root").collect();
        assert_eq!(created, expected);
        assert!(ACCOUNTS.iter().all(|(_, g)| GROUP_NAMES.contains(g)));
    }

    #[test]
    fn missing_user_is_named() {
        assert_eq!(
            IdError::NoUser("qmaild").to_string(),
            "unable to find user qmaild"
        );
        assert!(uid_of("no-such-user-rqmail-test").is_none());
        assert_eq!(uid_of("root"), Some(Uid::from_raw(0)));
    }
}
