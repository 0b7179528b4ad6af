//! Live queue management: qmail-qctl against a running qmail-send (qmail-start with its
//! spawns and qmail-clean on a test home), with deliveries held at a gate.
//!
//! The stand-ins for qmail-local and qmail-remote announce each delivery in running/ and
//! then wait for a shared lock on `gate`, which the test holds exclusively until it lets
//! the deliveries end. So a test can send a request while a delivery of the message is
//! in progress, see qmail-qctl wait, and check what happens when the delivery's result
//! comes back.
//!
//! Single-user tests run every program, qmail-qctl included, as `nobody` when the suite
//! runs as root; the root-mode test uses the qmail users.

use rqmail_tests::fakes::{
    FAKE_REMOTE, close_gate, delivered_locals, fake_getpw, fake_local, fake_remote, gated,
    remote_recipients, running,
};
use rqmail_tests::single::*;
use rqmail_tests::{Home, bin, is_root, python, tool, user_ids};
use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------ helpers

/// A single-user home with the fake qmail-local, qmail-remote and qmail-getpw and an open
/// gate ([`rqmail_tests::fakes`]).
fn gated_home() -> Home {
    let h = user_home();
    gated(&h);
    fake_local(&h);
    fake_remote(&h);
    fake_getpw(&h);
    h
}

/// The number of the message whose `info msg` line names `sender`.
fn msg_id(sys: &System, sender: &str) -> u64 {
    let pat = format!(" from <{sender}> ");
    sys.wait_log("the message's info line", |l| l.contains(&pat));
    sys.lines()
        .iter()
        .find(|l| l.contains(&pat))
        .and_then(|l| l.strip_prefix("info msg "))
        .and_then(|l| l.split(':').next())
        .and_then(|n| n.parse().ok())
        .expect("message number")
}

/// Waits for qmail-send's "end msg ID" line.
fn wait_end(sys: &System, id: u64) {
    sys.wait_log("the end", |l| l == format!("end msg {id}"));
}

/// Queues a message from `sender` for a local recipient and waits for its end: qmail-send
/// still delivers.
fn delivers_still(h: &Home, sys: &System, sender: &str) {
    inject(h, "Subject: still\n\nx\n", sender, &["z@testhost.example"]);
    let id = msg_id(sys, sender);
    wait_end(sys, id);
}

/// What a qmail-qctl run printed.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn qctl_cmd(h: &Home, args: &[&str]) -> Command {
    let mut c = user_cmd(h, &bin("qmail-qctl"));
    c.args(args);
    c
}

