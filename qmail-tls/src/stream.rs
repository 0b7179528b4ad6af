//! TLS over a [`Transport`] with rustls, which does no I/O itself: [`TlsTransport`]
//! moves its records with the transport's timeouts, and offers the same two calls, so
//! that a dialogue runs unchanged over plain descriptors or TLS. [`TlsTransport::relay`]
//! hands a whole connection to another program that speaks plaintext.

use crate::fd::{FdTransport, READ_BUF, Transport, wait_ready};
use crate::server::{NotingVerifier, TlsInfo, TlsServer};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{Shutdown, shutdown};
use rustls::server::ServerConnection;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// TLS over another transport.
pub struct TlsTransport<T: Transport> {
    inner: T,
    conn: ServerConnection,
    verifier: Option<Arc<NotingVerifier>>,
    /// TLS bytes read from `inner` and not yet given to rustls.
    raw: Vec<u8>,
    raw_at: usize,
    eof: bool,
}

impl<T: Transport> std::fmt::Debug for TlsTransport<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl<T: Transport> TlsTransport<T> {
    /// Does the server side of the handshake over `inner`, each read and write bounded
    /// by `timeout`.
    pub fn accept(inner: T, server: &TlsServer, timeout: Duration) -> io::Result<TlsTransport<T>> {
        let conn = ServerConnection::new(server.config.clone()).map_err(tls_err)?;
        let mut t = TlsTransport {
            inner,
            conn,
            verifier: server.verifier.clone(),
            raw: Vec::new(),
            raw_at: 0,
            eof: false,
        };
        while t.conn.is_handshaking() {
            t.flush_tls(timeout)?;
            if !t.conn.is_handshaking() {
                break;
            }
            if !t.pump(timeout)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        t.flush_tls(timeout)?;
        Ok(t)
    }

    /// What was negotiated.
    pub fn info(&self) -> TlsInfo {
        TlsInfo::of(&self.conn, self.verifier.as_deref())
    }

    /// Writes whatever rustls has to send.
    fn flush_tls(&mut self, timeout: Duration) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut out = Vec::new();
            self.conn.write_tls(&mut out)?;
            self.inner.write_all(&out, timeout)?;
        }
        Ok(())
    }

    /// Hands TLS bytes to rustls, reading more from `inner` when none are waiting.
    /// Returns false at the end of input.
    fn pump(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.raw_at >= self.raw.len() {
            if self.eof {
                return Ok(false);
            }
            self.raw.resize(READ_BUF + 512, 0);
            let n = self.inner.read(&mut self.raw, timeout)?;
            self.raw.truncate(n);
            self.raw_at = 0;
            if n == 0 {
                self.eof = true;
                // Lets rustls know, so that a read reports the unclean end.
                let _ = self.conn.read_tls(&mut io::empty());
                return Ok(false);
            }
        }
        let mut rest = &self.raw[self.raw_at..];
        let before = rest.len();
        self.conn.read_tls(&mut rest)?;
        self.raw_at += before - rest.len();
        if let Err(e) = self.conn.process_new_packets() {
            // Tell the peer why (an alert), then give up.
            let _ = self.flush_tls(timeout);
            return Err(tls_err(e));
        }
        Ok(true)
    }

    /// Sends close_notify (after QUIT).
    pub fn close(&mut self, timeout: Duration) {
        self.conn.send_close_notify();
        let _ = self.flush_tls(timeout);
    }
}

impl<T: Transport> Transport for TlsTransport<T> {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            self.flush_tls(timeout)?;
            if !self.conn.wants_read() {
                // Plaintext is waiting (the loop reads it) or the peer closed.
                continue;
            }
            if !self.pump(timeout)? {
                return Ok(0);
            }
        }
    }

    fn write_all(&mut self, mut data: &[u8], timeout: Duration) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.conn.writer().write(data)?;
            data = &data[n..];
            self.flush_tls(timeout)?;
            if n == 0 && self.conn.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        self.flush_tls(timeout)
    }
}

/// Descriptor errors as io errors.
fn sys(e: Errno) -> io::Error {
    io::Error::from(e)
}

