//! What qbiff and maildirwatch show of a message, read as netqmail reads it (its
//! headerbody and hfield, here control's `rfc822`):
//!
//! * the text: the contents of every `Subject` field (from after the colon and the white
//!   space after it, newlines included), then the body from the empty line that begins
//!   it, cut at a number of bytes;
//! * the contents of the last `Delivered-To` and `Return-Path` fields (without the
//!   newline that ends them; a field with nothing after its colon is ignored) and the last
//!   `From` field whole (name included, without its last newline).
//!
//! Nothing here is printable yet: the callers replace what a terminal must not see, each
//! with netqmail's character ([`printable`]).

use std::io::{self, BufRead};

use control::rfc822::{Field, HeaderBody, HeaderError, Limits, known_field, skip_field_name};

/// The parts of a message the notices show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The text: `prefix`, the subjects, the body, at most `cap` bytes in all.
    pub text: Vec<u8>,
    /// The last `Delivered-To` contents.
    pub recipient: Option<Vec<u8>>,
    /// The last `Return-Path` contents.
    pub sender: Option<Vec<u8>>,
    /// The last `From` field.
    pub from: Option<Vec<u8>>,
}

/// The contents of `field` without its last byte (the newline every field ends with),
/// or `None` when nothing follows the colon.
fn contents(field: &[u8]) -> Option<Vec<u8>> {
    let i = skip_field_name(field);
    (i < field.len()).then(|| field[i..field.len() - 1].to_vec())
}

/// Reads the message on `input` and summarises it; the text starts with `prefix` and
/// stops at `cap` bytes. With `drain`, the input is read to its end even after the text
/// is complete (a pipe's writer must not see its reader go away); otherwise reading stops
/// there. A header too big to hold (see control's `rfc822` limits) ends the reading: what
/// was found before it is the summary. An error is a read error.
pub fn summarize(
    input: impl BufRead,
    prefix: &[u8],
    cap: usize,
    drain: bool,
) -> io::Result<Summary> {
    let mut s = Summary {
        text: prefix.to_vec(),
        ..Summary::default()
    };
    s.text.truncate(cap);
    let add = |text: &mut Vec<u8>, b: &[u8]| {
        let room = cap.saturating_sub(text.len());
        text.extend_from_slice(&b[..b.len().min(room)]);
    };
    let mut hb = HeaderBody::new(input, Limits::default());
    loop {
        match hb.next_field() {
            Ok(Some(f)) => match known_field(&f) {
                Some(Field::Subject) => add(&mut s.text, &f[skip_field_name(&f)..]),
                Some(Field::DeliveredTo) => {
                    if let Some(c) = contents(&f) {
                        s.recipient = Some(c);
                    }
                }
                Some(Field::ReturnPath) => {
                    if let Some(c) = contents(&f) {
                        s.sender = Some(c);
                    }
                }
                Some(Field::From) => s.from = Some(f[..f.len() - 1].to_vec()),
                _ => {}
            },
            Ok(None) => break,
            Err(HeaderError::Read(e)) => return Err(e),
            Err(_) => return Ok(s),
        }
    }
    let r = hb.copy_body(&mut |b| {
        add(&mut s.text, b);
        if !drain && s.text.len() >= cap {
            return Err(io::Error::other("text complete"));
        }
        Ok(())
    });
    match r {
        Ok(_) | Err(HeaderError::Write(_)) => Ok(s),
        Err(HeaderError::Read(e)) => Err(e),
        Err(_) => Ok(s),
    }
}

