//! qmail-qmqpc: qmail-queue's interface, QMQP's transport (qmail-qmqpc(8)).
//!
//! It reads a message on descriptor 0 and an envelope on descriptor 1 as qmail-queue
//! does, and instead of storing them sends them as one QMQP request to the first server
//! in control/qmqpservers that takes a connection; its exit code is qmail-queue's
//! vocabulary, so every program that runs qmail-queue can run it instead (the mini-qmail
//! installation makes bin/qmail-queue a link to it).
//!
//! As netqmail's: a server that refuses the connection or does not answer within 10
//! seconds is skipped for the next one; once a server has the connection, its answer is
//! final (a failure later on is exit 74, never a second try elsewhere, which could queue
//! the message twice). Exit codes: 0 accepted (`K`), 31 refused for good (`D`), 71
//! refused for now (`Z`), 72 the last server timed out, 73 the last server refused the
//! connection, 74 the conversation failed, 51 out of memory, 54 unable to read the
//! message or envelope, 55 unable to read control files (qmqpservers missing among them,
//! or naming no usable server), 56 no socket, 61 no home directory, 91 a malformed
//! envelope.
//!
//! Beyond netqmail, a line of qmqpservers may give a port (`192.0.2.1:6628`) and may be an
//! IPv6 address in brackets (`[2001:db8::1]`, `[::1]:6628`). netqmail's qmail-qmqpc reads
//! the address at the start of a line and ignores the rest, so a file with ports means
//! port 628 to it.

use control::Exit;
use std::io::{self, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// QMQP's port.
pub const PORT_QMQP: u16 = 628;

pub const EXIT_OK: Exit = Exit::OK;
pub const EXIT_PERM: Exit = Exit::QQ_PERM_REFUSED;
pub const EXIT_NOMEM: Exit = Exit::QQ_NOMEM;
pub const EXIT_READ: Exit = Exit::QQ_READ;
pub const EXIT_CONTROL: Exit = Exit::QQ_CONFIG;
pub const EXIT_SOCKET: Exit = Exit::QQ_SOCKET;
pub const EXIT_HOME: Exit = Exit::QQ_HOME;
pub const EXIT_TEMP: Exit = Exit::QQ_TEMP_REFUSED;
pub const EXIT_TIMEOUT: Exit = Exit::QQ_CONN_TIMEOUT;
pub const EXIT_REFUSED: Exit = Exit::QQ_CONN_REFUSED;
pub const EXIT_CONN: Exit = Exit::QQ_CONN_FAILED;
pub const EXIT_FORMAT: Exit = Exit::QQ_FORMAT;

/// How long to wait for a connection (netqmail's 10 seconds).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each read or write may take once connected (netqmail's 60 seconds).
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The bytes of a reply read while looking for its K, Z or D before giving up.
pub const MAX_REPLY_SCAN: usize = 2048;

/// The address on one line of qmqpservers, or `None` for a line naming none (skipped).
pub fn parse_server(line: &[u8]) -> Option<SocketAddr> {
    let s = std::str::from_utf8(line).ok()?;
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: std::net::Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => PORT_QMQP,
            p => port(p.strip_prefix(':')?)?,
        };
        return Some(SocketAddr::new(IpAddr::V6(ip), port));
    }
    // netqmail's ip_scan: four numbers with dots at the start of the line.
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let ip: Ipv4Addr = s[..end].parse().ok()?;
    let p = match s[end..].strip_prefix(':') {
        Some(p) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => port(p)?,
        _ => PORT_QMQP,
    };
    Some(SocketAddr::new(IpAddr::V4(ip), p))
}

fn port(p: &str) -> Option<u16> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// An envelope as qmail-queue reads it: the sender and the recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
}

