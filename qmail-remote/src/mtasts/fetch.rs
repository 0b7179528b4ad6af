//! The HTTPS fetch of a policy (RFC 8461 section 3.3): `GET
//! https://mta-sts.DOMAIN/.well-known/mta-sts.txt` on port 443, the server's certificate
//! checked against the system's trusted roots (WebPKI) for the name `mta-sts.DOMAIN`.
//! Only a `200` answer with the media type `text/plain` counts; redirects are not followed;
//! the answer may not be longer than [`MAX_HEAD`] + [`policy::MAX_POLICY`] bytes nor take
//! longer than the time given. A small HTTP/1.1 client: `Connection: close`, bodies by
//! `Content-Length`, chunked, or up to a clean TLS close.

use super::policy;
use crate::conn;
use crate::dns::{DnsError, Lookup};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The port of the policy host.
pub const PORT: u16 = 443;

/// The longest status line and headers accepted.
pub const MAX_HEAD: usize = 8 * 1024;

/// Why no policy came, with its TLS-RPT result type (RFC 8460 section 4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `sts-policy-fetch-error`, `sts-webpki-invalid` or `sts-policy-invalid`.
    pub result: &'static str,
    pub why: String,
}

impl Failure {
    pub fn fetch(why: impl Into<String>) -> Failure {
        Failure {
            result: "sts-policy-fetch-error",
            why: why.into(),
        }
    }
}

/// What a response (so far) amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    /// More bytes are needed.
    Incomplete,
    /// The body of a `200` `text/plain` answer.
    Body(Vec<u8>),
}

/// Reads the response in `buf`; `eof` says that nothing more will come (and whether the
/// TLS session was closed cleanly: `Some(true)`).
pub fn parse_response(buf: &[u8], eof: Option<bool>) -> Result<Response, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err("HTTP headers too long".into());
        }
        return match eof {
            Some(_) => Err("HTTP answer cut short".into()),
            None => Ok(Response::Incomplete),
        };
    };
    if end > MAX_HEAD {
        return Err("HTTP headers too long".into());
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "HTTP headers not text")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut words = status.splitn(3, ' ');
    let (proto, code) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if !proto.starts_with("HTTP/1.") {
        return Err("not an HTTP/1 answer".into());
    }
    if code != "200" {
        let shown: String = status.chars().take(60).collect();
        return Err(format!(
            "HTTP status {shown:?} (only 200 counts; redirects are not followed)"
        ));
    }
    let (mut length, mut chunked, mut ctype) = (None, false, None);
    for l in lines {
        let (k, v) = l.split_once(':').ok_or("malformed HTTP header")?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            let n: usize = v.parse().map_err(|_| "malformed Content-Length")?;
            if length.is_some_and(|m| m != n) {
                return Err("two Content-Lengths".into());
            }
            length = Some(n);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            if !v.eq_ignore_ascii_case("chunked") {
                return Err(format!(
                    "unknown Transfer-Encoding {:?}",
                    v.chars().take(30).collect::<String>()
                ));
            }
            chunked = true;
        } else if k.eq_ignore_ascii_case("content-type") {
            ctype = Some(v.to_string());
        }
    }
    let media = ctype.as_deref().map(|t| {
        t.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if media.as_deref() != Some("text/plain") {
        return Err(format!(
            "media type {:?}, not text/plain",
            ctype
                .unwrap_or_default()
                .chars()
                .take(40)
                .collect::<String>()
        ));
    }
    let rest = &buf[end + 4..];
    if chunked {
        return dechunk(rest, eof.is_some());
    }
    if let Some(n) = length {
        if n > policy::MAX_POLICY {
            return Err(format!("policy longer than {} bytes", policy::MAX_POLICY));
        }
        if rest.len() >= n {
            return Ok(Response::Body(rest[..n].to_vec()));
        }
        return match eof {
            Some(_) => Err("HTTP body cut short".into()),
            None => Ok(Response::Incomplete),
        };
    }
    if rest.len() > policy::MAX_POLICY {
        return Err(format!("policy longer than {} bytes", policy::MAX_POLICY));
    }
    match eof {
        None => Ok(Response::Incomplete),
        Some(true) => Ok(Response::Body(rest.to_vec())),
        Some(false) => Err("HTTP body ended without a TLS close (cut short?)".into()),
    }
}

/// Decodes a chunked body; `done` says no more bytes will come.
fn dechunk(mut rest: &[u8], done: bool) -> Result<Response, String> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            if rest.len() > 100 {
                return Err("malformed chunk size".into());
            }
            break;
        };
        let line = std::str::from_utf8(&rest[..eol]).map_err(|_| "malformed chunk size")?;
        let hex = line.split(';').next().unwrap_or("").trim();
        if hex.is_empty() || hex.len() > 8 {
            return Err("malformed chunk size".into());
        }
        let n = usize::from_str_radix(hex, 16).map_err(|_| "malformed chunk size")?;
        if n == 0 {
            return Ok(Response::Body(body));
        }
        if body.len() + n > policy::MAX_POLICY {
            return Err(format!("policy longer than {} bytes", policy::MAX_POLICY));
        }
        let data = &rest[eol + 2..];
        if data.len() < n + 2 {
            break;
        }
        if &data[n..n + 2] != b"\r\n" {
            return Err("malformed chunk".into());
        }
        body.extend_from_slice(&data[..n]);
        rest = &data[n + 2..];
    }
    if done {
        Err("chunked body cut short".into())
    } else {
        Ok(Response::Incomplete)
    }
}

