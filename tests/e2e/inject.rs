//! qmail-inject, sendmail, predate and datemail as users run them: a message on standard
//! input, options and environment variables, control files in a qmail home of their own,
//! and the real qmail-queue writing a real queue (or $QMAILQUEUE pointing at a script).

use rqmail_tests::home::write_executable;
use rqmail_tests::{Home, Queued, bin, is_root, run_with_input, user_ids};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// qmail-inject (or another program of the home) with `args` and extra environment;
/// returns (exit code, stdout, stderr, pid).
fn run(home: &Home, prog: &str, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Out {
    let mut c = home.cmd(prog);
    c.args(args).env("USER", "joe");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let o = child.wait_with_output().expect("wait");
    let _ = w.join();
    Out {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
        pid,
    }
}

/// A program of the home's bin/ called by its path there (as `mailq` would be).
fn run_path(home: &Home, path: &Path, args: &[&str]) -> Out {
    let mut c = Command::new(path);
    c.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAIL_HOME", home.path());
    let (code, out, err) = run_with_input(c, b"");
    Out {
        code,
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
        pid: 0,
    }
}

struct Out {
    code: i32,
    out: String,
    err: String,
    pid: u32,
}

fn inject(home: &Home, args: &[&str], env: &[(&str, &str)], input: &str) -> Out {
    run(home, "qmail-inject", args, env, input.as_bytes())
}

fn only(home: &Home) -> Queued {
    let q = home.queued();
    assert_eq!(q.len(), 1, "expected exactly one queued message");
    q.into_iter().next().expect("one")
}

fn strs(v: Vec<Vec<u8>>) -> Vec<String> {
    v.into_iter()
        .map(|r| String::from_utf8(r).expect("utf8"))
        .collect()
}

fn text(q: &Queued) -> String {
    String::from_utf8_lossy(q.body_after_received()).into_owned()
}

/// The value of the first header field `name` in `msg`.
fn field<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let header = msg.split("\n\n").next().unwrap_or("");
    header
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

/// Writes the shell script `body` as the executable `path`.
fn script(path: &Path, body: &str) {
    write_executable(path, format!("#!/bin/sh\n{body}"));
}

/// YYYYMMDDhhmmss in UTC as a number, the way Message-IDs start.
fn stamp(secs: u64) -> u64 {
    let t = control::tm(secs);
    format!(
        "{}{:02}{:02}{:02}{:02}{:02}",
        t.year, t.month, t.day, t.hour, t.min, t.sec
    )
    .parse()
    .expect("number")
}

#[test]
fn explicit_recipients_are_queued_with_completed_header() {
    let home = Home::new();
    let before = control::now();
    let o = inject(
        &home,
        &["friend@example.org", "localuser", "x@relay"],
        &[],
        "Subject: hello\n\nfirst line\nlast line without newline",
    );
    let after = control::now();
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.err, "");
    let q = only(&home);
    assert_eq!(q.sender(), b"joe@testhost.example");
    assert_eq!(
        strs(q.recipients()),
        [
            "friend@example.org",
            "localuser@testhost.example",
            "x@relay.testhost.example"
        ]
    );
    let m = text(&q);
    // The added fields, in netqmail's order, then the message's own.
    let names: Vec<&str> = m
        .split("\n\n")
        .next()
        .expect("header")
        .lines()
        .map(|l| l.split(':').next().expect("name"))
        .collect();
    assert_eq!(names, ["Date", "Message-ID", "From", "Cc", "Subject"]);
    assert!(
        m.ends_with("\n\nfirst line\nlast line without newline\n"),
        "{m}"
    );
    assert_eq!(field(&m, "From"), Some("joe@testhost.example"));
    assert_eq!(field(&m, "Cc"), Some("recipient list not shown: ;"));

    // Date: "26 Sep 1995 04:46:53 -0000", now, in UTC.
    let date = field(&m, "Date").expect("Date");
    assert!(
        (before..=after).any(|t| date == control::date822(t)),
        "{date}"
    );
    // Message-ID: <YYYYMMDDhhmmss.PID.qmail@IDHOST>
    let id = field(&m, "Message-ID").expect("Message-ID");
    let inner = id
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix(".qmail@testhost.example>"))
        .unwrap_or_else(|| panic!("{id}"));
    let (ts, pid) = inner.split_once('.').expect("two numbers");
    assert_eq!(ts.len(), 14, "{id}");
    let ts: u64 = ts.parse().expect("digits");
    assert!(stamp(before) <= ts && ts <= stamp(after), "{id}");
    assert_eq!(pid, o.pid.to_string());
}

