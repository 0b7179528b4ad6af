//! netqmail's texts for system errors (its error_str), which its programs print after a
//! colon in their messages: `file does not exist`, `access denied`, ... Programs whose
//! messages are an interface print these rather than the C library's wording.

use std::io;

/// netqmail's text for the error's errno (the errors file and directory operations meet);
/// "unknown error" otherwise, as netqmail says for an errno it does not list.
pub fn error_str(e: &io::Error) -> &'static str {
    let Some(n) = e.raw_os_error() else {
        return "unknown error";
    };
    match n {
        0 => "no error",
        libc::EINTR => "interrupted system call",
        libc::ENOMEM => "out of memory",
        libc::ENOENT => "file does not exist",
        libc::ETXTBSY => "text busy",
        libc::EIO => "input/output error",
        libc::EEXIST => "file already exists",
        libc::ETIMEDOUT => "timed out",
        libc::EINPROGRESS => "operation in progress",
        libc::EAGAIN => "temporary failure",
        libc::EPIPE => "broken pipe",
        libc::EPERM => "permission denied",
        libc::EACCES => "access denied",
        libc::ENXIO => "device not configured",
        libc::EBADF => "file descriptor not open",
        libc::EFAULT => "bad address",
        libc::EBUSY => "device busy",
        libc::EXDEV => "cross-device link",
        libc::ENODEV => "device does not support operation",
        libc::ENOTDIR => "not a directory",
        libc::EISDIR => "is a directory",
        libc::EINVAL => "invalid argument",
        libc::ENFILE => "system cannot open more files",
        libc::EMFILE => "process cannot open more files",
        libc::EFBIG => "file too big",
        libc::ENOSPC => "out of disk space",
        libc::EROFS => "read-only file system",
        libc::EMLINK => "too many links",
        libc::ELOOP => "symbolic link loop",
        libc::ENAMETOOLONG => "file name too long",
        libc::ENOTEMPTY => "directory not empty",
        libc::EDQUOT => "disk quota exceeded",
        libc::ESTALE => "stale NFS file handle",
        libc::ENOLCK => "no locks available",
        libc::ENOSYS => "system call not available",
        _ => "unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        assert_eq!(
            error_str(&io::Error::from_raw_os_error(libc::ENOENT)),
            "file does not exist"
        );
        assert_eq!(
            error_str(&io::Error::from_raw_os_error(libc::EACCES)),
            "access denied"
        );
        assert_eq!(
            error_str(&io::Error::from_raw_os_error(libc::EISDIR)),
            "is a directory"
        );
        assert_eq!(error_str(&io::Error::other("x")), "unknown error");
    }
}
