//! The fuzz targets: one function per parser of untrusted input, each taking arbitrary
//! bytes. A target must never panic; where a parser promises something (a relay check,
//! a round trip, a bound), the target asserts it, so that a broken promise is a crash
//! the fuzzer reports.
//!
//! The same functions serve three callers: the cargo-fuzz targets in `fuzz/` (libFuzzer,
//! outside the workspace), the replay of every committed corpus and regression input in
//! this crate's tests (stable Rust, part of the normal test suite), and proptest.

use std::io::{self, BufRead};

/// A fuzz target: arbitrary bytes in, a panic for a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as the fuzz/ directory names them.
pub const TARGETS: &[(&str, Target)] = &[
    ("smtp_session", smtp_session),
    ("smtp_data", smtp_data),
    ("address", address),
    ("envelope", envelope),
    ("dotqmail", dotqmail),
    ("control_files", control_files),
    ("cdb", cdb),
    ("remote_reply", remote_reply),
    ("tlsa", tlsa),
    ("inject_header", inject_header),
    ("client_cert", client_cert),
    ("pop3", pop3),
    ("dkim_message", dkim_message),
    ("netstring", netstring),
    ("mail_notice", mail_notice),
    ("srs", srs),
    ("queue_todo", queue_todo),
    ("queue_info", queue_info),
    ("queue_channel", queue_channel),
    ("queue_tcpto", queue_tcpto),
    ("queue_bounce", queue_bounce),
    ("queue_mess", queue_mess),
    ("auth_results", auth_results),
    ("mtasts_policy", mtasts_policy),
];

mod queue;
pub use queue::{queue_bounce, queue_channel, queue_info, queue_mess, queue_tcpto, queue_todo};

// ----------------------------------------------------------------- qmail-smtpd

mod smtpd {
    use qmail_queue::QueueError;
    use qmail_smtpd::{Backend, Message};
    use std::cell::RefCell;
    use std::io;
    use std::rc::Rc;

    /// The most bytes of a message's start kept.
    pub const HEAD: usize = 300;

    /// What the fake queue was given: (sender, recipients, data bytes, the first
    /// [`HEAD`] bytes).
    pub type Queued = Rc<RefCell<Vec<(Vec<u8>, Vec<Vec<u8>>, usize, Vec<u8>)>>>;

    pub struct Fake {
        pub queued: Queued,
    }

    pub struct Msg {
        queued: Queued,
        from: Vec<u8>,
        to: Vec<Vec<u8>>,
        bytes: usize,
        head: Vec<u8>,
        failed: bool,
    }

    impl Message for Msg {
        fn pid(&self) -> u32 {
            1
        }
        fn put(&mut self, data: &[u8]) {
            self.bytes += data.len();
            let room = HEAD.saturating_sub(self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..room]);
        }
        fn fail(&mut self) {
            self.failed = true;
        }
        fn from(&mut self, sender: &[u8]) {
            self.from = sender.to_vec();
        }
        fn to(&mut self, r: &[u8]) {
            self.to.push(r.to_vec());
        }
        fn close(self) -> Result<(), QueueError> {
            let failed = self.failed;
            self.queued
                .borrow_mut()
                .push((self.from, self.to, self.bytes, self.head));
            QueueError::from_exit(0, failed)
        }
    }

    impl Backend for Fake {
        type Message = Msg;
        fn open_message(&mut self, _: Option<&[u8]>) -> io::Result<Msg> {
            Ok(Msg {
                queued: self.queued.clone(),
                from: Vec::new(),
                to: Vec::new(),
                bytes: 0,
                head: Vec::new(),
                failed: false,
            })
        }
        fn now(&mut self) -> u64 {
            1_000_000_000
        }
    }
}

