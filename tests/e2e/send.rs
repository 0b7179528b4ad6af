//! Delivery: qmail-clean and the spawns through their descriptor protocols, and the whole
//! set (qmail-start, qmail-send, qmail-lspawn, qmail-rspawn, qmail-clean) running on a
//! test home, with messages injected by the real qmail-queue.
//!
//! Where qmail-local or qmail-remote is not what a test is about, a shell script in the
//! home's bin/ stands in for it and records what it was given.
//!
//! Tests run as root in CI; single-user mode then runs every program as `nobody` (setpriv),
//! so that no id switching happens, and root mode uses the qmail users.

use rqmail_tests::fakes::{
    close_gate, delivered, fake_getpw, fake_local, fake_remote, mail_dir, mail_files,
    remote_delivered, running,
};
use rqmail_tests::single::*;
use rqmail_tests::{Home, bin, children, fmt_match, is_root, qmail_log_line, tool, user_ids};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ------------------------------------------------------------------------ helpers

/// Stops qmail-send (TERM) and checks its whole log against qmail-log(5)'s formats.
fn stop(sys: System) -> Vec<String> {
    let lines = sys.stop();
    assert_eq!(lines.last().map(String::as_str), Some("status: exiting"));
    assert_log_formats(&lines);
    lines
}

fn assert_log_formats(lines: &[String]) {
    for l in lines {
        assert!(
            qmail_log_line(l),
            "log line not in qmail-log(5) format, or unprintable: {l:?}"
        );
    }
}

// ---------------------------------------------------------------- qmail-clean

#[test]
fn clean_protocol_removes_files_and_answers() {
    let h = user_home();
    let q = qmail_queue::Queue::in_home(h.path());
    let m = q.mess(1234);
    fs::write(&m, b"x").expect("mess");
    fs::write(q.intd(1234), b"x").expect("intd");
    fs::write(q.todo(77), b"x").expect("todo");
    fs::write(q.intd(77), b"x").expect("intd");
    fs::create_dir(q.todo(78)).expect("a directory cannot be unlinked");
    // An abandoned pid/ file (accessed 40 hours ago) and a fresh one.
    let old = h.queue().join("pid/123.456.1");
    fs::write(&old, b"").expect("pid");
    let t = nix::sys::time::TimeVal::new((control::now() - 40 * 3600) as i64, 0);
    nix::sys::stat::utimes(&old, &t, &t).expect("utimes");
    let fresh = h.queue().join("pid/124.456.1");
    fs::write(&fresh, b"").expect("pid");
    if is_root() {
        h.chown_all(nobody().0, nobody().1);
    }
    let long = format!("foop/{}\0", "1".repeat(120));
    let input = format!("foop/1234\0todo/77\0todo/78\0bogus/1\0foop/12a\0foop/\0{long}foop/999\0");
    let (code, out, _) =
        rqmail_tests::run_with_input(user_cmd(&h, &bin("qmail-clean")), input.as_bytes());
    assert_eq!(code, 0);
    assert_eq!(out, b"++!xxxx+");
    assert!(!m.exists() && !q.intd(1234).exists());
    assert!(!q.todo(77).exists() && !q.intd(77).exists());
    assert!(!old.exists(), "pid/ files older than 36 hours are removed");
    assert!(fresh.exists());
}

// ------------------------------------------------------------------ the spawns

/// One spawn driven through its descriptors: commands written to fd 0, reports read from
/// fd 1 by a thread.
struct SpawnPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<(u32, Vec<u8>)>,
    first: u8,
    wide: Arc<Mutex<bool>>,
}

impl SpawnPeer {
    fn start(mut c: Command) -> SpawnPeer {
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().expect("start spawn");
        let mut out = child.stdout.take().expect("stdout");
        let mut first = [0u8; 1];
        out.read_exact(&mut first).expect("the spawn's first byte");
        let (tx, rx) = channel();
        let wide = Arc::new(Mutex::new(false));
        let w2 = wide.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut b = [0u8; 1];
            while out.read_exact(&mut b).is_ok() {
                buf.push(b[0]);
                let n = if *w2.lock().expect("lock") { 4 } else { 1 };
                if b[0] == 0 && buf.len() > n {
                    let d = if n == 1 {
                        u32::from(buf[0])
                    } else {
                        u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]])
                    };
                    let text = buf[n..buf.len() - 1].to_vec();
                    // Switch framing before anyone sees the answer.
                    if text.starts_with(b"Kwide ") {
                        *w2.lock().expect("lock") = true;
                    }
                    if tx.send((d, text)).is_err() {
                        return;
                    }
                    buf.clear();
                }
            }
        });
        let stdin = child.stdin.take();
        SpawnPeer {
            child,
            stdin,
            rx,
            first: first[0],
            wide,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stdin
            .as_mut()
            .expect("stdin open")
            .write_all(bytes)
            .expect("write command");
    }

    fn command(&mut self, delnum: u32, messid: &str, sender: &str, recip: &str) {
        let mut v = if *self.wide.lock().expect("lock") {
            delnum.to_be_bytes().to_vec()
        } else {
            vec![u8::try_from(delnum).expect("narrow delnum")]
        };
        for f in [messid, sender, recip] {
            v.extend_from_slice(f.as_bytes());
            v.push(0);
        }
        self.send(&v);
    }

    /// Sends netqmail-incompatible probe and returns the answer text.
    fn probe(&mut self) -> Vec<u8> {
        self.send(b"\0\0\0rqmail-spawn-wide\0");
        let (d, t) = self.rx.recv_timeout(WAIT).expect("probe answer");
        assert_eq!(d, 0);
        t
    }

    /// Collects `n` reports, by delivery number.
    fn reports(&mut self, n: usize) -> HashMap<u32, String> {
        let mut m = HashMap::new();
        while m.len() < n {
            let (d, t) = self.rx.recv_timeout(WAIT).expect("a report");
            assert!(
                m.insert(d, String::from_utf8_lossy(&t).to_string())
                    .is_none(),
                "two reports for delivery {d}"
            );
        }
        m
    }

    /// Closes fd 0 and expects a clean exit.
    fn finish(mut self) {
        self.stdin = None;
        assert_eq!(wait_child(&mut self.child), Some(0));
    }
}

/// Puts a message file into queue/mess; returns its `S/N` name.
fn mess_file(h: &Home, id: u64, body: &[u8]) -> String {
    let q = qmail_queue::Queue::in_home(h.path());
    let p = q.mess(id);
    fs::write(&p, body).expect("mess");
    chown_user(&p);
    format!("{}/{}", id % qmail_queue::SPLIT, id)
}

#[test]
fn lspawn_runs_qmail_local_with_netqmails_arguments_and_reports() {
    let h = user_home();
    script(
        &h,
        "qmail-local",
        r#"#!/bin/sh
echo "$@" > "$QMAIL_HOME/args.$4"
case "$4" in
  soft) echo "temporary trouble"; exit 111 ;;
  hard) echo "Sorry, no mailbox here by that name. (#5.1.1)"; exit 100 ;;
  crash) kill -9 $$ ;;
  long) i=0; while [ $i -lt 400 ]; do echo "0123456789"; i=$((i+1)); done; exit 0 ;;
  *) cat; exit 0 ;;
esac
"#,
    );
    script(
        &h,
        "qmail-getpw",
        r#"#!/bin/sh
case "$1" in
  noalias) exit 116 ;;
  root) printf '%s\0' root 0 0 /root '' '' ;;
  *) printf '%s\0' "u-$1" 1000 1000 /home/x - "ext-$1" ;;
esac
"#,
    );
    let m = mess_file(&h, 100, b"the message\n");
    let mut sp = SpawnPeer::start({
        let mut c = user_cmd(&h, &bin("qmail-lspawn"));
        c.arg("./Maildir/");
        c
    });
    assert_eq!(sp.first, 255, "narrow limit announced");
    sp.command(0, &m, "sender@x.example", "joe@y.example");
    sp.command(1, &m, "s", "soft@y.example");
    sp.command(2, &m, "s", "hard@y.example");
    sp.command(3, &m, "s", "crash@y.example");
    sp.command(4, &m, "s", "noalias@y.example");
    sp.command(5, &m, "s", "@y.example");
    sp.command(6, &m, "s", "nohost");
    sp.command(7, "1/2x", "s", "a@b");
    sp.command(8, "999/999", "s", "a@b");
    sp.command(254, &m, "s", "long@y.example");
    sp.command(255, &m, "s", "a@b");
    let r = sp.reports(11);
    assert_eq!(r[&0], "Kthe message\n");
    assert_eq!(r[&1], "Ztemporary trouble\n");
    assert_eq!(r[&2], "DSorry, no mailbox here by that name. (#5.1.1)\n");
    assert_eq!(r[&3], "Zqmail-local crashed.\n");
    assert_eq!(r[&4], "ZUnable to find alias user!\n");
    assert_eq!(r[&5], "K", "an empty mailbox name is a trash address");
    assert_eq!(r[&6], "DSorry, address must include host name. (#5.1.3)\n");
    assert_eq!(r[&7], "DInternal error: messid has nonnumerics. (#5.3.5)\n");
    assert_eq!(r[&8], "Zqmail-spawn unable to open message. (#4.3.0)\n");
    assert_eq!(r[&255], "ZInternal error: delnum too big. (#4.3.5)\n");
    // qmail-local's report is cut at netqmail's 3000 bytes.
    let long = &r[&254];
    assert!(long.starts_with("K0123456789\n"), "{long:?}");
    assert!(long.ends_with("\nError report too long, sorry.\n"));
    assert_eq!(long.len(), 1 + 3000 - 3);
    let args = fs::read_to_string(h.path().join("args.joe")).expect("args");
    assert_eq!(
        args.trim_end(),
        "-- u-joe /home/x joe - ext-joe y.example sender@x.example ./Maildir/"
    );
    sp.finish();
}

