//! Control files, read as netqmail's control.c reads them.
//!
//! * A missing file (ENOENT) is "not set": the caller uses the documented default.
//! * Any other failure to open or read is an error: the caller must treat it as a
//!   temporary failure, never silently as the default.
//! * A one-line file: its first line, trailing spaces, tabs and newline removed.
//! * An integer file: the leading decimal digits of the first line; no digits means "not
//!   set" (netqmail's `control_readint`).
//! * A list file: every line with trailing white space removed; empty lines and lines
//!   starting with `#` are skipped.
//! * Several files fall back to the contents of `control/me` (`flagme`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The largest control file read into memory; a bigger one is an error, not a truncation.
pub const MAX_CONTROL_FILE: u64 = 256 * 1024 * 1024;

fn strip_trailing_ws(line: &mut Vec<u8>) {
    while let Some(&c) = line.last() {
        if c == b'\n' || c == b' ' || c == b'\t' {
            line.pop();
        } else {
            break;
        }
    }
}

fn open_optional(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn too_big(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} is larger than {MAX_CONTROL_FILE} bytes", path.display()),
    )
}

/// Reads the first line of `path`. `Ok(None)` when the file does not exist.
pub fn read_line(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let Some(f) = open_optional(path)? else {
        return Ok(None);
    };
    let mut r = BufReader::new(f.take(MAX_CONTROL_FILE + 1));
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() as u64 > MAX_CONTROL_FILE {
        return Err(too_big(path));
    }
    strip_trailing_ws(&mut line);
    Ok(Some(line))
}

/// The leading decimal digits of `s` as a number (saturating), or `None` when `s` does not
/// start with a digit: netqmail's `scan_ulong`.
pub fn scan_ulong(s: &[u8]) -> Option<u64> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &s[..digits] {
        v = v.saturating_mul(10).saturating_add(u64::from(c - b'0'));
    }
    Some(v)
}

/// Reads an integer control file. `Ok(None)` when missing or when its first line does not
/// start with a digit (netqmail then keeps the default).
pub fn read_int(path: &Path) -> io::Result<Option<u64>> {
    Ok(read_line(path)?.and_then(|l| scan_ulong(&l)))
}

/// Reads a list control file: one entry per line, comments and empty lines skipped.
/// `Ok(None)` when the file does not exist.
pub fn read_lines(path: &Path) -> io::Result<Option<Vec<Vec<u8>>>> {
    Ok(read_bytes(path)?.map(|data| parse_lines(&data)))
}

