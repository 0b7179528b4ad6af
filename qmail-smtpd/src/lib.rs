//! qmail-smtpd: receive mail via SMTP and hand it to qmail-queue (qmail-smtpd(8)).
//!
//! The dialogue is netqmail 1.06's, reply for reply. The parts:
//!
//! * `command`: a command line split into verb and argument;
//! * `addr`: the address in a MAIL or RCPT argument;
//! * `blast`: the DATA phase (dot-unstuffing, CR LF to LF, hop counting, size limit);
//! * `received`: the Received header field this program adds;
//! * `config`: control files and environment variables, read at startup;
//! * `ipme`: this host's addresses, for control/localiphost;
//! * `session`: the dialogue as a state machine without I/O;
//! * `transport`: timeouts, reads and batched replies on descriptors 0 and 1;
//! * STARTTLS and SMTPS with rustls over the same transport, from the `qmail_tls` library;
//! * `auth`, `checkpw`: SMTP AUTH with a checkpassword program;
//! * `rcptcheck`: recipient validation at RCPT time;
//! * `qmqpd`, `qmtpd`, `quick`: the QMQP and QMTP servers, qmail-qmqpd and qmail-qmtpd,
//!   which share the Received field and the queue client with SMTP;
//! * `server`: qmail-smtpd-server, the tcpserver-like front end that forks a session per
//!   connection without exec and loads the TLS configuration once.
//!
//! The program writes nothing but SMTP replies to the client. Diagnostics for the
//! administrator (an unreadable control file, qmail-queue that cannot be started) go to
//! descriptor 2, unless descriptor 2 is the client's connection itself (as under inetd).

#![forbid(unsafe_code)]

mod addr;
mod auth;
mod blast;
mod checkpw;
mod command;
mod config;
mod ipme;
mod qmqpd;
mod qmtpd;
mod quick;
mod rcptcheck;
mod received;
mod server;
mod session;
mod transport;
mod utf8;

/// The parsers of untrusted input and the session machine, for the fuzz targets.
pub use addr::{
    MAX_ADDR, extract_rest as extract_address, parse_any as parse_address, scan_bracket6, scan_ip,
    size_param,
};
pub use blast::{Blast, Progress};
pub use config::{Config, Remote};
pub use qmqpd::{Outcome as QmqpOutcome, serve as qmqp_serve};
pub use qmtpd::{Config as QmtpConfig, serve as qmtp_serve};

pub use qmqpd::main as qmail_qmqpd;
pub use qmtpd::main as qmail_qmtpd;
pub use server::main as qmail_smtpd_server;
pub use session::{Backend, Message, Session};

use config::{Env, SetupError};
use qmail_tls::{FdTransport, TlsTransport, Transport};
use rcptcheck::RcptCheck;
use session::Exit;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use transport::{Served, serve_session};

/// The variable that tells the queue program (qmail-dkim, say) that the client
/// authenticated with SMTP AUTH, and as whom.
pub const SMTPAUTHUSER: &str = "SMTPAUTHUSER";

/// The variable that tells the queue program (qmail-authverify, say) the client's last
/// HELO/EHLO argument.
pub const SMTPHELO: &str = "SMTPHELO";

/// A client's string for the queue program's environment: at most 255 bytes, each byte
/// outside printable ASCII replaced by `?`.
fn printable_var(s: &[u8]) -> Vec<u8> {
    s.iter()
        .take(255)
        .map(|&c| if c.is_ascii_graphic() { c } else { b'?' })
        .collect()
}

/// Messages go to `$QMAILQUEUE` or `bin/qmail-queue`, run in the qmail home; passwords to
/// the checkpassword program; recipients to the configured checks.
#[derive(Debug)]
pub struct QueueBackend {
    home: PathBuf,
    rcptcheck: Option<RcptCheck>,
    helo: Option<Vec<u8>>,
}

impl QueueBackend {
    /// Queues into the qmail home `home`.
    pub fn new(home: &Path) -> QueueBackend {
        QueueBackend {
            home: home.to_path_buf(),
            rcptcheck: None,
            helo: None,
        }
    }

