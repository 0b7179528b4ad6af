//! maildirwatch (maildirwatch(1)): twice a minute, clear the (VT100) screen and list the
//! messages in `$MAILDIR/new`, oldest first, as netqmail's does:
//!
//! ```text
//! FROM <return-path> TO <delivered-to>
//! ESC[1m From: field ESC[0m          (only when the message has a From field)
//! subject and body, at most 158 bytes
//! (empty line)
//! ```
//!
//! The sender and recipient are `?` when the message does not say; bytes a terminal must
//! not see become `?` in them and `/` in the From line and the text. Like netqmail's, it
//! also removes files left in `tmp/` for more than 36 hours. It runs until killed; unlike
//! netqmail's, it stops (exit 111) when its output can no longer be written.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use control::Exit;

use crate::summary::{printable, summarize};
use crate::tools::{chdir_maildir, fatal, now};

const P: &str = "maildirwatch";

/// How much of subject and body is shown.
pub const TEXT: usize = 158;

/// Clears a VT100 screen: cursor home, erase to the end of the screen.
pub const CLEAR: &[u8] = b"\x1b[;H\x1b[;J";

/// One message's lines, or `None` when it cannot be opened (it was read or moved in
/// the meantime: netqmail skips it). An error is a read error.
fn entry(name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
    let f: File = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    let s = summarize(BufReader::new(f), b"", TEXT, false)?;
    let q = |v: &Option<Vec<u8>>| v.as_deref().map_or(b"?".to_vec(), |v| printable(v, b'?'));
    let mut out = b"FROM ".to_vec();
    out.extend_from_slice(&q(&s.sender));
    out.extend_from_slice(b" TO <");
    out.extend_from_slice(&q(&s.recipient));
    out.extend_from_slice(b">\n");
    if let Some(f) = s.from.as_deref().filter(|f| !f.is_empty()) {
        out.extend_from_slice(b"\x1b[1m");
        out.extend_from_slice(&printable(f, b'/'));
        out.extend_from_slice(b"\x1b[0m\n");
    }
    out.extend_from_slice(&printable(&s.text, b'/'));
    out.extend_from_slice(b"\n\n");
    Ok(Some(out))
}

/// One screen: the clear sequence (written at once), then every new message.
fn screen(out: &mut impl Write) -> Result<(), Exit> {
    let t = now();
    control::clean_maildir_tmp(t);
    let list = control::scan_maildir(t, false).map_err(|e| fatal(P, e.to_string().as_bytes()))?;
    let wrote = |r: io::Result<()>| r.map_err(|e| write_fail(&e));
    wrote(out.write_all(CLEAR).and_then(|()| out.flush()))?;
    for e in list {
        match entry(&e.name) {
            Ok(Some(lines)) => wrote(out.write_all(&lines))?,
            Ok(None) => {}
            Err(_) => return Err(fatal(P, b"trouble reading new message")),
        }
    }
    wrote(out.flush())
}

fn write_fail(e: &io::Error) -> Exit {
    fatal(
        P,
        &[
            &b"unable to write output: "[..],
            control::describe_error(e).as_bytes(),
        ]
        .concat(),
    )
}

/// maildirwatch(1).
pub fn main() -> Exit {
    if let Err(text) = chdir_maildir() {
        return fatal(P, &text);
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(8192, stdout.lock());
    loop {
        if let Err(code) = screen(&mut out) {
            return code;
        }
        std::thread::sleep(Duration::from_secs(30));
    }
}