/// Runs qmail-qctl in single-user mode.
fn qctl(h: &Home, args: &[&str]) -> Out {
    let o = qctl_cmd(h, args).output().expect("qmail-qctl");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// qmail-qctl started in the background, its standard error read line by line.
struct Running {
    child: Child,
    err: Arc<Mutex<String>>,
}

fn qctl_bg(h: &Home, args: &[&str]) -> Running {
    let mut child = qctl_cmd(h, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qmail-qctl");
    let mut e = child.stderr.take().expect("stderr");
    let err = Arc::new(Mutex::new(String::new()));
    let e2 = err.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = e.read(&mut buf) {
            if n == 0 {
                return;
            }
            e2.lock()
                .expect("lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Running { child, err }
}

impl Running {
    fn stderr(&self) -> String {
        self.err.lock().expect("lock").clone()
    }

    fn done(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    fn finish(mut self) -> Out {
        let deadline = Instant::now() + WAIT;
        let st = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            assert!(Instant::now() < deadline, "qmail-qctl did not finish");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut stdout).expect("stdout");
        }
        // Let the reader thread take the rest of standard error.
        std::thread::sleep(Duration::from_millis(50));
        Out {
            code: st.code().unwrap_or(-1),
            stdout,
            stderr: self.stderr(),
        }
    }
}

/// Log lines after the first line equal to `mark`.
fn after<'a>(log: &'a [String], mark: &str) -> &'a [String] {
    let i = log
        .iter()
        .position(|l| l == mark)
        .unwrap_or_else(|| panic!("no {mark:?} in {log:#?}"));
    &log[i + 1..]
}

fn starts_of(log: &[String], id: u64) -> usize {
    let pat = format!(": msg {id} to ");
    log.iter()
        .filter(|l| l.starts_with("starting delivery") && l.contains(&pat))
        .count()
}

/// Asserts that qmail-qctl waited: it said so, and it is still running (the deliveries
/// it waits for are held at the gate, so nothing else can end it).
fn assert_waiting(r: &mut Running, n: usize) {
    let want = format!("waiting for {n} deliveries in progress to end");
    wait_until("qmail-qctl to say it waits", || r.stderr().contains(&want));
    assert!(!r.done(), "qmail-qctl returned before the deliveries ended");
}

fn queue_files(h: &Home) -> Vec<PathBuf> {
    h.queue_files()
}

// -------------------------------------------------------------------------- tests

#[test]
fn hold_racing_a_local_delivery_in_progress_then_release() {
    let h = gated_home();
    h.control("concurrencylocal", "1\n");
    let gate = close_gate(&h);
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: hold me\n\nx\n",
        "hold@far.example",
        &[
            "a@testhost.example",
            "b@testhost.example",
            "c@testhost.example",
        ],
    );
    let id = msg_id(&sys, "hold@far.example");
    wait_until("the first delivery at the gate", || {
        running(&h).contains("a")
    });

    // The hold arrives while the delivery to a is running: qmail-qctl waits for it.
    let mut r = qctl_bg(&h, &["hold", &id.to_string()]);
    assert_waiting(&mut r, 1);
    sys.wait_log("the hold", |l| {
        l == format!("qctl: hold msg {id} uid {}", user_uid())
    });
    // The mark is on disk before anything else happens.
    let info = h.queue().join(format!("info/{}/{id}", id % 23));
    assert_eq!(fs::metadata(&info).expect("info").mode() & 0o777, 0o700);
    drop(gate);
    let out = r.finish();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("#{id}: held; 1 delivery that was already running has ended: 1 success\n")
    );

    // The delivery in progress completed and was recorded; nothing else starts, not even
    // when everything is made due.
    wait_until("a delivered", || delivered_locals(&h) == vec!["a"]);
    sys.signal(nix::sys::signal::Signal::SIGALRM);
    let o = qctl(&h, &["retry", "-a"]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = qctl(&h, &["retry", &id.to_string()]);
    assert_eq!(o.code, 100, "{o:?}");
    assert_eq!(o.stdout, format!("#{id}: is held; release it first\n"));
    std::thread::sleep(Duration::from_millis(500));
    let log = sys.lines();
    let since = after(&log, &format!("qctl: hold msg {id} uid {}", user_uid()));
    assert_eq!(starts_of(since, id), 0, "{since:#?}");
    assert_eq!(delivered_locals(&h), vec!["a"]);
    let o = qctl(&h, &["list", "--held"]);
    assert_eq!(
        o.stdout
            .lines()
            .next()
            .map(|l| l.split("  ").take(2).collect::<Vec<_>>()),
        Some(vec![format!("#{id}").as_str(), "held"])
    );
    assert!(
        o.stdout
            .contains("    local   done     a@testhost.example\n"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("    local   waiting  b@testhost.example\n"),
        "{}",
        o.stdout
    );
    let st = qctl(&h, &["status"]);
    assert!(st.stdout.contains("held messages: 1\n"), "{st:?}");

    // Release: the other two are delivered and the message ends.
    let o = qctl(&h, &["release", &id.to_string()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, format!("#{id}: released, delivery resumes now\n"));
    wait_end(&sys, id);
    let mut d = delivered_locals(&h);
    d.sort();
    assert_eq!(d, vec!["a", "b", "c"]);
    let log = sys.stop();
    assert_eq!(starts_of(&log, id), 3, "each recipient exactly once");
    assert!(queue_files(&h).is_empty(), "{:?}", queue_files(&h));
}

fn user_uid() -> u32 {
    if is_root() {
        nobody().0
    } else {
        nix::unistd::getuid().as_raw()
    }
}

#[test]
fn delete_racing_a_remote_delivery_in_progress() {
    let h = gated_home();
    h.control("concurrencyremote", "1\n");
    let gate = close_gate(&h);
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: delete me\n\nx\n",
        "del@far.example",
        &["x@far.example", "y@far.example", "l@testhost.example"],
    );
    let id = msg_id(&sys, "del@far.example");
    wait_until("the remote delivery and the local one at the gate", || {
        let r = running(&h);
        r.contains("remote-x@far.example") && r.contains("l")
    });
    let mut r = qctl_bg(&h, &["delete", &id.to_string()]);
    assert_waiting(&mut r, 2);
    // Nobody can release it meanwhile.
    let o = qctl(&h, &["release", &id.to_string()]);
    assert_eq!(o.code, 100, "{o:?}");
    assert_eq!(o.stdout, format!("#{id}: is being deleted\n"));
    // Until the deliveries report, the message is held, not deleted.
    let o = qctl(&h, &["-t", "list"]);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{id}\theld\t"))),
        "{o:?}"
    );
    drop(gate);
    let out = r.finish();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("#{id}: deleted; 2 deliveries that were already running have ended: 2 successes\n")
    );
    wait_end(&sys, id);
    assert!(queue_files(&h).is_empty(), "{:?}", queue_files(&h));
    // y was never attempted, and nothing is left to attempt.
    sys.signal(nix::sys::signal::Signal::SIGALRM);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(remote_recipients(&h), vec!["x@far.example"]);
    assert_eq!(delivered_locals(&h), vec!["l"]);
    let log = sys.stop();
    assert_eq!(starts_of(&log, id), 2, "{log:#?}");
    assert!(!log.iter().any(|l| l.starts_with("bounce msg")));
    let o = qctl(&h, &["delete", &id.to_string()]);
    assert_eq!(o.code, 100, "{o:?}");
}

