//! qmail-dkim: DKIM-sign a message on its way to qmail-queue (qmail-dkim(8)).
//!
//! It takes qmail-queue's place (`QMAILQUEUE` names it for qmail-smtpd and qmail-inject):
//! the message on descriptor 0, the envelope on descriptor 1. It reads the message,
//! prepends DKIM-Signature fields when the sender is trusted and the From: domain has keys
//! in control/dkimkeys, and execs the real qmail-queue (`$DKIMQUEUE`, else
//! `bin/qmail-queue`) with the message on descriptor 0 and the envelope descriptor
//! untouched, so that qmail-queue's exit code is the client's answer.
//!
//! * `policy`: whose mail is signed (the environment);
//! * `keys`: the control file control/dkimkeys;
//! * `message`: reading and spooling the message, the author domain (public: the fuzz
//!   target drives it);
//! * `privs`: the setuid qmailq privilege, used only to read the keys;
//! * `log`: diagnostic lines.
//!
//! The DKIM work itself (header parsing, canonicalisation, keys, the signature field) is
//! the `dkim` library's.

#![forbid(unsafe_code)]

mod keys;
mod log;
mod message;
mod policy;
mod privs;

pub use message::{
    Failure, HEADER_LIMIT, NotSigned, Spooled, author_domain, copy_converted, read as read_message,
};

use control::Exit;
use keys::{DKIMKEYS, KeyLine, KeyTable};
use privs::Privs;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

// qmail-dkim's own failures use qmail-queue(8)'s codes (anything else is the queue
// program's): QQ_TIMEOUT (52, the 24-hour limit set by qmail_queue::arm_death_alarm),
// QQ_WRITE (53, a spool file), QQ_READ (54, the message), QQ_CONFIG (55, control/dkimkeys
// or a key file), QQ_HOME (61), QQ_BUG (81, a change of user id or a signature failed),
// QQ_EXEC (120, the queue program could not be run).

/// The queue program: `$DKIMQUEUE` when set and not empty, else `bin/qmail-queue`
/// (relative to the qmail home, the working directory).
fn queue_program(get: impl Fn(&str) -> Option<OsString>) -> OsString {
    match get("DKIMQUEUE") {
        Some(p) if !p.is_empty() => p,
        _ => OsString::from("bin/qmail-queue"),
    }
}

/// Runs the queue program in place of this process, with `message` (rewound) as its
/// descriptor 0 when given, else the descriptor 0 this process got. Returns only on
/// failure.
fn exec_queue(message: Option<File>) -> Exit {
    if let Some(mut f) = message
        && (f.rewind().is_err() || nix::unistd::dup2_stdin(f.as_fd()).is_err())
    {
        log::line("unable to hand the message over");
        return Exit::QQ_BUG;
    }
    let prog = queue_program(|k| std::env::var_os(k));
    let Ok(path) = CString::new(prog.clone().into_vec()) else {
        return Exit::QQ_EXEC;
    };
    nix::unistd::alarm::cancel();
    let e = nix::unistd::execv(&path, std::slice::from_ref(&path)).unwrap_err();
    log::line(&format!(
        "unable to run {}: {e}",
        Path::new(&prog).display()
    ));
    Exit::QQ_EXEC
}

/// The largest key file read.
const KEY_FILE_LIMIT: u64 = 64 * 1024;

/// Reads the bytes of each key file (with the privilege to do so).
fn read_key_files(lines: &[&KeyLine]) -> Result<Vec<Vec<u8>>, Exit> {
    let mut out = Vec::new();
    for l in lines {
        let mut data = Vec::new();
        let r =
            File::open(&l.keyfile).and_then(|f| f.take(KEY_FILE_LIMIT + 1).read_to_end(&mut data));
        match r {
            Ok(_) if data.len() as u64 <= KEY_FILE_LIMIT => out.push(data),
            Ok(_) => {
                log::line(&format!(
                    "unable to read {}: larger than {KEY_FILE_LIMIT} bytes",
                    l.keyfile.display()
                ));
                return Err(Exit::QQ_CONFIG);
            }
            Err(e) => {
                log::line(&format!("unable to read {}: {e}", l.keyfile.display()));
                return Err(Exit::QQ_CONFIG);
            }
        }
    }
    Ok(out)
}

