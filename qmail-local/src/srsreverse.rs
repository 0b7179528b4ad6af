//! srsreverse: the program a `.qmail` file runs for the addresses of the SRS domain (say
//! `alias/.qmail-srs-default`, with `srs.example.com:alias-srs` in virtualdomains). It
//! finds the SRS address in `$EXT`, checks it with control/srssecrets (hash, and for
//! SRS0 the timestamp), and forwards the message, as forward(1) does (with `$DTLINE`),
//! to the address it stands for, keeping the envelope sender (`$SENDER`: a bounce's is
//! null).
//!
//! Exit codes speak qmail-command(8)'s language: 0 when forwarded; 100 (a bounce) for an
//! address that is not SRS, is malformed, forged or expired; 111 (try again later) when
//! the secrets cannot be read or qmail-queue fails temporarily.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;

use crate::helpers::{die, env_bytes, queue};
use control::Exit;
use srs::ReverseError;

const P: &str = "srsreverse";

/// The longest part of an address shown in a report.
const SHOWN: usize = 300;

fn shown(s: &[u8]) -> String {
    let mut t = control::printable(&s[..s.len().min(SHOWN)]);
    if s.len() > SHOWN {
        t.push_str("...");
    }
    t
}

/// A bounce: `text` as the report (which qmail-local puts in the bounce), exit 100.
fn refuse(text: String) -> Exit {
    let _ = std::io::stderr().write_all(format!("{text}\n").as_bytes());
    Exit::PERM
}

fn invalid(local: &[u8], host: &[u8], e: ReverseError) -> Exit {
    let code = match e {
        ReverseError::BadHash | ReverseError::HashTooShort => "5.7.1",
        _ => "5.1.1",
    };
    refuse(format!(
        "Sorry, {}@{} is not a valid SRS address: {e}. (#{code})",
        shown(local),
        shown(host)
    ))
}

/// The whole program.
pub fn main() -> Exit {
    if std::env::args_os().len() > 1 {
        let _ = std::io::stderr().write_all(b"srsreverse: usage: srsreverse\n");
        return Exit::PERM;
    }
    let (Some(ext), Some(sender), Some(dtline)) =
        (env_bytes("EXT"), env_bytes("SENDER"), env_bytes("DTLINE"))
    else {
        return die(
            Exit::PERM,
            P,
            b"EXT, SENDER and DTLINE must be set (run me from a .qmail file)",
        );
    };
    let host = env_bytes("HOST").unwrap_or_default();
    let Some(local) = srs::in_extension(&ext) else {
        return invalid(&ext, &host, ReverseError::NotSrs);
    };
    if let Err(e) = srs::parse(local) {
        return invalid(local, &host, e);
    }
    let home = control::qmail_home();
    let loaded = control::Controls::open(&home)
        .map_err(|e| {
            format!(
                "control/me: unable to read: {}",
                control::describe_error(&e)
            )
        })
        .and_then(|ctl| srs::load(&ctl).map_err(|e| e.to_string()));
    let srs = match loaded {
        Ok(Some(s)) => s,
        Ok(None) => {
            return die(
                Exit::TEMP,
                P,
                b"control/srssecrets does not exist: SRS is not set up",
            );
        }
        Err(e) => return die(Exit::TEMP, P, e.as_bytes()),
    };
    let original = match srs.reverse(local, control::now()) {
        Ok(a) => a,
        Err(e) => return invalid(local, &host, e),
    };
    let _ = std::io::stderr().write_all(format!("{P}: to {}\n", shown(&original)).as_bytes());
    queue(P, &dtline, &sender, &[OsString::from_vec(original)])
}
