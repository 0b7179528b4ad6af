//! qmail-start: starts qmail-send, qmail-lspawn, qmail-rspawn and qmail-clean with
//! netqmail's descriptors and ids, and optionally a logger fed with qmail-send's
//! activity record.
//!
//! Descriptors, as netqmail arranges them:
//!
//! ```text
//! qmail-send   0 log (qmail-start's descriptor 1, or the logger's pipe)
//!              1 -> qmail-lspawn 0      2 <- qmail-lspawn 1
//!              3 -> qmail-rspawn 0      4 <- qmail-rspawn 1
//!              5 -> qmail-clean 0       6 <- qmail-clean 1
//! logger       0 <- qmail-send 0, 1 qmail-start's descriptor 1, 2 closed
//! ```
//!
//! Ids in root mode: everything runs with group qmail (supplementary groups: just qmail);
//! qmail-send as qmails, qmail-lspawn stays root, qmail-rspawn as qmailr, qmail-clean as
//! qmailq, the logger as qmaill with group nofiles. In single-user mode nobody switches.

use crate::sys::{self, Forked};
use control::Exit;
use control::Ids;
use nix::unistd::{Gid, Uid};
use std::ffi::{CString, OsString};
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

fn die() -> ! {
    std::process::exit(Exit::TEMP.code())
}

fn prot_gid(g: Gid) -> bool {
    nix::unistd::setgroups(&[g]).is_ok() && nix::unistd::setgid(g).is_ok()
}

fn prot_uid(u: Uid) -> bool {
    nix::unistd::setuid(u).is_ok()
}

fn cstring(s: OsString) -> CString {
    CString::new(s.into_vec()).unwrap_or_else(|_| die())
}

fn pipe_raw() -> (RawFd, RawFd) {
    match nix::unistd::pipe() {
        Ok((r, w)) => (r.into_raw_fd(), w.into_raw_fd()),
        Err(_) => die(),
    }
}

fn close23456() {
    for fd in 2..=6 {
        sys::close_raw(fd);
    }
}

/// Empties the capability bounding set of a process about to take a qmail uid (only root
/// can; qmail-lspawn, which stays root, keeps CAP_SETUID and CAP_SETGID), so that nothing
/// it ever executes, setuid-root programs included, gains another capability.
fn limit_bounding_set(name: &str) {
    use caps::Capability::{CAP_SETGID, CAP_SETUID};
    let keep: &[caps::Capability] = if name == "qmail-lspawn" {
        &[CAP_SETUID, CAP_SETGID]
    } else {
        &[]
    };
    let _ = control::confine::Policy::new().bounding_set(keep).apply();
}

/// Where the system keeps programs and their libraries: qmail-send may execute
/// bin/qmail-queue, which may be a script or a dynamically linked program.
const SYSTEM_EXEC: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// qmail-send's Landlock rules (qmail-send(8), CONFINEMENT): reading and writing the
/// queue, reading control/ and executing bin/ (and what their symbolic links point to
/// now), executing the system's programs and libraries, reading /etc and the random devices, writing
/// /dev/null. `None` when `QMAILQUEUE` names another program for the bounces (it runs in
/// qmail-send's domain and may need anything). Set by qmail-start, which as root may
/// (CAP_SYS_ADMIN) without no_new_privs, so that the setuid qmail-queue keeps working;
/// in single-user mode with no_new_privs (no program is setuid there).
pub fn send_policy(home: &Path, root: bool) -> Option<control::confine::Policy> {
    use control::confine::{FsAccess, Policy};
    if std::env::var_os("QMAILQUEUE").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let mut p = Policy::new()
        .allow(home.join("queue"), FsAccess::ReadWrite)
        .allow_control(home)
        .allow_with_links(home.join("bin"), FsAccess::Exec)
        .allow("/etc", FsAccess::Read)
        .allow("/dev/null", FsAccess::ReadWrite)
        .allow_random_devices()
        .reparents();
    for d in SYSTEM_EXEC {
        p = p.allow(d, FsAccess::Exec);
    }
    Some(if root { p } else { p.no_new_privs() })
}

fn exec_daemon(home: &Path, name: &str, args: &[CString]) -> ! {
    sys::reset_signals_for_exec();
    let path = home.join("bin").join(name);
    let Ok(path) = CString::new(path.into_os_string().into_vec()) else {
        die()
    };
    let mut argv = vec![CString::new(name).unwrap_or_else(|_| die())];
    argv.extend_from_slice(args);
    let _ = nix::unistd::execv(&path, &argv);
    die()
}

