//! Plain descriptors as a [`Transport`]: reads with a timeout, writes with a timeout.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// The input buffer: the most bytes read at once.
pub const READ_BUF: usize = 16 * 1024;
/// Most bytes given to one write(2) call unless [`FdTransport::with_write_step`] says
/// otherwise (netqmail's qmail-smtpd output buffer size).
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
#[derive(Debug, Clone, Copy)]
pub struct FdTransport<'a> {
    input: BorrowedFd<'a>,
    output: BorrowedFd<'a>,
    write_step: usize,
}

impl<'a> FdTransport<'a> {
    /// Reads from `input` and writes to `output`, [`WRITE_STEP`] bytes at a time.
    pub fn new(input: BorrowedFd<'a>, output: BorrowedFd<'a>) -> FdTransport<'a> {
        FdTransport {
            input,
            output,
            write_step: WRITE_STEP,
        }
    }

    /// Gives at most `n` bytes (at least 1) to each write(2) call.
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
        while !data.is_empty() {
            wait_ready(self.output, nix::poll::PollFlags::POLLOUT, timeout)?;
            let n = data.len().min(self.write_step);
            match nix::unistd::write(self.output, &data[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => data = &data[w..],
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
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
    }
}
