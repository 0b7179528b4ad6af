//! Privileges at run time: the whole system started as root from a home laid out by
//! rqmail-install in root mode, and every process of a message's path read from /proc
//! while it runs: qmail-smtpd (qmaild), the setuid qmail-queue it starts (qmailq),
//! qmail-send (qmails), qmail-lspawn (root with setuid and setgid only), qmail-rspawn
//! and qmail-remote (qmailr), qmail-clean (qmailq), the logger (qmaill), and qmail-local
//! (the recipient's ids). Afterwards the home passes `rqmail-install -c`.
//!
//! send::root_mode_runs_each_daemon_under_its_qmail_id checks the daemons' ids on a
//! hand-made home with stand-ins for qmail-local and qmail-remote; this test uses the
//! installed programs end to end.

use crate::relsys::{nobody, proc_status, wait_until};
use crate::rootmode::{
    SETUID_HOME, install_root_home, lock_root_home, smtpd_as_qmaild, start_root_system,
};
use rqmail_tests::process::child_named;
use rqmail_tests::{Sink, Smtp, ensure_qmail_users, is_root, user_ids};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// CAP_SETGID (6) and CAP_SETUID (7).
const SETID_CAPS: &str = "00000000000000c0";
const NO_CAPS: &str = "0000000000000000";

/// Asserts the real/effective/saved/fs uids and gids, the supplementary groups and the
/// effective and permitted capabilities of a process.
fn assert_ids(what: &str, st: &HashMap<String, String>, uids: [u32; 4], gid: u32, caps: &str) {
    let u = uids.map(|u| u.to_string()).join("\t");
    assert_eq!(st["Uid"], u, "{what}: uids");
    assert_eq!(
        st["Gid"],
        format!("{gid}\t{gid}\t{gid}\t{gid}"),
        "{what}: gids"
    );
    assert_eq!(
        st["Groups"],
        gid.to_string(),
        "{what}: supplementary groups"
    );
    assert_eq!(st["CapEff"], caps, "{what}: effective capabilities");
    assert_eq!(st["CapPrm"], caps, "{what}: permitted capabilities");
    assert_eq!(st["CapInh"], NO_CAPS, "{what}: inheritable capabilities");
    assert_eq!(st["CapAmb"], NO_CAPS, "{what}: ambient capabilities");
}

fn status(pid: i32, what: &str) -> HashMap<String, String> {
    proc_status(pid).unwrap_or_else(|| panic!("{what} ({pid}) is gone"))
}

