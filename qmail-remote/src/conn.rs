//! The SMTP connection: plain TCP or TLS over it, with qmail-remote's time limits.
//!
//! * Connecting takes at most timeoutconnect seconds.
//! * Each reply must arrive completely within timeoutremote seconds of starting to wait
//!   for it, and may not be longer than [`reply::MAX_REPLY`] bytes: a server that sends
//!   slowly or endlessly cannot hold qmail-remote longer.
//! * Each write must make progress within timeoutremote seconds.
//! * A TLS handshake must finish within timeoutremote seconds.
//!
//! After STARTTLS, anything the server sent before the handshake is thrown away.

use crate::reply::{self, Parser, Reply};
use rustls::ClientConnection;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the dialogue cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// The server went silent past the time limit.
    Timeout,
    /// The connection was closed or failed.
    Closed,
    /// The reply broke the size limit.
    TooLong,
    /// TLS failed (after the handshake): rustls's words.
    Tls(String),
}

impl Broken {
    /// The explanation for the report, when netqmail would give none.
    pub fn why(&self) -> Option<String> {
        match self {
            Broken::Timeout | Broken::Closed => None,
            Broken::TooLong => Some("Reply too long.".into()),
            Broken::Tls(e) => Some(format!("TLS error: {e}.")),
        }
    }
}

/// A failed TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The certificate did not verify (rustls's words).
    Certificate(String),
    /// Anything else: the words for the report.
    Other(String),
}

