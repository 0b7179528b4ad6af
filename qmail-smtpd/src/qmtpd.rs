//! qmail-qmtpd: messages over QMTP, any number per connection (qmail-qmtpd(8)).
//!
//! Each package is three netstrings: the message (its first byte says whether lines end in
//! LF, `\n`, or CR LF, `\r`, which is turned into LF), the sender, and a netstring of
//! recipient netstrings. The answer is one netstring per recipient, in order. As in
//! netqmail 1.06:
//!
//! * control/rcpthosts and morercpthosts.cdb decide which recipients are accepted, unless
//!   `RELAYCLIENT` is set, in which case its value is appended to every recipient;
//! * control/databytes (or `$DATABYTES`) limits the message; beyond it every recipient is
//!   told `Dsorry, that message size exceeds my databytes limit (#5.3.4)`;
//! * a sender of 1000 bytes or more or with a NUL: `Dunacceptable sender (#5.1.7)`; a
//!   recipient that is too long or has a NUL: `Dsorry, I can't handle that recipient
//!   (#5.1.3)`; one outside rcpthosts: `Dsorry, that domain isn't in my list of allowed
//!   rcpthosts (#5.7.1)`; the others get qmail-queue's verdict (`Kok TIME qp PID`);
//! * a package that breaks the framing (an empty message netstring, a first byte other
//!   than LF or CR, a missing comma, a recipient running past its list, a non-digit in a
//!   length) ends the connection with exit 100; a length beyond [`netstring::MAX_LEN`],
//!   an unreadable control file or the hour's deadline with exit 111; the client closing
//!   with exit 0. In every case the message being read is abandoned before its envelope is
//!   complete, so qmail-queue stores nothing.

use crate::config::{Env, Remote};
use crate::quick::{self, EXIT_BADPROTO, EXIT_OK, EXIT_RESOURCES};
use crate::received::{Facts, received};
use crate::session::Message;
use control::Exit;
use control::RcptHosts;
use control::netstring::{self, Error, Input};
use std::io::{self, Read, Write};
use std::path::Path;

/// Senders and recipients (with RELAYCLIENT appended) of this many bytes or more are
/// refused (netqmail's buffer of 1000).
pub const MAX_ADDRESS: u64 = 1000;

const REPLY_RCPTHOSTS: &[u8] =
    b"66:Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1),";
const REPLY_RECIPIENT: &[u8] = b"46:Dsorry, I can't handle that recipient (#5.1.3),";
const BAD_SENDER: &str = "Dunacceptable sender (#5.1.7)";
const TOO_BIG: &str = "Dsorry, that message size exceeds my databytes limit (#5.3.4)";

/// What the server is configured with.
#[derive(Debug)]
pub struct Config {
    /// 0 for no limit; netqmail's unsigned int.
    pub databytes: u32,
    /// `$RELAYCLIENT`.
    pub relayclient: Option<Vec<u8>>,
    pub rcpthosts: RcptHosts,
}

impl Config {
    /// Reads control/rcpthosts, morercpthosts.cdb and databytes in `home`, and the
    /// variables RELAYCLIENT and DATABYTES.
    pub fn load(home: &Path, env: &Env) -> io::Result<Config> {
        let ctl = control::Controls::open(home)?;
        let rcpthosts = RcptHosts::load(&ctl)?;
        // netqmail keeps databytes in an unsigned int: larger values wrap as in C.
        let mut databytes = ctl.int_or("databytes", 0)? as u32;
        if let Some(d) = &env.databytes {
            databytes = control::scan_ulong(d).unwrap_or(0) as u32;
        }
        if databytes == u32::MAX {
            databytes -= 1;
        }
        Ok(Config {
            databytes,
            relayclient: env.relay_client.clone(),
            rcpthosts,
        })
    }
}

fn exit_for(e: &Error) -> Exit {
    match e {
        Error::Malformed | Error::Budget => EXIT_BADPROTO,
        Error::TooLong => EXIT_RESOURCES,
        Error::Eof | Error::Io(_) => EXIT_OK,
    }
}

/// Serves packages from `input` until the client closes or breaks the protocol; replies
/// go to `out`. Returns the exit code.
pub fn serve<R, W, M>(
    input: &mut Input<R>,
    out: &mut W,
    remote: &Remote,
    cfg: &Config,
    mut open: impl FnMut() -> io::Result<M>,
    now: impl Fn() -> u64,
) -> Exit
where
    R: Read,
    W: Write,
    M: Message,
{
    loop {
        let mut slot: Option<M> = None;
        match package(input, remote, cfg, &mut open, &now, &mut slot) {
            Ok(None) => return EXIT_OK,
            Ok(Some(reply)) => {
                if out.write_all(&reply).and_then(|()| out.flush()).is_err() {
                    return EXIT_OK;
                }
            }
            Err(code) => {
                quick::abandon(slot);
                return code;
            }
        }
    }
}