#[test]
fn recipients_from_header_and_bcc_is_removed() {
    let home = Home::new();
    let o = inject(
        &home,
        &[],
        &[],
        "From: Joe <joe@example.com>\nTo: a@example.org, \"B\" <b>\nCc: c@example.net\n\
         Bcc: hidden@example.com, secret\nSubject: s\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let q = only(&home);
    let mut r = strs(q.recipients());
    r.sort();
    assert_eq!(
        r,
        [
            "a@example.org",
            "b@testhost.example",
            "c@example.net",
            "hidden@example.com",
            "secret@testhost.example"
        ]
    );
    let m = text(&q);
    assert!(!m.contains("Bcc"), "{m}");
    assert!(!m.contains("hidden") && !m.contains("secret"), "{m}");
    assert!(
        m.contains("\nTo: a@example.org, \"B\" <b@testhost.example>\nCc: c@example.net\n"),
        "{m}"
    );
    assert_eq!(field(&m, "From"), Some("Joe <joe@example.com>"));
    // The sender is the invoking user, not From.
    assert_eq!(q.sender(), b"joe@testhost.example");
}

#[test]
fn print_mode_output_byte_for_byte() {
    let home = Home::new();
    let input = "From: me@example.com\nDate: 1 Jan 2000 00:00:00 -0000\nMessage-ID: <a@b>\n\
                 To: you,  someone@else (Some One)\nReturn-Path: <bounce@x.y>\n\
                 Content-Length: 12\nX-Folded: one\n\ttwo\n\nbody\n";
    let o = inject(&home, &["-n"], &[], input);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        "Return-Path: <bounce@x.y>\n\
         From: me@example.com\n\
         Date: 1 Jan 2000 00:00:00 -0000\n\
         Message-ID: <a@b>\n\
         To: you@testhost.example, someone@else.testhost.example (Some One)\n\
         X-Folded: one\n\ttwo\n\
         \n\
         body\n"
    );
    assert!(home.queued().is_empty(), "-n queues nothing");

    // Resent: Resent- fields are added instead, Resent-Bcc removed.
    let o = inject(
        &home,
        &["-n"],
        &[("QMAILNAME", "Joe Q. Public")],
        "Resent-To: fwd\nResent-Bcc: b@x.y\nResent-Date: now\nResent-Message-ID: <r@s>\n\nb\n",
    );
    assert_eq!(
        o.out,
        "Return-Path: <joe@testhost.example>\n\
         Resent-From: \"Joe Q. Public\" <joe@testhost.example>\n\
         Resent-To: fwd@testhost.example\n\
         Resent-Date: now\n\
         Resent-Message-ID: <r@s>\n\
         \n\
         b\n"
    );
}

