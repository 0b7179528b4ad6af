//! maildirmake: create a maildir, `NAME` with `tmp`, `new` and `cur`, mode 0700
//! (maildirmake(1)). The new directories are fsynced into place.

use control::Exit;
use std::ffi::OsString;
use std::fs::DirBuilder;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use control::describe_error as error_str;

fn fatal(what: &str, name: &[u8], suffix: &str, e: &std::io::Error) -> Exit {
    let mut line = b"maildirmake: fatal: ".to_vec();
    line.extend_from_slice(what.as_bytes());
    line.extend_from_slice(name);
    line.extend_from_slice(suffix.as_bytes());
    line.extend_from_slice(b": ");
    line.extend_from_slice(error_str(e).as_bytes());
    line.push(b'\n');
    let _ = std::io::stderr().write_all(&line);
    Exit::TEMP
}

/// Makes the maildir `name`; the exit code.
pub fn make(name: &Path) -> Exit {
    let n = name.as_os_str().as_bytes();
    let mut b = DirBuilder::new();
    b.mode(0o700);
    if let Err(e) = b.create(name) {
        return fatal("unable to mkdir ", n, "", &e);
    }
    if let Err(e) = std::fs::metadata(name).and_then(|m| {
        if m.is_dir() {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(libc::ENOTDIR))
        }
    }) {
        return fatal("unable to chdir to ", n, "", &e);
    }
    for sub in ["tmp", "new", "cur"] {
        if let Err(e) = b.create(name.join(sub)) {
            return fatal("unable to mkdir ", n, &format!("/{sub}"), &e);
        }
    }
    // Best effort: the names are made durable; a failure here changes nothing for the
    // caller, whose directories exist.
    let _ = qmail_queue::fsync_dir(name);
    let parent: PathBuf = match name.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let _ = qmail_queue::fsync_dir(&parent);
    Exit::OK
}

/// The whole program.
pub fn main() -> Exit {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let Some(name) = std::env::args_os().nth(1) else {
        let _ = std::io::stderr().write_all(b"maildirmake: usage: maildirmake name\n");
        return Exit::PERM;
    };
    let name: OsString = name;
    make(Path::new(&name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn makes_a_maildir() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("Maildir");
        assert_eq!(make(&m), Exit::OK);
        for s in ["tmp", "new", "cur"] {
            let md = std::fs::metadata(m.join(s)).unwrap();
            assert!(md.is_dir());
            assert_eq!(md.permissions().mode() & 0o777, 0o700);
        }
        assert_eq!(make(&m), Exit::TEMP);
    }
}
