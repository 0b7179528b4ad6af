//! Hostile SMTP clients against the real qmail-smtpd (and, for relaying, the whole mail
//! system behind it): bare LF, lone CR and NUL in commands and data, megabyte lines,
//! thousands of recipients, pipelining floods, slow clients, SMTP-smuggling end-of-data
//! variants and relay tricks.
//!
//! Already covered elsewhere (not repeated here): a bare LF inside DATA
//! (smtpd::bare_lf_in_data_gives_451_and_closes), a stall in DATA
//! (smtpd::timeout_in_data_leaves_nothing_queued), an idle client
//! (smtpd::timeoutsmtpd_gives_451_timeout), a 20000-byte command line
//! (smtpd::overlong_command_line_gives_500), plain rcpthosts refusals
//! (smtpd::rcpthosts_present_refuses_other_domains).

use crate::relsys::{
    Piped, System, WAIT, mail_home, maildir_messages, proc_kb, proc_status, queue_empty, script,
    wait_until,
};
use rqmail_tests::{Home, Smtp, run_with_input};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

/// A home whose rcpthosts lists only testhost.example.
fn home() -> Home {
    let h = Home::new();
    h.control("rcpthosts", "testhost.example\n");
    h
}

/// Runs one dialogue given in one piece; returns (exit code, reply lines).
fn converse(h: &Home, env: &[(&str, &str)], input: &[u8]) -> (i32, Vec<String>) {
    let mut c = h.cmd("qmail-smtpd");
    for (k, v) in env {
        c.env(k, v);
    }
    let (code, out, _) = run_with_input(c, input);
    let text = String::from_utf8(out).expect("replies are ASCII");
    (code, text.lines().map(str::to_string).collect())
}

#[test]
fn bare_lf_lone_cr_and_nul_in_commands() {
    let h = home();
    let input: &[u8] = b"HELO c\n\
        MAIL FROM:<a@b.example>\n\
        RCPT TO:<x@evil.example>\n\
        RCPT TO:<x@testhost.example>\rRCPT TO:<y@evil.example>\r\n\
        RCPT TO:<y@evil.example\0@testhost.example>\r\n\
        RCPT TO:<z@testhost.example>\0<w@evil.example>\r\n\
        \0RCPT TO:<q@testhost.example>\r\n\
        RCPT\0 TO:<q@testhost.example>\r\n\
        DATA\r\n\
        a\0b\rc\r\n\
        .\r\n\
        QUIT\r\n";
    let (code, r) = converse(&h, &[], input);
    assert_eq!(code, 0);
    assert_eq!(
        r[..10],
        [
            "220 testhost.example ESMTP",
            "250 testhost.example",
            "250 ok",
            // A bare LF ends a command as in netqmail (only DATA insists on CR LF).
            "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
            // A lone CR is part of the line: the second RCPT is never seen as a command.
            "250 ok",
            // The line ends at its NUL: what follows never reaches the address.
            "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
            "250 ok",
            "502 unimplemented (#5.5.1)",
            // "RCPT" alone: an empty address, allowed as netqmail allows it (qmail-send
            // completes it with envnoathost).
            "250 ok",
            "354 go ahead",
        ][..],
        "{r:?}"
    );
    assert!(r[10].starts_with("250 ok "), "{r:?}");
    assert_eq!(r[11], "221 testhost.example");
    let q = h.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(
        q[0].recipients(),
        vec![
            b"x@testhost.example".to_vec(),
            b"z@testhost.example".to_vec(),
            Vec::new()
        ]
    );
    assert!(
        q[0].body_after_received().ends_with(b"\na\0b\rc\n"),
        "NUL and lone CR are kept in data: {:?}",
        String::from_utf8_lossy(q[0].body_after_received())
    );
}

