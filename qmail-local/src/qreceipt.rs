//! qreceipt (qreceipt(1)): from a `.qmail` line `|qreceipt youraddress`, send the
//! envelope sender a success notice when the message asks for one with
//! `youraddress` in a `Notice-Requested-Upon-Delivery-To` field, as netqmail's does.
//!
//! The header is read (netqmail's headerbody); each `Notice-Requested-Upon-Delivery-To`
//! field is an address list (token822), and an address equal to the argument, byte for
//! byte once unquoted, asks for the notice. At the end of the header, when asked and
//! when `$SENDER` is neither empty nor `#@[]`, the notice goes to qmail-queue (from the
//! null sender, to `$SENDER`):
//!
//! ```text
//! From: DELIVERY NOTICE SYSTEM <sender>
//! To: <sender>
//! Subject: success notice
//!
//! Hi! This is the qreceipt program. Your message was delivered to the
//! following address: youraddress. Thanks for asking.
//! Your Message-ID: ...            (the last Message-ID field, whole, when there is one)
//! ```
//!
//! Exit codes are netqmail's: 0 (no notice wanted, or sent), 100 (usage; a field that is
//! not an address list; qmail-queue's permanent failure), 111 (read error, qmail-queue's
//! temporary failure). A header too big to hold (see control's `rfc822` limits), which
//! netqmail would read, sends no notice and exits 0 with a warning: the message was
//! delivered, and neither a bounce nor a retry would help.

use std::io::{self, BufRead};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use control::Exit;
use control::rfc822::{
    Field, HeaderBody, HeaderError, Limits, addrlist, known_field, parse_tokens, unquote_tokens,
};

use crate::fail::warn;

/// What the header says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// A Notice-Requested-Upon-Delivery-To field names the address.
    pub wanted: bool,
    /// The last Message-ID field, whole (name and newline included).
    pub message_id: Option<Vec<u8>>,
}

/// Why the header could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// A Notice-Requested-Upon-Delivery-To field that is not an address list: the field.
    Unparsable(Vec<u8>),
    /// The input could not be read.
    Read(io::Error),
    /// The header is beyond the limits.
    TooBig,
}

/// Reads the header from `input` and says whether it asks for a notice to `target`.
/// The input is left at the start of the body.
pub fn read_request<R: BufRead>(
    hb: &mut HeaderBody<R>,
    target: &[u8],
) -> Result<Request, ReadError> {
    let mut req = Request::default();
    loop {
        let f = match hb.next_field() {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(req),
            Err(HeaderError::Read(e)) => return Err(ReadError::Read(e)),
            Err(_) => return Err(ReadError::TooBig),
        };
        match known_field(&f) {
            Some(Field::MessageId) => req.message_id = Some(f),
            Some(Field::NoticeRequestedUponDeliveryTo) => {
                let bad = || ReadError::Unparsable(f.clone());
                let tokens = parse_tokens(&f).map_err(|_| bad())?;
                addrlist(&tokens, &mut |addr| {
                    if unquote_tokens(addr) == target {
                        req.wanted = true;
                    }
                })
                .map_err(|_| bad())?;
            }
            _ => {}
        }
    }
}

/// The notice's message, as netqmail writes it.
pub fn notice(sender: &[u8], target: &[u8], message_id: Option<&[u8]>) -> Vec<u8> {
    let quoted = control::quote2(sender);
    let mut m = b"From: DELIVERY NOTICE SYSTEM <".to_vec();
    m.extend_from_slice(&quoted);
    m.extend_from_slice(b">\nTo: <");
    m.extend_from_slice(&quoted);
    m.extend_from_slice(
        b">\nSubject: success notice\n\n\
Hi! This is the qreceipt program. Your message was delivered to the\n\
following address: ",
    );
    m.extend_from_slice(target);
    m.extend_from_slice(b". Thanks for asking.\n");
    if let Some(id) = message_id {
        m.extend_from_slice(b"Your ");
        m.extend_from_slice(id);
    }
    m
}

fn say(text: &str) {
    warn(format!("qreceipt: {text}").as_bytes());
}

/// Queues the notice. Returns the exit code.
fn send(sender: &[u8], target: &[u8], message_id: Option<&[u8]>) -> Exit {
    let home = control::qmail_home();
    let mut qq = match qmail_queue::QueueClient::open_default(&home) {
        Ok(q) => q,
        Err(_) => {
            say("fatal: unable to fork");
            return Exit::TEMP;
        }
    };
    qq.put(&notice(sender, target, message_id));
    qq.from(b"");
    qq.to(sender);
    match qq.close() {
        Ok(()) => Exit::OK,
        Err(e) if e.permanent => {
            say("fatal: permanent qmail-queue error");
            Exit::PERM
        }
        Err(_) => {
            say("fatal: temporary qmail-queue error");
            Exit::TEMP
        }
    }
}

