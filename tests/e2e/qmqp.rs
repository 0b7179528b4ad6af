//! QMQP and QMTP: qmail-qmqpd and qmail-qmtpd under tcpserver with real bytes (good and
//! bad), qmail-qmqpc's order and fallback over real sockets, QMTP delivery through
//! qmail-send, qmail-rspawn and qmail-remote into qmail-qmtpd, and the mini-qmail
//! topology: three edges (qmail-smtpd -> qmail-qmqpc) feeding two hubs (qmail-qmqpd ->
//! queue -> qmail-send), each with a home of its own on loopback.
//!
//! As root every server runs as `nobody` (tcpserver's -u/-g, setpriv for qmail-send), the
//! single-user mode of the rest of the suite.

use rqmail_tests::fakes::{fake_getpw, fake_local, mail_dir, mail_files};
use rqmail_tests::net::tcpserver_as_qmaild;
use rqmail_tests::single::*;
use rqmail_tests::{Home, KillOnDrop, Smtp, bin, free_port, is_root, tcpserver_opts};
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

// ------------------------------------------------------------------------ helpers

/// Runs `program` of `home` under tcpserver as the single-user runner.
fn serve(home: &Home, program: &str, env: &[(&str, &str)]) -> (KillOnDrop, u16) {
    let (u, g) = runner_ids();
    let (u, g) = (u.to_string(), g.to_string());
    let opts: Vec<&str> = if is_root() {
        vec!["-u", &u, "-g", &g]
    } else {
        vec![]
    };
    let p = home.path().join("bin").join(program);
    tcpserver_opts(home, env, &opts, &[&p])
}

/// Sends `data`, half-closes, and reads everything the server says until it closes.
fn exchange(port: u16, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let _ = s.write_all(data);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn ns(b: &[u8]) -> Vec<u8> {
    control::netstring::encode(b)
}

fn qmqp_request(msg: &[u8], sender: &[u8], rcpts: &[&[u8]]) -> Vec<u8> {
    let mut inner = ns(msg);
    inner.extend(ns(sender));
    for r in rcpts {
        inner.extend(ns(r));
    }
    ns(&inner)
}

fn qmtp_package(msg: &[u8], sender: &[u8], rcpts: &[&[u8]]) -> Vec<u8> {
    let mut w = ns(msg);
    w.extend(ns(sender));
    let mut list = Vec::new();
    for r in rcpts {
        list.extend(ns(r));
    }
    w.extend(ns(&list));
    w
}

/// `Kok TIME qp PID` as a netstring, with the numbers checked.
fn assert_kok(reply: &[u8]) {
    let s = String::from_utf8_lossy(reply);
    let (len, rest) = s.split_once(':').expect("netstring");
    let body = rest.strip_suffix(',').expect("comma");
    assert_eq!(len.parse::<usize>().ok(), Some(body.len()), "{s}");
    let w: Vec<&str> = body.split(' ').collect();
    assert!(
        w.len() == 4 && w[0] == "Kok" && w[2] == "qp",
        "not a Kok reply: {s}"
    );
    assert!(
        w[1].parse::<u64>().is_ok() && w[3].parse::<u32>().is_ok(),
        "{s}"
    );
}

/// A home whose local deliveries land in mail/ (the fake qmail-local and qmail-getpw of
/// [`rqmail_tests::fakes`]).
fn delivery_home() -> Home {
    let h = user_home();
    mail_dir(&h);
    fake_local(&h);
    fake_getpw(&h);
    h
}

/// No qmail-queue at work: queue/pid is empty.
fn pid_empty(h: &Home) -> bool {
    fs::read_dir(h.queue().join("pid")).map_or(true, |rd| rd.count() == 0)
}

/// The messages the fake qmail-local kept.
fn mail_texts(h: &Home) -> Vec<String> {
    mail_files(h).into_iter().map(|(_, text)| text).collect()
}

// ------------------------------------------------------------------ qmail-qmqpd

#[test]
fn qmqpd_queues_a_request_and_replies_kok() {
    let h = user_home();
    let (_srv, port) = serve(&h, "qmail-qmqpd", &[]);
    let msg = b"Subject: qmqp\n\nbody\n";
    let reply = exchange(
        port,
        &qmqp_request(
            msg,
            b"a@edge.example",
            &[b"b@far.example", b"c@far.example"],
        ),
    );
    assert_kok(&reply);
    let q = h.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender(), b"a@edge.example");
    assert_eq!(
        q[0].recipients(),
        vec![b"b@far.example".to_vec(), b"c@far.example".to_vec()]
    );
    let text = String::from_utf8_lossy(q[0].body_after_received()).to_string();
    // tcpserver -H -R -l testhost.example: no remote name, the local name given.
    assert!(
        text.starts_with("Received: from unknown (127.0.0.1)\n  by testhost.example with QMQP; "),
        "{text}"
    );
    assert!(text.ends_with("\nSubject: qmqp\n\nbody\n"), "{text}");
}

