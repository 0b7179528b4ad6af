//! The qmail-popup program: `qmail-popup hostname subprogram...` with the client on
//! descriptors 0 and 1.
//!
//! netqmail's qmail-popup runs as root (its subprogram, checkpassword, must be able to
//! become any user) and reads the client's commands as root. rqmail's splits that job
//! in two processes at the start:
//!
//! * the **worker** talks to the client: the TLS handshake (POP3S or after STLS), the
//!   dialogue of [`crate::popup`], and after a successful login over TLS the relay
//!   between the client and the subprogram. As root it first drops to qmaild (group
//!   nofiles), so nothing a stranger sends is parsed with privileges;
//! * the **parent** keeps the ids it was started with and never reads from the client.
//!   It waits for the worker's one message (`P` or `T`, the user name, a NUL, the
//!   password, a NUL; bounded and checked), runs the subprogram with the checkpassword
//!   interface and waits for it, then reports a failure as netqmail does
//!   (`-ERR authorization failed`, `-ERR aack, child crashed`).
//!
//! Without TLS the subprogram gets the client's descriptors themselves, as in netqmail.
//! With TLS it gets one end of a socket pair (descriptors 0, 1 and 2), and the worker
//! moves the bytes between that and the TLS connection.
//!
//! Not started as root, nothing switches ids (single-user mode); everything else is the
//! same. The exit status is 1, as netqmail's always is.

use crate::checkpw::{self, Outcome};
use crate::command::MAX_LINE;
use crate::popup::{Event, Popup, PopupConfig, Stls, reply};
use crate::serve::{Ended, TIMEOUT, converse};
use crate::sys::{Forked, fork};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::wait::waitpid;
use nix::unistd::{Gid, Pid, Uid};
use qmail_tls::{FdTransport, TlsServer, TlsTransport, Transport};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

/// The exit status of qmail-popup, whatever happened (netqmail's).
pub(crate) const EXIT: control::Exit = control::Exit::FAILURE;
/// The longest message from the worker to the parent.
const MAX_LOGIN: usize = 2 * MAX_LINE + 3;

/// A diagnostic line: `qmail-popup: MSG` on descriptor 2 when that is not the client's
/// connection (see [`control::diagnostics`]).
pub(crate) fn log(msg: &str) {
    tracing::warn!("{msg}");
}

/// The user name and password the worker hands to the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The client speaks TLS: the subprogram gets the relay's socket, not the client's
    /// descriptors.
    pub tls: bool,
    pub user: Vec<u8>,
    pub pass: Vec<u8>,
}

impl Login {
    /// The worker's message: `P` or `T`, user, NUL, password, NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.user.len() + self.pass.len() + 3);
        v.push(if self.tls { b'T' } else { b'P' });
        v.extend_from_slice(&self.user);
        v.push(0);
        v.extend_from_slice(&self.pass);
        v.push(0);
        v
    }

    /// Reads the worker's message; `None` unless it is exactly that.
    pub fn decode(msg: &[u8]) -> Option<Login> {
        let (&mode, rest) = msg.split_first()?;
        let tls = match mode {
            b'P' => false,
            b'T' => true,
            _ => return None,
        };
        let rest = rest.strip_suffix(b"\0")?;
        let nul = rest.iter().position(|&c| c == 0)?;
        let (user, pass) = (&rest[..nul], &rest[nul + 1..]);
        if pass.contains(&0) {
            return None;
        }
        Some(Login {
            tls,
            user: user.to_vec(),
            pass: pass.to_vec(),
        })
    }

    /// What the subprogram reads on descriptor 3: user, password and `timestamp`, each
    /// followed by a NUL.
    pub fn fd3(&self, timestamp: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.user.len() + self.pass.len() + timestamp.len() + 3);
        for field in [&self.user[..], &self.pass, timestamp] {
            v.extend_from_slice(field);
            v.push(0);
        }
        v
    }
}

