//! What qmail-popup's worker and qmail-pop3d keep once they know their job
//! (qmail-popup(8) and qmail-pop3d(8), CONFINEMENT).
//!
//! Neither logs a step the kernel cannot do: qmail-send logs the lack once for the
//! whole mail system, and these programs start once per connection. A step that fails
//! for another reason is a debug diagnostic.

use control::confine::{FsAccess, Policy, syscalls};

/// qmail-pop3d, in the Maildir (its working directory) as the user: no_new_privs (it
/// runs no program), an empty capability bounding set when it can (as root), Landlock
/// limited to the Maildir and no TCP, and the system calls of a program that reads,
/// renames and removes files.
pub(crate) fn pop3d() {
    Policy::new()
        .no_new_privs()
        .bounding_set(&[])
        .allow(".", FsAccess::ReadWrite)
        .reparents()
        .deny_tcp()
        .syscalls(&[
            syscalls::RUNTIME,
            syscalls::FILES,
            syscalls::RENAME,
            syscalls::SOCKET_IO,
        ])
        .apply()
        .note_unexpected();
}

/// qmail-popup's worker, with qmaild's ids (root mode) or the invoker's, before it reads
/// a byte from the client: no_new_privs, Landlock with no file but the random devices
/// (the TLS keys are loaded before the fork), no TCP, and the system calls of a program
/// that talks over descriptors already open. The capability bounding set is emptied by
/// [`worker_bounding_set`] before the worker gives up root.
pub(crate) fn worker() {
    Policy::new()
        .no_new_privs()
        .allow_random_devices()
        .deny_tcp()
        .syscalls(&[syscalls::RUNTIME, syscalls::SOCKET_IO])
        .apply()
        .note_unexpected();
}

/// Empties the worker's capability bounding set while it is still root (root mode), so
/// that qmaild can never regain a capability.
pub(crate) fn worker_bounding_set() {
    Policy::new().bounding_set(&[]).apply().note_unexpected();
}