#[test]
fn control_files_complete_addresses() {
    let home = Home::new();
    home.control("defaulthost", "mailhub\n");
    home.control("defaultdomain", "corp.example\n");
    home.control("plusdomain", "plus.example\n");
    home.control("idhost", "ids.corp.example\n");
    let o = inject(
        &home,
        &[],
        &[],
        "To: alice, bob@deskhost, carol@dept+, dave@[10.1.2.3], eve@full.example.org\n\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let q = only(&home);
    let mut r = strs(q.recipients());
    r.sort();
    assert_eq!(
        r,
        [
            "alice@mailhub.corp.example",
            "bob@deskhost.corp.example",
            "carol@dept.plus.example",
            "dave@[10.1.2.3]",
            "eve@full.example.org"
        ]
    );
    assert_eq!(q.sender(), b"joe@mailhub.corp.example");
    let m = text(&q);
    let id = field(&m, "Message-ID").expect("id");
    assert!(
        id.ends_with(&format!(".{}.qmail@ids.corp.example>", o.pid)),
        "{id}"
    );
    assert_eq!(field(&m, "From"), Some("joe@mailhub.corp.example"));

    // Without control/me or the files, netqmail's literal names.
    let home = Home::new();
    home.remove_control("me");
    let o = inject(&home, &["-n", "x"], &[], "\n");
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.out.contains("From: joe@defaulthost.defaultdomain\n"),
        "{}",
        o.out
    );
    assert!(o.out.contains(".qmail@idhost>\n"), "{}", o.out);
}