#[test]
fn qmqpd_bad_input_gets_no_reply_and_queues_nothing() {
    let h = user_home();
    let (_srv, port) = serve(&h, "qmail-qmqpd", &[]);
    let good = qmqp_request(b"hello\n", b"a@x", &[b"b@y"]);
    let long = vec![b'a'; 1000];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("early close", good[..good.len() / 2].to_vec()),
        ("no outer comma", good[..good.len() - 1].to_vec()),
        ("not a length", b"12x:".to_vec()),
        ("huge length", b"99999999999999999999:".to_vec()),
        ("huge message length", b"30:99999999999:".to_vec()),
        (
            "recipient past the outer length",
            b"20:6:hello\n,3:a@x,9:b@yyyyyy,,".to_vec(),
        ),
        ("empty", Vec::new()),
        ("binary", (0u8..=255).collect()),
    ];
    for (what, bytes) in cases {
        let reply = exchange(port, &bytes);
        assert!(reply.is_empty(), "{what}: replied {reply:?}");
    }
    // An address qmail-qmqpd cannot take: a D reply, nothing queued.
    let reply = exchange(port, &qmqp_request(b"m\n", b"a@x", &[&long]));
    assert_eq!(
        reply,
        b"51:Dsorry, I can't accept addresses like that (#5.1.3),".to_vec()
    );
    // qmail-queue removes its pid/ file before its mess/ file.
    wait_until("qmail-queue to clean up", || {
        pid_empty(&h) && h.queue_files().is_empty()
    });
    assert!(h.queued().is_empty());
}

// ------------------------------------------------------------------ qmail-qmtpd

#[test]
fn qmtpd_packages_rcpthosts_databytes_and_crlf() {
    let h = user_home();
    h.control("rcpthosts", "example.com\n");
    h.control("databytes", "100\n");
    let (_srv, port) = serve(&h, "qmail-qmtpd", &[]);
    let mut wire = qmtp_package(
        b"\nSubject: one\n\nfirst\n",
        b"s@x",
        &[b"a@example.com", b"b@elsewhere.test"],
    );
    wire.extend(qmtp_package(
        b"\rSubject: two\r\n\r\nsecond\r\n",
        b"",
        &[b"c@example.com"],
    ));
    wire.extend(qmtp_package(&[b'\n'; 200], b"s@x", &[b"d@example.com"]));
    let reply = exchange(port, &wire);
    let mut rest = &reply[..];
    let mut answers = Vec::new();
    while !rest.is_empty() {
        match control::netstring::parse(rest, 1000).expect("netstring reply") {
            control::netstring::Parsed::Done { content, rest: r } => {
                answers.push(String::from_utf8_lossy(content).to_string());
                rest = r;
            }
            control::netstring::Parsed::Partial => panic!("partial reply {reply:?}"),
        }
    }
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert!(answers[0].starts_with("Kok "), "{answers:?}");
    assert_eq!(
        answers[1],
        "Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
    );
    assert!(answers[2].starts_with("Kok "), "{answers:?}");
    assert_eq!(
        answers[3],
        "Dsorry, that message size exceeds my databytes limit (#5.3.4)"
    );
    let mut q = h.queued();
    q.sort_by_key(|m| m.sender());
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].sender(), b"");
    assert_eq!(q[0].recipients(), vec![b"c@example.com".to_vec()]);
    let two = String::from_utf8_lossy(q[0].body_after_received()).to_string();
    assert!(two.contains(" with QMTP; "), "{two}");
    assert!(two.ends_with("\nSubject: two\n\nsecond\n"), "{two}");
    assert_eq!(q[1].recipients(), vec![b"a@example.com".to_vec()]);
}