/// Everything read before the fork.
struct Setup {
    /// The subprogram and its arguments.
    argv: Vec<OsString>,
    popup: PopupConfig,
    /// POP3S: TLS from the first byte.
    pop3s: bool,
    server: Option<TlsServer>,
}

/// Says `msg` to the client in plaintext, unless the connection is POP3S (where a
/// plaintext line would only confuse the client's TLS); logs it either way.
fn refuse(pop3s: bool, msg: &[u8]) -> control::Exit {
    log(String::from_utf8_lossy(msg).trim_end());
    if !pop3s {
        let _ = io::stdout().write_all(msg);
    }
    EXIT
}

/// The program; returns the exit status.
pub(crate) fn main() -> control::Exit {
    let args: Vec<OsString> = std::env::args_os().collect();
    let home = control::qmail_home();
    control::diagnostics::init("qmail-popup", &home, control::stderr_is_private());
    let var = |name: &str| std::env::var_os(name).map(OsString::into_vec);
    let pop3s = var("POP3S").is_some_and(|v| !v.is_empty());
    if args.len() < 3 {
        return refuse(pop3s, reply::USAGE);
    }
    let configured = qmail_tls::configured(&home);
    let server = match pop3s || configured {
        false => None,
        true => match qmail_tls::load(&home, var("TLSCIPHERS").as_deref(), false) {
            Ok(Some(s)) => Some(s),
            Ok(None) => {
                log(&format!(
                    "TLS not available: {} does not exist",
                    qmail_tls::SERVERCERT
                ));
                None
            }
            Err(e) => {
                log(&format!("TLS not available: {e}"));
                None
            }
        },
    };
    if pop3s && server.is_none() {
        return EXIT;
    }
    let stls = match (configured, &server) {
        (false, _) => Stls::NotConfigured,
        (true, Some(_)) => Stls::Offered,
        (true, None) => Stls::Broken,
    };
    let mut timestamp = format!("<{}.{}@", std::process::id(), control::now()).into_bytes();
    timestamp.extend_from_slice(&args[1].clone().into_vec());
    timestamp.push(b'>');
    let setup = Setup {
        argv: args[2..].to_vec(),
        popup: PopupConfig {
            timestamp,
            stls,
            plaintext_passwords: var("FORCETLS").as_deref() == Some(b"0"),
        },
        pop3s,
        server,
    };
    run(&setup)
}

/// The worker's ids: qmaild and nofiles as root, none in single-user mode.
fn worker_ids() -> Result<Option<(Uid, Gid)>, control::IdError> {
    if !control::root_mode() {
        return Ok(None);
    }
    let ids = control::Ids::lookup()?;
    Ok(Some((ids.qmaild, ids.nofiles)))
}

fn drop_privileges(uid: Uid, gid: Gid) -> nix::Result<()> {
    nix::unistd::setgroups(&[gid])?;
    nix::unistd::setgid(gid)?;
    nix::unistd::setuid(uid)
}

fn run(setup: &Setup) -> control::Exit {
    let ids = match worker_ids() {
        Ok(ids) => ids,
        Err(e) => {
            log(&e.to_string());
            return refuse(setup.pop3s, reply::NO_IDS);
        }
    };
    let Ok((login_r, login_w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return refuse(setup.pop3s, reply::PIPE);
    };
    let pair = match &setup.server {
        None => None,
        Some(_) => match socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        ) {
            Ok(p) => Some(p),
            Err(_) => return refuse(setup.pop3s, reply::PIPE),
        },
    };
    match fork() {
        Err(_) => refuse(setup.pop3s, reply::FORK),
        Ok(Forked::Child) => {
            drop(login_r);
            let plain = pair.map(|(worker_end, _)| worker_end);
            if ids.is_some() {
                crate::confine::worker_bounding_set();
            }
            if let Some((uid, gid)) = ids
                && let Err(e) = drop_privileges(uid, gid)
            {
                log(&format!("unable to switch to qmaild: {e}"));
                std::process::exit(EXIT.code());
            }
            crate::confine::worker();
            std::process::exit(worker(setup, login_w, plain).code())
        }
        Ok(Forked::Parent(pid)) => {
            drop(login_w);
            let plain = pair.map(|(_, parent_end)| parent_end);
            parent(setup, pid, login_r, plain)
        }
    }
}