/// The TLS-RPT result for a failed handshake with the policy host: a certificate that
/// does not verify is `sts-webpki-invalid`, anything else a fetch error.
fn tls_failure(e: &io::Error) -> Failure {
    let cert = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    if cert {
        Failure {
            result: "sts-webpki-invalid",
            why: e.to_string(),
        }
    } else {
        Failure::fetch(format!("TLS: {e}"))
    }
}

fn left(deadline: Instant) -> Result<Duration, Failure> {
    let l = deadline.saturating_duration_since(Instant::now());
    if l.is_zero() {
        return Err(Failure::fetch("timed out"));
    }
    Ok(l)
}

/// Fetches the policy of `domain` (lower case, checked) with `config` (WebPKI roots),
/// within `timeout`; returns the body.
pub fn fetch(
    dns: &mut dyn Lookup,
    domain: &str,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Vec<u8>, Failure> {
    let deadline = Instant::now() + timeout;
    let host = format!("mta-sts.{domain}");
    let mut ips = Vec::new();
    let mut soft = false;
    for v6 in [true, false] {
        match dns.addrs(&host, v6) {
            Ok(a) => ips.extend(a),
            Err(DnsError::Soft) => soft = true,
            Err(DnsError::Hard) => {}
        }
    }
    if ips.is_empty() {
        return Err(Failure::fetch(if soft {
            format!("{host}: DNS lookup failed temporarily")
        } else {
            format!("{host} has no address")
        }));
    }
    let mut sock = None;
    for ip in ips.iter().take(4) {
        if let Ok(s) = conn::connect(*ip, PORT, left(deadline)?) {
            sock = Some(s);
            break;
        }
    }
    let sock =
        sock.ok_or_else(|| Failure::fetch(format!("no connection to {host} port {PORT}")))?;
    let name = ServerName::try_from(host.clone()).map_err(|_| Failure::fetch("bad host name"))?;
    let tls = ClientConnection::new(config, name).map_err(|e| Failure::fetch(e.to_string()))?;
    let mut s = StreamOwned::new(tls, sock);
    let set = |s: &StreamOwned<ClientConnection, TcpStream>| -> Result<(), Failure> {
        let l = left(deadline)?;
        s.sock
            .set_read_timeout(Some(l))
            .and_then(|_| s.sock.set_write_timeout(Some(l)))
            .map_err(|e| Failure::fetch(e.to_string()))
    };
    set(&s)?;
    let req = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rqmail-qmail-remote\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .and_then(|_| s.flush())
        .map_err(|e| tls_failure(&e))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        set(&s)?;
        let eof = match s.read(&mut chunk) {
            Ok(0) => Some(true),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some(false),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Failure::fetch("timed out"));
            }
            Err(e) if s.conn.is_handshaking() => return Err(tls_failure(&e)),
            Err(e) => return Err(Failure::fetch(format!("reading: {e}"))),
        };
        if buf.len() > MAX_HEAD + policy::MAX_POLICY + 1024 {
            return Err(Failure::fetch("HTTP answer too long"));
        }
        match parse_response(&buf, eof) {
            Ok(Response::Body(b)) => return Ok(b),
            Ok(Response::Incomplete) if eof.is_none() => {}
            Ok(Response::Incomplete) => return Err(Failure::fetch("HTTP answer cut short")),
            Err(why) => return Err(Failure::fetch(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n";

    fn body(r: Result<Response, String>) -> Vec<u8> {
        match r {
            Ok(Response::Body(b)) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lengths_chunks_and_closes() {
        let r = format!("{OK}Content-Length: 5\r\n\r\nhello, and more");
        assert_eq!(body(parse_response(r.as_bytes(), None)), b"hello");
        let r = format!("{OK}Content-Length: 50\r\n\r\nhello");
        assert_eq!(parse_response(r.as_bytes(), None), Ok(Response::Incomplete));
        assert!(parse_response(r.as_bytes(), Some(true)).is_err());
        let r =
            format!("{OK}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\n");
        assert_eq!(body(parse_response(r.as_bytes(), None)), b"hello!");
        let r = format!("{OK}Transfer-Encoding: chunked\r\n\r\n5\r\nhel");
        assert_eq!(parse_response(r.as_bytes(), None), Ok(Response::Incomplete));
        assert!(parse_response(r.as_bytes(), Some(true)).is_err());
        let r = format!("{OK}\r\nall of it");
        assert_eq!(parse_response(r.as_bytes(), None), Ok(Response::Incomplete));
        assert_eq!(body(parse_response(r.as_bytes(), Some(true))), b"all of it");
        assert!(parse_response(r.as_bytes(), Some(false)).is_err());
    }

    #[test]
    fn refused_answers() {
        for r in [
            "HTTP/1.1 301 Moved\r\nLocation: https://elsewhere/\r\nContent-Type: text/plain\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nx",
            "HTTP/1.1 200 OK\r\n\r\nx",
            "SMTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nx",
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 99999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(parse_response(r.as_bytes(), Some(true)).is_err(), "{r:?}");
        }
        assert!(parse_response(&vec![b'x'; MAX_HEAD + 1], None).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600), eof in proptest::option::of(any::<bool>())) {
            let _ = parse_response(&buf, eof);
            let mut with_head = format!("{OK}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
            with_head.extend(&buf);
            let _ = parse_response(&with_head, eof);
        }
    }
}
