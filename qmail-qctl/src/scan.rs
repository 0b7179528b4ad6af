//! Reading the queue: the messages, their envelopes and states, as qmail-qctl lists and
//! shows them.
//!
//! A message is either *new* (`todo/N`: qmail-queue has finished it, qmail-send has not
//! preprocessed it yet; its recipients are not split into local and remote yet) or
//! preprocessed (`info/S/N` with `local/S/N` and `remote/S/N`), and then *held* when its
//! info file carries the hold mark ([`qmail_queue::mark`]) or else *queued*. Files vanish while
//! qmail-send works; a message whose files disappear during the reading is skipped.

use qmail_queue::qctl as mark;
use qmail_queue::{ChannelRecord, TodoRecord, channel_record, complete_records, todo_record};
use qmail_queue::{Queue, SPLIT};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The most bytes read from one envelope or recipient file.
pub const MAX_FILE: u64 = 64 << 20;

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// In todo/: not preprocessed yet.
    New,
    /// Preprocessed, being delivered as usual.
    Queued,
    /// Preprocessed and held.
    Held,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::New => "new",
            State::Queued => "queued",
            State::Held => "held",
        }
    }
}

/// One envelope recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// 0 local, 1 remote; `None` while the message is new.
    pub channel: Option<usize>,
    /// Delivered or bounced already.
    pub done: bool,
    pub addr: Vec<u8>,
}

/// One message as the queue shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub state: State,
    /// Seconds since the epoch: when it was preprocessed (info's modification time), or
    /// for a new message when qmail-queue finished it (todo's).
    pub birth: u64,
    /// Bytes in the message file.
    pub size: u64,
    pub sender: Vec<u8>,
    pub recipients: Vec<Recipient>,
    /// A bounce is being collected (bounce/N exists).
    pub bouncing: bool,
}

impl Message {
    /// The recipients not delivered yet.
    pub fn waiting(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| !r.done)
    }
}

fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    control::open_read(path)?
        .take(MAX_FILE + 1)
        .read_to_end(&mut data)?;
    if data.len() as u64 > MAX_FILE {
        return Err(io::Error::other("file too large"));
    }
    Ok(data)
}

/// Message numbers of the names in `dir` (other names are skipped).
fn numbers(dir: &Path, out: &mut Vec<u64>) -> io::Result<()> {
    for id in qmail_queue::ids_in(dir)? {
        out.push(id?);
    }
    Ok(())
}