/// Feeds `data` into the message, counting down `left` (when counting) and failing the
/// message when it reaches zero: netqmail's bytestooverflow.
fn put_counted<M: Message>(m: &mut M, left: &mut u64, data: &[u8]) {
    if *left > 0 {
        let n = data.len() as u64;
        if n >= *left {
            *left = 0;
            m.fail();
        } else {
            *left -= n;
        }
    }
    m.put(data);
}

/// One package; `Ok(None)` when the client closed between packages.
fn package<R: Read, M: Message>(
    input: &mut Input<R>,
    remote: &Remote,
    cfg: &Config,
    open: &mut impl FnMut() -> io::Result<M>,
    now: &impl Fn() -> u64,
    slot: &mut Option<M>,
) -> Result<Option<Vec<u8>>, Exit> {
    let e = |e: Error| exit_for(&e);
    input.set_budget(None);
    let mut len = match input.length(netstring::MAX_LEN) {
        Err(Error::Eof) => return Ok(None),
        r => r.map_err(e)?,
    };
    if len == 0 {
        return Err(EXIT_BADPROTO);
    }
    let databytes = u64::from(cfg.databytes);
    let mut overflow = if databytes > 0 { databytes + 1 } else { 0 };
    let m = slot.insert(open().map_err(|_| EXIT_RESOURCES)?);
    let qp = m.pid();
    let dos = match input.byte().map_err(e)? {
        b'\n' => false,
        b'\r' => true,
        _ => return Err(EXIT_BADPROTO),
    };
    len -= 1;
    m.put(&received(
        &Facts {
            protocol: "QMTP",
            local: &remote.local,
            remote_ip: &remote.ip,
            remote_host: &remote.host,
            remote_info: remote.info.as_deref(),
            helo: None,
        },
        now(),
    ));
    if dos {
        // CR LF becomes LF; any other CR stays. Bytes go out in blocks.
        let mut block: Vec<u8> = Vec::with_capacity(8192);
        while len > 0 {
            let mut c = input.byte().map_err(e)?;
            len -= 1;
            while c == b'\r' && len > 0 {
                c = input.byte().map_err(e)?;
                len -= 1;
                if c == b'\n' {
                    break;
                }
                block.push(b'\r');
            }
            block.push(c);
            if block.len() >= 8000 {
                put_counted(m, &mut overflow, &block);
                block.clear();
            }
        }
        put_counted(m, &mut overflow, &block);
    } else {
        if databytes > 0 && len > databytes {
            overflow = 0;
            m.fail();
        }
        input.copy(len, |b| m.put(b)).map_err(e)?;
    }
    input.comma().map_err(e)?;

    let slen = input.length(netstring::MAX_LEN).map_err(e)?;
    let mut sender_ok = true;
    let mut sender = Vec::new();
    if slen >= MAX_ADDRESS {
        sender_ok = false;
        input.skip(slen).map_err(e)?;
    } else {
        input
            .copy(slen, |b| sender.extend_from_slice(b))
            .map_err(e)?;
        if sender.contains(&0) {
            sender_ok = false;
        }
    }
    input.comma().map_err(e)?;
    m.from(if sender_ok { &sender } else { b"" });
    if !sender_ok {
        m.fail();
    }

    let mut list = input.length(netstring::MAX_LEN).map_err(e)?;
    let relaylen = cfg.relayclient.as_ref().map_or(0, |r| r.len() as u64);
    let mut failures: Vec<u8> = Vec::new();
    let mut bother = false;
    while list > 0 {
        // The recipient's own length, read within what is left of the list.
        input.set_budget(Some(list));
        let rlen = input.length(netstring::MAX_LEN).map_err(e)?;
        list = input.budget().unwrap_or(0);
        input.set_budget(None);
        if rlen >= list {
            return Err(EXIT_BADPROTO);
        }
        let mut failure = 0u8;
        if rlen + relaylen >= MAX_ADDRESS {
            failure = b'L';
            input.skip(rlen).map_err(e)?;
        } else {
            let mut r = Vec::with_capacity(rlen as usize);
            input.copy(rlen, |b| r.extend_from_slice(b)).map_err(e)?;
            if r.contains(&0) {
                failure = b'N';
            }
            match &cfg.relayclient {
                Some(rc) => r.extend_from_slice(rc),
                None => match cfg.rcpthosts.allowed(&r) {
                    Err(_) => return Err(EXIT_RESOURCES),
                    Ok(false) => failure = b'D',
                    Ok(true) => {}
                },
            }
            if failure == 0 {
                m.to(&r);
                bother = true;
            }
        }
        failures.push(failure);
        input.comma().map_err(e)?;
        list -= rlen + 1;
    }
    input.comma().map_err(e)?;

    if !bother {
        m.fail();
    }
    let m = slot.take().ok_or(EXIT_RESOURCES)?;
    let mut result = quick::verdict(m.close(), now(), qp);
    if !sender_ok {
        result = BAD_SENDER.to_string();
    }
    if databytes > 0 && overflow == 0 {
        result = TOO_BIG.to_string();
    }
    let verdict = netstring::encode(result.as_bytes());
    let mut reply = Vec::new();
    for f in failures {
        match f {
            0 => reply.extend_from_slice(&verdict),
            b'D' => reply.extend_from_slice(REPLY_RCPTHOSTS),
            _ => reply.extend_from_slice(REPLY_RECIPIENT),
        }
    }
    Ok(Some(reply))
}

