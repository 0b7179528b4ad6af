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

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The permission bit that marks a held message's info file.
pub const HOLD_BIT: u32 = 0o100;

/// Whether an info file with this mode belongs to a held message.
pub fn is_held(mode: u32) -> bool {
    mode & HOLD_BIT != 0
}

/// Sets (`hold`) or clears the mark on the info file `path` and makes the change durable.
/// Returns whether the mode changed.
pub fn set(path: &Path, hold: bool) -> io::Result<bool> {
    let f = File::open(path)?;
    let mode = f.metadata()?.permissions().mode() & 0o7777;
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
        let mode = || std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert!(!is_held(mode()));
        assert!(set(&p, true).unwrap());
        assert_eq!(mode(), 0o700);
        assert!(is_held(mode()));
        assert!(!set(&p, true).unwrap());
        assert!(set(&p, false).unwrap());
        assert_eq!(mode(), 0o600);
        assert!(!set(&p, false).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"Fa@b\0");
        assert_eq!(
            set(&d.path().join("458"), true).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
