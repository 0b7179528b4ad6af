//! users/assign and users/cdb (qmail-users(5), qmail-newu(8)).
//!
//! users/assign is a list of lines `=local:user:uid:gid:home:dash:ext:` (simple) and
//! `+prefix:user:uid:gid:home:dash:pre:` (wildcard), ending with a line `.`.
//! qmail-newu compiles it into users/cdb with netqmail's exact records, so that a
//! netqmail qmail-lspawn reads an rqmail users/cdb and the other way round:
//!
//! * simple: key `!` + lowercased local + NUL;
//! * wildcard: key `!` + lowercased prefix (no NUL);
//! * value: `user\0uid\0gid\0home\0dash\0ext` (the six fields, NUL between them, none
//!   after the last);
//! * one more record, key empty: the set of last characters of all wildcard prefixes, in
//!   order of first appearance.
//!
//! [`lookup`] is what qmail-lspawn does with the file, and [`Assignment::parse`] how it
//! reads the record it found there or qmail-getpw's answer: one reading for qmail-lspawn
//! and for qmail-smtpd's recipient validation.

use control::Cdb;
use std::fmt;
use std::io::{self, BufRead};

/// The longest users/assign line read; a longer one is a format error.
pub const MAX_LINE: usize = 1024 * 1024;

/// Why users/assign could not be compiled.
#[derive(Debug)]
pub enum AssignError {
    /// Reading failed.
    Read(io::Error),
    /// A malformed line (or no final `.` line).
    Format,
    /// Writing the database failed.
    Write(io::Error),
}

impl fmt::Display for AssignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssignError::Read(e) => write!(f, "unable to read users/assign: {e}"),
            AssignError::Format => f.write_str("bad format in users/assign"),
            AssignError::Write(e) => write!(f, "unable to write users/cdb.tmp: {e}"),
        }
    }
}

impl std::error::Error for AssignError {}

/// One line of users/assign turned into its cdb record; `wildchars` collects the last
/// characters of wildcard prefixes. `line` is without its newline.
pub fn record(line: &[u8], wildchars: &mut Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), AssignError> {
    if line.contains(&0) {
        return Err(AssignError::Format);
    }
    let i = match line.iter().position(|&c| c == b':') {
        Some(0) | None => return Err(AssignError::Format),
        Some(i) => i,
    };
    let mut key = b"!".to_vec();
    key.extend_from_slice(&line[1..i]);
    key.make_ascii_lowercase();
    if line[0] == b'+' {
        if i >= 2 {
            let c = line[i - 1];
            if !wildchars.contains(&c) {
                wildchars.push(c);
            }
        }
    } else {
        key.push(0);
    }
    let mut data = line[i + 1..].to_vec();
    let mut colons = 0;
    let mut end = None;
    for (n, c) in data.iter_mut().enumerate() {
        if *c == b':' {
            *c = 0;
            colons += 1;
            if colons == 6 {
                end = Some(n);
                break;
            }
        }
    }
    let Some(end) = end else {
        return Err(AssignError::Format);
    };
    data.truncate(end);
    Ok((key, data))
}

/// Reads users/assign from `r` and hands each record to `add`, the wildcard-characters
/// record last. Stops at the `.` line; a file without one is a format error.
pub fn compile<R, F>(mut r: R, mut add: F) -> Result<(), AssignError>
where
    R: BufRead,
    F: FnMut(&[u8], &[u8]) -> io::Result<()>,
{
    let mut wildchars = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = io::Read::take(&mut r, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(AssignError::Read)?;
        if n > MAX_LINE {
            return Err(AssignError::Format);
        }
        if line.first() == Some(&b'.') {
            break;
        }
        let Some(body) = line.strip_suffix(b"\n") else {
            return Err(AssignError::Format);
        };
        let (k, v) = record(body, &mut wildchars)?;
        add(&k, &v).map_err(AssignError::Write)?;
    }
    add(b"", &wildchars).map_err(AssignError::Write)
}

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

