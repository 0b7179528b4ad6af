//! SMTPUTF8 (RFC 6531) and internationalized domain names, end to end: qmail-smtpd under
//! tcpserver with Python's smtplib (which speaks SMTPUTF8) and swaks; qmail-remote
//! against the fake SMTP server offering SMTPUTF8 or not, with dnsmasq (a real DNS
//! server started by the test) answering for A-labels only; and the whole way from
//! smtplib through qmail-smtpd, qmail-send and qmail-local into a Maildir of a UTF-8
//! address and through qmail-remote to a server.

use rqmail_tests::home::{mail_home, maildir_messages};
use rqmail_tests::single::{System, wait_until};
use rqmail_tests::smtp_peer::SmtpServer;
use rqmail_tests::{
    Home, KillOnDrop, Smtp, free_port, is_root, python, run_with_input, tcpserver_opts, tool,
    wait_for_port,
};
use std::fs;
use std::process::{Command, Stdio};

/// The fake SMTP server's transcripts hold each command line decoded as Latin-1: `s` as
/// it appears there.
fn latin1(s: &str) -> String {
    s.bytes().map(char::from).collect()
}

/// qmail-smtpd of `home` under tcpserver with `env`; as the single-user runner when
/// `runner` (a home that runner owns), else as whoever runs the tests.
fn smtpd(home: &Home, env: &[(&str, &str)], runner: bool) -> (KillOnDrop, u16) {
    let (u, g) = rqmail_tests::single::runner_ids();
    let (u, g) = (u.to_string(), g.to_string());
    let opts: Vec<&str> = if runner && is_root() {
        vec!["-u", &u, "-g", &g]
    } else {
        vec![]
    };
    let p = home.path().join("bin/qmail-smtpd");
    tcpserver_opts(home, env, &opts, &[&p])
}

/// Runs the Python `script` with the port as its argument; returns its output lines.
fn smtplib(script: &str, port: u16) -> Vec<String> {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_string).collect()
}

const SMTPLIB_UTF8: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.example", timeout=30)
code, msg = s.ehlo()
print(code, msg.decode().replace("\n", "|"))
print(s.has_extn("smtputf8"))
msg = "From: Grå <grå@client.example>\r\nTo: δοκιμή@παράδειγμα.test\r\nSubject: Grüße\r\n\r\nHej då\r\n".encode()
print("refused", s.sendmail("grå@client.example", ["δοκιμή@παράδειγμα.test", "u@xn--bcher-kva.test", "plain@testhost.example"], msg, mail_options=["SMTPUTF8"]))
print(s.quit())
"#;

