//! qmail-qmqpd: one QMQP request in, one reply out (qmail-qmqpd(8)).
//!
//! The request is one netstring holding the message's netstring, the sender's and one per
//! recipient. As in netqmail:
//!
//! * the outer length bounds everything read after it; a netstring that runs past it, a
//!   missing comma or a byte that is not a digit in a length ends the connection with exit
//!   100 and no reply; the outer length's own digits may take at most 100 bytes;
//! * qmail-queue starts as soon as the message length is known, the Received field
//!   (`with QMQP`) goes first, and the message is copied to it as it arrives, so its size
//!   is bounded only by the outer length (at most [`netstring::MAX_LEN`]);
//! * a sender or recipient of 1000 bytes or more, or with a NUL in it, makes the reply
//!   `Dsorry, I can't accept addresses like that (#5.1.3)` and nothing is queued;
//! * the reply is one netstring: `Kok TIME qp PID`, or qmail-queue's `D`/`Z` text;
//! * the client closing early, a read error or the hour's deadline ends the process
//!   (exit 0, or 111 for the deadline) with the half-made message abandoned: qmail-queue
//!   sees its input end before the envelope and stores nothing.
//!
//! No recipient is checked against rcpthosts: QMQP is for clients the administrator lets
//! in (tcpserver's rules), and it relays anywhere, as netqmail's does.

use crate::config::{Env, Remote};
use crate::quick::{self, EXIT_BADPROTO, EXIT_OK, EXIT_RESOURCES};
use crate::received::{Facts, received};
use crate::session::Message;
use control::Exit;
use control::netstring::{self, Error, Input};
use std::io::{self, Read, Write};
use std::path::Path;

/// Addresses of this many bytes or more are refused (netqmail's buffer of 1000).
pub const MAX_ADDRESS: u64 = 1000;

/// The bytes the outer length's digits may take.
const OUTER_DIGITS_BUDGET: u64 = 100;

const BAD_ADDRESS: &str = "Dsorry, I can't accept addresses like that (#5.1.3)";

/// How a request ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A reply was written (its text).
    Replied(String),
    /// The process must exit with this code and no reply.
    Exit(Exit),
}

fn exit_for(e: &Error) -> Exit {
    match e {
        Error::Malformed | Error::Budget => EXIT_BADPROTO,
        Error::TooLong => EXIT_RESOURCES,
        Error::Eof | Error::Io(_) => EXIT_OK,
    }
}

/// Reads an address netstring: `Some` when usable, `None` when too long or with a NUL.
fn address<R: Read>(input: &mut Input<R>) -> Result<Option<Vec<u8>>, Error> {
    let len = input.length(netstring::MAX_LEN)?;
    if len >= MAX_ADDRESS {
        input.skip(len)?;
        input.comma()?;
        return Ok(None);
    }
    let mut v = Vec::with_capacity(len as usize);
    input.copy(len, |b| v.extend_from_slice(b))?;
    input.comma()?;
    Ok((!v.contains(&0)).then_some(v))
}

/// Serves one request from `input`, messages going to what `open` starts; the reply is
/// written to `out`. `now` gives the time for the Received field and the reply.
pub fn serve<R, W, M>(
    input: &mut Input<R>,
    out: &mut W,
    remote: &Remote,
    open: impl FnOnce() -> io::Result<M>,
    now: impl Fn() -> u64,
) -> Outcome
where
    R: Read,
    W: Write,
    M: Message,
{
    let mut msg: Option<M> = None;
    match request(input, remote, open, &now, &mut msg) {
        Ok(reply) => {
            let mut wire = Vec::with_capacity(reply.len() + 8);
            netstring::encode_into(&mut wire, reply.as_bytes());
            // A client that is gone cannot be told; nothing more to do either way.
            let _ = out.write_all(&wire).and_then(|()| out.flush());
            Outcome::Replied(reply)
        }
        Err(code) => {
            quick::abandon(msg);
            Outcome::Exit(code)
        }
    }
}