#[test]
fn lspawn_reads_users_cdb_in_qmail_newu_format() {
    let h = user_home();
    script(
        &h,
        "qmail-local",
        "#!/bin/sh\necho \"$@\" > \"$QMAIL_HOME/args.$4\"\nexit 0\n",
    );
    // What qmail-newu makes of:
    //   =joe:joe:507:100:/home/joe:::
    //   +joe-:joe:507:100:/home/joe:-::
    //   +:alias:7790:2108:/var/qmail/alias:-::
    let entries: Vec<(&[u8], &[u8])> = vec![
        (b"!joe\0", b"joe\x00507\x00100\x00/home/joe\x00\x00"),
        (b"!joe-", b"joe\x00507\x00100\x00/home/joe\x00-\x00"),
        (b"!", b"alias\x007790\x002108\x00/var/qmail/alias\x00-\x00"),
        (b"", b"-"),
    ];
    let cdb = h.path().join("users/cdb");
    control::write_cdb(&cdb, &h.path().join("users/cdb.tmp"), entries).expect("cdb");
    chown_user(&cdb);
    // qmail-getpw must not be needed.
    script(&h, "qmail-getpw", "#!/bin/sh\nexit 111\n");
    let m = mess_file(&h, 101, b"x\n");
    let mut sp = SpawnPeer::start({
        let mut c = user_cmd(&h, &bin("qmail-lspawn"));
        c.arg("./Mailbox");
        c
    });
    sp.command(0, &m, "s@x", "JOE@y.example");
    sp.command(1, &m, "s@x", "joe-lists@y.example");
    sp.command(2, &m, "s@x", "bill@y.example");
    let r = sp.reports(3);
    assert!(r.values().all(|t| t == "K"), "{r:?}");
    let a = |l: &str| {
        fs::read_to_string(h.path().join(format!("args.{l}")))
            .expect("args")
            .trim_end()
            .to_string()
    };
    assert_eq!(a("JOE"), "-- joe /home/joe JOE   y.example s@x ./Mailbox");
    assert_eq!(
        a("joe-lists"),
        "-- joe /home/joe joe-lists - lists y.example s@x ./Mailbox"
    );
    assert_eq!(
        a("bill"),
        "-- alias /var/qmail/alias bill - bill y.example s@x ./Mailbox"
    );
    sp.finish();
}

#[test]
fn spawn_wide_protocol_runs_hundreds_at_once() {
    let h = user_home();
    // Each run waits until the test releases it, so all are in flight together.
    script(
        &h,
        "qmail-local",
        r#"#!/bin/sh
touch "$QMAIL_HOME/running/$4"
while [ ! -e "$QMAIL_HOME/release" ]; do sleep 0.1; done
echo "done $4"
"#,
    );
    fake_getpw(&h);
    fs::create_dir(h.path().join("running")).expect("mkdir");
    chown_user(&h.path().join("running"));
    let m = mess_file(&h, 102, b"x\n");
    let mut sp = SpawnPeer::start({
        let mut c = user_cmd(&h, &bin("qmail-lspawn"));
        c.arg("./Maildir/");
        c
    });
    let answer = String::from_utf8(sp.probe()).expect("utf8");
    let max: u32 = answer
        .strip_prefix("Kwide ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("probe answer {answer:?}"));
    assert!(max >= 300, "wide limit {max}");
    let n = 300u32;
    for d in 0..n {
        // Delivery numbers above 255 only exist in the wide framing.
        sp.command(d * 3 + 1, &m, "s", &format!("u{d}@y.example"));
    }
    wait_until("300 deliveries running at once", || {
        fs::read_dir(h.path().join("running")).map_or(0, Iterator::count) == n as usize
    });
    user_file(&h, "release", b"");
    let r = sp.reports(n as usize);
    for d in 0..n {
        assert_eq!(r[&(d * 3 + 1)], format!("Kdone u{d}\n"));
    }
    sp.finish();
}

#[test]
fn rspawn_translates_qmail_remote_reports() {
    let h = user_home();
    let m = mess_file(&h, 103, b"x\n");
    // Before qmail-remote exists: a clear temporary failure.
    let _ = fs::remove_file(h.path().join("bin/qmail-remote"));
    let mut sp = SpawnPeer::start(user_cmd(&h, &bin("qmail-rspawn")));
    assert_eq!(sp.first, 255);
    sp.command(0, &m, "s@x", "a@far.example");
    let r = sp.reports(1);
    assert!(
        r[&0].starts_with("ZUnable to run qmail-remote: ") && r[&0].ends_with("(#4.3.0)\n"),
        "{:?}",
        r[&0]
    );
    sp.finish();

    script(
        &h,
        "qmail-remote",
        r#"#!/bin/sh
echo "$0 $*" > "$QMAIL_HOME/args.$3"
case "$3" in
  ok@*) printf 'r\0Kfar.example accepted message.\nRemote host said: 250 ok\n\0' ;;
  rej@*) printf 'hfar.example does not like recipient.\nRemote host said: 550 no\n\0DGiving up on 10.0.0.1.\n\0' ;;
  soft@*) printf 'sfar.example does not like recipient.\nRemote host said: 450 later\n\0' ;;
  conn@*) printf 'ZConnected to 10.0.0.1 but connection died. (#4.4.2)\n\0' ;;
  none@*) ;;
  exit@*) exit 1 ;;
esac
exit 0
"#,
    );
    let mut sp = SpawnPeer::start(user_cmd(&h, &bin("qmail-rspawn")));
    for (d, r) in ["ok", "rej", "soft", "conn", "none", "exit"]
        .iter()
        .enumerate()
    {
        sp.command(d as u32, &m, "me@here.example", &format!("{r}@far.example"));
    }
    let r = sp.reports(6);
    assert_eq!(
        r[&0],
        "Kfar.example accepted message.\nRemote host said: 250 ok\n"
    );
    assert_eq!(
        r[&1],
        "Dfar.example does not like recipient.\nRemote host said: 550 no\nGiving up on 10.0.0.1.\n"
    );
    assert_eq!(
        r[&2],
        "Zfar.example does not like recipient.\nRemote host said: 450 later\n"
    );
    assert_eq!(
        r[&3],
        "ZConnected to 10.0.0.1 but connection died. (#4.4.2)\n"
    );
    assert_eq!(r[&4], "Zqmail-remote produced no output.\n");
    assert_eq!(r[&5], "DUnable to run qmail-remote.\n");
    let args = fs::read_to_string(h.path().join("args.ok@far.example")).expect("args");
    assert!(
        args.ends_with("far.example me@here.example ok@far.example\n"),
        "{args:?}"
    );
    // qmail-rspawn clears lock/tcpto when it starts.
    assert_eq!(
        fs::read(h.queue().join("lock/tcpto")).expect("tcpto"),
        vec![0u8; 1024]
    );
    sp.finish();
}

#[test]
fn spawn_refuses_messages_of_the_wrong_owner_when_root() {
    assert!(
        is_root(),
        "this test needs root (a file of another owner); run the suite as root"
    );
    let h = user_home();
    let q = qmail_queue::Queue::in_home(h.path());
    fs::write(q.mess(104), b"x").expect("mess");
    std::os::unix::fs::lchown(q.mess(104), Some(0), Some(0)).expect("chown");
    let mut sp = SpawnPeer::start(user_cmd(&h, &bin("qmail-rspawn")));
    sp.command(9, &format!("{}/104", 104 % qmail_queue::SPLIT), "s", "a@b");
    assert_eq!(
        sp.reports(1)[&9],
        "ZSorry, message has wrong owner. (#4.3.5)\n"
    );
    sp.finish();
}

// ------------------------------------------------------------ the whole system

/// A single-user home with the fake qmail-local, qmail-remote and qmail-getpw, which keep
/// messages in mail/ ([`rqmail_tests::fakes`]).
fn system_home() -> Home {
    let h = user_home();
    mail_dir(&h);
    fake_local(&h);
    fake_remote(&h);
    fake_getpw(&h);
    h
}

/// The message number of the first `new msg` line after `after` lines.
fn msg_numbers(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("new msg ").and_then(|n| n.parse().ok()))
        .collect()
}

fn queue_is_empty(h: &Home) -> bool {
    h.queue_files().is_empty()
}

#[test]
fn delivers_local_and_remote_with_qmail_log_lines() {
    let h = system_home();
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: hi\n\nbody\n",
        "sender@far.example",
        &[
            "joe@testhost.example",
            "TestHost.Example.noat",
            "x@far.example",
            "bare",
        ],
    );
    sys.wait_log("end msg", |l| l.starts_with("end msg "));
    let mut local = delivered(&h);
    local.sort();
    assert_eq!(
        local,
        vec![
            "TestHost.Example.noat@testhost.example sender@far.example",
            "bare@testhost.example sender@far.example",
            "joe@testhost.example sender@far.example",
        ]
    );
    assert_eq!(
        remote_delivered(&h),
        vec!["x@far.example sender@far.example"]
    );
    wait_until("an empty queue", || queue_is_empty(&h));
    let log = stop(sys);
    let id = msg_numbers(&log)[0];
    let find = |p: &str| {
        log.iter()
            .find(|l| fmt_match(p, l))
            .unwrap_or_else(|| panic!("no {p:?} in {log:#?}"))
            .clone()
    };
    let info = find("info msg {n}: bytes {n} from <sender@far.example> qp {n} uid {n}");
    assert!(info.starts_with(&format!("info msg {id}: bytes ")));
    let uid = if is_root() {
        nobody().0
    } else {
        nix::unistd::getuid().as_raw()
    };
    assert!(info.ends_with(&format!(" uid {uid}")), "{info}");
    let start = find("starting delivery {n}: msg {n} to remote x@far.example");
    assert!(start.contains(&format!(": msg {id} to remote")));
    let d: u64 = start["starting delivery ".len()..]
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("delivery number");
    find(&format!(
        "delivery {d}: success: far.example_accepted_message./Remote_host_said:_250_ok/"
    ));
    find("delivery {n}: success: did_0+0+1/");
    find("status: local 0/10 remote 0/20");
    assert_eq!(find("end msg {n}"), format!("end msg {id}"));
}

/// The bounce message from the first line after qmail-queue's Received line.
fn bounce_body(mail: &str) -> &str {
    let i = mail.find('\n').expect("Received line") + 1;
    &mail[i..]
}

#[test]
fn bounce_for_unknown_user_has_netqmails_exact_text() {
    let h = system_home();
    let sys = System::start(&h);
    let original = "Subject: lost\n\nhello\n";
    inject(
        &h,
        original,
        "sender@testhost.example",
        &["nosuch@testhost.example"],
    );
    sys.wait_log("the bounce's end msg", |l| l.starts_with("end msg "));
    sys.wait_count("both messages ended", 2, |l| l.starts_with("end msg "));
    let mails = mail_files(&h);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].0.starts_with("sender@testhost.example."));
    let body = bounce_body(&mails[0].1);
    let date_line = body.lines().next().expect("Date");
    assert!(
        fmt_match("Date: {n} {w} {n} {n}:{n}:{n} -0000", date_line),
        "{date_line}"
    );
    let rest = &body[date_line.len() + 1..];
    let expect_head = "From: MAILER-DAEMON@testhost.example\n\
To: sender@testhost.example\n\
Subject: failure notice\n\
\n\
Hi. This is the qmail-send program at testhost.example.\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\
\n\
<nosuch@testhost.example>:\n\
Sorry, no mailbox here by that name. (#5.1.1)\n\
\n\
--- Below this line is a copy of the message.\n\
\n\
Return-Path: <sender@testhost.example>\n\
Received: (qmail ";
    assert!(rest.starts_with(expect_head), "{rest}");
    assert!(rest.ends_with(&format!(" -0000\n{original}")), "{rest}");
    // The bounce has the empty envelope sender.
    assert_eq!(delivered(&h), vec!["sender@testhost.example "]);
    let log = stop(sys);
    let ids = msg_numbers(&log);
    assert_eq!(ids.len(), 2);
    let bounce = log
        .iter()
        .find(|l| l.starts_with("bounce msg "))
        .expect("bounce msg line");
    let qp = bounce.rsplit(' ').next().expect("qp");
    assert_eq!(bounce, &format!("bounce msg {} qp {qp}", ids[0]));
    assert!(log.iter().any(|l| fmt_match(
        &format!("info msg {}: bytes {{n}} from <> qp {qp} uid {{n}}", ids[1]),
        l
    )));
    assert!(log.iter().any(|l| fmt_match(
        "delivery {n}: failure: Sorry,_no_mailbox_here_by_that_name._(#5.1.1)/",
        l
    )));
    // bounce/ was removed with the message.
    wait_until("an empty queue", || queue_is_empty(&h));
}