/// The SMTP dialogue: the first byte picks a configuration (rcpthosts, RELAYCLIENT,
/// databytes, badmailfrom, SMTPUTF8), the rest is the client's input, fed in pieces whose
/// sizes come from the input too. Checks: every reply line is a three-digit code and ends
/// in CR LF; no envelope address holds a NUL; without RELAYCLIENT, every queued recipient
/// is allowed by rcpthosts (no relaying; with SMTPUTF8, in one of the forms of its
/// domain); with SMTPUTF8, an envelope with bytes above 127 is UTF-8 and its message's
/// Received field says UTF8SMTP.
pub fn smtp_session(data: &[u8]) {
    use qmail_smtpd::Config;
    use qmail_smtpd::Session;
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let mut cfg = Config::new(b"fuzz.example");
    let restricted = mode & 1 != 0;
    let hosts_list = || {
        control::RcptHosts::from_entries(Some(vec![
            b"fuzz.example".to_vec(),
            b".sub.example".to_vec(),
        ]))
    };
    if restricted {
        cfg.rcpthosts = hosts_list();
    }
    let relay = mode & 2 != 0;
    if relay {
        cfg.relayclient = Some(b"".to_vec());
    }
    if mode & 4 != 0 {
        cfg.databytes = 64;
    }
    if mode & 8 != 0 {
        cfg.badmailfrom = control::BadMailFrom::from_entries(vec![
            b"bad@evil.example".to_vec(),
            b"@evil2.example".to_vec(),
        ]);
    }
    let utf8 = mode & 16 != 0;
    cfg.smtputf8 = utf8;
    let hosts = hosts_list();
    let queued = smtpd::Queued::default();
    let mut s = Session::new(
        cfg,
        smtpd::Fake {
            queued: queued.clone(),
        },
    );
    let mut out = s.take_output();
    let step = usize::from(mode >> 5) + 1;
    let mut rest = input;
    while !rest.is_empty() && s.finished().is_none() && !s.wants_tls() {
        let n = step.min(rest.len());
        let used = s.feed(&rest[..n]);
        assert!(used <= n);
        rest = &rest[n..];
        out.extend(s.take_output());
    }
    if s.finished().is_none() {
        s.eof();
    }
    out.extend(s.take_output());
    if !out.is_empty() {
        assert!(out.ends_with(b"\r\n"), "reply without CR LF: {out:?}");
    }
    for line in out.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        assert!(
            line.len() >= 4
                && line[..3].iter().all(u8::is_ascii_digit)
                && (line[3] == b' ' || line[3] == b'-')
                && line.ends_with(b"\r"),
            "malformed reply line {:?}",
            String::from_utf8_lossy(line)
        );
    }
    for (from, to, _, head) in queued.borrow().iter() {
        assert!(!from.contains(&0));
        let non_ascii = to
            .iter()
            .chain([from])
            .any(|a| control::idna::is_non_ascii(a));
        if utf8 && non_ascii {
            assert!(
                to.iter()
                    .chain([from])
                    .all(|a| std::str::from_utf8(a).is_ok()),
                "an envelope that is not UTF-8"
            );
            assert!(
                head.windows(14).any(|w| w == b" with UTF8SMTP"),
                "no UTF8SMTP mark: {:?}",
                String::from_utf8_lossy(head)
            );
        }
        for r in to {
            assert!(!r.contains(&0), "NUL in a recipient");
            if !relay && restricted {
                assert!(
                    hosts.allowed(r).unwrap_or(false) || (utf8 && allowed_idna(&hosts, r)),
                    "relayed to {:?}",
                    String::from_utf8_lossy(r)
                );
            }
        }
    }
}

/// `r` allowed by `hosts` with its domain in A-labels or U-labels.
fn allowed_idna(hosts: &control::RcptHosts, r: &[u8]) -> bool {
    let Some((local, domain)) = control::split_at_last_at(r) else {
        return false;
    };
    let a = control::idna::simple_to_ascii(domain);
    let u = a.as_deref().and_then(control::idna::simple_to_unicode);
    [a, u, control::idna::simple_to_unicode(domain)]
        .into_iter()
        .flatten()
        .any(|d| hosts.allowed(&[local, b"@", &d].concat()).unwrap_or(false))
}

/// The DATA phase alone, in pieces: never more bytes out than in, a size limit kept.
pub fn smtp_data(data: &[u8]) {
    use qmail_smtpd::{Blast, Progress};
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let limit = u64::from(mode & 0x3f) * 8;
    let mut b = Blast::new(limit);
    let mut out = Vec::new();
    let mut used = 0;
    let step = usize::from(mode >> 6) * 7 + 1;
    for chunk in input.chunks(step) {
        let (n, p) = b.feed(chunk, &mut out);
        assert!(n <= chunk.len());
        used += n;
        if p != Progress::More {
            break;
        }
    }
    assert!(out.len() <= used);
    if limit > 0 {
        assert!(out.len() as u64 <= limit);
    }
}

/// Addresses: qmail-smtpd's MAIL/RCPT argument parser (with the local-IP rewrite), the
/// `@` and domain helpers, the printable form used in logs.
pub fn address(data: &[u8]) {
    let (addr, params) = qmail_smtpd::extract_address(data);
    assert!(addr.len() <= data.len());
    assert!(params.len() <= data.len());
    let _ = qmail_smtpd::size_param(params);
    if let Some(a) = qmail_smtpd::parse_address(data, Some(b"lip.example"), |_| true) {
        assert!(a.len() <= qmail_smtpd::MAX_ADDR);
    }
    let _ = qmail_smtpd::scan_bracket6(data);
    let _ = qmail_smtpd::scan_ip(data);
    if let Some((local, domain)) = control::split_at_last_at(data) {
        assert!(!domain.contains(&b'@'));
        assert_eq!(local.len() + domain.len() + 1, data.len());
    }
    let _ = control::domain_of(data);
    let p = control::printable(data);
    assert!(
        !p.contains('\n') && !p.contains('\r') && !p.contains('\0'),
        "printable form with a control character: {p:?}"
    );
}

