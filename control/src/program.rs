//! The start of the short-lived programs (qmail-queue, qmail-smtpd, qmail-local,
//! qmail-remote, ...): each of them runs once per message or connection, so its start-up
//! is part of every message's cost.
//!
//! Their binaries define the C `main` with [`program_main!`](crate::program_main) instead
//! of using Rust's `fn main`. That skips the runtime's work a qmail program has no use for
//! (finding the main thread's stack guard by reading /proc/self/maps, an alternate signal
//! stack for stack-overflow reports, naming the main thread) and keeps what matters,
//! done by [`start`]: descriptors 0, 1 and 2 are open (on /dev/null if they were closed,
//! so that a file a setuid program opens can never become its standard error), and
//! SIGPIPE is ignored. Arguments and environment are read through std as usual (glibc
//! hands them to it), and `std::process::exit` flushes standard output as always.

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use std::fs::OpenOptions;
use std::os::fd::{BorrowedFd, IntoRawFd};

/// What every short-lived program does first; see the module documentation.
pub fn start() {
    for (fd, closed) in (0..).zip(crate::sys::closed_std_fds()) {
        if closed {
            // The lowest free descriptor is `fd`: the ones below it are open by now. It
            // stays open across exec (std opens with close-on-exec), so that the programs
            // this one starts find it open too.
            let null = OpenOptions::new().read(true).write(true).open("/dev/null");
            let inherited = null.and_then(|f| {
                fcntl(&f, FcntlArg::F_SETFD(FdFlag::empty()))?;
                Ok(f.into_raw_fd())
            });
            match inherited {
                Ok(got) if got == fd => {}
                _ => std::process::abort(),
            }
        }
    }
    crate::sys::ignore_sigpipe();
}

/// Descriptor 0, without std's `io::stdin()` handle and its 8 KiB buffer (for programs
/// that read their input with their own buffer and timeouts).
pub fn stdin_fd() -> BorrowedFd<'static> {
    crate::sys::std_fd(0)
}

/// Descriptor 1, without std's `io::stdout()` handle and its buffer.
pub fn stdout_fd() -> BorrowedFd<'static> {
    crate::sys::std_fd(1)
}

/// True when descriptor 2 leads somewhere other than descriptors 0 and 1. A network
/// server started by inetd has its client on all three: its diagnostics must then go
/// nowhere rather than to the client. (Decided once per process.)
pub fn stderr_is_private() -> bool {
    use nix::sys::stat::{FileStat, fstat};
    static PRIVATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PRIVATE.get_or_init(|| {
        let id = |st: FileStat| (st.st_dev, st.st_ino);
        let Ok(err) = fstat(crate::sys::std_fd(2)).map(id) else {
            return false;
        };
        let same = |r: nix::Result<FileStat>| r.map(id).ok() == Some(err);
        !same(fstat(stdin_fd())) && !same(fstat(stdout_fd()))
    })
}

/// True when descriptor 2 is not the pipe or socket that descriptor 1 is: qmail-rspawn
/// gives qmail-remote (and qmail-lspawn gives qmail-local) one pipe as both, and what
/// goes there is read as the program's report, so diagnostics must not. A terminal shared
/// by both is a place for diagnostics. (Decided once per process.)
pub fn stderr_is_not_output() -> bool {
    use nix::sys::stat::{SFlag, fstat};
    use std::os::fd::AsFd;
    static APART: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *APART.get_or_init(|| {
        let Ok(err) = fstat(std::io::stderr().as_fd()) else {
            return false;
        };
        let Ok(out) = fstat(std::io::stdout().as_fd()) else {
            return true;
        };
        let kind = SFlag::from_bits_truncate(err.st_mode) & SFlag::S_IFMT;
        let shared = (err.st_dev, err.st_ino) == (out.st_dev, out.st_ino);
        !shared || !(kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK)
    })
}

/// Defines a program's C `main`: [`start`], then the function given, whose
/// [`Exit`](crate::Exit) is the exit code. The binary's crate root must say
/// `#![cfg_attr(not(test), no_main)]`.
///
/// ```ignore
/// #![cfg_attr(not(test), no_main)]
/// control::program_main!(qmail_queue::qmail_queue);
/// ```
#[macro_export]
macro_rules! program_main {
    ($main:path) => {
        // SAFETY: exporting the symbol `main` is sound because the binary has no other
        // (`#![no_main]`), and this function has the signature the C runtime calls
        // `main` with; it never unwinds (process::exit does not return).
        // Under `cargo test` the bin's test harness brings its own main.
        #[cfg(not(test))]
        #[unsafe(no_mangle)]
        extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            $crate::program_start();
            ::std::process::exit($crate::Exit::code($main()))
        }
    };
}