/// End-of-data variants that are not CR LF . CR LF. Each is sent between a first message
/// and a smuggled second one; whatever the variant, at most one message may be queued,
/// for the first envelope, and the smuggled envelope never exists. `bare_lf` says
/// whether netqmail refuses the variant as a bare LF (451, connection closed) instead of
/// taking it as data.
const SMUGGLING: &[(&[u8], bool)] = &[
    (b"\n.\n", true),
    (b"\n.\r\n", true),
    (b"\r\n.\n", true),
    (b"\n.\r", true),
    (b"\r.\r", false),
    (b"\r.\r\n", false),
    (b"\r\n.\r", false),
    (b"\r\n.\r\r\n", false),
    (b"\r\n\0.\r\n", false),
    (b"\r\n.\0\r\n", false),
    (b"\r\n .\r\n", false),
    (b"\r\r\n.\r\r\n", false),
];

#[test]
fn smtp_smuggling_variants_never_end_data() {
    let smuggled: &[u8] = b"MAIL FROM:<smuggler@evil.example>\r\n\
        RCPT TO:<other@testhost.example>\r\n\
        DATA\r\n\
        Subject: smuggled\r\n\r\nsecond\r\n.\r\n";
    let run = |variant: &[u8]| {
        let h = home();
        let mut input = b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<victim@testhost.example>\r\nDATA\r\nSubject: one\r\n\r\nfirst".to_vec();
        input.extend_from_slice(variant);
        input.extend_from_slice(smuggled);
        input.extend_from_slice(b"QUIT\r\n");
        let (code, r) = converse(&h, &[], &input);
        (h, code, r)
    };
    // The control case: a real CR LF . CR LF does end the first message, and the test
    // sees the second one (so it can see smuggling).
    let (h, code, _) = run(b"\r\n.\r\n");
    assert_eq!(code, 0);
    assert_eq!(h.queued().len(), 2);

    for &(variant, bare_lf) in SMUGGLING {
        let (h, code, r) = run(variant);
        let q = h.queued();
        assert!(
            q.len() <= 1,
            "variant {variant:?} queued {} messages",
            q.len()
        );
        for m in &q {
            assert_eq!(m.sender(), b"a@b.example", "variant {variant:?}");
            assert_eq!(m.recipients(), vec![b"victim@testhost.example".to_vec()]);
        }
        if bare_lf {
            assert_eq!(
                r.last().map(String::as_str),
                Some("451 See http://pobox.com/~djb/docs/smtplf.html."),
                "variant {variant:?}: {r:?}"
            );
            assert_eq!(code, 1, "variant {variant:?}: the connection ends");
            assert!(q.is_empty(), "variant {variant:?}");
        } else {
            assert_eq!(q.len(), 1, "variant {variant:?}: {r:?}");
            assert_eq!(code, 0, "variant {variant:?}: {r:?}");
            // Everything up to the real end is the first message's data.
            let body = q[0].body_after_received();
            let text = String::from_utf8_lossy(body);
            assert!(
                text.contains("MAIL FROM:<smuggler@evil.example>") && text.ends_with("second\n"),
                "variant {variant:?}: {text:?}"
            );
            // One 250 for the data, then QUIT's 221: no reply to the smuggled commands.
            assert_eq!(r.len(), 7, "variant {variant:?}: {r:?}");
        }
    }
}

/// Growth of qmail-smtpd's peak memory (VmHWM, KiB) while it is alive.
fn hwm(pid: i32) -> u64 {
    proc_kb(&proc_status(pid).expect("qmail-smtpd is alive"), "VmHWM")
}