/// qmail-queue's envelope (fd 1 protocol): parse, and a parsed envelope encodes to
/// something that parses back to itself.
pub fn envelope(data: &[u8]) {
    if let Ok(e) = qmail_queue::Envelope::parse(data) {
        let again = qmail_queue::Envelope::parse(&e.encode()).expect("an encoded envelope parses");
        assert_eq!(again, e);
    }
    let mut r = data;
    let _ = qmail_queue::copy_envelope(&mut r, &mut Discard);
}

struct Discard;

impl qmail_queue::Records for Discard {
    fn record(&mut self, letter: u8, addr: &[u8]) -> io::Result<()> {
        assert!(letter == b'F' || letter == b'T');
        assert!(!addr.contains(&0));
        Ok(())
    }
}

/// .qmail files: the whole file and every line on its own; extension names.
pub fn dotqmail(data: &[u8]) {
    if let Ok(lines) = recipient::parse_dotqmail(data) {
        for l in &lines {
            let _ = l.describe();
        }
    }
    for raw in data.split(|&c| c == b'\n') {
        let _ = recipient::classify(raw).describe();
    }
    let (dash, ext) = data.split_at(data.len().min(8));
    let safe = recipient::safe_ext(ext);
    assert!(!safe.contains(&b'/'), "a .qmail name with a slash");
    let _ = recipient::candidates(dash, &safe);
    let _ = recipient::owner_names(dash, &safe);
}

/// Control files: lines and numbers, rcpthosts, smtproutes, users/assign.
pub fn control_files(data: &[u8]) {
    let lines = control::parse_lines(data);
    let _ = control::scan_ulong(data);
    let hosts = control::RcptHosts::from_entries(Some(lines.clone()));
    for l in &lines {
        let _ = hosts.allowed(l);
    }
    let routes = qmail_remote::Routes::new(&lines);
    for l in &lines {
        let _ = routes.route(l);
        let _ = qmail_remote::parse_relay(l);
    }
    let _ = recipient::compile_users_assign(data, |_, _| Ok(()));
    let _ = recipient::Assignment::parse(data);
    let bmf = control::BadMailFrom::from_entries(lines);
    let _ = bmf.matches(data);
}

/// cdb files as qmail-smtpd (morercpthosts.cdb) and qmail-lspawn (users/cdb) read them:
/// the first byte is the key's length, then the key, then the file.
pub fn cdb(data: &[u8]) {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("tempdir");
    }
    let Some((&klen, rest)) = data.split_first() else {
        return;
    };
    let (key, file) = rest.split_at(usize::from(klen).min(rest.len()));
    DIR.with(|d| {
        let p = d.path().join("fuzz.cdb");
        if std::fs::write(&p, file).is_err() {
            return;
        }
        if let Ok(Some(db)) = control::Cdb::open_optional(&p) {
            let _ = db.get(key);
            let _ = db.contains(key);
            let _ = db.get_all(key);
            let _ = recipient::lookup_users_cdb(&db, key);
        }
    });
}

/// qmail-smtpd's reading of a client certificate's subject address (for
/// control/tlsclients): what it returns goes into the Received field. And the subject
/// and issuer texts of the verbose diagnostics (qmail-remote's peers), bounded.
pub fn client_cert(data: &[u8]) {
    if let Some(e) = qmail_tls::subject_email(data) {
        assert!(!e.is_empty() && e.len() <= qmail_tls::MAX_EMAIL);
        assert!(e.bytes().all(|c| (0x21..=0x7e).contains(&c)), "{e:?}");
    }
    if let Some((s, i)) = qmail_tls::cert_names(data) {
        assert!(s.chars().count() <= qmail_tls::MAX_NAME_TEXT);
        assert!(i.chars().count() <= qmail_tls::MAX_NAME_TEXT);
    }
}

// ----------------------------------------------------------------------- POP3

