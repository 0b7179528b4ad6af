//! The durable steps: a file's data and, on Linux, the directory entry that names it.

use std::fs::File;
use std::io;
use std::path::Path;

/// fsyncs the directory `dir`, making the names created or removed in it durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fsyncs the directory that holds `path`.
pub fn fsync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => fsync_dir(p),
        _ => fsync_dir(Path::new(".")),
    }
}
