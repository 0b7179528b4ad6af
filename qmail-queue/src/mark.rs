//! The hold mark: a held message's `info/S/N` has its owner-execute permission bit set.
//!
//! qmail-send creates every info file with mode 0600 (netqmail's too), and nothing but
//! rqmail's qmail-send and qmail-qctl ever looks at the mode of a queue file, so the bit
//! can carry the state without a new file or directory in the queue:
//!
//! * it is set and cleared with one `fchmod` (atomic) followed by an `fsync` of the file
//!   (durable before the request is answered);
//! * it lives and dies with the message: a new message that gets the same number has a
//!   new info file without the bit, so no stale mark can ever hold it;
//! * netqmail's qmail-qread and qmail-qstat read the file as before, and netqmail's
//!   qmail-send, which does not know the bit, simply delivers held messages.

use std::fs::Permissions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The permission bit that marks a held message's info file.
pub const HOLD_BIT: u32 = 0o100;

/// Whether an info file with this `st_mode` (file type bits included) belongs to a held
/// message: a regular file with the mark. Anything else at info/S/N (a directory, whose
/// owner-execute bit is usually set) is no hold.
pub fn is_held(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFREG && mode & HOLD_BIT != 0
}

/// Sets (`hold`) or clears the mark on the info file `path` and makes the change durable.
/// Returns whether the mode changed.
pub fn set(path: &Path, hold: bool) -> io::Result<bool> {
    let f = control::open_read(path)?;
    let md = f.metadata()?;
    if md.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    if !md.is_file() {
        return Err(io::Error::from_raw_os_error(libc::ENXIO));
    }
    let mode = md.permissions().mode() & 0o7777;
    let new = if hold {
        mode | HOLD_BIT
    } else {
        mode & !HOLD_BIT
    };
    if new == mode {
        return Ok(false);
    }
    f.set_permissions(Permissions::from_mode(new))?;
    f.sync_all()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_clear() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("457");
        std::fs::write(&p, b"Fa@b\0").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o600)).unwrap();
        let st_mode = || std::fs::metadata(&p).unwrap().permissions().mode();
        let mode = || st_mode() & 0o7777;
        assert!(!is_held(st_mode()));
        assert!(set(&p, true).unwrap());
        assert_eq!(mode(), 0o700);
        assert!(is_held(st_mode()));
        assert!(!is_held(0o700), "no file type: not a regular file");
        assert!(!set(&p, true).unwrap());
        assert!(set(&p, false).unwrap());
        assert_eq!(mode(), 0o600);
        assert!(!set(&p, false).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"Fa@b\0");
        assert_eq!(
            set(&d.path().join("458"), true).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // A directory where the info file should be: no hold, and none made.
        let dir = d.path().join("459");
        std::fs::create_dir(&dir).unwrap();
        assert!(!is_held(
            std::fs::metadata(&dir).unwrap().permissions().mode()
        ));
        assert_eq!(
            set(&dir, true).unwrap_err().raw_os_error(),
            Some(libc::EISDIR)
        );
    }
}
