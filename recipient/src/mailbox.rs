//! Whether a local address has a mailbox: the steps qmail-lspawn and qmail-local take
//! before they deliver, traced without delivering, for qmail-smtpd's recipient
//! validation. Each step is the function those programs use: users/cdb through
//! [`users::lookup`], else qmail-getpw's [`getpw::find`]; the record read by
//! [`Assignment::parse`]; qmail-local's home check ([`dotqmail::home_mode`]) and its
//! .qmail search ([`dotqmail::search`], [`dotqmail::error_defers`],
//! [`dotqmail::no_mailbox`]).
//!
//! The answer is "no mailbox" only when qmail-local would bounce the message with "Sorry,
//! no mailbox here by that name". Whenever a step would defer the delivery instead (a
//! users/cdb that cannot be read, no alias user, a home that cannot be entered or is
//! writable, a .qmail file that cannot be looked at), or the answer cannot be known from
//! here (this process may not search the home), the address counts as having a mailbox:
//! recipient validation never refuses mail that delivery would not bounce. Only file names
//! are looked at, never their contents, with this process's own ids.

use crate::dotqmail::{self, HomeMode};
use crate::getpw::{self, Accounts};
use crate::users::{self, Assignment};
use control::Cdb;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether local delivery of `local` (the local part, after qmail-send's rewriting) in
/// the qmail home `home` would find a mailbox; false only when qmail-local would bounce
/// for want of one. `accounts` are the ones qmail-getpw would see; `switch_ids` is true
/// when qmail-lspawn runs deliveries under the users' ids (root mode), where it refuses
/// uid 0.
pub fn deliverable<A: Accounts>(home: &Path, accounts: &A, local: &[u8], switch_ids: bool) -> bool {
    if local.is_empty() {
        // qmail-lspawn throws mail for an empty mailbox name away: accepted.
        return true;
    }
    let record = match Cdb::open_optional(&home.join("users/cdb")) {
        Err(_) => return true,
        Ok(Some(db)) => match users::lookup(&db, local) {
            Err(_) => return true,
            Ok(r) => r,
        },
        Ok(None) => None,
    };
    let record = match record {
        Some(r) => r,
        None => match getpw::find(accounts, local) {
            Ok(f) => f.fields(),
            // No alias user, a failing password database, a home that cannot be checked:
            // deliveries would be deferred, not bounced.
            Err(_) => return true,
        },
    };
    let Some(a) = Assignment::parse(&record) else {
        return true;
    };
    if u32::try_from(a.uid).is_err() || u32::try_from(a.gid).is_err() {
        return true;
    }
    if switch_ids && a.uid == 0 {
        return true;
    }
    has_mailbox(&a.home, &a.dash, &a.ext)
}

/// Whether qmail-local, run with this home, dash and extension, would find a mailbox
/// (see the module documentation): always without a dash (the user's default delivery);
/// otherwise when the home is usable and one of the .qmail names exists as a regular
/// file, or when that cannot be known.
pub fn has_mailbox(home: &[u8], dash: &[u8], ext: &[u8]) -> bool {
    if dash.is_empty() {
        return true;
    }
    let home = Path::new(OsStr::from_bytes(home));
    match std::fs::metadata(home) {
        Ok(st) if st.is_dir() && dotqmail::home_mode(st.mode()) == HomeMode::Usable => {}
        // qmail-local cannot enter it, or finds it writable or sticky: it defers.
        _ => return true,
    }
    let safeext = dotqmail::safe_ext(ext);
    let found = dotqmail::search(dash, &safeext, |name| {
        match std::fs::metadata(home.join(OsStr::from_bytes(name))) {
            Ok(st) => Ok(st.is_file().then_some(())),
            Err(e) if dotqmail::error_defers(&e) => Err(()),
            Err(_) => Ok(None),
        }
    });
    match found {
        Err(()) => true,
        Ok(f) => !dotqmail::no_mailbox(dash, f.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn touch(p: &Path) {
        fs::write(p, "").unwrap();
    }

    fn home() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn dot_qmail_search() {
        let d = home();
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
    }

    #[test]
    fn homes_qmail_local_defers_on() {
        // A home that does not exist, or is not a directory: qmail-local cannot enter it.
        assert!(has_mailbox(b"/nonexistent/home", b"-", b"x"));
        let d = home();
        touch(&d.path().join("file"));
        assert!(has_mailbox(
            d.path().join("file").as_os_str().as_bytes(),
            b"-",
            b"x"
        ));
        let h = d.path().as_os_str().as_bytes();
        assert!(!has_mailbox(h, b"-", b"x"));
        // Writable by others, or sticky.
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o757)).unwrap();
        assert!(has_mailbox(h, b"-", b"x"));
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o1755)).unwrap();
        assert!(has_mailbox(h, b"-", b"x"));
    }

    proptest::proptest! {
        #[test]
        fn any_extension_stays_in_home(ext in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            // Nothing outside the (empty) home can make a mailbox appear.
            let d = home();
            let h = d.path().join("h");
            fs::create_dir(&h).unwrap();
            fs::set_permissions(&h, fs::Permissions::from_mode(0o755)).unwrap();
            touch(&d.path().join(".qmail-x"));
            let hb = h.as_os_str().as_bytes();
            proptest::prop_assert!(!has_mailbox(hb, b"-", &ext) || ext.contains(&0));
        }
    }
}
