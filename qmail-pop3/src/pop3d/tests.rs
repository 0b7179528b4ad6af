use super::*;
use crate::command::MAX_LINE;
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Cursor;
use std::rc::Rc;

/// A Maildir in memory; `broken` names fail to open, `stuck` names fail to unlink,
/// `bad_read` names fail on the first read.
#[derive(Debug, Default, Clone)]
struct Fake {
    files: Rc<RefCell<BTreeMap<Vec<u8>, Vec<u8>>>>,
    broken: Vec<Vec<u8>>,
    stuck: Vec<Vec<u8>>,
    bad_read: Vec<Vec<u8>>,
}

struct Reader(Option<Cursor<Vec<u8>>>);

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(c) => c.read(buf),
            None => Err(io::Error::from_raw_os_error(21)),
        }
    }
}

impl Mailbox for Fake {
    type Message = Reader;
    fn open(&mut self, name: &[u8]) -> io::Result<Reader> {
        if self.broken.iter().any(|b| b == name) {
            return Err(io::ErrorKind::NotFound.into());
        }
        if self.bad_read.iter().any(|b| b == name) {
            return Ok(Reader(None));
        }
        let data = self.files.borrow().get(name).cloned();
        data.map(|d| Reader(Some(Cursor::new(d))))
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn unlink(&mut self, name: &[u8]) -> io::Result<()> {
        if self.stuck.iter().any(|b| b == name) {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        self.files
            .borrow_mut()
            .remove(name)
            .map(drop)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn rename(&mut self, from: &[u8], to: &[u8]) -> io::Result<()> {
        let mut f = self.files.borrow_mut();
        let d = f.remove(from).ok_or(io::ErrorKind::NotFound)?;
        f.insert(to.to_vec(), d);
        Ok(())
    }
}

/// A session over messages given as (name, contents), in that order.
fn session(msgs: &[(&str, &str)]) -> (Pop3d<Fake>, Fake) {
    let fake = Fake::default();
    let mut entries = Vec::new();
    for (name, data) in msgs {
        fake.files
            .borrow_mut()
            .insert(name.as_bytes().to_vec(), data.as_bytes().to_vec());
        entries.push(Entry {
            name: name.as_bytes().to_vec(),
            size: data.len() as u64,
        });
    }
    (Pop3d::new(fake.clone(), entries), fake)
}

/// Feeds `input` (in pieces of `step` bytes), sending messages as the program does;
/// returns the output.
fn drive(s: &mut Pop3d<Fake>, input: &[u8], step: usize) -> String {
    let mut out = s.take_output();
    for piece in input.chunks(step.max(1)) {
        let mut at = 0;
        while at < piece.len() && !s.finished() {
            at += s.feed(&piece[at..]);
            while s.sending() {
                if s.send_more().is_err() {
                    break;
                }
            }
            out.extend(s.take_output());
        }
    }
    String::from_utf8(out).unwrap()
}

fn names(f: &Fake) -> Vec<String> {
    f.files
        .borrow()
        .keys()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect()
}

const THREE: [(&str, &str); 3] = [
    ("new/1.a.host", "Subject: a\n\nbody a\n"),
    ("cur/2.b.host:2,S", "Subject: b\n\n.x\n"),
    ("new/3.c.host", "Subject: c\n\n1\n2\n3\n"),
];

#[test]
fn greeting_and_listings() {
    let (mut s, _) = session(&THREE);
    let out = drive(
        &mut s,
        b"STAT\r\nLIST\r\nUIDL\r\nLIST 2\r\nuidl 3\r\nLIST 4\r\nLIST 0\r\nLIST two\r\nLIST  \r\n",
        1000,
    );
    assert_eq!(
        out,
        "+OK \r\n\
         +OK 3 52\r\n\
         +OK \r\n1 19\r\n2 15\r\n3 18\r\n.\r\n\
         +OK \r\n1 1.a.host\r\n2 2.b.host\r\n3 3.c.host\r\n.\r\n\
         +OK 2 15\r\n\
         +OK 3 3.c.host\r\n\
         -ERR not that many messages\r\n\
         -ERR messages are counted from 1\r\n\
         -ERR syntax error\r\n\
         +OK \r\n1 19\r\n2 15\r\n3 18\r\n.\r\n"
    );
}

#[test]
fn retr_and_top() {
    let (mut s, _) = session(&THREE);
    let out = drive(&mut s, b"RETR 2\r\nTOP 3 1\r\nTOP 3\r\nRETR 3 0\r\n", 3);
    assert_eq!(
        out,
        "+OK \r\n\
         +OK \r\nSubject: b\r\n\r\n..x\r\n\r\n.\r\n\
         +OK \r\nSubject: c\r\n\r\n1\r\n\r\n.\r\n\
         +OK \r\nSubject: c\r\n\r\n1\r\n2\r\n3\r\n\r\n.\r\n\
         +OK \r\nSubject: c\r\n\r\n\r\n.\r\n"
    );
}

#[test]
fn deletions_wait_for_quit() {
    let (mut s, fake) = session(&THREE);
    let out = drive(
        &mut s,
        b"DELE 1\r\nDELE 1\r\nLIST 1\r\nRETR 1\r\nSTAT\r\nLAST\r\nLIST\r\n",
        7,
    );
    assert_eq!(
        out,
        "+OK \r\n+OK \r\n-ERR already deleted\r\n-ERR already deleted\r\n-ERR already deleted\r\n\
         +OK 3 33\r\n+OK 1\r\n+OK \r\n2 15\r\n3 18\r\n.\r\n"
    );
    assert_eq!(names(&fake).len(), 3, "nothing happens before QUIT");
    // the end of input: nothing deleted, nothing moved
    s.eof();
    assert!(s.finished());
    assert_eq!(
        names(&fake),
        ["cur/2.b.host:2,S", "new/1.a.host", "new/3.c.host"]
    );

    let (mut s, fake) = session(&THREE);
    let out = drive(
        &mut s,
        b"DELE 3\r\nLAST\r\nRSET\r\nLAST\r\nDELE 2\r\nQUIT\r\nNOOP\r\n",
        100,
    );
    assert_eq!(
        out,
        "+OK \r\n+OK \r\n+OK 3\r\n+OK \r\n+OK 0\r\n+OK \r\n+OK \r\n"
    );
    assert!(s.finished());
    // deleted: 2; moved from new/ to cur/ with :2, added: 1 and 3
    assert_eq!(names(&fake), ["cur/1.a.host:2,", "cur/3.c.host:2,"]);
}

#[test]
fn quit_reports_each_failed_unlink() {
    let (s, fake) = session(&THREE);
    let mut fake2 = fake.clone();
    fake2.stuck = vec![b"new/1.a.host".to_vec(), b"new/3.c.host".to_vec()];
    let mut s = Pop3d {
        mailbox: fake2,
        ..s
    };
    let out = drive(&mut s, b"DELE 1\r\nDELE 2\r\nDELE 3\r\nQUIT\r\n", 100);
    assert_eq!(
        out,
        "+OK \r\n+OK \r\n+OK \r\n+OK \r\n\
         -ERR unable to unlink all deleted messages\r\n\
         -ERR unable to unlink all deleted messages\r\n+OK \r\n"
    );
    assert_eq!(names(&fake), ["new/1.a.host", "new/3.c.host"]);
}

#[test]
fn unreadable_messages() {
    let (s, fake) = session(&THREE);
    let mut f = fake.clone();
    f.broken = vec![b"new/1.a.host".to_vec()];
    f.bad_read = vec![b"new/3.c.host".to_vec()];
    let mut s = Pop3d { mailbox: f, ..s };
    // an open failure is a reply; a read failure ends the session after +OK
    let out = drive(&mut s, b"RETR 1\r\nRETR 3\r\nSTAT\r\n", 100);
    assert_eq!(out, "+OK \r\n-ERR unable to open that message\r\n+OK \r\n");
    assert!(s.finished());
}

#[test]
fn unknown_commands_and_numbers() {
    let (mut s, _) = session(&THREE);
    let out = drive(
        &mut s,
        b"USER x\r\nCAPA\r\nSTLS\r\nnoop\r\nDELE\r\nDELE 18446744073709551617\r\nLIST 18446744073709551616\r\nLAST\r\n\r\n",
        1,
    );
    assert_eq!(
        out,
        "+OK \r\n-ERR unimplemented\r\n-ERR unimplemented\r\n-ERR unimplemented\r\n+OK \r\n\
         -ERR syntax error\r\n+OK \r\n-ERR messages are counted from 1\r\n+OK 1\r\n\
         -ERR unimplemented\r\n"
    );
}

#[test]
fn a_line_too_long_ends_the_session() {
    let (mut s, fake) = session(&THREE);
    let mut input = b"DELE 1\r\n".to_vec();
    input.extend(vec![b'x'; MAX_LINE + 10]);
    input.extend(b"\r\nQUIT\r\n");
    let out = drive(&mut s, &input, 4096);
    assert_eq!(out, "+OK \r\n+OK \r\n-ERR line too long\r\n");
    assert!(s.finished());
    assert_eq!(names(&fake).len(), 3);
}

#[test]
fn output_waits_for_the_writer() {
    let msgs: Vec<(String, String)> = (0..200)
        .map(|i| (format!("cur/{i:06}.x.host"), "x\n".to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = msgs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (mut s, _) = session(&refs);
    let input = b"LIST\r\n".repeat(100);
    s.take_output();
    let used = s.feed(&input);
    assert!(used < input.len(), "stops while output waits");
    assert!(s.pending_output() < FLUSH_AT + 5000);
}

proptest! {
    #[test]
    fn any_input_gets_pop3_replies(input in proptest::collection::vec(prop::sample::select(
        b"0123 \r\n\0xSTATLISTUIDLDELERETRTOPRSETLASTQUITNOOPstat".to_vec()), 0..400),
                                   step in 1usize..50) {
        let (mut s, fake) = session(&THREE);
        let out = drive(&mut s, &input, step);
        prop_assert!(out.starts_with("+OK \r\n"));
        prop_assert!(out.is_empty() || out.ends_with("\r\n"));
        // without QUIT nothing changes
        if !input.windows(4).any(|w| w.eq_ignore_ascii_case(b"quit")) {
            prop_assert_eq!(names(&fake).len(), 3);
        }
    }
}
