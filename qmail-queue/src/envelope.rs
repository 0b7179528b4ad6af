//! The envelope qmail-queue reads on descriptor 1 (qmail-queue(8), envelopes(5)):
//! `F` sender `\0`, then `T` recipient `\0` for each recipient, then one more `\0`.
//!
//! Addresses are bytes; each may hold at most [`MAX_ADDR`] bytes (netqmail's ADDR of
//! 1003 including the terminating `\0`).

use std::io::{self, Read, Write};

/// The longest address qmail-queue accepts, in bytes (without the `\0`).
pub const MAX_ADDR: usize = 1002;

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
}

/// What can be wrong with an envelope stream.
#[derive(Debug)]
pub enum EnvelopeError {
    /// An address longer than [`MAX_ADDR`] (qmail-queue exit 11).
    TooLong,
    /// Not `F` first, or not `T` before a recipient (exit 91).
    Format,
    /// End of file before the final `\0`, or a read error (exit 54).
    Read(io::Error),
    /// The copy could not be written (exit 53).
    Write(io::Error),
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::TooLong => write!(f, "envelope address too long"),
            EnvelopeError::Format => write!(f, "envelope format error"),
            EnvelopeError::Read(e) => write!(f, "unable to read envelope: {e}"),
            EnvelopeError::Write(e) => write!(f, "unable to write envelope: {e}"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

impl Envelope {
    /// The bytes qmail-queue expects on descriptor 1.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(
            3 + self.sender.len() + self.recipients.iter().map(|r| r.len() + 2).sum::<usize>(),
        );
        v.push(b'F');
        v.extend_from_slice(&self.sender);
        v.push(0);
        for r in &self.recipients {
            v.push(b'T');
            v.extend_from_slice(r);
            v.push(0);
        }
        v.push(0);
        v
    }

    /// Parses a complete envelope held in memory.
    pub fn parse(data: &[u8]) -> Result<Envelope, EnvelopeError> {
        let mut env = Envelope::default();
        let mut sink = Collect { env: &mut env };
        copy(&mut &data[..], &mut sink)?;
        Ok(env)
    }
}

/// Receives the records of an envelope as they are read.
pub trait Records {
    /// A whole record: its letter (`F` or `T`) and address.
    fn record(&mut self, letter: u8, addr: &[u8]) -> io::Result<()>;
    /// Called once after the sender record (qmail-queue writes QUEUE_EXTRA here).
    fn after_sender(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Collect<'a> {
    env: &'a mut Envelope,
}

impl Records for Collect<'_> {
    fn record(&mut self, letter: u8, addr: &[u8]) -> io::Result<()> {
        if letter == b'F' {
            self.env.sender = addr.to_vec();
        } else {
            self.env.recipients.push(addr.to_vec());
        }
        Ok(())
    }
}

/// Writes records in the intd format (`F`addr`\0`, `T`addr`\0`), with `extra` after the
/// sender: how qmail-queue copies the envelope into intd/N.
#[derive(Debug)]
pub struct RecordWriter<W: Write> {
    pub out: W,
    pub extra: Vec<u8>,
}

impl<W: Write> Records for RecordWriter<W> {
    fn record(&mut self, letter: u8, addr: &[u8]) -> io::Result<()> {
        self.out.write_all(&[letter])?;
        self.out.write_all(addr)?;
        self.out.write_all(&[0])
    }
    fn after_sender(&mut self) -> io::Result<()> {
        self.out.write_all(&self.extra)
    }
}

fn next_byte<R: Read>(r: &mut R) -> Result<u8, EnvelopeError> {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => {
                return Err(EnvelopeError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of envelope before its final 0 byte",
                )));
            }
            Ok(_) => return Ok(b[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EnvelopeError::Read(e)),
        }
    }
}

fn read_addr<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), EnvelopeError> {
    buf.clear();
    loop {
        let c = next_byte(r)?;
        if c == 0 {
            return Ok(());
        }
        if buf.len() >= MAX_ADDR {
            return Err(EnvelopeError::TooLong);
        }
        buf.push(c);
    }
}

/// Reads an envelope from `r` (which should be buffered) and hands each record to `out`.
/// Stops right after the final `\0`; nothing after it is read (beyond buffering).
pub fn copy<R: Read, O: Records>(r: &mut R, out: &mut O) -> Result<(), EnvelopeError> {
    let mut addr = Vec::with_capacity(64);
    if next_byte(r)? != b'F' {
        return Err(EnvelopeError::Format);
    }
    read_addr(r, &mut addr)?;
    out.record(b'F', &addr).map_err(EnvelopeError::Write)?;
    out.after_sender().map_err(EnvelopeError::Write)?;
    loop {
        match next_byte(r)? {
            0 => return Ok(()),
            b'T' => {
                read_addr(r, &mut addr)?;
                out.record(b'T', &addr).map_err(EnvelopeError::Write)?;
            }
            _ => return Err(EnvelopeError::Format),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let e = Envelope {
            sender: b"a@b.example".to_vec(),
            recipients: vec![b"c@d.example".to_vec(), b"".to_vec()],
        };
        assert_eq!(e.encode(), b"Fa@b.example\0Tc@d.example\0T\0\0");
        assert_eq!(Envelope::parse(&e.encode()).unwrap(), e);
        let bounce = Envelope {
            sender: vec![],
            recipients: vec![],
        };
        assert_eq!(bounce.encode(), b"F\0\0");
    }

    #[test]
    fn faults() {
        assert!(matches!(
            Envelope::parse(b"Xa\0\0"),
            Err(EnvelopeError::Format)
        ));
        assert!(matches!(
            Envelope::parse(b"Fa\0Ub\0\0"),
            Err(EnvelopeError::Format)
        ));
        assert!(matches!(
            Envelope::parse(b"Fa\0Tb\0"),
            Err(EnvelopeError::Read(_))
        ));
        assert!(matches!(Envelope::parse(b""), Err(EnvelopeError::Read(_))));
        let mut long = b"F".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_ADDR));
        long.extend(b"\0\0");
        assert!(Envelope::parse(&long).is_ok());
        let mut long = b"F".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_ADDR + 1));
        long.extend(b"\0\0");
        assert!(matches!(
            Envelope::parse(&long),
            Err(EnvelopeError::TooLong)
        ));
    }

    #[test]
    fn writer_places_extra_after_sender() {
        let mut w = RecordWriter {
            out: Vec::new(),
            extra: b"Textra\0".to_vec(),
        };
        copy(&mut &b"Fs\0Tr\0\0trailing"[..], &mut w).unwrap();
        assert_eq!(w.out, b"Fs\0Textra\0Tr\0");
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Envelope::parse(&data);
        }

        #[test]
        fn encode_parse_round_trip(
            sender in proptest::collection::vec(1u8..=255, 0..100),
            recips in proptest::collection::vec(proptest::collection::vec(1u8..=255, 0..100), 0..10),
        ) {
            let e = Envelope { sender, recipients: recips };
            prop_assert_eq!(Envelope::parse(&e.encode()).unwrap(), e);
        }
    }
}