/// A Maildir in memory for qmail-pop3d's dialogue (shared, so that the target can look
/// at it afterwards).
#[derive(Default, Clone)]
struct MemMaildir {
    files: std::rc::Rc<std::cell::RefCell<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl qmail_pop3::Mailbox for MemMaildir {
    type Message = io::Cursor<Vec<u8>>;
    fn open(&mut self, name: &[u8]) -> io::Result<Self::Message> {
        let data = self.files.borrow().get(name).cloned();
        data.map(io::Cursor::new)
            .ok_or(io::ErrorKind::NotFound.into())
    }
    fn unlink(&mut self, name: &[u8]) -> io::Result<()> {
        let gone = self.files.borrow_mut().remove(name);
        gone.map(drop).ok_or(io::ErrorKind::NotFound.into())
    }
    fn rename(&mut self, from: &[u8], to: &[u8]) -> io::Result<()> {
        let mut f = self.files.borrow_mut();
        let d = f.remove(from).ok_or(io::ErrorKind::NotFound)?;
        f.insert(to.to_vec(), d);
        Ok(())
    }
}

/// POP3 command lines through qmail-popup's dialogue, then qmail-pop3d's. The first byte
/// picks qmail-popup's set-up (STLS offered, passwords in the clear) and the size of the
/// pieces the input is fed in; after STLS the dialogue goes on as if TLS had started;
/// after a login (or at the end of the input) the rest goes to qmail-pop3d over three
/// messages in memory. Checks: qmail-popup's replies are `+OK`/`-ERR` lines or CAPA's
/// list; a login carries no NUL and never happens before TLS unless allowed; without
/// QUIT qmail-pop3d changes nothing; every output ends in CR LF.
pub fn pop3(data: &[u8]) {
    use qmail_pop3::{Event, Pop3d, Popup, PopupConfig, Stls};
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(mode >> 3) + 1;
    let mut p = Popup::new(PopupConfig {
        timestamp: b"<1.2@fuzz.example>".to_vec(),
        stls: [Stls::NotConfigured, Stls::Broken, Stls::Offered][usize::from(mode & 3) % 3],
        plaintext_passwords: mode & 4 != 0,
    });
    p.greet();
    let mut at = 0;
    let mut tls = false;
    let mut out = p.take_output();
    while at < input.len() {
        let end = input.len().min(at + step);
        at += p.feed(&input[at..end]);
        out.extend(p.take_output());
        match p.take_event() {
            None => {}
            Some(Event::StartTls) => {
                tls = true;
                p.tls_started();
            }
            Some(Event::Login { user, pass }) => {
                assert!(tls || mode & 4 != 0, "a password before TLS");
                assert!(!user.contains(&0) && !pass.contains(&0));
                break;
            }
            Some(Event::Quit) => return,
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.ends_with("\r\n"), "{text:?}");
    for l in text.split_terminator("\r\n") {
        assert!(
            l.starts_with("+OK")
                || l.starts_with("-ERR")
                || ["TOP", "UIDL", "USER", "STLS", "."].contains(&l),
            "{l:?}"
        );
    }

    let md = MemMaildir::default();
    let mut entries = Vec::new();
    for (name, msg) in [
        (&b"new/1.a.fuzz"[..], &b"Subject: a\n\n.dot\nbody\n"[..]),
        (b"cur/2.b.fuzz:2,S", b"no header\r\nnor newline"),
        (b"new/3.c.fuzz", b""),
    ] {
        md.files.borrow_mut().insert(name.to_vec(), msg.to_vec());
        entries.push(qmail_pop3::Entry {
            name: name.to_vec(),
            size: msg.len() as u64,
        });
    }
    let before = md.files.borrow().clone();
    let mut s = Pop3d::new(md.clone(), entries);
    let mut out = s.take_output();
    while at < input.len() && !s.finished() {
        let end = input.len().min(at + step);
        at += s.feed(&input[at..end]);
        while s.sending() {
            let _ = s.send_more();
        }
        out.extend(s.take_output());
    }
    assert!(out.ends_with(b"\r\n"));
    if !input.windows(4).any(|w| w.eq_ignore_ascii_case(b"quit")) {
        assert!(
            *md.files.borrow() == before,
            "the Maildir changed without QUIT"
        );
    }
}

/// MTA-STS (qmail-remote): the `_mta-sts` TXT record, the policy body and the HTTPS
/// answer that carries it, read whole and, for the answer, as it grows; the first byte
/// chooses whether the connection has ended (and cleanly).
pub fn mtasts_policy(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    if let Ok(id) = qmail_remote::parse_sts_txt(&[input.to_vec()]) {
        assert!(!id.is_empty() && id.len() <= 32 && id.bytes().all(|c| c.is_ascii_alphanumeric()));
    }
    if let Ok(p) = qmail_remote::parse_sts_policy(input) {
        assert!(p.max_age <= 31_557_600);
        let again = qmail_remote::parse_sts_policy(p.to_text().as_bytes());
        assert_eq!(again.as_ref(), Ok(&p), "a policy survives its own text");
        for m in &p.mx {
            assert!(
                p.allows(
                    m.strip_prefix("*.")
                        .map_or(m.clone(), |h| format!("a.{h}"))
                        .as_str()
                )
            );
        }
    }
    let eof = match first % 3 {
        0 => None,
        1 => Some(true),
        _ => Some(false),
    };
    let step = usize::from(first / 3 % 64) + 1;
    let mut end = step.min(input.len());
    loop {
        match qmail_remote::parse_sts_response(&input[..end], eof.filter(|_| end == input.len())) {
            Ok(qmail_remote::StsResponse::Body(b)) => {
                assert!(b.len() <= 64 * 1024);
                break;
            }
            Ok(qmail_remote::StsResponse::Incomplete) if end < input.len() => {}
            _ => break,
        }
        end = (end + step).min(input.len());
    }
}

/// qmail-remote's reply parser, fed in pieces; keywords of every reply.
pub fn remote_reply(data: &[u8]) {
    let (replies, _) = qmail_remote::parse_replies(data);
    for r in &replies {
        let _ = r.num();
        let _ = r.keywords();
        let _ = r.has_keyword("STARTTLS");
    }
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 16) + 1;
    let mut p = qmail_remote::ReplyParser::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = step.min(rest.len());
        match p.feed(&rest[..n]) {
            Err(_) => return,
            Ok((used, _)) => {
                assert!(used <= n);
                if used == 0 {
                    rest = &rest[n..];
                } else {
                    rest = &rest[used..];
                }
            }
        }
    }
}

