//! qmail-newmrh: compile control/morercpthosts into control/morercpthosts.cdb, which
//! qmail-smtpd consults after control/rcpthosts.
//!
//! Each line is lowercased (ASCII letters only) and loses its trailing spaces, tabs and
//! newline; what is left, unless it is empty or starts with `#`, becomes a key with an
//! empty value. The cdb is written to control/morercpthosts.tmp, fsynced and renamed
//! over control/morercpthosts.cdb ([`crate::cdb::write_atomic`]), so a reader sees the old
//! or the new database, never a partial one.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use crate::file::MAX_CONTROL_FILE;
use crate::{Exit, ExitError};

/// The prefix of every error message.
pub const FATAL: &str = "qmail-newmrh: fatal: ";

/// Why qmail-newmrh failed (always a temporary failure, exit 111).
#[derive(Debug)]
pub enum Fatal {
    /// QMAIL_HOME cannot be entered.
    Chdir(String, io::Error),
    /// control/morercpthosts cannot be read.
    Read(io::Error),
    /// The new database cannot be written and put in place.
    Write(io::Error),
}

impl ExitError for Fatal {
    fn exit(&self) -> Exit {
        Exit::TEMP
    }
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::errstr::error_str as t;
        match self {
            Fatal::Chdir(home, e) => write!(f, "{FATAL}unable to chdir to {home}: {}", t(e)),
            Fatal::Read(e) => write!(f, "{FATAL}unable to read control/morercpthosts: {}", t(e)),
            Fatal::Write(e) => write!(
                f,
                "{FATAL}unable to write to control/morercpthosts.tmp: {}",
                t(e)
            ),
        }
    }
}

/// The keys netqmail's qmail-newmrh makes of the file's bytes, in file order (duplicates
/// kept, as cdbmake keeps them).
pub fn keys(data: &[u8]) -> Vec<Vec<u8>> {
    data.split_inclusive(|&c| c == b'\n')
        .filter_map(|raw| {
            let mut line = raw.to_ascii_lowercase();
            while matches!(line.last(), Some(b' ' | b'\n' | b'\t')) {
                line.pop();
            }
            (!line.is_empty() && line[0] != b'#').then_some(line)
        })
        .collect()
}

/// Compiles `control/morercpthosts` under the current directory (the qmail home).
pub fn compile(home: &Path) -> Result<(), Fatal> {
    let src = home.join("control/morercpthosts");
    let mut data = Vec::new();
    fs::File::open(&src)
        .and_then(|f| f.take(MAX_CONTROL_FILE + 1).read_to_end(&mut data))
        .map_err(Fatal::Read)?;
    if data.len() as u64 > MAX_CONTROL_FILE {
        return Err(Fatal::Read(io::Error::from_raw_os_error(libc::EFBIG)));
    }
    let keys = keys(&data);
    crate::cdb::write_atomic(
        &home.join("control/morercpthosts.cdb"),
        &home.join("control/morercpthosts.tmp"),
        keys.iter().map(|k| (k.as_slice(), &b""[..])),
    )
    .map_err(Fatal::Write)
}

/// The program: umask 033 as netqmail, enter QMAIL_HOME, compile.
pub fn main() -> Exit {
    use nix::sys::stat::{Mode, umask};
    umask(Mode::from_bits_truncate(0o033));
    let home = crate::qmail_home();
    let r = std::env::set_current_dir(&home)
        .map_err(|e| Fatal::Chdir(home.display().to_string(), e))
        .and_then(|()| compile(Path::new(".")));
    match r {
        Ok(()) => Exit::OK,
        Err(e) => {
            eprintln!("{e}");
            e.exit()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn netqmail_line_rules() {
        assert_eq!(
            keys(b"A.Example\n#comment\n\n  \nb.example \t\n  c.example\nlast.EXAMPLE"),
            vec![
                b"a.example".to_vec(),
                b"b.example".to_vec(),
                b"  c.example".to_vec(),
                b"last.example".to_vec()
            ]
        );
        assert_eq!(keys(b"x\r\n"), vec![b"x\r".to_vec()]);
        assert_eq!(keys(b"d\nd\n"), vec![b"d".to_vec(), b"d".to_vec()]);
        assert!(keys(b"").is_empty());
    }

    proptest! {
        #[test]
        fn keys_are_clean(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            for k in keys(&data) {
                prop_assert!(!k.is_empty() && k[0] != b'#');
                prop_assert!(!k.contains(&b'\n'));
                prop_assert!(!k.iter().any(u8::is_ascii_uppercase));
                prop_assert!(!matches!(k.last(), Some(b' ' | b'\t')));
            }
        }
    }
}
