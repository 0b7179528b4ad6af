//! qmail-authverify: SPF, DKIM and DMARC checked on receipt. SMTP sessions (swaks) go
//! through the real qmail-smtpd under tcpserver with `QMAILQUEUE` naming
//! qmail-authverify, which asks a real DNS server, dnsmasq from Debian, that each test
//! starts on 127.0.0.1 with the SPF, DKIM and DMARC records it writes
//! (`RQMAIL_NAMESERVERS` points qmail-authverify at it; nothing of the host's DNS is
//! used). Messages are signed by an independent signer, python3-dkim's `dkimsign` with
//! keys from its `dknewkey`, and by rqmail's own qmail-dkim. The tests look at the
//! Authentication-Results field of the queued message, at the reply to the end of DATA
//! (550 for a policy refusal, 451 when DNS fails) and at the queue (a refused message is
//! not queued, an accepted one is, whole).

use rqmail_tests::net::free_port;
use rqmail_tests::{Home, KillOnDrop, bin, is_root, tool};
use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ keys and signing

/// Keys made once per test process with python3-dkim's dknewkey.
struct Keys {
    dir: PathBuf,
    /// The TXT record of `rsa.key` (RSA-SHA256) and of `ed.key` (Ed25519).
    rsa: String,
    ed: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("authverify-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir keys");
        for (name, kind) in [("rsa", "rsa"), ("ed", "ed25519")] {
            let out = Command::new(tool("dknewkey"))
                .args(["--ktype", kind, name])
                .current_dir(&d)
                .output()
                .expect("dknewkey");
            assert!(
                out.status.success(),
                "dknewkey: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for e in fs::read_dir(&d).expect("keys").flatten() {
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o644));
        }
        let rec = |n: &str| {
            fs::read_to_string(d.join(format!("{n}.dns")))
                .expect("dns record")
                .trim()
                .to_string()
        };
        Keys {
            rsa: rec("rsa"),
            ed: rec("ed"),
            dir: d,
        }
    })
}

/// The message signed by dkimsign (python3-dkim) for `domain` with `selector` and the
/// RSA key (or the Ed25519 key when `ed`).
fn dkimsign(msg: &str, selector: &str, domain: &str, ed: bool) -> String {
    let k = keys();
    let mut c = Command::new(tool("dkimsign"));
    if ed {
        c.args(["--signalg", "ed25519-sha256"]);
    }
    let key = k.dir.join(if ed { "ed.key" } else { "rsa.key" });
    let (code, out, err) = rqmail_tests::run_with_input(
        {
            c.arg(selector).arg(domain).arg(&key);
            c
        },
        msg.as_bytes(),
    );
    assert_eq!(code, 0, "dkimsign: {}", String::from_utf8_lossy(&err));
    String::from_utf8(out).expect("text")
}

/// The message signed by rqmail's qmail-dkim (RSA, selector `q1`, for example.com): run
/// as a trusted sender's queue front end with a queue program that keeps what it gets.
fn qmail_dkim_sign(msg: &str) -> String {
    let k = keys();
    let h = Home::new();
    fs::create_dir_all(h.path().join("control/dkim")).expect("mkdir");
    fs::copy(k.dir.join("rsa.key"), h.path().join("control/dkim/q1.key")).expect("copy");
    h.control("dkimkeys", "example.com:q1:control/dkim/q1.key\n");
    let out = h.path().join("signed");
    let keep = h.path().join("keep");
    fs::write(
        &keep,
        format!("#!/bin/sh\ncat > {}\ncat <&1 >/dev/null\n", out.display()),
    )
    .expect("write");
    fs::set_permissions(&keep, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut c = h.cmd("qmail-dkim");
    c.env("RELAYCLIENT", "").env("DKIMQUEUE", &keep);
    let (code, _, err) = rqmail_tests::queue::run_as_queue(
        c,
        msg.as_bytes(),
        b"Falice@example.com\0Tbob@testhost.example\0\0",
    );
    assert_eq!(code, 0, "qmail-dkim: {}", String::from_utf8_lossy(&err));
    let signed = fs::read_to_string(&out).expect("signed");
    assert!(signed.starts_with("DKIM-Signature:"), "{signed}");
    signed
}

// ------------------------------------------------------------------ DNS

/// dnsmasq on 127.0.0.1 serving `records` (name, TXT text) as the only data under the
/// top-level domains `com` and `example` (every other name there does not exist); names
/// under `servfail.example` are forwarded to a server that is not there. Returns the
/// server and its port.
fn dnsmasq(records: &[(&str, &str)]) -> (KillOnDrop, u16) {
    let port = free_port();
    let dir = rqmail_tests::home::scratch("authverify-dns-");
    let mut c = Command::new(tool("dnsmasq"));
    c.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--log-facility=-",
        "--pid-file=",
    ])
    .arg(format!("--port={port}"))
    // A dead upstream for servfail.example: the closed port answers nothing useful.
    .arg(format!(
        "--server=/servfail.example/127.0.0.1#{}",
        free_port()
    ));
    if is_root() {
        c.args(["--user=nobody", "--group=nogroup"]);
    } else {
        let me = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default();
        c.arg(format!("--user={me}"));
    }
    // DMARC's tree walk (RFC 9989) asks up to the top-level domain.
    c.args(["--local=/com/", "--local=/example/"]);
    for (name, txt) in records {
        c.arg(format!("--txt-record={name},{txt}"));
    }
    c.current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let k = KillOnDrop(c.spawn().expect("start dnsmasq"));
    rqmail_tests::net::wait_for_port(port);
    (k, port)
}