    /// Validates recipients with `c`.
    pub fn with_rcptcheck(mut self, c: Option<RcptCheck>) -> QueueBackend {
        self.rcptcheck = c;
        self
    }
}

impl Backend for QueueBackend {
    type Message = qmail_queue::QueueClient;

    /// The queue program learns who authenticated from `SMTPAUTHUSER` (the user name,
    /// each byte outside printable ASCII replaced by `?`); for any other client the
    /// variable is removed, so that an inherited one never vouches for a stranger.
    /// Likewise `SMTPHELO` (see [`printable_var`]), removed before any HELO. The program
    /// may answer with a custom error (qmail-queue's `CUSTOM_ERROR_EXIT`).
    fn open_message(&mut self, auth_user: Option<&[u8]>) -> io::Result<qmail_queue::QueueClient> {
        let printable = auth_user.map(|u| {
            u.iter()
                .map(|&c| if c.is_ascii_graphic() { c } else { b'?' })
                .collect::<Vec<u8>>()
        });
        let env = [
            (SMTPAUTHUSER, printable.as_deref()),
            (SMTPHELO, self.helo.as_deref()),
        ];
        let program = qmail_queue::queue_program();
        qmail_queue::QueueClient::with_custom_error(&self.home, &program, &env).inspect_err(|e| {
            tracing::error!("unable to start qmail-queue: {e}");
        })
    }

    fn helo(&mut self, arg: &[u8]) {
        self.helo = Some(printable_var(arg));
    }

    fn now(&mut self) -> u64 {
        control::now()
    }

    fn check_password(
        &mut self,
        argv: &[Vec<u8>],
        creds: &auth::Credentials,
        timeout: Duration,
    ) -> checkpw::Verdict {
        checkpw::check(argv, creds, timeout, control::stderr_is_private())
    }

    fn check_recipient(&mut self, rcpt: &[u8]) -> io::Result<rcptcheck::Verdict> {
        match &self.rcptcheck {
            None => Ok(rcptcheck::Verdict::Accept),
            Some(c) => c.check(rcpt).inspect_err(|e| {
                tracing::error!("unable to read {}: {e}", rcptcheck::VALIDRCPTTO);
            }),
        }
    }

    fn log(&mut self, line: &str) {
        log(line);
    }
}

/// A diagnostic line (`qmail-smtpd: MSG` on descriptor 2 when that is safe; see
/// [`control::diagnostics`]).
pub fn log(msg: &str) {
    tracing::warn!("{msg}");
}

/// Reads the configuration (after changing to the qmail home). This host's addresses are
/// listed later, when a MAIL or RCPT address needs them ([`Config::list_ipme`]).
pub fn setup(home: &Path, env: &Env) -> Result<Config, SetupError> {
    std::env::set_current_dir(home).map_err(|err| SetupError::Control {
        what: "the qmail home directory",
        err,
    })?;
    Config::load(home, env)
}

/// What a handshake negotiated, noted at the verbose level.
fn tls_info<T: Transport>(tls: &TlsTransport<T>) -> qmail_tls::TlsInfo {
    let i = tls.info();
    tracing::debug!(
        "TLS: {}, {}, client certificate {}",
        i.version,
        i.cipher,
        match (i.client_verified, &i.client_email) {
            (true, Some(e)) => format!("verified ({e})"),
            (true, None) => "verified".to_string(),
            (false, _) => "none or not verified".to_string(),
        }
    );
    i
}

/// One whole connection over `t`: setup, greeting (after the TLS handshake for SMTPS),
/// dialogue, and the switch to TLS after STARTTLS.
pub fn run<T: Transport>(home: &Path, env: &Env, t: &mut T) -> Exit {
    run_with(home, env, t, None)
}