#[test]
fn qmtpd_relayclient_and_bad_input() {
    let h = user_home();
    h.control("rcpthosts", "example.com\n");
    let (_srv, port) = serve(&h, "qmail-qmtpd", &[("RELAYCLIENT", "")]);
    let reply = exchange(port, &qmtp_package(b"\nm\n", b"s@x", &[b"r@anywhere.test"]));
    assert!(reply.starts_with(b"14:Kok ") || reply.windows(4).any(|w| w == b"Kok "));
    assert_eq!(h.queued().len(), 1);
    let good = qmtp_package(b"\nhello\n", b"s@x", &[b"a@example.com"]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("early close", good[..good.len() - 3].to_vec()),
        ("empty message netstring", b"0:,".to_vec()),
        (
            "bad line-ending byte",
            b"2:xm,3:s@x,17:13:a@example.com,,".to_vec(),
        ),
        ("huge length", b"99999999999999:".to_vec()),
        (
            "recipient past its list",
            b"2:\nm,3:s@x,5:9:a@example.com,,".to_vec(),
        ),
        ("not a length", b"abc".to_vec()),
    ];
    for (what, bytes) in cases {
        let reply = exchange(port, &bytes);
        assert!(reply.is_empty(), "{what}: replied {reply:?}");
    }
    // A good package before a broken one is answered; the broken one queues nothing.
    let mut w = good.clone();
    w.extend(b"2:\nm,3:s@x,99:");
    let reply = exchange(port, &w);
    assert!(reply.windows(4).any(|x| x == b"Kok "), "{reply:?}");
    wait_until("qmail-queue to clean up", || pid_empty(&h));
    assert_eq!(h.queued().len(), 2);
}

// ------------------------------------------------------------------ qmail-qmqpc

/// Runs the edge's qmail-qmqpc (as the single-user runner) on one message.
fn qmqpc(edge: &Home, msg: &str, rcpt: &str) -> i32 {
    queue_with(
        user_cmd(edge, &bin("qmail-qmqpc")),
        msg.as_bytes(),
        "a@edge.example",
        &[rcpt],
    )
}

#[test]
fn qmqpc_tries_servers_in_order_and_falls_back() {
    let hub1 = user_home();
    let hub2 = user_home();
    let (srv1, p1) = serve(&hub1, "qmail-qmqpd", &[]);
    let (_srv2, p2) = serve(&hub2, "qmail-qmqpd", &[]);
    let down = free_port();
    let edge = user_home();
    edge.remove_control("qmqpservers");
    assert_eq!(qmqpc(&edge, "x\n", "r@x"), 55, "no qmqpservers: exit 55");
    edge.control(
        "qmqpservers",
        &format!("# the hubs, in order\nnot-an-address\n127.0.0.1:{p1}\n127.0.0.1:{p2}\n"),
    );
    assert_eq!(qmqpc(&edge, "Subject: 1\n\n", "r@x"), 0);
    assert_eq!((hub1.queued().len(), hub2.queued().len()), (1, 0));
    // The first server down: the second takes it.
    edge.control(
        "qmqpservers",
        &format!("127.0.0.1:{down}\n127.0.0.1:{p1}\n127.0.0.1:{p2}\n"),
    );
    drop(srv1);
    assert_eq!(qmqpc(&edge, "Subject: 2\n\n", "r@x"), 0);
    assert_eq!((hub1.queued().len(), hub2.queued().len()), (1, 1));
    let m = &hub2.queued()[0];
    assert!(String::from_utf8_lossy(m.body_after_received()).ends_with("\nSubject: 2\n\n"));
    assert_eq!(m.sender(), b"a@edge.example");
    // All down: the last error, "connection refused".
    edge.control(
        "qmqpservers",
        &format!("127.0.0.1:{down}\n127.0.0.1:{p1}\n"),
    );
    assert_eq!(qmqpc(&edge, "x\n", "r@x"), 73);
    // A malformed envelope: 91, nothing sent.
    edge.control("qmqpservers", &format!("127.0.0.1:{p2}\n"));
    let mut c = user_cmd(&edge, &bin("qmail-qmqpc"));
    let (env_r, env_w) = nix::unistd::pipe().expect("pipe");
    fs::File::from(env_w)
        .write_all(b"Xa@x\0\0")
        .expect("envelope");
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(env_r));
    assert_eq!(c.status().expect("run").code(), Some(91));
    assert_eq!(hub2.queued().len(), 1);
}

#[test]
fn qmqpc_relays_the_servers_verdict() {
    let hub = user_home();
    script(&hub, "qmail-queue", "#!/bin/sh\ncat >/dev/null\nexit 31\n");
    let (_srv, p) = serve(&hub, "qmail-qmqpd", &[]);
    let edge = user_home();
    edge.control("qmqpservers", &format!("127.0.0.1:{p}\n"));
    assert_eq!(qmqpc(&edge, "x\n", "r@x"), 31);
    script(&hub, "qmail-queue", "#!/bin/sh\ncat >/dev/null\nexit 53\n");
    assert_eq!(qmqpc(&edge, "x\n", "r@x"), 71);
}