/// The six fields of an assignment: user, uid, gid, home, dash, ext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub user: Vec<u8>,
    pub uid: u64,
    pub gid: u64,
    pub home: Vec<u8>,
    pub dash: Vec<u8>,
    pub ext: Vec<u8>,
}

impl Assignment {
    /// Reads `user\0uid\0gid\0home\0dash\0ext\0` as netqmail's qmail-lspawn does, from a
    /// [`lookup`] result or from qmail-getpw's output: each of the six fields must end
    /// with a NUL (`None` otherwise, qmail-lspawn's QLX_USAGE); anything after the sixth
    /// NUL is ignored; uid and gid are their leading digits (0 when there are none).
    pub fn parse(x: &[u8]) -> Option<Assignment> {
        let mut fields: [&[u8]; 6] = [&[]; 6];
        let mut rest = x;
        for f in &mut fields {
            let n = rest.iter().position(|&c| c == 0)?;
            *f = &rest[..n];
            rest = &rest[n + 1..];
        }
        let num = |v: &[u8]| control::scan_ulong(v).unwrap_or(0);
        let [user, uid, gid, home, dash, ext] = fields;
        Some(Assignment {
            user: user.to_vec(),
            uid: num(uid),
            gid: num(gid),
            home: home.to_vec(),
            dash: dash.to_vec(),
            ext: ext.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Records = Vec<(Vec<u8>, Vec<u8>)>;

    fn build(assign: &[u8]) -> Result<Records, AssignError> {
        let mut v = Vec::new();
        compile(assign, |k, d| {
            v.push((k.to_vec(), d.to_vec()));
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn records_are_netqmails() {
        let v = build(
            b"=Joe.Shmoe:joe:503:78:/home/joe:::\n+Joe-:joe:503:78:/home/joe:-::\n+:alias:7790:2108:/var/qmail/alias:-::\n.\n",
        )
        .unwrap();
        assert_eq!(
            v,
            vec![
                (
                    b"!joe.shmoe\0".to_vec(),
                    b"joe\x00503\x0078\x00/home/joe\0\0".to_vec()
                ),
                (
                    b"!joe-".to_vec(),
                    b"joe\x00503\x0078\x00/home/joe\0-\0".to_vec()
                ),
                (
                    b"!".to_vec(),
                    b"alias\x007790\x002108\x00/var/qmail/alias\0-\0".to_vec()
                ),
                (b"".to_vec(), b"-".to_vec()),
            ]
        );
    }

    #[test]
    fn format_errors() {
        for bad in [
            &b"=a:b:1:2:/h::\n.\n"[..],
            b"=a:b:1:2:/h:::\n",
            b"=a:b:1:2:/h:::",
            b":a:b:1:2:/h:::\n.\n",
            b"noclon\n.\n",
            b"=a\0:b:1:2:/h:::\n.\n",
            b"",
        ] {
            assert!(matches!(build(bad), Err(AssignError::Format)), "{bad:?}");
        }
        // Text after the sixth colon is ignored; anything starting with "." ends.
        assert_eq!(build(b"=a:b:1:2:/h:::junk\n.rest\n").unwrap().len(), 2);
        assert_eq!(build(b".").unwrap(), vec![(vec![], vec![])]);
    }

    fn db(assign: &[u8]) -> (tempfile::TempDir, Cdb) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cdb");
        let entries = build(assign).unwrap();
        control::write_cdb(
            &p,
            &d.path().join("tmp"),
            entries.iter().map(|(k, v)| (&k[..], &v[..])),
        )
        .unwrap();
        let c = Cdb::open_optional(&p).unwrap().unwrap();
        (d, c)
    }

    #[test]
    fn lookups_follow_qmail_lspawn() {
        let (_d, c) = db(
            b"+:alias:7790:2108:/var/qmail/alias:-::\n+joe-:joe:507:100:/home/joe:-::\n=joe:joe:507:100:/home/joe:::\n+list=:joe:507:100:/home/joe:-:l-:\n.\n",
        );
        let get = |l: &str| {
            lookup(&c, l.as_bytes())
                .unwrap()
                .map(|v| Assignment::parse(&v).unwrap())
        };
        let a = get("joe").unwrap();
        assert_eq!((a.user, a.dash, a.ext), (b"joe".to_vec(), vec![], vec![]));
        let a = get("Joe-Direct").unwrap();
        assert_eq!(
            (a.user, a.uid, a.dash, a.ext),
            (b"joe".to_vec(), 507, b"-".to_vec(), b"Direct".to_vec())
        );
        let a = get("bill").unwrap();
        assert_eq!((a.user, a.ext), (b"alias".to_vec(), b"bill".to_vec()));
        let a = get("list=x").unwrap();
        assert_eq!(a.ext, b"l-x");
        // "listx" does not end a wildcard prefix with "=" at the right place: alias.
        assert_eq!(get("listx").unwrap().user, b"alias");

        let (_d2, c2) = db(b"=joe:joe:507:100:/home/joe:::\n.\n");
        assert!(lookup(&c2, b"bill").unwrap().is_none());
        assert!(lookup(&c2, b"JOE").unwrap().is_some());
    }

    #[test]
    fn assignment_fields() {
        assert_eq!(
            Assignment::parse(b"joe\x00507\x00100\x00/home/joe\0-\0ext\0"),
            Some(Assignment {
                user: b"joe".to_vec(),
                uid: 507,
                gid: 100,
                home: b"/home/joe".to_vec(),
                dash: b"-".to_vec(),
                ext: b"ext".to_vec()
            })
        );
        assert_eq!(
            Assignment::parse(b"joe\x00507\x00100\x00/home/joe\0-"),
            None
        );
        // qmail-lspawn needs the NUL after ext as well.
        assert_eq!(
            Assignment::parse(b"joe\x00507\x00100\x00/home/joe\0-\0ext"),
            None
        );
        assert_eq!(Assignment::parse(b""), None);
        let a = Assignment::parse(b"joe\0x\0\0/h\0\0\0junk").unwrap();
        assert_eq!((a.uid, a.gid, a.ext), (0, 0, vec![]));
    }

    #[test]
    fn exact_then_wildcards() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cdb");
        control::write_cdb(
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
        control::write_cdb(&p, &d.path().join("tmp"), [(&b"!a\0"[..], &b"x"[..])]).unwrap();
        let db = Cdb::open_optional(&p).unwrap().unwrap();
        assert!(lookup(&db, b"a").is_err());
    }

    proptest! {
        #[test]
        fn compile_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = build(&data);
        }

        #[test]
        fn assignment_fields_have_no_nul(x in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(a) = Assignment::parse(&x) {
                prop_assert!(x.iter().filter(|&&c| c == 0).count() >= 6);
                prop_assert!(!a.user.contains(&0) && !a.home.contains(&0) && !a.ext.contains(&0));
            } else {
                prop_assert!(x.iter().filter(|&&c| c == 0).count() < 6);
            }
        }

        #[test]
        fn simple_assignments_read_back(
            names in proptest::collection::vec("[a-zA-Z0-9._-]{1,12}", 1..8)
        ) {
            let mut assign = Vec::new();
            for (n, name) in names.iter().enumerate() {
                assign.extend_from_slice(format!("={name}:u{n}:{}:1:/h/{n}:::\n", 100 + n).as_bytes());
            }
            assign.extend_from_slice(b".\n");
            let (_d, c) = db(&assign);
            for name in &names {
                let v = lookup(&c, name.to_ascii_uppercase().as_bytes()).unwrap().unwrap();
                let a = Assignment::parse(&v).unwrap();
                // The first assignment for a name wins.
                let first = names.iter().position(|x| x.eq_ignore_ascii_case(name)).unwrap();
                prop_assert_eq!(a.user, format!("u{first}").into_bytes());
            }
        }
    }
}