#[test]
fn delete_drops_the_bounce_of_a_failure_that_was_in_progress() {
    let h = gated_home();
    user_file(&h, "fail-remote", b"");
    let gate = close_gate(&h);
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: fails\n\nx\n",
        "bounceme@far.example",
        &["x@far.example"],
    );
    let id = msg_id(&sys, "bounceme@far.example");
    wait_until("the delivery at the gate", || {
        running(&h).contains("remote-x@far.example")
    });
    let mut r = qctl_bg(&h, &["-j", "delete", &id.to_string()]);
    // In JSON mode qmail-qctl waits quietly.
    sys.wait_log("the delete", |l| {
        l.starts_with(&format!("qctl: delete msg {id} uid "))
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!r.done(), "qmail-qctl returned before the delivery ended");
    assert_eq!(r.stderr(), "");
    drop(gate);
    let out = r.finish();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!(
            "{{\"request\":\"delete {id}\",\"result\":\"ok\",\"outcome\":\"deleted\",\"id\":{id},\
             \"finished\":1,\"success\":0,\"failure\":1,\"deferral\":0}}\n"
        )
    );
    wait_end(&sys, id);
    let log = sys.stop();
    assert!(
        log.iter().any(|l| l.contains(": failure: ")),
        "the failure was recorded: {log:#?}"
    );
    assert!(!log.iter().any(|l| l.starts_with("bounce msg")), "{log:#?}");
    assert!(queue_files(&h).is_empty(), "{:?}", queue_files(&h));
}

#[test]
fn a_hold_survives_a_restart_and_release_delivers() {
    let h = gated_home();
    user_file(&h, "defer-d", b"");
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: d\n\nx\n",
        "keep@far.example",
        &["d@testhost.example"],
    );
    let id = msg_id(&sys, "keep@far.example");
    sys.wait_log("the deferral", |l| l.contains(": deferral: Deferring_d"));
    let o = qctl(&h, &["hold", &id.to_string()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, format!("#{id}: held\n"));
    let o = qctl(&h, &["hold", &id.to_string()]);
    assert_eq!(o.stdout, format!("#{id}: was held already\n"));
    sys.stop();

    // qmail-send starts again: the message stays parked, even when everything is due.
    fs::remove_file(h.path().join("defer-d")).expect("rm");
    let sys = System::start(&h);
    sys.signal(nix::sys::signal::Signal::SIGALRM);
    let st = qctl(&h, &["-j", "status"]);
    assert!(st.stdout.contains("\"held\":1"), "{st:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(starts_of(&sys.lines(), id), 0, "{:#?}", sys.lines());
    let o = qctl(&h, &["release", "-s", "keep@far.example"]);
    assert_eq!(o.code, 0, "{o:?}");
    wait_end(&sys, id);
    assert_eq!(delivered_locals(&h), vec!["d"]);
    let o = qctl(&h, &["release", &id.to_string()]);
    assert_eq!(o.code, 100, "gone: {o:?}");
    sys.stop();
}

#[test]
fn pause_and_resume_remote_while_delivering() {
    let h = gated_home();
    let gate = close_gate(&h);
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: 1\n\nx\n",
        "one@far.example",
        &["r1@far.example"],
    );
    wait_until("the remote delivery at the gate", || {
        running(&h).contains("remote-r1@far.example")
    });
    let mut r = qctl_bg(&h, &["pause", "remote"]);
    assert_waiting(&mut r, 1);
    drop(gate);
    let out = r.finish();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "remote deliveries: paused; 1 delivery that was already running has ended: 1 success\n"
    );
    // New remote mail waits; local mail still goes.
    inject(
        &h,
        "Subject: 2\n\nx\n",
        "two@far.example",
        &["r2@far.example"],
    );
    let two = msg_id(&sys, "two@far.example");
    inject(
        &h,
        "Subject: 3\n\nx\n",
        "three@far.example",
        &["loc@testhost.example"],
    );
    msg_id(&sys, "three@far.example");
    wait_until("the local delivery", || delivered_locals(&h) == vec!["loc"]);
    sys.signal(nix::sys::signal::Signal::SIGALRM);
    std::thread::sleep(Duration::from_millis(300));
    // (Numbers are inode numbers: "two" may reuse the number of "one", so only the
    // lines after its own info line count.)
    let log = sys.lines();
    let info = log
        .iter()
        .position(|l| l.contains(" from <two@far.example> "))
        .expect("info line");
    assert_eq!(starts_of(&log[info..], two), 0, "{log:#?}");
    let st = qctl(&h, &["status"]);
    assert!(
        st.stdout
            .contains("remote  paused, 0 of 20 deliveries in progress\n"),
        "{st:?}"
    );
    let o = qctl(&h, &["-t", "list", "--remote"]);
    let rows: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        rows.first().copied(),
        Some("id\tstate\tbirth\tage\tsize\tbouncing\tsender\tchannel\tstatus\trecipient")
    );
    assert_eq!(rows.len(), 2, "{o:?}");
    assert!(
        rows[1].starts_with(&format!("{two}\tqueued\t"))
            && rows[1].ends_with("\ttwo@far.example\tremote\twaiting\tr2@far.example"),
        "{o:?}"
    );
    let o = qctl(&h, &["resume", "remote"]);
    assert_eq!(o.stdout, "remote deliveries: resumed\n");
    wait_until("r2 delivered", || remote_recipients(&h).len() == 2);
    assert_eq!(
        remote_recipients(&h),
        vec!["r1@far.example", "r2@far.example"]
    );
    let o = qctl(&h, &["resume", "remote"]);
    assert_eq!(o.stdout, "remote deliveries: were not paused\n");
    let log = sys.stop();
    for l in ["qctl: pause remote uid", "qctl: resume remote uid"] {
        assert!(log.iter().any(|x| x.starts_with(l)), "{l}: {log:#?}");
    }
}