/// qmail-remote's TLSA records (DANE): the record data, and a certificate to match it
/// against (the first byte says how long the record is).
pub fn tlsa(data: &[u8]) {
    use qmail_remote::dane::{Tlsa, spki};
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (rdata, cert) = rest.split_at(usize::from(n).min(rest.len()));
    match Tlsa::parse(rdata) {
        Err(_) => assert!(rdata.len() < 4, "a record of 4 bytes or more parses"),
        Ok(t) => {
            assert_eq!(t.data.len() + 3, rdata.len());
            let _ = t.usable();
            let _ = t.to_string();
            let m = t.matches(cert);
            // The exact full-certificate record matches its own certificate only.
            if t.selector == 0 && t.mtype == 0 {
                assert_eq!(m, t.data == cert);
            }
        }
    }
    if let Some(k) = spki(cert) {
        assert!(k.len() <= cert.len() && cert.windows(k.len()).any(|w| w == k));
    }
}

/// qmail-inject's header reading: fields with small limits, each field's tokens (and
/// their unparsed form, which must parse again), address completion, quoting.
pub fn inject_header(data: &[u8]) {
    use control::rfc822::{HeaderBody, Limits};
    let limits = Limits {
        field: 4096,
        header: 16384,
        recipients: 100,
    };
    let rw = qmail_inject::Rewriter::new(b"host.example", b"example", b"plus.example")
        .expect("rewriter");
    let mut hb = HeaderBody::new(io::BufReader::new(data), limits);
    let mut n = 0;
    while let Ok(Some(f)) = hb.next_field() {
        n += 1;
        assert!(f.len() <= limits.field + 2, "field over its limit");
        let _ = control::rfc822::known_field(&f);
        let _ = control::rfc822::valid_field(&f);
        let value = f
            .iter()
            .position(|&c| c == b':')
            .map_or(&f[..], |i| &f[i + 1..]);
        if let Ok(mut toks) = control::rfc822::parse_tokens(value) {
            let text = control::rfc822::unparse_tokens(&toks, 78);
            let _ = control::rfc822::parse_tokens(&text);
            rw.rewrite(&mut toks);
        }
        let _ = control::quote2(value);
    }
    let _ = n;
    let mut body = Vec::new();
    let _ = hb.copy_body(&mut |b| {
        body.extend_from_slice(b);
        Ok(())
    });
    let _ = data.lines().count();
}

// ----------------------------------------------------------------- qmail-dkim

/// The Ed25519 key the dkim target signs with (RFC 8032's first test key, PKCS #8).
fn dkim_test_key() -> &'static dkim::SigningKey {
    static KEY: std::sync::OnceLock<dkim::SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&[7u8; 32]);
        dkim::SigningKey::from_pkcs8(&der).expect("test key")
    })
}