/// A failed recipient's bounce/N is a durable name before its local/S/N goes: qmail-send
/// fsyncs the directory bounce/ after making bounce/N (rule 4). Else a power loss may keep
/// the removal of local/S/N and lose the name bounce/N, and the message ends with no
/// bounce (found by rqmail-powerloss, see RELIABILITY.md). The order is read from an
/// strace of qmail-send.
#[test]
fn bounce_name_is_fsynced_before_the_recipient_is_removed() {
    let h = system_home();
    let trace = h.path().join("trace");
    let mut c = user_cmd(h.path(), &tool("strace"));
    c.args(["-f", "-qq", "-y", "-o"])
        .arg(&trace)
        .args(["-e", "trace=openat,fsync,fdatasync,unlink,unlinkat"])
        .arg(h.path().join("bin/qmail-start"));
    let sys = System::start_cmd(c, &["./Maildir/"]);
    inject(
        &h,
        "Subject: lost\n\nhello\n",
        "sender@testhost.example",
        &["nosuch@testhost.example"],
    );
    sys.wait_count("both messages ended", 2, |l| l.starts_with("end msg "));
    // qmail-send is strace's child: TERM it, and strace ends with it.
    let strace = sys.pid().as_raw();
    let (send, _) = rqmail_tests::children(strace)
        .into_iter()
        .find(|(_, n)| n == "qmail-send")
        .expect("qmail-send under strace");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(send),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("TERM qmail-send");
    wait_until("strace's end", || {
        rqmail_tests::proc_stat(strace).is_none_or(|(_, _, state)| state == 'Z')
    });
    let log = sys.lines();
    sys.kill();
    let id = msg_numbers(&log)[0];
    let t = fs::read_to_string(&trace).expect("strace's output");
    let lines: Vec<&str> = t.lines().collect();
    let find = |what: &str, f: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .position(|l| f(l))
            .unwrap_or_else(|| panic!("no {what} in the trace:\n{t}"))
    };
    let made = find("creation of bounce/N", &|l| {
        l.contains(&format!("\"bounce/{id}\"")) && l.contains("O_CREAT")
    });
    let split = id % qmail_queue::SPLIT;
    let removed = find("removal of local/S/N", &|l| {
        l.contains("unlink") && l.contains(&format!("\"local/{split}/{id}\"")) && l.ends_with("= 0")
    });
    assert!(
        made < removed,
        "local/{split}/{id} removed before bounce/{id} was made:\n{}",
        lines
            .iter()
            .filter(|l| l.contains(&id.to_string()))
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        lines[made..removed]
            .iter()
            .any(|l| l.contains(" fsync(") && l.contains("/queue/bounce>) = 0")),
        "bounce/ not fsynced between the creation of bounce/{id} and the removal of local/{split}/{id}:\n{}",
        lines[made..=removed].join("\n")
    );
}

#[test]
fn double_bounce_goes_to_doublebounceto_and_triple_bounces_are_discarded() {
    let h = system_home();
    h.control("doublebounceto", "dbl\n");
    h.control("bouncefrom", "Mail Daemon\n");
    h.control("bouncehost", "bounces.example\n");
    user_file(&h, "fail-remote", b"");
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: one\n\nx\n",
        "far@far.example",
        &["nosuch@testhost.example"],
    );
    // message, its bounce (fails remotely), the double bounce (delivered locally).
    sys.wait_count("three messages ended", 3, |l| l.starts_with("end msg "));
    let mails = mail_files(&h);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].0.starts_with("dbl@testhost.example."), "{mails:?}");
    let body = bounce_body(&mails[0].1);
    let rest = &body[body.find('\n').expect("Date") + 1..];
    let expect = "From: \"Mail Daemon\"@bounces.example\n\
To: dbl@testhost.example\n\
Subject: failure notice\n\
\n\
Hi. This is the qmail-send program at bounces.example.\n\
I tried to deliver a bounce message to this address, but the bounce bounced!\n\
\n\
<far@far.example>:\n\
far.example does not like recipient.\n\
Remote host said: 550 no such user\n\
Giving up on 10.0.0.1.\n\
\n\
--- Below this line is the original bounce.\n\
\n\
Return-Path: <>\n\
Received: (qmail ";
    assert!(rest.starts_with(expect), "{rest}");
    assert!(rest.contains(
        "\nFrom: \"Mail Daemon\"@bounces.example\nTo: far@far.example\nSubject: failure notice\n"
    ));
    // The double bounce's envelope sender is #@[].
    assert_eq!(delivered(&h), vec!["dbl@testhost.example #@[]"]);

    // Now doublebounceto fails too: the third bounce is discarded.
    user_file(&h, "fail-dbl", b"");
    inject(
        &h,
        "Subject: two\n\nx\n",
        "far@far.example",
        &["nosuch@testhost.example"],
    );
    sys.wait_log("triple bounce", |l| {
        l.starts_with("triple bounce: discarding bounce/")
    });
    sys.wait_count("six messages ended", 6, |l| l.starts_with("end msg "));
    wait_until("an empty queue", || queue_is_empty(&h));
    let log = stop(sys);
    let ids = msg_numbers(&log);
    assert_eq!(ids.len(), 6);
    assert!(log.contains(&format!("triple bounce: discarding bounce/{}", ids[5])));
    assert_eq!(
        log.iter().filter(|l| l.starts_with("bounce msg ")).count(),
        4
    );
}

#[test]
fn deferral_then_success_after_alrm() {
    let h = system_home();
    user_file(&h, "defer-joe", b"");
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: later\n\nx\n",
        "s@far.example",
        &["joe@testhost.example"],
    );
    sys.wait_log("the deferral", |l| {
        fmt_match(
            "delivery {n}: deferral: Deferring_joe_for_now._(#4.2.1)/",
            l,
        )
    });
    assert!(delivered(&h).is_empty());
    fs::remove_file(h.path().join("defer-joe")).expect("rm");
    // The next scheduled attempt is 100 seconds after the message's birth; ALRM makes it
    // now.
    sys.signal(nix::sys::signal::Signal::SIGALRM);
    sys.wait_log("end msg", |l| l.starts_with("end msg "));
    assert_eq!(delivered(&h), vec!["joe@testhost.example s@far.example"]);
    let log = stop(sys);
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("starting delivery"))
            .count(),
        2
    );
}

#[test]
fn queuelifetime_turns_a_late_deferral_into_a_bounce() {
    let h = system_home();
    h.control("queuelifetime", "0\n");
    user_file(&h, "defer-joe", b"");
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: old\n\nx\n",
        "s@testhost.example",
        &["joe@testhost.example"],
    );
    sys.wait_log("the first deferral", |l| {
        l.contains(": deferral: Deferring_joe")
    });
    std::thread::sleep(Duration::from_millis(1100));
    sys.signal(nix::sys::signal::Signal::SIGALRM);
    sys.wait_log("the failure", |l| {
        fmt_match(
            "delivery {n}: failure: Deferring_joe_for_now._(#4.2.1)/I'm_not_going_to_try_again;_this_message_has_been_in_the_queue_too_long./",
            l,
        )
    });
    sys.wait_count("both ended", 2, |l| l.starts_with("end msg "));
    let mails = mail_files(&h);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].1.contains(
        "<joe@testhost.example>:\nDeferring joe for now. (#4.2.1)\nI'm not going to try again; this message has been in the queue too long.\n\n"
    ));
    stop(sys);
}

#[test]
fn kill_9_in_a_batch_then_restart_delivers_everything() {
    let h = system_home();
    script(
        &h,
        "qmail-local",
        r#"#!/bin/sh
sleep 0.2
cat > /dev/null
echo "$4@$7" >> "$QMAIL_HOME/delivered"
echo "did 0+0+1"
"#,
    );
    let n = 40;
    for i in 0..n {
        inject(
            &h,
            "Subject: batch\n\nx\n",
            "s@far.example",
            &[&format!("u{i}@testhost.example")],
        );
    }
    let sys = System::start(&h);
    wait_until("some deliveries", || delivered(&h).len() >= 5);
    sys.kill();
    assert!(
        delivered(&h).len() < n,
        "the kill came too late to test anything"
    );
    // A killed qmail-send leaves its lock; the next one takes it.
    let sys = System::start(&h);
    wait_until("every recipient delivered", || {
        let mut d = delivered(&h);
        d.sort();
        d.dedup();
        d.len() == n
    });
    wait_until("an empty queue", || queue_is_empty(&h));
    let log = stop(sys);
    assert!(log.iter().any(|l| l.starts_with("end msg ")));
}

#[test]
fn concurrencylocal_200_runs_200_deliveries_at_once() {
    let h = system_home();
    h.control("concurrencylocal", "200\n");
    script(
        &h,
        "qmail-local",
        r#"#!/bin/sh
touch "$QMAIL_HOME/running/$4"
while [ ! -e "$QMAIL_HOME/release" ]; do sleep 0.2; done
rm -f "$QMAIL_HOME/running/$4"
echo "$4" >> "$QMAIL_HOME/delivered"
echo "did 0+0+1"
"#,
    );
    fs::create_dir(h.path().join("running")).expect("mkdir");
    chown_user(&h.path().join("running"));
    let sys = System::start(&h);
    assert!(
        sys.lines()
            .contains(&"status: local 0/200 remote 0/20".to_string())
    );
    let rcpts: Vec<String> = (0..250).map(|i| format!("r{i}@testhost.example")).collect();
    let r: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    inject(&h, "Subject: many\n\nx\n", "s@far.example", &r);
    wait_until("200 deliveries in flight", || {
        fs::read_dir(h.path().join("running")).map_or(0, Iterator::count) == 200
    });
    sys.wait_log("the limit reached", |l| {
        l == "status: local 200/200 remote 0/20"
    });
    user_file(&h, "release", b"");
    sys.wait_log("end msg", |l| l.starts_with("end msg "));
    assert_eq!(delivered(&h).len(), 250);
    let log = stop(sys);
    // Never more than the limit.
    for l in &log {
        if let Some(rest) = l.strip_prefix("status: local ") {
            let used: u32 = rest
                .split('/')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("used");
            assert!(used <= 200, "{l}");
        }
    }
}

