//! users/cdb, the fixed assignments qmail-newu builds from users/assign (qmail-users(5)):
//! how qmail-lspawn (and qmail-smtpd's recipient check) look an address up in it.
//!
//! Keys: `!local\0` for a simple assignment, `!prefix` for a wildcard one, both in lower
//! case; the empty key holds the characters after which a wildcard prefix may end.

use crate::cdb::Cdb;
use std::io;

/// What qmail-lspawn finds in users/cdb for `local`: the record (with, for a wildcard
/// match, the rest of `local` appended to ext) followed by a NUL, in the same form as
/// qmail-getpw's output. `Ok(None)` when no record applies. A database without the
/// wildcard-characters record is an error, as for qmail-lspawn.
pub fn lookup(cdb: &Cdb, local: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let Some(wild) = cdb.get(b"")? else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "users/cdb has no wildcard record",
        ));
    };
    let mut lower = b"!".to_vec();
    lower.extend_from_slice(local);
    lower.push(0);
    lower.make_ascii_lowercase();
    let mut i = lower.len();
    let mut flagwild = false;
    while i > 0 {
        if (!flagwild || i == 1 || wild.contains(&lower[i - 1]))
            && let Some(mut v) = cdb.get(&lower[..i])?
        {
            if flagwild {
                v.extend_from_slice(&local[i - 1..]);
            }
            v.push(0);
            return Ok(Some(v));
        }
        i -= 1;
        flagwild = true;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_wildcards() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cdb");
        crate::cdb::write_atomic(
            &p,
            &d.path().join("tmp"),
            [
                (&b"!joe\0"[..], &b"joe\x001\x002\x00/home/joe\x00\x00"[..]),
                (b"!list-", b"list\x003\x004\x00/home/list\x00-\x00"),
                (b"", b"-"),
            ],
        )
        .unwrap();
        let db = Cdb::open_optional(&p).unwrap().unwrap();
        assert_eq!(
            lookup(&db, b"JOE").unwrap().unwrap(),
            b"joe\x001\x002\x00/home/joe\x00\x00\x00"
        );
        assert_eq!(
            lookup(&db, b"list-Owner").unwrap().unwrap(),
            b"list\x003\x004\x00/home/list\x00-\x00Owner\x00"
        );
        assert_eq!(lookup(&db, b"nobody").unwrap(), None);
    }

    #[test]
    fn no_wildcard_record_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cdb");
        crate::cdb::write_atomic(&p, &d.path().join("tmp"), [(&b"!a\0"[..], &b"x"[..])]).unwrap();
        let db = Cdb::open_optional(&p).unwrap().unwrap();
        assert!(lookup(&db, b"a").is_err());
    }
}
