//! SRS end to end: the whole mail system in single-user mode (qmail-start, the real
//! qmail-local, qmail-remote to SMTP servers on 127.0.0.1, srsreverse from
//! `alias/.qmail-srs-default` for the SRS domain `srs.testhost.example`), and the
//! addresses it makes and accepts checked against Debian's postsrsd 1.10 and Mail::SRS
//! 0.31 (libmail-srs-perl).

use crate::relsys::{chown_tree, mail_home};
use rqmail_tests::single::{System, WAIT, user_cmd, wait_until};
use rqmail_tests::smtp_peer::SmtpServer;
use rqmail_tests::{Home, KillOnDrop, Sink, SinkMessage, is_root, run_with_input, tool};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const SRSDOMAIN: &str = "srs.testhost.example";
const SECRET: &str = "correct horse battery staple";
const DAY: u64 = 86_400;

fn now() -> u64 {
    control::now()
}

/// The rewriter the system is configured with (the test's own copy of the secret).
fn rewriter(secrets: &[&str]) -> ::srs::Srs {
    ::srs::Srs::new(
        secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ::srs::Params::default(),
    )
    .expect("srs")
}

/// The fake SMTP server refusing every recipient with 550: a remote MX whose user is
/// gone.
fn refuser() -> SmtpServer {
    SmtpServer::start(
        "127.0.0.1",
        r#""greeting": "220 refuser.example ESMTP", "name": "refuser.example", "extensions": [],
        "rcpt_default": "550 5.1.1 no such user here", "data": "503 no valid recipients",
        "unknown": "250 ok""#,
    )
}

/// A single-user home with SRS on: the SRS domain in virtualdomains for `alias-srs`,
/// whose `.qmail-srs-default` runs srsreverse; `joe@testhost.example` forwarded to
/// `joe@far.example`; far.example routed to `far`, every other remote domain to `sink`.
fn srs_home(far: u16, sink: u16) -> Home {
    let h = mail_home();
    h.control("rcpthosts", &format!("testhost.example\n{SRSDOMAIN}\n"));
    h.control("virtualdomains", &format!("{SRSDOMAIN}:alias-srs\n"));
    h.control("srsdomain", &format!("{SRSDOMAIN}\n"));
    h.control("srssecrets", &format!("{SECRET}\n"));
    h.control("srsexclude", "hosted.example\n");
    h.control(
        "smtproutes",
        &format!("far.example:127.0.0.1:{far}\n:127.0.0.1:{sink}\n"),
    );
    let bin = h.path().join("bin");
    for (name, text) in [
        (
            ".qmail-srs-default",
            format!("|{}/srsreverse\n", bin.display()),
        ),
        (".qmail-joe", "&joe@far.example\n".to_string()),
        (
            ".qmail-mixed",
            "&local@testhost.example\n&joe@far.example\n".to_string(),
        ),
        (".qmail-here", "&local@testhost.example\n".to_string()),
        (
            ".qmail-prog",
            format!("|{}/forward joe@far.example\n", bin.display()),
        ),
        (
            ".qmail-cond",
            format!("|{}/condredirect joe@far.example true\n", bin.display()),
        ),
        (".qmail-list", "&sub@far.example\n".to_string()),
        (".qmail-list-owner", "./Maildir/\n".to_string()),
    ] {
        fs::write(h.path().join("alias").join(name), text).expect("dot-qmail");
    }
    chown_tree(&h.path().join("alias"));
    h
}

/// Sends one message through qmail-smtpd (on pipes, as a stranger at 192.0.2.9).
fn smtp(h: &Home, from: &str, to: &str, body: &str) -> Vec<String> {
    let input = format!(
        "HELO mx.far.example\r\nMAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n{body}\r\n.\r\nQUIT\r\n"
    );
    let mut c = user_cmd(h.path(), &h.path().join("bin/qmail-smtpd"));
    c.env("TCPREMOTEIP", "192.0.2.9");
    let (code, out, _) = run_with_input(c, input.as_bytes());
    assert_eq!(code, 0);
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect()
}

fn queue(h: &Home, msg: &str, sender: &str, rcpt: &str) {
    rqmail_tests::single::inject(h, msg, sender, &[rcpt]);
}

