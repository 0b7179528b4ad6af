//! The readers of the queue's files (issue 13): what qmail-send, qmail-qread, qmail-qctl,
//! qmail-remote and qmail-tcpto make of todo/N, info/S/N, local/S/N, remote/S/N and
//! lock/tcpto, driven the way those programs drive them. The first byte of an input
//! picks the record limit (so that small inputs reach the too-long path) and the size of
//! the reads; the rest is the file.

use qmail_queue::{BoundedLine, ChannelRecord, TodoRecord, read_bounded};
use std::io::BufReader;

/// The record limits a first byte chooses from: tiny ones to reach the too-long path,
/// and qmail-send's own (1 MiB).
const LIMITS: [usize; 4] = [4, 32, 1024, 1 << 20];

fn split(data: &[u8]) -> Option<(usize, usize, &[u8])> {
    let (&mode, file) = data.split_first()?;
    Some((
        LIMITS[usize::from(mode & 3)],
        usize::from(mode >> 2) + 1,
        file,
    ))
}

/// Every record of `file` as qmail-send reads it (bounded), each `Some(record)` or `None`
/// for one over the limit; and the unfinished tail. Checks that the reader yields
/// exactly the file's complete records, in order, and stops.
fn bounded_records(file: &[u8], limit: usize, buf: usize) -> (Vec<Option<Vec<u8>>>, Vec<u8>) {
    let mut r = BufReader::with_capacity(buf, file);
    let mut v = Vec::new();
    let tail = loop {
        match read_bounded(&mut r, 0, limit) {
            Ok(BoundedLine::Line(l)) => {
                assert!(l.len() <= limit && l.last() == Some(&0), "{l:?}");
                assert!(!l[..l.len() - 1].contains(&0));
                v.push(Some(l));
            }
            Ok(BoundedLine::TooLong) => v.push(None),
            Ok(BoundedLine::Eof(t)) => break t,
            Err(e) => panic!("reading bytes in memory failed: {e}"),
        }
        assert!(v.len() <= file.len() + 1, "the reader does not stop");
    };
    let complete: Vec<&[u8]> = qmail_queue::complete_records(file).collect();
    let used: usize = complete.iter().map(|c| c.len()).sum();
    if file.len() - used > limit {
        assert_eq!(v.pop(), Some(None), "an unfinished tail over the limit");
        assert!(tail.is_empty());
    } else {
        assert_eq!(tail, &file[used..]);
    }
    assert_eq!(v.len(), complete.len());
    for (got, want) in v.iter().zip(&complete) {
        match got {
            Some(l) => assert_eq!(l.as_slice(), *want),
            None => assert!(want.len() > limit),
        }
    }
    (v, tail)
}

/// The route qmail-send rewrites recipients with: a local domain, virtual domains (one
/// an exception, one a wildcard), percenthack when the first byte says so.
fn route(percenthack: bool) -> recipient::Route {
    let hack: Vec<&[u8]> = if percenthack {
        vec![b"percent.example"]
    } else {
        Vec::new()
    };
    recipient::Route {
        envnoathost: b"envnoathost.example".to_vec(),
        locals: Some(control::CaseSet::new([&b"testhost.example"[..]])),
        percenthack: control::CaseSet::new(hack),
        vdoms: recipient::VirtualDomains::new(&[
            b"virt.example:virt".to_vec(),
            b".sub.example:sub".to_vec(),
            b"except.virt.example:".to_vec(),
        ]),
    }
}

