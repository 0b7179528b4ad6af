//! The client end of qmail-send's control socket.

use qmail_queue::qctl::{Kind, MAX_LINE, Reply, Request, socket_name};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::Path;

/// Why no connection was made.
#[derive(Debug)]
pub enum ConnectError {
    /// Nobody listens: qmail-send is not running, or does not take requests.
    NotListening,
    /// The listener is neither root nor this user: not qmail-send; its uid.
    Stranger(u32),
    Io(io::Error),
}

/// A connection to qmail-send.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

/// Connects to the qmail-send serving the queue directory `queue`, and checks that the
/// listener runs as root or as this process's user (after qmail-qctl has switched to
/// qmails, that is qmail-send's user).
pub fn connect(queue: &Path) -> Result<Client, ConnectError> {
    let md = fs::metadata(queue).map_err(ConnectError::Io)?;
    let addr = SocketAddr::from_abstract_name(socket_name(md.dev(), md.ino()))
        .map_err(ConnectError::Io)?;
    let stream = match UnixStream::connect_addr(&addr) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ConnectError::NotListening);
        }
        Err(e) => return Err(ConnectError::Io(e)),
    };
    let cred = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| ConnectError::Io(e.into()))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() != 0 && cred.uid() != me {
        return Err(ConnectError::Stranger(cred.uid()));
    }
    let reader = BufReader::new(stream.try_clone().map_err(ConnectError::Io)?);
    Ok(Client { stream, reader })
}

impl Client {
    /// Sends one request and reads its answer: `on_wait` sees each `wait` line, the final
    /// line is returned.
    pub fn request(&mut self, req: &Request, mut on_wait: impl FnMut(&Reply)) -> io::Result<Reply> {
        self.stream.write_all(req.line().as_bytes())?;
        loop {
            let mut line = Vec::new();
            (&mut self.reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)?;
            if line.last() != Some(&b'\n') {
                return Err(if line.is_empty() {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "qmail-send closed the connection",
                    )
                } else {
                    io::Error::new(io::ErrorKind::InvalidData, "reply line too long")
                });
            }
            line.pop();
            let r = Reply::parse(&line).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed reply from qmail-send",
                )
            })?;
            if r.kind == Kind::Wait {
                on_wait(&r);
                continue;
            }
            return Ok(r);
        }
    }
}