/// The records of example.com: SPF allowing 127.0.0.1, the two DKIM keys (selectors
/// rsa and ed; q1 for qmail-dkim's signatures), DMARC p=reject.
fn example_records(k: &Keys) -> Vec<(&'static str, String)> {
    vec![
        ("example.com", "v=spf1 ip4:127.0.0.1 -all".to_string()),
        (
            "client.example.com",
            "v=spf1 a:client.example.com ip4:127.0.0.0/8 -all".to_string(),
        ),
        ("rsa._domainkey.example.com", k.rsa.clone()),
        ("ed._domainkey.example.com", k.ed.clone()),
        ("q1._domainkey.example.com", k.rsa.clone()),
        ("_dmarc.example.com", "v=DMARC1; p=reject".to_string()),
        // A domain whose SPF refuses everyone and whose DMARC policy is reject.
        ("forged.example", "v=spf1 -all".to_string()),
        ("_dmarc.forged.example", "v=DMARC1; p=reject".to_string()),
        // Broken and hostile records.
        (
            "broken.example",
            "v=spf1 ip4:not-an-address -all".to_string(),
        ),
        (
            "loop.example",
            "v=spf1 include:loop.example -all".to_string(),
        ),
        (
            "bad._domainkey.example.com",
            "v=DKIM1; k=rsa; p=!!!not base64".to_string(),
        ),
    ]
}

// ------------------------------------------------------------------ SMTP

/// qmail-smtpd under tcpserver with qmail-authverify as its queue program, asking DNS at
/// `dns_port`.
fn smtpd(h: &Home, dns: &str) -> (KillOnDrop, u16) {
    let av = bin("qmail-authverify");
    let av = av.display().to_string();
    let env = [("QMAILQUEUE", av.as_str()), ("RQMAIL_NAMESERVERS", dns)];
    let smtpd = bin("qmail-smtpd");
    rqmail_tests::tcpserver(h, &env, &[&smtpd])
}

/// One SMTP transaction with swaks: the whole dialogue it printed.
fn send(port: u16, helo: &str, from: &str, msg: &str) -> String {
    let dir = rqmail_tests::home::scratch("authverify-msg-");
    let f = dir.path().join("msg");
    fs::write(&f, msg.replace('\n', "\r\n")).expect("write");
    let out = Command::new(tool("swaks"))
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--ehlo", helo, "--to", "bob@testhost.example"])
        .args(["--from", from])
        .args(["--timeout", "120", "--data"])
        .arg(&f)
        .stdin(Stdio::null())
        .output()
        .expect("swaks");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The reply swaks got to the end of DATA (the line after the dot).
fn data_reply(dialogue: &str) -> String {
    let mut lines = dialogue.lines();
    while let Some(l) = lines.next() {
        if l.trim_end() == " -> ." {
            return lines
                .next()
                .unwrap_or("")
                .trim_start_matches("<** ")
                .trim_start_matches("<- ")
                .trim()
                .to_string();
        }
    }
    panic!("no end of DATA in {dialogue}");
}

/// The queued messages' texts.
fn queued(h: &Home) -> Vec<String> {
    h.queued()
        .iter()
        .map(|q| String::from_utf8_lossy(q.body_after_received()).into_owned())
        .collect()
}

/// The one queued message with this subject.
fn queued_with(h: &Home, subject: &str) -> String {
    let want = format!("\nSubject: {subject}\n");
    let mut m: Vec<String> = queued(h)
        .into_iter()
        .filter(|t| t.contains(&want))
        .collect();
    assert_eq!(m.len(), 1, "messages with subject {subject}: {m:#?}");
    m.remove(0)
}

/// The Authentication-Results field at the top of a queued message (unfolded).
fn results(msg: &str) -> String {
    assert!(
        msg.starts_with("Authentication-Results: testhost.example;"),
        "no field on top: {msg}"
    );
    let mut out = String::new();
    for (i, l) in msg.lines().enumerate() {
        if i > 0 && !l.starts_with([' ', '\t']) {
            break;
        }
        out.push_str(l.trim());
        out.push(' ');
    }
    out
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: Alice <{from}>\nTo: bob@testhost.example\nSubject: {subject}\n\
         Date: Sun, 06 Dec 2026 10:00:00 +0000\nMessage-ID: <{subject}@example.com>\n\n\
         Hello Bob,\n\nthis is a test.  \n"
    )
}