#[test]
fn deliveries_keep_going_while_messages_keep_arriving() {
    let h = system_home();
    // A backlog in todo/ before qmail-send starts, and more arriving while it runs.
    let before = 150;
    let during = 150;
    for i in 0..before {
        inject(
            &h,
            "Subject: x\n\nx\n",
            "s@far.example",
            &[&format!("b{i}@testhost.example")],
        );
    }
    let sys = System::start(&h);
    let h2 = h.path().to_path_buf();
    let injector = std::thread::spawn(move || {
        for i in 0..during {
            let mut c = Command::new(if is_root() {
                tool("setpriv")
            } else {
                bin("qmail-queue")
            });
            if is_root() {
                c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                    .arg(bin("qmail-queue"));
            }
            c.env_clear().env("QMAIL_HOME", &h2).current_dir(&h2);
            let code = queue_with(
                c,
                b"Subject: y\n\ny\n",
                "s@far.example",
                &[&format!("d{i}@testhost.example")],
            );
            assert_eq!(code, 0);
        }
    });
    injector.join().expect("injector");
    wait_until("every message delivered", || {
        delivered(&h).len() == before + during
    });
    let log = stop(sys);
    // Deliveries start as soon as the first messages are preprocessed, not after the
    // backlog in todo/ is gone: few "new msg" lines precede the first delivery. On a calm
    // machine that is one collection of the preprocessing threads' results (16
    // messages); on a loaded one the loop may collect a few more before qmail-lspawn
    // takes the first delivery, so the bound is half the backlog, which a qmail-send
    // that drained todo/ before delivering would exceed ...
    let first_start = log
        .iter()
        .position(|l| l.starts_with("starting delivery "))
        .expect("a delivery");
    let new_before = log[..first_start]
        .iter()
        .filter(|l| l.starts_with("new msg "))
        .count();
    assert!(
        new_before <= before / 2,
        "{new_before} messages preprocessed before the first delivery started"
    );
    // Each message's lines come in netqmail's order, whichever thread preprocessed it:
    // new msg, info msg, then its deliveries, then end msg.
    let pos = |prefix: &str, id: &str, suffix: &str| {
        log.iter()
            .position(|l| {
                l.starts_with(prefix) && l[prefix.len()..].starts_with(id) && {
                    let rest = &l[prefix.len() + id.len()..];
                    rest.starts_with(suffix)
                }
            })
            .unwrap_or_else(|| panic!("no {prefix}{id}{suffix} line"))
    };
    for l in log.iter().filter(|l| l.starts_with("new msg ")) {
        let id = &l["new msg ".len()..];
        let new = pos("new msg ", id, "");
        let info = pos("info msg ", id, ":");
        let start = log
            .iter()
            .position(|l| {
                l.starts_with("starting delivery ") && l.contains(&format!(": msg {id} "))
            })
            .expect("its delivery");
        let end = pos("end msg ", id, "");
        assert!(
            new < info && info < start && start < end,
            "msg {id}: {new} {info} {start} {end}"
        );
    }
    // ... and deliveries kept finishing while the backlog was being preprocessed.
    let last_new = log
        .iter()
        .rposition(|l| l.starts_with("new msg "))
        .expect("new msg");
    let done_before = log[..last_new]
        .iter()
        .filter(|l| l.contains(": success: "))
        .count();
    // (At least a full round of the concurrency limit; how many more depends on the
    // relative speed of the disk and of starting processes, so it is not asserted.)
    assert!(
        done_before >= 10,
        "only {done_before} deliveries finished while messages were arriving"
    );
}

#[test]
fn arrivals_are_preprocessed_while_deliveries_are_busy() {
    let h = system_home();
    let held = close_gate(&h);
    let sys = System::start(&h);
    let rcpts: Vec<String> = (0..30)
        .map(|i| format!("slow{i}@testhost.example"))
        .collect();
    let r: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    inject(&h, "Subject: big\n\nx\n", "s@far.example", &r);
    // Every delivery slot is taken by a delivery that cannot finish yet.
    wait_until("ten deliveries running", || running(&h).len() == 10);
    inject(
        &h,
        "Subject: small\n\nx\n",
        "s@far.example",
        &["late@testhost.example"],
    );
    sys.wait_count("the new message preprocessed", 2, |l| {
        l.starts_with("new msg ")
    });
    assert!(delivered(&h).is_empty(), "no delivery could have ended");
    drop(held);
    wait_until("every delivery", || delivered(&h).len() == 31);
    sys.wait_count("both ended", 2, |l| l.starts_with("end msg "));
    stop(sys);
}

#[test]
fn a_second_qmail_send_refuses_to_start() {
    let h = system_home();
    let sys = System::start(&h);
    let mut second = user_cmd(&h, &h.path().join("bin/qmail-start"));
    second.arg("./Maildir/");
    let (code, out, _) = rqmail_tests::run_with_input(second, b"");
    assert_eq!(code, 111);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "alert: cannot start: qmail-send is already running\n"
    );
    stop(sys);
}

/// Makes control/locals a symbolic link to a file outside control/ (readable by every
/// user), sends HUP and waits for qmail-send to refuse it: its Landlock rules
/// (qmail-send(8), CONFINEMENT) allow control/ and the links found when qmail-start ran.
fn locals_linked_outside_is_refused(h: &Home, sys: &System) {
    if control::confine::kernel_support().landlock_abi < 1 {
        eprintln!("no Landlock in this kernel: qmail-send's rules not checked");
        return;
    }
    let outside = h.path().join("elsewhere");
    fs::write(&outside, "testhost.example\n").expect("write");
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).expect("chmod");
    let locals = h.path().join("control/locals");
    let _ = fs::remove_file(&locals);
    std::os::unix::fs::symlink(&outside, &locals).expect("symlink");
    sys.signal(nix::sys::signal::Signal::SIGHUP);
    sys.wait_log("the refused reread", |l| {
        l == "alert: unable to reread control/locals"
    });
}

/// qmail-send in single-user mode (qmail-send(8), CONFINEMENT): qmail-start sets
/// no_new_privs and the Landlock rules before it becomes qmail-send, which still queues
/// bounces through bin/qmail-queue under them.
#[test]
fn single_user_qmail_send_runs_under_no_new_privs_and_landlock() {
    let h = system_home();
    let sys = System::start(&h);
    let send = sys.pid().as_raw();
    wait_until("qmail-send with no_new_privs", || {
        rqmail_tests::proc_status(send).is_some_and(|st| st["NoNewPrivs"] == "1")
    });
    let st = rqmail_tests::proc_status(send).expect("qmail-send alive");
    assert_eq!(st["Seccomp"], "0");
    assert_eq!(st["Name"], "qmail-send");
    // a bounce through bin/qmail-queue, from inside the rules
    inject(
        &h,
        "Subject: a\n\nx\n",
        "s@far.example",
        &["nosuch@testhost.example"],
    );
    sys.wait_log("the bounce", |l| l.starts_with("bounce msg "));
    locals_linked_outside_is_refused(&h, &sys);
    // the kernel's support is asked without /proc, which the rules hide
    if control::confine::support_warning().is_none() {
        let warned = sys.count(|l| l.contains("this kernel has no"));
        assert_eq!(warned, 0, "{:#?}", sys.lines());
    }
    stop(sys);
}

#[test]
fn hup_rereads_locals_virtualdomains_and_concurrency() {
    let h = system_home();
    let sys = System::start(&h);
    inject(&h, "Subject: a\n\nx\n", "s@far.example", &["x@new.example"]);
    wait_until("remote delivery", || remote_delivered(&h).len() == 1);
    h.control("locals", "testhost.example\nnew.example\n");
    h.control("virtualdomains", "virt.example:vuser\n");
    h.control("concurrencylocal", "5\n");
    sys.signal(nix::sys::signal::Signal::SIGHUP);
    sys.wait_log("the new limits", |l| l == "status: local 0/5 remote 0/20");
    inject(
        &h,
        "Subject: b\n\nx\n",
        "s@far.example",
        &["y@new.example", "z@virt.example"],
    );
    wait_until("local deliveries", || delivered(&h).len() == 2);
    let mut d = delivered(&h);
    d.sort();
    assert_eq!(
        d,
        vec![
            "vuser-z@virt.example s@far.example",
            "y@new.example s@far.example"
        ]
    );
    stop(sys);
}