/// Opens a TCP connection to `ip`:`port` within `timeout`. The error says whether it
/// timed out.
pub fn connect(ip: IpAddr, port: u16, timeout: Duration) -> Result<TcpStream, bool> {
    match TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout) {
        Ok(s) => Ok(s),
        Err(e) => {
            Err(e.kind() == io::ErrorKind::TimedOut || e.raw_os_error() == Some(libc::ETIMEDOUT))
        }
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The connection.
pub struct Conn {
    sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
    timeout: Duration,
    /// Bytes received and not yet parsed.
    pending: Vec<u8>,
    /// The receive timeout now set on the socket (see [`arm_read`]).
    read_armed: Option<Duration>,
}

/// How far a read may wait past its reply's deadline: the socket's receive timeout is only
/// set again when it would overrun the deadline by more than this, so that a dialogue of
/// short replies costs one setsockopt in all rather than one per read.
const SLACK: Duration = Duration::from_secs(1);

/// Makes the next read on `sock` give up by `deadline` (plus at most [`SLACK`]).
fn arm_read(
    sock: &TcpStream,
    armed: &mut Option<Duration>,
    deadline: Instant,
) -> Result<(), Broken> {
    let left = Conn::left(deadline)?;
    if armed.is_none_or(|a| a > left + SLACK) {
        sock.set_read_timeout(Some(left))
            .map_err(|_| Broken::Closed)?;
        *armed = Some(left);
    }
    Ok(())
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("sock", &self.sock)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Conn {
    pub fn new(sock: TcpStream, timeout: Duration) -> Conn {
        let _ = sock.set_nodelay(true);
        // Every write may take the whole timeout (netqmail's timeoutwrite): set once.
        let _ = sock.set_write_timeout(Some(timeout));
        Conn {
            sock,
            tls: None,
            timeout,
            pending: Vec::new(),
            read_armed: None,
        }
    }

    /// The TLS session, once established.
    pub fn tls(&self) -> Option<&ClientConnection> {
        self.tls.as_deref()
    }

    fn left(deadline: Instant) -> Result<Duration, Broken> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(Broken::Timeout)
        } else {
            Ok(left)
        }
    }

    /// Reads more bytes (plain or decrypted) before `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), Broken> {
        let mut buf = [0u8; 4096];
        let Some(tls) = self.tls.as_deref_mut() else {
            loop {
                arm_read(&self.sock, &mut self.read_armed, deadline)?;
                return match self.sock.read(&mut buf) {
                    Ok(0) => Err(Broken::Closed),
                    Ok(n) => {
                        self.pending.extend_from_slice(&buf[..n]);
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if timed_out(&e) => Err(Broken::Timeout),
                    Err(_) => Err(Broken::Closed),
                };
            }
        };
        loop {
            match tls.reader().read(&mut buf) {
                Ok(0) => return Err(Broken::Closed),
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(Broken::Closed),
            }
            flush_tls(tls, &mut self.sock)?;
            arm_read(&self.sock, &mut self.read_armed, deadline)?;
            match tls.read_tls(&mut self.sock) {
                Ok(0) => return Err(Broken::Closed),
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        let _ = flush_tls(tls, &mut self.sock);
                        return Err(Broken::Tls(e.to_string()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => return Err(Broken::Timeout),
                Err(_) => return Err(Broken::Closed),
            }
        }
    }

    /// Reads one reply.
    pub fn reply(&mut self) -> Result<Reply, Broken> {
        let deadline = Instant::now() + self.timeout;
        let mut p = Parser::new();
        loop {
            if !self.pending.is_empty() {
                let (used, done) = p
                    .feed(&self.pending)
                    .map_err(|reply::TooLong| Broken::TooLong)?;
                self.pending.drain(..used);
                if let Some(r) = done {
                    return Ok(r);
                }
            }
            self.fill(deadline)?;
        }
    }

    /// Sends bytes.
    pub fn send(&mut self, data: &[u8]) -> Result<(), Broken> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return write_plain(&mut self.sock, data);
        };
        let mut rest = data;
        while !rest.is_empty() {
            let n = tls.writer().write(rest).map_err(|_| Broken::Closed)?;
            rest = &rest[n..];
            flush_tls(tls, &mut self.sock)?;
        }
        Ok(())
    }

    /// STARTTLS's second half (or SMTPS's first): the handshake.
    pub fn handshake(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<(), HandshakeError> {
        let other = |b: Broken| {
            HandshakeError::Other(match b {
                Broken::Timeout => "timed out".into(),
                Broken::Closed => "connection closed".into(),
                Broken::TooLong => "too long".into(),
                Broken::Tls(e) => e,
            })
        };
        // Nothing sent in plain text before the handshake may count as sent inside it.
        self.pending.clear();
        let mut tls = ClientConnection::new(config, name)
            .map_err(|e| HandshakeError::Other(e.to_string()))?;
        let deadline = Instant::now() + self.timeout;
        while tls.is_handshaking() {
            if tls.wants_write() {
                flush_tls(&mut tls, &mut self.sock).map_err(other)?;
                continue;
            }
            arm_read(&self.sock, &mut self.read_armed, deadline).map_err(other)?;
            match tls.read_tls(&mut self.sock) {
                Ok(0) => return Err(other(Broken::Closed)),
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        let _ = flush_tls(&mut tls, &mut self.sock);
                        return Err(match e {
                            rustls::Error::InvalidCertificate(_) => {
                                HandshakeError::Certificate(e.to_string())
                            }
                            e => HandshakeError::Other(e.to_string()),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => return Err(other(Broken::Timeout)),
                Err(_) => return Err(other(Broken::Closed)),
            }
        }
        flush_tls(&mut tls, &mut self.sock).map_err(other)?;
        self.tls = Some(Box::new(tls));
        Ok(())
    }
}

/// Writes `data`; each write may wait the timeout set by [`Conn::new`].
fn write_plain(sock: &mut TcpStream, mut data: &[u8]) -> Result<(), Broken> {
    while !data.is_empty() {
        match sock.write(data) {
            Ok(0) => return Err(Broken::Closed),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err(Broken::Timeout),
            Err(_) => return Err(Broken::Closed),
        }
    }
    Ok(())
}

/// Sends what the TLS session has to send; each write may wait the timeout set by
/// [`Conn::new`].
fn flush_tls(tls: &mut ClientConnection, sock: &mut TcpStream) -> Result<(), Broken> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(Broken::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err(Broken::Timeout),
            Err(_) => return Err(Broken::Closed),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn pair(timeout: Duration) -> (Conn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = connect(
            l.local_addr().unwrap().ip(),
            l.local_addr().unwrap().port(),
            timeout,
        )
        .unwrap();
        let (s, _) = l.accept().unwrap();
        (Conn::new(c, timeout), s)
    }

    #[test]
    fn replies_across_reads() {
        let (mut c, mut s) = pair(Duration::from_secs(10));
        let t = thread::spawn(move || {
            s.write_all(b"220-a\r\n").unwrap();
            thread::sleep(Duration::from_millis(50));
            s.write_all(b"220 b\r\n250 ok\r\n").unwrap();
            let mut got = [0u8; 6];
            s.read_exact(&mut got).unwrap();
            got
        });
        let r = c.reply().unwrap();
        assert_eq!(r.text, b"220-a\n220 b\n");
        assert_eq!(c.reply().unwrap().code, Some(250));
        c.send(b"QUIT\r\n").unwrap();
        assert_eq!(&t.join().unwrap(), b"QUIT\r\n");
    }

    #[test]
    fn a_drip_feeding_server_cannot_stretch_a_reply() {
        let (mut c, mut s) = pair(Duration::from_millis(600));
        let t = thread::spawn(move || {
            // One byte every 100 ms: each read is quick, but the reply never ends.
            for _ in 0..30 {
                if s.write_all(b"2").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        let start = Instant::now();
        assert_eq!(c.reply(), Err(Broken::Timeout));
        assert!(start.elapsed() < Duration::from_secs(3));
        drop(c);
        t.join().unwrap();
    }

    #[test]
    fn closed_and_endless() {
        let (mut c, s) = pair(Duration::from_secs(10));
        drop(s);
        assert_eq!(c.reply(), Err(Broken::Closed));
        let (mut c, mut s) = pair(Duration::from_secs(10));
        thread::spawn(move || {
            let line = b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
            while s.write_all(line).is_ok() {}
        });
        assert_eq!(c.reply(), Err(Broken::TooLong));
    }

    #[test]
    fn refused_is_not_a_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        // Refused at once: not a timeout.
        assert!(!connect("127.0.0.1".parse().unwrap(), port, Duration::from_secs(5)).unwrap_err());
    }
}