/// The DKIM-Signature fields for the message, one per key line, in order.
fn signatures(
    lines: &[&KeyLine],
    key_files: &[Vec<u8>],
    header: &dkim::Header,
    body_hash: &[u8; 32],
) -> Result<String, Exit> {
    let time = control::now();
    let mut out = String::new();
    for (l, pem) in lines.iter().zip(key_files) {
        let key = dkim::SigningKey::from_pem(pem).map_err(|e| {
            log::line(&format!("key {}: {e}", l.keyfile.display()));
            Exit::QQ_CONFIG
        })?;
        let signer = dkim::Signer {
            domain: &l.domain,
            selector: &l.selector,
            key: &key,
            time,
            headers: dkim::DEFAULT_HEADERS,
        };
        let field = signer.sign(header, body_hash).map_err(|e| {
            log::line(&format!("signing with {} failed: {e}", l.keyfile.display()));
            Exit::QQ_BUG
        })?;
        out.push_str(&field);
    }
    Ok(out)
}

/// Everything up to the exec; returns only on failure.
fn run() -> Exit {
    let Ok(privs) = Privs::current() else {
        return Exit::QQ_BUG;
    };
    let home = control::qmail_home();
    control::diagnostics::init("qmail-dkim", &home, log::stderr_is_private());
    if std::env::set_current_dir(&home).is_err() {
        log::line(&format!("unable to use {}", home.display()));
        return Exit::QQ_HOME;
    }
    let pass = |file: Option<File>| match privs.drop_for_good() {
        Ok(()) => exec_queue(file),
        Err(_) => Exit::QQ_BUG,
    };
    if policy::decide(|k| std::env::var_os(k)).is_none() {
        return pass(None);
    }
    let table = match control::read_bytes(&home.join("control").join(DKIMKEYS)) {
        Ok(None) => return pass(None),
        Ok(Some(data)) => match KeyTable::parse(&data, &home) {
            Ok(t) => t,
            Err(e) => {
                log::line(&e.to_string());
                return Exit::QQ_CONFIG;
            }
        },
        Err(e) => {
            log::line(&format!("unable to read control/{DKIMKEYS}: {e}"));
            return Exit::QQ_CONFIG;
        }
    };
    if table.is_empty() {
        return pass(None);
    }

    // The message is a stranger's: read it as the invoker.
    if privs.suspend().is_err() {
        return Exit::QQ_BUG;
    }
    let mut spool = match tempfile::tempfile() {
        Ok(f) => f,
        Err(e) => {
            log::line(&format!("unable to create a spool file: {e}"));
            return Exit::QQ_WRITE;
        }
    };
    let stdin = io::stdin();
    let input = qmail_queue::FdReader::new(stdin.as_fd());
    let msg = match message::read(input, &mut spool, message::HEADER_LIMIT) {
        Ok(m) => m,
        Err(message::Failure::Read(_)) => return Exit::QQ_READ,
        Err(message::Failure::Write(e)) => {
            log::line(&format!("unable to write the spool file: {e}"));
            return Exit::QQ_WRITE;
        }
    };
    let header = match msg.header {
        Ok(h) => h,
        Err(why) => {
            log::line(&format!("message not signed: {why}"));
            return pass(Some(spool));
        }
    };
    let lines = match message::author_domain(&header) {
        Ok(domain) => table.lookup(&domain),
        Err(why) => {
            log::line(&format!("message not signed: {why}"));
            return pass(Some(spool));
        }
    };
    if lines.is_empty() {
        return pass(Some(spool));
    }

    if privs.resume().is_err() {
        return Exit::QQ_BUG;
    }
    let key_files = read_key_files(&lines);
    if privs.drop_for_good().is_err() {
        return Exit::QQ_BUG;
    }
    let key_files = match key_files {
        Ok(k) => k,
        Err(e) => return e,
    };
    let sigs = match signatures(&lines, &key_files, &header, &msg.body_hash) {
        Ok(s) => s,
        Err(e) => return e,
    };
    drop(key_files);

    // The signed message: the fields, then the message from the first spool file with
    // its bare CRs made line ends, the form that was signed.
    let signed = tempfile::tempfile().and_then(|out| {
        let mut w = io::BufWriter::with_capacity(64 * 1024, out);
        w.write_all(sigs.as_bytes())?;
        spool.rewind()?;
        message::copy_converted(&mut spool, &mut w)?;
        w.into_inner().map_err(io::IntoInnerError::into_error)
    });
    match signed {
        Ok(out) => {
            drop(spool);
            exec_queue(Some(out))
        }
        Err(e) => {
            log::line(&format!("unable to write the spool file: {e}"));
            Exit::QQ_WRITE
        }
    }
}

/// The program qmail-dkim. Returns only when the queue program could not be started.
pub fn qmail_dkim() -> Exit {
    std::panic::set_hook(Box::new(|info| {
        log::line(&format!("internal error: {info}"));
        std::process::exit(Exit::QQ_BUG.code());
    }));
    qmail_queue::arm_death_alarm(qmail_queue::DEATH_SECS);
    run()
}