/// todo/N (and intd/N): qmail-send's preprocessing (bounded records, each classified, the
/// recipients rewritten for local/ or remote/) and qmail-qctl's listing of a new message.
/// Checks: a sender or recipient holds no NUL; a rewritten recipient holds none either (it
/// becomes a record of local/ or remote/ and must stay one record); qmail-qctl sees the
/// same senders and recipients as qmail-send where no record is over the limit.
pub fn queue_todo(data: &[u8]) {
    let Some((limit, buf, file)) = split(data) else {
        return;
    };
    let route = route(data[0] & 0x80 != 0);
    let (records, _) = bounded_records(file, limit, buf);
    let mut seen = Vec::new();
    for rec in records.iter().flatten() {
        match qmail_queue::todo_record(rec) {
            TodoRecord::Sender(s) => {
                assert!(!s.contains(&0));
                seen.push((b'F', s.to_vec()));
            }
            TodoRecord::Recipient(r) => {
                assert!(!r.contains(&0));
                let (_, addr) = recipient::rewrite(&route, r);
                assert!(!addr.contains(&0), "a NUL in a rewritten recipient");
                seen.push((b'T', r.to_vec()));
            }
            TodoRecord::Uid(_) | TodoRecord::Pid(_) | TodoRecord::Unknown => {}
        }
    }
    if records.iter().all(Option::is_some) {
        let listed: Vec<(u8, Vec<u8>)> = qmail_queue::complete_records(file)
            .filter_map(|r| match qmail_queue::todo_record(r) {
                TodoRecord::Sender(s) => Some((b'F', s.to_vec())),
                TodoRecord::Recipient(a) => Some((b'T', a.to_vec())),
                _ => None,
            })
            .collect();
        assert_eq!(listed, seen);
    }
}

/// info/S/N: qmail-send's getinfo (the first record, bounded, must be `F`) and
/// qmail-qread's summary line (the first record whatever its type). Checks: the sender
/// holds no NUL; qmail-qread's line is one line of printable ASCII.
pub fn queue_info(data: &[u8]) {
    let Some((limit, buf, file)) = split(data) else {
        return;
    };
    let mut r = BufReader::with_capacity(buf, file);
    if let Ok(BoundedLine::Line(l)) = read_bounded(&mut r, 0, limit)
        && let Some(s) = qmail_queue::info_sender(&l)
    {
        assert!(!s.contains(&0));
        assert_eq!(l.first(), Some(&b'F'));
    }
    let first = file.split_inclusive(|&c| c == 0).next().unwrap_or_default();
    let line = qmail_queue::qread_summary(first, 1_700_000_000, 457, 1234, data[0] & 1 != 0);
    assert_eq!(line.last(), Some(&b'\n'));
    assert!(
        line[..line.len() - 1]
            .iter()
            .all(|&c| (32..=126).contains(&c)),
        "{line:?}"
    );
}

/// local/S/N and remote/S/N: qmail-send's pass over the recipients (bounded records; it
/// stops at the first record over the limit or of an unknown type), where each waiting
/// recipient's position is where the `D` of its delivery is written; qmail-qread's lines
/// and qmail-qctl's reading. Checks: the position of a waiting record holds its `T` (so
/// marking it done changes that byte and nothing else); after every waiting record is
/// marked, qmail-send sees none waiting and as many done; qmail-qread prints one printable
/// line per complete `T` or `D` record, qmail-qctl reads as many.
pub fn queue_channel(data: &[u8]) {
    let Some((limit, buf, file)) = split(data) else {
        return;
    };
    let pass = |file: &[u8]| -> (Vec<usize>, usize) {
        let mut r = BufReader::with_capacity(buf, file);
        let (mut waiting, mut done, mut mpos) = (Vec::new(), 0, 0usize);
        while let Ok(BoundedLine::Line(l)) = read_bounded(&mut r, 0, limit) {
            match qmail_queue::channel_record(&l) {
                ChannelRecord::Waiting(a) => {
                    assert!(!a.contains(&0));
                    assert_eq!(file[mpos], b'T', "the D would be written elsewhere");
                    waiting.push(mpos);
                }
                ChannelRecord::Done(_) => done += 1,
                ChannelRecord::Unknown => break,
            }
            mpos += l.len();
        }
        (waiting, done)
    };
    let (waiting, done) = pass(file);
    let mut marked = file.to_vec();
    for &p in &waiting {
        marked[p] = b'D';
    }
    let (still, done_after) = pass(&marked);
    assert!(still.is_empty());
    assert_eq!(done_after, done + waiting.len());

    let mut out = Vec::new();
    qmail_queue::qread_recipients(&mut out, "remote", file);
    let typed = qmail_queue::complete_records(file)
        .filter(|r| !matches!(qmail_queue::channel_record(r), ChannelRecord::Unknown))
        .count();
    assert_eq!(out.iter().filter(|&&c| c == b'\n').count(), typed);
    assert!(
        out.iter()
            .all(|&c| (32..=126).contains(&c) || c == b'\t' || c == b'\n')
    );
}

