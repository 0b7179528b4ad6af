//! The Maildir as qmail-pop3d sees it: the messages in netqmail's order ([`scan`], from
//! control's Maildir reading, which maildir2mbox and maildirwatch share), each with its
//! size on disk (LF line ends), and [`Dir`], the [`crate::pop3d::Mailbox`] on the real
//! file system: every name is relative to the Maildir, which is the working directory.

use crate::pop3d::{Entry, Mailbox};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn path(name: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(name))
}

/// Lists the messages of the Maildir in the working directory (new/ and cur/), oldest
/// first. An error is netqmail's "unable to scan $HOME/Maildir".
pub fn scan(now: i64) -> Result<Vec<Entry>, control::MaildirScanError> {
    Ok(control::scan_maildir(now, true)?
        .into_iter()
        .map(|e| Entry {
            name: e.name,
            size: e.size,
        })
        .collect())
}

/// The Maildir in the working directory.
#[derive(Debug, Default)]
pub struct Dir;

impl Mailbox for Dir {
    type Message = File;

    fn open(&mut self, name: &[u8]) -> io::Result<File> {
        // Non-blocking, as netqmail's open_read: a FIFO among the messages reads as empty
        // instead of hanging the session.
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path(name))
    }

    fn unlink(&mut self, name: &[u8]) -> io::Result<()> {
        fs::remove_file(path(name))
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) -> io::Result<()> {
        fs::rename(path(from), path(to))
    }
}
