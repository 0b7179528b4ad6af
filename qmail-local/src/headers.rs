//! The lines qmail-local adds to a delivered message, built exactly as netqmail builds
//! them:
//!
//! * `Delivered-To: local@domain` (every delivery, and the loop check);
//! * `Return-Path: <sender>` with the local part quoted as RFC 821 wants (files and
//!   maildirs, not forwards);
//! * the mbox `From_` line: `From sender Www Mmm DD HH:MM:SS YYYY` (mbox files).
//!
//! A newline inside an address never reaches a header: it becomes `_` (in the `From_`
//! line, space, tab and newline become `-`).

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

use control::quote2;

/// `local@domain`, the envelope recipient.
pub fn recipient(local: &[u8], domain: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(local.len() + domain.len() + 1);
    r.extend_from_slice(local);
    r.push(b'@');
    r.extend_from_slice(domain);
    r
}

/// `Delivered-To: local@domain\n`.
pub fn dtline(local: &[u8], domain: &[u8]) -> Vec<u8> {
    let mut l = b"Delivered-To: ".to_vec();
    l.extend(
        recipient(local, domain)
            .into_iter()
            .map(|c| if c == b'\n' { b'_' } else { c }),
    );
    l.push(b'\n');
    l
}

/// `Return-Path: <sender>\n`.
pub fn rpline(sender: &[u8]) -> Vec<u8> {
    let mut l = b"Return-Path: <".to_vec();
    l.extend(
        quote2(sender)
            .into_iter()
            .map(|c| if c == b'\n' { b'_' } else { c }),
    );
    l.extend_from_slice(b">\n");
    l
}

/// netqmail's myctime: `Www Mmm DD HH:MM:SS YYYY\n` in UTC, the day of the month with a
/// leading zero (not asctime's space).
pub fn myctime(secs: u64) -> String {
    let t = control::tm(secs);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} {}\n",
        DAYS[(t.wday % 7) as usize],
        MONTHS[((t.month + 11) % 12) as usize],
        t.day,
        t.hour,
        t.min,
        t.sec,
        t.year
    )
}

/// The mbox `From_` line for `sender` at `secs`, with its newline.
pub fn ufline(sender: &[u8], secs: u64) -> Vec<u8> {
    let mut l = b"From ".to_vec();
    if sender.is_empty() {
        l.extend_from_slice(b"MAILER-DAEMON");
    } else {
        l.extend(sender.iter().map(|&c| match c {
            b' ' | b'\t' | b'\n' => b'-',
            c => c,
        }));
    }
    l.push(b' ');
    l.extend_from_slice(myctime(secs).as_bytes());
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::{quote, quote_needed};
    use proptest::prelude::*;

    #[test]
    fn return_path_quoting() {
        assert_eq!(rpline(b""), b"Return-Path: <>\n");
        assert_eq!(rpline(b"joe@a.example"), b"Return-Path: <joe@a.example>\n");
        assert_eq!(
            rpline(b"joe smith@a.example"),
            b"Return-Path: <\"joe smith\"@a.example>\n"
        );
        assert_eq!(rpline(b"a..b@x"), b"Return-Path: <\"a..b\"@x>\n");
        assert_eq!(rpline(b".a@x"), b"Return-Path: <\".a\"@x>\n");
        assert_eq!(rpline(b"@x"), b"Return-Path: <\"\"@x>\n");
        assert_eq!(rpline(b"#@[]"), b"Return-Path: <#@[]>\n");
        assert_eq!(rpline(b"a\nb@x\ny"), b"Return-Path: <\"a\\_b\"@x_y>\n");
        assert_eq!(rpline(b"nodomain"), b"Return-Path: <nodomain>\n");
        assert_eq!(rpline(b"a\"b@x"), b"Return-Path: <\"a\\\"b\"@x>\n");
        assert_eq!(rpline(b"\xe9@x"), b"Return-Path: <\"\xe9\"@x>\n");
    }

    #[test]
    fn delivered_to() {
        assert_eq!(
            dtline(b"joe", b"a.example"),
            b"Delivered-To: joe@a.example\n"
        );
        assert_eq!(dtline(b"j\noe", b"a\n"), b"Delivered-To: j_oe@a_\n");
    }

    #[test]
    fn from_line() {
        // 3 Jan 1996 01:05:34 UTC was a Wednesday.
        assert_eq!(myctime(820_631_134), "Wed Jan 03 01:05:34 1996\n");
        assert_eq!(
            ufline(b"god@heaven.af.mil", 820_631_134),
            b"From god@heaven.af.mil Wed Jan 03 01:05:34 1996\n"
        );
        assert_eq!(
            ufline(b"", 0),
            b"From MAILER-DAEMON Thu Jan 01 00:00:00 1970\n"
        );
        assert_eq!(ufline(b"a b\tc\nd", 0)[..12], b"From a-b-c-d"[..]);
    }

    proptest! {
        #[test]
        fn header_lines_are_one_line(s in proptest::collection::vec(any::<u8>(), 0..80)) {
            let rp = rpline(&s);
            prop_assert_eq!(rp.iter().filter(|&&c| c == b'\n').count(), 1);
            prop_assert!(rp.ends_with(b">\n"));
            let dt = dtline(&s, &s);
            prop_assert_eq!(dt.iter().filter(|&&c| c == b'\n').count(), 1);
            let uf = ufline(&s, 1_000_000_000);
            prop_assert_eq!(uf.iter().filter(|&&c| c == b'\n').count(), 1);
            prop_assert!(!uf[5..uf.len() - 26].contains(&b' '));
        }

        #[test]
        fn quote_roundtrips(s in proptest::collection::vec(any::<u8>(), 0..40)) {
            let q = quote(&s);
            if quote_needed(&s) {
                prop_assert_eq!(q[0], b'"');
                // Unescaping gives the original back.
                let mut out = Vec::new();
                let mut esc = false;
                for &c in &q[1..q.len() - 1] {
                    if !esc && c == b'\\' { esc = true; continue; }
                    esc = false;
                    out.push(c);
                }
                prop_assert_eq!(out, s);
            } else {
                prop_assert_eq!(q, s);
            }
        }
    }
}