/// lock/tcpto and lock/tcpto6: qmail-remote's check and update of a host and
/// qmail-tcpto's listing, over a table of any length (cut to whole records, as they read
/// it). Checks: an update names the host's record in the table; after a success the host
/// has no count left, after a timeout at most 10; qmail-tcpto's output is whole lines of
/// ASCII.
pub fn queue_tcpto(data: &[u8]) {
    use qmail_remote::tcpto_table::{V4, V6, check, show, update};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let l = if mode & 1 == 0 { V4 } else { V6 };
    let (ip, table) = rest.split_at(l.addr.min(rest.len()));
    if ip.len() < l.addr {
        return;
    }
    let mut buf = table[..table.len().min(l.size)].to_vec();
    buf.truncate(buf.len() - buf.len() % l.rec);
    let now = 1_700_000_000 + u64::from(mode >> 1) * 97;
    let _ = check(&buf, &l, ip, now, u32::from(mode));
    let out = show(&buf, &l, now);
    assert!(out.is_empty() || out.ends_with(b"\n"));
    assert!(out.is_ascii());
    let timed_out = mode & 2 != 0;
    if let Some(i) = update(&mut buf, &l, ip, timed_out, now) {
        assert!((i + 1) * l.rec <= buf.len());
        let rec = &buf[i * l.rec..(i + 1) * l.rec];
        assert_eq!(&rec[..l.addr], ip);
        if timed_out {
            // netqmail's `if (++count > 10) count = 10` on a signed char: a damaged
            // count at -1 becomes 0, one at 127 wraps; never more than 10.
            assert!(i8::from_ne_bytes([rec[l.count]]) <= 10);
        } else {
            assert_eq!(rec[l.count], 0);
        }
    }
}

/// A reader that hands out at most `chunk` bytes per read and, when `fail_at` is set,
/// fails once that many bytes have been read (a disk error in the middle of the file).
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
    fail_at: Option<usize>,
    pos: usize,
}

impl std::io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.fail_at.is_some_and(|f| self.pos >= f) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        let end = self.data.len().min(self.pos + self.chunk.min(buf.len()));
        let end = self.fail_at.map_or(end, |f| end.min(f.max(self.pos + 1)));
        let n = end.saturating_sub(self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// bounce/N and mess/N as qmail-send's injectbounce reads them (`bounce::plan` on
/// info/S/N's sender, then `bounce::compose` copying both files into the bounce). Input:
/// a mode byte (read size, which file fails and where), the sender up to the first NUL
/// (info/S/N's record holds none), a two-byte length of bounce/N, bounce/N, and mess/N.
/// Checks: `#@[]` (with or without `-@[]`) is discarded and nothing else; the empty
/// sender's failures go from `#@[]` to doublebounceto, the others from `<>` to the
/// sender without `-@[]`; the bounce is the fixed text with bounce/N and mess/N in it
/// byte for byte (NULs, bare CRs, anything), whatever the size of the reads; a read error
/// in either file is an error of the whole (the bounce is then not queued); the fixed text
/// holds no NUL.
pub fn queue_bounce(data: &[u8]) {
    use qmail_send::bounce::{Plan, compose, head, middle, plan};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (sender, rest) = match rest.iter().position(|&c| c == 0) {
        Some(p) => (&rest[..p], &rest[p + 1..]),
        None => (rest, &[][..]),
    };
    let (blen, rest) = match rest {
        [a, b, r @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), r),
        _ => (0, rest),
    };
    let (bounce, mess) = rest.split_at(blen.min(rest.len()));
    let dbl = b"dbl@testhost.example";
    let stripped = sender.strip_suffix(b"-@[]").unwrap_or(sender);
    let (orig, bsender, recip, double) = match plan(sender, dbl) {
        Plan::Discard => {
            assert_eq!(stripped, b"#@[]");
            return;
        }
        Plan::Inject {
            orig,
            sender,
            recip,
            double,
        } => (orig, sender, recip, double),
    };
    assert_ne!(stripped, b"#@[]");
    assert_eq!(orig, stripped);
    assert_eq!(double, stripped.is_empty());
    if double {
        assert_eq!((&bsender[..], &recip[..]), (&b"#@[]"[..], &dbl[..]));
    } else {
        assert_eq!((&bsender[..], &recip[..]), (&b""[..], stripped));
    }
    let chunk = usize::from(mode & 0x1f) + 1;
    let fail = |len: usize, on: bool| on.then(|| usize::from(mode >> 5) * len / 8);
    let (fail_b, fail_m) = (mode & 0x40 != 0 && mode & 0x80 != 0, mode & 0x80 != 0);
    let mut b = Chunked {
        data: bounce,
        chunk,
        fail_at: fail(bounce.len(), fail_b),
        pos: 0,
    };
    let mut m = Chunked {
        data: mess,
        chunk,
        fail_at: fail(mess.len(), fail_m && !fail_b),
        pos: 0,
    };
    let mut out = Vec::new();
    let r = compose(
        &mut |d: &[u8]| out.extend_from_slice(d),
        1_700_000_000,
        b"MAILER-DAEMON",
        b"testhost.example",
        &orig,
        &recip,
        double,
        &mut b,
        &mut m,
    );
    if fail_b || fail_m {
        assert!(r.is_err(), "a read error must not give a bounce");
        return;
    }
    assert!(r.is_ok());
    let h = head(
        1_700_000_000,
        b"MAILER-DAEMON",
        b"testhost.example",
        &recip,
        double,
    );
    let mid = middle(&orig, double);
    assert!(!h.contains(&0) && !mid.contains(&0));
    let mut want = h;
    want.extend_from_slice(bounce);
    want.extend_from_slice(&mid);
    want.extend_from_slice(mess);
    assert_eq!(out, want);
}

