//! The one place in this crate that calls into libc without a safe wrapper.

/// True when the kernel marked this process as running with elevated privilege
/// (setuid, setgid or file capabilities): `getauxval(AT_SECURE)`.
pub(crate) fn at_secure() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave this process;
    // it takes a plain integer, has no preconditions and returns 0 for unknown types.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}
