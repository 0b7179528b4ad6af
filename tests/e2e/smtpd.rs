//! qmail-smtpd driven as clients drive it: over stdin/stdout pipes, and over real TCP
//! connections through tcpserver with Python's smtplib; what it queues is checked byte
//! for byte in a real queue directory.

use rqmail_tests::{
    Home, Piped, Smtp, is_root, python, run_with_input, tcpserver, tcpserver_opts, user_ids,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

/// The connection facts most tests give qmail-smtpd (tcp-environ(5)).
const TCP_ENV: [(&str, &str); 4] = [
    ("TCPREMOTEIP", "192.0.2.7"),
    ("TCPREMOTEHOST", "client.example"),
    ("TCPREMOTEINFO", "joe"),
    ("TCPLOCALHOST", "mx.example"),
];

fn smtpd(home: &Home, env: &[(&str, &str)]) -> Command {
    let mut c = home.cmd("qmail-smtpd");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs a whole dialogue written in one go; returns (exit code, replies, stderr).
fn dialogue(home: &Home, env: &[(&str, &str)], input: &str) -> (i32, String, String) {
    let (code, out, err) = run_with_input(smtpd(home, env), input.as_bytes());
    (
        code,
        String::from_utf8(out).expect("utf8 replies"),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Writes an executable script into the home and returns its path.
fn script(home: &Home, name: &str, body: &str) -> std::path::PathBuf {
    let p = home.path().join(name);
    rqmail_tests::home::write_executable(&p, format!("#!/bin/sh\n{body}\n"));
    p
}

/// The qp (qmail-queue's pid) of a "250 ok TIME qp PID" reply.
fn qp_of(reply: &str) -> u32 {
    let words: Vec<&str> = reply.split_whitespace().collect();
    assert_eq!(&words[..2], ["250", "ok"], "{reply}");
    assert!(words[2].parse::<u64>().is_ok(), "{reply}");
    assert_eq!(words[3], "qp", "{reply}");
    words[4].parse().expect("qp")
}

/// Every date822 string for the seconds from `t0` to `t1`.
fn dates(t0: u64, t1: u64) -> Vec<String> {
    (t0..=t1).map(control::date822).collect()
}

/// Waits (as a hang guard, at most 20 s) until the queue holds no files: an abandoned
/// qmail-queue cleans up after itself once it sees the end of its input.
fn wait_queue_empty(home: &Home) {
    for _ in 0..400 {
        if home.queue_files().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("queue not empty: {:?}", home.queue_files());
}

const SEND: &str = "HELO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n";

#[test]
fn stdio_dialogue_replies_exactly() {
    let home = Home::new();
    let (code, out, err) = dialogue(
        &home,
        &TCP_ENV,
        "EHLO client.example\r\nHELP\r\nVRFY x\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRSET\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.split_inclusive("\r\n").collect();
    assert_eq!(
        lines[..13].concat(),
        "220 testhost.example ESMTP\r\n\
         250-testhost.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n\
         214 netqmail home page: http://qmail.org/netqmail\r\n\
         252 send some mail, i'll try my best\r\n\
         250 ok\r\n250 ok\r\n250 ok\r\n250 flushed\r\n250 ok\r\n250 ok\r\n\
         354 go ahead\r\n"
    );
    qp_of(lines[13]);
    assert_eq!(lines[14], "221 testhost.example\r\n");
    assert_eq!(lines.len(), 15);
    assert_eq!(home.queued().len(), 1);
    assert_eq!(err, "");
}

#[test]
fn smtpgreeting_is_used_for_220_250_221() {
    let home = Home::new();
    home.control("smtpgreeting", "greet.example here we are\n");
    let (code, out, _) = dialogue(&home, &[], "HELO x\r\nQUIT\r\n");
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "220 greet.example here we are ESMTP\r\n250 greet.example here we are\r\n221 greet.example here we are\r\n"
    );
}

#[test]
fn queued_message_is_byte_exact() {
    let home = Home::new();
    let t0 = control::now();
    let (code, out, _) = dialogue(
        &home,
        &TCP_ENV,
        "HELO Other.Name\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<\"e f\"@g.example>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\nline\rcr\r\n.\r\nQUIT\r\n",
    );
    let t1 = control::now();
    assert_eq!(code, 0, "{out}");
    let reply = out.lines().nth(6).expect("DATA reply");
    let qp = qp_of(reply);
    let q = home.queued();
    assert_eq!(q.len(), 1);
    let m = &q[0];
    let uid = nix::unistd::getuid().as_raw();
    let mut want = Vec::new();
    for d1 in dates(t0, t1) {
        for d2 in dates(t0, t1) {
            want.push(format!(
                "Received: (qmail {qp} invoked by uid {uid}); {d1}\n\
                 Received: from client.example (HELO Other.Name) (joe@192.0.2.7)\n  by mx.example with SMTP; {d2}\n\
                 Subject: x\n\n.dot\nline\rcr\n"
            ));
        }
    }
    let got = String::from_utf8(m.mess.clone()).expect("utf8");
    assert!(want.contains(&got), "mess was {got:?}");
    assert_eq!(
        m.todo,
        format!("u{uid}\0p{qp}\0Fa@b.example\0Tc@d.example\0Te f@g.example\0").into_bytes()
    );
}

#[test]
fn helo_equal_to_remote_host_is_not_repeated() {
    let home = Home::new();
    let (code, _, _) = dialogue(
        &home,
        &TCP_ENV,
        &SEND.replace("client.example", "CLIENT.example"),
    );
    assert_eq!(code, 0);
    let body = home.queued()[0].body_after_received().to_vec();
    assert!(
        body.starts_with(
            b"Received: from client.example (joe@192.0.2.7)\n  by mx.example with SMTP; "
        ),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn smtplib_over_tcp_through_tcpserver() {
    let home = Home::new();
    let smtpd = home.path().join("bin/qmail-smtpd");
    let (_server, port) = tcpserver(&home, &[], &[&smtpd]);
    let script = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.example", timeout=30)
code, msg = s.ehlo()
print(code, msg.decode().replace("\n", "|"))
print(sorted(s.esmtp_features))
r = s.sendmail("sender@client.example", ["one@d.example", "two@d.example"],
               "Subject: hello\r\n\r\nline 1\r\n.leading dot\r\n")
print("refused", r)
code, msg = s.docmd("VRFY", "x")
print(code, msg.decode())
print(s.quit())
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "250 testhost.example|PIPELINING|8BITMIME");
    assert_eq!(lines[1], "['8bitmime', 'pipelining']");
    assert_eq!(lines[2], "refused {}");
    assert_eq!(lines[3], "252 send some mail, i'll try my best");
    assert_eq!(lines[4], "(221, b'testhost.example')");
    let q = home.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender(), b"sender@client.example");
    assert_eq!(
        q[0].recipients(),
        vec![b"one@d.example".to_vec(), b"two@d.example".to_vec()]
    );
    let body = String::from_utf8(q[0].body_after_received().to_vec()).expect("utf8");
    // tcpserver -H -R -l testhost.example: no remote name or ident, the local name given
    assert!(
        body.starts_with("Received: from unknown (HELO client.example) (127.0.0.1)\n  by testhost.example with SMTP; "),
        "{body}"
    );
    assert!(
        body.ends_with("\nSubject: hello\n\nline 1\n.leading dot\n"),
        "{body}"
    );
}

#[test]
fn pipelined_commands_over_tcp() {
    let home = Home::new();
    let smtpd = home.path().join("bin/qmail-smtpd");
    let (_server, port) = tcpserver(&home, &[], &[&smtpd]);
    let mut c = Smtp::connect(port);
    assert_eq!(c.reply(), vec!["220 testhost.example ESMTP"]);
    c.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\nDATA\r\n");
    assert_eq!(
        c.reply(),
        vec!["250-testhost.example", "250-PIPELINING", "250 8BITMIME"]
    );
    for _ in 0..3 {
        assert_eq!(c.reply(), vec!["250 ok"]);
    }
    assert_eq!(c.reply(), vec!["354 go ahead"]);
    c.send(b"Subject: p\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n");
    qp_of(&c.reply()[0]);
    assert_eq!(c.reply(), vec!["250 flushed"]);
    assert_eq!(c.reply(), vec!["250 ok"]);
    assert_eq!(c.reply(), vec!["221 testhost.example"]);
    let q = home.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].recipients(), vec![b"x@y".to_vec(), b"z@y".to_vec()]);
}

#[test]
fn unreadable_control_file_gives_421() {
    let home = Home::new();
    fs::create_dir(home.path().join("control/rcpthosts")).expect("mkdir");
    let (code, out, err) = dialogue(&home, &[], "HELO x\r\n");
    assert_eq!(code, 1);
    assert_eq!(out, "421 unable to read controls (#4.3.0)\r\n");
    assert!(err.contains("rcpthosts"), "{err}");
}

#[test]
fn unreadable_control_file_as_unprivileged_user_gives_421() {
    // As root, the server runs as nobody (root could read a mode 000 file); otherwise it
    // runs as the invoking user, who is unprivileged already.
    let home = Home::new();
    home.control("badmailfrom", "@bad.example\n");
    let ids = unprivileged(&home);
    let bmf = home.path().join("control/badmailfrom");
    fs::set_permissions(&bmf, fs::Permissions::from_mode(0o000)).expect("chmod");
    let (code, out, err) = run_with_input(smtpd_as(&home, ids), b"HELO x\r\n");
    assert_eq!(code, 1);
    assert_eq!(out, b"421 unable to read controls (#4.3.0)\r\n");
    assert!(String::from_utf8_lossy(&err).contains("badmailfrom"));
    // readable again: the same user gets the greeting
    fs::set_permissions(&bmf, fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, out, _) = run_with_input(smtpd_as(&home, ids), b"QUIT\r\n");
    assert_eq!(code, 0);
    assert_eq!(
        out,
        b"220 testhost.example ESMTP\r\n221 testhost.example\r\n"
    );
}

/// The unprivileged user the server runs as: nobody (the home handed over to it) when
/// the tests run as root, the invoking user otherwise.
fn unprivileged(home: &Home) -> (u32, u32) {
    if is_root() {
        let (uid, gid) = user_ids("nobody");
        home.chown_all(uid, gid);
        (uid, gid)
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    }
}

/// qmail-smtpd run as `uid` (through setpriv when that is not us).
fn smtpd_as(home: &Home, (uid, gid): (u32, u32)) -> Command {
    if uid == nix::unistd::getuid().as_raw() {
        return smtpd(home, &[]);
    }
    let mut c = Command::new(rqmail_tests::tool("setpriv"));
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(rqmail_tests::bin("qmail-smtpd"))
        .env_clear()
        .env("QMAIL_HOME", home.path())
        .current_dir("/");
    c
}

#[test]
fn no_greeting_and_no_me_gives_421() {
    let home = Home::new();
    home.remove_control("me");
    let (code, out, _) = dialogue(&home, &[], "QUIT\r\n");
    assert_eq!(code, 1);
    assert_eq!(out, "421 unable to read controls (#4.3.0)\r\n");
}

#[test]
fn missing_home_gives_421() {
    let home = Home::new();
    let mut c = smtpd(&home, &[]);
    c.env("QMAIL_HOME", home.path().join("nonexistent"));
    let (code, out, _) = run_with_input(c, b"QUIT\r\n");
    assert_eq!(code, 1);
    assert_eq!(out, b"421 unable to read controls (#4.3.0)\r\n");
}

/// Sends one message and returns the reply to the final dot.
fn send_one(home: &Home, env: &[(&str, &str)], body: &str) -> (i32, String) {
    let input = format!(
        "HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n{body}.\r\nQUIT\r\n"
    );
    let (code, out, _) = dialogue(home, env, &input);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.get(4), Some(&"354 go ahead"), "{out}");
    (
        code,
        lines.get(5).map(|s| s.to_string()).unwrap_or_default(),
    )
}

#[test]
fn missing_qmail_queue_gives_451() {
    let home = Home::new();
    fs::remove_file(home.path().join("bin/qmail-queue")).expect("rm qmail-queue");
    let (code, reply) = send_one(&home, &[], "x\r\n");
    assert_eq!(code, 0);
    assert_eq!(reply, "451 unable to exec qq (#4.3.0)");
}

#[test]
fn qmailqueue_exit_53_gives_451() {
    let home = Home::new();
    let qq = script(&home, "qq53", "cat >/dev/null\nexit 53");
    let qq = qq.to_str().expect("path");
    let (code, reply) = send_one(&home, &[("QMAILQUEUE", qq)], "x\r\n");
    assert_eq!(code, 0);
    assert_eq!(reply, "451 qq write error or disk full (#4.3.0)");
    assert!(home.queued().is_empty());
}

#[test]
fn qmailqueue_exit_31_gives_554() {
    let home = Home::new();
    let qq = script(&home, "qq31", "exit 31");
    let qq = qq.to_str().expect("path");
    let (code, reply) = send_one(&home, &[("QMAILQUEUE", qq)], "x\r\n");
    assert_eq!(code, 0);
    assert_eq!(
        reply,
        "554 mail server permanently rejected message (#5.3.0)"
    );
}

#[test]
fn qmailqueue_gets_message_and_envelope() {
    let home = Home::new();
    let qq = script(
        &home,
        "qqcopy",
        "cat > \"$0.msg\"\ncat <&1 > \"$0.env\"\nexit 0",
    );
    let (code, reply) = send_one(
        &home,
        &[("QMAILQUEUE", qq.to_str().expect("path"))],
        "hello\r\n",
    );
    assert_eq!(code, 0);
    qp_of(&reply);
    let env = fs::read(home.path().join("qqcopy.env")).expect("env");
    assert_eq!(env, b"Fa@b.example\0Tc@d.example\0\0");
    let msg = fs::read(home.path().join("qqcopy.msg")).expect("msg");
    assert!(
        msg.starts_with(b"Received: from unknown (HELO c) (unknown)\n  by unknown with SMTP; ")
    );
    assert!(msg.ends_with(b"\nhello\n"));
}

#[test]
fn databytes_over_limit_gives_552() {
    let home = Home::new();
    home.control("databytes", "20\n");
    let (_, reply) = send_one(&home, &[], "0123456789012345678\r\n");
    qp_of(&reply);
    let (_, reply) = send_one(&home, &[], "01234567890123456789\r\n");
    assert_eq!(
        reply,
        "552 sorry, that message size exceeds my databytes limit (#5.3.4)"
    );
    // DATABYTES overrides control/databytes
    let (_, reply) = send_one(&home, &[("DATABYTES", "0")], "01234567890123456789\r\n");
    qp_of(&reply);
    let (_, reply) = send_one(&home, &[("DATABYTES", "5")], "12345\r\n");
    assert!(reply.starts_with("552 "), "{reply}");
    assert_eq!(home.queued().len(), 2);
}

#[test]
fn bare_lf_in_data_gives_451_and_closes() {
    let home = Home::new();
    let mut c = Smtp::new(Piped::start(smtpd(&home, &[]), Duration::from_secs(60)));
    c.reply();
    c.cmd("MAIL FROM:<a@b>");
    c.cmd("RCPT TO:<c@d>");
    assert_eq!(c.cmd("DATA"), vec!["354 go ahead"]);
    c.send(b"Subject: x\r\n\r\nbare\nline\r\n.\r\n");
    assert_eq!(
        c.reply(),
        vec!["451 See http://pobox.com/~djb/docs/smtplf.html."]
    );
    assert!(c.get_mut().at_eof());
    assert_eq!(c.get_mut().wait(), 1);
    wait_queue_empty(&home);
    assert!(home.queued().is_empty());
}

#[test]
fn rcpthosts_absent_allows_relaying() {
    let home = Home::new();
    let (_, out, _) = dialogue(
        &home,
        &[],
        "MAIL FROM:<a@b>\r\nRCPT TO:<x@anywhere.example>\r\n",
    );
    assert_eq!(out, "220 testhost.example ESMTP\r\n250 ok\r\n250 ok\r\n");
}

#[test]
fn rcpthosts_present_refuses_other_domains() {
    let home = Home::new();
    home.control("rcpthosts", "testhost.example\n.hosted.example\n");
    let (_, out, _) = dialogue(
        &home,
        &[],
        "MAIL FROM:<a@b>\r\nRCPT TO:<x@anywhere.example>\r\nRCPT TO:<x@testhost.example>\r\nRCPT TO:<x@a.hosted.example>\r\nRCPT TO:<postmaster>\r\n",
    );
    assert_eq!(
        out,
        "220 testhost.example ESMTP\r\n250 ok\r\n\
         553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n\
         250 ok\r\n250 ok\r\n250 ok\r\n"
    );
}

#[test]
fn morercpthosts_cdb_is_consulted() {
    let home = Home::new();
    home.control("rcpthosts", "testhost.example\n");
    control::write_cdb(
        &home.path().join("control/morercpthosts.cdb"),
        &home.path().join("control/morercpthosts.tmp"),
        [(&b"more.example"[..], &b""[..])],
    )
    .expect("cdb");
    let (_, out, _) = dialogue(
        &home,
        &[],
        "MAIL FROM:<a@b>\r\nRCPT TO:<x@more.example>\r\nRCPT TO:<x@less.example>\r\n",
    );
    assert!(out.ends_with("250 ok\r\n250 ok\r\n553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n"), "{out}");
}

#[test]
fn relayclient_bypasses_rcpthosts_and_is_appended() {
    let home = Home::new();
    home.control("rcpthosts", "testhost.example\n");
    let input = "MAIL FROM:<a@b>\r\nRCPT TO:<x@anywhere.example>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n";
    let (code, out, _) = dialogue(&home, &[("RELAYCLIENT", "")], input);
    assert_eq!(code, 0, "{out}");
    let (code, _, _) = dialogue(&home, &[("RELAYCLIENT", "-suffix")], input);
    assert_eq!(code, 0);
    let q = home.queued();
    assert_eq!(q.len(), 2);
    let mut rcpts: Vec<Vec<u8>> = q.iter().flat_map(|m| m.recipients()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        vec![
            b"x@anywhere.example".to_vec(),
            b"x@anywhere.example-suffix".to_vec()
        ]
    );
}

#[test]
fn badmailfrom_gives_553_at_rcpt() {
    let home = Home::new();
    home.control("badmailfrom", "spammer@bad.example\n@worse.example\n");
    let (_, out, _) = dialogue(
        &home,
        &[],
        "MAIL FROM:<Spammer@Bad.Example>\r\nRCPT TO:<x@y>\r\nMAIL FROM:<any@worse.example>\r\nRCPT TO:<x@y>\r\nMAIL FROM:<ok@good.example>\r\nRCPT TO:<x@y>\r\n",
    );
    let bmf = "553 sorry, your envelope sender is in my badmailfrom list (#5.7.1)\r\n";
    assert_eq!(
        out,
        format!("220 testhost.example ESMTP\r\n250 ok\r\n{bmf}250 ok\r\n{bmf}250 ok\r\n250 ok\r\n")
    );
}

#[test]
fn too_many_hops_gives_554() {
    let home = Home::new();
    let (_, reply) = send_one(&home, &[], &"Received: x\r\n".repeat(99));
    qp_of(&reply);
    let mut body = "Received: x\r\n".repeat(60);
    body.push_str(&"Delivered-To: y\r\n".repeat(40));
    let (_, reply) = send_one(&home, &[], &body);
    assert_eq!(reply, "554 too many hops, this message is looping (#5.4.6)");
    // in the body they do not count
    let mut body = "Subject: s\r\n\r\n".to_string();
    body.push_str(&"Received: x\r\n".repeat(150));
    let (_, reply) = send_one(&home, &[], &body);
    qp_of(&reply);
    assert_eq!(home.queued().len(), 2);
}

#[test]
fn timeoutsmtpd_gives_451_timeout() {
    let home = Home::new();
    home.control("timeoutsmtpd", "1\n");
    let mut c = Smtp::new(Piped::start(smtpd(&home, &[]), Duration::from_secs(60)));
    assert_eq!(c.reply(), vec!["220 testhost.example ESMTP"]);
    assert_eq!(c.cmd("NOOP"), vec!["250 ok"]);
    // say nothing: the server gives up
    assert_eq!(c.reply(), vec!["451 timeout (#4.4.2)"]);
    assert!(c.get_mut().at_eof());
    assert_eq!(c.get_mut().wait(), 1);
}

#[test]
fn timeout_in_data_leaves_nothing_queued() {
    let home = Home::new();
    home.control("timeoutsmtpd", "1\n");
    let mut c = Smtp::new(Piped::start(smtpd(&home, &[]), Duration::from_secs(60)));
    c.reply();
    c.cmd("MAIL FROM:<a@b>");
    c.cmd("RCPT TO:<c@d>");
    assert_eq!(c.cmd("DATA"), vec!["354 go ahead"]);
    c.send(b"Subject: partial\r\n");
    assert_eq!(c.reply(), vec!["451 timeout (#4.4.2)"]);
    assert_eq!(c.get_mut().wait(), 1);
    wait_queue_empty(&home);
}

/// A client dripping one byte a second never meets timeoutsmtpd (5 s here), but
/// control/timeoutsession (3 s) ends the session with a 451, over a real socket; the
/// message it was dripping is not queued.
#[test]
fn timeoutsession_ends_a_dripping_session() {
    let home = Home::new();
    home.control("timeoutsmtpd", "5\n");
    home.control("timeoutsession", "3\n");
    let smtpd = home.path().join("bin/qmail-smtpd");
    let (_server, port) = tcpserver(&home, &[], &[&smtpd]);
    for in_data in [false, true] {
        let t0 = std::time::Instant::now();
        let mut c = Smtp::connect(port);
        assert_eq!(c.reply(), vec!["220 testhost.example ESMTP"]);
        let drip: &[u8] = if in_data {
            assert_eq!(c.cmd("HELO c"), vec!["250 testhost.example"]);
            assert_eq!(c.cmd("MAIL FROM:<a@b>"), vec!["250 ok"]);
            assert_eq!(c.cmd("RCPT TO:<c@d>"), vec!["250 ok"]);
            assert_eq!(c.cmd("DATA"), vec!["354 go ahead"]);
            b"Subject: drip\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        } else {
            b"MAIL FROM:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b>\r\n"
        };
        let mut w = c.get_mut().try_clone().expect("clone");
        let drip = drip.to_vec();
        let dripper = std::thread::spawn(move || {
            use std::io::Write;
            for b in drip {
                if w.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        assert_eq!(c.reply(), vec!["451 session time limit reached (#4.4.2)"]);
        assert!(t0.elapsed() >= Duration::from_secs(3));
        let mut rest = Vec::new();
        use std::io::Read;
        let _ = c.get_mut().read_to_end(&mut rest);
        assert!(rest.is_empty(), "{rest:?}");
        drop(c);
        dripper.join().expect("dripper");
    }
    assert!(home.queued().is_empty());
}

/// Without control/timeoutsession (netqmail's behaviour) there is no session deadline:
/// a session outlasts several timeoutsmtpd periods.
#[test]
fn timeoutsession_is_off_by_default() {
    let home = Home::new();
    home.control("timeoutsmtpd", "2\n");
    let mut c = Smtp::new(Piped::start(smtpd(&home, &[]), Duration::from_secs(60)));
    assert_eq!(c.reply(), vec!["220 testhost.example ESMTP"]);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(c.cmd("NOOP"), vec!["250 ok"]);
    }
    assert_eq!(c.cmd("QUIT"), vec!["221 testhost.example"]);
    assert_eq!(c.get_mut().wait(), 0);
}

#[test]
fn replies_502_503_555() {
    let home = Home::new();
    let long = "a".repeat(900);
    let (code, out, _) = dialogue(
        &home,
        &[],
        &format!(
            "EXPN x\r\nSTARTTLS\r\n\r\nRCPT TO:<a@b>\r\nDATA\r\nMAIL FROM:<{long}>\r\nMAIL FROM:<>\r\nDATA\r\nRCPT TO:<{long}>\r\n"
        ),
    );
    assert_eq!(code, 1, "input ended without QUIT");
    assert_eq!(
        out,
        "220 testhost.example ESMTP\r\n\
         502 unimplemented (#5.5.1)\r\n502 unimplemented (#5.5.1)\r\n502 unimplemented (#5.5.1)\r\n\
         503 MAIL first (#5.5.1)\r\n503 MAIL first (#5.5.1)\r\n\
         555 syntax error (#5.5.4)\r\n250 ok\r\n503 RCPT first (#5.5.1)\r\n\
         555 syntax error (#5.5.4)\r\n"
    );
}

#[test]
fn rset_forgets_sender_and_recipients() {
    let home = Home::new();
    let (_, out, _) = dialogue(
        &home,
        &[],
        "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRSET\r\nDATA\r\nRCPT TO:<c@d>\r\nMAIL FROM:<e@f>\r\nDATA\r\nRCPT TO:<g@h>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1..9],
        [
            "250 ok",
            "250 ok",
            "250 flushed",
            "503 MAIL first (#5.5.1)",
            "503 MAIL first (#5.5.1)",
            "250 ok",
            "503 RCPT first (#5.5.1)",
            "250 ok"
        ]
    );
    let q = home.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender(), b"e@f");
    assert_eq!(q[0].recipients(), vec![b"g@h".to_vec()]);
}

#[test]
fn local_ip_literal_becomes_localiphost() {
    let home = Home::new();
    home.control("localiphost", "lip.example\n");
    home.control("rcpthosts", "lip.example\n");
    let (code, out, _) = dialogue(
        &home,
        &[],
        "MAIL FROM:<a@b>\r\nRCPT TO:<u@[127.0.0.1]>\r\nRCPT TO:<u@[192.0.2.99]>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("250 ok\r\n553 sorry, that domain isn't in my list"),
        "{out}"
    );
    assert_eq!(
        home.queued()[0].recipients(),
        vec![b"u@lip.example".to_vec()]
    );
}

#[test]
fn overlong_command_line_gives_500() {
    let home = Home::new();
    let (code, out, _) = dialogue(
        &home,
        &[],
        &format!("NOOP {}\r\nNOOP\r\nQUIT\r\n", "x".repeat(20000)),
    );
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "220 testhost.example ESMTP\r\n500 command line too long (#5.5.2)\r\n250 ok\r\n221 testhost.example\r\n"
    );
}

#[test]
fn arguments_are_accepted_and_ignored() {
    let home = Home::new();
    let mut c = smtpd(&home, &[]);
    c.args(["mx.example", "/bin/checkpassword", "/bin/true"]);
    let (code, out, _) = run_with_input(c, b"QUIT\r\n");
    assert_eq!(code, 0);
    assert_eq!(
        out,
        b"220 testhost.example ESMTP\r\n221 testhost.example\r\n"
    );
}

#[test]
fn eof_without_quit_exits_1() {
    let home = Home::new();
    let (code, out, _) = dialogue(&home, &[], "NOOP\r\nNOOP");
    assert_eq!(code, 1);
    assert_eq!(out, "220 testhost.example ESMTP\r\n250 ok\r\n");
}

#[test]
fn single_user_mode_as_nobody_through_tcpserver() {
    // As root, tcpserver switches to nobody for each connection (-u/-g); otherwise the
    // server simply runs as the invoking, unprivileged user.
    let home = Home::new();
    let (uid, gid) = unprivileged(&home);
    let smtpd = home.path().join("bin/qmail-smtpd");
    let (u, g) = (uid.to_string(), gid.to_string());
    let opts: Vec<&str> = if is_root() {
        vec!["-u", &u, "-g", &g]
    } else {
        vec![]
    };
    let (_server, port) = tcpserver_opts(&home, &[], &opts, &[&smtpd]);
    let mut c = Smtp::connect(port);
    assert_eq!(c.reply(), vec!["220 testhost.example ESMTP"]);
    assert_eq!(c.cmd("HELO c"), vec!["250 testhost.example"]);
    assert_eq!(c.cmd("MAIL FROM:<a@b>"), vec!["250 ok"]);
    assert_eq!(c.cmd("RCPT TO:<c@d>"), vec!["250 ok"]);
    assert_eq!(c.cmd("DATA"), vec!["354 go ahead"]);
    let reply = c.cmd("hi\r\n.");
    let qp = qp_of(&reply[0]);
    assert_eq!(c.cmd("QUIT"), vec!["221 testhost.example"]);
    let q = home.queued();
    assert_eq!(q.len(), 1);
    let m = String::from_utf8(q[0].mess.clone()).expect("utf8");
    assert!(
        m.starts_with(&format!("Received: (qmail {qp} invoked by uid {uid}); ")),
        "{m}"
    );
    assert!(q[0].todo.starts_with(format!("u{uid}\0p{qp}\0").as_bytes()));
    // the files belong to the unprivileged user
    use std::os::unix::fs::MetadataExt;
    let todo = home.queue().join("todo").join(q[0].id.to_string());
    assert_eq!(fs::metadata(todo).expect("todo").uid(), uid);
}

#[test]
fn stderr_is_kept_off_the_connection() {
    // Under inetd, descriptor 2 is the client's socket: diagnostics must not go there.
    let home = Home::new();
    fs::create_dir(home.path().join("control/badmailfrom")).expect("mkdir");
    // fd 2 = fd 1
    let sh = format!("exec {} 2>&1", rqmail_tests::bin("qmail-smtpd").display());
    let mut c2 = Command::new("/bin/sh");
    c2.arg("-c")
        .arg(sh)
        .env_clear()
        .env("QMAIL_HOME", home.path());
    let (code, out, _) = run_with_input(c2, b"QUIT\r\n");
    assert_eq!(code, 1);
    assert_eq!(out, b"421 unable to read controls (#4.3.0)\r\n");
}
