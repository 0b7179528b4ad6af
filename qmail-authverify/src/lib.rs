//! qmail-authverify: check SPF, DKIM and DMARC of a message on its way to qmail-queue
//! (qmail-authverify(8)).
//!
//! It takes qmail-queue's place (`QMAILQUEUE` names it for qmail-smtpd): the message on
//! descriptor 0, the envelope on descriptor 1, the client's address in `TCPREMOTEIP` and
//! its HELO name in `SMTPHELO`. It reads both, checks SPF for the HELO name and the
//! envelope sender, the DKIM signatures and the DMARC policy of the From: domain, then
//! either refuses the message (control/authreject; a DNS failure is always temporary)
//! or puts an Authentication-Results field naming this host on top of it and execs the
//! next queue program (`$AUTHVERIFYQUEUE`, else `bin/qmail-queue`) with the message and
//! the envelope on descriptors 0 and 1, so that it chains with qmail-dkim.
//!
//! * `header`: the header section's fields and the Authentication-Results fields that
//!   claim to be ours (removed); public, as is mail-auth's reading of a message
//!   ([`parse_counts`]): the fuzz target `auth_results` drives them;
//! * `policy`: control/authreject and the verdict;
//! * `verify`: the checks (mail-auth, with its async DNS confined there).

#![forbid(unsafe_code)]

mod header;
mod policy;
mod verify;

pub use header::{authserv_id, fields as header_fields, header_len, strip_results};
pub use policy::{AUTHREJECT, Findings, Reject, Verdict, decide};
pub use verify::{NAMESERVERS_ENV, parse_counts, parse_nameservers, to_crlf};

use control::Exit;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// The largest message checked: a larger one is queued with a field that says it was
/// not checked (`none`), and a log line.
pub const MESSAGE_LIMIT: usize = 64 * 1024 * 1024;
/// The largest envelope read.
const ENVELOPE_LIMIT: u64 = 64 * 1024 * 1024;

// Failures use qmail-queue(8)'s codes: 53 (a spool file), 54 (reading the message or
// envelope), 55 (control files), 61 (the home), 81 (internal), 91 (envelope format),
// 120 (the next program could not be run); a refusal is exit 82 with the reply on the
// custom error descriptor ($ERROR_FD), or 31 / 71 when there is none.

fn line(msg: &str) {
    let clean: String = msg
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    tracing::warn!("{clean}");
}

/// The queue program: `$AUTHVERIFYQUEUE` when set and not empty, else `bin/qmail-queue`.
fn queue_program() -> OsString {
    match std::env::var_os("AUTHVERIFYQUEUE") {
        Some(p) if !p.is_empty() => p,
        _ => OsString::from("bin/qmail-queue"),
    }
}

/// Runs the queue program in place of this process with `message` and `envelope`
/// (rewound) as descriptors 0 and 1 when given. Returns only on failure.
fn exec_queue(message: Option<File>, envelope: Option<File>) -> Exit {
    for (f, fd) in [(message, 0), (envelope, 1)] {
        if let Some(mut f) = f {
            let moved = f.rewind().is_ok()
                && if fd == 0 {
                    nix::unistd::dup2_stdin(f.as_fd()).is_ok()
                } else {
                    nix::unistd::dup2_stdout(f.as_fd()).is_ok()
                };
            if !moved {
                line("unable to hand the message over");
                return Exit::QQ_BUG;
            }
        }
    }
    let prog = queue_program();
    let Ok(path) = CString::new(prog.clone().into_vec()) else {
        return Exit::QQ_EXEC;
    };
    nix::unistd::alarm::cancel();
    let e = nix::unistd::execv(&path, std::slice::from_ref(&path)).unwrap_err();
    line(&format!(
        "unable to run {}: {e}",
        Path::new(&prog).display()
    ));
    Exit::QQ_EXEC
}

/// Refuses the message: the reply on the custom error descriptor named by `ERROR_FD`
/// (a pipe) and exit 82; without one, exit 31 or 71 (netqmail's generic refusals).
fn refuse(permanent: bool, reply: &str) -> Exit {
    line(&format!("refused: {reply}"));
    let fd = std::env::var("ERROR_FD")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    if let Some(fd) = fd {
        let p = format!("/dev/fd/{fd}");
        let is_pipe = std::fs::metadata(&p).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_fifo()
        });
        if is_pipe
            && let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&p)
            && f.write_all(format!("{}{reply}", if permanent { 'D' } else { 'Z' }).as_bytes())
                .is_ok()
        {
            return Exit::new(qmail_queue::CUSTOM_ERROR_EXIT as u8);
        }
    }
    if permanent {
        Exit::QQ_PERM_REFUSED
    } else {
        Exit::QQ_TEMP_REFUSED
    }
}

/// Reads descriptor 0 to its end: the bytes when at most `limit`, else `Err` with
/// everything copied to a spool file.
fn read_message(limit: usize) -> Result<Result<Vec<u8>, File>, Exit> {
    let stdin = io::stdin();
    let mut input = qmail_queue::FdReader::new(stdin.as_fd());
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => return Ok(Ok(buf)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Exit::QQ_READ),
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > limit {
            break;
        }
    }
    let spool = tempfile::tempfile().and_then(|mut f| {
        f.write_all(&buf)?;
        drop(std::mem::take(&mut buf));
        io::copy(&mut input, &mut f)?;
        Ok(f)
    });
    match spool {
        Ok(f) => Ok(Err(f)),
        Err(e) => {
            line(&format!("unable to spool the message: {e}"));
            Err(Exit::QQ_WRITE)
        }
    }
}