#[test]
fn qmail_start_plumbing_and_logger_in_single_user_mode() {
    let h = system_home();
    let sys = System::start_cmd(
        user_cmd(&h, &h.path().join("bin/qmail-start")),
        &["./Maildir/", "sed", "-u", "s/^/logged: /"],
    );
    let send = sys.pid().as_raw();
    let by_name = children_named(
        send,
        &["qmail-lspawn", "qmail-rspawn", "qmail-clean", "sed"],
    );
    let pipe = |pid: i32, fd: u32| -> String {
        fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    // qmail-send's 1..6 are the spawns' and qmail-clean's 0 and 1; its 0 is the logger's 0.
    assert_eq!(pipe(send, 0), pipe(by_name["sed"], 0));
    assert_eq!(pipe(send, 1), pipe(by_name["qmail-lspawn"], 0));
    assert_eq!(pipe(send, 2), pipe(by_name["qmail-lspawn"], 1));
    assert_eq!(pipe(send, 3), pipe(by_name["qmail-rspawn"], 0));
    assert_eq!(pipe(send, 4), pipe(by_name["qmail-rspawn"], 1));
    assert_eq!(pipe(send, 5), pipe(by_name["qmail-clean"], 0));
    assert_eq!(pipe(send, 6), pipe(by_name["qmail-clean"], 1));
    for fd in 0..=6 {
        assert!(pipe(send, fd).starts_with("pipe:"), "qmail-send fd {fd}");
    }
    assert!(sys.lines()[0].starts_with("logged: status: local 0/10"));
    inject(
        &h,
        "Subject: a\n\nx\n",
        "s@far.example",
        &["joe@testhost.example"],
    );
    sys.wait_log("end msg", |l| l.starts_with("logged: end msg "));
    let mut sys = sys;
    sys.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(wait_child(&mut sys.child), Some(0));
}

/// Waits until `parent` has a child running each program in `names` (a child of
/// qmail-start may not have exec'd yet when qmail-send logs its first line); returns
/// name -> pid.
fn children_named(parent: i32, names: &[&str]) -> HashMap<String, i32> {
    let mut m = HashMap::new();
    wait_until("the daemons to start", || {
        m = children(parent).into_iter().map(|(p, n)| (n, p)).collect();
        names.iter().all(|n| m.contains_key(*n))
    });
    m
}

#[test]
fn splogger_sends_syslog_datagrams() {
    let d = tempfile::tempdir().expect("tempdir");
    let sock_path = d.path().join("log");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut c = Command::new(bin("splogger"));
    c.args(["qmailtag", "3"]).env("SPLOGGER_SOCKET", &sock_path);
    let mut long = "x".repeat(1000);
    long.push('\n');
    let input = format!("new msg 1\n\nwarning: w\talert\nalert: a\n{long}");
    let (code, _, _) = rqmail_tests::run_with_input(c, input.as_bytes());
    assert_eq!(code, 0);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..5 {
        let n = sock.recv(&mut buf).expect("datagram");
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    // facility 3 (daemon): 24 + severity.
    let shape = |g: &str, pri: &str, rest: &str| {
        assert!(g.starts_with(&format!("<{pri}>")), "{g}");
        let body = g.split_once("qmailtag: ").expect("tag").1;
        assert!(fmt_match(&format!("{{n}}.{{n}}{rest}"), body), "{g}");
        let ts = &g[g.find('>').expect(">") + 1..g.find("qmailtag").expect("tag")];
        assert!(fmt_match("{w} {*}{n} {n}:{n}:{n} ", ts), "timestamp {ts:?}");
    };
    shape(&got[0], "30", " new msg 1");
    shape(&got[1], "28", " warning: w?alert");
    shape(&got[2], "25", " alert: a");
    shape(&got[3], "30", &format!(" {}", "x".repeat(799)));
    shape(&got[4], "30", &format!("+{}", "x".repeat(201)));
    let stamp = |g: &str| g.split_once("qmailtag: ").expect("tag").1[..17].to_string();
    assert_eq!(
        stamp(&got[3]),
        stamp(&got[4]),
        "a folded line keeps its timestamp"
    );
}

#[test]
fn root_mode_runs_each_daemon_under_its_qmail_id() {
    let (h, ids) = root_mode_home();
    let out = h.path().join("out");
    fs::create_dir(&out).expect("mkdir");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).expect("chmod");
    let (nu, ng) = nobody();
    let write = |name: &str, body: &str| {
        let p = h.path().join("bin").join(name);
        let _ = fs::remove_file(&p);
        fs::write(&p, body).expect("script");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    write(
        "qmail-local",
        "#!/bin/sh\ncat > /dev/null\n{ id -u; id -g; id -G; awk '/^Groups:/ { print \"groups\", $2 }' /proc/$$/status; echo \"$2 $3 $4\"; } > \"$QMAIL_HOME/out/$4\"\necho did 1+0+0\n",
    );
    write(
        "qmail-remote",
        "#!/bin/sh\ncat > /dev/null\nid -u > \"$QMAIL_HOME/out/remote\"\nprintf 'r\\0Kok\\0'\n",
    );
    let home_joe = format!("{}/out", h.path().display());
    let joe = format!("nobody\0{nu}\0{ng}\0{home_joe}\0\0");
    let entries: Vec<(&[u8], &[u8])> = vec![
        (b"!joe\0", joe.as_bytes()),
        (b"!rooty\0", b"root\x000\x000\x00/root\x00\x00"),
        (b"", b""),
    ];
    control::write_cdb(
        &h.path().join("users/cdb"),
        &h.path().join("users/tmp"),
        entries,
    )
    .expect("cdb");

    let mut c = Command::new(h.path().join("bin/qmail-start"));
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAIL_HOME", h.path());
    let sys = System::start_cmd(c, &["./Maildir/", "cat"]);
    let send = sys.pid().as_raw();
    let kids = children_named(
        send,
        &["qmail-lspawn", "qmail-rspawn", "qmail-clean", "cat"],
    );
    let q = |n: &str| ids_of(n);
    let (qmail, nofiles) = (ids.qmail.as_raw(), ids.nofiles.as_raw());
    let expect = [
        ("qmail-send", send, q("qmails"), qmail),
        ("qmail-lspawn", kids["qmail-lspawn"], 0, qmail),
        ("qmail-rspawn", kids["qmail-rspawn"], q("qmailr"), qmail),
        ("qmail-clean", kids["qmail-clean"], q("qmailq"), qmail),
        ("cat", kids["cat"], q("qmaill"), nofiles),
    ];
    for (name, pid, uid, gid) in expect {
        let st = rqmail_tests::proc_status(pid).expect("daemon alive");
        assert_eq!(
            st["Uid"],
            format!("{uid}\t{uid}\t{uid}\t{uid}"),
            "{name} uid"
        );
        assert_eq!(
            st["Gid"],
            format!("{gid}\t{gid}\t{gid}\t{gid}"),
            "{name} gid"
        );
        assert_eq!(st["Groups"], gid.to_string(), "{name} supplementary groups");
    }
    // qmail-lspawn keeps root for setuid/setgid only: CAP_SETGID (6) and CAP_SETUID (7).
    let ls = rqmail_tests::proc_status(kids["qmail-lspawn"]).expect("qmail-lspawn alive");
    assert_eq!(ls["CapEff"], "00000000000000c0");
    assert_eq!(ls["CapPrm"], "00000000000000c0");
    assert_eq!(ls["CapInh"], "0000000000000000");
    assert_eq!(ls["CapAmb"], "0000000000000000");
    let rs = rqmail_tests::proc_status(kids["qmail-rspawn"]).expect("qmail-rspawn alive");
    assert_eq!(rs["CapEff"], "0000000000000000");
    // Confinement (qmail-start(8) and each daemon's CONFINEMENT): (NoNewPrivs, Seccomp,
    // CapBnd); the daemons confine themselves just after they start.
    let confinement = |pid: i32| {
        let st = rqmail_tests::proc_status(pid).expect("daemon alive");
        (
            st["NoNewPrivs"].clone(),
            st["Seccomp"].clone(),
            st["CapBnd"].clone(),
        )
    };
    let none = "0000000000000000".to_string();
    let expect = [
        ("qmail-send", send, ("0", "0", none.clone())),
        (
            "qmail-lspawn",
            kids["qmail-lspawn"],
            ("0", "0", "00000000000000c0".into()),
        ),
        (
            "qmail-rspawn",
            kids["qmail-rspawn"],
            ("1", "0", none.clone()),
        ),
        ("qmail-clean", kids["qmail-clean"], ("1", "2", none.clone())),
        ("the logger", kids["cat"], ("0", "0", none)),
    ];
    for (name, pid, (nnp, sc, bnd)) in expect {
        let want = (nnp.to_string(), sc.to_string(), bnd);
        wait_until(&format!("{name} confined"), || confinement(pid) == want);
    }

    // Messages come from qmail-queue running as qmailq.
    let mut qq = Command::new(tool("setpriv"));
    qq.args(["--reuid=qmailq", "--regid=qmail", "--clear-groups"])
        .arg(bin("qmail-queue"))
        .env_clear()
        .env("QMAIL_HOME", h.path())
        .current_dir(h.path());
    let code = queue_with(
        qq,
        b"Subject: root mode\n\nx\n",
        "s@far.example",
        &[
            "joe@testhost.example",
            "rooty@testhost.example",
            "x@far.example",
        ],
    );
    assert_eq!(code, 0);
    wait_until("joe's delivery", || {
        file_lines(&out.join("joe")).len() == 5 && file_lines(&out.join("remote")).len() == 1
    });
    sys.wait_log("the refusal", |l| {
        fmt_match(
            "{*}delivery {n}: deferral: Not_allowed_to_perform_deliveries_as_root./",
            l,
        )
    });
    let got = file_lines(&out.join("joe"));
    assert_eq!(
        got,
        vec![
            nu.to_string(),
            ng.to_string(),
            ng.to_string(),
            format!("groups {ng}"),
            format!("nobody {home_joe} joe")
        ]
    );
    assert_eq!(
        file_lines(&out.join("remote")),
        vec![q("qmailr").to_string()]
    );
    // qmail-send's Landlock rules, installed by qmail-start as root without no_new_privs
    locals_linked_outside_is_refused(&h, &sys);
    stop(sys);
}

fn ids_of(name: &str) -> u32 {
    user_ids(name).0
}

#[test]
fn smtp_to_maildir_through_the_real_programs() {
    let h = user_home();
    h.control("rcpthosts", "testhost.example\n");
    let joe = h.path().join("joe");
    fs::create_dir(&joe).expect("mkdir");
    chown_user(&joe);
    let st = user_cmd(&h, &bin("maildirmake"))
        .arg(joe.join("Maildir"))
        .status()
        .expect("maildirmake");
    assert!(st.success());
    let (u, g) = if is_root() {
        nobody()
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    };
    user_file(
        &h,
        "users/assign",
        format!("=joe:nobody:{u}:{g}:{}:::\n.\n", joe.display()).as_bytes(),
    );
    let st = user_cmd(&h, &bin("qmail-newu"))
        .status()
        .expect("qmail-newu");
    assert!(st.success());
    let sys = System::start(&h);
    let setpriv = tool("setpriv");
    let smtpd = bin("qmail-smtpd");
    let prog: Vec<&Path> = if is_root() {
        vec![
            &setpriv,
            Path::new("--reuid=nobody"),
            Path::new("--regid=nogroup"),
            Path::new("--clear-groups"),
            &smtpd,
        ]
    } else {
        vec![&smtpd]
    };
    let (_server, port) = rqmail_tests::tcpserver(&h, &[], &prog);
    let mut s = rqmail_tests::Smtp::connect(port);
    assert!(s.reply()[0].starts_with("220 "));
    assert!(s.cmd("HELO client.example")[0].starts_with("250"));
    assert!(s.cmd("MAIL FROM:<a@far.example>")[0].starts_with("250"));
    assert!(s.cmd("RCPT TO:<joe@testhost.example>")[0].starts_with("250"));
    assert!(s.cmd("DATA")[0].starts_with("354"));
    s.send(b"Subject: e2e\r\n\r\nhello through every program\r\n.\r\n");
    assert!(s.reply()[0].starts_with("250"));
    s.cmd("QUIT");
    let new = joe.join("Maildir/new");
    wait_until("the message in joe's Maildir", || {
        fs::read_dir(&new).map_or(0, Iterator::count) == 1
    });
    let f = fs::read_dir(&new)
        .expect("new")
        .flatten()
        .next()
        .expect("file");
    let m = fs::read_to_string(f.path()).expect("read");
    assert!(
        m.starts_with("Return-Path: <a@far.example>\nDelivered-To: joe@testhost.example\n"),
        "{m}"
    );
    assert!(
        m.ends_with("Subject: e2e\n\nhello through every program\n"),
        "{m}"
    );
    sys.wait_log("end msg", |l| l.starts_with("end msg "));
    let log = stop(sys);
    assert!(
        log.iter()
            .any(|l| fmt_match("delivery {n}: success: did_1+0+0/", l)),
        "{log:#?}"
    );
    wait_until("an empty queue", || queue_is_empty(&h));
}

#[test]
fn an_interrupted_elimination_is_finished_after_a_restart() {
    let h = system_home();
    let q = qmail_queue::Queue::in_home(h.path());
    let set_mtime = |p: &Path, secs: u64| {
        let t = nix::sys::time::TimeVal::new(secs as i64, 0);
        nix::sys::stat::utimes(p, &t, &t).expect("utimes");
    };
    let now = control::now();
    // Message 71: delivered, info/ still there (qmail-send died while ending it).
    let mess71 = user_file(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("mess", 71, true)),
        b"m\n",
    );
    let info71 = user_file(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("info", 71, true)),
        b"Fs@far.example\0",
    );
    set_mtime(&mess71, now - 100);
    set_mtime(&info71, now - 50);
    // Message 72: its mess/ is gone and the number is in use by a newer message that
    // qmail-queue is still writing (no todo/ yet): it must be left alone.
    let info72 = user_file(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("info", 72, true)),
        b"Fs@far.example\0",
    );
    let mess72 = user_file(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("mess", 72, true)),
        b"new\n",
    );
    let intd72 = user_file(&h, "queue/intd/72", b"u1\0p2\0");
    set_mtime(&info72, now - 50);
    set_mtime(&mess72, now - 10);
    let sys = System::start(&h);
    sys.wait_count("both ended", 2, |l| l.starts_with("end msg "));
    wait_until("message 71 gone", || !mess71.exists() && !info71.exists());
    wait_until("old info/72 gone", || !info72.exists());
    assert!(
        mess72.exists() && intd72.exists(),
        "the new message 72 was touched"
    );
    assert!(!q.bounce(71).exists());
    stop(sys);
}