/// [`run`] with the TLS server configuration `tls` loaded beforehand from the same
/// control files under `home` and the same `$TLSCIPHERS` (qmail-smtpd-server loads it
/// once in its parent): STARTTLS and SMTPS then read no key or certificate. Every control
/// file is still read for this session; `None` is exactly [`run`].
pub fn run_with<T: Transport>(
    home: &Path,
    env: &Env,
    t: &mut T,
    tls: Option<&qmail_tls::TlsServer>,
) -> Exit {
    let mut cfg = match setup(home, env) {
        Err(e) => {
            tracing::error!("{e}");
            if env.smtps.as_ref().is_some_and(|v| !v.is_empty()) {
                // No plaintext on a TLS port.
                return Exit::Failure;
            }
            let _ = t.write_all(
                e.reply().as_bytes(),
                Duration::from_secs(config::DEFAULT_TIMEOUT),
            );
            return Exit::Failure;
        }
        Ok(cfg) => cfg,
    };
    if let Some(server) = tls {
        cfg.tls.preload(server.clone());
    }
    let timeout = Duration::from_secs(cfg.timeout);
    // The TLS configuration itself is loaded only when TLS starts.
    tracing::debug!(
        "connection from {} ({}), TLS {}",
        String::from_utf8_lossy(env.tcp_remote_ip.as_deref().unwrap_or(b"unknown")),
        String::from_utf8_lossy(env.tcp_remote_host.as_deref().unwrap_or(b"unknown")),
        match &cfg.tls.source {
            Some(_) if cfg.tls.smtps => "from the first byte (SMTPS)",
            Some(_) => "offered (STARTTLS)",
            None => "not configured",
        }
    );
    let backend = QueueBackend::new(home).with_rcptcheck(cfg.rcptcheck.take());
    let smtps = cfg.tls.smtps;
    let mut s = Session::new(cfg, backend);
    // control/timeoutsession bounds every wait from here on, the TLS handshakes' too.
    let t = &mut transport::Deadline::new(&mut *t, s.deadline());
    if smtps {
        let server = match s.config().tls.server() {
            Some(Ok(server)) => server.clone(),
            Some(Err(e)) => {
                tracing::error!("SMTPS: TLS not available: {e}");
                return Exit::Failure;
            }
            None => return Exit::Failure,
        };
        return match TlsTransport::accept(&mut *t, &server, timeout) {
            Err(e) => {
                tracing::warn!("SMTPS: TLS handshake failed: {e}");
                Exit::Failure
            }
            Ok(mut tls) => {
                s.smtps_started(tls_info(&tls));
                let e = match serve_session(&mut s, &mut tls) {
                    Served::Done(e) => e,
                    Served::StartTls => Exit::Failure,
                };
                tls.close(timeout);
                e
            }
        };
    }
    match serve_session(&mut s, t) {
        Served::Done(e) => e,
        Served::StartTls => {
            // Loaded when STARTTLS was accepted (a configuration that cannot be loaded
            // got 454 and the session went on in plaintext).
            let Some(Ok(server)) = s.config().tls.server().cloned() else {
                return Exit::Failure;
            };
            match TlsTransport::accept(&mut *t, &server, timeout) {
                Err(e) => {
                    tracing::warn!("STARTTLS: TLS handshake failed: {e}");
                    Exit::Failure
                }
                Ok(mut tls) => {
                    s.tls_started(tls_info(&tls));
                    let e = match serve_session(&mut s, &mut tls) {
                        Served::Done(e) => e,
                        Served::StartTls => Exit::Failure,
                    };
                    tls.close(timeout);
                    e
                }
            }
        }
    }
}

/// A panic is an internal error: a diagnostic line, and the session's failure exit.
fn set_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log(&format!("internal error: {info}"));
        std::process::exit(Exit::Failure.code().code());
    }));
}

/// The program: the client on descriptors 0 and 1, the qmail home from
/// [`control::qmail_home`], the arguments `hostname checkpassword subprogram...` for SMTP
/// AUTH (see [`config::AuthConfig`]). Returns the exit code.
pub fn main() -> control::Exit {
    set_panic_hook();
    let home = control::qmail_home();
    control::diagnostics::init("qmail-smtpd", &home, control::stderr_is_private());
    let mut t = FdTransport::new(control::stdin_fd(), control::stdout_fd());
    run(&home, &Env::from_process(), &mut t).code()
}