#[test]
fn environment_variables_name_the_sender() {
    let home = Home::new();
    let o = inject(
        &home,
        &["r@example.org"],
        &[
            ("QMAILUSER", "quser"),
            ("MAILUSER", "muser"),
            ("LOGNAME", "luser"),
            ("QMAILNAME", "Q Name"),
            ("MAILNAME", "M Name"),
            ("QMAILHOST", "qhost.example"),
            ("MAILHOST", "mhost.example"),
        ],
        "\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let q = only(&home);
    assert_eq!(
        field(&text(&q), "From"),
        Some("\"Q Name\" <quser@qhost.example>")
    );
    assert_eq!(q.sender(), b"quser@qhost.example");

    // The next in line, the comment style, and a separate envelope sender.
    let home = Home::new();
    let o = inject(
        &home,
        &["r@example.org"],
        &[
            ("MAILUSER", "muser"),
            ("NAME", "Plain Name"),
            ("MAILHOST", "mhost"),
            ("QMAILINJECT", "c"),
            ("QMAILSUSER", "bounces"),
            ("QMAILSHOST", "lists.example"),
            ("QMAILDEFAULTDOMAIN", "dom.example"),
        ],
        "\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let q = only(&home);
    assert_eq!(
        field(&text(&q), "From"),
        Some("muser@mhost.dom.example (Plain Name)")
    );
    assert_eq!(q.sender(), b"bounces@lists.example");

    // Per-message and per-recipient VERP, and the overriding variables for the controls.
    let home = Home::new();
    let o = inject(
        &home,
        &["r@example.org"],
        &[
            ("QMAILINJECT", "mr"),
            ("QMAILDEFAULTHOST", "vh.example"),
            ("QMAILIDHOST", "vid.example"),
        ],
        "\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let q = only(&home);
    let s = String::from_utf8(q.sender()).expect("utf8");
    let expect_tail = format!(".{}-@vh.example-@[]", o.pid);
    assert!(s.starts_with("joe-") && s.ends_with(&expect_tail), "{s}");
    assert!(
        field(&text(&q), "Message-ID")
            .expect("id")
            .ends_with(".qmail@vid.example>")
    );
}

#[test]
fn sender_option_and_return_path() {
    let home = Home::new();
    let o = inject(
        &home,
        &["-f", "owner-list", "r@example.org"],
        &[],
        "Return-Path: <other@example.com>\n\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let q = only(&home);
    assert_eq!(q.sender(), b"owner-list@testhost.example");
    assert!(!text(&q).contains("Return-Path"));

    let home = Home::new();
    let o = inject(&home, &["r@example.org"], &[], "Return-Path: <>\n\n");
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(only(&home).sender(), b"");
}

/// netqmail's getopt: any word starting with "--" ends the options and is dropped, a
/// lone "-" is a recipient, and so is every word after the first recipient.
#[test]
fn options_end_as_with_netqmails_getopt() {
    let home = Home::new();
    let o = inject(&home, &["-n", "--foo", "-x@a.example"], &[], "\n");
    assert_eq!(o.code, 0, "{}", o.err);
    let o = inject(&home, &["--foo", "-x@a.example", "y@b.example"], &[], "\n");
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        strs(only(&home).recipients()),
        ["-x@a.example", "y@b.example"]
    );
    let home = Home::new();
    let o = inject(&home, &["-", "-n"], &[], "\n");
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        strs(only(&home).recipients()),
        ["-@testhost.example", "-n@testhost.example"]
    );
}

#[test]
fn bad_usage_and_bad_headers_are_permanent() {
    let home = Home::new();
    let o = inject(&home, &["-x"], &[], "\n");
    assert_eq!(o.code, 100);
    assert_eq!(o.err, "qmail-inject: illegal option -- x\n");
    let o = inject(&home, &["-nf"], &[], "\n");
    assert_eq!(o.code, 100);
    assert_eq!(o.err, "qmail-inject: option requires an argument -- f\n");
    let o = inject(&home, &[], &[], "To: a@example.com>\n\n");
    assert_eq!(o.code, 100);
    assert_eq!(
        o.err,
        "qmail-inject: fatal: unable to parse this line:\nTo: a@example.com>\n"
    );
    let o = inject(&home, &["a@(b"], &[], "\n");
    assert_eq!(o.code, 100);
    assert_eq!(
        o.err,
        "qmail-inject: fatal: unable to parse address: a@(b\n"
    );
    // The bound on a header field (see qmail-inject(8)).
    let big = format!("Subject: {}\n\nbody\n", "x".repeat(300 * 1024));
    let o = inject(&home, &["r@example.org"], &[], &big);
    assert_eq!(o.code, 100);
    assert_eq!(
        o.err,
        "qmail-inject: fatal: header field longer than 262144 bytes\n"
    );
    assert!(home.queued().is_empty());
    assert!(home.queue_files().is_empty(), "{:?}", home.queue_files());
    // A long body line is fine.
    let long = format!("Subject: s\n\n{}\n", "y".repeat(1024 * 1024));
    let o = inject(&home, &["r@example.org"], &[], &long);
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(text(&only(&home)).ends_with(&long[10..]));
}

#[test]
fn unreadable_control_file_is_temporary() {
    let home = Home::new();
    fs::create_dir(home.path().join("control/defaultdomain")).expect("mkdir");
    let o = inject(&home, &["r@example.org"], &[], "\n");
    assert_eq!(o.code, 111);
    assert!(
        o.err
            .starts_with("qmail-inject: fatal: read error: unable to read control/defaultdomain: "),
        "{}",
        o.err
    );
    assert!(home.queue_files().is_empty());
}

#[test]
fn unreadable_control_file_as_unprivileged_user() {
    assert!(
        is_root(),
        "this test runs qmail-inject as nobody; run the suite as root"
    );
    let home = Home::new();
    home.control("idhost", "id.example\n");
    let (uid, gid) = user_ids("nobody");
    home.chown_all(uid, gid);
    let idhost = home.path().join("control/idhost");
    let as_nobody = || {
        let mut c = Command::new(rqmail_tests::tool("setpriv"));
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(bin("qmail-inject"))
            .arg("r@example.org")
            .env_clear()
            .env("QMAIL_HOME", home.path())
            .env("USER", "nobody")
            .current_dir("/");
        c
    };
    fs::set_permissions(&idhost, fs::Permissions::from_mode(0o000)).expect("chmod");
    let (code, _, err) = run_with_input(as_nobody(), b"Subject: s\n\nb\n");
    assert_eq!(code, 111);
    assert!(
        String::from_utf8_lossy(&err).contains("unable to read control/idhost"),
        "{}",
        String::from_utf8_lossy(&err)
    );
    assert!(home.queued().is_empty());

    // Readable again: queued in single-user mode under nobody's uid.
    fs::set_permissions(&idhost, fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, _, err) = run_with_input(as_nobody(), b"Subject: s\n\nb\n");
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let q = only(&home);
    assert!(q.todo.starts_with(format!("u{uid}\0").as_bytes()));
    assert_eq!(q.sender(), b"nobody@testhost.example");
    assert!(
        field(&text(&q), "Message-ID")
            .expect("id")
            .ends_with("qmail@id.example>")
    );
}

#[test]
fn qmailqueue_script_gets_message_and_envelope() {
    let home = Home::new();
    let dir = tempfile::tempdir().expect("tmp");
    let qq = dir.path().join("fake-qq");
    let out = dir.path().join("out");
    script(
        &qq,
        &format!(
            "cat > {o}.m\ncat <&1 > {o}.e\npwd > {o}.cwd\nexit ${{QQEXIT:-0}}\n",
            o = out.display()
        ),
    );
    let qqs = qq.to_str().expect("path");
    let o = inject(
        &home,
        &["-f", "s@example.com", "a@example.org", "b"],
        &[("QMAILQUEUE", qqs)],
        "From: x@y.example\nDate: d\nMessage-ID: <m@i>\nTo: t@u.example\n\nhello\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        fs::read(out.with_extension("m")).expect("message"),
        b"From: x@y.example\nDate: d\nMessage-ID: <m@i>\nTo: t@u.example\n\nhello\n"
    );
    assert_eq!(
        fs::read(out.with_extension("e")).expect("envelope"),
        b"Fs@example.com\0Ta@example.org\0Tb@testhost.example\0\0"
    );
    // It runs in the qmail home, as netqmail's qmail-queue does.
    let cwd = fs::read_to_string(out.with_extension("cwd")).expect("cwd");
    assert_eq!(
        fs::canonicalize(cwd.trim()).expect("cwd"),
        fs::canonicalize(home.path()).expect("home")
    );
    assert!(home.queued().is_empty(), "the real queue is not used");

    // Its exit code becomes netqmail's message and exit code.
    for (code, exit, msg) in [
        (
            "31",
            100,
            "mail server permanently rejected message (#5.3.0)",
        ),
        ("11", 100, "envelope address too long for qq (#5.1.3)"),
        ("53", 111, "qq write error or disk full (#4.3.0)"),
        ("81", 111, "qq internal bug (#4.3.0)"),
    ] {
        let o = inject(
            &home,
            &["a@example.org"],
            &[("QMAILQUEUE", qqs), ("QQEXIT", code)],
            "\n",
        );
        assert_eq!(o.code, exit, "qq exit {code}");
        assert_eq!(o.err, format!("qmail-inject: fatal: {msg}\n"));
    }
    let o = inject(
        &home,
        &["a@example.org"],
        &[("QMAILQUEUE", "/nonexistent/qq")],
        "\n",
    );
    assert_eq!(o.code, 111);
    assert_eq!(o.err, "qmail-inject: fatal: unable to exec qq (#4.3.0)\n");
}

#[test]
fn mail_followup_to_for_lists() {
    let home = Home::new();
    let lists = home.path().join("mftlists");
    fs::write(&lists, "qmail@list.example\n").expect("write");
    let o = inject(
        &home,
        &["-n"],
        &[("QMAILMFTFILE", lists.to_str().expect("path"))],
        "To: QMAIL@list.example\nCc: me@example.com\n\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.out
            .contains("\nMail-Followup-To: me@example.com,\n  QMAIL@list.example\nTo: "),
        "{}",
        o.out
    );
}

#[test]
fn sendmail_t_takes_recipients_from_header() {
    let home = Home::new();
    let o = run(
        &home,
        "sendmail",
        &["-t", "-i", "-oi", "-odb", "extra@example.net"],
        &[],
        b"To: a@example.org\nBcc: b@example.org\nSubject: s\n\n.\nbody\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let q = only(&home);
    let mut r = strs(q.recipients());
    r.sort();
    assert_eq!(r, ["a@example.org", "b@example.org", "extra@example.net"]);
    let m = text(&q);
    assert!(!m.contains("Bcc"), "{m}");
    assert!(
        m.ends_with("\n\n.\nbody\n"),
        "a lone dot is just a line: {m}"
    );
}

#[test]
fn sendmail_without_t_uses_only_arguments() {
    let home = Home::new();
    let o = run(
        &home,
        "sendmail",
        &["r@example.org"],
        &[],
        b"To: header@example.org\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(strs(only(&home).recipients()), ["r@example.org"]);
}

#[test]
fn sendmail_f_sets_sender_and_from() {
    let home = Home::new();
    let o = run(
        &home,
        "sendmail",
        &[
            "-F",
            "Ignored Name",
            "-f",
            "list-owner@lists.example",
            "r@example.org",
        ],
        &[("QMAILNAME", "Also Ignored")],
        b"Subject: s\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let q = only(&home);
    assert_eq!(q.sender(), b"list-owner@lists.example");
    assert_eq!(field(&text(&q), "From"), Some("list-owner@lists.example"));

    let home = Home::new();
    let o = run(
        &home,
        "sendmail",
        &["-FJoe Public", "r@example.org"],
        &[],
        b"Subject: s\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let q = only(&home);
    assert_eq!(
        field(&text(&q), "From"),
        Some("\"Joe Public\" <joe@testhost.example>")
    );
}

#[test]
fn sendmail_bp_bs_and_names_run_the_home_programs() {
    let home = Home::new();
    let binp = home.path().join("bin");
    script(&binp.join("qmail-qread"), "echo \"qread $# $(pwd)\"\n");
    script(
        &binp.join("qmail-smtpd"),
        "echo \"smtpd PROTO=$PROTO RELAYCLIENT=${RELAYCLIENT-unset} DATABYTES=$DATABYTES \
         TCPREMOTEIP=$TCPREMOTEIP TCPREMOTEINFO=$TCPREMOTEINFO\"\n",
    );
    let realhome = fs::canonicalize(home.path()).expect("home");
    let o = run(&home, "sendmail", &["-bp"], &[], b"");
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.out, format!("qread 0 {}\n", realhome.display()));

    let o = run(&home, "sendmail", &["-bs"], &[], b"");
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        "smtpd PROTO=TCP RELAYCLIENT= DATABYTES=0 TCPREMOTEIP=127.0.0.1 TCPREMOTEINFO=sendmail-bs\n"
    );
    // Already behind a super-server: the environment is left alone.
    let o = run(&home, "sendmail", &["-bs"], &[("PROTO", "SMTP")], b"");
    assert_eq!(
        o.out,
        "smtpd PROTO=SMTP RELAYCLIENT=unset DATABYTES= TCPREMOTEIP= TCPREMOTEINFO=\n"
    );

    // Called as mailq; newaliases is refused.
    std::os::unix::fs::symlink(bin("sendmail"), binp.join("mailq")).expect("symlink");
    std::os::unix::fs::symlink(bin("sendmail"), binp.join("newaliases")).expect("symlink");
    let o = run_path(&home, &binp.join("mailq"), &[]);
    assert_eq!(o.out, format!("qread 0 {}\n", realhome.display()));
    let o = run_path(&home, &binp.join("newaliases"), &[]);
    assert_eq!(o.code, 100);
    assert!(o.err.starts_with("sendmail: fatal: "), "{}", o.err);

    // Bad usage, and a missing program.
    let o = run(&home, "sendmail", &["-bz"], &[], b"");
    assert_eq!(o.code, 100);
    assert!(o.err.contains("usage"), "{}", o.err);
    let o = run(&home, "sendmail", &["-q"], &[], b"");
    assert_eq!(o.code, 100);
    assert!(
        o.err.starts_with("sendmail: illegal option -- q\n"),
        "{}",
        o.err
    );
    let o = run(&home, "sendmail", &["-t", "-f"], &[], b"");
    assert_eq!(o.code, 100);
    assert!(
        o.err
            .starts_with("sendmail: option requires an argument -- f\n"),
        "{}",
        o.err
    );
    fs::remove_file(binp.join("qmail-inject")).expect("rm");
    let o = run(&home, "sendmail", &["r@example.org"], &[], b"\n");
    assert_eq!(o.code, 111);
    assert_eq!(o.err, "sendmail: fatal: unable to run qmail-inject\n");
}

#[test]
fn sendmail_execs_the_inject_of_its_home() {
    let home = Home::new();
    let binp = home.path().join("bin");
    script(
        &binp.join("qmail-inject"),
        "echo \"$0 $*\"; echo \"QMAILUSER=$QMAILUSER QMAILHOST=$QMAILHOST MAILNAME=${MAILNAME-unset}\"\n",
    );
    let o = run(
        &home,
        "sendmail",
        &["-F", "N", "-f", "a@b.example", "-t", "--", "r1", "-r2"],
        &[("MAILNAME", "old")],
        b"",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        "bin/qmail-inject -H -f a@b.example -- r1 -r2\nQMAILUSER=a QMAILHOST=b.example MAILNAME=unset\n"
    );
}

#[test]
fn predate_prepends_local_date() {
    let home = Home::new();
    let o = run(
        &home,
        "predate",
        &["cat"],
        &[("TZ", "XYZ-05:30")],
        b"Subject: s\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let (first, rest) = o.out.split_once('\n').expect("line");
    assert_eq!(rest, "Subject: s\n\nbody\n");
    // "Date: 26 Sep 1995 10:16:53 +0530"
    let v: Vec<&str> = first.split(' ').collect();
    assert_eq!(v.len(), 6, "{first}");
    assert_eq!(v[0], "Date:");
    assert_eq!(v[5], "+0530");
    assert_eq!(v[4].len(), 8, "{first}");
    let o = run(&home, "predate", &["cat"], &[("TZ", "UTC")], b"");
    assert!(o.out.ends_with(" +0000\n"), "{}", o.out);
    let o = run(&home, "predate", &["cat"], &[("TZ", "ABC+03")], b"");
    assert!(o.out.ends_with(" -0300\n"), "{}", o.out);

    // The child's exit code is predate's.
    let o = run(
        &home,
        "predate",
        &["sh", "-c", "cat >/dev/null; exit 7"],
        &[],
        b"x\n",
    );
    assert_eq!(o.code, 7);
    let o = run(&home, "predate", &["sh", "-c", "kill -9 $$"], &[], b"");
    assert_eq!(o.code, 111);
    assert_eq!(o.err, "predate: fatal: child crashed\n");
    let o = run(&home, "predate", &[], &[], b"");
    assert_eq!(o.code, 100);
    let o = run(&home, "predate", &["/nonexistent/prog"], &[], b"");
    assert_eq!(o.code, 111);
    assert!(
        o.err
            .starts_with("predate: fatal: unable to run /nonexistent/prog: "),
        "{}",
        o.err
    );
}

#[test]
fn datemail_queues_with_local_date() {
    let home = Home::new();
    let o = run(
        &home,
        "datemail",
        &["-t"],
        &[("TZ", "XYZ-05:30")],
        b"To: r@example.org\nSubject: s\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let q = only(&home);
    assert_eq!(strs(q.recipients()), ["r@example.org"]);
    let m = text(&q);
    assert!(field(&m, "Date").expect("date").ends_with(" +0530"), "{m}");
    assert_eq!(m.matches("Date:").count(), 1, "{m}");
}

#[test]
fn sendmail_bp_runs_the_real_qmail_qread() {
    let home = Home::new();
    let o = run(
        &home,
        "sendmail",
        &["waiting@example.org"],
        &[],
        b"Subject: s\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{}", o.err);
    // Same output and exit code as qmail-qread run directly (a message still in todo/
    // is not listed until qmail-send has seen it, as with netqmail).
    let direct = run(&home, "qmail-qread", &[], &[], b"");
    let o = run(&home, "sendmail", &["-bp"], &[], b"");
    assert_eq!((o.code, o.err.as_str()), (0, ""));
    assert_eq!(o.out, direct.out);
    assert_eq!(direct.code, 0);
}