#[test]
fn megabyte_lines_in_commands_and_data() {
    let h = home();
    let mut c = Smtp::new(Piped::start(h.cmd("qmail-smtpd"), WAIT));
    assert_eq!(c.reply(), ["220 testhost.example ESMTP"]);
    assert_eq!(c.cmd("HELO c"), ["250 testhost.example"]);
    let pid = c.get_mut().pid();
    let base = hwm(pid);
    // 16 MiB of one command line: answered with 500 once its LF arrives, never buffered.
    let chunk = vec![b'x'; 1 << 20];
    c.send(b"MAIL FROM:<");
    for _ in 0..16 {
        c.send(&chunk);
    }
    c.send(b">\r\n");
    assert_eq!(c.reply(), ["500 command line too long (#5.5.2)"]);
    let grown = hwm(pid).saturating_sub(base);
    assert!(
        grown < 4 * 1024,
        "a 16 MiB command line grew qmail-smtpd by {grown} KiB"
    );
    // The session goes on; a 1 MiB data line is stored as it came.
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), ["250 ok"]);
    assert_eq!(c.cmd("RCPT TO:<u@testhost.example>"), ["250 ok"]);
    assert_eq!(c.cmd("DATA"), ["354 go ahead"]);
    c.send(b"Subject: long\r\n\r\n");
    for _ in 0..4 {
        c.send(&chunk);
    }
    c.send(b"\r\n.\r\n");
    let r = c.reply();
    assert!(r[0].starts_with("250 ok "), "{r:?}");
    let grown = hwm(pid).saturating_sub(base);
    assert!(
        grown < 4 * 1024,
        "a 4 MiB data line grew qmail-smtpd by {grown} KiB"
    );
    assert_eq!(c.cmd("QUIT"), ["221 testhost.example"]);
    assert_eq!(c.get_mut().wait(), 0);
    let q = h.queued();
    assert_eq!(q.len(), 1);
    let body = q[0].body_after_received();
    let mut want = b"\nSubject: long\n\n".to_vec();
    want.extend(std::iter::repeat_n(b'x', 4 << 20));
    want.push(b'\n');
    assert!(
        body.ends_with(&want),
        "the data line was not stored as sent"
    );
}

#[test]
fn thousands_of_recipients() {
    let h = home();
    let mut input = b"HELO c\r\nMAIL FROM:<a@b.example>\r\n".to_vec();
    let n = 12_000;
    for i in 0..n {
        input.extend_from_slice(format!("RCPT TO:<u{i}@testhost.example>\r\n").as_bytes());
    }
    input.extend_from_slice(b"DATA\r\nSubject: many\r\n\r\nx\r\n.\r\nQUIT\r\n");
    let (code, r) = converse(&h, &[], &input);
    assert_eq!(code, 0);
    let ok = r.iter().filter(|l| *l == "250 ok").count();
    let full = r
        .iter()
        .filter(|l| *l == "452 too many recipients (#4.5.3)")
        .count();
    // 10000 recipients (qmail-smtpd(8)'s limit) plus MAIL's 250.
    assert_eq!((ok, full), (10_001, n - 10_000));
    assert!(
        r[r.len() - 2].starts_with("250 ok "),
        "{:?}",
        &r[r.len() - 2..]
    );
    let q = h.queued();
    assert_eq!(q.len(), 1);
    let rc = q[0].recipients();
    assert_eq!(rc.len(), 10_000);
    assert_eq!(rc[9_999], b"u9999@testhost.example");
}

#[test]
fn pipelining_flood_without_reading_replies_stays_bounded() {
    let h = home();
    let mut p = Piped::start(h.cmd("qmail-smtpd"), WAIT);
    let pid = p.pid();
    let mut first = [0u8; 28];
    p.read_exact(&mut first).expect("greeting");
    assert_eq!(&first, b"220 testhost.example ESMTP\r\n");
    let base = hwm(pid);
    // 400000 commands (2.4 MB) written while nobody reads the replies (3.2 MB): the
    // server must block on its output, not collect it.
    let n = 400_000usize;
    let mut stdin = p.take_stdin();
    let writer = std::thread::spawn(move || {
        let block = b"NOOP\r\n".repeat(1000);
        for _ in 0..n / 1000 {
            stdin.write_all(&block).expect("write");
        }
        stdin
            .write_all(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@testhost.example>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
            .expect("write");
    });
    // Wait until the writer is stuck (both pipes full) or done, then look at memory.
    std::thread::sleep(Duration::from_millis(1500));
    let grown = hwm(pid).saturating_sub(base);
    assert!(
        grown < 8 * 1024,
        "unread replies grew qmail-smtpd by {grown} KiB"
    );
    let mut r = BufReader::new(p);
    let mut line = String::new();
    let mut noops = 0;
    let mut last = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).expect("read") == 0 {
            break;
        }
        if line == "250 ok\r\n" && noops < n {
            noops += 1;
        } else {
            last.push(line.clone());
        }
    }
    writer.join().expect("writer");
    assert_eq!(noops, n);
    // MAIL's 250 ok was counted among them only if noops overflowed; it did not.
    assert_eq!(last.len(), 5, "{last:?}");
    assert!(last[3].starts_with("250 ok "), "{last:?}");
    assert_eq!(last[4], "221 testhost.example\r\n");
    assert_eq!(r.get_mut().wait(), 0);
    assert_eq!(h.queued().len(), 1);
}