/// Undoes [`qmail_qctl::json_str`]: `None` unless `s` is one JSON string literal of
/// printable ASCII whose escapes are `\"`, `\\` and `\u00XX`.
fn json_bytes(s: &str) -> Option<Vec<u8>> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let b = inner.as_bytes();
    let mut v = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => match b.get(i + 1)? {
                b'"' | b'\\' => {
                    v.push(b[i + 1]);
                    i += 2;
                }
                b'u' => {
                    let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
                    v.push(u8::try_from(u16::from_str_radix(hex, 16).ok()?).ok()?);
                    i += 6;
                }
                _ => return None,
            },
            b'"' => return None,
            c if (0x20..=0x7e).contains(&c) => {
                v.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(v)
}

/// Undoes [`qmail_qctl::tsv_field`]; `None` for a tab, line end or unknown escape.
fn tsv_bytes(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut v = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                match b.get(i + 1)? {
                    b'\\' => v.push(b'\\'),
                    b't' => v.push(b'\t'),
                    b'n' => v.push(b'\n'),
                    b'r' => v.push(b'\r'),
                    b'x' => {
                        let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                        v.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 2;
                    }
                    _ => return None,
                }
                i += 2;
            }
            b'\t' | b'\n' | b'\r' => return None,
            c => {
                v.push(c);
                i += 1;
            }
        }
    }
    Some(v)
}

/// mess/N and bounce/N as qmail-qctl's `show` reads them: the header of the message file
/// (up to its first empty line) and both texts for a terminal, as JSON and as TSV. The
/// first byte says whether the input is the message or the failures (it only picks the
/// name in the failure messages). Checks: the header is a prefix of the file that ends
/// at the first empty line or is the whole file; for a terminal no control character
/// but newline and tab survives (nothing can drive the terminal); the JSON string and
/// the TSV field are one line of printable ASCII and give back the file's bytes.
pub fn queue_mess(data: &[u8]) {
    let Some((&which, file)) = data.split_first() else {
        return;
    };
    let what = if which & 1 == 0 { "mess" } else { "bounce" };
    let h = qmail_qctl::message_header(file);
    assert!(file.starts_with(h));
    match file.windows(2).position(|w| w == b"\n\n") {
        Some(p) => assert_eq!(h.len(), p + 2, "{what}: the header ends at the empty line"),
        None => assert_eq!(h.len(), file.len()),
    }
    for text in [h, file] {
        let human = qmail_qctl::human_text(text);
        assert!(
            human
                .chars()
                .all(|c| c == '\n' || c == '\t' || !c.is_control()),
            "{what}: a control character for the terminal"
        );
        let j = qmail_qctl::json_str(text);
        assert_eq!(json_bytes(&j).as_deref(), Some(text), "{what}: {j}");
        let t = qmail_qctl::tsv_field(text);
        assert_eq!(tsv_bytes(&t).as_deref(), Some(text), "{what}: {t}");
    }
}