// --------------------------------------------------------------------------- worker

/// Runs the dialogue until it stops; `None` when the client went away.
fn dialogue<T: Transport>(p: &mut Popup, t: &mut T) -> Option<Event> {
    match converse(p, t, TIMEOUT) {
        Ended::Stopped => p.take_event(),
        Ended::Gone => None,
    }
}

/// Hands the login to the parent.
fn hand_over(to: OwnedFd, login: Login) -> io::Result<()> {
    let mut msg = login.encode();
    let r = File::from(to).write_all(&msg);
    msg.fill(0);
    std::hint::black_box(&msg);
    r
}

fn worker(setup: &Setup, login: OwnedFd, plain: Option<OwnedFd>) -> control::Exit {
    let stdin = io::stdin();
    let stdout = io::stdout();
    // Large writes: after a TLS login the worker relays whole messages.
    let fds = FdTransport::new(stdin.as_fd(), stdout.as_fd()).with_write_step(qmail_tls::READ_BUF);
    let mut p = Popup::new(setup.popup.clone());
    let accept = |what: &str| {
        let server = setup.server.as_ref()?;
        TlsTransport::accept(fds, server, TIMEOUT)
            .inspect_err(|e| log(&format!("{what}: TLS handshake failed: {e}")))
            .ok()
    };
    if setup.pop3s {
        let Some(tls) = accept("POP3S") else {
            return EXIT;
        };
        p.tls_started();
        p.greet();
        return over_tls(&mut p, tls, login, plain);
    }
    p.greet();
    let mut t = fds;
    match dialogue(&mut p, &mut t) {
        Some(Event::StartTls) => {
            let Some(tls) = accept("STLS") else {
                return EXIT;
            };
            p.tls_started();
            over_tls(&mut p, tls, login, plain)
        }
        Some(Event::Login { user, pass }) => {
            let login_msg = Login {
                tls: false,
                user,
                pass,
            };
            let _ = hand_over(login, login_msg);
            EXIT
        }
        _ => EXIT,
    }
}

fn over_tls(
    p: &mut Popup,
    mut tls: TlsTransport<FdTransport<'_>>,
    login: OwnedFd,
    plain: Option<OwnedFd>,
) -> control::Exit {
    match dialogue(p, &mut tls) {
        Some(Event::Login { user, pass }) => {
            let Some(plain) = plain else {
                return EXIT;
            };
            let login_msg = Login {
                tls: true,
                user,
                pass,
            };
            if hand_over(login, login_msg).is_err() {
                return EXIT;
            }
            if let Err(e) = tls.relay(plain.as_fd(), TIMEOUT) {
                if e.kind() != io::ErrorKind::TimedOut {
                    log(&format!("TLS relay: {e}"));
                }
                return EXIT;
            }
            tls.close(TIMEOUT);
        }
        Some(_) => tls.close(TIMEOUT),
        None => {}
    }
    EXIT
}

// --------------------------------------------------------------------------- parent

/// The worker's message, read to its end; `None` when there is none or it is too long.
fn read_login(from: OwnedFd) -> Option<Vec<u8>> {
    let mut msg = Vec::new();
    File::from(from)
        .take(MAX_LOGIN as u64 + 1)
        .read_to_end(&mut msg)
        .ok()?;
    (!msg.is_empty() && msg.len() <= MAX_LOGIN).then_some(msg)
}

fn reap(pid: Pid) {
    while let Err(nix::errno::Errno::EINTR) = waitpid(pid, None) {}
}