fn contains_all(field: &str, want: &[&str]) {
    for w in want {
        assert!(field.contains(w), "{w:?} not in {field}");
    }
}

// ------------------------------------------------------------------ the tests

#[test]
fn signed_mail_passes_and_the_results_are_recorded() {
    let k = keys();
    let recs = example_records(k);
    let r: Vec<(&str, &str)> = recs.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (_dns, dport) = dnsmasq(&r);
    let h = Home::new();
    h.control("rcpthosts", "testhost.example\n");
    let (_srv, port) = smtpd(&h, &format!("127.0.0.1:{dport}"));

    // python3-dkim: RSA and Ed25519, and a forged field in our name that must go.
    let plain = message("alice@example.com", "dkimpy");
    let forged = format!(
        "Authentication-Results: testhost.example; dkim=pass header.d=example.com\n{plain}"
    );
    let signed = dkimsign(
        &dkimsign(&forged, "rsa", "example.com", false),
        "ed",
        "example.com",
        true,
    );
    let d = send(port, "client.example.com", "alice@example.com", &signed);
    assert!(data_reply(&d).starts_with("250 ok"), "{d}");
    // rqmail's qmail-dkim.
    let signed = qmail_dkim_sign(&message("alice@example.com", "qmaildkim"));
    let d = send(port, "client.example.com", "alice@example.com", &signed);
    assert!(data_reply(&d).starts_with("250 ok"), "{d}");
    // Unsigned, SPF alone aligns; a bounce (null sender) is checked through the HELO name.
    let d = send(
        port,
        "client.example.com",
        "alice@example.com",
        &message("alice@example.com", "unsigned"),
    );
    assert!(data_reply(&d).starts_with("250 ok"), "{d}");
    let d = send(
        port,
        "client.example.com",
        "<>",
        &message("alice@example.com", "bounce"),
    );
    assert!(data_reply(&d).starts_with("250 ok"), "{d}");

    assert_eq!(queued(&h).len(), 4);
    let m = queued_with(&h, "dkimpy");
    contains_all(
        &results(&m),
        &[
            "dkim=pass header.i=@example.com header.s=rsa",
            "dkim=pass header.i=@example.com header.s=ed",
            "spf=pass",
            "smtp.helo=client.example.com",
            "smtp.mailfrom=alice@example.com",
            "dmarc=pass header.from=example.com policy.dmarc=reject",
        ],
    );
    assert_eq!(
        m.matches("Authentication-Results:").count(),
        1,
        "the forged field was not removed: {m}"
    );
    assert!(m.contains("\n\nHello Bob,\n\nthis is a test."), "{m}");
    contains_all(
        &results(&queued_with(&h, "qmaildkim")),
        &["dkim=pass header.d=example.com header.s=q1", "dmarc=pass"],
    );
    contains_all(
        &results(&queued_with(&h, "unsigned")),
        &["dkim=none", "spf=pass", "dmarc=pass"],
    );
    contains_all(
        &results(&queued_with(&h, "bounce")),
        &["smtp.mailfrom=<>", "spf=pass", "dmarc=pass"],
    );
}