/// Reads an envelope up to its terminating empty record: `F`sender NUL, then `T`recipient
/// NUL for each recipient, then NUL. Anything else is exit 91; a read error 54.
pub fn read_envelope<R: Read>(r: &mut R) -> Result<Envelope, Exit> {
    let mut buf: Vec<u8> = Vec::new();
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut start = 0;
    loop {
        // Whole records in what has been read so far.
        while let Some(nul) = buf[start..].iter().position(|&c| c == 0) {
            let rec = buf[start..start + nul].to_vec();
            start += nul + 1;
            let first = records.is_empty();
            if rec.is_empty() {
                if first {
                    return Err(EXIT_FORMAT);
                }
                let sender = records.remove(0);
                return Ok(Envelope {
                    sender,
                    recipients: records,
                });
            }
            let want = if first { b'F' } else { b'T' };
            if rec[0] != want {
                return Err(EXIT_FORMAT);
            }
            records.push(rec[1..].to_vec());
        }
        let n = match r.read(&mut chunk) {
            Ok(0) => return Err(EXIT_FORMAT),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(EXIT_READ),
        };
        buf.drain(..start);
        start = 0;
        buf.try_reserve(n).map_err(|_| EXIT_NOMEM)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads the whole message; 51 when memory runs out, 54 on a read error.
pub fn read_message<R: Read>(r: &mut R) -> Result<Vec<u8>, Exit> {
    let mut msg: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return Ok(msg),
            Ok(n) => {
                msg.try_reserve(n).map_err(|_| EXIT_NOMEM)?;
                msg.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(EXIT_READ),
        }
    }
}

/// The request's parts: what goes before the message and what goes after it.
pub fn framing(message_len: usize, env: &Envelope) -> (Vec<u8>, Vec<u8>) {
    let mut after = Vec::new();
    control::netstring::encode_into(&mut after, &env.sender);
    for r in &env.recipients {
        control::netstring::encode_into(&mut after, r);
    }
    let inner_head = format!("{message_len}:");
    let total = inner_head.len() + message_len + 1 + after.len();
    let before = format!("{total}:{inner_head}").into_bytes();
    after.insert(0, b',');
    after.push(b',');
    (before, after)
}

/// The verdict in a server's reply: the first K, Z or D among its bytes, as netqmail
/// reads it (the length before it is skipped, not checked).
pub fn scan_reply<R: Read>(r: &mut R) -> Exit {
    let mut seen = 0usize;
    let mut b = [0u8; 1];
    while seen < MAX_REPLY_SCAN {
        match r.read(&mut b) {
            Ok(0) => return EXIT_CONN,
            Ok(_) => {
                seen += 1;
                match b[0] {
                    b'K' => return EXIT_OK,
                    b'Z' => return EXIT_TEMP,
                    b'D' => return EXIT_PERM,
                    _ => {}
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return EXIT_CONN,
        }
    }
    EXIT_CONN
}

/// What one server did with the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// No connection: try the next server; the exit code if it was the last.
    Skipped(Exit),
    /// Connected: this is the answer.
    Final(Exit),
}

/// Offers the request to the server at `addr`.
pub fn attempt(addr: SocketAddr, before: &[u8], message: &[u8], after: &[u8]) -> Attempt {
    let sock = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => return Attempt::Skipped(EXIT_TIMEOUT),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS)
            ) =>
        {
            return Attempt::Final(EXIT_SOCKET);
        }
        Err(_) => return Attempt::Skipped(EXIT_REFUSED),
    };
    if sock.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || sock.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return Attempt::Final(EXIT_CONN);
    }
    let mut w = BufWriter::with_capacity(64 * 1024, &sock);
    let sent = w
        .write_all(before)
        .and_then(|()| w.write_all(message))
        .and_then(|()| w.write_all(after))
        .and_then(|()| w.flush());
    drop(w);
    if sent.is_err() {
        return Attempt::Final(EXIT_CONN);
    }
    Attempt::Final(scan_reply(&mut &sock))
}

/// The whole program on the given message and envelope sources; returns the exit code.
pub fn run<M: Read, E: Read>(home: &Path, message: &mut M, envelope: &mut E) -> Exit {
    if std::env::set_current_dir(home).is_err() {
        return EXIT_HOME;
    }
    let servers = match control::Controls::open(Path::new(".")).and_then(|c| c.lines("qmqpservers"))
    {
        Ok(Some(s)) => s,
        Ok(None) | Err(_) => return EXIT_CONTROL,
    };
    let msg = match read_message(message) {
        Ok(m) => m,
        Err(c) => return c,
    };
    let env = match read_envelope(envelope) {
        Ok(e) => e,
        Err(c) => return c,
    };
    let (before, after) = framing(msg.len(), &env);
    let mut last = EXIT_CONTROL;
    for line in &servers {
        let Some(addr) = parse_server(line) else {
            continue;
        };
        match attempt(addr, &before, &msg, &after) {
            Attempt::Final(code) => return code,
            Attempt::Skipped(code) => last = code,
        }
    }
    last
}

/// qmail-qmqpc's confinement (qmail-qmqpc(8), CONFINEMENT): no_new_privs, reading
/// control/ only, the system calls of a network client.
pub fn confine(home: &Path) {
    use control::confine::{Policy, syscalls};
    let _ = Policy::new()
        .no_new_privs()
        .allow_control(home)
        .allow_random_devices()
        .syscalls(&[syscalls::RUNTIME, syscalls::FILES, syscalls::NETWORK])
        .apply();
}