/// Every message number in todo/ and info/, sorted, each once.
pub fn ids(q: &Queue) -> io::Result<Vec<u64>> {
    let mut v = Vec::new();
    numbers(&q.root().join("todo"), &mut v)?;
    for s in 0..SPLIT {
        numbers(&q.root().join(format!("info/{s}")), &mut v)?;
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Reads message `id`. `Ok(None)` when it is not (or no longer) in the queue.
pub fn message(q: &Queue, id: u64) -> io::Result<Option<Message>> {
    let gone = |r: io::Result<Message>| match r {
        Ok(m) => Ok(Some(m)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e),
    };
    // todo/N first: while it exists, qmail-send has not (completely) preprocessed it.
    match fs::metadata(q.todo(id)) {
        Ok(md) => return gone(new_message(q, id, &md)),
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(e),
    }
    gone(preprocessed(q, id))
}

fn new_message(q: &Queue, id: u64, md: &fs::Metadata) -> io::Result<Message> {
    let data = read_capped(&q.todo(id))?;
    let size = fs::metadata(q.mess(id))?.len();
    let mut sender = Vec::new();
    let mut recipients = Vec::new();
    for r in complete_records(&data) {
        match todo_record(r) {
            TodoRecord::Sender(s) => sender = s.to_vec(),
            TodoRecord::Recipient(a) => recipients.push(Recipient {
                channel: None,
                done: false,
                addr: a.to_vec(),
            }),
            _ => {}
        }
    }
    Ok(Message {
        id,
        state: State::New,
        birth: u64::try_from(md.mtime()).unwrap_or(0),
        size,
        sender,
        recipients,
        bouncing: false,
    })
}

fn preprocessed(q: &Queue, id: u64) -> io::Result<Message> {
    let info = control::open_read(q.info(id))?;
    let md = info.metadata()?;
    let mut data = Vec::new();
    info.take(MAX_FILE).read_to_end(&mut data)?;
    let sender = data
        .strip_prefix(b"F")
        .and_then(|d| d.split(|&c| c == 0).next())
        .unwrap_or_default()
        .to_vec();
    let size = fs::metadata(q.mess(id))?.len();
    let bouncing = match fs::metadata(q.bounce(id)) {
        Ok(_) => true,
        Err(e) if not_found(&e) => false,
        Err(e) => return Err(e),
    };
    let mut recipients = Vec::new();
    for (c, path) in [q.local(id), q.remote(id)].iter().enumerate() {
        let data = match read_capped(path) {
            Ok(d) => d,
            Err(e) if not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        for r in complete_records(&data) {
            let (done, addr) = match channel_record(r) {
                ChannelRecord::Done(a) => (true, a),
                ChannelRecord::Waiting(a) => (false, a),
                ChannelRecord::Unknown => continue,
            };
            recipients.push(Recipient {
                channel: Some(c),
                done,
                addr: addr.to_vec(),
            });
        }
    }
    Ok(Message {
        id,
        state: if mark::is_held(md.mode()) {
            State::Held
        } else {
            State::Queued
        },
        birth: u64::try_from(md.mtime()).unwrap_or(0),
        size,
        sender,
        recipients,
        bouncing,
    })
}

/// The collected failure reports of message `id` (bounce/N), if any.
pub fn bounce_text(q: &Queue, id: u64) -> io::Result<Option<Vec<u8>>> {
    match read_capped(&q.bounce(id)) {
        Ok(d) => Ok(Some(d)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The message file of `id`: its header (up to and including the empty line, at most
/// `max` bytes) or, with `whole`, everything up to `max` bytes.
pub fn message_text(q: &Queue, id: u64, whole: bool, max: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    control::open_read(q.mess(id))?
        .take(max)
        .read_to_end(&mut data)?;
    if !whole {
        let end = header(&data).len();
        data.truncate(end);
    }
    Ok(data)
}

/// The header of a message file's text: up to and including the first empty line, or
/// all of it when it has none.
pub fn header(data: &[u8]) -> &[u8] {
    let end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(data.len(), |p| p + 2);
    &data[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn queue() -> (tempfile::TempDir, Queue) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("queue");
        qmail_queue::create_queue(&root, &control::Ids::single_user()).unwrap();
        (d, Queue::at(root))
    }

    #[test]
    fn reads_new_queued_and_held_messages() {
        let (_d, q) = queue();
        fs::write(q.mess(100), b"Subject: a\n\nbody\n").unwrap();
        fs::write(q.todo(100), b"u0\0p1\0Fs@x.example\0Ta@y.example\0Tb@z\0").unwrap();
        fs::write(q.mess(101), b"0123456789").unwrap();
        fs::write(q.info(101), b"F\0").unwrap();
        fs::set_permissions(q.info(101), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(q.local(101), b"Dann@l\0Tbob@l\0").unwrap();
        fs::write(q.remote(101), b"Tcarl@r\0Tunfinished").unwrap();
        fs::write(q.bounce(101), b"<ann@l>:\nno\n\n").unwrap();
        fs::write(q.mess(102), b"x").unwrap();
        fs::write(q.info(102), b"Fheld@x\0").unwrap();
        fs::set_permissions(q.info(102), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(q.info(9999), b"Fgone@x\0").unwrap(); // no mess: skipped
        assert_eq!(ids(&q).unwrap(), vec![100, 101, 102, 9999]);

        let m = message(&q, 100).unwrap().unwrap();
        assert_eq!(m.state, State::New);
        assert_eq!(m.sender, b"s@x.example");
        assert_eq!(m.size, 17);
        assert_eq!(m.recipients.len(), 2);
        assert_eq!(m.recipients[1].channel, None);

        let m = message(&q, 101).unwrap().unwrap();
        assert_eq!(m.state, State::Queued);
        assert_eq!(m.sender, b"");
        assert!(m.bouncing);
        assert_eq!(m.size, 10);
        let r: Vec<_> = m
            .recipients
            .iter()
            .map(|r| (r.channel, r.done, r.addr.clone()))
            .collect();
        assert_eq!(
            r,
            vec![
                (Some(0), true, b"ann@l".to_vec()),
                (Some(0), false, b"bob@l".to_vec()),
                (Some(1), false, b"carl@r".to_vec()),
            ]
        );
        assert_eq!(m.waiting().count(), 2);

        let m = message(&q, 102).unwrap().unwrap();
        assert_eq!(m.state, State::Held);
        assert!(m.recipients.is_empty());
        assert_eq!(message(&q, 9999).unwrap(), None);
        assert_eq!(message(&q, 5).unwrap(), None);
        assert_eq!(bounce_text(&q, 101).unwrap().unwrap(), b"<ann@l>:\nno\n\n");
        assert_eq!(bounce_text(&q, 102).unwrap(), None);
        assert_eq!(
            message_text(&q, 100, false, 1000).unwrap(),
            b"Subject: a\n\n"
        );
        assert_eq!(
            message_text(&q, 100, true, 1000).unwrap(),
            b"Subject: a\n\nbody\n"
        );
        assert_eq!(message_text(&q, 100, true, 4).unwrap(), b"Subj");
    }
}