impl TlsTransport<FdTransport<'_>> {
    /// Relays between this TLS connection and `plain`, a socket whose other end is a
    /// program speaking plaintext: what the client sends is decrypted and written to
    /// `plain`, what the program writes to `plain` goes to the client encrypted. When the
    /// client is done (close_notify or end of input), `plain` is shut down for writing,
    /// so that the program reads its end of input. Returns when the program's side ends
    /// (every holder of the other end has closed it); the caller then sends close_notify.
    ///
    /// Every wait is bounded by `idle`: nothing moving in either direction for that long
    /// is an error of kind `TimedOut`. `plain` is made non-blocking. Neither direction
    /// holds more than [`READ_BUF`] bytes: a side that does not read stops the other.
    pub fn relay(&mut self, plain: BorrowedFd<'_>, idle: Duration) -> io::Result<()> {
        let flags = fcntl(plain, FcntlArg::F_GETFL).map_err(sys)?;
        fcntl(
            plain,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(sys)?;
        let mut buf = vec![0u8; READ_BUF];
        // Decrypted client input not yet taken by the program.
        let mut to_plain: Vec<u8> = Vec::new();
        let mut client_done = false;
        let mut shut = false;
        loop {
            self.flush_tls(idle)?;
            while !client_done && to_plain.len() < READ_BUF {
                match self.conn.reader().read(&mut buf) {
                    Ok(0) => client_done = true,
                    Ok(n) => to_plain.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => client_done = true,
                    Err(e) => return Err(e),
                }
            }
            while !shut && !to_plain.is_empty() {
                match nix::unistd::write(plain, &to_plain) {
                    Ok(n) => drop(to_plain.drain(..n)),
                    Err(Errno::EAGAIN) => break,
                    Err(Errno::EINTR) => {}
                    // The program is gone; its end of output follows.
                    Err(_) => to_plain.clear(),
                }
            }
            if client_done && to_plain.is_empty() && !shut {
                let _ = shutdown(plain.as_raw_fd(), Shutdown::Write);
                shut = true;
            }
            let room = !client_done && to_plain.len() < READ_BUF;
            if room && self.raw_at < self.raw.len() {
                // TLS bytes read earlier: no need to wait for them.
                client_done = !self.pump(idle)?;
                continue;
            }
            let want_net = room && !self.eof && self.conn.wants_read();
            let mut plain_events = PollFlags::POLLIN;
            if !shut && !to_plain.is_empty() {
                plain_events |= PollFlags::POLLOUT;
            }
            let (plain_ready, net_ready) = wait_either(
                plain,
                plain_events,
                want_net.then(|| self.inner.input()),
                idle,
            )?;
            if plain_ready {
                match nix::unistd::read(plain, &mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => self.send_plain(&buf[..n], idle)?,
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(e) => return Err(sys(e)),
                }
            }
            if net_ready && !self.pump(idle)? {
                client_done = true;
            }
        }
    }

    /// Encrypts `data` and sends it.
    fn send_plain(&mut self, mut data: &[u8], idle: Duration) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.conn.writer().write(data)?;
            data = &data[n..];
            if n == 0 && !self.conn.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.flush_tls(idle)?;
        }
        Ok(())
    }
}