#[test]
fn slow_clients_and_timeoutsmtpd() {
    let h = home();
    h.control("timeoutsmtpd", "2\n");
    // Half a command and silence: 451 timeout, connection closed, exit 1.
    let mut c = Smtp::new(Piped::start(h.cmd("qmail-smtpd"), WAIT));
    c.reply();
    c.send(b"MAIL FROM:<a@b.exa");
    assert_eq!(c.reply(), ["451 timeout (#4.4.2)"]);
    assert_eq!(c.get_mut().wait(), 1);

    // timeoutsmtpd bounds each read, as in netqmail: a client that trickles a byte every
    // quarter second is slow but alive, and its message is taken.
    let mut c = Smtp::new(Piped::start(h.cmd("qmail-smtpd"), WAIT));
    c.reply();
    for b in b"HELO slow.example\r\n" {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(c.reply(), ["250 testhost.example"]);
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), ["250 ok"]);
    assert_eq!(c.cmd("RCPT TO:<u@testhost.example>"), ["250 ok"]);
    assert_eq!(c.cmd("DATA"), ["354 go ahead"]);
    c.send(b"x\r\n");
    std::thread::sleep(Duration::from_millis(1000));
    c.send(b".\r\n");
    assert!(c.reply()[0].starts_with("250 ok "));
    assert_eq!(c.cmd("QUIT"), ["221 testhost.example"]);
    assert_eq!(c.get_mut().wait(), 0);
    assert_eq!(h.queued().len(), 1);
}

/// Recipient tricks that try to make a mail host relay. Each is (RCPT argument, whether
/// qmail-smtpd accepts it). Whatever is accepted must end in a local delivery.
const RELAY_TRICKS: &[(&str, bool)] = &[
    ("<victim@evil.example>", false),
    ("<VICTIM@EVIL.EXAMPLE>", false),
    ("victim@evil.example", false),
    ("<victim@evil.example> <u@testhost.example>", false),
    ("<victim%evil.example@testhost.example>", true),
    ("<evil.example!victim@testhost.example>", true),
    ("<@testhost.example:victim@evil.example>", false),
    (
        "<@testhost.example,@relay.example:victim@evil.example>",
        false,
    ),
    ("<\"victim@evil.example\"@testhost.example>", true),
    ("<\"victim@evil.example\">", false),
    ("<victim\\@evil.example>", false),
    ("<victim@evil.example@testhost.example>", true),
    ("<victim@evil.example\\>@testhost.example>", true),
    ("<victim@@testhost.example>", true),
    ("<victim@evil.example@>", false),
    ("<victim@[192.0.2.1]>", false),
    ("<victim@[127.0.0.1]>", true),
    ("<victim@evil.example.>", false),
    ("<victim@testhost.example.>", false),
    ("<victim@.testhost.example>", false),
    ("<victim@TESTHOST.EXAMPLE>", true),
    ("<victim%evil.example>", true),
    ("<evil.example!victim>", true),
    ("<victim>", true),
    ("<\"victim@evil.example\"@[192.0.2.1]>", false),
    ("<victim@evil.example\0@testhost.example>", false),
    ("<victim@evil.example\r@testhost.example>", true),
];