/// The program: packages on descriptor 0, replies on descriptor 1, the connection's facts
/// in the tcp-environ(5) variables. Returns the exit code.
pub fn main() -> Exit {
    quick::watchdog(quick::CONNECTION_TIMEOUT);
    let home = control::qmail_home();
    control::diagnostics::init("qmail-qmtpd", &home, control::stderr_is_private());
    // Confinement (qmail-qmtpd(8), CONFINEMENT): the bounding set when it runs as root;
    // no more, as each message needs a new setuid qmail-queue.
    let bounding = control::confine::Policy::new().bounding_set(&[]);
    bounding.apply().note_unexpected();
    let env = Env::from_process();
    if std::env::set_current_dir(&home).is_err() {
        quick::log("qmail-qmtpd", "unable to switch to the qmail home");
        return EXIT_RESOURCES;
    }
    let cfg = match Config::load(Path::new("."), &env) {
        Ok(c) => c,
        Err(err) => {
            quick::log("qmail-qmtpd", &format!("unable to read controls: {err}"));
            return EXIT_RESOURCES;
        }
    };
    let mut input = Input::new(io::stdin().lock(), 512);
    let remote = Remote::from_env(&env);
    let mut out = io::stdout().lock();
    let open = || {
        qmail_queue::QueueClient::open_default(Path::new(".")).inspect_err(|e| {
            quick::log("qmail-qmtpd", &format!("unable to start qmail-queue: {e}"));
        })
    };
    serve(&mut input, &mut out, &remote, &cfg, open, control::now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qmqpd::tests::{Fake, Seen};
    use std::cell::RefCell;
    use std::rc::Rc;

    fn remote() -> Remote {
        Remote {
            ip: b"10.0.0.1".to_vec(),
            host: b"unknown".to_vec(),
            info: Some(b"ident".to_vec()),
            local: b"mx.example".to_vec(),
        }
    }

    fn cfg(databytes: u32, relay: Option<&str>) -> Config {
        Config {
            databytes,
            relayclient: relay.map(|r| r.as_bytes().to_vec()),
            rcpthosts: RcptHosts::from_entries(Some(["example.com", ".example.org"])),
        }
    }

    fn package(msg: &[u8], sender: &[u8], rcpts: &[&[u8]]) -> Vec<u8> {
        let mut w = netstring::encode(msg);
        netstring::encode_into(&mut w, sender);
        let mut list = Vec::new();
        for r in rcpts {
            netstring::encode_into(&mut list, r);
        }
        netstring::encode_into(&mut w, &list);
        w
    }

    fn run(wire: &[u8], c: &Config) -> (Exit, Vec<u8>, Vec<Rc<RefCell<Seen>>>) {
        let all: Rc<RefCell<Vec<Rc<RefCell<Seen>>>>> = Rc::default();
        let a2 = all.clone();
        let mut input = Input::new(wire, 7);
        let mut out = Vec::new();
        let code = serve(
            &mut input,
            &mut out,
            &remote(),
            c,
            || {
                let s = Rc::new(RefCell::new(Seen::default()));
                a2.borrow_mut().push(s.clone());
                Ok(Fake(s))
            },
            || 1000,
        );
        let v = all.borrow().clone();
        (code, out, v)
    }

    const OK: &[u8] = b"14:Kok 1000 qp 77,";

    #[test]
    fn two_packages_and_rcpthosts() {
        let mut w = package(
            b"\nSubject: a\n\nhi\n",
            b"s@x",
            &[b"a@example.com", b"b@evil.test", b"c@sub.example.org"],
        );
        w.extend(package(b"\nsecond\n", b"", &[b"a@example.com"]));
        let (code, out, seen) = run(&w, &cfg(0, None));
        assert_eq!(code, EXIT_OK);
        let mut want = OK.to_vec();
        want.extend_from_slice(REPLY_RCPTHOSTS);
        want.extend_from_slice(OK);
        want.extend_from_slice(OK);
        assert_eq!(out, want);
        assert_eq!(seen.len(), 2);
        let s = seen[0].borrow();
        assert_eq!(
            s.message,
            b"Received: from unknown (ident@10.0.0.1)\n  by mx.example with QMTP; 1 Jan 1970 00:16:40 -0000\nSubject: a\n\nhi\n"
        );
        assert_eq!(s.envelope, b"Fs@x\0Ta@example.com\0Tc@sub.example.org\0");
        assert_eq!(seen[1].borrow().envelope, b"F\0Ta@example.com\0");
    }

    #[test]
    fn crlf_conversion() {
        let w = package(b"\ra\r\nb\r\r\nc\rd\r", b"s@x", &[b"a@example.com"]);
        let (_, out, seen) = run(&w, &cfg(0, None));
        assert_eq!(out, OK);
        let s = seen[0].borrow();
        assert!(s.message.ends_with(b"-0000\na\nb\r\nc\rd\r"));
    }

    #[test]
    fn relayclient_and_bad_recipients() {
        let long = vec![b'a'; 998];
        let w = package(
            b"\nm\n",
            b"s@x",
            &[b"u@anywhere.test", &long, b"n\0@example.com"],
        );
        let (_, out, seen) = run(&w, &cfg(0, Some("@x")));
        let mut want = OK.to_vec();
        want.extend_from_slice(REPLY_RECIPIENT);
        want.extend_from_slice(REPLY_RECIPIENT);
        assert_eq!(out, want);
        assert_eq!(seen[0].borrow().envelope, b"Fs@x\0Tu@anywhere.test@x\0");
        // No acceptable recipient: every one is refused, nothing queued.
        let w = package(b"\nm\n", b"s@x", &[b"u@evil.test"]);
        let (_, out, seen) = run(&w, &cfg(0, None));
        assert_eq!(out, REPLY_RCPTHOSTS);
        assert!(seen[0].borrow().failed);
    }

    #[test]
    fn sender_and_databytes() {
        let w = package(b"\nm\n", b"s\0@x", &[b"a@example.com"]);
        let (_, out, _) = run(&w, &cfg(0, None));
        assert_eq!(out, b"29:Dunacceptable sender (#5.1.7),");
        let w = package(b"\n0123456789", b"s@x", &[b"a@example.com"]);
        let (_, out, seen) = run(&w, &cfg(10, None));
        assert_eq!(out, OK);
        assert!(!seen[0].borrow().failed);
        let w = package(b"\n0123456789X", b"s@x", &[b"a@example.com"]);
        let (_, out, seen) = run(&w, &cfg(10, None));
        assert_eq!(
            out,
            b"61:Dsorry, that message size exceeds my databytes limit (#5.3.4),"
        );
        assert!(seen[0].borrow().failed);
        // With CR LF the count is of bytes after conversion.
        let w = package(b"\r012345678\r\n", b"s@x", &[b"a@example.com"]);
        let (_, out, _) = run(&w, &cfg(10, None));
        assert_eq!(out, OK);
        let w = package(b"\r0123456789\r\n", b"s@x", &[b"a@example.com"]);
        let (_, out, _) = run(&w, &cfg(10, None));
        assert!(out.starts_with(b"61:Dsorry, that message size"));
    }

    #[test]
    fn protocol_errors() {
        let c = cfg(0, None);
        assert_eq!(run(b"", &c).0, EXIT_OK);
        assert_eq!(run(b"0:,", &c).0, EXIT_BADPROTO);
        assert_eq!(run(b"2:xm,", &c).0, EXIT_BADPROTO);
        assert_eq!(run(b"2:\nm;", &c).0, EXIT_BADPROTO);
        assert_eq!(run(b"99999999999:", &c).0, EXIT_RESOURCES);
        // A recipient longer than what is left of its list.
        assert_eq!(run(b"2:\nm,3:s@x,5:9:a@example.com,,", &c).0, EXIT_BADPROTO);
        // The list's length ending inside a recipient's digits.
        assert_eq!(run(b"2:\nm,3:s@x,2:15:a,,", &c).0, EXIT_BADPROTO);
        let good = package(b"\nhello\n", b"s@x", &[b"a@example.com"]);
        for cut in 0..good.len() {
            let (code, out, seen) = run(&good[..cut], &c);
            assert_eq!(code, EXIT_OK, "cut at {cut}");
            assert!(out.is_empty());
            assert!(seen.iter().all(|s| !s.borrow().closed));
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_end_cleanly(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let (code, out, _) = run(&b, &cfg(50, None));
            proptest::prop_assert!([0, 100, 111].contains(&code.code()));
            let mut rest = &out[..];
            while !rest.is_empty() {
                match netstring::parse(rest, 1000) {
                    Ok(netstring::Parsed::Done { rest: r, .. }) => rest = r,
                    _ => { proptest::prop_assert!(false); }
                }
            }
        }
    }
}
