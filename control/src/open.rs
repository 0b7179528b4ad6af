//! Opening queue files the way netqmail's open_read and open_write do: never waiting.
//!
//! A queue file can be anything after a disk error, a hand edit or another program's bug.
//! A plain `open(2)` of a FIFO waits for the other end, for ever, and with it the whole
//! daemon; netqmail opens with `O_NDELAY`, so a FIFO opened for reading reads as empty and
//! one opened for writing fails (`ENXIO`, "device not configured"). These do the same,
//! with `O_CLOEXEC`. [`open_read`] also refuses a device or a socket (`ENXIO`): a
//! symbolic link to `/dev/zero` in the queue would otherwise be read, or copied into a
//! bounce, without end. A directory opens, and reading it fails (`EISDIR`), as in
//! netqmail.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` for reading without waiting for a FIFO's writer; a device or socket is
/// refused with `ENXIO`.
pub fn open_read(path: impl AsRef<Path>) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    reject_device(f)
}

/// `f`, unless it is a device or a socket (`ENXIO`): for readers that open queue files
/// their own way (relative to a directory descriptor, say).
pub fn reject_device(f: File) -> io::Result<File> {
    let t = f.metadata()?.file_type();
    if t.is_char_device() || t.is_block_device() || t.is_socket() {
        return Err(io::Error::from_raw_os_error(libc::ENXIO));
    }
    Ok(f)
}

/// Opens an existing `path` for writing without waiting for a FIFO's reader (a FIFO
/// without one is `ENXIO`).
pub fn open_write(path: impl AsRef<Path>) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Options for [`OpenOptions::open`] that never wait on a FIFO: start from these for
/// the other ways of opening a queue file (appending, creating).
pub fn nonblocking() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.custom_flags(libc::O_NONBLOCK);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn fifos_never_wait_devices_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let mut data = Vec::new();
        open_read(&fifo)
            .expect("a FIFO opens at once")
            .read_to_end(&mut data)
            .expect("and reads as empty");
        assert!(data.is_empty());
        assert_eq!(
            open_write(&fifo).expect_err("no reader").raw_os_error(),
            Some(libc::ENXIO)
        );
        for dev in ["/dev/zero", "/dev/null"] {
            assert_eq!(
                open_read(dev).expect_err(dev).raw_os_error(),
                Some(libc::ENXIO)
            );
        }
        let link = d.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        assert!(open_read(&link).is_err());
        let mut dir = open_read(d.path()).expect("a directory opens");
        assert_eq!(
            dir.read(&mut [0u8; 8])
                .expect_err("and cannot be read")
                .raw_os_error(),
            Some(libc::EISDIR)
        );
        let file = d.path().join("file");
        std::fs::write(&file, b"Fx\0").expect("write");
        let mut s = String::new();
        open_read(&file)
            .expect("file")
            .read_to_string(&mut s)
            .expect("read");
        assert_eq!(s, "Fx\0");
        open_write(&file)
            .expect("file")
            .write_all(b"D")
            .expect("write");
        assert_eq!(std::fs::read(&file).expect("read"), b"Dx\0");
        let mut f = nonblocking()
            .append(true)
            .create(true)
            .open(d.path().join("new"))
            .expect("append");
        f.write_all(b"x").expect("write");
    }
}