/// qmail-dkim's reading of a message: the first byte chooses the header limit (64 bytes
/// to 8 KiB); the rest is the message. It is spooled and split as qmail-dkim does (the
/// spool must get every byte as it came, the signed form no CR), each field canonicalised both ways (relaxed: one line,
/// CR LF at the end only), each address-list field read (domains without white space),
/// the body hashed in pieces (the same hash as at once), and a message with one From:
/// signed (the DKIM-Signature parses as one field, lines of at most 78 characters).
pub fn dkim_message(data: &[u8]) {
    use dkim::{BodyHasher, Canon, canonicalize_header};
    let Some((&first, msg)) = data.split_first() else {
        return;
    };
    let limit = 64usize << (first & 7);
    let mut spool = Vec::new();
    let read = qmail_dkim::read_message(msg, &mut spool, limit).expect("a slice reads");
    assert_eq!(spool, msg, "the spool holds the message");
    // The signed form: bare CRs made line ends, in pieces or at once.
    let mut conv = Vec::new();
    qmail_dkim::copy_converted(msg, &mut conv).expect("converts");
    assert!(!conv.contains(&b'\r'));
    let Ok(header) = read.header else {
        return;
    };
    // The body is what follows the header section and its empty line.
    let hlen = header.bytes().len();
    assert!(conv.starts_with(header.bytes()));
    let body = conv.get(hlen + 1..).unwrap_or_default();
    for piece in [1, 7, 4096] {
        let mut h = BodyHasher::new(Canon::Relaxed);
        for p in body.chunks(piece) {
            h.feed(p);
        }
        assert_eq!(h.finish().0, read.body_hash, "body hash depends on pieces");
    }
    for f in header.fields() {
        for c in [Canon::Simple, Canon::Relaxed] {
            let mut out = Vec::new();
            canonicalize_header(c, f.raw(), &mut out);
            assert!(out.ends_with(b"\r\n"));
            if c == Canon::Relaxed {
                let line = &out[..out.len() - 2];
                assert!(!line.contains(&b'\n') && !line.contains(&b'\t'));
            }
        }
        if ["from", "sender", "reply-to", "to", "cc"]
            .iter()
            .any(|n| f.is(n))
            && let Ok(boxes) = dkim::mailboxes(f.value())
        {
            for m in boxes {
                if let dkim::Domain::Name(d) = m.domain {
                    assert!(!d.is_empty() && !d.iter().any(|&c| c <= b' ' || c == 0x7f));
                }
            }
        }
    }
    let Ok(domain) = qmail_dkim::author_domain(&header) else {
        return;
    };
    let domain = if dkim::valid_name(&domain) && domain.len() <= 60 {
        domain
    } else {
        "example.com".to_string()
    };
    let signer = dkim::Signer {
        domain: &domain,
        selector: "sel",
        key: dkim_test_key(),
        time: 1,
        headers: dkim::DEFAULT_HEADERS,
    };
    let field = signer.sign(&header, &read.body_hash).expect("signs");
    assert!(field.lines().all(|l| l.len() <= 78), "{field}");
    let parsed = dkim::Header::parse(field.into_bytes()).expect("a field");
    assert_eq!(parsed.fields().count(), 1);
    assert_eq!(parsed.count("DKIM-Signature"), 1);
}

// ------------------------------------------------------------- QMQP and QMTP

/// A message sink for the QMQP and QMTP servers that checks what it is given.
struct Sink {
    from: bool,
    failed: bool,
}

impl qmail_smtpd::Message for Sink {
    fn pid(&self) -> u32 {
        1
    }
    fn put(&mut self, _: &[u8]) {
        assert!(!self.from, "message bytes after the envelope started");
    }
    fn fail(&mut self) {
        self.failed = true;
    }
    fn from(&mut self, s: &[u8]) {
        assert!(!self.from && s.len() < 1000 && !s.contains(&0));
        self.from = true;
    }
    fn to(&mut self, r: &[u8]) {
        assert!(self.from && !r.contains(&0));
    }
    fn close(self) -> Result<(), qmail_queue::QueueError> {
        assert!(self.from, "closed before the envelope");
        qmail_queue::QueueError::from_exit(if self.failed { 54 } else { 0 }, self.failed)
    }
}

/// Netstrings (a parsed one re-encodes to the bytes consumed, leading zeros aside), the
/// QMQP and QMTP servers on the same bytes (their answers are netstrings, their exits
/// netqmail's), and qmail-qmqpc's envelope and reply readers.
pub fn netstring(data: &[u8]) {
    use control::netstring::{self, Input, Parsed};
    let mut rest = data;
    while let Ok(Parsed::Done { content, rest: r }) = netstring::parse(rest, 1 << 20) {
        assert!(r.len() < rest.len());
        // Re-encoded, it takes the bytes consumed, less any leading zeros of the length.
        let zeros = rest.iter().take_while(|&&c| c == b'0').count();
        let zeros = if content.is_empty() { zeros - 1 } else { zeros };
        assert_eq!(
            netstring::encode(content).len() + r.len() + zeros,
            rest.len()
        );
        rest = r;
    }
    let mut i = Input::new(data, 7);
    i.set_budget(Some(data.len() as u64 / 2));
    while i.netstring(1 << 20).is_ok() {}
    let remote = qmail_smtpd::Remote {
        ip: b"10.0.0.1".to_vec(),
        host: b"unknown".to_vec(),
        info: None,
        local: b"hub".to_vec(),
    };
    let open = || {
        Ok(Sink {
            from: false,
            failed: false,
        })
    };
    let mut out = Vec::new();
    let mut input = Input::new(data, 64);
    match qmail_smtpd::qmqp_serve(&mut input, &mut out, &remote, open, || 0) {
        qmail_smtpd::QmqpOutcome::Replied(_) => {
            assert!(matches!(
                netstring::parse(&out, 1000),
                Ok(Parsed::Done { rest: b"", .. })
            ));
        }
        qmail_smtpd::QmqpOutcome::Exit(c) => {
            assert!([0, 100, 111].contains(&c.code()) && out.is_empty())
        }
    }
    let cfg = qmail_smtpd::QmtpConfig {
        databytes: 64,
        relayclient: None,
        rcpthosts: control::RcptHosts::from_entries(Some(["example.com"])),
    };
    let mut out = Vec::new();
    let mut input = Input::new(data, 64);
    let code = qmail_smtpd::qmtp_serve(&mut input, &mut out, &remote, &cfg, open, || 0);
    assert!([0, 100, 111].contains(&code.code()));
    let mut rest = &out[..];
    while !rest.is_empty() {
        match netstring::parse(rest, 1000) {
            Ok(Parsed::Done { rest: r, .. }) => rest = r,
            other => panic!("qmail-qmtpd wrote a broken answer: {other:?}"),
        }
    }
    let _ = qmail_remote::read_qmqp_envelope(&mut &data[..]);
    let _ = qmail_remote::scan_qmqp_reply(&mut &data[..]);
    for line in data.split(|&c| c == b'\n') {
        let _ = qmail_remote::parse_qmqp_server(line);
    }
}