// -------------------------------------------------- QMTP from qmail-remote

#[test]
fn qmail_send_delivers_by_qmtp_to_qmtproutes_hosts() {
    let dest = user_home();
    dest.control("rcpthosts", "dest.example\n");
    let (_srv, port) = serve(&dest, "qmail-qmtpd", &[]);
    let h = delivery_home();
    h.control(
        "qmtproutes",
        &format!("dest.example:127.0.0.1:{port}\n.dest.example:127.0.0.1:{port}\n"),
    );
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: by qmtp\n\nhello\n",
        "s@testhost.example",
        &["u@dest.example"],
    );
    sys.wait_log("the QMTP delivery", |l| l.contains(": success: "));
    let q = dest.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].recipients(), vec![b"u@dest.example".to_vec()]);
    assert_eq!(q[0].sender(), b"s@testhost.example");
    let text = String::from_utf8_lossy(q[0].body_after_received()).to_string();
    assert!(text.contains(" with QMTP; "), "{text}");
    assert!(text.ends_with("\nSubject: by qmtp\n\nhello\n"), "{text}");
    let log = sys.lines();
    let ok = log
        .iter()
        .find(|l| l.contains(": success: "))
        .expect("success");
    assert!(
        ok.contains("127.0.0.1_accepted_message./Remote_host_said:_ok_"),
        "{ok}"
    );
    // A recipient qmail-qmtpd refuses: a permanent failure with its text, and a bounce.
    inject(
        &h,
        "Subject: refused\n\nx\n",
        "s@testhost.example",
        &["x@no.dest.example"],
    );
    sys.wait_log("the refusal", |l| l.contains(": failure: "));
    let log = sys.lines();
    let bad = log
        .iter()
        .find(|l| l.contains(": failure: "))
        .expect("failure");
    assert!(
        bad.contains("127.0.0.1_does_not_like_recipient./Remote_host_said:_sorry,_that_domain_isn't_in_my_list_of_allowed_rcpthosts_(#5.7.1)/"),
        "{bad}"
    );
    wait_until("the bounce", || {
        mail_texts(&h).iter().any(|m| m.contains("no.dest.example"))
    });
    assert_eq!(dest.queued().len(), 1);
}

// -------------------------------------------------------- the topology

/// A mini-qmail edge: qmail-smtpd under tcpserver, bin/qmail-queue a link to
/// qmail-qmqpc, control/qmqpservers listing `hubs` in order.
struct Edge {
    _home: Home,
    _srv: KillOnDrop,
    port: u16,
}

fn edge(hubs: &[u16]) -> Edge {
    let home = user_home();
    let q = home.path().join("bin/qmail-queue");
    fs::remove_file(&q).expect("rm qmail-queue");
    std::os::unix::fs::symlink(bin("qmail-qmqpc"), &q).expect("link");
    let servers: String = hubs.iter().map(|p| format!("127.0.0.1:{p}\n")).collect();
    home.control("qmqpservers", &servers);
    let (srv, port) = serve(&home, "qmail-smtpd", &[]);
    Edge {
        _home: home,
        _srv: srv,
        port,
    }
}

/// Sends one message with subject `tag` through SMTP; returns the reply to the dot.
fn send_smtp(port: u16, tag: &str) -> String {
    let mut c = Smtp::connect(port);
    c.reply();
    c.cmd("HELO client.example");
    assert_eq!(c.cmd("MAIL FROM:<client@client.example>"), vec!["250 ok"]);
    assert_eq!(c.cmd("RCPT TO:<user@testhost.example>"), vec!["250 ok"]);
    assert_eq!(c.cmd("DATA"), vec!["354 go ahead"]);
    let r = c.cmd(&format!("Subject: {tag}\r\n\r\n{tag}\r\n."));
    c.cmd("QUIT");
    r.join("\n")
}

fn count_tag(hubs: &[&Home], tag: &str) -> usize {
    let needle = format!("Subject: {tag}\n");
    hubs.iter()
        .map(|h| mail_texts(h).iter().filter(|m| m.contains(&needle)).count())
        .sum()
}