/// `s` with every byte outside printable ASCII (32 to 126) replaced by `with`.
pub fn printable(s: &[u8], with: u8) -> Vec<u8> {
    s.iter()
        .map(|&c| if (32..=126).contains(&c) { c } else { with })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sum(msg: &[u8], prefix: &[u8], cap: usize) -> Summary {
        summarize(msg, prefix, cap, true).unwrap()
    }

    #[test]
    fn subject_then_body() {
        let s = sum(
            b"Return-Path: <a@b>\nDelivered-To: joe@x\nFrom: A <a@b>\nSubject: hi\n there\n\nbody\n",
            b"",
            158,
        );
        assert_eq!(s.text, b"hi\n there\n\nbody\n");
        assert_eq!(s.sender.as_deref(), Some(&b"<a@b>"[..]));
        assert_eq!(s.recipient.as_deref(), Some(&b"joe@x"[..]));
        assert_eq!(s.from.as_deref(), Some(&b"From: A <a@b>"[..]));
        assert_eq!(printable(&s.text, b'/'), b"hi/ there//body/");
    }

    #[test]
    fn netqmail_corners() {
        // Two subjects, both shown; the last Delivered-To wins; an empty one is ignored.
        let s = sum(
            b"Subject: one\nDelivered-To: first\nSubject:two\nDelivered-To: last\nDelivered-To:\n\nx",
            b"    ",
            78,
        );
        assert_eq!(s.text, b"    one\ntwo\n\nx\n");
        assert_eq!(s.recipient.as_deref(), Some(&b"last"[..]));
        assert_eq!(s.sender, None);
        // No header at all: the body starts with the inserted empty line.
        let s = sum(b"just text\n", b"", 158);
        assert_eq!(s.text, b"\njust text\n");
        // An mbox From_ line is not the From field.
        let s = sum(b"From joe Mon\nFrom: j\n\n", b"", 158);
        assert_eq!(s.from.as_deref(), Some(&b"From: j"[..]));
        // The cap counts the prefix.
        let s = sum(b"Subject: 0123456789\n\n", b"    ", 10);
        assert_eq!(s.text, b"    012345");
        // Nothing at all.
        assert_eq!(sum(b"", b"", 5).text, b"");
    }

    #[test]
    fn stops_early_without_drain() {
        let mut msg = b"Subject: x\n\n".to_vec();
        msg.extend(std::iter::repeat_n(b'y', 100_000));
        let mut r = io::BufReader::with_capacity(16, &msg[..]);
        let s = summarize(&mut r, b"", 20, false).unwrap();
        assert_eq!(s.text.len(), 20);
        assert!(
            !r.fill_buf().unwrap().is_empty(),
            "the body was read to its end"
        );
        let mut r = io::BufReader::with_capacity(16, &msg[..]);
        let s2 = summarize(&mut r, b"", 20, true).unwrap();
        assert_eq!(s, s2);
        assert!(r.fill_buf().unwrap().is_empty());
    }

    #[test]
    fn a_header_too_big_ends_the_summary() {
        let mut msg = b"Subject: kept\nX-Other: y\nX-Big: ".to_vec();
        msg.extend(std::iter::repeat_n(b'z', Limits::default().field + 10));
        msg.extend_from_slice(b"\nSubject: lost\n\nbody\n");
        let s = sum(&msg, b"", 158);
        assert_eq!(s.text, b"kept\n");
    }

    proptest! {
        #[test]
        fn never_more_than_the_cap(
            msg in proptest::collection::vec(any::<u8>(), 0..400),
            cap in 0usize..200,
            drain in any::<bool>(),
        ) {
            let s = summarize(&msg[..], b"    ", cap, drain).unwrap();
            prop_assert!(s.text.len() <= cap);
            prop_assert!(cap < 4 || s.text.starts_with(b"    "));
            for f in [&s.recipient, &s.sender, &s.from].into_iter().flatten() {
                prop_assert!(f.len() <= msg.len());
            }
            let p = printable(&s.text, b'/');
            prop_assert!(p.iter().all(|&c| (32..=126).contains(&c)));
        }

        #[test]
        fn summary_from_fields(subject in "[ -~]{0,60}", body in "[ -~\n]{0,60}") {
            let msg = format!("Subject: {subject}\n\n{body}");
            let s = summarize(msg.as_bytes(), b"", 1000, true).unwrap();
            // A subject of nothing but spaces adds nothing: its newline is skipped with them.
            let mut want = subject.trim_start().as_bytes().to_vec();
            if !want.is_empty() {
                want.push(b'\n');
            }
            want.push(b'\n');
            want.extend_from_slice(body.as_bytes());
            if !body.is_empty() && !body.ends_with('\n') {
                want.push(b'\n');
            }
            prop_assert_eq!(s.text, want);
        }
    }
}
