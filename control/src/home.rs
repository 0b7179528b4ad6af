//! QMAIL_HOME: the directory holding bin/, control/, queue/, users/ and alias/.
//!
//! The compiled-in default is `/var/qmail`, or the value of the `RQMAIL_HOME` variable at
//! build time (netqmail's conf-qmail). The environment variable `QMAIL_HOME` overrides it,
//! but only in a process that runs without setuid/setgid privilege: a setuid qmail-queue
//! must never let the invoking user choose where it writes.

use std::ffi::OsString;
use std::path::PathBuf;

/// The home directory compiled into the programs.
pub const DEFAULT_HOME: &str = match option_env!("RQMAIL_HOME") {
    Some(h) => h,
    None => "/var/qmail",
};

/// True when this process runs with privilege it did not inherit from its invoker:
/// real and effective ids differ, or the kernel set AT_SECURE.
pub fn privileged_exec() -> bool {
    nix::unistd::getuid() != nix::unistd::geteuid()
        || nix::unistd::getgid() != nix::unistd::getegid()
        || crate::sys::at_secure()
}

/// The qmail home this process uses.
pub fn qmail_home() -> PathBuf {
    home_from(std::env::var_os("QMAIL_HOME"), privileged_exec())
}

/// The rule behind [`qmail_home`], separated for tests: an absolute, non-empty
/// `QMAIL_HOME` wins unless the process is privileged.
pub fn home_from(env: Option<OsString>, privileged: bool) -> PathBuf {
    if !privileged && let Some(h) = env {
        let p = PathBuf::from(h);
        if p.is_absolute() {
            return p;
        }
    }
    PathBuf::from(DEFAULT_HOME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_only_when_unprivileged() {
        let env = Some(OsString::from("/tmp/q"));
        assert_eq!(home_from(env.clone(), false), PathBuf::from("/tmp/q"));
        assert_eq!(home_from(env, true), PathBuf::from(DEFAULT_HOME));
        assert_eq!(home_from(None, false), PathBuf::from(DEFAULT_HOME));
    }

    #[test]
    fn relative_or_empty_env_is_ignored() {
        assert_eq!(
            home_from(Some("".into()), false),
            PathBuf::from(DEFAULT_HOME)
        );
        assert_eq!(
            home_from(Some("q".into()), false),
            PathBuf::from(DEFAULT_HOME)
        );
    }
}