/// Reads the envelope on descriptor 1.
fn read_envelope() -> Result<Vec<u8>, Exit> {
    let stdout = io::stdout();
    let input = qmail_queue::FdReader::new(stdout.as_fd());
    let mut data = Vec::new();
    match input.take(ENVELOPE_LIMIT).read_to_end(&mut data) {
        Ok(_) => Ok(data),
        Err(_) => Err(Exit::QQ_READ),
    }
}

fn spool(parts: &[&[u8]]) -> Result<File, Exit> {
    let r = tempfile::tempfile().and_then(|f| {
        let mut w = io::BufWriter::with_capacity(64 * 1024, f);
        for p in parts {
            w.write_all(p)?;
        }
        w.into_inner().map_err(io::IntoInnerError::into_error)
    });
    r.map_err(|e| {
        line(&format!("unable to write a spool file: {e}"));
        Exit::QQ_WRITE
    })
}

/// Everything up to the exec; returns only on failure or refusal.
fn run() -> Exit {
    let home = control::qmail_home();
    control::diagnostics::init("qmail-authverify", &home, control::stderr_is_private());
    if std::env::set_current_dir(&home).is_err() {
        line(&format!("unable to use {}", home.display()));
        return Exit::QQ_HOME;
    }
    // Our own users' mail (relay clients, SMTP AUTH) is not checked.
    let trusted = ["RELAYCLIENT", "SMTPAUTHUSER"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let ip = std::env::var("TCPREMOTEIP")
        .ok()
        .and_then(|v| v.parse::<std::net::IpAddr>().ok());
    let Some(ip) = ip.filter(|_| !trusted) else {
        return exec_queue(None, None);
    };
    let controls = match control::Controls::open(&home) {
        Ok(c) => c,
        Err(e) => {
            line(&format!("unable to read control/me: {e}"));
            return Exit::QQ_CONFIG;
        }
    };
    let host = controls
        .me()
        .map(|m| String::from_utf8_lossy(m).trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let reject = match control::read_lines(&controls.path(AUTHREJECT)) {
        Ok(None) => Reject::default(),
        Ok(Some(lines)) => match Reject::parse(&lines) {
            Ok(r) => r,
            Err(e) => {
                line(&e.to_string());
                return Exit::QQ_CONFIG;
            }
        },
        Err(e) => {
            line(&format!("unable to read control/{AUTHREJECT}: {e}"));
            return Exit::QQ_CONFIG;
        }
    };

    let message = match read_message(MESSAGE_LIMIT) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let envelope = match read_envelope() {
        Ok(e) => e,
        Err(e) => return e,
    };
    let parsed = match qmail_queue::Envelope::parse(&envelope) {
        Ok(p) => p,
        Err(qmail_queue::EnvelopeError::TooLong) => return Exit::QQ_ADDR_TOO_LONG,
        Err(qmail_queue::EnvelopeError::Format) => return Exit::QQ_FORMAT,
        Err(_) => return Exit::QQ_READ,
    };
    let env_file = match spool(&[&envelope]) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let message = match message {
        Ok(m) => m,
        Err(big) => {
            line(&format!(
                "message larger than {MESSAGE_LIMIT} bytes: not checked"
            ));
            let field = format!("Authentication-Results: {host}; none (message too large)\n");
            let out = tempfile::tempfile().and_then(|mut f| {
                f.write_all(field.as_bytes())?;
                let mut big = big;
                big.rewind()?;
                io::copy(&mut big, &mut f)?;
                Ok(f)
            });
            return match out {
                Ok(f) => exec_queue(Some(f), Some(env_file)),
                Err(e) => {
                    line(&format!("unable to write a spool file: {e}"));
                    Exit::QQ_WRITE
                }
            };
        }
    };

    let helo = std::env::var("SMTPHELO").unwrap_or_default();
    let mail_from = String::from_utf8_lossy(&parsed.sender).into_owned();
    let servers = std::env::var(NAMESERVERS_ENV)
        .map(|v| parse_nameservers(&v))
        .unwrap_or_default();
    let input = verify::Input {
        message: &message,
        ip,
        helo: &helo,
        mail_from: &mail_from,
        host: &host,
    };
    let outcome = match verify::check(&servers, &input) {
        Ok(o) => o,
        Err(verify::DnsSetup(e)) => {
            line(&e);
            return refuse(
                false,
                "451 4.3.0 unable to check the message: DNS not available (#4.3.0)",
            );
        }
    };
    match decide(reject, &outcome.findings) {
        Verdict::Permanent(r) => return refuse(true, &r),
        Verdict::Temporary(r) => return refuse(false, &r),
        Verdict::Accept => {}
    }
    let hlen = header_len(&message);
    let (header, removed) = strip_results(&message[..hlen], host.as_bytes());
    if removed > 0 {
        line(&format!(
            "removed {removed} Authentication-Results field(s) claiming to be {host}"
        ));
    }
    match spool(&[outcome.field.as_bytes(), &header, &message[hlen..]]) {
        Ok(f) => {
            drop(message);
            exec_queue(Some(f), Some(env_file))
        }
        Err(e) => e,
    }
}

/// The program qmail-authverify. Returns only when the message was not passed on.
pub fn qmail_authverify() -> Exit {
    std::panic::set_hook(Box::new(|info| {
        line(&format!("internal error: {info}"));
        std::process::exit(Exit::QQ_BUG.code());
    }));
    qmail_queue::arm_death_alarm(qmail_queue::DEATH_SECS);
    run()
}