#[test]
fn dmarc_reject_and_spf_fail_are_recorded_or_refused_as_control_authreject_says() {
    let k = keys();
    let recs = example_records(k);
    let r: Vec<(&str, &str)> = recs.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (_dns, dport) = dnsmasq(&r);
    let h = Home::new();
    h.control("rcpthosts", "testhost.example\n");
    let (_srv, port) = smtpd(&h, &format!("127.0.0.1:{dport}"));
    let forged = message("ceo@forged.example", "forged");

    // Record only (no control/authreject): accepted, with the failures on record.
    let d = send(port, "client.example.com", "ceo@forged.example", &forged);
    assert!(data_reply(&d).starts_with("250 ok"), "{d}");
    assert_eq!(queued(&h).len(), 1);
    contains_all(
        &results(&queued_with(&h, "forged")),
        &[
            "spf=fail",
            "dmarc=fail header.from=forged.example policy.dmarc=reject",
        ],
    );

    // dmarc: refused at the end of DATA with 550, nothing queued.
    h.control("authreject", "dmarc\n");
    let d = send(port, "client.example.com", "ceo@forged.example", &forged);
    let reply = data_reply(&d);
    assert!(
        reply.starts_with("550 5.7.1 message rejected by the DMARC policy of forged.example"),
        "{d}"
    );
    // A signature by another domain does not make it pass (not aligned).
    let other = dkimsign(&forged, "rsa", "example.com", false);
    let d = send(port, "client.example.com", "alice@example.com", &other);
    assert!(data_reply(&d).starts_with("550 5.7.1 "), "{d}");
    // Good mail still goes through.
    let d = send(
        port,
        "client.example.com",
        "alice@example.com",
        &message("alice@example.com", "good"),
    );
    assert!(data_reply(&d).starts_with("250 ok"), "{d}");
    assert_eq!(queued(&h).len(), 2);

    // spf: an envelope sender whose SPF fails, with an aligned-looking From: of a
    // domain without DMARC.
    h.control("authreject", "spf\n");
    let d = send(
        port,
        "client.example.com",
        "x@forged.example",
        &message("x@nodmarc.example", "spf"),
    );
    assert!(
        data_reply(&d).starts_with("550 5.7.23 SPF of forged.example"),
        "{d}"
    );
    // Without the word, the same is accepted.
    h.control("authreject", "# nothing\n");
    let d = send(
        port,
        "client.example.com",
        "x@forged.example",
        &message("x@nodmarc.example", "spf2"),
    );
    assert!(data_reply(&d).starts_with("250 ok"), "{d}");
    assert_eq!(queued(&h).len(), 3);

    // A control file that cannot be understood is a temporary failure.
    h.control("authreject", "quarantine\n");
    let d = send(
        port,
        "client.example.com",
        "alice@example.com",
        &message("alice@example.com", "conf"),
    );
    assert!(data_reply(&d).starts_with("451 "), "{d}");
    assert_eq!(queued(&h).len(), 3);
}

#[test]
fn dns_failures_are_temporary_never_a_pass() {
    let k = keys();
    let recs = example_records(k);
    let r: Vec<(&str, &str)> = recs.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (_dns, dport) = dnsmasq(&r);
    let h = Home::new();
    h.control("rcpthosts", "testhost.example\n");
    let (_srv, port) = smtpd(&h, &format!("127.0.0.1:{dport}"));
    // SERVFAIL for the sender's domain: 451 whatever control/authreject says.
    let d = send(
        port,
        "client.example.com",
        "a@servfail.example",
        &message("a@servfail.example", "servfail"),
    );
    let reply = data_reply(&d);
    assert!(
        reply.starts_with("451 4.4.3 SPF of servfail.example"),
        "{d}"
    );
    assert!(queued(&h).is_empty());

    // A server that never answers: the lookups time out, 451 again.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let h2 = Home::new();
    h2.control("rcpthosts", "testhost.example\n");
    let (_srv2, port2) = smtpd(&h2, &addr.to_string());
    let t = Instant::now();
    let d = send(
        port2,
        "client.example.com",
        "alice@example.com",
        &message("alice@example.com", "timeout"),
    );
    assert!(data_reply(&d).starts_with("451 "), "{d}");
    assert!(t.elapsed() < Duration::from_secs(110));
    assert!(queued(&h2).is_empty());
    drop(silent);
}