#[test]
fn mini_qmail_edges_feed_two_hubs_without_loss_or_duplicates() {
    let hub1 = delivery_home();
    let hub2 = delivery_home();
    let (srv1, p1) = serve(&hub1, "qmail-qmqpd", &[]);
    let (_srv2, p2) = serve(&hub2, "qmail-qmqpd", &[]);
    let sys2 = System::start(&hub2);
    // hub1's qmail-send is not running yet: what it accepts waits in its queue.
    let edges = [edge(&[p1, p2]), edge(&[p2, p1]), edge(&[p1, p2])];

    let mut tags = Vec::new();
    for round in 0..4 {
        for (i, e) in edges.iter().enumerate() {
            let tag = format!("t-{round}-{i}");
            let r = send_smtp(e.port, &tag);
            assert!(r.starts_with("250 ok "), "{tag}: {r}");
            tags.push(tag);
        }
    }
    let queued_at_hub1 = hub1.queued().len();
    assert_eq!(queued_at_hub1, 8, "edges 0 and 2 prefer hub1");

    // hub1's QMQP service stops: every edge keeps accepting, through hub2.
    drop(srv1);
    for round in 4..6 {
        for (i, e) in edges.iter().enumerate() {
            let tag = format!("t-{round}-{i}");
            let r = send_smtp(e.port, &tag);
            assert!(r.starts_with("250 ok "), "{tag}: {r}");
            tags.push(tag);
        }
    }
    assert_eq!(hub1.queued().len(), 8);

    // hub1 comes back (qmail-send started later): what it held is delivered.
    let sys1 = System::start(&hub1);
    let hubs = [&hub1, &hub2];
    wait_until("every message delivered", || {
        tags.iter().all(|t| count_tag(&hubs, t) >= 1)
    });
    wait_until("both queues empty", || {
        hub1.queue_files().is_empty() && hub2.queue_files().is_empty()
    });
    for t in &tags {
        assert_eq!(count_tag(&hubs, t), 1, "{t} delivered more than once");
    }
    let via = |h: &Home| {
        mail_texts(h)
            .iter()
            .filter(|m| m.contains(" with QMQP; ") && m.contains(" with SMTP; "))
            .count()
    };
    assert_eq!(via(&hub1) + via(&hub2), tags.len());
    assert_eq!(via(&hub1), 8);
    drop(sys1);
    drop(sys2);
}

#[test]
fn rqmail_install_lays_out_a_mini_qmail_home_that_sends_by_qmqp() {
    let hub = user_home();
    let (_srv, p) = serve(&hub, "qmail-qmqpd", &[]);
    let d = tempfile::tempdir().expect("tempdir");
    let mini = d.path().join("mini");
    let st = std::process::Command::new(bin("rqmail-install"))
        .env_clear()
        .arg("-M")
        .arg(&mini)
        .env("PATH", "/usr/bin:/bin")
        .status()
        .expect("rqmail-install");
    assert!(st.success());
    assert_eq!(
        fs::read_link(mini.join("bin/qmail-queue")).expect("link"),
        Path::new("qmail-qmqpc")
    );
    assert!(!mini.join("queue").exists() && !mini.join("bin/qmail-send").exists());
    let check = |home: &Path| {
        std::process::Command::new(bin("rqmail-install"))
            .env_clear()
            .args(["-c", "-M"])
            .arg(home)
            .output()
            .expect("check")
    };
    let out = check(&mini);
    assert_eq!(out.status.code(), Some(1), "no qmqpservers yet");
    assert!(String::from_utf8_lossy(&out.stdout).contains("qmqpservers"));
    fs::write(mini.join("control/me"), "edge.example\n").expect("me");
    fs::write(mini.join("control/qmqpservers"), format!("127.0.0.1:{p}\n")).expect("servers");
    assert_eq!(check(&mini).status.code(), Some(0));
    // qmail-inject in the mini home queues through the hub.
    if is_root() {
        chown_tree(&mini);
    }
    let mut c = user_cmd(&mini, &mini.join("bin/qmail-inject"));
    c.arg("r@far.example");
    let (code, _, err) = rqmail_tests::run_with_input(c, b"Subject: mini\n\nhi\n");
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let q = hub.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].recipients(), vec![b"r@far.example".to_vec()]);
    assert!(String::from_utf8_lossy(q[0].body_after_received()).contains("Subject: mini"));
}