fn request<R: Read, M: Message>(
    input: &mut Input<R>,
    remote: &Remote,
    open: impl FnOnce() -> io::Result<M>,
    now: &impl Fn() -> u64,
    slot: &mut Option<M>,
) -> Result<String, Exit> {
    let e = |e: Error| exit_for(&e);
    input.set_budget(Some(OUTER_DIGITS_BUDGET));
    let outer = input.length(netstring::MAX_LEN).map_err(e)?;
    input.set_budget(Some(outer));
    let len = input.length(netstring::MAX_LEN).map_err(e)?;
    let m = slot.insert(open().map_err(|_| EXIT_RESOURCES)?);
    let qp = m.pid();
    m.put(&received(
        &Facts {
            protocol: "QMQP",
            local: &remote.local,
            remote_ip: &remote.ip,
            remote_host: &remote.host,
            remote_info: remote.info.as_deref(),
            helo: None,
        },
        now(),
    ));
    input.copy(len, |b| m.put(b)).map_err(e)?;
    input.comma().map_err(e)?;
    let mut ok = true;
    match address(input).map_err(e)? {
        Some(s) => m.from(&s),
        None => {
            m.from(b"");
            m.fail();
            ok = false;
        }
    }
    while input.budget() != Some(0) {
        match address(input).map_err(e)? {
            Some(r) => m.to(&r),
            None => {
                m.fail();
                ok = false;
            }
        }
    }
    input.set_budget(Some(1));
    input.comma().map_err(e)?;
    let m = slot.take().ok_or(EXIT_RESOURCES)?;
    let result = m.close();
    if !ok {
        return Ok(BAD_ADDRESS.to_string());
    }
    Ok(quick::verdict(result, now(), qp))
}

/// qmail-qmqpd's confinement (qmail-qmqpd(8), CONFINEMENT), once its qmail-queue runs:
/// no_new_privs, an empty capability bounding set when it can (as root), Landlock with
/// no file at all and no TCP, and the system calls of a program that reads and writes
/// open descriptors and waits for its child; no system call opens a file.
fn confine() {
    use control::confine::{Policy, syscalls};
    Policy::new()
        .no_new_privs()
        .bounding_set(&[])
        .landlock()
        .deny_tcp()
        .syscalls(&[syscalls::RUNTIME, syscalls::CHILDREN, syscalls::SOCKET_IO])
        .apply()
        .note_unexpected();
}

