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

/// Descriptor `fd` (0, 1 or 2) borrowed for the rest of the process, as std's
/// `Stdin::as_fd` and `Stdout::as_fd` do it, without creating those handles (whose
/// buffers, 8 KiB and 1 KiB, are allocated with them).
pub(crate) fn std_fd(fd: std::os::fd::RawFd) -> std::os::fd::BorrowedFd<'static> {
    assert!((0..=2).contains(&fd), "not a standard descriptor: {fd}");
    // SAFETY: descriptors 0, 1 and 2 stay open for the whole process: program::start
    // opens /dev/null on any of them that was closed, and nothing in these programs
    // closes them (std's own handles rely on the same).
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Makes SIGPIPE ignored, so that writing to a peer that went away is an EPIPE error.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: SIG_IGN installs no handler function; signal(2) only records the
    // disposition, which is what the Rust runtime itself sets in an ordinary main.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// True when this program was linked statically (README.md, "How the programs are
/// linked"): no dynamic loader was started for it, so the auxiliary vector's AT_BASE (the
/// loader's address) is 0.
pub(crate) fn linked_statically() -> bool {
    // SAFETY: as in at_secure: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(libc::AT_BASE) == 0 }
}

unsafe extern "C" {
    /// glibc's override of /etc/nsswitch.conf for one database (nss.h).
    fn __nss_configure_lookup(
        db: *const std::ffi::c_char,
        service_line: *const std::ffi::c_char,
    ) -> std::ffi::c_int;
}

/// Makes the password and group databases come from /etc/passwd and /etc/group only.
/// A statically linked glibc reads those files itself, but for any other source named in
/// /etc/nsswitch.conf (systemd, sss, ldap) it loads that module's shared library, which
/// brings a second, dynamic C library into the process: a lookup that misses the files
/// and reaches such a module crashes it (SIGSEGV, seen with Debian 12's `passwd: files
/// systemd`).
pub(crate) fn nss_files_only() {
    for db in [c"passwd", c"group"] {
        // SAFETY: both arguments are NUL-terminated strings that live for the whole
        // program ('static); glibc copies what it keeps. Called before any lookup, from
        // the start of a single-threaded program or under a Once.
        unsafe { __nss_configure_lookup(db.as_ptr(), c"files".as_ptr()) };
    }
}

/// The Landlock ABI version of this kernel, 0 when it has no Landlock (or has it
/// disabled): `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
pub(crate) fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with the VERSION flag the kernel reads neither the (null) attribute pointer
    // nor the size; the call creates nothing and returns the ABI version or -1.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    r.max(0)
}

/// Whether this kernel has seccomp: `prctl(PR_GET_SECCOMP)` answers the calling
/// thread's mode (0, 1 or 2) where it has, EINVAL where it has not. Asked this way,
/// not through /proc/self/status, because a process under Landlock (qmail-send) may not
/// read /proc.
pub(crate) fn seccomp_supported() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer argument; the unused ones are zero.
    let r = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    r >= 0
}

/// Ok when this process has exactly one thread (the entries of /proc/self/task), the
/// precondition of [`fork`] and [`set_environment`].
fn single_threaded() -> std::io::Result<()> {
    let n = std::fs::read_dir("/proc/self/task")?.count();
    if n == 1 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the process has {n} threads, not one"
        )))
    }
}

/// fork(2) for a single-threaded process: an error (and no fork) when the process has
/// other threads than the caller, or when fork itself fails.
pub fn fork() -> std::io::Result<nix::unistd::ForkResult> {
    single_threaded()?;
    // SAFETY: fork is unsafe because in a multi-threaded process the child holds a copy
    // of memory other threads may have left inconsistent (locks held, allocator state),
    // and may then only call async-signal-safe functions. Checked just above: this
    // process has one thread, the caller, so nothing is half-done in another thread and
    // the child may do anything the parent could.
    unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)
}

/// Sets (`Some`) or removes (`None`) environment variables of this process, for the
/// programs it runs and for its own later reads; an error (and no change) when the
/// process has other threads than the caller.
pub fn set_environment(
    vars: &[(&std::ffi::OsStr, Option<&std::ffi::OsStr>)],
) -> std::io::Result<()> {
    single_threaded()?;
    for (name, value) in vars {
        let bad = name.is_empty()
            || name.as_encoded_bytes().contains(&b'=')
            || name.as_encoded_bytes().contains(&0)
            || value.is_some_and(|v| v.as_encoded_bytes().contains(&0));
        if bad {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an environment variable's name is empty or has = or NUL, or its value NUL",
            ));
        }
    }
    for (name, value) in vars {
        // SAFETY: set_var and remove_var are unsafe because another thread could read
        // the environment (getenv) at the same moment. This process has one thread
        // (checked above), the caller, which is not reading it; the names and values
        // were checked above, so neither call panics.
        unsafe {
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
    }
    Ok(())
}

/// Gives each of `signals` its default disposition (SIG_DFL), whatever this process
/// inherited: a server that waits for its children must not inherit SIGCHLD ignored
/// (the kernel would then reap them itself), nor SIGTERM ignored.
pub fn default_signals(signals: &[nix::sys::signal::Signal]) -> std::io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for &s in signals {
        // SAFETY: SIG_DFL installs no handler function, so no code of this program can
        // run in signal context because of it; sigaction only records the disposition.
        unsafe { sigaction(s, &dfl) }.map_err(std::io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_with_a_second_thread() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let name = std::ffi::OsStr::new("RQMAIL_SYS_TEST");
        let e = set_environment(&[(name, Some(name))]).unwrap_err();
        assert!(e.to_string().contains("threads"), "{e}");
        assert!(std::env::var_os(name).is_none());
        assert!(fork().is_err());
        tx.send(()).unwrap();
        t.join().unwrap().unwrap();
    }
}
