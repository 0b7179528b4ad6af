//! Whether a local address has a mailbox: the steps qmail-lspawn and qmail-local take
//! before they deliver, traced without delivering, for qmail-smtpd's recipient
//! validation. Each step is the function those programs use: users/cdb through
//! [`users::lookup`], else qmail-getpw's answer (the caller runs qmail-getpw, whose
//! rules are [`crate::getpw::find`]); the record read by
//! [`Assignment::parse`]; qmail-local's home check ([`dotqmail::home_mode`]) and its
//! .qmail search ([`dotqmail::search`], [`dotqmail::error_defers`],
//! [`dotqmail::no_mailbox`]).
//!
//! The answer is "no mailbox" only when qmail-local would bounce the message with "Sorry,
//! no mailbox here by that name". Whenever a step would defer the delivery instead (a
//! users/cdb that cannot be read, a home that cannot be entered or is writable, a .qmail
//! file that cannot be looked at), or the answer cannot be known from here (this process
//! may not search the home), the address counts as having a mailbox: recipient
//! validation never refuses mail that delivery would not bounce. A failure of the
//! qmail-getpw step (no alias user, a failing password database) is the caller's error,
//! returned as it is: it can be neither accepted nor refused for sure. Only file names
//! are looked at, never their contents, with this process's own ids.

use crate::dotqmail::{self, HomeMode};
use crate::users::{self, Assignment};
use control::Cdb;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether local delivery of `local` (the local part, after qmail-send's rewriting) in
/// the qmail home `home` would find a mailbox; false only when qmail-local would bounce
/// for want of one. `getpw` answers for an address users/cdb does not list, as
/// qmail-getpw would (the record qmail-lspawn would read from it); its error is returned
/// as it is (qmail-lspawn would defer the delivery). `switch_ids` is true when
/// qmail-lspawn runs deliveries under the users' ids (root mode), where it refuses uid 0.
pub fn deliverable<E>(
    home: &Path,
    local: &[u8],
    switch_ids: bool,
    getpw: impl FnOnce(&[u8]) -> Result<Assignment, E>,
) -> Result<bool, E> {
    if local.is_empty() {
        // qmail-lspawn throws mail for an empty mailbox name away: accepted.
        return Ok(true);
    }
    let record = match Cdb::open_optional(&home.join("users/cdb")) {
        Err(_) => return Ok(true),
        Ok(Some(db)) => match users::lookup(&db, local) {
            Err(_) => return Ok(true),
            Ok(r) => r,
        },
        Ok(None) => None,
    };
    let a = match record {
        Some(r) => match Assignment::parse(&r) {
            Some(a) => a,
            None => return Ok(true),
        },
        None => getpw(local)?,
    };
    if u32::try_from(a.uid).is_err() || u32::try_from(a.gid).is_err() {
        return Ok(true);
    }
    if switch_ids && a.uid == 0 {
        return Ok(true);
    }
    Ok(has_mailbox(&a.home, &a.dash, &a.ext))
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

    fn assignment(home: &Path, uid: u64, dash: &str, ext: &str) -> Assignment {
        Assignment {
            user: b"joe".to_vec(),
            uid,
            gid: 100,
            home: home.as_os_str().as_bytes().to_vec(),
            dash: dash.as_bytes().to_vec(),
            ext: ext.as_bytes().to_vec(),
        }
    }

    #[test]
    fn getpw_step_answers_and_fails() {
        let qmail = home();
        let user = home();
        touch(&user.path().join(".qmail-list"));
        let q = qmail.path();
        let ok = |dash: &'static str, ext: &'static str| {
            let h = user.path().to_path_buf();
            move |_: &[u8]| Ok::<_, ()>(assignment(&h, 500, dash, ext))
        };
        assert_eq!(deliverable(q, b"joe", true, ok("", "")), Ok(true));
        assert_eq!(deliverable(q, b"joe-list", true, ok("-", "list")), Ok(true));
        assert_eq!(deliverable(q, b"joe-x", true, ok("-", "x")), Ok(false));
        // The error of the qmail-getpw step is the caller's.
        assert_eq!(
            deliverable(q, b"joe", true, |_| Err::<Assignment, _>(7)),
            Err(7)
        );
        // Mail for an empty name is thrown away, never looked up.
        assert_eq!(
            deliverable(q, b"", true, |_| Err::<Assignment, _>(7)),
            Ok(true)
        );
        // uid 0 in root mode: qmail-lspawn defers.
        let h = user.path().to_path_buf();
        assert_eq!(
            deliverable(q, b"joe-x", true, |_| Ok::<_, ()>(assignment(
                &h, 0, "-", "x"
            ))),
            Ok(true)
        );
        assert_eq!(
            deliverable(q, b"joe-x", false, |_| Ok::<_, ()>(assignment(
                &h, 0, "-", "x"
            ))),
            Ok(false)
        );
        // users/cdb comes first: its record, and qmail-getpw is not asked.
        fs::create_dir(q.join("users")).unwrap();
        let rec = format!("joe\0500\0100\0{}\0-\0x", user.path().display());
        control::write_cdb(
            &q.join("users/cdb"),
            &q.join("users/tmp"),
            [(&b""[..], &b""[..]), (b"!joe-x\0", rec.as_bytes())],
        )
        .unwrap();
        assert_eq!(
            deliverable(q, b"joe-x", true, |_| Err::<Assignment, _>(7)),
            Ok(false)
        );
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
