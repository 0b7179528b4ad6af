//! The one call of qmail-pop3 that needs `unsafe`.

use nix::unistd::{ForkResult, Pid};

/// Which side of [`fork`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    Parent(Pid),
    Child,
}

/// fork(2).
pub(crate) fn fork() -> nix::Result<Forked> {
    // SAFETY: qmail-popup forks before it has started any thread (it never starts one,
    // and neither do rustls or std on its behalf), so the child is a complete copy of a
    // single-threaded process and may run any code, allocation included.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}