/// A todo/ file whose records end with an empty record (a lone NUL, as a disk error or a
/// hand edit can leave) is netqmail's "unknown record type": qmail-send logs it, keeps
/// running, and delivers a good message queued beside it.
#[test]
fn a_todo_file_with_an_empty_record_is_logged_and_the_queue_goes_on() {
    let h = system_home();
    let bad = 4711u64;
    user_file(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("mess", bad, true)),
        b"Subject: bad\n\nx\n",
    );
    user_file(
        &h,
        &format!("queue/intd/{bad}"),
        b"u0\0p0\0Fs@far.example\0Tjoe@testhost.example\0\0",
    );
    user_file(
        &h,
        &format!("queue/todo/{bad}"),
        b"u0\0p0\0Fs@far.example\0Tjoe@testhost.example\0\0",
    );
    let sys = System::start(&h);
    sys.wait_log("the warning", |l| {
        l == format!("warning: unknown record type in todo/{bad}")
    });
    inject(
        &h,
        "Subject: good\n\nbody\n",
        "s@far.example",
        &["joe@testhost.example"],
    );
    sys.wait_log("the good message delivered", |l| l.starts_with("end msg "));
    assert_eq!(delivered(&h), vec!["joe@testhost.example s@far.example"]);
    assert!(h.path().join(format!("queue/todo/{bad}")).exists());
    stop(sys);
}

/// A message that takes the number of a message still ending: qmail-send has logged `end
/// msg N`, qmail-clean has removed mess/S/N (its inode, the message number, is free) and
/// info/S/N is not gone yet, when qmail-queue makes todo/N for a new message and pulls the
/// trigger. The todo/ scan skips N while the old message ends, and must look again soon:
/// before, the new message waited for the next scan without a trigger, up to 25 minutes
/// (found by rqmail-powerloss, RELIABILITY.md). A stand-in for qmail-clean plants the new
/// message as it removes the old one's mess/S/N, pulls the trigger, and answers a second
/// later.
#[test]
fn a_message_taking_the_number_of_one_still_ending_is_delivered_at_once() {
    let h = system_home();
    let q = h.path().join("queue");
    let clean = format!(
        r#"#!/usr/bin/python3
import os, sys, time
q = {q:?}
planted = False
def rm(p):
    try:
        os.unlink(os.path.join(q, p))
    except FileNotFoundError:
        pass
buf = b""
while True:
    c = os.read(0, 1)
    if not c:
        sys.exit(0)
    if c != b"\0":
        buf += c
        continue
    kind, n = buf.decode().split("/")
    buf = b""
    n = int(n)
    if kind == "todo":
        rm("intd/%d" % n); rm("todo/%d" % n)
    else:
        rm("intd/%d" % n); rm("mess/%d/%d" % (n % 23, n))
        if not planted:
            planted = True
            with open(os.path.join(q, "mess/%d/%d" % (n % 23, n)), "w") as f:
                f.write("Subject: second\n\nsame number\n")
            with open(os.path.join(q, "intd/%d" % n), "w") as f:
                f.write("u%d\0p1\0Fs2@far.example\0Tjoe2@testhost.example\0" % os.getuid())
            os.link(os.path.join(q, "intd/%d" % n), os.path.join(q, "todo/%d" % n))
            t = os.open(os.path.join(q, "lock/trigger"), os.O_WRONLY | os.O_NONBLOCK)
            os.write(t, b"\0")
            os.close(t)
            time.sleep(1)
    os.write(1, b"+")
"#
    );
    rqmail_tests::home::script(&h, "qmail-clean", &clean);
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: first\n\nbody\n",
        "s@far.example",
        &["joe@testhost.example"],
    );
    sys.wait_count("both messages ended", 2, |l| l.starts_with("end msg "));
    let lines = stop(sys);
    let ends: Vec<&String> = lines.iter().filter(|l| l.starts_with("end msg ")).collect();
    assert_eq!(
        ends[0], ends[1],
        "the second message has the first one's number"
    );
    assert_eq!(
        delivered(&h),
        vec![
            "joe@testhost.example s@far.example",
            "joe2@testhost.example s2@far.example"
        ]
    );
}

// ------------------------------------------- damaged queue files (rqmail-queuefuzz)

/// Plants message `id`'s file `dir` (split or not) in the queue, as the runner.
fn plant(h: &Home, dir: &str, id: u64, data: &[u8]) -> PathBuf {
    let split = matches!(dir, "mess" | "info" | "local" | "remote");
    user_file(
        h,
        &format!("queue/{}", qmail_queue::fmtqfn(dir, id, split)),
        data,
    )
}

/// A FIFO at `rel` below the home, as the runner.
fn plant_fifo(h: &Home, rel: &str) -> PathBuf {
    let p = h.path().join(rel);
    let _ = fs::remove_file(&p);
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    chown_user(&p);
    p
}

/// A symbolic link at `rel` below the home to `target`.
fn plant_link(h: &Home, rel: &str, target: &str) {
    let p = h.path().join(rel);
    let _ = fs::remove_file(&p);
    std::os::unix::fs::symlink(target, &p).expect("symlink");
    chown_user(&p);
}

/// Runs a queue reader as the runner; it must end within 30 seconds (a reader that
/// waits on a FIFO never would). Returns its exit code and output.
fn reader(h: &Home, args: &[&str]) -> (i32, String) {
    let mut c = user_cmd(h, &bin(args[0]));
    c.args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start the reader");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("{args:?} crashed: {out:?}"));
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A FIFO wherever a queue file should be (todo/, info/, local/, mess/, bounce/,
/// lock/tcpto) made qmail-send, qmail-lspawn, qmail-rspawn, qmail-qread and qmail-qctl
/// wait for ever in open(2). Opened as netqmail's open_read does (never waiting), a FIFO
/// reads as empty: the queue goes on, the good message is delivered, the readers end.
#[test]
fn fifos_anywhere_in_the_queue_stop_nothing() {
    let h = system_home();
    let info = |h: &Home, id| plant(h, "info", id, b"Fs@far.example\0");
    let mess = |h: &Home, id| plant(h, "mess", id, b"Subject: bad\n\nx\n");
    // 4701: not preprocessed, todo/ a FIFO.
    mess(&h, 4701);
    plant(
        &h,
        "intd",
        4701,
        b"u0\0p0\0Fs@far.example\0Tjoe@testhost.example\0",
    );
    plant_fifo(&h, "queue/todo/4701");
    // 4702: its local recipient list a FIFO.
    mess(&h, 4702);
    info(&h, 4702);
    plant_fifo(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("local", 4702, true)),
    );
    plant(&h, "remote", 4702, b"Tr4702@remote.example\0");
    // 4703: its message a FIFO.
    plant_fifo(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("mess", 4703, true)),
    );
    info(&h, 4703);
    plant(&h, "local", 4703, b"Tfifo-mess@testhost.example\0");
    // 4704: done, its bounce a FIFO.
    mess(&h, 4704);
    info(&h, 4704);
    plant_fifo(&h, "queue/bounce/4704");
    // 4705: its info file a FIFO.
    mess(&h, 4705);
    plant_fifo(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("info", 4705, true)),
    );
    plant(&h, "local", 4705, b"Tjoe@testhost.example\0");
    plant_fifo(&h, "queue/lock/tcpto");

    for args in [
        &["qmail-qread"][..],
        &["qmail-qstat"],
        &["qmail-qctl", "list"],
        &["qmail-qctl", "show", "4705"],
        &["qmail-tcpto"],
    ] {
        reader(&h, args);
    }
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: good\n\nbody\n",
        "good@far.example",
        &["joe@testhost.example", "r@remote.example"],
    );
    wait_until("the good message delivered", || {
        delivered(&h).contains(&"joe@testhost.example good@far.example".to_string())
            && remote_delivered(&h).contains(&"r@remote.example good@far.example".to_string())
    });
    sys.wait_log("4701 preprocessed as empty", |l| l == "new msg 4701");
    sys.wait_log("the FIFO message refused by qmail-lspawn", |l| {
        fmt_match(
            "delivery {n}: deferral: Sorry,_message_has_wrong_type._(#4.3.5)/",
            l,
        )
    });
    sys.wait_log("4704's bounce sent", |l| {
        fmt_match("bounce msg 4704 qp {n}", l)
    });
    sys.wait_log("4705's info file named", |l| {
        l == format!(
            "warning: trouble opening {}; will try again later",
            qmail_queue::fmtqfn("info", 4705, true)
        )
    });
    sys.wait_log("4702's remote recipient delivered", |l| {
        fmt_match(
            "starting delivery {n}: msg 4702 to remote r4702@remote.example",
            l,
        )
    });
    let (code, out) = reader(&h, &["qmail-qread"]);
    assert_eq!(code, 0, "{out}");
    stop(sys);
}

