//! Delivery by QMTP, for hosts routed through control/qmtproutes (rqmail's addition; see
//! qmail-remote(8)).
//!
//! One package: the message as a netstring whose first byte is LF (qmail's messages
//! already end lines in LF, so nothing is converted or stuffed, and a partial final line
//! is no problem), the sender, and the list of recipients; the server answers with one
//! netstring per recipient, `K`, `Z` or `D` followed by its text. The reports keep
//! qmail-remote(8)'s letters: `r` for a `K`, `s` for a `Z`, `h` for a `D`; then `K` when
//! at least one recipient was accepted, else `D` ("Giving up"), as after SMTP.

use crate::report::{Output, Report, safe_text};
use control::netstring::{self, Input};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::net::{IpAddr, TcpStream};
use std::time::Duration;

/// QMTP's port.
pub const PORT_QMTP: u16 = 209;

/// The longest answer read for one recipient.
pub const MAX_ANSWER: u64 = 4096;

/// What the package carries.
#[derive(Debug)]
pub struct Package<'a> {
    /// The envelope sender, as qmail-send gave it (not quoted: netstrings need no quoting).
    pub sender: &'a [u8],
    /// The recipients; `None` for one that will not be sent.
    pub recips: &'a [Option<Vec<u8>>],
}

/// The bytes left in `msg` from its position, and whether they can be streamed (a
/// regular file); otherwise the message is read into memory.
fn message_len(msg: &mut File) -> io::Result<Option<u64>> {
    let meta = msg.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let pos = msg.stream_position()?;
    Ok(Some(meta.len().saturating_sub(pos)))
}

/// Sends the package to the server on `sock` and reads its answers. Recipient reports
/// go to `out`; the message report is returned.
pub fn deliver(
    sock: TcpStream,
    timeout: Duration,
    partner: IpAddr,
    p: &Package<'_>,
    msg: &mut File,
    out: &mut Output,
) -> Report {
    let _ = sock.set_nodelay(true);
    if sock.set_read_timeout(Some(timeout)).is_err()
        || sock.set_write_timeout(Some(timeout)).is_err()
    {
        return Report::dropped(partner, false, None);
    }
    let mut in_memory = None;
    let len = match message_len(msg) {
        Ok(Some(n)) => n,
        Ok(None) => {
            let mut v = Vec::new();
            if msg.read_to_end(&mut v).is_err() {
                return Report::read();
            }
            let n = v.len() as u64;
            in_memory = Some(v);
            n
        }
        Err(_) => return Report::read(),
    };
    let sendable: Vec<&Vec<u8>> = p.recips.iter().flatten().collect();
    if sendable.is_empty() {
        for _ in p.recips {
            out.recipient(
                b'h',
                b"Sorry, I won't send an address with CR or LF in it. (#5.1.3)\n",
            );
        }
        return Report::perm(&format!("Giving up on {partner}.\n"));
    }
    let mut w = BufWriter::with_capacity(64 * 1024, &sock);
    let mut head = format!("{}:\n", len + 1).into_bytes();
    let mut tail = vec![b','];
    netstring::encode_into(&mut tail, p.sender);
    let mut list = Vec::new();
    for r in &sendable {
        netstring::encode_into(&mut list, r);
    }
    netstring::encode_into(&mut tail, &list);
    let sent = (|| -> Result<(), Report> {
        let broken = |_| Report::dropped(partner, false, None);
        w.write_all(&head).map_err(broken)?;
        head.clear();
        match &in_memory {
            Some(v) => w.write_all(v).map_err(broken)?,
            None => {
                let mut left = len;
                let mut buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                    let n = match msg.read(&mut buf[..want]) {
                        Ok(0) => return Err(Report::read()),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return Err(Report::read()),
                    };
                    w.write_all(&buf[..n]).map_err(broken)?;
                    left -= n as u64;
                }
            }
        }
        w.write_all(&tail).map_err(broken)?;
        w.flush().map_err(broken)
    })();
    drop(w);
    if let Err(r) = sent {
        return r;
    }
    // From here on the server may have taken the message: a broken connection is a
    // possible duplicate.
    let mut input = Input::new(&sock, 1024);
    let mut answers = Vec::with_capacity(sendable.len());
    for _ in &sendable {
        match input.netstring(MAX_ANSWER) {
            Ok(a) if matches!(a.first(), Some(b'K' | b'Z' | b'D')) => answers.push(a),
            Ok(_) => {
                return Report::dropped(partner, true, Some("QMTP: unintelligible answer"));
            }
            Err(e) => {
                let why = match e {
                    netstring::Error::Eof | netstring::Error::Io(_) => None,
                    _ => Some("QMTP: malformed answer"),
                };
                return Report::dropped(partner, true, why);
            }
        }
    }
    let said = |a: &[u8]| {
        let mut t = b"Remote host said: ".to_vec();
        t.extend(safe_text(&a[1..]));
        t.push(b'\n');
        t
    };
    let mut accepted: Option<Vec<u8>> = None;
    let mut answers = answers.into_iter();
    for r in p.recips {
        if r.is_none() {
            out.recipient(
                b'h',
                b"Sorry, I won't send an address with CR or LF in it. (#5.1.3)\n",
            );
            continue;
        }
        let Some(a) = answers.next() else { break };
        if a[0] == b'K' {
            out.recipient(b'r', b"");
            accepted = Some(a);
        } else {
            let mut t = format!("{partner} does not like recipient.\n").into_bytes();
            t.extend(said(&a));
            out.recipient(if a[0] == b'D' { b'h' } else { b's' }, &t);
        }
    }
    match accepted {
        Some(a) => {
            let mut text = format!("{partner} accepted message.\n").into_bytes();
            text.extend(said(&a));
            Report { letter: b'K', text }
        }
        None => Report::perm(&format!("Giving up on {partner}.\n")),
    }
}