/// The qmail-start program: `qmail-start [defaultdelivery [logger arg ...]]`.
pub fn main() -> Exit {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let root = control::root_mode();
    let ids = if root {
        match Ids::lookup() {
            Ok(ids) => ids,
            Err(e) => {
                eprintln!("qmail-start: fatal: {e}");
                return Exit::TEMP;
            }
        }
    } else {
        Ids::single_user()
    };
    let home = control::qmail_home();
    let switch = !ids.single_user;

    if std::env::set_current_dir("/").is_err() {
        die();
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    if switch && !prot_gid(ids.qmail) {
        die();
    }
    for fd in 2..=6 {
        if sys::dup_to(0, fd).is_err() {
            die();
        }
    }

    let mut lspawn_arg = cstring(OsString::from("./Mailbox"));
    if !args.is_empty() {
        lspawn_arg = cstring(args.remove(0));
    }

    if !args.is_empty() {
        let logger: Vec<CString> = args.into_iter().map(cstring).collect();
        let (r, w) = pipe_raw();
        match sys::fork() {
            Err(_) => die(),
            Ok(Forked::Child) => {
                if switch {
                    limit_bounding_set("logger");
                }
                if switch && (!prot_gid(ids.nofiles) || !prot_uid(ids.qmaill)) {
                    die();
                }
                sys::close_raw(w);
                if sys::dup_to(r, 0).is_err() {
                    die();
                }
                sys::close_raw(r);
                close23456();
                sys::reset_signals_for_exec();
                let _ = nix::unistd::execvp(&logger[0], &logger);
                die();
            }
            Ok(Forked::Parent) => {}
        }
        sys::close_raw(r);
        if sys::dup_to(w, 1).is_err() {
            die();
        }
        sys::close_raw(w);
    }

    let p: Vec<(RawFd, RawFd)> = (0..6).map(|_| pipe_raw()).collect();
    let closepipes = || {
        for (r, w) in &p {
            sys::close_raw(*r);
            sys::close_raw(*w);
        }
    };
    // (program, descriptor 0, descriptor 1, uid to take, whether descriptor 2 is the log)
    // qmail-rspawn's descriptor 2 is the log (qmail-send's descriptor 0), where it lets
    // qmail-remote write the diagnostics control/loglevel asks for; the other daemons
    // have none, as in netqmail.
    let daemons: [(&str, RawFd, RawFd, Option<Uid>, bool); 3] = [
        ("qmail-lspawn", p[0].0, p[1].1, None, false),
        ("qmail-rspawn", p[2].0, p[3].1, Some(ids.qmailr), true),
        ("qmail-clean", p[4].0, p[5].1, Some(ids.qmailq), false),
    ];
    for (name, fd0, fd1, uid, log_on_2) in daemons {
        match sys::fork() {
            Err(_) => die(),
            Ok(Forked::Child) => {
                if switch {
                    limit_bounding_set(name);
                }
                if switch
                    && let Some(u) = uid
                    && !prot_uid(u)
                {
                    die();
                }
                if log_on_2 && sys::dup_to(1, 2).is_err() {
                    die();
                }
                if sys::dup_to(fd0, 0).is_err() || sys::dup_to(fd1, 1).is_err() {
                    die();
                }
                for fd in if log_on_2 { 3 } else { 2 }..=6 {
                    sys::close_raw(fd);
                }
                closepipes();
                let args = if name == "qmail-lspawn" {
                    vec![lspawn_arg.clone()]
                } else {
                    Vec::new()
                };
                exec_daemon(&home, name, &args);
            }
            Ok(Forked::Parent) => {}
        }
    }

    if switch {
        limit_bounding_set("qmail-send");
    }
    // Before qmails: without no_new_privs only root may install Landlock rules.
    if let Some(policy) = send_policy(&home, switch) {
        let _ = policy.apply();
    }
    if switch && !prot_uid(ids.qmails) {
        die();
    }
    let plan = [
        (1, 0),
        (p[0].1, 1),
        (p[1].0, 2),
        (p[2].1, 3),
        (p[3].0, 4),
        (p[4].1, 5),
        (p[5].0, 6),
    ];
    for (from, to) in plan {
        if sys::dup_to(from, to).is_err() {
            die();
        }
    }
    closepipes();
    exec_daemon(&home, "qmail-send", &[])
}