#[test]
fn smtplib_sends_with_smtputf8_through_tcpserver() {
    let home = Home::new();
    home.control("smtputf8", "1\n");
    // rcpthosts in both forms: the U-label entry matches the A-label recipient and the
    // other way round.
    home.control(
        "rcpthosts",
        "testhost.example\nxn--hxajbheg2az3al.test\nbücher.test\n",
    );
    let (_server, port) = smtpd(&home, &[], false);
    let lines = smtplib(SMTPLIB_UTF8, port);
    assert_eq!(
        lines[0],
        "250 testhost.example|PIPELINING|8BITMIME|SMTPUTF8"
    );
    assert_eq!(lines[1], "True");
    assert_eq!(lines[2], "refused {}");
    let q = home.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender(), "grå@client.example".as_bytes());
    assert_eq!(
        q[0].recipients(),
        vec![
            "δοκιμή@παράδειγμα.test".as_bytes().to_vec(),
            b"u@xn--bcher-kva.test".to_vec(),
            b"plain@testhost.example".to_vec()
        ]
    );
    let body = String::from_utf8(q[0].body_after_received().to_vec()).expect("utf8");
    assert!(
        body.starts_with(
            "Received: from unknown (HELO client.example) (127.0.0.1)\n  by testhost.example with UTF8SMTP; "
        ),
        "{body}"
    );
    assert!(body.ends_with("\nSubject: Grüße\n\nHej då\n"), "{body}");

    // Without the parameter: 553 with 5.6.7, for MAIL and for RCPT (raw bytes: smtplib
    // will not send them without SMTPUTF8).
    let mut c = Smtp::connect(port);
    c.reply();
    c.cmd("EHLO client.example");
    assert_eq!(
        c.cmd("MAIL FROM:<grå@client.example>"),
        ["553 sorry, a non-ASCII address needs the SMTPUTF8 parameter on MAIL (#5.6.7)"]
    );
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>"), ["250 ok"]);
    assert_eq!(
        c.cmd("RCPT TO:<ü@testhost.example>"),
        ["553 sorry, a non-ASCII address needs the SMTPUTF8 parameter on MAIL (#5.6.7)"]
    );
    c.send(b"RCPT TO:<\xfc@testhost.example>\r\n");
    assert_eq!(c.reply().len(), 1);
    assert_eq!(c.cmd("MAIL FROM:<> SMTPUTF8"), ["250 ok"]);
    c.send(b"RCPT TO:<\xfc@testhost.example>\r\n");
    assert_eq!(
        c.reply(),
        ["553 sorry, that recipient address is not valid UTF-8 (#5.1.3)"]
    );
    assert_eq!(c.cmd("RCPT TO:<ü@bücher.test>"), ["250 ok"]);
    assert_eq!(
        c.cmd("RCPT TO:<ü@elsewhere.test>"),
        ["553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"]
    );
    assert_eq!(c.cmd("QUIT"), ["221 testhost.example"]);

    // swaks, which knows nothing of SMTPUTF8, gets the same refusal.
    let out = Command::new(tool("swaks"))
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--helo", "client.example", "--from", "a@client.example"])
        .args(["--to", "ü@testhost.example"])
        .output()
        .expect("swaks");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "<** 553 sorry, a non-ASCII address needs the SMTPUTF8 parameter on MAIL (#5.6.7)"
        ),
        "{text}"
    );
    assert!(!out.status.success());
    assert_eq!(home.queued().len(), 1);
}

#[test]
fn without_control_smtputf8_nothing_changes() {
    let home = Home::new();
    home.control("rcpthosts", "testhost.example\nxn--bcher-kva.test\n");
    let (_server, port) = smtpd(&home, &[], false);
    let mut c = Smtp::connect(port);
    c.reply();
    assert_eq!(
        c.cmd("EHLO client.example"),
        ["250-testhost.example", "250-PIPELINING", "250 8BITMIME"]
    );
    // netqmail: every parameter ignored, addresses byte for byte, rcpthosts byte for byte.
    assert_eq!(c.cmd("MAIL FROM:<grå@client.example> SMTPUTF8"), ["250 ok"]);
    assert_eq!(c.cmd("RCPT TO:<ü@testhost.example>"), ["250 ok"]);
    assert_eq!(
        c.cmd("RCPT TO:<u@bücher.test>"),
        ["553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"]
    );
    assert_eq!(c.cmd("DATA"), ["354 go ahead"]);
    assert_eq!(c.cmd("x\r\n.")[0][..6], *"250 ok");
    c.cmd("QUIT");
    let q = home.queued();
    assert_eq!(
        q[0].recipients(),
        vec!["ü@testhost.example".as_bytes().to_vec()]
    );
    let body = String::from_utf8_lossy(q[0].body_after_received()).into_owned();
    assert!(
        body.contains("\n  by testhost.example with SMTP; "),
        "{body}"
    );
}

// ------------------------------------------------------------------ qmail-remote

/// dnsmasq on a free port of 127.0.0.1, authoritative for `.test` with `records`
/// (dnsmasq options), logging its queries. Killed when dropped.
struct Dnsmasq {
    _proc: KillOnDrop,
    dir: tempfile::TempDir,
    port: u16,
}