#[test]
fn hostile_records_and_signatures_get_their_results_and_the_mail_is_kept() {
    let k = keys();
    let mut recs = example_records(k);
    // An SPF record of ten includes of ten includes: past RFC 7208's ten lookups.
    let wide: String = (0..10)
        .map(|i| format!(" include:w{i}.wide.example"))
        .collect();
    recs.push(("wide.example", format!("v=spf1{wide} -all")));
    let subs: Vec<(String, String)> = (0..10)
        .map(|i| {
            (
                format!("w{i}.wide.example"),
                format!("v=spf1 a:a{i}.wide.example ip4:192.0.2.{i} -all"),
            )
        })
        .collect();
    // A record longer than one TXT string, still valid syntax (many ip4 terms).
    let long: String = (0..60).map(|i| format!(" ip4:198.51.100.{i}")).collect();
    recs.push(("long.example", format!("v=spf1{long} -all")));
    // Three `a` terms naming hosts that do not exist: past RFC 7208's two void lookups
    // (without the limit the result would be fail); two are still within it.
    recs.push((
        "void.example",
        "v=spf1 a:n1.void.example a:n2.void.example a:n3.void.example -all".to_string(),
    ));
    recs.push((
        "void2.example",
        "v=spf1 a:n1.void2.example a:n2.void2.example -all".to_string(),
    ));
    let mut r: Vec<(&str, &str)> = recs.iter().map(|(n, t)| (*n, t.as_str())).collect();
    r.extend(subs.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    let (_dns, dport) = dnsmasq(&r);
    let h = Home::new();
    h.control("rcpthosts", "testhost.example\n");
    h.control("authreject", "dmarc\nspf\n");
    let (_srv, port) = smtpd(&h, &format!("127.0.0.1:{dport}"));

    // The From: domain has no DMARC record: only SPF decides.
    let cases = [
        ("a@broken.example", "broken", "spf=permerror"),
        ("a@loop.example", "loop", "spf=permerror"),
        ("a@wide.example", "wide", "spf=permerror"),
        ("a@void.example", "void", "spf=permerror"),
        ("a@long.example", "long", "spf=fail"),
        ("a@void2.example", "void2", "spf=fail"),
    ];
    for (from, subject, want) in cases {
        let d = send(
            port,
            "client.example.com",
            from,
            &message("x@nodmarc.example", subject),
        );
        // SPF fail refuses (control/authreject has spf); a permerror is recorded.
        if want == "spf=fail" {
            assert!(data_reply(&d).starts_with("550 5.7.23 "), "{from}: {d}");
            continue;
        }
        assert!(data_reply(&d).starts_with("250 ok"), "{from}: {d}");
        let f = results(&queued_with(&h, subject));
        let mf = f
            .split(';')
            .find(|p| p.contains("smtp.mailfrom"))
            .unwrap_or_default();
        assert!(mf.contains(want), "{from}: {want} not in {f}");
    }
    assert_eq!(queued(&h).len(), 4);

    // Malformed DKIM-Signature fields, a body changed after signing, and a key record
    // that is not base64.
    let bad = [
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa; b=;\n".to_string(),
        "DKIM-Signature: garbage without tags\n".to_string(),
        format!(
            "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa; h=from; bh={}; b=AAAA\n",
            "x".repeat(5000)
        ),
    ];
    let mut all: Vec<(String, String)> = Vec::new();
    for (i, b) in bad.iter().enumerate() {
        let subject = format!("baddkim{i}");
        all.push((
            subject.clone(),
            format!("{b}{}", message("alice@example.com", &subject)),
        ));
    }
    let good = dkimsign(
        &message("alice@example.com", "tampered"),
        "rsa",
        "example.com",
        false,
    );
    all.push((
        "tampered".into(),
        good.replace("this is a test.", "this is a forgery."),
    ));
    let badkey = dkimsign(
        &message("alice@example.com", "badkey"),
        "bad",
        "example.com",
        false,
    );
    all.push(("badkey".into(), badkey));
    for (subject, m) in &all {
        let d = send(port, "client.example.com", "alice@example.com", m);
        // SPF passes and aligns: DMARC passes, the message is queued, whole.
        assert!(data_reply(&d).starts_with("250 ok"), "{d}");
        let q = queued_with(&h, subject);
        let f = results(&q);
        assert!(!f.contains("dkim=pass"), "a broken signature passed: {f}");
        assert!(f.contains("dkim=") && f.contains("dmarc=pass"), "{f}");
        assert!(q.contains("\n\nHello Bob,"), "{q}");
    }
    assert_eq!(queued(&h).len(), 4 + all.len());
}
