//! Recipient validation agrees with delivery: one table of local recipients, each sent
//! through qmail-smtpd's RCPT check (control/checklocalrcpt) and, as a message of its own,
//! through the real qmail-send, qmail-lspawn, qmail-getpw and qmail-local. qmail-smtpd must
//! answer 550 exactly for the recipients delivery bounces with "no mailbox here by that
//! name", and 250 for those it delivers or defers.
//!
//! Single-user mode (as `nobody` when the tests run as root), so that users/assign may
//! send addresses to homes of the test's making: users/cdb exact and wildcard entries,
//! qmail-getpw's own user and alias, locals, virtualdomains, percenthack, `-default`
//! files, missing, unusable and unsearchable homes, an unreadable .qmail file.

use rqmail_tests::single::*;
use rqmail_tests::{Home, bin, run_with_input};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What delivery did with a recipient, first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// qmail-local: "Sorry, no mailbox here by that name. (#5.1.1)".
    NoMailbox,
    Deferred,
}
use Outcome::*;

fn maildir(p: &Path) {
    for d in ["cur", "new", "tmp"] {
        fs::create_dir_all(p.join("Maildir").join(d)).expect("maildir");
    }
}

fn dot_qmail(home: &Path, name: &str) {
    fs::write(home.join(name), "./Maildir/\n").expect("write .qmail");
}

fn user_home(h: &Home, name: &str, mode: u32) -> String {
    let p = h.path().join("homes").join(name);
    fs::create_dir_all(&p).expect("mkdir home");
    maildir(&p);
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    p.display().to_string()
}

