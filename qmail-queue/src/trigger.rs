//! lock/trigger: the named pipe qmail-queue writes one byte to so qmail-send wakes up.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes a byte to `queue/lock/trigger` without blocking. Failure is ignored, as in
/// netqmail: qmail-send also scans todo/ on its own schedule.
pub fn pull(queue: &Path) {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(queue.join("lock/trigger"));
    if let Ok(mut f) = f {
        let _ = f.write(&[0]);
    }
}