/// A directory (or anything that cannot be appended to) at bounce/N made netqmail's
/// qmail-send sleep and try again for ever, and with it every other delivery. Now the
/// failure is logged, the recipient stays to be tried again later, and the rest goes on.
#[test]
fn a_bounce_file_that_cannot_be_written_defers_the_failure() {
    let h = system_home();
    plant(&h, "mess", 4711, b"Subject: bad\n\nx\n");
    plant(&h, "info", 4711, b"Fs@far.example\0");
    let local = plant(&h, "local", 4711, b"Tnosuch-x@testhost.example\0");
    fs::create_dir(h.queue().join("bounce/4711")).expect("mkdir");
    chown_user(&h.queue().join("bounce/4711"));
    let sys = System::start(&h);
    sys.wait_log("the alert", |l| {
        l == "alert: unable to append to bounce/4711; will try again later"
    });
    inject(
        &h,
        "Subject: good\n\nbody\n",
        "good@far.example",
        &["joe@testhost.example"],
    );
    wait_until("the good message delivered", || {
        delivered(&h).contains(&"joe@testhost.example good@far.example".to_string())
    });
    assert_eq!(
        fs::read(&local).expect("local"),
        b"Tnosuch-x@testhost.example\0",
        "the failed recipient is not marked done"
    );
    let lines = stop(sys);
    assert!(!lines.iter().any(|l| l.contains("sleeping")), "{lines:?}");
}

/// A symbolic link to a device where a queue file should be: /dev/zero never ends, so
/// copying it into a bounce (netqmail does) fills the disk, and reading it as a recipient
/// list never ends. Devices are refused: the bounce waits, the list is not read, the
/// readers say so, and the good message is delivered.
#[test]
fn links_to_devices_in_the_queue_are_refused() {
    let h = system_home();
    // 4721: done, its bounce a link to /dev/zero; 4722: done, its message one.
    plant(&h, "mess", 4721, b"Subject: bad\n\nx\n");
    plant(&h, "info", 4721, b"Fs@far.example\0");
    plant_link(&h, "queue/bounce/4721", "/dev/zero");
    plant_link(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("mess", 4722, true)),
        "/dev/zero",
    );
    plant(&h, "info", 4722, b"Fs@far.example\0");
    plant(&h, "bounce", 4722, b"<x@testhost.example>:\nno.\n\n");
    // 4723: its remote recipient list a link to /dev/zero.
    plant(&h, "mess", 4723, b"Subject: bad\n\nx\n");
    plant(&h, "info", 4723, b"Fs@far.example\0");
    let remote = qmail_queue::fmtqfn("remote", 4723, true);
    plant_link(&h, &format!("queue/{remote}"), "/dev/zero");
    // lock/trigger a link to /dev/zero: drained, not read for ever. Under qmail-send's
    // Landlock rules (qmail-send(8), CONFINEMENT) it cannot be opened at all, as if it
    // were missing, and new mail would wait for the next scan of todo/.
    if control::confine::kernel_support().landlock_abi < 1 {
        plant_link(&h, "queue/lock/trigger", "/dev/zero");
    }
    // 4724: todo/ a dangling link (netqmail logs that it cannot open it).
    plant(&h, "mess", 4724, b"Subject: bad\n\nx\n");
    plant_link(&h, "queue/todo/4724", "/nonexistent/4724");

    let (code, out) = reader(&h, &["qmail-qread"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: trouble with #4723: device not configured\n"),
        "{out}"
    );
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: good\n\nbody\n",
        "good@far.example",
        &["joe@testhost.example"],
    );
    wait_until("the good message delivered", || {
        delivered(&h).contains(&"joe@testhost.example good@far.example".to_string())
    });
    sys.wait_count("both bounces wait", 2, |l| {
        l == "warning: trouble injecting bounce message, will try later"
    });
    sys.wait_log("the list refused", |l| {
        l == format!("warning: trouble opening {remote}; will try again later")
    });
    sys.wait_log("the dangling todo/ link", |l| {
        l == "warning: unable to open todo/4724"
    });
    stop(sys);
    for f in h.queue_files() {
        let size = fs::symlink_metadata(&f).map_or(0, |m| m.len());
        assert!(size < 1 << 20, "{} grew to {size} bytes", f.display());
    }
}

#[test]
fn thousands_of_local_deliveries_at_once() {
    let h = system_home();
    let n = 2000usize;
    h.control("concurrencylocal", &format!("{n}\n"));
    // Everyone is one user through a users/cdb wildcard: no qmail-getpw per delivery.
    let entries: Vec<(&[u8], &[u8])> = vec![
        (b"!", b"nobody\x0065534\x0065534\x00/nonexistent\x00-\x00"),
        (b"", b""),
    ];
    let cdb = h.path().join("users/cdb");
    control::write_cdb(&cdb, &h.path().join("users/cdb.tmp"), entries).expect("cdb");
    chown_user(&cdb);
    let held = close_gate(&h);
    let sys = System::start(&h);
    assert!(
        sys.lines()
            .contains(&format!("status: local 0/{n} remote 0/20")),
        "{:?}",
        sys.lines()
    );
    let rcpts: Vec<String> = (0..n + 100)
        .map(|i| format!("r{i}@testhost.example"))
        .collect();
    let r: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    inject(&h, "Subject: many\n\nx\n", "s@far.example", &r);
    wait_until("2000 deliveries in flight", || running(&h).len() == n);
    let full = format!("status: local {n}/{n} remote 0/20");
    sys.wait_log("the limit reached", |l| l == full);
    drop(held);
    wait_until("every delivery", || delivered(&h).len() == n + 100);
    sys.wait_log("end msg", |l| l.starts_with("end msg "));
    let log = stop(sys);
    for l in &log {
        if let Some(rest) = l.strip_prefix("status: local ") {
            let used: usize = rest
                .split('/')
                .next()
                .and_then(|x| x.parse().ok())
                .expect("used");
            assert!(used <= n, "{l}");
        }
    }
}

#[test]
fn term_lets_deliveries_in_progress_finish() {
    let h = system_home();
    let held = close_gate(&h);
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: t\n\nx\n",
        "s@far.example",
        &["a@testhost.example", "b@testhost.example"],
    );
    wait_until("two deliveries running", || running(&h).len() == 2);
    sys.signal(nix::sys::signal::Signal::SIGTERM);
    // qmail-send waits for them (a hang guard, not a timing assertion: it must still be
    // there after half a second, with nothing to stop it but the two deliveries).
    std::thread::sleep(Duration::from_millis(500));
    assert!(!sys.lines().contains(&"status: exiting".to_string()));
    let mut sys = sys;
    assert!(sys.child.try_wait().expect("try_wait").is_none());
    drop(held);
    let log = stop(sys);
    assert!(log.contains(&"status: local 0/10 remote 0/20 exitasap".to_string()));
    assert_eq!(log.iter().filter(|l| l.contains(": success: ")).count(), 2);
    assert_eq!(delivered(&h).len(), 2);
    assert!(log.iter().any(|l| l.starts_with("end msg ")));
    // Both were marked done before the exit: nothing is delivered twice on restart.
    let sys = System::start(&h);
    std::thread::sleep(Duration::from_millis(1000));
    let log = stop(sys);
    assert!(!log.iter().any(|l| l.starts_with("starting delivery")));
    assert_eq!(delivered(&h).len(), 2);
}

#[test]
fn retry_times_follow_netqmails_schedule_and_survive_a_restart() {
    let h = system_home();
    user_file(&h, "defer-joe", b"");
    user_file(&h, "fail-remote", b"");
    // qmail-remote defers: a temporary recipient report.
    script(
        &h,
        "qmail-remote",
        "#!/bin/sh\nprintf 'sfar.example is busy.\\nRemote host said: 451 later\\n\\0'\n",
    );
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: r\n\nx\n",
        "s@far.example",
        &["joe@testhost.example", "x@far.example"],
    );
    sys.wait_count("two deferrals", 2, |l| l.contains(": deferral: "));
    let log = stop(sys);
    let id = msg_numbers(&log)[0];
    let q = qmail_queue::Queue::in_home(h.path());
    use std::os::unix::fs::MetadataExt;
    let birth = fs::metadata(q.info(id)).expect("info").mtime();
    let next = |p: PathBuf| fs::metadata(p).expect("chan").mtime() - birth;
    // birth + (isqrt(age) + 10)^2 locally, + 20 remotely; the first attempt is at age 0 or
    // 1 second.
    let l = next(q.local(id));
    let r = next(q.remote(id));
    assert!(l == 100 || l == 121, "local retry after {l} s");
    assert!(r == 400 || r == 441, "remote retry after {r} s");
    // After a restart nothing is due before those times.
    let sys = System::start(&h);
    std::thread::sleep(Duration::from_millis(1500));
    let log = stop(sys);
    assert!(
        !log.iter().any(|l| l.starts_with("starting delivery")),
        "{log:#?}"
    );
}

#[test]
fn abandoned_files_are_cleaned_up() {
    let h = system_home();
    let q = qmail_queue::Queue::in_home(h.path());
    let old = user_file(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("mess", 81, true)),
        b"m\n",
    );
    let old_intd = user_file(&h, "queue/intd/81", b"u1\0");
    let young = user_file(
        &h,
        &format!("queue/{}", qmail_queue::fmtqfn("mess", 82, true)),
        b"m\n",
    );
    let t = nix::sys::time::TimeVal::new((control::now() - 37 * 3600) as i64, 0);
    nix::sys::stat::utimes(&old, &t, &t).expect("utimes");
    let sys = System::start(&h);
    wait_until("the abandoned message removed", || {
        !old.exists() && !old_intd.exists()
    });
    assert!(
        young.exists(),
        "a message qmail-queue may still be writing is kept"
    );
    assert!(!q.todo(81).exists());
    stop(sys);
}

#[test]
fn verp_senders_are_expanded_per_recipient() {
    let h = system_home();
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: v\n\nx\n",
        "owner-@list.example-@[]",
        &["joe@testhost.example", "x@far.example"],
    );
    sys.wait_log("end msg", |l| l.starts_with("end msg "));
    assert_eq!(
        delivered(&h),
        vec!["joe@testhost.example owner-joe=testhost.example@list.example"]
    );
    assert_eq!(
        remote_delivered(&h),
        vec!["x@far.example owner-x=far.example@list.example"]
    );
    stop(sys);
}

