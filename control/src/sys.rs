//! The one place in this crate that calls into libc without a safe wrapper.

/// True when the kernel marked this process as running with elevated privilege
/// (setuid, setgid or file capabilities): `getauxval(AT_SECURE)`.
pub(crate) fn at_secure() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave this process;
    // it takes a plain integer, has no preconditions and returns 0 for unknown types.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Which of descriptors 0, 1 and 2 are not open: one poll(2), as the Rust runtime does.
pub(crate) fn closed_std_fds() -> [bool; 3] {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    loop {
        // SAFETY: `fds` is a valid array of three pollfd structures that lives across the
        // call, and its length is passed with it; a timeout of 0 never blocks.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
        if r >= 0 {
            return fds.map(|p| p.revents & libc::POLLNVAL != 0);
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // poll itself failed: ask each descriptor.
            // SAFETY: F_GETFD takes no pointer and only reports on the descriptor.
            return [0, 1, 2].map(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1);
        }
    }
}

/// Makes SIGPIPE ignored, so that writing to a peer that went away is an EPIPE error.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: SIG_IGN installs no handler function; signal(2) only records the
    // disposition, which is what the Rust runtime itself sets in an ordinary main.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}