/// What the mail readers' tools read from a message: qreceipt's
/// Notice-Requested-Upon-Delivery-To fields (the first line of the input is the address
/// looked for), the summary qbiff and maildirwatch show, maildir2mbox's `From_` line.
pub fn mail_notice(data: &[u8]) {
    use control::rfc822::{HeaderBody, Limits};
    let (target, msg) = match data.iter().position(|&c| c == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let limits = Limits {
        field: 4096,
        header: 16384,
        recipients: 100,
    };
    let mut hb = HeaderBody::new(io::BufReader::new(msg), limits);
    match qmail_local::receipt_request(&mut hb, target) {
        // Only that field asks for a notice.
        Ok(r) if r.wanted => {
            let lower = msg.to_ascii_lowercase();
            let name = b"notice-requested-upon-delivery-to";
            assert!(
                lower.windows(name.len()).any(|w| w == name),
                "a notice asked for without the field"
            );
        }
        Ok(r) => {
            if let Some(id) = r.message_id {
                assert!(id.ends_with(b"\n") && id.len() <= limits.field + 2);
            }
        }
        Err(qmail_local::ReceiptError::Unparsable(f)) => assert!(f.len() <= limits.field + 2),
        Err(_) => {}
    }
    for (cap, drain) in [(78, true), (158, false), (3, false)] {
        let s = qmail_local::summarize(msg, b"    ", cap, drain).expect("reading memory");
        assert!(s.text.len() <= cap, "text beyond its cap");
        let shown = qmail_local::printable(&s.text, b'/');
        assert!(shown.iter().all(|&c| (32..=126).contains(&c)));
        if let Some(f) = &s.from {
            assert!(
                f.len() >= 5 && f[..4].eq_ignore_ascii_case(b"from"),
                "not a From field"
            );
        }
    }
    let first = msg.split_inclusive(|&c| c == b'\n').next().unwrap_or(b"");
    let l = qmail_local::mbox_from_line(first, i64::from(data.len() as u32));
    assert!(l.starts_with(b"From ") && l.ends_with(b"\n"));
    assert_eq!(
        l.iter().filter(|&&c| c == b'\n').count(),
        1,
        "From_ line of one line"
    );
}

// ------------------------------------------------------------------------- SRS

/// SRS addresses (`srs::parse`, `Srs::reverse`, `srs::in_extension`) from the bytes, and
/// the bytes as a sender forwarded (`Srs::forward`): what reverses is made of the input;
/// every address made reverses (to the sender, or for SRS1 to the SRS0 address at the
/// first forwarder).
pub fn srs(data: &[u8]) {
    let s =
        srs::Srs::new(vec![b"fuzz secret".to_vec()], srs::Params::default()).expect("a rewriter");
    let now = 1_700_000_000;
    let parsed = srs::parse(data);
    assert!(parsed.is_err() || srs::tag(data).is_some());
    if let Ok(a) = s.reverse(data, now) {
        assert!(parsed.is_ok());
        assert!(a.len() < data.len(), "reversed {a:?} from {data:?}");
    }
    if let Some(x) = srs::in_extension(data) {
        assert!(srs::tag(x).is_some() && data.ends_with(x));
    }
    let Some(made) = s.forward(data, b"srs.example", now) else {
        return;
    };
    assert!(made.ends_with(b"@srs.example") && srs::tag(&made).is_some());
    let back = s
        .reverse_address(&made, now)
        .unwrap_or_else(|e| panic!("{made:?} made from {data:?} does not reverse: {e}"));
    let user = control::split_at_last_at(data).map_or(data, |(u, _)| u);
    match srs::tag(user) {
        // An SRS0 sender comes back as it was (its tag in capitals).
        Some(0) => {
            assert!(back[..4] == *b"SRS0" && back[4..] == data[4..]);
        }
        Some(_) => assert!(back == data || back.starts_with(b"SRS0")),
        None => assert_eq!(back, data),
    }
}

/// qmail-authverify's reading of a received message: where the header section ends, its
/// fields, the Authentication-Results fields that claim to be this host's (removed), and
/// mail-auth's parse of the message (DKIM-Signature fields, From:) in its wire form; the
/// first line of the input is the authserv-id, and the input's lines are also read as
/// control/authreject and as `RQMAIL_NAMESERVERS`. The fields cover the header section
/// exactly; stripping keeps every other field in order and is idempotent; the wire form
/// has no bare LF.
pub fn auth_results(data: &[u8]) {
    let (id, msg) = match data.iter().position(|&c| c == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"mx.example"[..], data),
    };
    let hlen = qmail_authverify::header_len(msg);
    assert!(hlen <= msg.len());
    let header = &msg[..hlen];
    let fields = qmail_authverify::header_fields(header);
    let joined: Vec<u8> = fields
        .iter()
        .flat_map(|r| header[r.clone()].to_vec())
        .collect();
    assert_eq!(joined, header, "the fields cover the header section");
    let (kept, removed) = qmail_authverify::strip_results(header, id);
    assert!(removed <= fields.len());
    let want: Vec<u8> = fields
        .iter()
        .map(|r| &header[r.clone()])
        .filter(|f| !qmail_authverify::authserv_id(f).is_some_and(|a| a.eq_ignore_ascii_case(id)))
        .flatten()
        .copied()
        .collect();
    assert_eq!(kept, want);
    // Removing whole fields never joins two others: a second pass finds nothing.
    let (again, n) = qmail_authverify::strip_results(&kept, id);
    assert_eq!((n, again), (0, kept));
    let wire = qmail_authverify::to_crlf(msg);
    for (i, &c) in wire.iter().enumerate() {
        if c == b'\n' {
            assert!(i > 0 && wire[i - 1] == b'\r', "bare LF in the wire form");
        }
    }
    // Each signature, good or malformed, is one of the fields read.
    if let Some((headers, sigs, errors)) = qmail_authverify::parse_counts(msg) {
        assert!(sigs + errors <= headers, "{sigs} + {errors} > {headers}");
    }
    let lines: Vec<Vec<u8>> = data.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
    let _ = qmail_authverify::Reject::parse(&lines);
    let _ = qmail_authverify::parse_nameservers(&String::from_utf8_lossy(data));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The fuzz/ directory of the repository.
    fn fuzz_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    /// Every committed seed and every regression input of every target, through the
    /// target on stable Rust.
    #[test]
    fn corpora_and_regressions_replay() {
        let mut total = 0;
        for (name, f) in TARGETS {
            let mut n = 0;
            for dir in ["corpus", "regressions"] {
                let d = fuzz_dir().join(dir).join(name);
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in rd.flatten() {
                    let data = std::fs::read(e.path()).expect("read input");
                    f(&data);
                    n += 1;
                }
            }
            assert!(n > 0, "no seed corpus for {name} in fuzz/corpus/{name}");
            total += n;
        }
        assert!(total >= TARGETS.len());
    }

    /// Every target has a cargo-fuzz target file.
    #[test]
    fn every_target_is_a_fuzz_target() {
        for (name, _) in TARGETS {
            let p = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
            assert!(p.exists(), "{} is missing", p.display());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn random_inputs_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            for (_, f) in TARGETS {
                f(&data);
            }
        }

        #[test]
        fn smtp_like_inputs_never_relay(
            mode in 0u8..=255,
            words in proptest::collection::vec(proptest::sample::select(vec![
                "HELO x\r\n", "EHLO x\r\n", "MAIL FROM:<a@b>\r\n", "MAIL FROM:<bad@evil.example>\r\n",
                "RCPT TO:<u@fuzz.example>\r\n", "RCPT TO:<u@evil.example>\r\n",
                "RCPT TO:<@fuzz.example:u@evil.example>\r\n", "RCPT TO:<u%evil.example@fuzz.example>\r\n",
                "RCPT TO:<\"u@evil\"@sub.example>\r\n", "RCPT TO:<u@x.sub.example>\r\n",
                "RCPT TO:<u@[127.0.0.1]>\r\n", "RCPT TO:<u@evil.example\0@fuzz.example>\r\n",
                "DATA\r\n", "x\r\n", ".\r\n", "\r\n.\r\n", "\n.\n", "RSET\r\n", "NOOP\r\n", "QUIT\r\n",
                "STARTTLS\r\n", "AUTH PLAIN\r\n", "\0", "\r", "\n",
            ]), 0..40),
        ) {
            let mut data = vec![mode];
            for w in words {
                data.extend_from_slice(w.as_bytes());
            }
            smtp_session(&data);
        }
    }
}