/// The program: the message on descriptor 0, the envelope on descriptor 1.
pub fn main() -> Exit {
    let home = control::qmail_home();
    confine(&home);
    let stdin = io::stdin();
    let mut m = stdin.lock();
    // Descriptor 1 is read, as qmail-queue reads it.
    let mut e = match std::os::fd::AsFd::as_fd(&io::stdout()).try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(_) => return EXIT_READ,
    };
    run(&home, &mut m, &mut e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn servers() {
        let v4 = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(parse_server(b"192.0.2.1"), v4("192.0.2.1:628"));
        assert_eq!(parse_server(b"192.0.2.1:6628"), v4("192.0.2.1:6628"));
        assert_eq!(parse_server(b"192.0.2.1 the hub"), v4("192.0.2.1:628"));
        assert_eq!(parse_server(b"[::1]"), v4("[::1]:628"));
        assert_eq!(parse_server(b"[::1]:99"), v4("[::1]:99"));
        assert_eq!(parse_server(b"hub.example"), None);
        assert_eq!(parse_server(b"192.0.2"), None);
        assert_eq!(parse_server(b"[::1]x"), None);
        assert_eq!(parse_server(b"192.0.2.1:0"), None);
        assert_eq!(parse_server(b"192.0.2.1:70000"), None);
    }

    #[test]
    fn envelopes() {
        let e = read_envelope(&mut &b"Fa@x\0Tb@y\0Tc@z\0\0trailing"[..]).unwrap();
        assert_eq!(e.sender, b"a@x");
        assert_eq!(e.recipients, vec![b"b@y".to_vec(), b"c@z".to_vec()]);
        let e = read_envelope(&mut &b"F\0\0"[..]).unwrap();
        assert!(e.sender.is_empty() && e.recipients.is_empty());
        for bad in [
            &b""[..],
            b"\0",
            b"Ta\0\0",
            b"Fa\0Xb\0\0",
            b"Fa\0Tb\0",
            b"Fa",
        ] {
            assert_eq!(read_envelope(&mut &bad[..]), Err(EXIT_FORMAT), "{bad:?}");
        }
    }

    #[test]
    fn request_bytes() {
        let env = Envelope {
            sender: b"a@x".to_vec(),
            recipients: vec![b"b@y".to_vec()],
        };
        let (before, after) = framing(3, &env);
        let mut wire = before.clone();
        wire.extend_from_slice(b"hi\n");
        wire.extend_from_slice(&after);
        assert_eq!(wire, b"18:3:hi\n,3:a@x,3:b@y,,");
    }

    #[test]
    fn replies() {
        assert_eq!(scan_reply(&mut &b"14:Kok 1 qp 2,"[..]), EXIT_OK);
        assert_eq!(scan_reply(&mut &b"5:Zfoo,"[..]), EXIT_TEMP);
        assert_eq!(scan_reply(&mut &b"5:Dfoo,"[..]), EXIT_PERM);
        assert_eq!(scan_reply(&mut &b"12:"[..]), EXIT_CONN);
        assert_eq!(scan_reply(&mut &vec![b'1'; 5000][..]), EXIT_CONN);
    }

    proptest! {
        #[test]
        fn envelope_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_envelope(&mut &b[..]);
        }

        #[test]
        fn framing_is_netstrings(msg in proptest::collection::vec(any::<u8>(), 0..200),
                                 s in proptest::collection::vec(any::<u8>(), 0..20),
                                 rs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..4)) {
            let env = Envelope { sender: s.clone(), recipients: rs.clone() };
            let (mut wire, after) = framing(msg.len(), &env);
            wire.extend_from_slice(&msg);
            wire.extend_from_slice(&after);
            let control::netstring::Parsed::Done { content, rest } =
                control::netstring::parse(&wire, u64::MAX).unwrap() else { panic!() };
            prop_assert!(rest.is_empty());
            let mut parts = Vec::new();
            let mut c = content;
            while !c.is_empty() {
                let control::netstring::Parsed::Done { content, rest } =
                    control::netstring::parse(c, u64::MAX).unwrap() else { panic!() };
                parts.push(content.to_vec());
                c = rest;
            }
            let mut want = vec![msg, s];
            want.extend(rs);
            prop_assert_eq!(parts, want);
        }
    }
}