/// Reads a whole file that is not made of lines (a PEM file, say), at most
/// [`MAX_CONTROL_FILE`] bytes. `Ok(None)` when the file does not exist.
pub fn read_bytes(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let Some(f) = open_optional(path)? else {
        return Ok(None);
    };
    if f.metadata()?.len() > MAX_CONTROL_FILE {
        return Err(too_big(path));
    }
    let mut data = Vec::new();
    f.take(MAX_CONTROL_FILE + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_CONTROL_FILE {
        return Err(too_big(path));
    }
    Ok(Some(data))
}

/// The list-file rules applied to bytes already read.
pub fn parse_lines(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for raw in data.split_inclusive(|&c| c == b'\n') {
        let mut line = raw.to_vec();
        strip_trailing_ws(&mut line);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        out.push(line);
    }
    out
}

/// The control directory of one qmail home, with `control/me` already read.
#[derive(Debug, Clone)]
pub struct Controls {
    dir: PathBuf,
    me: Option<Vec<u8>>,
}

impl Controls {
    /// Opens `home/control` and reads `me` (netqmail's `control_init`). A `me` that exists
    /// but cannot be read is an error.
    pub fn open(home: &Path) -> io::Result<Controls> {
        let dir = home.join("control");
        let me = read_line(&dir.join("me"))?;
        Ok(Controls { dir, me })
    }

    /// The path of a control file.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The first line of `control/me`, if the file exists.
    pub fn me(&self) -> Option<&[u8]> {
        self.me.as_deref()
    }

    /// The first line of a control file; `Ok(None)` when missing.
    pub fn line(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        read_line(&self.path(name))
    }

    /// netqmail's `control_rldef`: the file's first line; when missing, `me` if `flagme`
    /// and `me` is set; otherwise `def`.
    pub fn line_or(
        &self,
        name: &str,
        flagme: bool,
        def: Option<&[u8]>,
    ) -> io::Result<Option<Vec<u8>>> {
        if let Some(v) = self.line(name)? {
            return Ok(Some(v));
        }
        if flagme && let Some(me) = &self.me {
            return Ok(Some(me.clone()));
        }
        Ok(def.map(<[u8]>::to_vec))
    }

    /// An integer control file, or `def` when missing or not numeric.
    pub fn int_or(&self, name: &str, def: u64) -> io::Result<u64> {
        Ok(read_int(&self.path(name))?.unwrap_or(def))
    }

    /// A list control file; `Ok(None)` when missing (netqmail's `control_readfile` with
    /// flagme 0).
    pub fn lines(&self, name: &str) -> io::Result<Option<Vec<Vec<u8>>>> {
        read_lines(&self.path(name))
    }

    /// A list control file that falls back to the single entry `me` when missing
    /// (`control_readfile` with flagme 1, as for `locals`).
    pub fn lines_or_me(&self, name: &str) -> io::Result<Option<Vec<Vec<u8>>>> {
        match self.lines(name)? {
            Some(v) => Ok(Some(v)),
            None => Ok(self.me.clone().map(|m| vec![m])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;

    #[test]
    fn missing_is_none_and_unreadable_is_error() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_line(&d.path().join("nope")).unwrap(), None);
        // A directory exists but cannot be read as a file.
        fs::create_dir(d.path().join("dir")).unwrap();
        assert!(read_line(&d.path().join("dir")).is_err());
        assert!(read_lines(&d.path().join("dir")).is_err());
    }

    #[test]
    fn first_line_trailing_space_stripped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, "  host.example \t\nsecond\n").unwrap();
        assert_eq!(read_line(&p).unwrap().unwrap(), b"  host.example");
        fs::write(&p, "").unwrap();
        assert_eq!(read_line(&p).unwrap().unwrap(), b"");
    }

    #[test]
    fn ints_follow_scan_ulong() {
        assert_eq!(scan_ulong(b"1200"), Some(1200));
        assert_eq!(scan_ulong(b"12abc"), Some(12));
        assert_eq!(scan_ulong(b" 12"), None);
        assert_eq!(scan_ulong(b""), None);
        assert_eq!(scan_ulong(b"99999999999999999999999"), Some(u64::MAX));
    }

    #[test]
    fn list_files_skip_comments_and_blanks() {
        let v = parse_lines(b"# comment\n\na.example  \n.b.example\n  #not comment\nlast");
        assert_eq!(
            v,
            vec![
                b"a.example".to_vec(),
                b".b.example".to_vec(),
                b"  #not comment".to_vec(),
                b"last".to_vec()
            ]
        );
    }

    #[test]
    fn me_fallbacks() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("control")).unwrap();
        let c = Controls::open(d.path()).unwrap();
        assert_eq!(c.me(), None);
        assert_eq!(c.line_or("smtpgreeting", true, None).unwrap(), None);
        assert_eq!(c.line_or("x", true, Some(b"def")).unwrap().unwrap(), b"def");
        fs::write(d.path().join("control/me"), "mx.example\n").unwrap();
        let c = Controls::open(d.path()).unwrap();
        assert_eq!(
            c.line_or("smtpgreeting", true, None).unwrap().unwrap(),
            b"mx.example"
        );
        assert_eq!(
            c.line_or("x", false, Some(b"def")).unwrap().unwrap(),
            b"def"
        );
        assert_eq!(
            c.lines_or_me("locals").unwrap().unwrap(),
            vec![b"mx.example".to_vec()]
        );
        assert_eq!(c.int_or("timeoutsmtpd", 1200).unwrap(), 1200);
    }

    proptest! {
        #[test]
        fn parse_lines_never_yields_blank_or_comment(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            for l in parse_lines(&data) {
                prop_assert!(!l.is_empty());
                prop_assert!(l[0] != b'#');
                prop_assert!(!l.contains(&b'\n'));
                let last = *l.last().unwrap();
                prop_assert!(last != b' ' && last != b'\t');
            }
        }
    }
}