/// qreceipt(1).
pub fn main() -> Exit {
    let usage = || {
        say("usage: qreceipt deliveryaddress");
        Exit::PERM
    };
    let Some(target) = std::env::args_os().nth(1) else {
        return usage();
    };
    let Some(sender) = std::env::var_os("SENDER").map(OsStringExt::into_vec) else {
        return usage();
    };
    let target = target.as_bytes();
    let mut hb = HeaderBody::new(io::stdin().lock(), Limits::default());
    let req = match read_request(&mut hb, target) {
        Ok(r) => r,
        Err(ReadError::Unparsable(f)) => {
            let mut line = b"qreceipt: fatal: unable to parse this: ".to_vec();
            line.extend_from_slice(&f);
            let _ = io::Write::write_all(&mut io::stderr(), &line);
            return Exit::PERM;
        }
        Err(ReadError::Read(e)) if e.kind() == io::ErrorKind::OutOfMemory => {
            say("fatal: out of memory");
            return Exit::TEMP;
        }
        Err(ReadError::Read(_)) => {
            say("fatal: read error");
            return Exit::TEMP;
        }
        Err(ReadError::TooBig) => {
            say("warning: header too big to read; no notice sent");
            return Exit::OK;
        }
    };
    if !req.wanted || sender.is_empty() || sender == b"#@[]" {
        return Exit::OK;
    }
    let code = send(&sender, target, req.message_id.as_deref());
    if code != Exit::OK {
        return code;
    }
    // The body is read to its end, as netqmail does (a writer on a pipe finishes).
    match hb.copy_body(&mut |_| Ok(())) {
        Err(HeaderError::Read(_)) => {
            say("fatal: read error");
            Exit::TEMP
        }
        _ => Exit::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(header: &[u8], target: &[u8]) -> Result<Request, ReadError> {
        let mut hb = HeaderBody::new(header, Limits::default());
        read_request(&mut hb, target)
    }

    #[test]
    fn who_asks() {
        let r = req(
            b"Message-ID: <1@x>\nNotice-Requested-Upon-Delivery-To: a@b, \"joe s\"@x (c),\n  Fred <f@y>\n\nbody\n",
            b"joe s@x",
        )
        .unwrap();
        assert!(r.wanted);
        assert_eq!(r.message_id.as_deref(), Some(&b"Message-ID: <1@x>\n"[..]));
        assert!(
            req(b"notice-requested-upon-delivery-to: <f@y>\n\n", b"f@y")
                .unwrap()
                .wanted
        );
        // Byte for byte: case matters, and the address must be whole.
        assert!(
            !req(b"Notice-Requested-Upon-Delivery-To: F@y\n\n", b"f@y")
                .unwrap()
                .wanted
        );
        assert!(
            !req(b"Notice-Requested-Upon-Delivery-To: f@y.z\n\n", b"f@y")
                .unwrap()
                .wanted
        );
        // Only that field asks; the last Message-ID counts; the body is not header.
        let r = req(
            b"To: f@y\nMessage-Id: <1>\nmessage-id: <2>\n\nNotice-Requested-Upon-Delivery-To: f@y\n",
            b"f@y",
        )
        .unwrap();
        assert!(!r.wanted);
        assert_eq!(r.message_id.as_deref(), Some(&b"message-id: <2>\n"[..]));
        // A group, an empty address.
        assert!(
            req(b"Notice-Requested-Upon-Delivery-To: g: f@y;\n\n", b"f@y")
                .unwrap()
                .wanted
        );
        assert!(
            req(b"Notice-Requested-Upon-Delivery-To: <>\n\n", b"")
                .unwrap()
                .wanted
        );
    }

    #[test]
    fn unparsable_fields() {
        for f in [
            &b"Notice-Requested-Upon-Delivery-To: \"open\n"[..],
            b"Notice-Requested-Upon-Delivery-To: a>\n",
            b"Notice-Requested-Upon-Delivery-To: (x\n",
            b"Notice-Requested-Upon-Delivery-To: x:y\n",
        ] {
            let mut m = f.to_vec();
            m.extend_from_slice(b"\n");
            match req(&m, b"x") {
                Err(ReadError::Unparsable(got)) => assert_eq!(got, f),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn notice_text() {
        assert_eq!(
            notice(
                b"joe smith@a.example",
                b"me@b.example",
                Some(b"Message-ID: <1@x>\n")
            ),
            &b"From: DELIVERY NOTICE SYSTEM <\"joe smith\"@a.example>\n\
To: <\"joe smith\"@a.example>\n\
Subject: success notice\n\
\n\
Hi! This is the qreceipt program. Your message was delivered to the\n\
following address: me@b.example. Thanks for asking.\n\
Your Message-ID: <1@x>\n"[..]
        );
        assert!(notice(b"a@b", b"t", None).ends_with(b"Thanks for asking.\n"));
    }

    proptest! {
        #[test]
        fn any_header_reads_without_panic(msg in proptest::collection::vec(any::<u8>(), 0..300), target in proptest::collection::vec(any::<u8>(), 0..10)) {
            let mut m = b"Notice-Requested-Upon-Delivery-To: ".to_vec();
            m.extend_from_slice(&msg);
            let _ = req(&m, &target);
            let _ = req(&msg, &target);
        }

        #[test]
        fn a_listed_address_is_found(
            locals in proptest::collection::vec("[a-z0-9.+-]{1,8}", 1..5),
            pick in any::<prop::sample::Index>(),
        ) {
            let addrs: Vec<String> = locals.iter().enumerate().map(|(i, l)| format!("{l}@h{i}.example")).collect();
            let field = format!("Notice-Requested-Upon-Delivery-To: {}\n\n", addrs.join(", "));
            let want = &addrs[pick.index(addrs.len())];
            // A local part with dots in odd places is quoted by nobody here: the tokens
            // of an atom-dot sequence unquote to the same text.
            let r = req(field.as_bytes(), want.as_bytes());
            prop_assert!(r.is_ok());
            prop_assert!(r.unwrap().wanted);
        }
    }
}