/// Waits for the sink's `n`th message (1-based) and returns it.
fn nth(sink: &Sink, n: usize) -> SinkMessage {
    wait_until(&format!("message {n} at the sink"), || {
        sink.messages().len() >= n
    });
    sink.messages()[n - 1].clone()
}

fn unbracket(s: &str) -> &str {
    s.trim_start_matches('<').trim_end_matches('>')
}

/// A file of the home's alias Maildir whose contents contain `needle`.
fn alias_mail_with(h: &Home, needle: &str) -> Option<String> {
    crate::relsys::maildir_messages(&h.path().join("alias/Maildir"))
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m).into_owned())
        .find(|m| m.contains(needle))
}

#[test]
fn forward_gets_an_srs_sender_and_its_bounce_comes_back_to_the_sender() {
    let far = refuser();
    let sink = Sink::start(None);
    let h = srs_home(far.port, sink.port);
    let sys = System::start(&h);
    queue(
        &h,
        "Subject: forwarded\n\nhello joe\n",
        "Alice@orig.example",
        "joe@testhost.example",
    );
    // far.example refuses joe with 550: qmail-send bounces to the SRS sender, which is
    // local (virtualdomains); srsreverse checks it and forwards the bounce to Alice.
    let m = nth(&sink, 1);
    assert_eq!(m.from, "<>");
    assert_eq!(m.rcpts, ["<Alice@orig.example>"]);
    let text = String::from_utf8_lossy(&m.data);
    assert!(
        text.contains("Delivered-To: alias-srs-SRS0=") && text.contains("joe@far.example"),
        "{text}"
    );
    assert!(text.contains("550 5.1.1 no such user here"), "{text}");
    assert!(text.contains("hello joe"), "{text}");
    let log = sys.lines();
    assert!(log.iter().any(|l| l.contains("to remote joe@far.example")));
    // The forward's envelope sender, as qmail-send logged it.
    let info = log
        .iter()
        .find(|l| l.starts_with("info msg ") && l.contains(" from <SRS0="))
        .unwrap_or_else(|| panic!("no SRS sender in {log:#?}"));
    let srs_addr = info
        .split(" from <")
        .nth(1)
        .and_then(|s| s.split('>').next())
        .expect("sender");
    assert!(
        srs_addr.ends_with(&format!("=orig.example=Alice@{SRSDOMAIN}")),
        "{srs_addr}"
    );
    assert_eq!(
        rewriter(&[SECRET]).reverse_address(srs_addr.as_bytes(), now()),
        Ok(b"Alice@orig.example".to_vec())
    );
    // srsreverse's report in the delivery log.
    assert!(
        log.iter()
            .any(|l| l.contains("success: srsreverse:_to_Alice@orig.example/srsreverse:_qp_")),
        "{log:#?}"
    );
    wait_until("an empty queue", || crate::relsys::queue_empty(h.path()));
    sys.stop();
}