#[test]
fn daemontools_run_scripts_for_qmqpd_and_qmtpd_are_valid_sh() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/daemontools");
    for (svc, port) in [("qmail-qmqpd", "628"), ("qmail-qmtpd", "209")] {
        for f in ["run", "log/run"] {
            let p = dir.join(svc).join(f);
            let st = std::process::Command::new("sh")
                .arg("-n")
                .arg(&p)
                .status()
                .expect("sh");
            assert!(st.success(), "{}", p.display());
            assert!(fs::metadata(&p).expect("stat").permissions().mode() & 0o111 != 0);
        }
        let run = fs::read_to_string(dir.join(svc).join("run")).expect("run");
        assert!(run.contains(&format!(":-{port}}}")), "{svc}: port {port}");
        assert!(run.contains(&format!("$QMAIL_HOME/bin/{svc}")), "{svc}");
    }
}

#[test]
fn qmail_remote_qmtp_reports_per_recipient() {
    let dest = user_home();
    dest.control("rcpthosts", "dest.example\n");
    let (_srv, port) = serve(&dest, "qmail-qmtpd", &[]);
    let h = user_home();
    let down = free_port();
    h.control(
        "qmtproutes",
        &format!("dest.example:127.0.0.1:{port}\ndown.example:127.0.0.1:{down}\n"),
    );
    let msg = h.path().join("msg");
    fs::write(&msg, "Subject: several\n\nno final newline").expect("msg");
    let run = |args: &[&str]| {
        let mut c = h.cmd("qmail-remote");
        c.args(args).stdin(fs::File::open(&msg).expect("open"));
        let out = c.output().expect("qmail-remote");
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stdout).replace('\0', "|")
    };
    let out = run(&[
        "dest.example",
        "s@testhost.example",
        "u@dest.example",
        "v@other.example",
        "w@dest.example",
    ]);
    let parts: Vec<&str> = out.split('|').collect();
    assert_eq!(parts[0], "r", "{out}");
    assert_eq!(
        parts[1],
        "h127.0.0.1 does not like recipient.\nRemote host said: sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\n"
    );
    assert_eq!(parts[2], "r");
    assert!(
        parts[3].starts_with("K127.0.0.1 accepted message.\nRemote host said: ok "),
        "{out}"
    );
    let q = dest.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(
        q[0].recipients(),
        vec![b"u@dest.example".to_vec(), b"w@dest.example".to_vec()]
    );
    // QMTP carries a partial final line as it is.
    assert!(q[0].body_after_received().ends_with(b"\nno final newline"));
    // Nobody listening: qmail-remote's usual temporary failure.
    let out = run(&["down.example", "s@x", "u@down.example"]);
    assert_eq!(
        out,
        "ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n|"
    );
}

/// A server under tcpserver that reads exactly `len` bytes, then writes `answer` and
/// closes (reading everything first, so that its close loses nothing it sent).
fn scripted_server(home: &Home, len: usize, answer: &str) -> (KillOnDrop, u16) {
    let script = format!("head -c {len} >/dev/null; printf '%s' '{answer}'");
    tcpserver_opts(
        home,
        &[],
        &[],
        &[Path::new("sh"), Path::new("-c"), Path::new(&script)],
    )
}

#[test]
fn clients_handle_servers_that_break_the_protocol() {
    // qmail-remote: a QMTP answer that is a netstring but not K, Z or D, and one that is
    // not a netstring, after the whole package was sent: a possible duplicate.
    let h = user_home();
    let msg = b"Subject: x\n\nbody\n";
    let mut pkg = ns(&[b"\n".as_slice(), msg].concat());
    pkg.extend(ns(b"s@x"));
    pkg.extend(ns(&ns(b"u@bad.example")));
    fs::write(h.path().join("msg"), msg).expect("msg");
    for (answer, why) in [
        ("3:Xab,", "QMTP: unintelligible answer "),
        ("3:Kab;", "QMTP: malformed answer "),
        ("", ""),
    ] {
        let (_srv, port) = scripted_server(&h, pkg.len(), answer);
        h.control("qmtproutes", &format!("bad.example:127.0.0.1:{port}\n"));
        let mut c = h.cmd("qmail-remote");
        c.args(["bad.example", "s@x", "u@bad.example"])
            .stdin(fs::File::open(h.path().join("msg")).expect("open"));
        let out = c.output().expect("qmail-remote");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "ZConnected to 127.0.0.1 but connection died. Possible duplicate! {why}(#4.4.2)\n\0"
            ),
            "answer {answer:?}"
        );
    }
    // qmail-qmqpc: a server that closes without an answer is exit 74, and the message is
    // not offered to the next server (it may have been queued).
    let hub = user_home();
    let (_good, p2) = serve(&hub, "qmail-qmqpd", &[]);
    let edge = user_home();
    let body = "x\n";
    let len = qmqp_request(body.as_bytes(), b"a@edge.example", &[b"r@x"]).len();
    let (_bad, p1) = scripted_server(&edge, len, "");
    edge.control("qmqpservers", &format!("127.0.0.1:{p1}\n127.0.0.1:{p2}\n"));
    assert_eq!(qmqpc(&edge, body, "r@x"), 74);
    assert!(hub.queued().is_empty());
}