#[test]
fn retry_makes_a_deferred_message_due_now_and_reports_one_in_progress() {
    let h = gated_home();
    user_file(&h, "defer-joe", b"");
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: r\n\nx\n",
        "retry@far.example",
        &["joe@testhost.example"],
    );
    let id = msg_id(&sys, "retry@far.example");
    sys.wait_log("the deferral", |l| l.contains(": deferral: Deferring_joe"));
    fs::remove_file(h.path().join("defer-joe")).expect("rm");
    // Its next attempt is 100 seconds away; retry makes it due at once, while the gate
    // holds it in progress.
    let gate = close_gate(&h);
    fs::remove_file(h.path().join("running/joe")).expect("rm");
    let o = qctl(&h, &["retry", &id.to_string()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, format!("#{id}: due now\n"));
    wait_until("the second attempt at the gate", || {
        running(&h).contains("joe")
    });
    let o = qctl(&h, &["-t", "retry", &id.to_string()]);
    assert_eq!(
        o.stdout,
        format!(
            "request\tresult\toutcome\tfields\nretry {id}\tok\tretrying\tid={id} channels=0 busy=1\n"
        )
    );
    drop(gate);
    wait_end(&sys, id);
    assert_eq!(delivered_locals(&h), vec!["joe"]);
    let log = sys.stop();
    assert!(log.contains(&format!("qctl: retry msg {id} uid {}", user_uid())));
}