#[test]
fn forwarded_senders_kept_or_rewritten_by_the_rules() {
    let far = Sink::start(None);
    let sink = Sink::start(None);
    let h = srs_home(far.port, sink.port);
    let sys = System::start(&h);
    let at_far = |n: usize| nth(&far, n);
    let srs = rewriter(&[SECRET]);
    let reverse = |m: &SinkMessage| {
        String::from_utf8(
            srs.reverse_address(unbracket(&m.from).as_bytes(), now())
                .expect("valid"),
        )
        .expect("utf-8")
    };

    // &address: rewritten; the message is the original with Delivered-To.
    queue(
        &h,
        "Subject: one\n\n1\n",
        "a@orig.example",
        "joe@testhost.example",
    );
    let m = at_far(1);
    assert!(m.from.starts_with("<SRS0="), "{}", m.from);
    assert_eq!(reverse(&m), "a@orig.example");
    assert_eq!(m.rcpts, ["<joe@far.example>"]);
    assert!(String::from_utf8_lossy(&m.data).contains("Subject: one\n\n1\n"));

    // A null sender stays null.
    queue(&h, "Subject: two\n\n2\n", "", "joe@testhost.example");
    assert_eq!(at_far(2).from, "<>");

    // An excluded sender domain (srsexclude) keeps its sender.
    queue(
        &h,
        "Subject: three\n\n3\n",
        "b@hosted.example",
        "joe@testhost.example",
    );
    assert_eq!(at_far(3).from, "<b@hosted.example>");

    // forward(1) and condredirect(1) rewrite as &address does.
    queue(
        &h,
        "Subject: four\n\n4\n",
        "c@orig.example",
        "prog@testhost.example",
    );
    let m = at_far(4);
    assert_eq!(reverse(&m), "c@orig.example");
    queue(
        &h,
        "Subject: five\n\n5\n",
        "d@orig.example",
        "cond@testhost.example",
    );
    let m = at_far(5);
    assert_eq!(reverse(&m), "d@orig.example");

    // An SRS0 sender from another forwarder becomes SRS1, which reverses to it.
    let theirs = "SRS0=abcd=AA=orig.example=e@first.example";
    queue(&h, "Subject: six\n\n6\n", theirs, "joe@testhost.example");
    let m = at_far(6);
    assert!(m.from.starts_with("<SRS1="), "{}", m.from);
    assert!(
        m.from
            .ends_with("=first.example==abcd=AA=orig.example=e@srs.testhost.example>")
    );
    assert_eq!(reverse(&m), theirs);

    // A list owner's sender (.qmail-list-owner) is this host's own: not rewritten.
    queue(
        &h,
        "Subject: seven\n\n7\n",
        "f@orig.example",
        "list@testhost.example",
    );
    let m = at_far(7);
    assert_eq!(m.from, "<list-owner@testhost.example>");

    // A forward to a local address keeps the sender; a forward with a local and a
    // remote recipient is rewritten for both.
    queue(
        &h,
        "Subject: eight\n\n8\n",
        "g@orig.example",
        "here@testhost.example",
    );
    wait_until("the local forward", || {
        alias_mail_with(&h, "Subject: eight").is_some()
    });
    let local = alias_mail_with(&h, "Subject: eight").expect("delivered");
    assert!(
        local.starts_with("Return-Path: <g@orig.example>\n"),
        "{local}"
    );
    queue(
        &h,
        "Subject: nine\n\n9\n",
        "i@orig.example",
        "mixed@testhost.example",
    );
    let m = at_far(8);
    assert_eq!(reverse(&m), "i@orig.example");
    wait_until("the mixed forward's local copy", || {
        alias_mail_with(&h, "Subject: nine").is_some()
    });
    let local = alias_mail_with(&h, "Subject: nine").expect("delivered");
    assert!(local.starts_with("Return-Path: <SRS0="), "{local}");
    assert_eq!(sink.messages().len(), 0);

    // Off: without control/srsdomain nothing is rewritten.
    h.remove_control("srsdomain");
    queue(
        &h,
        "Subject: ten\n\n10\n",
        "j@orig.example",
        "joe@testhost.example",
    );
    assert_eq!(at_far(9).from, "<j@orig.example>");
    wait_until("an empty queue", || crate::relsys::queue_empty(h.path()));
    sys.stop();
}

/// The bounce at the sink for a message sent to `to` by prober@evil.example, whose
/// delivery srsreverse refused: the report line it carries.
fn refused(h: &Home, sink: &Sink, n: usize, to: &str) -> String {
    let r = smtp(h, "prober@evil.example", to, "Subject: probe\r\n\r\nprobe");
    assert!(r.iter().any(|l| l.starts_with("250 ok ")), "{r:?}");
    let m = nth(sink, n);
    assert_eq!(m.from, "<>");
    assert_eq!(m.rcpts, ["<prober@evil.example>"]);
    let text = String::from_utf8_lossy(&m.data).into_owned();
    text.lines()
        .find(|l| l.starts_with("Sorry, "))
        .unwrap_or_else(|| panic!("no report in the bounce: {text}"))
        .to_string()
}