#[test]
fn qmail_send_keeps_netqmails_framing_with_a_netqmail_style_spawn() {
    let h = system_home();
    h.control("concurrencylocal", "50\n");
    // A spawn speaking only netqmail's protocol: it announces 3 deliveries, refuses the
    // wide probe as netqmail's spawns do, and answers every command at once.
    script(
        &h,
        "qmail-lspawn",
        &format!(
            r#"#!{}
import os
os.write(1, bytes([3]))
def report(d, text):
    os.write(1, bytes([d]) + text + b"\0")
d = None
fields = []
cur = b""
while True:
    data = os.read(0, 4096)
    if not data:
        break
    for ch in data:
        if d is None:
            d, fields, cur = ch, [], b""
            continue
        if ch != 0:
            cur += bytes([ch])
            continue
        fields.append(cur)
        cur = b""
        if len(fields) < 3:
            continue
        messid, sender, recip = fields
        if not messid:
            report(d, b"DInternal error: messid too short. (#5.3.5)\n")
        elif recip.startswith(b"mangle"):
            report(d, b"Xweird")
        elif recip.startswith(b"range"):
            report(200, b"Kbogus")
            report(d, b"Kfake " + recip + b"\n")
        else:
            report(d, b"Kfake " + recip + b"\n")
        d = None
"#,
            rqmail_tests::python().display()
        ),
    );
    let sys = System::start(&h);
    assert_eq!(sys.lines()[0], "status: local 0/3 remote 0/20");
    inject(
        &h,
        "Subject: n\n\nx\n",
        "s@far.example",
        &[
            "joe@testhost.example",
            "mangle@testhost.example",
            "range@testhost.example",
        ],
    );
    sys.wait_log("the mangled report", |l| {
        fmt_match("delivery {n}: report mangled, will defer", l)
    });
    sys.wait_log("the stray report", |l| {
        l == "warning: internal error: delivery report out of range"
    });
    sys.wait_count("two successes", 2, |l| l.contains(": success: fake_"));
    let log = stop(sys);
    assert!(
        log.iter()
            .any(|l| fmt_match("delivery {n}: success: fake_joe@testhost.example/", l))
    );
    for l in &log {
        if let Some(rest) = l.strip_prefix("status: local ") {
            assert!(rest.ends_with("/3 remote 0/20"), "{l}");
        }
    }
}

#[test]
fn spawns_raise_their_descriptor_limit_but_not_their_childrens() {
    let h = user_home();
    script(
        &h,
        "qmail-local",
        "#!/bin/sh\necho \"$(ulimit -n) $(ulimit -H -n)\"\n",
    );
    fake_getpw(&h);
    let m = mess_file(&h, 105, b"x\n");
    let mut c = Command::new(tool("prlimit"));
    c.arg("--nofile=1024:4096").arg(if is_root() {
        tool("setpriv")
    } else {
        bin("qmail-lspawn")
    });
    if is_root() {
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(bin("qmail-lspawn"));
    }
    c.arg("./Maildir/")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAIL_HOME", h.path())
        .current_dir(h.path());
    let mut sp = SpawnPeer::start(c);
    // (4096 - 64) / 2 deliveries fit in the raised limit.
    assert_eq!(sp.probe(), b"Kwide 2016");
    sp.command(7, &m, "s", "joe@y.example");
    assert_eq!(sp.reports(1)[&7], "K1024 4096\n");
    sp.finish();
}

#[test]
fn splogger_falls_back_to_a_stream_socket() {
    let d = tempfile::tempdir().expect("tempdir");
    let sock_path = d.path().join("log");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).expect("bind");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("read");
        all
    });
    let mut c = Command::new(bin("splogger"));
    c.env("SPLOGGER_SOCKET", &sock_path);
    let (code, _, _) = rqmail_tests::run_with_input(c, b"one\nalert: two\n");
    assert_eq!(code, 0);
    let all = reader.join().expect("reader");
    let msgs: Vec<String> = all
        .split(|&b| b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).to_string())
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].starts_with("<22>") && msgs[0].ends_with(" one"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].starts_with("<17>") && msgs[1].ends_with(" alert: two"),
        "{msgs:?}"
    );
    assert!(msgs[0].contains(" splogger: "));
}

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
fn cpu_ticks(pid: nix::unistd::Pid) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect(")") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// After a trigger has been pulled, qmail-send goes back to sleep: it must not keep
/// finding the FIFO readable (a busy loop once burned a whole core here).
#[test]
fn qmail_send_sleeps_when_idle_after_the_trigger() {
    let h = system_home();
    let sys = System::start(&h);
    for _ in 0..3 {
        inject(
            &h,
            "Subject: idle\n\nbody\n",
            "s@far.example",
            &["joe@testhost.example"],
        );
    }
    sys.wait_count("three end msg lines", 3, |l| l.starts_with("end msg "));
    wait_until("an empty queue", || queue_is_empty(&h));
    let before = cpu_ticks(sys.pid());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(sys.pid()) - before;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    // An idle qmail-send uses next to nothing; a busy loop uses about 3 s of CPU here.
    assert!(
        used < hz,
        "qmail-send used {used} ticks of CPU in 3 s while idle"
    );
    stop(sys);
}

/// control/loglevel asking qmail-remote for `debug`: qmail-start gives qmail-rspawn the
/// log as its descriptor 2 and qmail-rspawn hands it to qmail-remote, so the verbose lines
/// reach the mail log beside qmail-send's; at the default level the log holds qmail-send's
/// lines only, as before.
#[test]
fn qmail_remote_verbose_lines_reach_the_log_only_when_asked() {
    for verbose in [false, true] {
        let sink = rqmail_tests::Sink::start(None);
        let h = rqmail_tests::home::mail_home();
        h.control("smtproutes", &format!(":127.0.0.1:{}\n", sink.port));
        if verbose {
            h.control("loglevel", "qmail-remote:debug\n");
        }
        let sys = System::start(&h);
        inject(
            &h,
            "Subject: x\n\nbody\n",
            "a@testhost.example",
            &["b@far.example"],
        );
        sys.wait_log("the remote delivery", |l| {
            l.starts_with("delivery ") && l.contains(": success: ")
        });
        let lines = sys.stop();
        let debug: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("qmail-remote: debug: pid "))
            .collect();
        if verbose {
            assert!(
                debug.iter().any(|l| l.contains("127.0.0.1")),
                "verbose: {lines:#?}"
            );
            let rest: Vec<String> = lines
                .iter()
                .filter(|l| !l.starts_with("qmail-remote: "))
                .cloned()
                .collect();
            assert_log_formats(&rest);
        } else {
            assert!(debug.is_empty(), "{lines:#?}");
            assert_log_formats(&lines);
        }
        assert_eq!(sink.messages().len(), 1);
    }
}

// ---------------------------------------------- senders beyond qmail-queue's limit

/// A mail home with control/smtproutes to `sink` and one message queued by the real
/// qmail-queue for joe@testhost.example (into alias/Maildir) and b@far.example (to the
/// sink), whose todo/ file then names `sender` instead: qmail-queue takes addresses of at
/// most 1002 bytes, but a todo/ file written by another program, a hand edit or a disk
/// error may hold anything up to qmail-send's record limit of 1 MiB.
fn home_with_long_sender(sink: &rqmail_tests::Sink, sender: &str) -> Home {
    let h = rqmail_tests::home::mail_home();
    h.control("smtproutes", &format!(":127.0.0.1:{}\n", sink.port));
    inject(
        &h,
        "Subject: long\n\nbody\n",
        "s@far.example",
        &["joe@testhost.example", "b@far.example"],
    );
    let q = h.queued();
    assert_eq!(q.len(), 1);
    let todo = qmail_queue::Queue::in_home(h.path()).todo(q[0].id);
    let old = fs::read(&todo).expect("todo");
    let long = String::from_utf8_lossy(&old).replace("Fs@far.example\0", &format!("F{sender}\0"));
    assert_ne!(long.as_bytes(), &old[..]);
    // Rewritten in place: owner and mode stay qmail-queue's.
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&todo)
        .and_then(|mut f| f.write_all(long.as_bytes()))
        .expect("rewrite todo");
    h
}

/// A sender of 100,000 bytes (over the 64 KiB the spawns kept before, under the 131071
/// bytes a program argument may hold): qmail-lspawn and qmail-rspawn keep it whole, and
/// qmail-local writes it into the Maildir's Return-Path and qmail-remote into MAIL FROM,
/// as netqmail 1.06 does, rather than the delivery being deferred as "qmail-spawn out of
/// memory" until queuelifetime.
#[test]
fn a_sender_longer_than_64_kib_is_delivered_locally_and_remotely() {
    let sink = rqmail_tests::Sink::start(None);
    let sender = format!("{}@far.example", "s".repeat(100_000));
    let h = home_with_long_sender(&sink, &sender);
    let sys = System::start(&h);
    sys.wait_count("both deliveries", 2, |l| {
        l.starts_with("delivery ") && l.contains(": success: ")
    });
    sys.wait_log("the end of the message", |l| l.starts_with("end msg "));
    let lines = stop(sys);
    assert!(
        !lines.iter().any(|l| l.contains("out of memory")),
        "{lines:#?}"
    );
    let msgs = rqmail_tests::home::maildir_messages(&h.path().join("alias/Maildir"));
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(&msgs[0]).starts_with(&format!("Return-Path: <{sender}>\n")));
    let sent = sink.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].from, format!("<{sender}>"));
    assert_eq!(sent[0].rcpts, ["<b@far.example>"]);
}

/// A sender of 200,000 bytes, longer than Linux lets a program argument be: neither
/// qmail-local nor qmail-remote can be started with it (E2BIG, which netqmail's spawns
/// report as "Unable to run qmail-local." and "Unable to run qmail-remote."), so each
/// delivery fails for good with a report that says why; no retry, nothing delivered. The
/// bounce cannot be queued either (qmail-queue refuses a recipient over 1002 bytes, as
/// netqmail's does), and qmail-send keeps the message and says so, as netqmail does.
#[test]
fn a_sender_longer_than_an_argument_fails_with_a_clear_report() {
    let sink = rqmail_tests::Sink::start(None);
    let sender = format!("{}@far.example", "s".repeat(200_000));
    let h = home_with_long_sender(&sink, &sender);
    let sys = System::start(&h);
    sys.wait_count("both failures", 2, |l| {
        l.starts_with("delivery ") && l.contains(": failure: ")
    });
    sys.wait_log("the bounce refused", |l| {
        l == "warning: trouble injecting bounce message, will try later"
    });
    let lines = stop(sys);
    for prog in ["qmail-local", "qmail-remote"] {
        let want = format!(
            ": failure: Unable_to_run_{prog}:_the_sender_or_recipient_is_longer_than_a_program_argument_may_be_(131071_bytes)._(#5.1.0)/"
        );
        assert!(
            lines.iter().any(|l| l.ends_with(&want)),
            "{want}: {lines:#?}"
        );
    }
    assert!(rqmail_tests::home::maildir_messages(&h.path().join("alias/Maildir")).is_empty());
    assert!(sink.messages().is_empty());
}
