//! Read-only lookups in constant databases (cdb files made by cdbmake or qmail-newmrh).
//!
//! A cdb that exists but cannot be opened or read is an error for the caller to treat as a
//! temporary failure. After the first read error a lookup stops: cdb2's iterator would keep
//! yielding the same error.

use std::io;
use std::path::Path;

/// An open constant database, or none when the file does not exist.
pub struct Cdb {
    db: cdb2::CDB,
}

impl std::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cdb")
    }
}

impl Cdb {
    /// Opens `path`; `Ok(None)` when it does not exist.
    pub fn open_optional(path: &Path) -> io::Result<Option<Cdb>> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        match cdb2::CDB::open(path) {
            Ok(db) => Ok(Some(Cdb { db })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }

    /// The first value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self.db.find(key).next() {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(e)) => Err(e),
        }
    }

    /// True when `key` is present.
    pub fn contains(&self, key: &[u8]) -> io::Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// All values stored under `key`, stopping at the first read error.
    pub fn get_all(&self, key: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for v in self.db.find(key) {
            out.push(v?);
        }
        Ok(out)
    }
}

/// Writes a cdb atomically: entries go to `tmp`, which is fsynced and renamed to `path`.
pub fn write_atomic<'a, I>(path: &Path, tmp: &Path, entries: I) -> io::Result<()>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let mut mk = cdb2::CDBMake::new(file.try_clone()?)?;
    for (k, v) in entries {
        mk.add(k, v)?;
    }
    mk.finish()?;
    file.sync_all()?;
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        let d = std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?;
        d.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.cdb");
        let t = d.path().join("x.tmp");
        write_atomic(
            &p,
            &t,
            [(&b"a.example"[..], &b""[..]), (b"k", b"v1"), (b"k", b"v2")],
        )
        .unwrap();
        let db = Cdb::open_optional(&p).unwrap().unwrap();
        assert!(db.contains(b"a.example").unwrap());
        assert!(!db.contains(b"b.example").unwrap());
        assert_eq!(
            db.get_all(b"k").unwrap(),
            vec![b"v1".to_vec(), b"v2".to_vec()]
        );
        assert!(
            Cdb::open_optional(&d.path().join("none"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bad.cdb");
        std::fs::write(&p, b"short").unwrap();
        assert!(Cdb::open_optional(&p).is_err());
        let mut big = vec![0xffu8; 4096];
        big[0..8].copy_from_slice(&[0, 0, 0, 0, 200, 0, 0, 0]);
        std::fs::write(&p, &big).unwrap();
        if let Ok(Some(db)) = Cdb::open_optional(&p) {
            for k in [&b""[..], b"a", b"abc", b"postmaster"] {
                let _ = db.get(k);
            }
        }
    }
}
