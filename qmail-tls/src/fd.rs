//! Plain descriptors as a [`Transport`]: reads with a timeout, writes with a timeout.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// The input buffer: the most bytes read at once.
pub const READ_BUF: usize = 16 * 1024;
/// Most bytes given to one write(2) call on a descriptor that is not a socket, unless
/// [`FdTransport::with_write_step`] says otherwise (netqmail's qmail-smtpd output buffer
/// size). A socket takes everything at once (see [`FdTransport`]).
pub const WRITE_STEP: usize = 512;

/// A connection to the client: plain descriptors ([`FdTransport`]) or TLS over them
/// ([`crate::TlsTransport`]).
pub trait Transport {
    /// Reads what is available, waiting at most `timeout` for something to arrive.
    /// `Ok(0)` is the end of input; an error of kind `TimedOut` means nothing came.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;
    /// Writes all of `data`, waiting at most `timeout` each time the peer is not ready.
    fn write_all(&mut self, data: &[u8], timeout: Duration) -> io::Result<()>;
}

/// Plain descriptors: input from one, output to the other (0 and 1 under tcpserver).
///
/// Output to a socket is sent without blocking (`MSG_DONTWAIT`), all of it in one call
/// when the socket has room (a whole TLS flight, all the replies to a pipeline), and the
/// timeout is waited for only when the socket is full. Any other descriptor (a pipe) is
/// written in pieces of at most the write step, each after poll(2) said there is room,
/// so that a blocking descriptor cannot hold a write past the timeout.
#[derive(Debug, Clone, Copy)]
pub struct FdTransport<'a> {
    input: BorrowedFd<'a>,
    output: BorrowedFd<'a>,
    write_step: usize,
    /// Whether `output` is a socket: unknown until the first write.
    output_socket: Option<bool>,
}

impl<'a> FdTransport<'a> {
    /// Reads from `input` and writes to `output`, [`WRITE_STEP`] bytes at a time.
    pub fn new(input: BorrowedFd<'a>, output: BorrowedFd<'a>) -> FdTransport<'a> {
        FdTransport {
            input,
            output,
            write_step: WRITE_STEP,
            output_socket: None,
        }
    }

    /// Gives at most `n` bytes (at least 1) to each write(2) call on a descriptor that is
    /// not a socket.
    pub fn with_write_step(mut self, n: usize) -> FdTransport<'a> {
        self.write_step = n.max(1);
        self
    }

    /// The descriptor read from.
    pub fn input(&self) -> BorrowedFd<'a> {
        self.input
    }

    /// The descriptor written to.
    pub fn output(&self) -> BorrowedFd<'a> {
        self.output
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timeout")
}

/// Waits until `fd` is ready for `events` or `timeout` passes (an error of kind
/// `TimedOut` then). Signals are retried with
/// the time that is left; a timeout too long for poll(2) is waited for in parts.
pub fn wait_ready(
    fd: BorrowedFd<'_>,
    events: nix::poll::PollFlags,
    timeout: Duration,
) -> io::Result<()> {
    use nix::poll::{PollFd, PollTimeout, poll};
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        };
        // Rounded up, so that a wait never ends just before the deadline.
        let ms = PollTimeout::try_from(left.as_micros().div_ceil(1000).min(i32::MAX as u128))
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, events)];
        match poll(&mut fds, ms) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(timed_out());
                }
            }
            // Readable, writable, or an error/hangup condition the next call reports.
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

impl Transport for FdTransport<'_> {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        loop {
            wait_ready(self.input, nix::poll::PollFlags::POLLIN, timeout)?;
            match nix::unistd::read(self.input, buf) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }

    fn write_all(&mut self, mut data: &[u8], timeout: Duration) -> io::Result<()> {
        use nix::errno::Errno;
        while !data.is_empty() {
            if self.output_socket != Some(false) {
                let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT;
                match nix::sys::socket::send(self.output.as_raw_fd(), data, flags) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(w) => {
                        self.output_socket = Some(true);
                        data = &data[w..];
                    }
                    // Full: wait until it has room, at most `timeout`.
                    Err(Errno::EAGAIN) => {
                        self.output_socket = Some(true);
                        wait_ready(self.output, nix::poll::PollFlags::POLLOUT, timeout)?;
                    }
                    Err(Errno::EINTR) => {}
                    Err(Errno::ENOTSOCK) => self.output_socket = Some(false),
                    Err(e) => return Err(io::Error::from(e)),
                }
                continue;
            }
            wait_ready(self.output, nix::poll::PollFlags::POLLOUT, timeout)?;
            let n = data.len().min(self.write_step);
            match nix::unistd::write(self.output, &data[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => data = &data[w..],
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        Ok(())
    }
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        (**self).read(buf, timeout)
    }
    fn write_all(&mut self, data: &[u8], timeout: Duration) -> io::Result<()> {
        (**self).write_all(data, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_transport_reads_writes_and_times_out() {
        use std::io::{Read, Write};
        use std::os::fd::AsFd;
        let (r1, mut w1) = std::io::pipe().unwrap();
        let (mut r2, w2) = std::io::pipe().unwrap();
        let mut t = FdTransport::new(r1.as_fd(), w2.as_fd());
        w1.write_all(b"hello").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(t.read(&mut buf, Duration::from_secs(5)).unwrap(), 5);
        let e = t.read(&mut buf, Duration::from_millis(10)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        t.write_all(&[b'x'; 2000], Duration::from_secs(5)).unwrap();
        let mut got = vec![0u8; 2000];
        r2.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&c| c == b'x'));
        drop(w1);
        assert_eq!(t.read(&mut buf, Duration::from_secs(5)).unwrap(), 0);
        // A pipe is no socket: written in steps.
        assert_eq!(t.output_socket, Some(false));
    }

    #[test]
    fn socket_output_goes_whole_and_times_out_only_when_full() {
        use std::io::Read;
        use std::os::fd::AsFd;
        use std::os::unix::net::UnixStream;
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut t = FdTransport::new(a.as_fd(), a.as_fd());
        // More than the socket holds: written as the reader makes room.
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 1 << 20];
            b.read_exact(&mut got).unwrap();
            got.iter().all(|&c| c == b'y')
        });
        t.write_all(&vec![b'y'; 1 << 20], Duration::from_secs(30))
            .unwrap();
        assert!(reader.join().unwrap());
        assert_eq!(t.output_socket, Some(true));
        // A peer that reads nothing: the write ends at the timeout, the descriptor still
        // blocking (MSG_DONTWAIT is per call).
        let (a, _b) = UnixStream::pair().unwrap();
        let mut t = FdTransport::new(a.as_fd(), a.as_fd());
        let e = t
            .write_all(&vec![0u8; 1 << 20], Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let fl = nix::fcntl::fcntl(a.as_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(fl & nix::libc::O_NONBLOCK, 0);
    }
}