#[test]
fn root_mode_servers_as_qmaild_through_setuid_qmail_queue() {
    if !is_root() {
        eprintln!("root_mode_servers_as_qmaild_through_setuid_qmail_queue: needs root");
        return;
    }
    let _g = crate::rootmode::lock_root_home();
    let home = crate::rootmode::install_root_home();
    fs::write(home.join("control/rcpthosts"), "roothost.example\n").expect("rcpthosts");
    let (qmaild, _) = rqmail_tests::user_ids("qmaild");
    let (qmailq, _) = rqmail_tests::user_ids("qmailq");
    let (_qmqp, p1) = tcpserver_as_qmaild(&home, "qmail-qmqpd", &[]);
    let (_qmtp, p2) = tcpserver_as_qmaild(&home, "qmail-qmtpd", &[]);
    assert_kok(&exchange(
        p1,
        &qmqp_request(
            b"Subject: qmqp as root\n\n",
            b"a@x",
            &[b"b@anywhere.example"],
        ),
    ));
    let reply = exchange(
        p2,
        &qmtp_package(
            b"\nSubject: qmtp as root\n\n",
            b"a@x",
            &[b"u@roothost.example", b"v@elsewhere.example"],
        ),
    );
    let control::netstring::Parsed::Done { content, rest } =
        control::netstring::parse(&reply, 1000).expect("netstring")
    else {
        panic!("partial answer {reply:?}");
    };
    assert!(content.starts_with(b"Kok "), "{reply:?}");
    assert_eq!(
        rest,
        b"66:Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1),"
    );
    let q = qmail_queue::Queue::in_home(&home);
    let mut texts = Vec::new();
    for e in fs::read_dir(home.join("queue/todo"))
        .expect("todo")
        .flatten()
    {
        let id: u64 = e.file_name().to_string_lossy().parse().expect("id");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(q.mess(id)).expect("mess").uid(), qmailq);
        let todo = fs::read(q.todo(id)).expect("todo");
        assert!(todo.starts_with(format!("u{qmaild}\0").as_bytes()));
        texts.push(fs::read_to_string(q.mess(id)).expect("mess"));
    }
    // In subject order: sorting the whole texts would order them by qmail-queue's pid
    // in the first Received line, which is no order at all.
    texts.sort_by_key(|t| t.contains("Subject: qmtp as root"));
    assert_eq!(texts.len(), 2);
    assert!(texts.iter().all(|t| t.contains(" invoked from network); ")));
    assert!(texts[0].contains(" with QMQP; ") && texts[0].contains("Subject: qmqp as root"));
    assert!(texts[1].contains(" with QMTP; ") && texts[1].contains("Subject: qmtp as root"));
}

// ------------------------------------------------------------------ confinement

/// (NoNewPrivs, Seccomp, CapBnd) of `pid`.
fn confinement(pid: i32) -> (String, String, String) {
    let st = rqmail_tests::proc_status(pid).expect("alive");
    (
        st["NoNewPrivs"].clone(),
        st["Seccomp"].clone(),
        st["CapBnd"].clone(),
    )
}

/// Connects to `port`, sends `head`, and returns the process of `server` (a tcpserver)
/// named `program` with the connection.
fn mid_request(server: &KillOnDrop, port: u16, program: &str, head: &[u8]) -> (i32, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s.write_all(head).expect("write");
    let pid = rqmail_tests::process::child_named(server.0.id() as i32, program);
    (pid, s)
}