#[test]
fn recipient_validation_refuses_exactly_what_delivery_bounces() {
    let h = Home::new();
    fs::set_permissions(h.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let (uid, gid) = runner_ids();
    let me = runner_name();
    h.control("locals", "testhost.example\n");
    h.control(
        "rcpthosts",
        "testhost.example\nvirt.example\ncatch.example\nrelay.example\n",
    );
    h.control(
        "virtualdomains",
        "virt.example:vuser\ncatch.example:vcatch\n",
    );
    h.control("percenthack", "relay.example\n");
    h.control("checklocalrcpt", "1\n");

    let a = user_home(&h, "a", 0o755);
    let b = user_home(&h, "b", 0o755);
    let c = user_home(&h, "c", 0o755);
    let v = user_home(&h, "v", 0o755);
    let d = user_home(&h, "d", 0o755);
    let l = user_home(&h, "l", 0o755);
    let x = user_home(&h, "x", 0o755);
    let runner = user_home(&h, "runner", 0o755);
    let missing = h.path().join("homes/missing").display().to_string();
    dot_qmail(Path::new(&a), ".qmail-foo");
    dot_qmail(Path::new(&b), ".qmail-w-default");
    dot_qmail(Path::new(&c), ".qmail-l-known");
    dot_qmail(Path::new(&v), ".qmail-x");
    dot_qmail(Path::new(&d), ".qmail-default");
    dot_qmail(Path::new(&l), ".qmail-secret");
    dot_qmail(Path::new(&runner), ".qmail-ext");
    dot_qmail(&h.path().join("alias"), ".qmail-known");
    maildir(&h.path().join("alias"));
    let assign = [
        format!("=exact:{me}:{uid}:{gid}:{a}:::"),
        format!("=exactext:{me}:{uid}:{gid}:{a}:-:foo:"),
        format!("=list-special:{me}:{uid}:{gid}:{a}:::"),
        format!("+list-:{me}:{uid}:{gid}:{c}:-:l-:"),
        format!("+wild-:{me}:{uid}:{gid}:{b}:-:w-:"),
        format!("+vuser-:{me}:{uid}:{gid}:{v}:-::"),
        format!("+vcatch-:{me}:{uid}:{gid}:{d}:-::"),
        format!("+gone-:{me}:{uid}:{gid}:{missing}:-::"),
        format!("=gonedefault:{me}:{uid}:{gid}:{missing}:::"),
        format!("+lock-:{me}:{uid}:{gid}:{l}:-::"),
        format!(
            "+wh-:{me}:{uid}:{gid}:{w}:-::",
            w = user_home(&h, "w", 0o757)
        ),
        format!(
            "+shut-:{me}:{uid}:{gid}:{s}:-::",
            s = user_home(&h, "s", 0o755)
        ),
        format!("+bounces-:{me}:{uid}:{gid}:{x}:::"),
    ];
    fs::write(
        h.path().join("users/assign"),
        format!("{}\n.\n", assign.join("\n")),
    )
    .expect("assign");
    h.chown_all(uid, gid);
    let st = user_cmd(&h, &bin("qmail-newu"))
        .status()
        .expect("qmail-newu");
    assert!(st.success(), "qmail-newu");
    // Made after the chown: a .qmail file its user cannot read, a home it cannot enter.
    fs::set_permissions(
        Path::new(&l).join(".qmail-secret"),
        fs::Permissions::from_mode(0o000),
    )
    .expect("chmod");
    let shut = h.path().join("homes/s");
    fs::set_permissions(&shut, fs::Permissions::from_mode(0o000)).expect("chmod");

    let cases: Vec<(String, Outcome)> = vec![
        // users/cdb, exact entries: default delivery, or the .qmail file of their ext
        ("exact@testhost.example".into(), Delivered),
        ("Exact@TestHost.Example".into(), Delivered),
        ("exactext@testhost.example".into(), Delivered),
        // an exact entry wins over a wildcard one
        ("list-special@testhost.example".into(), Delivered),
        // wildcard entries: the rest of the address joins ext
        ("list-known@testhost.example".into(), Delivered),
        ("list-KNOWN@testhost.example".into(), Delivered),
        ("list-other@testhost.example".into(), NoMailbox),
        ("wild-anything@testhost.example".into(), Delivered),
        // virtualdomains: prepend-address, then users/cdb
        ("x@virt.example".into(), Delivered),
        ("y@virt.example".into(), NoMailbox),
        ("any-thing@catch.example".into(), Delivered),
        // percenthack: relayed to a local address
        (
            "list-known%testhost.example@relay.example".into(),
            Delivered,
        ),
        (
            "list-other%testhost.example@relay.example".into(),
            NoMailbox,
        ),
        // homes qmail-local cannot use: deferred, never bounced
        ("gone-x@testhost.example".into(), Deferred),
        ("gonedefault@testhost.example".into(), Deferred),
        ("wh-x@testhost.example".into(), Deferred),
        ("shut-x@testhost.example".into(), Deferred),
        // a .qmail file its user cannot read: deferred; the same home otherwise bounces
        ("lock-secret@testhost.example".into(), Deferred),
        ("lock-other@testhost.example".into(), NoMailbox),
        // not in users/cdb: qmail-getpw's user (its $HOME) and alias
        (format!("{me}@testhost.example"), Delivered),
        (format!("{me}-ext@testhost.example"), Delivered),
        (format!("{me}-none@testhost.example"), NoMailbox),
        ("known@testhost.example".into(), Delivered),
        ("unknown@testhost.example".into(), NoMailbox),
        // no domain: envnoathost (control/me) is local
        ("unknown".into(), NoMailbox),
    ];

    // qmail-smtpd's verdicts, in one session.
    let mut input = String::from("MAIL FROM:<a@client.example>\r\n");
    for (r, _) in &cases {
        input.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    input.push_str("QUIT\r\n");
    let mut smtpd = user_cmd(&h, &bin("qmail-smtpd"));
    smtpd.env("HOME", &runner);
    let (_, out, err) = run_with_input(smtpd, input.as_bytes());
    let out = String::from_utf8_lossy(&out);
    assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
    let replies: Vec<&str> = out.lines().skip(2).take(cases.len()).collect();
    assert_eq!(replies.len(), cases.len(), "{out}");

    // Delivery: one message per recipient, its sender naming the case.
    let mut start = user_cmd(&h, &h.path().join("bin/qmail-start"));
    start.env("HOME", &runner);
    let sys = System::start_cmd(start, &["./Maildir/"]);
    for (i, (r, _)) in cases.iter().enumerate() {
        inject(
            &h,
            "Subject: agreement\n\nbody\n",
            &format!("bounces-case{i}@testhost.example"),
            &[r.as_str()],
        );
    }
    let mut outcomes: HashMap<usize, Outcome> = HashMap::new();
    wait_until("a first delivery result for every case", || {
        outcomes = first_outcomes(&sys.lines());
        (0..cases.len()).all(|i| outcomes.contains_key(&i))
    });
    let log = sys.stop();
    let _ = fs::set_permissions(&shut, fs::Permissions::from_mode(0o755));

    let mut wrong = Vec::new();
    for (i, (r, expected)) in cases.iter().enumerate() {
        let got = outcomes[&i];
        let refused = replies[i].starts_with("550 ");
        if got != *expected || refused != (got == NoMailbox) {
            wrong.push(format!(
                "{r}: delivery {got:?} (table says {expected:?}), qmail-smtpd {:?}",
                replies[i]
            ));
        }
        if !refused {
            assert_eq!(replies[i], "250 ok", "{r}");
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\nlog: {log:#?}");
}

/// The first result of the delivery of each case's message, from qmail-send's log
/// (qmail-log(5): `info msg M: ... from <bounces-caseI@...>`, `starting delivery D: msg
/// M ...`, `delivery D: success|failure|deferral: ...`).
fn first_outcomes(log: &[String]) -> HashMap<usize, Outcome> {
    // Message numbers (inodes) and delivery numbers (slots) are both reused: each is
    // resolved when it appears.
    let mut case_of_msg: HashMap<String, usize> = HashMap::new();
    let mut case_of_delivery: HashMap<String, usize> = HashMap::new();
    let mut out = HashMap::new();
    for l in log {
        if let Some(rest) = l.strip_prefix("info msg ") {
            let (msg, rest) = rest.split_once(':').unwrap_or_default();
            if let Some(i) = rest
                .split_once("from <bounces-case")
                .and_then(|(_, r)| r.split_once('@'))
                .and_then(|(n, _)| n.parse().ok())
            {
                case_of_msg.insert(msg.to_string(), i);
            }
        } else if let Some(rest) = l.strip_prefix("starting delivery ") {
            let (d, rest) = rest.split_once(": msg ").unwrap_or_default();
            let msg = rest.split(' ').next().unwrap_or_default();
            match case_of_msg.get(msg) {
                Some(&i) => case_of_delivery.insert(d.to_string(), i),
                None => case_of_delivery.remove(d),
            };
        } else if let Some(rest) = l.strip_prefix("delivery ") {
            let (d, rest) = rest.split_once(": ").unwrap_or_default();
            let Some(&i) = case_of_delivery.get(d) else {
                continue;
            };
            let o = if rest.starts_with("success: ") {
                Delivered
            } else if rest.starts_with("deferral: ") {
                Deferred
            } else if rest.starts_with("failure: Sorry,_no_mailbox_here_by_that_name.") {
                NoMailbox
            } else {
                panic!("unexpected delivery result: {l}")
            };
            out.entry(i).or_insert(o);
        }
    }
    out
}

#[test]
fn the_log_reader_follows_messages_to_their_deliveries() {
    let log: Vec<String> = [
        "new msg 10",
        "info msg 10: bytes 30 from <bounces-case3@testhost.example> qp 5 uid 9",
        "starting delivery 7: msg 10 to local x@testhost.example",
        "delivery 7: deferral: Unable_to_switch_to_/x:_file_does_not_exist._(#4.3.0)/",
        "starting delivery 8: msg 10 to local x@testhost.example",
        "delivery 8: success: did_0+0+1/",
        "info msg 11: bytes 30 from <> qp 6 uid 9",
        "starting delivery 9: msg 11 to local y@testhost.example",
        "delivery 9: failure: Sorry,_no_mailbox_here_by_that_name._(#5.1.1)/",
        // message 10 is gone; its number and delivery 7's slot are used again
        "info msg 10: bytes 30 from <bounces-case4@testhost.example> qp 7 uid 9",
        "starting delivery 7: msg 10 to local z@testhost.example",
        "delivery 7: failure: Sorry,_no_mailbox_here_by_that_name._(#5.1.1)/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let got = first_outcomes(&log);
    assert_eq!(got.len(), 2);
    assert_eq!(got[&3], Deferred);
    assert_eq!(got[&4], NoMailbox);
}
