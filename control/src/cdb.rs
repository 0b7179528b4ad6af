//! Read-only lookups in constant databases (cdb files made by cdbmake or qmail-newmrh).
//!
//! A cdb that exists but cannot be opened or read is an error for the caller to treat as a
//! temporary failure, and so is a corrupt one: every position and length read from the
//! file is checked against the file's size before it is used, so a damaged or hostile
//! file can neither make a lookup allocate more than the file holds nor loop for longer
//! than its hash table is long. (cdb2's reader allocates a record's claimed length before
//! checking it; it is used here for writing only.) A lookup stops at the first error.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An open constant database, or none when the file does not exist.
pub struct Cdb {
    file: File,
    size: u64,
}

impl std::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cdb")
    }
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "corrupt cdb file")
}

/// cdb's hash (djb's: h = (h * 33) ^ c, starting at 5381).
fn hash(key: &[u8]) -> u32 {
    key.iter().fold(5381u32, |h, &c| {
        (h.wrapping_shl(5).wrapping_add(h)) ^ u32::from(c)
    })
}

fn unpack2(b: &[u8; 8]) -> (u64, u64) {
    let a = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let c = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    (u64::from(a), u64::from(c))
}

impl Cdb {
    /// Opens `path`; `Ok(None)` when it does not exist.
    pub fn open_optional(path: &Path) -> io::Result<Option<Cdb>> {
        let file = match File::open(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            Ok(f) => f,
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file", path.display()),
            ));
        }
        let size = meta.len();
        if !(2048..=0xffff_ffff).contains(&size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: corrupt cdb file", path.display()),
            ));
        }
        Ok(Some(Cdb { file, size }))
    }

    /// Reads exactly `buf.len()` bytes at `pos`, which must lie inside the file.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let end = pos.checked_add(buf.len() as u64).ok_or_else(corrupt)?;
        if end > self.size {
            return Err(corrupt());
        }
        self.file.read_exact_at(buf, pos)
    }

    fn pair(&self, pos: u64) -> io::Result<(u64, u64)> {
        let mut b = [0u8; 8];
        self.read_at(&mut b, pos)?;
        Ok(unpack2(&b))
    }

    /// Calls `each` with every value stored under `key`, in the file's order, until it
    /// returns false.
    fn find(&self, key: &[u8], mut each: impl FnMut(Vec<u8>) -> bool) -> io::Result<()> {
        let h = hash(key);
        let (hpos, hslots) = self.pair(u64::from(h & 0xff) * 8)?;
        if hslots == 0 {
            return Ok(());
        }
        let tend = hpos.checked_add(hslots * 8).ok_or_else(corrupt)?;
        if tend > self.size {
            return Err(corrupt());
        }
        let mut kpos = hpos + (u64::from(h >> 8) % hslots) * 8;
        for _ in 0..hslots {
            let (slot_hash, pos) = self.pair(kpos)?;
            if pos == 0 {
                return Ok(());
            }
            kpos += 8;
            if kpos == tend {
                kpos = hpos;
            }
            if slot_hash != u64::from(h) {
                continue;
            }
            let (klen, dlen) = self.pair(pos)?;
            if klen != key.len() as u64 {
                continue;
            }
            let kstart = pos + 8;
            let dstart = kstart + klen;
            if dstart.checked_add(dlen).is_none_or(|e| e > self.size) {
                return Err(corrupt());
            }
            let mut k = vec![0u8; key.len()];
            self.read_at(&mut k, kstart)?;
            if k != key {
                continue;
            }
            let mut v = vec![0u8; usize::try_from(dlen).map_err(|_| corrupt())?];
            self.read_at(&mut v, dstart)?;
            if !each(v) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The first value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let mut first = None;
        self.find(key, |v| {
            first = Some(v);
            false
        })?;
        Ok(first)
    }

    /// True when `key` is present.
    pub fn contains(&self, key: &[u8]) -> io::Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// All values stored under `key`, stopping at the first read error.
    pub fn get_all(&self, key: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        self.find(key, |v| {
            out.push(v);
            true
        })?;
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

    /// Found by fuzzing (fuzz/regressions/cdb): a record claiming more data than the file
    /// holds is an error before anything of that size is allocated.
    #[test]
    fn record_lengths_beyond_the_file_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.cdb");
        write_atomic(&p, &d.path().join("t"), [(&b"key"[..], &b"value"[..])]).unwrap();
        let good = std::fs::read(&p).unwrap();
        let db = Cdb::open_optional(&p).unwrap().unwrap();
        assert_eq!(db.get(b"key").unwrap(), Some(b"value".to_vec()));
        for (at, v) in [
            (2052usize, 0xffff_fff0u32),
            (2048, 0xffff_fff0),
            (2052, 100),
        ] {
            let mut bad = good.clone();
            bad[at..at + 4].copy_from_slice(&v.to_le_bytes());
            std::fs::write(&p, &bad).unwrap();
            let db = Cdb::open_optional(&p).unwrap().unwrap();
            match db.get(b"key") {
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
                Ok(v) => assert_eq!(v, None, "klen changed: no match"),
            }
            let _ = db.get_all(b"key");
        }
        // A hash table pointing past the end of the file.
        let mut bad = good.clone();
        let slot = (hash(b"key") & 0xff) as usize * 8;
        bad[slot..slot + 4].copy_from_slice(&0xffff_0000u32.to_le_bytes());
        std::fs::write(&p, &bad).unwrap();
        let db = Cdb::open_optional(&p).unwrap().unwrap();
        assert!(db.get(b"key").is_err());
    }

    #[test]
    fn same_answers_as_cdb2_for_good_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.cdb");
        let keys: Vec<Vec<u8>> = (0..300u32)
            .map(|i| format!("k{}", i % 120).into_bytes())
            .collect();
        let vals: Vec<Vec<u8>> = (0..300u32).map(|i| format!("v{i}").into_bytes()).collect();
        write_atomic(
            &p,
            &d.path().join("t"),
            keys.iter()
                .zip(&vals)
                .map(|(k, v)| (k.as_slice(), v.as_slice())),
        )
        .unwrap();
        let ours = Cdb::open_optional(&p).unwrap().unwrap();
        let theirs = cdb2::CDB::open(&p).unwrap();
        for i in 0..130u32 {
            let k = format!("k{i}").into_bytes();
            let want: Vec<Vec<u8>> = theirs.find(&k).map(Result::unwrap).collect();
            assert_eq!(ours.get_all(&k).unwrap(), want);
            assert_eq!(ours.get(&k).unwrap(), want.first().cloned());
        }
        assert_eq!(ours.get(b"").unwrap(), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bad.cdb");
        std::fs::write(&p, b"short").unwrap();
        assert!(Cdb::open_optional(&p).is_err());
        assert!(Cdb::open_optional(d.path()).is_err(), "a directory");
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