#[test]
fn list_and_show_while_delivering_with_filters_and_machine_formats() {
    let h = gated_home();
    let gate = close_gate(&h);
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: small\n\nx\n",
        "alice@one.example",
        &["bob@far.example", "carl@testhost.example"],
    );
    let big = format!("Subject: big\nX-Evil: \x1b[2J\n\n{}\n", "y".repeat(5000));
    inject(&h, &big, "", &["dave@Spam.Example"]);
    let a = msg_id(&sys, "alice@one.example");
    let b = msg_id(&sys, "");
    wait_until("three deliveries at the gate", || running(&h).len() == 3);

    let ids = |args: &[&str]| -> Vec<u64> {
        let o = qctl(&h, &[&["-t", "list"][..], args].concat());
        assert_eq!(o.code, 0, "{o:?}");
        let mut v: Vec<u64> = o
            .stdout
            .lines()
            .skip(1)
            .filter_map(|l| l.split('\t').next().and_then(|n| n.parse().ok()))
            .collect();
        v.dedup();
        v
    };
    let mut both = vec![a, b];
    both.sort_unstable();
    assert_eq!(ids(&[]), both);
    assert_eq!(ids(&["-s", "*@one.example"]), vec![a]);
    assert_eq!(ids(&["-s", ""]), vec![b]);
    assert_eq!(ids(&["-r", "BOB@far.example"]), vec![a]);
    assert_eq!(ids(&["-d", "spam.example"]), vec![b]);
    assert_eq!(ids(&["-d", "*.example", "-s", "alice@*"]), vec![a]);
    assert_eq!(ids(&["--larger-than", "1k"]), vec![b]);
    assert_eq!(ids(&["--smaller-than", "1k"]), vec![a]);
    assert_eq!(ids(&["-o", "1h"]), Vec::<u64>::new());
    assert_eq!(ids(&["-y", "1h"]), both);
    assert_eq!(ids(&["--local"]), vec![a]);
    assert_eq!(ids(&["-H"]), Vec::<u64>::new());
    assert_eq!(ids(&["--not-held"]), both);

    // JSON lines parse, one object per message, recipients with channel and status.
    let o = qctl(&h, &["-j", "list"]);
    let check = Command::new(python())
        .args([
            "-c",
            "import json,sys\n\
             for l in sys.stdin:\n\
             \x20   m = json.loads(l)\n\
             \x20   print(m['id'], m['state'], m['sender'], len(m['recipients']), \
             sorted(r['channel'] + ':' + r['status'] for r in m['recipients']))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .expect("stdin")
                .write_all(o.stdout.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains(&format!(
            "{a} queued alice@one.example 2 ['local:waiting', 'remote:waiting']"
        )),
        "{text}\n{}",
        o.stdout
    );
    assert!(
        text.contains(&format!("{b} queued  1 ['remote:waiting']")),
        "{text}"
    );

    // show: the header only, with the escape sequence defused; --raw is the file itself.
    let o = qctl(&h, &["show", &b.to_string()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("sender:    <>\n"), "{}", o.stdout);
    assert!(o.stdout.contains("X-Evil: ?[2J\n"), "{}", o.stdout);
    assert!(!o.stdout.contains('\x1b'));
    assert!(!o.stdout.contains("yyyy"));
    let o = qctl(&h, &["show", "-b", &b.to_string()]);
    assert!(o.stdout.contains(&"y".repeat(5000)));
    let raw = qctl_cmd(&h, &["show", "--raw", &b.to_string()])
        .output()
        .expect("raw");
    let mess = fs::read(h.queue().join(format!("mess/{}/{b}", b % 23))).expect("mess");
    assert_eq!(raw.stdout, mess);
    let o = qctl(&h, &["show", "1"]);
    assert_eq!(o.code, 100);

    drop(gate);
    for id in [a, b] {
        wait_end(&sys, id);
    }
    let o = qctl(&h, &["list"]);
    assert_eq!(o.stdout, "0 messages (0 held, 0 not yet preprocessed)\n");
    sys.stop();
}

#[test]
fn without_qmail_send_requests_apply_to_the_files_and_the_next_start_finishes() {
    let h = gated_home();
    user_file(&h, "defer-k", b"");
    let sys = System::start(&h);
    for (s, r) in [
        ("gone@far.example", "k@testhost.example"),
        ("kept@far.example", "k@testhost.example"),
        ("due@far.example", "k@testhost.example"),
    ] {
        inject(&h, "Subject: o\n\nx\n", s, &[r]);
        msg_id(&sys, s);
    }
    let (gone, kept, due) = (
        msg_id(&sys, "gone@far.example"),
        msg_id(&sys, "kept@far.example"),
        msg_id(&sys, "due@far.example"),
    );
    wait_until("three deferrals", || {
        sys.lines()
            .iter()
            .filter(|l| l.contains(": deferral: "))
            .count()
            == 3
    });
    sys.stop();
    fs::remove_file(h.path().join("defer-k")).expect("rm");
    // A message that qmail-send has not seen yet.
    inject(
        &h,
        "Subject: new\n\nx\n",
        "new@far.example",
        &["k@testhost.example"],
    );

    let o = qctl(&h, &["delete", &gone.to_string()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("qmail-send removes the rest when it starts"),
        "{o:?}"
    );
    assert_eq!(qctl(&h, &["hold", &kept.to_string()]).code, 0);
    let o = qctl(&h, &["retry", &due.to_string()]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = qctl(&h, &["hold", "-s", "new@far.example"]);
    assert_eq!(o.code, 111, "{o:?}");
    assert!(o.stdout.contains("not preprocessed yet"), "{o:?}");
    let o = qctl(&h, &["pause", "local"]);
    assert_eq!(o.code, 111, "{o:?}");
    // The deleted message is held too, with no recipients left, until qmail-send ends it.
    let o = qctl(&h, &["status"]);
    assert_eq!(o.stdout, "qmail-send is not running\nheld messages: 2\n");
    let o = qctl(&h, &["-t", "list"]);
    let states: BTreeSet<String> = o
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split('\t').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert!(states.contains(&format!("{gone} held")), "{states:?}");
    assert!(states.contains(&format!("{kept} held")), "{states:?}");
    assert!(states.contains(&format!("{due} queued")), "{states:?}");
    assert_eq!(states.len(), 4, "{states:?}");
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{gone}\t")) && l.ends_with("\t\t\t")),
        "the deleted message has no recipients left: {}",
        o.stdout
    );

    // While something holds lock/sendmutex without listening (netqmail's qmail-send, say),
    // nothing is changed.
    {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(h.queue().join("lock/sendmutex"))
            .expect("sendmutex");
        let _l = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("lock");
        let o = qctl(&h, &["release", &kept.to_string()]);
        assert_eq!(o.code, 111, "{o:?}");
        assert!(o.stderr.contains("takes no requests"), "{o:?}");
    }

    // The next qmail-send ends the deleted message, leaves the held one, delivers the due
    // one at once (its next attempt was 100 s away) and the new one.
    let sys = System::start(&h);
    for id in [gone, due] {
        wait_end(&sys, id);
    }
    let new = msg_id(&sys, "new@far.example");
    sys.wait_log("the new one's end", |l| l == format!("end msg {new}"));
    assert_eq!(starts_of(&sys.lines(), gone), 0);
    assert_eq!(starts_of(&sys.lines(), kept), 0);
    assert_eq!(delivered_locals(&h), vec!["k", "k"]);
    // An ended message's files go after its "end msg" line (qmail-clean removes mess/S/N,
    // then info/S/N goes), so the listing settles a moment later.
    wait_until("the ended messages to leave the listing", || {
        qctl(&h, &["-t", "list"]).stdout.lines().count() == 2
    });
    let o = qctl(&h, &["-t", "list"]);
    assert_eq!(o.stdout.lines().count(), 2, "{o:?}");
    assert!(o.stdout.contains(&format!("{kept}\theld\t")));
    let o = qctl(&h, &["delete", "-H"]);
    assert_eq!(o.stdout, format!("#{kept}: deleted\n"));
    sys.wait_log("the end", |l| l == format!("end msg {kept}"));
    sys.stop();
    assert!(queue_files(&h).is_empty(), "{:?}", queue_files(&h));
}

/// A Python client speaking the protocol directly: sends `lines` as one write, prints
/// everything it gets back until the server closes or 2 seconds pass without data.
fn raw_client(h: &Home, as_user: Option<&str>, data: &[u8]) -> String {
    let md = fs::metadata(h.queue()).expect("queue");
    let name = format!("rqmail-qctl/{:x}/{:x}", md.dev(), md.ino());
    let code = format!(
        "import socket,sys\n\
         s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n\
         s.connect(b'\\0{name}')\n\
         try: s.sendall(sys.stdin.buffer.read())\n\
         except (BrokenPipeError, ConnectionResetError): pass\n\
         s.settimeout(2)\n\
         out=b''\n\
         try:\n\
         \x20 while True:\n\
         \x20   d=s.recv(4096)\n\
         \x20   if not d: break\n\
         \x20   out+=d\n\
         except (socket.timeout, ConnectionResetError): pass\n\
         sys.stdout.buffer.write(out)\n"
    );
    let mut c = match as_user {
        Some(u) => {
            let mut c = Command::new(tool("setpriv"));
            c.arg(format!("--reuid={u}"))
                .arg(format!("--regid={u}"))
                .arg("--clear-groups")
                .arg(python());
            c
        }
        None => {
            let mut c = user_cmd(h, &python());
            c.env_remove("QMAIL_HOME");
            c
        }
    };
    let o = c
        .args(["-c", &code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            ch.stdin.take().expect("stdin").write_all(data)?;
            ch.wait_with_output()
        })
        .expect("python client");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_request_channel_answers_in_order_rejects_junk_and_strangers() {
    let h = gated_home();
    let sys = System::start(&h);
    // Pipelined requests, junk among them, answered one by one in order.
    let got = raw_client(
        &h,
        None,
        b"status\nhold 99999999\nfrobnicate\nhold +1\nhold 0099999999\npause local\nresume local\nretry all\n",
    );
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 8, "{got}");
    assert!(lines[0].starts_with("ok status local-used=0 local-limit=10 local-paused=0 "));
    assert_eq!(lines[1], "no not-found id=99999999");
    assert_eq!(lines[2], "no bad-request");
    assert_eq!(lines[3], "no bad-request");
    // Message numbers are read as netqmail reads queue file names.
    assert_eq!(lines[4], "no not-found id=99999999");
    assert_eq!(
        lines[5],
        "ok paused channel=local already=0 success=0 failure=0 deferral=0"
    );
    assert_eq!(lines[6], "ok resumed channel=local already=0");
    assert_eq!(lines[7], "ok retrying waiting=0");
    // An overlong line ends the connection after one answer.
    let mut long = vec![b'x'; 5000];
    long.extend_from_slice(b"\nstatus\n");
    assert_eq!(raw_client(&h, None, &long), "no bad-request\n");

    if is_root() {
        // Another user (daemon) is refused and logged.
        let (duid, _) = user_ids("daemon");
        assert_eq!(
            raw_client(&h, Some("daemon"), b"status\n"),
            "no forbidden\n"
        );
        sys.wait_log("the refusal", |l| {
            l == format!("warning: qctl: refused a request from uid {duid}")
        });
    }
    // qmail-send is still fine: a message is delivered.
    delivers_still(&h, &sys, "after@far.example");
    sys.stop();
}

#[test]
fn qmail_qctl_refuses_a_socket_squatted_by_a_stranger() {
    assert!(
        is_root(),
        "needs root to run a stranger; run the suite as root"
    );
    let h = gated_home();
    // A stranger (daemon) takes the name before qmail-send starts.
    let md = fs::metadata(h.queue()).expect("queue");
    let name = format!("rqmail-qctl/{:x}/{:x}", md.dev(), md.ino());
    let mut squatter = Command::new(tool("setpriv"))
        .args(["--reuid=daemon", "--regid=daemon", "--clear-groups"])
        .arg(python())
        .args([
            "-c",
            &format!(
                "import socket,sys,time\n\
                 s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n\
                 s.bind(b'\\0{name}')\n\
                 s.listen(5)\n\
                 print('ready', flush=True)\n\
                 time.sleep(120)\n"
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("squatter");
    let mut line = String::new();
    BufReader::new(squatter.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    assert_eq!(line, "ready\n");
    let sys = System::start(&h);
    sys.wait_log("the warning", |l| {
        l.starts_with("warning: unable to listen for qmail-qctl requests: ")
    });
    let (duid, _) = user_ids("daemon");
    let o = qctl(&h, &["status"]);
    assert_eq!(o.code, 111, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "the request channel is held by a process of uid {duid}, not by qmail-send (uid {})",
            nobody().0
        )),
        "{o:?}"
    );
    let _ = squatter.kill();
    let _ = squatter.wait();
    // Deliveries are not affected.
    delivers_still(&h, &sys, "sq@far.example");
    sys.stop();
}

#[test]
fn root_mode_qmail_qctl_becomes_qmails_and_qmail_send_serves_it() {
    let (h, ids) = root_mode_home();
    fs::create_dir(h.path().join("running")).expect("mkdir");
    fs::set_permissions(h.path().join("running"), fs::Permissions::from_mode(0o777))
        .expect("chmod");
    fs::write(h.path().join("gate"), b"").expect("gate");
    fs::set_permissions(h.path().join("gate"), fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(h.path().join("delivered-remote"), b"").expect("file");
    fs::set_permissions(
        h.path().join("delivered-remote"),
        fs::Permissions::from_mode(0o666),
    )
    .expect("chmod");
    let remote = h.path().join("bin/qmail-remote");
    rqmail_tests::home::write_executable(&remote, FAKE_REMOTE);
    let gate = close_gate(&h);
    let mut c = Command::new(h.path().join("bin/qmail-start"));
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAIL_HOME", h.path());
    let sys = System::start_cmd(c, &["./Maildir/"]);
    let mut qq = Command::new(tool("setpriv"));
    qq.args(["--reuid=qmailq", "--regid=qmail", "--clear-groups"])
        .arg(bin("qmail-queue"))
        .env_clear()
        .env("QMAIL_HOME", h.path())
        .current_dir(h.path());
    assert_eq!(
        queue_with(
            qq,
            b"Subject: root\n\nx\n",
            "root@far.example",
            &["x@far.example"]
        ),
        0
    );
    let id = msg_id(&sys, "root@far.example");
    wait_until("the delivery at the gate", || {
        running(&h).contains("remote-x@far.example")
    });
    // qmail-qctl run by root: the request reaches qmail-send as qmails.
    let root_qctl = |args: &[&str]| {
        let mut c = Command::new(bin("qmail-qctl"));
        c.args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("QMAIL_HOME", h.path());
        c
    };
    let child = root_qctl(&["hold", &id.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qmail-qctl");
    let pid = child.id();
    // While it waits, it runs as qmails:qmail with no other group.
    let qmails = user_ids("qmails").0;
    let qmail = ids.qmail.as_raw();
    wait_until("qmail-qctl to switch ids and wait", || {
        sys.lines()
            .contains(&format!("qctl: hold msg {id} uid {qmails}"))
    });
    let st = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        field("Uid:"),
        format!("{qmails}\t{qmails}\t{qmails}\t{qmails}")
    );
    assert_eq!(field("Gid:"), format!("{qmail}\t{qmail}\t{qmail}\t{qmail}"));
    assert_eq!(field("Groups:"), qmail.to_string());
    drop(gate);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("#{id}: held; 1 delivery that was already running has ended: 1 success\n")
    );
    wait_end(&sys, id);
    // The ended message's files go after its "end msg" line.
    wait_until("no held message left", || {
        let o = root_qctl(&["status"]).output().expect("status");
        String::from_utf8_lossy(&o.stdout).contains("held messages: 0\n")
    });
    // Another user may neither read the queue nor ask qmail-send.
    let as_nobody = |args: &[&str]| {
        Command::new(tool("setpriv"))
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(bin("qmail-qctl"))
            .args(args)
            .env_clear()
            .env("QMAIL_HOME", h.path())
            .output()
            .expect("as nobody")
    };
    let o = as_nobody(&["list"]);
    assert_eq!(o.status.code(), Some(111));
    assert_eq!(o.stdout, b"");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("qmail-qctl: fatal: unable to read the queue"),
        "{o:?}"
    );
    // It does not even talk to a qmail-send of another user.
    let o = as_nobody(&["retry", "-a"]);
    assert_eq!(o.status.code(), Some(111), "{o:?}");
    assert_eq!(o.stdout, b"");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!(
            "the request channel is served by uid {qmails}, neither root nor this user: \
             run qmail-qctl as root or as qmail-send's user"
        )),
        "{o:?}"
    );
    sys.stop();
}

#[test]
fn requests_for_messages_not_yet_preprocessed_have_them_preprocessed_first() {
    let h = gated_home();
    // Without lock/trigger qmail-send looks at todo/ only when it starts and every 25
    // minutes, so new messages stay there until a request needs them.
    fs::remove_file(h.queue().join("lock/trigger")).expect("rm trigger");
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: n1\n\nx\n",
        "n1@far.example",
        &["p@testhost.example"],
    );
    inject(
        &h,
        "Subject: n2\n\nx\n",
        "n2@far.example",
        &["q@testhost.example"],
    );
    let o = qctl(&h, &["-t", "list"]);
    let rows: Vec<Vec<&str>> = o
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{o:?}");
    for r in &rows {
        assert_eq!((r[1], r[7], r[8]), ("new", "-", "waiting"), "{o:?}");
    }
    let id_of = |sender: &str| -> u64 {
        rows.iter()
            .find(|r| r[6] == sender)
            .and_then(|r| r[0].parse().ok())
            .expect("id")
    };
    let (n1, n2) = (id_of("n1@far.example"), id_of("n2@far.example"));
    let o = qctl(&h, &["hold", &n1.to_string()]);
    assert_eq!(o.stdout, format!("#{n1}: held\n"), "{o:?}");
    let o = qctl(&h, &["delete", &n2.to_string()]);
    assert_eq!(o.stdout, format!("#{n2}: deleted\n"), "{o:?}");
    sys.wait_log("the end of n2", |l| l == format!("end msg {n2}"));
    let log = sys.lines();
    let hold = log
        .iter()
        .position(|l| l.starts_with(&format!("qctl: hold msg {n1} ")))
        .expect("hold line");
    let new = log
        .iter()
        .position(|l| l == &format!("new msg {n1}"))
        .expect("new line");
    assert!(new < hold, "preprocessed first: {log:#?}");
    assert_eq!(starts_of(&log, n1), 0);
    assert_eq!(starts_of(&log, n2), 0);
    assert!(!h.queue().join(format!("todo/{n1}")).exists());
    let o = qctl(&h, &["release", &n1.to_string()]);
    assert_eq!(o.code, 0, "{o:?}");
    sys.wait_log("the end of n1", |l| l == format!("end msg {n1}"));
    assert_eq!(delivered_locals(&h), vec!["p"]);
    // Nothing went wrong on the way.
    let log = sys.stop();
    assert!(!log.iter().any(|l| l.starts_with("warning:")), "{log:#?}");
    assert!(queue_files(&h).is_empty(), "{:?}", queue_files(&h));
}

#[test]
fn term_answers_a_waiting_hold_and_refuses_new_requests() {
    let h = gated_home();
    let gate = close_gate(&h);
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: t\n\nx\n",
        "term@far.example",
        &["t@testhost.example"],
    );
    let id = msg_id(&sys, "term@far.example");
    wait_until("the delivery at the gate", || running(&h).contains("t"));
    let mut r = qctl_bg(&h, &["hold", &id.to_string()]);
    assert_waiting(&mut r, 1);
    sys.signal(nix::sys::signal::Signal::SIGTERM);
    // (No status line says so before a delivery ends; qmail-send's status does.)
    wait_until("qmail-send to be exiting", || {
        qctl(&h, &["-j", "status"]).stdout.contains("\"exiting\":1")
    });
    let o = qctl(&h, &["release", &id.to_string()]);
    assert_eq!(o.code, 111, "{o:?}");
    assert_eq!(
        o.stdout,
        format!("release {id}: qmail-send is exiting; try again\n")
    );
    drop(gate);
    let out = r.finish();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("#{id}: held; 1 delivery that was already running has ended: 1 success\n")
    );
    let log = sys.stop();
    assert!(log.contains(&format!("end msg {id}")), "{log:#?}");
}
