//! netqmail's texts for system errors (its error_str), which its programs print after a
//! colon in their messages (`file does not exist`, `access denied`, ...), and its rule for
//! which errors are temporary (error_temp). The words are an interface: they end up in
//! delivery reports, which qmail-send logs and copies into bounces.

use std::io;

/// netqmail's description of `errno`, or "unknown error".
pub fn errno_str(errno: i32) -> &'static str {
    use libc::*;
    // EAGAIN and EWOULDBLOCK are the same number on Linux; netqmail's table finds the
    // EAGAIN entry first.
    match errno {
        0 => "no error",
        EINTR => "interrupted system call",
        ENOMEM => "out of memory",
        ENOENT => "file does not exist",
        ETXTBSY => "text busy",
        EIO => "input/output error",
        EEXIST => "file already exists",
        ETIMEDOUT => "timed out",
        EINPROGRESS => "operation in progress",
        EAGAIN => "temporary failure",
        EPIPE => "broken pipe",
        EPERM => "permission denied",
        EACCES => "access denied",
        ESRCH => "no such process",
        ENXIO => "device not configured",
        E2BIG => "argument list too long",
        ENOEXEC => "exec format error",
        EBADF => "file descriptor not open",
        ECHILD => "no child processes",
        EDEADLK => "operation would cause deadlock",
        EFAULT => "bad address",
        ENOTBLK => "not a block device",
        EBUSY => "device busy",
        EXDEV => "cross-device link",
        ENODEV => "device does not support operation",
        ENOTDIR => "not a directory",
        EISDIR => "is a directory",
        EINVAL => "invalid argument",
        ENFILE => "system cannot open more files",
        EMFILE => "process cannot open more files",
        ENOTTY => "not a tty",
        EFBIG => "file too big",
        ENOSPC => "out of disk space",
        ESPIPE => "unseekable descriptor",
        EROFS => "read-only file system",
        EMLINK => "too many links",
        EDOM => "input out of range",
        ERANGE => "output out of range",
        EALREADY => "operation already in progress",
        ENOTSOCK => "not a socket",
        EDESTADDRREQ => "destination address required",
        EMSGSIZE => "message too long",
        EPROTOTYPE => "incorrect protocol type",
        ENOPROTOOPT => "protocol not available",
        EPROTONOSUPPORT => "protocol not supported",
        ESOCKTNOSUPPORT => "socket type not supported",
        EOPNOTSUPP => "operation not supported",
        EPFNOSUPPORT => "protocol family not supported",
        EAFNOSUPPORT => "address family not supported",
        EADDRINUSE => "address already used",
        EADDRNOTAVAIL => "address not available",
        ENETDOWN => "network down",
        ENETUNREACH => "network unreachable",
        ENETRESET => "network reset",
        ECONNABORTED => "connection aborted",
        ECONNRESET => "connection reset",
        ENOBUFS => "out of buffer space",
        EISCONN => "already connected",
        ENOTCONN => "not connected",
        ESHUTDOWN => "socket shut down",
        ETOOMANYREFS => "too many references",
        ECONNREFUSED => "connection refused",
        ELOOP => "symbolic link loop",
        ENAMETOOLONG => "file name too long",
        EHOSTDOWN => "host down",
        EHOSTUNREACH => "host unreachable",
        ENOTEMPTY => "directory not empty",
        EUSERS => "too many users",
        EDQUOT => "disk quota exceeded",
        ESTALE => "stale NFS file handle",
        EREMOTE => "too many levels of remote in path",
        ENOLCK => "no locks available",
        ENOSYS => "system call not available",
        ENOSTR => "not a stream device",
        ETIME => "timer expired",
        ENOSR => "out of stream resources",
        ENOMSG => "no message of desired type",
        EBADMSG => "bad message type",
        EIDRM => "identifier removed",
        ENONET => "machine not on network",
        ENOLINK => "link severed",
        EADV => "advertise error",
        ESRMNT => "srmount error",
        ECOMM => "communication error",
        EPROTO => "protocol error",
        EMULTIHOP => "multihop attempted",
        EREMCHG => "remote address changed",
        _ => "unknown error",
    }
}

/// netqmail's text for an I/O error's errno; "unknown error" when it carries none.
pub fn error_str(e: &io::Error) -> &'static str {
    e.raw_os_error().map_or("unknown error", errno_str)
}

/// The description of an I/O error: netqmail's words for system errors, the error's own
/// text otherwise.
pub fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_str(n).to_string(),
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof => "unexpected end of file".to_string(),
            _ => e.to_string(),
        },
    }
}

/// True for the errors netqmail treats as temporary (`error_temp`): trying again later
/// may succeed.
pub fn errno_temp(errno: i32) -> bool {
    use libc::*;
    matches!(
        errno,
        EINTR
            | ENOMEM
            | ETXTBSY
            | EIO
            | ETIMEDOUT
            | EAGAIN
            | EDEADLK
            | EBUSY
            | ENFILE
            | EMFILE
            | EFBIG
            | ENOSPC
            | ENETDOWN
            | ENETUNREACH
            | ENETRESET
            | ECONNABORTED
            | ECONNRESET
            | ENOBUFS
            | ETOOMANYREFS
            | ECONNREFUSED
            | EHOSTDOWN
            | EHOSTUNREACH
            | EUSERS
            | EDQUOT
            | ESTALE
            | ENOLCK
    )
}

/// [`errno_temp`] for an I/O error; an error without a system error number counts as
/// temporary (the safe side: the message stays in the queue).
pub fn is_temp(e: &io::Error) -> bool {
    e.raw_os_error().is_none_or(errno_temp)
}

/// [`errno_temp`] for an I/O error; an error without a system error number does not
/// count as temporary (netqmail's error_temp on an errno of 0).
pub fn error_temp(e: &io::Error) -> bool {
    e.raw_os_error().is_some_and(errno_temp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_classes() {
        assert_eq!(errno_str(libc::ENOENT), "file does not exist");
        assert_eq!(errno_str(libc::EACCES), "access denied");
        assert_eq!(errno_str(libc::EISDIR), "is a directory");
        assert_eq!(errno_str(libc::EWOULDBLOCK), "temporary failure");
        assert_eq!(errno_str(99999), "unknown error");
        assert_eq!(error_str(&io::Error::other("x")), "unknown error");
        assert_eq!(
            describe(&io::Error::from_raw_os_error(libc::ENOSPC)),
            "out of disk space"
        );
        assert_eq!(describe(&io::Error::other("x")), "x");
        assert!(errno_temp(libc::EDQUOT));
        assert!(errno_temp(libc::ENOSPC));
        assert!(!errno_temp(libc::ENOENT));
        assert!(!errno_temp(libc::EACCES));
        assert!(is_temp(&io::Error::other("x")));
        assert!(!error_temp(&io::Error::other("x")));
        assert!(error_temp(&io::Error::from_raw_os_error(libc::ENOSPC)));
    }
}