#[test]
fn forged_expired_and_non_srs_addresses_bounce_with_the_reason() {
    let sink = Sink::start(None);
    let h = srs_home(sink.port, sink.port);
    let sys = System::start(&h);
    let srs = rewriter(&[SECRET]);
    let t = now();

    // Valid, through SMTP: delivered to the original sender.
    let good = String::from_utf8(
        srs.forward(b"kim@orig.example", SRSDOMAIN.as_bytes(), t)
            .unwrap(),
    )
    .unwrap();
    let r = smtp(&h, "", &good, "Subject: bounce\r\n\r\nyour message failed");
    assert!(r.iter().any(|l| l.starts_with("250 ok ")), "{r:?}");
    let m = nth(&sink, 1);
    assert_eq!(
        (m.from.as_str(), m.rcpts.as_slice()),
        ("<>", &["<kim@orig.example>".to_string()][..])
    );

    // Forged: the hash of another secret.
    let forged = String::from_utf8(
        rewriter(&["a guess"])
            .forward(b"kim@orig.example", SRSDOMAIN.as_bytes(), t)
            .unwrap(),
    )
    .unwrap();
    let line = refused(&h, &sink, 2, &forged);
    let local = forged.split('@').next().unwrap();
    assert_eq!(
        line,
        format!(
            "Sorry, {local}@{SRSDOMAIN} is not a valid SRS address: its hash is wrong (a forged address?). (#5.7.1)"
        )
    );
    // Expired: made 30 days ago with the right secret.
    let old = String::from_utf8(
        srs.forward(b"kim@orig.example", SRSDOMAIN.as_bytes(), t - 30 * DAY)
            .unwrap(),
    )
    .unwrap();
    let line = refused(&h, &sink, 3, &old);
    assert!(
        line.ends_with(" is not a valid SRS address: it has expired (SRS addresses here are valid for 21 days). (#5.1.1)"),
        "{line}"
    );
    // Not SRS at all, and an SRS0 address without its user.
    let line = refused(&h, &sink, 4, &format!("kim@{SRSDOMAIN}"));
    assert_eq!(
        line,
        format!(
            "Sorry, srs-kim@{SRSDOMAIN} is not a valid SRS address: it is not an SRS address. (#5.1.1)"
        )
    );
    let line = refused(
        &h,
        &sink,
        5,
        &format!("SRS0=abcd=AA=orig.example@{SRSDOMAIN}"),
    );
    assert!(
        line.ends_with("is not a valid SRS address: its user is missing. (#5.1.1)"),
        "{line}"
    );
    // Nothing reached kim but the valid bounce.
    wait_until("an empty queue", || crate::relsys::queue_empty(h.path()));
    assert_eq!(
        sink.messages()
            .iter()
            .filter(|m| m.rcpts.iter().any(|r| r.contains("kim@")))
            .count(),
        1
    );
    let log = sys.stop();
    assert!(
        log.iter()
            .any(|l| l.contains(": failure: Sorry,_SRS0=") && l.ends_with("(#5.7.1)/")),
        "{log:#?}"
    );
}

#[test]
fn unreadable_secrets_defer_and_nothing_is_delivered_until_they_are_fixed() {
    let far = Sink::start(None);
    let sink = Sink::start(None);
    let h = srs_home(far.port, sink.port);
    // joe keeps a copy and forwards: neither happens while the secrets are unreadable.
    fs::write(
        h.path().join("alias/.qmail-joe"),
        "./Maildir/\n&joe@far.example\n",
    )
    .expect("dot-qmail");
    chown_tree(&h.path().join("alias"));
    h.remove_control("srssecrets");
    let sys = System::start(&h);
    queue(
        &h,
        "Subject: deferred\n\nlater\n",
        "l@orig.example",
        "joe@testhost.example",
    );
    sys.wait_log("the deferral", |l| l.contains(": deferral: "));
    let log = sys.lines();
    assert!(
        log.iter().any(|l| l.ends_with(
            ": deferral: Unable_to_read_SRS_configuration:_control/srssecrets:_does_not_exist._(#4.3.0)/"
        )),
        "{log:#?}"
    );
    assert!(alias_mail_with(&h, "Subject: deferred").is_none());
    // srsreverse defers too.
    let good = String::from_utf8(
        rewriter(&[SECRET])
            .forward(b"kim@orig.example", SRSDOMAIN.as_bytes(), now())
            .unwrap(),
    )
    .unwrap();
    queue(&h, "Subject: bounce\n\nb\n", "", &good);
    sys.wait_log("srsreverse's deferral", |l| {
        l.contains(
            ": deferral: srsreverse:_fatal:_control/srssecrets_does_not_exist:_SRS_is_not_set_up/",
        )
    });
    // Fixed, and retried now (ALRM): one copy, one forward, one bounce delivered.
    h.control("srssecrets", &format!("{SECRET}\n"));
    sys.signal(nix::sys::signal::Signal::SIGALRM);
    let m = nth(&far, 1);
    assert!(m.from.starts_with("<SRS0="), "{}", m.from);
    assert_eq!(nth(&sink, 1).rcpts, ["<kim@orig.example>"]);
    wait_until("an empty queue", || crate::relsys::queue_empty(h.path()));
    let copies = crate::relsys::maildir_messages(&h.path().join("alias/Maildir"))
        .iter()
        .filter(|m| String::from_utf8_lossy(m).contains("Subject: deferred"))
        .count();
    assert_eq!(copies, 1);
    sys.stop();
}