#[test]
fn whole_system_as_root_each_process_with_its_ids_and_capabilities() {
    if !is_root() {
        eprintln!("whole_system_as_root_each_process_with_its_ids_and_capabilities: needs root");
        return;
    }
    let _g = lock_root_home();
    ensure_qmail_users();
    let home = install_root_home();
    assert_eq!(home, Path::new(SETUID_HOME));
    let ids = control::Ids::lookup().expect("qmail ids");
    let (qmail, nofiles) = (ids.qmail.as_raw(), ids.nofiles.as_raw());
    let q = |n: &str| user_ids(n).0;

    // The recipient: every local address belongs to nobody (users/cdb wildcard), whose
    // .qmail-default records qmail-local's /proc status and then delivers to a Maildir.
    let (nu, ng) = nobody();
    let top = tempfile::tempdir().expect("tmp");
    fs::set_permissions(top.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let uhome = top.path().join("u");
    for d in ["", "Maildir", "Maildir/tmp", "Maildir/new", "Maildir/cur"] {
        fs::create_dir(uhome.join(d)).expect("mkdir");
        std::os::unix::fs::chown(uhome.join(d), Some(nu), Some(ng)).expect("chown");
    }
    fs::set_permissions(&uhome, fs::Permissions::from_mode(0o700)).expect("chmod");
    let dot = uhome.join(".qmail-default");
    fs::write(
        &dot,
        "|cat /proc/$PPID/status > \"$HOME/local.status\"\n./Maildir/\n",
    )
    .expect("dot-qmail");
    std::os::unix::fs::chown(&dot, Some(nu), Some(ng)).expect("chown");
    let value = format!("nobody\0{nu}\0{ng}\0{}\0-\0", uhome.display());
    control::write_cdb(
        &home.join("users/cdb"),
        &home.join("users/cdb.tmp"),
        vec![(&b"!"[..], value.as_bytes()), (b"", b"")],
    )
    .expect("users/cdb");
    fs::set_permissions(home.join("users/cdb"), fs::Permissions::from_mode(0o644)).expect("chmod");

    // The remote MX: a sink on 127.0.0.1 that greets only once the gate exists.
    let gate = top.path().join("gate");
    let sink = Sink::start(Some(gate.clone()));
    for (name, text) in [
        ("rcpthosts", "roothost.example\n".to_string()),
        ("locals", "roothost.example\n".to_string()),
        (
            "smtproutes",
            format!("far.example:127.0.0.1:{}\n", sink.port),
        ),
    ] {
        fs::write(home.join("control").join(name), text).expect("control");
    }

    // qmail-start as root with a logger: it drops each daemon to its ids.
    let sys = start_root_system(&home, top.path());
    let send = sys.pid().as_raw();
    let lspawn = child_named(send, "qmail-lspawn");
    let rspawn = child_named(send, "qmail-rspawn");
    let clean = child_named(send, "qmail-clean");
    let logger = child_named(send, "cat");
    let daemons = [
        ("qmail-send", send, [q("qmails"); 4], qmail, NO_CAPS),
        ("qmail-lspawn", lspawn, [0; 4], qmail, SETID_CAPS),
        ("qmail-rspawn", rspawn, [q("qmailr"); 4], qmail, NO_CAPS),
        ("qmail-clean", clean, [q("qmailq"); 4], qmail, NO_CAPS),
        ("logger", logger, [q("qmaill"); 4], nofiles, NO_CAPS),
    ];
    for (name, pid, uids, gid, caps) in daemons {
        assert_ids(name, &status(pid, name), uids, gid, caps);
    }

    // qmail-smtpd under tcpserver as qmaild (a relay client); its qmail-queue runs
    // setuid qmailq.
    let (server, port) = smtpd_as_qmaild(&home, &[("RELAYCLIENT", "")]);
    let mut s = Smtp::connect(port);
    assert!(s.reply()[0].starts_with("220 roothost.example"));
    let smtpd = child_named(server.0.id() as i32, "qmail-smtpd");
    let qmaild = q("qmaild");
    assert_ids(
        "qmail-smtpd",
        &status(smtpd, "qmail-smtpd"),
        [qmaild; 4],
        nofiles,
        NO_CAPS,
    );
    assert!(s.cmd("HELO client.example")[0].starts_with("250 "));
    assert!(s.cmd("MAIL FROM:<s@far.example>")[0].starts_with("250 "));
    assert!(s.cmd("RCPT TO:<joe@roothost.example>")[0].starts_with("250 "));
    assert!(s.cmd("RCPT TO:<x@far.example>")[0].starts_with("250 "));
    assert!(s.cmd("DATA")[0].starts_with("354 "));
    s.send(b"Subject: privileges\r\n");
    let qq = child_named(smtpd, "qmail-queue");
    let qmailq = q("qmailq");
    assert_ids(
        "qmail-queue",
        &status(qq, "qmail-queue"),
        [qmaild, qmailq, qmailq, qmailq],
        nofiles,
        NO_CAPS,
    );
    s.send(b"\r\nhello\r\n.\r\n");
    assert!(s.reply()[0].starts_with("250 ok "));
    s.cmd("QUIT");

    // The remote delivery waits at the sink's gate: look at qmail-remote, then open it.
    let remote = child_named(rspawn, "qmail-remote");
    assert_ids(
        "qmail-remote",
        &status(remote, "qmail-remote"),
        [q("qmailr"); 4],
        qmail,
        NO_CAPS,
    );
    fs::write(&gate, "").expect("gate");
    wait_until("the remote delivery", || sink.messages().len() == 1);
    let m = &sink.messages()[0];
    assert_eq!(m.rcpts, ["<x@far.example>"]);
    assert!(m.data.ends_with(b"Subject: privileges\n\nhello\n"));

    // qmail-local ran as the recipient, without capabilities.
    let st = uhome.join("local.status");
    wait_until("qmail-local's status", || {
        fs::read_to_string(&st).is_ok_and(|s| s.contains("CapAmb"))
    });
    let local: HashMap<String, String> = fs::read_to_string(&st)
        .expect("status")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    assert_eq!(local["Name"], "qmail-local");
    assert_ids("qmail-local", &local, [nu; 4], ng, NO_CAPS);
    wait_until("the local delivery", || {
        fs::read_dir(uhome.join("Maildir/new")).map_or(0, Iterator::count) == 1
    });
    wait_until("an empty queue", || crate::relsys::queue_empty(&home));
    // The daemons are still what they were after all that.
    for (name, pid, uids, gid, caps) in daemons {
        assert_ids(name, &status(pid, name), uids, gid, caps);
    }
    assert_eq!(sys.terminate(), Some(0));
    drop(server);

    // The home, queue included, is as rqmail-install lays it out.
    let out = Command::new(home.join("bin/rqmail-install"))
        .arg("-c")
        .arg(&home)
        .env_clear()
        .output()
        .expect("rqmail-install -c");
    assert!(
        out.status.success(),
        "rqmail-install -c: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