/// The program: the request on descriptor 0, the reply on descriptor 1, the connection's
/// facts in the tcp-environ(5) variables. Returns the exit code.
pub fn main() -> Exit {
    quick::watchdog(quick::CONNECTION_TIMEOUT);
    let home = control::qmail_home();
    control::diagnostics::init("qmail-qmqpd", &home, control::stderr_is_private());
    let env = Env::from_process();
    if std::env::set_current_dir(&home).is_err() {
        quick::log("qmail-qmqpd", "unable to switch to the qmail home");
        return EXIT_RESOURCES;
    }
    // The one qmail-queue a request needs starts before anything is read, so that the
    // rest can run confined (a setuid program cannot be started afterwards).
    let queue = qmail_queue::QueueClient::open_default(Path::new(".")).inspect_err(|e| {
        quick::log("qmail-qmqpd", &format!("unable to start qmail-queue: {e}"));
    });
    confine();
    let mut input = Input::new(io::stdin().lock(), 512);
    let remote = Remote::from_env(&env);
    let mut out = io::stdout().lock();
    let open = || queue;
    match serve(&mut input, &mut out, &remote, open, control::now) {
        Outcome::Replied(_) => EXIT_OK,
        Outcome::Exit(c) => c,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use qmail_queue::QueueError;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// What a fake qmail-queue received, and how it ends.
    #[derive(Debug, Default)]
    pub(crate) struct Seen {
        pub message: Vec<u8>,
        pub envelope: Vec<u8>,
        pub failed: bool,
        pub closed: bool,
        pub exit: i32,
    }

    pub(crate) struct Fake(pub Rc<RefCell<Seen>>);

    impl Message for Fake {
        fn pid(&self) -> u32 {
            77
        }
        fn put(&mut self, d: &[u8]) {
            self.0.borrow_mut().message.extend_from_slice(d);
        }
        fn fail(&mut self) {
            self.0.borrow_mut().failed = true;
        }
        fn from(&mut self, s: &[u8]) {
            let mut x = self.0.borrow_mut();
            x.envelope.push(b'F');
            x.envelope.extend_from_slice(s);
            x.envelope.push(0);
        }
        fn to(&mut self, r: &[u8]) {
            let mut x = self.0.borrow_mut();
            x.envelope.push(b'T');
            x.envelope.extend_from_slice(r);
            x.envelope.push(0);
        }
        fn close(self) -> Result<(), QueueError> {
            let mut x = self.0.borrow_mut();
            x.closed = true;
            if x.failed {
                return QueueError::from_exit(54, true);
            }
            QueueError::from_exit(x.exit, false)
        }
    }

    fn remote() -> Remote {
        Remote {
            ip: b"10.0.0.1".to_vec(),
            host: b"client.example".to_vec(),
            info: None,
            local: b"hub.example".to_vec(),
        }
    }

    fn run(wire: &[u8]) -> (Outcome, Vec<u8>, Rc<RefCell<Seen>>) {
        let seen = Rc::new(RefCell::new(Seen::default()));
        let s2 = seen.clone();
        let mut input = Input::new(wire, 5);
        let mut out = Vec::new();
        let o = serve(&mut input, &mut out, &remote(), || Ok(Fake(s2)), || 1000);
        (o, out, seen)
    }

    pub(crate) fn request(msg: &[u8], sender: &[u8], rcpts: &[&[u8]]) -> Vec<u8> {
        let mut inner = netstring::encode(msg);
        netstring::encode_into(&mut inner, sender);
        for r in rcpts {
            netstring::encode_into(&mut inner, r);
        }
        netstring::encode(&inner)
    }

    #[test]
    fn accepted() {
        let (o, out, seen) = run(&request(b"Subject: x\n\nhi\n", b"a@x", &[b"b@y", b"c@z"]));
        assert_eq!(o, Outcome::Replied("Kok 1000 qp 77".into()));
        assert_eq!(out, b"14:Kok 1000 qp 77,");
        let s = seen.borrow();
        assert_eq!(
            s.message,
            b"Received: from client.example (10.0.0.1)\n  by hub.example with QMQP; 1 Jan 1970 00:16:40 -0000\nSubject: x\n\nhi\n"
        );
        assert_eq!(s.envelope, b"Fa@x\0Tb@y\0Tc@z\0");
        assert!(s.closed && !s.failed);
    }

    #[test]
    fn bad_addresses() {
        let long = vec![b'a'; 1000];
        let (o, _, seen) = run(&request(b"m", b"a@x", &[&long]));
        assert_eq!(o, Outcome::Replied(BAD_ADDRESS.into()));
        assert!(seen.borrow().failed);
        let (o, _, _) = run(&request(b"m", b"a\0@x", &[b"b@y"]));
        assert_eq!(o, Outcome::Replied(BAD_ADDRESS.into()));
        let ok = vec![b'a'; 999];
        let (o, _, _) = run(&request(b"m", &ok, &[b"b@y"]));
        assert_eq!(o, Outcome::Replied("Kok 1000 qp 77".into()));
    }

    #[test]
    fn queue_failure_is_relayed() {
        let seen = Rc::new(RefCell::new(Seen {
            exit: 53,
            ..Seen::default()
        }));
        let s2 = seen.clone();
        let w = request(b"m", b"a@x", &[b"b@y"]);
        let mut input = Input::new(&w[..], 5);
        let mut out = Vec::new();
        let o = serve(&mut input, &mut out, &remote(), || Ok(Fake(s2)), || 1);
        assert_eq!(
            o,
            Outcome::Replied("Zqq write error or disk full (#4.3.0)".into())
        );
        assert_eq!(out, b"37:Zqq write error or disk full (#4.3.0),");
    }

    #[test]
    fn malformed_and_early_close() {
        let good = request(b"hello", b"a@x", &[b"b@y"]);
        // Every truncation: exit 0 (client went away), never a reply, never queued.
        for cut in 0..good.len() {
            let (o, out, seen) = run(&good[..cut]);
            assert_eq!(o, Outcome::Exit(EXIT_OK), "cut at {cut}");
            assert!(out.is_empty());
            assert!(!seen.borrow().closed);
        }
        // A recipient running past the outer length.
        let mut bad = b"20:5:hello,3:a@x,9:b@yyyyyy,,".to_vec();
        let (o, _, _) = run(&bad);
        assert_eq!(o, Outcome::Exit(EXIT_BADPROTO));
        bad = b"x:".to_vec();
        assert_eq!(run(&bad).0, Outcome::Exit(EXIT_BADPROTO));
        // No comma after the message.
        assert_eq!(
            run(b"20:5:hello;3:a@x,3:b@y,,").0,
            Outcome::Exit(EXIT_BADPROTO)
        );
        // Missing outer comma.
        assert_eq!(
            run(b"18:5:hello,3:a@x,3:b@y,.").0,
            Outcome::Exit(EXIT_BADPROTO)
        );
        // Huge lengths.
        assert_eq!(run(b"99999999999:").0, Outcome::Exit(EXIT_RESOURCES));
        assert_eq!(run(b"20:99999999999999:").0, Outcome::Exit(EXIT_RESOURCES));
        // A length of more than 100 digits (leading zeros).
        let mut z = vec![b'0'; 101];
        z.push(b':');
        assert_eq!(run(&z).0, Outcome::Exit(EXIT_BADPROTO));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_requests_end_cleanly(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let (o, out, seen) = run(&b);
            match o {
                Outcome::Replied(r) => {
                    proptest::prop_assert!(seen.borrow().closed);
                    proptest::prop_assert!(out.ends_with(b","));
                    proptest::prop_assert!(r.starts_with('K') || r.starts_with('D') || r.starts_with('Z'));
                }
                Outcome::Exit(c) => {
                    proptest::prop_assert!(!seen.borrow().closed);
                    proptest::prop_assert!(out.is_empty());
                    proptest::prop_assert!([0, 100, 111].contains(&c.code()));
                }
            }
        }
    }
}