impl Dnsmasq {
    fn start(records: &[String]) -> Dnsmasq {
        let dir = rqmail_tests::home::scratch("rqmail-utf8-dns-");
        let log = fs::File::create(dir.path().join("log")).expect("log");
        let port = free_port();
        let mut c = Command::new(tool("dnsmasq"));
        c.args(["--no-daemon", "--no-resolv", "--no-hosts", "--log-queries"])
            .args(["--log-facility=-", "--bind-interfaces"])
            .args(["--listen-address=127.0.0.1", "--local=/test/"])
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if is_root() {
            c.args(["--user=nobody", "--group=nogroup"]);
        }
        let child = c.spawn().expect("start dnsmasq");
        let k = KillOnDrop(child);
        wait_for_port(port);
        Dnsmasq {
            _proc: k,
            dir,
            port,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The names asked for, as dnsmasq logged them (`query[MX] name from ...`).
    fn queries(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("log"))
            .expect("log")
            .lines()
            .filter_map(|l| l.split_once("query[").map(|(_, q)| q.to_string()))
            .collect()
    }
}

/// Runs qmail-remote with the message in a file (seekable, as qmail-rspawn gives it);
/// returns the reports (letter and text).
fn remote(h: &Home, dns: &str, args: &[&str], msg: &[u8]) -> Vec<(char, String)> {
    let p = h.path().join("message");
    fs::write(&p, msg).expect("message");
    let out = h
        .cmd("qmail-remote")
        .args(args)
        .env("RQMAIL_NAMESERVERS", dns)
        .stdin(fs::File::open(&p).expect("open"))
        .output()
        .expect("run qmail-remote");
    assert_eq!(out.status.code(), Some(0));
    let o = &out.stdout;
    assert_eq!(o.last(), Some(&0), "{o:?}");
    o[..o.len() - 1]
        .split(|&c| c == 0)
        .map(|r| (r[0] as char, String::from_utf8_lossy(&r[1..]).into_owned()))
        .collect()
}

const UTF8_EXTENSIONS: &str = r#""extensions": ["PIPELINING", "8BITMIME", "SMTPUTF8"]"#;
const OLD_EXTENSIONS: &str = r#""extensions": ["PIPELINING", "8BITMIME"]"#;

#[test]
fn remote_sends_smtputf8_and_a_labels_found_through_dnsmasq() {
    let s = SmtpServer::start("127.1.90.2", UTF8_EXTENSIONS);
    let dns = Dnsmasq::start(&[
        "--mx-host=xn--bcher-kva.test,mx.xn--bcher-kva.test,10".to_string(),
        "--host-record=mx.xn--bcher-kva.test,127.1.90.2".to_string(),
    ]);
    let h = Home::new();
    // The control files may use U-labels.
    h.control("smtproutes", &format!("bücher.test::{}\n", s.port));
    h.control("helohost", "ausgang.bücher.test\n");
    let msg = "Subject: Grüße\n\nHej då\n".as_bytes();
    let r = remote(
        &h,
        &dns.addr(),
        &[
            "bücher.test",
            "grå@bücher.test",
            "δοκιμή@bücher.test",
            "plain@bücher.test",
        ],
        msg,
    );
    assert_eq!(
        r,
        vec![
            ('r', String::new()),
            ('r', String::new()),
            (
                'K',
                "127.1.90.2 accepted message.\nRemote host said: 250 ok queued\n".to_string()
            )
        ]
    );
    let t = s.one();
    assert_eq!(
        t.commands,
        [
            "EHLO ausgang.xn--bcher-kva.test".to_string(),
            latin1("MAIL FROM:<grå@xn--bcher-kva.test> BODY=8BITMIME SMTPUTF8"),
            latin1("RCPT TO:<δοκιμή@xn--bcher-kva.test>"),
            "RCPT TO:<plain@xn--bcher-kva.test>".to_string(),
            "DATA".to_string(),
            "QUIT".to_string()
        ]
    );
    assert_eq!(t.messages[0].data, msg);
    // DNS was asked for A-labels only.
    let q = dns.queries();
    assert!(
        q.iter().any(|l| l.starts_with("MX] xn--bcher-kva.test ")),
        "{q:?}"
    );
    assert!(
        q.iter().any(|l| l.starts_with("A] mx.xn--bcher-kva.test ")),
        "{q:?}"
    );
    assert!(q.iter().all(|l| l.is_ascii()), "{q:?}");
}

#[test]
fn remote_without_smtputf8_at_the_server() {
    let old = SmtpServer::start("127.1.91.2", OLD_EXTENSIONS);
    let h = Home::new();
    h.control(
        "smtproutes",
        &format!("bücher.test:127.1.91.2:{}\n", old.port),
    );
    h.control("helohost", "out.example\n");
    // A UTF-8 local part: a permanent failure before MAIL, with 5.6.7.
    let r = remote(
        &h,
        "127.0.0.1:9",
        &["bücher.test", "a@out.example", "grå@bücher.test"],
        b"Subject: x\n\nx\n",
    );
    assert_eq!(
        r,
        vec![(
            'D',
            "Connected to 127.1.91.2 but it does not offer SMTPUTF8, which the non-ASCII addresses of this message need (#5.6.7).\n".to_string()
        )]
    );
    // U-labels only in domains: sent as A-labels, without SMTPUTF8.
    let r = remote(
        &h,
        "127.0.0.1:9",
        &["bücher.test", "a@bücher.test", "plain@bücher.test"],
        b"Subject: x\n\nx\n",
    );
    assert_eq!(r.last().map(|x| x.0), Some('K'), "{r:?}");
    // An ASCII envelope, but the message came with SMTPUTF8 (its Received field): 5.6.9.
    let marked = "Received: (qmail 1 invoked from network); 6 Dec 2026 10:00:00 -0000\nReceived: from unknown (HELO c) (127.0.0.1)\n  by mx.example with UTF8SMTPS (TLS1_3 X encrypted); 6 Dec 2026 10:00:00 -0000\nSubject: Grüße\n\nx\n";
    let r = remote(
        &h,
        "127.0.0.1:9",
        &["bücher.test", "a@out.example", "plain@bücher.test"],
        marked.as_bytes(),
    );
    assert_eq!(r.last().map(|x| x.0), Some('D'), "{r:?}");
    assert!(r[0].1.contains("(#5.6.9)"), "{r:?}");
    // The same message with an older mark of another hop below ours: as netqmail.
    let plain = marked.replace("with UTF8SMTPS", "with ESMTPS");
    let r = remote(
        &h,
        "127.0.0.1:9",
        &["bücher.test", "a@out.example", "plain@bücher.test"],
        plain.as_bytes(),
    );
    assert_eq!(r.last().map(|x| x.0), Some('K'), "{r:?}");
    let t = old.transcripts(4);
    assert_eq!(t[0].commands, ["EHLO out.example", "QUIT"]);
    assert_eq!(
        t[1].commands[1..3],
        [
            "MAIL FROM:<a@xn--bcher-kva.test>",
            "RCPT TO:<plain@xn--bcher-kva.test>"
        ]
    );
    assert_eq!(t[2].commands, ["EHLO out.example", "QUIT"]);
    assert_eq!(t[3].commands[1], "MAIL FROM:<a@out.example> BODY=8BITMIME");

    // The same marked message to a server that offers SMTPUTF8.
    let new = SmtpServer::start("127.1.91.3", UTF8_EXTENSIONS);
    h.control(
        "smtproutes",
        &format!("bücher.test:127.1.91.3:{}\n", new.port),
    );
    let r = remote(
        &h,
        "127.0.0.1:9",
        &["bücher.test", "a@out.example", "plain@bücher.test"],
        marked.as_bytes(),
    );
    assert_eq!(r.last().map(|x| x.0), Some('K'), "{r:?}");
    assert_eq!(
        new.one().commands[1],
        "MAIL FROM:<a@out.example> BODY=8BITMIME SMTPUTF8"
    );
    // A host argument that is not a valid name: permanent.
    let r = remote(
        &h,
        "127.0.0.1:9",
        &["b\u{fffd}.test", "a@out.example", "x@b\u{fffd}.test"],
        b"x\n",
    );
    assert_eq!(r.last().map(|x| x.0), Some('D'), "{r:?}");
}

// ------------------------------------------------------------------ the whole way

#[test]
fn smtputf8_through_the_whole_system() {
    let h = mail_home();
    let remote_mx = SmtpServer::start("127.1.92.2", UTF8_EXTENSIONS);
    h.control("smtputf8", "1\n");
    h.control(
        "smtproutes",
        &format!("bücher.test:127.1.92.2:{}\n", remote_mx.port),
    );
    // A UTF-8 local address with a .qmail file of its own.
    let md = h.path().join("alias/Postfach");
    for d in ["", "tmp", "new", "cur"] {
        fs::create_dir_all(md.join(d)).expect("maildir");
    }
    fs::write(h.path().join("alias/.qmail-grå"), "./Postfach/\n").expect("dot-qmail");
    if is_root() {
        let (u, g) = rqmail_tests::single::nobody();
        h.chown_all(u, g);
    }
    let sys = System::start(h.path());
    let (_server, port) = smtpd(&h, &[("RELAYCLIENT", "")], true);
    let script = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.example", timeout=30)
msg = "From: ægir@client.example\r\nSubject: Grüße\r\n\r\nHej då\r\n".encode()
print("refused", s.sendmail("ægir@client.example", ["grå@testhost.example", "δοκιμή@bücher.test"], msg, mail_options=["SMTPUTF8"]))
print("refused", s.sendmail("a@client.example", ["plain@bücher.test"], msg, mail_options=["SMTPUTF8"]))
print(s.quit())
"#;
    let lines = smtplib(script, port);
    assert_eq!(lines[..2], ["refused {}", "refused {}"]);
    wait_until("the local delivery", || maildir_messages(&md).len() == 1);
    wait_until("two remote deliveries", || remote_mx.messages().len() == 2);
    sys.wait_count("three successful deliveries", 3, |l| {
        l.contains(": success:")
    });
    let log = sys.lines();
    sys.terminate();
    let m = String::from_utf8(maildir_messages(&md).remove(0)).expect("utf8");
    // qmail-local quotes a local part with bytes above 127 as netqmail does (a quoted
    // string is the same address under RFC 6532 too).
    assert!(
        m.starts_with(
            "Return-Path: <\"ægir\"@client.example>\nDelivered-To: grå@testhost.example\n"
        ),
        "{m}"
    );
    assert!(m.contains(" with UTF8SMTP; "), "{m}");
    assert!(m.ends_with("\nSubject: Grüße\n\nHej då\n"), "{m}");
    let mut sent = remote_mx.messages();
    sent.sort_by(|a, b| a.from.cmp(&b.from));
    // The envelope needs SMTPUTF8; so does the ASCII envelope of a message that came
    // with it.
    assert_eq!(sent[0].from, "<a@client.example> BODY=8BITMIME SMTPUTF8");
    assert_eq!(sent[0].rcpts, ["<plain@xn--bcher-kva.test>"]);
    assert_eq!(
        sent[1].from,
        latin1("<ægir@client.example> BODY=8BITMIME SMTPUTF8")
    );
    assert_eq!(sent[1].rcpts, [latin1("<δοκιμή@xn--bcher-kva.test>")]);
    let data = String::from_utf8(sent[1].data.clone()).expect("utf8");
    assert!(data.contains(" with UTF8SMTP; "), "{data}");
    // qmail-send's log shows bytes above 127 as `_`, as netqmail's does.
    assert!(
        log.iter()
            .any(|l| l.contains(" to remote ____________@b__cher.test")),
        "{log:#?}"
    );
}

/// qmail-inject (sendmail) with a UTF-8 recipient: the envelope carries it as it is, and
/// qmail-remote sends it with SMTPUTF8.
#[test]
fn qmail_inject_with_a_utf8_recipient() {
    let h = Home::new();
    let s = SmtpServer::start("127.1.93.2", UTF8_EXTENSIONS);
    h.control(
        "smtproutes",
        &format!("bücher.test:127.1.93.2:{}\n", s.port),
    );
    let mut c = h.cmd("qmail-inject");
    c.env("QMAILUSER", "ægir")
        .env("QMAILHOST", "client.example");
    let (code, _, err) = run_with_input(
        c,
        "To: δοκιμή@bücher.test\nSubject: Grüße\n\nHej då\n".as_bytes(),
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let q = h.queued();
    assert_eq!(q[0].sender(), "ægir@client.example".as_bytes());
    assert_eq!(
        q[0].recipients(),
        vec!["δοκιμή@bücher.test".as_bytes().to_vec()]
    );
    let f = h.path().join("injected");
    fs::write(&f, &q[0].mess).expect("message");
    let out = h
        .cmd("qmail-remote")
        .args(["bücher.test", "ægir@client.example", "δοκιμή@bücher.test"])
        .env("RQMAIL_NAMESERVERS", "127.0.0.1:9")
        .stdin(fs::File::open(&f).expect("open"))
        .output()
        .expect("qmail-remote");
    assert!(
        out.stdout
            .ends_with(b" accepted message.\nRemote host said: 250 ok queued\n\0")
    );
    let t = s.one();
    assert_eq!(
        t.commands[1],
        latin1("MAIL FROM:<ægir@client.example> BODY=8BITMIME SMTPUTF8")
    );
}
