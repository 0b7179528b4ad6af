//! Message numbers in the queue: how a file name is read as one, and the walks over the
//! queue's directories that every reader shares (netqmail's readsubdir and the listings
//! of qmail-qread, qmail-qctl and qmail-send).

use crate::layout::SPLIT;
use std::fs::ReadDir;
use std::io;
use std::path::Path;

/// The message number a queue file name (or a number given by a person or in a request)
/// stands for, as netqmail's scan_ulong reads queue file names: decimal digits only, at
/// least one, leading zeros allowed (`007` is 7). A number beyond 64 bits is no message
/// number (netqmail's would wrap).
pub fn message_id(name: &[u8]) -> Option<u64> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    name.iter().try_fold(0u64, |n, &c| {
        n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

/// The message numbers named in `dir`, in directory order; names that are not message
/// numbers are skipped. An entry that cannot be read is an `Err` item.
pub fn ids_in(dir: &Path) -> io::Result<impl Iterator<Item = io::Result<u64>>> {
    Ok(std::fs::read_dir(dir)?.filter_map(|e| match e {
        Ok(e) => message_id(e.file_name().as_encoded_bytes()).map(Ok),
        Err(e) => Some(Err(e)),
    }))
}

/// What one step of a [`SubdirScan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A message number.
    Id(u64),
    /// Nothing this time (a subdirectory was opened or finished, a name was skipped).
    Again,
    /// Every subdirectory has been read.
    Done,
}

/// netqmail's readsubdir: walks `name/0` ... `name/(SPLIT-1)` (relative to the working
/// directory) one entry per call, so that qmail-send can interleave it with its other
/// work.
#[derive(Debug)]
pub struct SubdirScan {
    name: &'static str,
    pos: u64,
    dir: Option<ReadDir>,
}

impl SubdirScan {
    /// A scan of the split directory `name` (e.g. `info`).
    pub fn new(name: &'static str) -> SubdirScan {
        SubdirScan {
            name,
            pos: 0,
            dir: None,
        }
    }

    /// The next step. A subdirectory that cannot be opened is handed to `pause` (qmail-send
    /// logs it and sleeps) and tried again at the next call.
    pub fn next(&mut self, pause: impl FnOnce(&str)) -> Scan {
        let Some(dir) = &mut self.dir else {
            if self.pos >= SPLIT {
                return Scan::Done;
            }
            let p = format!("{}/{}", self.name, self.pos);
            match std::fs::read_dir(&p) {
                Ok(d) => {
                    self.dir = Some(d);
                    self.pos += 1;
                }
                Err(_) => pause(&p),
            }
            return Scan::Again;
        };
        match dir.next() {
            None => {
                self.dir = None;
                Scan::Again
            }
            Some(Err(_)) => Scan::Again,
            Some(Ok(e)) => match message_id(e.file_name().as_encoded_bytes()) {
                Some(id) => Scan::Id(id),
                None => Scan::Again,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn netqmails_reading_of_names() {
        assert_eq!(message_id(b"457"), Some(457));
        assert_eq!(message_id(b"007"), Some(7));
        assert_eq!(message_id(b"0"), Some(0));
        assert_eq!(message_id(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+5",
            b"-5",
            b" 5",
            b"5 ",
            b"5.tmp",
            b"18446744073709551616",
            b"\xd9\xa3",
        ] {
            assert_eq!(message_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn directory_listing() {
        let d = tempfile::tempdir().unwrap();
        for n in ["12", "007", "x", "3.tmp", "+4"] {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        let mut ids: Vec<u64> = ids_in(d.path()).unwrap().map(Result::unwrap).collect();
        ids.sort_unstable();
        assert_eq!(ids, [7, 12]);
        assert!(ids_in(&d.path().join("missing")).is_err());
    }

    proptest! {
        #[test]
        fn digits_read_as_their_number(n in any::<u64>(), zeros in 0usize..5) {
            let name = format!("{}{n}", "0".repeat(zeros));
            prop_assert_eq!(message_id(name.as_bytes()), Some(n));
        }

        #[test]
        fn anything_else_is_no_number(name in proptest::collection::vec(any::<u8>(), 0..30)) {
            if let Some(n) = message_id(&name) {
                prop_assert!(name.iter().all(u8::is_ascii_digit));
                let shown = n.to_string();
                let trimmed = name.iter().skip_while(|&&c| c == b'0').copied().collect::<Vec<u8>>();
                prop_assert!(trimmed == shown.as_bytes() || (n == 0 && trimmed.is_empty()));
            }
        }
    }
}