#[test]
fn relay_tricks_never_relay_without_relayclient() {
    let h = mail_home();
    // A qmail-remote that records what it was asked to do.
    script(
        &h,
        "qmail-remote",
        "#!/bin/sh\ncat > /dev/null\necho \"$@\" >> \"$QMAIL_HOME/remote.log\"\nprintf 'r\\0Kok\\0'\n",
    );
    let sys = System::start(h.path());
    // The null sender, so that a failed local delivery bounces locally too.
    let mut input = b"HELO c\r\nMAIL FROM:<>\r\n".to_vec();
    for (t, _) in RELAY_TRICKS {
        input.extend_from_slice(format!("RCPT TO:{t}\r\n").as_bytes());
    }
    input.extend_from_slice(b"DATA\r\nSubject: tricks\r\n\r\nx\r\n.\r\nQUIT\r\n");
    let mut c = crate::relsys::user_cmd(h.path(), &h.path().join("bin/qmail-smtpd"));
    c.env("TCPREMOTEIP", "192.0.2.9");
    let (code, out, _) = run_with_input(c, &input);
    assert_eq!(code, 0);
    let r: Vec<String> = String::from_utf8(out)
        .expect("ascii")
        .lines()
        .map(str::to_string)
        .collect();
    for (i, (t, accepted)) in RELAY_TRICKS.iter().enumerate() {
        let want = if *accepted {
            "250 ok"
        } else {
            "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
        };
        assert_eq!(r[3 + i], want, "RCPT TO:{t:?}");
    }
    let accepted = RELAY_TRICKS.iter().filter(|t| t.1).count();
    assert!(
        r[3 + RELAY_TRICKS.len() + 1].starts_with("250 ok "),
        "{r:?}"
    );
    wait_until("every delivery done", || queue_empty(h.path()));
    let log = sys.lines();
    sys.terminate();
    assert!(
        !h.path().join("remote.log").exists(),
        "qmail-remote was run: {:?}",
        fs::read_to_string(h.path().join("remote.log"))
    );
    assert!(
        !log.iter().any(|l| l.contains(" to remote ")),
        "a remote delivery was started: {log:#?}"
    );
    let locals = log.iter().filter(|l| l.contains(" to local ")).count();
    assert!(locals >= accepted, "{log:#?}");
    // Every accepted recipient ended in the Maildir (or in a local bounce there).
    let mails = maildir_messages(&h.path().join("alias/Maildir"));
    assert!(!mails.is_empty());
    for m in &mails {
        assert!(
            m.starts_with(b"Return-Path: <>\n") || m.starts_with(b"Return-Path: <#@[]>\n"),
            "{}",
            String::from_utf8_lossy(m)
        );
    }
}

/// Found by the cdb fuzz target (fuzz/regressions/cdb/oom-*): a record whose data length
/// claims 4 GiB made the cdb reader allocate that much before noticing the file is
/// shorter. Under a memory limit (qmail services often run under softlimit) qmail-smtpd
/// then died without a reply; a corrupt control file must be a temporary failure.
#[test]
fn corrupt_morercpthosts_cdb_under_a_memory_limit_gives_421() {
    let h = home();
    let cdb = h.path().join("control/morercpthosts.cdb");
    control::write_cdb(
        &cdb,
        &h.path().join("control/more.tmp"),
        [(&b"evil.example"[..], &b""[..])],
    )
    .expect("cdb");
    let mut bytes = fs::read(&cdb).expect("read");
    // The one record starts at 2048: key length, then data length.
    bytes[2052..2056].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    fs::write(&cdb, &bytes).expect("write");
    let mut c = std::process::Command::new(rqmail_tests::tool("prlimit"));
    c.arg("--as=268435456")
        .arg(rqmail_tests::bin("qmail-smtpd"))
        .env_clear()
        .env("QMAIL_HOME", h.path());
    let (code, out, _) = run_with_input(
        c,
        b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@evil.example>\r\nQUIT\r\n",
    );
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.ends_with("250 ok\r\n421 unable to read controls (#4.3.0)\r\n"),
        "{out:?}"
    );
    assert_eq!(code, 1);
}
