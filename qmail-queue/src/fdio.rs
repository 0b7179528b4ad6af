//! Reading and writing descriptors handed over by qmail's fd protocols (fd 0 and fd 1 of
//! qmail-queue are both inputs), without taking ownership of them.

use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;

/// A reader over a borrowed descriptor; EINTR is retried.
#[derive(Debug)]
pub struct FdReader<'a> {
    fd: BorrowedFd<'a>,
}

impl<'a> FdReader<'a> {
    /// Reads from `fd` for as long as it is borrowed.
    pub fn new(fd: BorrowedFd<'a>) -> Self {
        FdReader { fd }
    }
}

/// A source of bytes that can fill the spare capacity of a buffer without it being zeroed
/// first (qmail-queue's message copy).
pub trait Fill {
    /// Appends at most `buf`'s spare capacity; 0 at end of input.
    fn fill(&mut self, buf: &mut Vec<u8>) -> io::Result<usize>;
}

impl Fill for FdReader<'_> {
    fn fill(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        crate::sys::read_spare(self.fd, buf)
    }
}

impl Fill for &[u8] {
    fn fill(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let n = self.len().min(buf.capacity() - buf.len());
        buf.extend_from_slice(&self[..n]);
        *self = &self[n..];
        Ok(n)
    }
}

impl Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::read(self.fd, buf) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }
}

/// A writer over a borrowed descriptor; EINTR is retried.
#[derive(Debug)]
pub struct FdWriter<'a> {
    fd: BorrowedFd<'a>,
}

impl<'a> FdWriter<'a> {
    /// Writes to `fd` for as long as it is borrowed.
    pub fn new(fd: BorrowedFd<'a>) -> Self {
        FdWriter { fd }
    }
}

impl Write for FdWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::write(self.fd, buf) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