// ------------------------------------------------- postsrsd and Mail::SRS, real peers

/// Where scripts/test unpacks Debian's postsrsd package (RQMAIL_POSTSRSD_DIR).
fn postsrsd_dir() -> PathBuf {
    let d = std::env::var_os("RQMAIL_POSTSRSD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/rqmail-postsrsd"));
    assert!(
        d.join("usr/sbin/postsrsd").exists(),
        "Debian's postsrsd is not unpacked in {}: run scripts/test (the README's test command), which does it",
        d.display()
    );
    d
}

/// postsrsd 1.10 on 127.0.0.1 with the test's secret and SRS domain: its forward and
/// reverse lookup tables (Postfix's tcp_table protocol).
struct Postsrsd {
    _proc: KillOnDrop,
    forward: u16,
    reverse: u16,
    _dir: tempfile::TempDir,
}

impl Postsrsd {
    fn start() -> Postsrsd {
        let dir = tempfile::tempdir().expect("tmp");
        let secret = dir.path().join("secret");
        fs::write(&secret, format!("{SECRET}\n")).expect("secret");
        let bin = postsrsd_dir().join("usr/sbin/postsrsd");
        for _ in 0..20 {
            let (f, r) = (rqmail_tests::free_port(), rqmail_tests::free_port());
            let mut c = Command::new(&bin);
            c.arg(format!("-s{}", secret.display()))
                .arg(format!("-d{SRSDOMAIN}"))
                .args(["-l127.0.0.1", "-4"])
                .arg(format!("-f{f}"))
                .arg(format!("-r{r}"));
            if is_root() {
                c.arg("-unobody");
            }
            let child = KillOnDrop(c.spawn().expect("postsrsd"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", f)).is_ok()
                    && TcpStream::connect(("127.0.0.1", r)).is_ok()
                {
                    return Postsrsd {
                        _proc: child,
                        forward: f,
                        reverse: r,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("postsrsd did not start");
    }

    /// `get ADDRESS` on a table: Ok(the answer) for 200, Err(the text) otherwise.
    fn get(port: u16, addr: &str) -> Result<String, String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect postsrsd");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.write_all(format!("get {addr}\n").as_bytes())
            .expect("write");
        let mut line = String::new();
        BufReader::new(&mut s).read_line(&mut line).expect("read");
        let line = decode_table(line.trim_end());
        match line.split_once(' ') {
            Some(("200", v)) => Ok(v.to_string()),
            _ => Err(line),
        }
    }
}

/// The %XX escapes of Postfix's tcp_table protocol undone.
fn decode_table(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mail::SRS (Guarded, the default) with the test's secret: `forward SENDER` or `reverse
/// ADDRESS`, through perl.
fn mail_srs(op: &str, addr: &str) -> Result<String, String> {
    let script = r#"use Mail::SRS; my ($op, $secret, $dom, $a) = @ARGV;
my $s = Mail::SRS->new(Secret => [$secret]);
my $r = eval { $op eq "forward" ? $s->forward($a, $dom) : $s->reverse($a) };
if ($@) { print "ERR $@"; exit 1 } print $r;"#;
    let out = Command::new(tool("perl"))
        .args(["-e", script, op, SECRET, SRSDOMAIN, addr])
        .output()
        .expect("perl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let missing = String::from_utf8_lossy(&out.stderr).contains("Can't locate Mail/SRS.pm");
    assert!(
        !missing,
        "Mail::SRS is not installed: run scripts/test (it installs libmail-srs-perl)"
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn addresses_interoperate_with_postsrsd_and_mail_srs() {
    let far = Sink::start(None);
    let sink = Sink::start(None);
    let h = srs_home(far.port, sink.port);
    let sys = System::start(&h);
    let pd = Postsrsd::start();

    // Ours, made by qmail-local's forward, reversed by postsrsd and by Mail::SRS.
    queue(
        &h,
        "Subject: ours\n\nx\n",
        "Nora@orig.example",
        "joe@testhost.example",
    );
    let ours = unbracket(&nth(&far, 1).from).to_string();
    assert!(ours.starts_with("SRS0="), "{ours}");
    assert_eq!(
        Postsrsd::get(pd.reverse, &ours).as_deref(),
        Ok("Nora@orig.example")
    );
    assert_eq!(
        mail_srs("reverse", &ours).as_deref(),
        Ok("Nora@orig.example")
    );
    // What postsrsd and Mail::SRS make for the same sender today is what we made.
    assert_eq!(
        Postsrsd::get(pd.forward, "Nora@orig.example").as_deref(),
        Ok(ours.as_str())
    );
    assert_eq!(
        mail_srs("forward", "Nora@orig.example").as_deref(),
        Ok(ours.as_str())
    );
    // SRS1, from an SRS0 sender: the same in all three.
    let srs0 = "SRS0=abcd=AA=orig.example=e@first.example";
    queue(&h, "Subject: ours1\n\nx\n", srs0, "joe@testhost.example");
    let ours1 = unbracket(&nth(&far, 2).from).to_string();
    assert!(ours1.starts_with("SRS1="), "{ours1}");
    assert_eq!(
        Postsrsd::get(pd.forward, srs0).as_deref(),
        Ok(ours1.as_str())
    );
    assert_eq!(mail_srs("forward", srs0).as_deref(), Ok(ours1.as_str()));
    assert_eq!(Postsrsd::get(pd.reverse, &ours1).as_deref(), Ok(srs0));
    assert_eq!(mail_srs("reverse", &ours1).as_deref(), Ok(srs0));

    // Theirs, bounced to through SMTP: srsreverse forwards each to its sender.
    let theirs = [
        (
            Postsrsd::get(pd.forward, "pat@orig.example").expect("postsrsd forward"),
            "pat@orig.example",
        ),
        (
            mail_srs("forward", "quinn@orig.example").expect("Mail::SRS forward"),
            "quinn@orig.example",
        ),
        // An SRS1 address goes back to the first forwarder's SRS0 address.
        (
            mail_srs("forward", "SRS0=wxyz=AB=orig.example=r@first.example").expect("Mail::SRS"),
            "SRS0=wxyz=AB=orig.example=r@first.example",
        ),
    ];
    for (n, (addr, original)) in theirs.iter().enumerate() {
        let r = smtp(&h, "", addr, "Subject: their bounce\r\n\r\nfailed");
        assert!(r.iter().any(|l| l.starts_with("250 ok ")), "{addr}: {r:?}");
        let m = nth(&sink, n + 1);
        assert_eq!(m.from, "<>");
        assert_eq!(m.rcpts, [format!("<{original}>")], "{addr}");
    }
    // Postsrsd refuses what we refuse.
    let forged = ours.replacen("SRS0=", "SRS0=zz", 1);
    assert!(Postsrsd::get(pd.reverse, &forged).is_err());
    assert!(mail_srs("reverse", &forged).is_err());
    wait_until("an empty queue", || crate::relsys::queue_empty(h.path()));
    sys.stop();
}

// ------------------------------------------------------------------------ root mode

/// Root mode: qmail-local reads control/srssecrets as the user whose .qmail file forwards,
/// srsreverse as alias. A secret the user cannot read defers the forward (nothing is sent
/// with the sender unrewritten); once it is readable the forward goes out with an SRS
/// sender, its bounce comes back to the SRS domain, and srsreverse, as alias, sends it on
/// to the original sender.
#[test]
fn root_mode_secrets_read_as_the_user_and_as_alias() {
    use crate::rootmode::{install_root_home, lock_root_home, smtpd_as_qmaild, start_root_system};
    use crate::rootpath::{UHOME, USER, make_user};
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        eprintln!("root_mode_secrets_read_as_the_user_and_as_alias: needs root");
        return;
    }
    let _g = lock_root_home();
    let home = install_root_home();
    let (uid, gid) = make_user();
    let far = refuser();
    let sink = Sink::start(None);
    let srsdomain = "srs.roothost.example";
    for (name, text) in [
        ("rcpthosts", format!("roothost.example\n{srsdomain}\n")),
        ("locals", "roothost.example\n".to_string()),
        ("virtualdomains", format!("{srsdomain}:alias-srs\n")),
        ("srsdomain", format!("{srsdomain}\n")),
        ("srssecrets", format!("{SECRET}\n")),
        (
            "smtproutes",
            format!(
                "far.example:127.0.0.1:{}\n:127.0.0.1:{}\n",
                far.port, sink.port
            ),
        ),
    ] {
        fs::write(home.join("control").join(name), text).expect("control");
    }
    let secrets = home.join("control/srssecrets");
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).expect("chmod");
    let (alias_uid, alias_gid) = rqmail_tests::user_ids("alias");
    let srs_qmail = home.join("alias/.qmail-srs-default");
    fs::write(
        &srs_qmail,
        format!("|{}\n", home.join("bin/srsreverse").display()),
    )
    .expect("dot-qmail");
    std::os::unix::fs::chown(&srs_qmail, Some(alias_uid), Some(alias_gid)).expect("chown");
    // alias's home in the password file is /var/qmail/alias: users/assign gives the SRS
    // addresses alias's ids with this home's alias/ (as a site with another home would).
    fs::write(
        home.join("users/assign"),
        format!(
            "+alias-srs-:alias:{alias_uid}:{alias_gid}:{}:-:srs-:\n.\n",
            home.join("alias").display()
        ),
    )
    .expect("assign");
    let st = Command::new(home.join("bin/qmail-newu"))
        .env("QMAIL_HOME", &home)
        .status()
        .expect("qmail-newu");
    assert!(st.success(), "qmail-newu");
    let fwd_qmail = PathBuf::from(UHOME).join(".qmail-srsfwd");
    fs::write(&fwd_qmail, "&joe@far.example\n").expect("dot-qmail");
    std::os::unix::fs::chown(&fwd_qmail, Some(uid), Some(gid)).expect("chown");

    let top = tempfile::tempdir().expect("tmp");
    let sys = start_root_system(&home, top.path());
    let (_server, port) = smtpd_as_qmaild(&home, &[]);
    let mut s = rqmail_tests::Smtp::connect(port);
    assert!(s.reply()[0].starts_with("220 "));
    assert!(s.cmd("HELO client.example")[0].starts_with("250 "));
    assert!(s.cmd("MAIL FROM:<Alice@orig.example>")[0].starts_with("250 "));
    assert!(s.cmd(&format!("RCPT TO:<{USER}-srsfwd@roothost.example>"))[0].starts_with("250 "));
    assert!(s.cmd("DATA")[0].starts_with("354 "));
    let r = s.cmd("Subject: forwarded as root\r\n\r\nhello joe\r\n.");
    assert!(r[0].starts_with("250 ok "), "{r:?}");
    s.cmd("QUIT");

    // The user cannot read the secrets: deferred, nothing sent.
    wait_until("the deferral", || {
        sys.lines().iter().any(|l| {
            l.contains(": deferral: Unable_to_read_SRS_configuration:_control/srssecrets:_unable_to_read:_")
        })
    });
    assert!(sys.lines().iter().all(|l| !l.contains("to remote")));

    // Readable by all (as srsreverse(8) says), and retried now.
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o644)).expect("chmod");
    nix::sys::signal::kill(sys.pid(), nix::sys::signal::Signal::SIGALRM).expect("ALRM");
    let deadline = Instant::now() + WAIT;
    while sink.messages().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no bounce at the sink: {:#?}",
            sys.lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = nth(&sink, 1);
    assert_eq!(m.from, "<>");
    assert_eq!(m.rcpts, ["<Alice@orig.example>"]);
    let text = String::from_utf8_lossy(&m.data).into_owned();
    assert!(text.contains("Delivered-To: alias-srs-SRS0="), "{text}");
    assert!(text.contains("550 5.1.1 no such user here"), "{text}");
    wait_until("an empty queue", || crate::relsys::queue_empty(&home));
    let log = sys.lines();
    assert_eq!(sys.terminate(), Some(0));
    // The forward's sender was SRS, and srsreverse ran as alias and forwarded.
    let info = log
        .iter()
        .find(|l| l.starts_with("info msg ") && l.contains(" from <SRS0="))
        .unwrap_or_else(|| panic!("no SRS sender in {log:#?}"));
    assert!(
        info.contains(&format!("=orig.example=Alice@{srsdomain}>")),
        "{info}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("success: srsreverse:_to_Alice@orig.example/srsreverse:_qp_")),
        "{log:#?}"
    );
}