/// Waits until `a` is ready for `a_events` or `b` (when given) is readable, at most
/// `idle`; returns which of them are (an error or hang-up counts as ready: the next
/// call on the descriptor reports it).
fn wait_either(
    a: BorrowedFd<'_>,
    a_events: PollFlags,
    b: Option<BorrowedFd<'_>>,
    idle: Duration,
) -> io::Result<(bool, bool)> {
    let Some(b) = b else {
        wait_ready(a, a_events, idle)?;
        return Ok((true, false));
    };
    let ms =
        PollTimeout::try_from(idle.as_millis().min(i32::MAX as u128)).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(a, a_events), PollFd::new(b, PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "timeout")),
            Ok(_) => {
                let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
                return Ok((ready(&fds[0]), ready(&fds[1])));
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(sys(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
    use std::io::{BufRead, BufReader};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::thread;

    const T: Duration = Duration::from_secs(60);

    fn client(
        home: &std::path::Path,
        net: UnixStream,
    ) -> StreamOwned<ClientConnection, UnixStream> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(home.join("ca.pem")).unwrap())
            .unwrap();
        let cfg =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let name = ServerName::try_from("testhost.example").unwrap();
        let conn = ClientConnection::new(Arc::new(cfg), name).unwrap();
        StreamOwned::new(conn, net)
    }

    fn line(r: &mut impl BufRead) -> String {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        l
    }

    /// A plaintext program on `end`: greets, answers each line in upper case, sends 1 MB
    /// for "big", says bye and ends for "quit" (or at the end of its input).
    fn program(end: UnixStream) -> thread::JoinHandle<Vec<String>> {
        thread::spawn(move || {
            let mut w = end.try_clone().unwrap();
            let r = BufReader::new(end);
            w.write_all(b"hello\r\n").unwrap();
            let mut seen = Vec::new();
            for l in r.lines() {
                let l = l.unwrap();
                seen.push(l.clone());
                match l.as_str() {
                    "big" => w.write_all(&vec![b'x'; 1 << 20]).unwrap(),
                    "quit" => {
                        w.write_all(b"bye\r\n").unwrap();
                        break;
                    }
                    _ => w
                        .write_all(format!("{}\r\n", l.to_uppercase()).as_bytes())
                        .unwrap(),
                }
            }
            seen
        })
    }

    type Client = BufReader<StreamOwned<ClientConnection, UnixStream>>;

    /// A relay between a TLS client running `talk` and [`program`]; returns what the
    /// program read.
    fn relayed(talk: impl FnOnce(&mut Client) + Send + 'static) -> Vec<String> {
        let home = crate::testcert::home();
        let (net, net_client) = UnixStream::pair().unwrap();
        let (plain, plain_prog) = UnixStream::pair().unwrap();
        let prog = program(plain_prog);
        let h = home.path().to_path_buf();
        let c = thread::spawn(move || {
            let mut tls = BufReader::new(client(&h, net_client));
            assert_eq!(line(&mut tls), "hello\r\n");
            talk(&mut tls);
            // then close_notify: a clean end of input
            let mut rest = Vec::new();
            tls.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        });
        let server = crate::load(home.path(), None, false).unwrap().unwrap();
        let fds = FdTransport::new(net.as_fd(), net.as_fd());
        let mut t = TlsTransport::accept(fds, &server, T).unwrap();
        t.relay(plain.as_fd(), T).unwrap();
        t.close(T);
        c.join().unwrap();
        prog.join().unwrap()
    }

    #[test]
    fn relay_carries_both_ways_and_ends_with_the_program() {
        let seen = relayed(|tls| {
            tls.get_mut().write_all(b"abc\nbig\n").unwrap();
            assert_eq!(line(tls), "ABC\r\n");
            let mut big = vec![0u8; 1 << 20];
            tls.read_exact(&mut big).unwrap();
            assert!(big.iter().all(|&b| b == b'x'));
            tls.get_mut().write_all(b"quit\n").unwrap();
            assert_eq!(line(tls), "bye\r\n");
        });
        assert_eq!(seen, ["abc", "big", "quit"]);
    }

    #[test]
    fn the_clients_end_is_the_programs_end_of_input() {
        let seen = relayed(|tls| {
            tls.get_mut().write_all(b"one\ntwo\n").unwrap();
            assert_eq!(line(tls), "ONE\r\n");
            assert_eq!(line(tls), "TWO\r\n");
            tls.get_mut().conn.send_close_notify();
            tls.get_mut().flush().unwrap();
        });
        assert_eq!(seen, ["one", "two"]);
    }

    #[test]
    fn a_silent_relay_times_out() {
        let home = crate::testcert::home();
        let (net, net_client) = UnixStream::pair().unwrap();
        let (plain, _plain_prog) = UnixStream::pair().unwrap();
        let h = home.path().to_path_buf();
        let c = thread::spawn(move || {
            let mut tls = client(&h, net_client);
            // the handshake, then silence until the server gives up
            tls.write_all(b"").unwrap();
            tls.flush().unwrap();
            while tls.conn.is_handshaking() {
                tls.conn.complete_io(&mut tls.sock).unwrap();
            }
            let mut rest = Vec::new();
            let _ = tls.read_to_end(&mut rest);
        });
        let server = crate::load(home.path(), None, false).unwrap().unwrap();
        let fds = FdTransport::new(net.as_fd(), net.as_fd());
        let mut t = TlsTransport::accept(fds, &server, T).unwrap();
        let e = t
            .relay(plain.as_fd(), Duration::from_millis(200))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(t);
        drop(net);
        c.join().unwrap();
    }
}