/// Sends the rest of a request, half-closes and reads the answer.
fn finish(mut s: TcpStream, rest: &[u8]) -> Vec<u8> {
    s.write_all(rest).expect("write");
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// qmail-qmqpd(8), CONFINEMENT, in single-user mode: its qmail-queue runs before it
/// reads anything, outside the confinement; qmail-qmqpd itself has no_new_privs and a
/// seccomp filter while it reads the request, which is then queued.
#[test]
fn qmqpd_confines_itself_once_its_qmail_queue_runs() {
    let h = user_home();
    let (server, port) = serve(&h, "qmail-qmqpd", &[]);
    let req = qmqp_request(b"Subject: confined\n\nx\n", b"a@x", &[b"b@y.example"]);
    let (pid, s) = mid_request(&server, port, "qmail-qmqpd", &req[..4]);
    wait_until("qmail-qmqpd confined", || {
        let (nnp, sc, _) = confinement(pid);
        nnp == "1" && sc == "2"
    });
    let qq = rqmail_tests::process::child_named(pid, "qmail-queue");
    assert_eq!(confinement(qq).0, "0", "qmail-queue was started before");
    assert_kok(&finish(s, &req[4..]));
    assert_eq!(h.queued().len(), 1);
}

/// tcpserver started by setpriv as qmaild:nofiles with an empty capability bounding set
/// (on a port above 1023 it needs no capability), running `program`.
fn tcpserver_bounded(home: &Path, program: &str) -> (KillOnDrop, u16) {
    let port = free_port();
    let mut c = std::process::Command::new(rqmail_tests::tool("setpriv"));
    c.env_clear()
        .env("QMAIL_HOME", home)
        .args([
            "--bounding-set",
            "-all",
            "--reuid=qmaild",
            "--regid=nofiles",
        ])
        .arg("--clear-groups")
        .arg(rqmail_tests::tool("tcpserver"))
        .args(["-q", "-R", "-H", "-l", "roothost.example", "127.0.0.1"])
        .arg(port.to_string())
        .arg(home.join("bin").join(program))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let server = KillOnDrop(c.spawn().expect("tcpserver"));
    rqmail_tests::wait_for_port(port);
    (server, port)
}

/// qmail-qmqpd(8) and qmail-qmtpd(8), CONFINEMENT, in root mode: as qmaild under an
/// empty capability bounding set their setuid qmail-queue still queues as qmailq;
/// qmail-qmqpd adds no_new_privs and seccomp (its qmail-queue, started before, keeps
/// qmailq), qmail-qmtpd cannot.
#[test]
fn root_mode_servers_with_an_empty_bounding_set_still_queue_as_qmailq() {
    if !is_root() {
        eprintln!("root_mode_servers_with_an_empty_bounding_set_still_queue_as_qmailq: needs root");
        return;
    }
    let _g = crate::rootmode::lock_root_home();
    let home = crate::rootmode::install_root_home();
    fs::write(home.join("control/rcpthosts"), "roothost.example\n").expect("rcpthosts");
    let (qmailq, _) = rqmail_tests::user_ids("qmailq");
    let none = "0000000000000000".to_string();

    let (server, port) = tcpserver_bounded(&home, "qmail-qmqpd");
    let req = qmqp_request(
        b"Subject: bounded qmqp\n\n",
        b"a@x",
        &[b"b@anywhere.example"],
    );
    let (pid, s) = mid_request(&server, port, "qmail-qmqpd", &req[..4]);
    wait_until("qmail-qmqpd confined", || {
        confinement(pid) == ("1".into(), "2".into(), none.clone())
    });
    let qq = rqmail_tests::process::child_named(pid, "qmail-queue");
    let st = rqmail_tests::proc_status(qq).expect("qmail-queue alive");
    assert_eq!(st["NoNewPrivs"], "0");
    assert_eq!(st["CapBnd"], none);
    let euid = st["Uid"].split_whitespace().nth(1).map(str::to_string);
    assert_eq!(euid, Some(qmailq.to_string()), "setuid qmailq");
    assert_kok(&finish(s, &req[4..]));

    let (server, port) = tcpserver_bounded(&home, "qmail-qmtpd");
    let pkg = qmtp_package(
        b"\nSubject: bounded qmtp\n\n",
        b"a@x",
        &[b"u@roothost.example"],
    );
    let (pid, s) = mid_request(&server, port, "qmail-qmtpd", &pkg[..4]);
    assert_eq!(confinement(pid), ("0".into(), "0".into(), none.clone()));
    let reply = finish(s, &pkg[4..]);
    assert!(
        String::from_utf8_lossy(&reply).contains(":Kok "),
        "{reply:?}"
    );

    let q = qmail_queue::Queue::in_home(&home);
    let ids = crate::rootmode::todo_ids(&home);
    assert_eq!(ids.len(), 2);
    for id in ids {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(q.mess(id)).expect("mess").uid(), qmailq);
    }
}