fn parent(setup: &Setup, worker: Pid, login: OwnedFd, plain: Option<OwnedFd>) -> control::Exit {
    let msg = read_login(login);
    let login = msg.as_deref().and_then(Login::decode);
    if let Some(mut m) = msg {
        m.fill(0);
        std::hint::black_box(&m);
    }
    let Some(login) = login else {
        drop(plain);
        reap(worker);
        return EXIT;
    };
    let stdin = io::stdin();
    let stdout = io::stdout();
    let (input, output) = match (&plain, login.tls) {
        (_, false) => {
            // The worker's part is over (it exits after its message).
            reap(worker);
            (stdin.as_fd(), stdout.as_fd())
        }
        (Some(p), true) => {
            // The worker holds the client's connection; the parent lets go of it, so
            // that it closes when the worker is done.
            if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stdin(&null);
                let _ = nix::unistd::dup2_stdout(&null);
            }
            (p.as_fd(), p.as_fd())
        }
        (None, true) => {
            reap(worker);
            return EXIT;
        }
    };
    let failure = subprogram(setup, &login, input, output);
    if let Some(msg) = failure {
        let _ = FdTransport::new(output, output).write_all(msg, TIMEOUT);
    }
    drop(plain);
    if login.tls {
        // The worker relays until the subprogram's side ends.
        reap(worker);
    }
    EXIT
}

/// Runs the subprogram for `login` and waits for it; returns netqmail's complaint when
/// it did not succeed.
fn subprogram(
    setup: &Setup,
    login: &Login,
    input: std::os::fd::BorrowedFd<'_>,
    output: std::os::fd::BorrowedFd<'_>,
) -> Option<&'static [u8]> {
    let (pid, mut w) = match checkpw::spawn(&setup.argv, input, output) {
        Ok(started) => started,
        Err(e) => {
            // netqmail's child would exit 1 when its exec fails.
            log(&e);
            return Some(reply::BAD_AUTH);
        }
    };
    let mut data = login.fd3(&setup.popup.timestamp);
    // A program that exits without reading gives EPIPE here.
    let wrote = w.write_all(&data);
    drop(w);
    data.fill(0);
    std::hint::black_box(&data);
    match (wrote, checkpw::wait(pid)) {
        (Err(_), _) => Some(reply::WRITE_PIPE),
        (_, Outcome::Crashed) => Some(reply::CRASHED),
        (_, Outcome::Exited(0)) => None,
        (_, Outcome::Exited(_)) => Some(reply::BAD_AUTH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn login_messages() {
        let l = Login {
            tls: true,
            user: b"joe".to_vec(),
            pass: b"se cret".to_vec(),
        };
        assert_eq!(l.encode(), b"Tjoe\0se cret\0");
        assert_eq!(Login::decode(&l.encode()), Some(l.clone()));
        assert_eq!(l.fd3(b"<1.2@h>"), b"joe\0se cret\0<1.2@h>\0");
        let empty = Login {
            tls: false,
            user: Vec::new(),
            pass: Vec::new(),
        };
        assert_eq!(Login::decode(b"P\0\0"), Some(empty));
        for bad in [
            &b""[..],
            b"P",
            b"Xa\0b\0",
            b"Pa\0b",
            b"Pab\0",
            b"Pa\0b\0c\0",
            b"Pa\0b\0\0",
        ] {
            assert_eq!(Login::decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn decode_takes_what_encode_gives(user in proptest::collection::vec(1u8..=255, 0..50),
                                          pass in proptest::collection::vec(1u8..=255, 0..50),
                                          tls in any::<bool>()) {
            let l = Login { tls, user, pass };
            prop_assert_eq!(Login::decode(&l.encode()), Some(l));
        }

        #[test]
        fn decode_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Some(l) = Login::decode(&msg) {
                prop_assert!(!l.user.contains(&0) && !l.pass.contains(&0));
                prop_assert_eq!(l.encode(), msg);
            }
        }
    }
}
