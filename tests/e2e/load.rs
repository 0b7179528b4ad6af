//! Load: hundreds of SMTP sessions at once through tcpserver -c, with the memory and
//! descriptors of each qmail-smtpd bounded and everything returned when they end; and
//! qmail-send with hundreds of remote deliveries in flight, its descriptors and those of
//! qmail-rspawn returned afterwards.
//!
//! send::thousands_of_local_deliveries_at_once (2000 local deliveries in flight) and
//! send::concurrencylocal_200_runs_200_deliveries_at_once cover the scheduler's limits;
//! this module adds the resource accounting.

use crate::relsys::{
    System, children, mail_home, open_fds, proc_kb, proc_status, queue_empty, user_cmd, wait_until,
};
use rqmail_tests::fakes::{close_gate, fake_remote, running};
use rqmail_tests::{Home, bin, tcpserver_opts};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One reply line (the tests' dialogues have no multi-line replies).
fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("read");
    l
}

#[test]
fn hundreds_of_concurrent_smtp_sessions_bounded_and_returned() {
    let n = 300;
    let h = Home::new();
    h.control("rcpthosts", "testhost.example\n");
    let smtpd = bin("qmail-smtpd");
    let (server, port) = tcpserver_opts(&h, &[], &["-c", "400"], &[&smtpd]);
    let tcpserver = server.0.id() as i32;
    // The baseline: what an idle tcpserver holds, read until it is stable.
    let fds_before = settled_fds(tcpserver);

    let mut conns = Vec::new();
    for _ in 0..n {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let mut r = BufReader::new(s);
        assert_eq!(line(&mut r), "220 testhost.example ESMTP\r\n");
        conns.push(r);
    }
    for r in &mut conns {
        r.get_mut().write_all(b"HELO c\r\n").expect("helo");
    }
    for r in &mut conns {
        assert_eq!(line(r), "250 testhost.example\r\n");
    }
    // All sessions are open now: one qmail-smtpd each, each small and with a handful
    // of descriptors.
    let pids: Vec<i32> = children(tcpserver)
        .into_iter()
        .filter(|(_, name)| name == "qmail-smtpd")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(pids.len(), n);
    let mut rss = Vec::new();
    for &p in &pids {
        let st = proc_status(p).expect("alive");
        rss.push(proc_kb(&st, "VmRSS"));
        let fds = open_fds(p).expect("fds");
        assert!(fds <= 6, "qmail-smtpd {p} holds {fds} descriptors");
    }
    let max = *rss.iter().max().expect("rss");
    let min = *rss.iter().min().expect("rss");
    eprintln!("{n} sessions: qmail-smtpd VmRSS {min}..{max} KiB each");
    assert!(
        max < 16 * 1024,
        "an idle qmail-smtpd uses {max} KiB of memory"
    );
    assert!(
        max - min < 4 * 1024,
        "sessions differ in memory: {min}..{max} KiB"
    );

    // A message on every session at once (pipelined): n qmail-queue at once.
    for (i, r) in conns.iter_mut().enumerate() {
        r.get_mut()
            .write_all(
                format!(
                    "MAIL FROM:<a{i}@far.example>\r\nRCPT TO:<u{i}@testhost.example>\r\nDATA\r\nSubject: {i}\r\n\r\nbody {i}\r\n.\r\nQUIT\r\n"
                )
                .as_bytes(),
            )
            .expect("send");
    }
    for r in &mut conns {
        assert_eq!(line(r), "250 ok\r\n");
        assert_eq!(line(r), "250 ok\r\n");
        assert_eq!(line(r), "354 go ahead\r\n");
        let ok = line(r);
        assert!(ok.starts_with("250 ok "), "{ok}");
        assert_eq!(line(r), "221 testhost.example\r\n");
        assert_eq!(line(r), "", "the connection is closed after QUIT");
    }
    drop(conns);
    // Every process is gone and tcpserver is back to its descriptors.
    wait_until("every qmail-smtpd to exit", || {
        children(tcpserver).is_empty()
    });
    let mut fds_after = None;
    let back = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("tcpserver's descriptors back", || {
            fds_after = fd_targets(tcpserver);
            fds_after.as_ref() == Some(&fds_before)
        })
    }));
    assert!(
        back.is_ok(),
        "tcpserver's descriptors: {fds_before:?} before, {fds_after:?} after"
    );
    let q = h.queued();
    assert_eq!(q.len(), n);
    let mut senders: Vec<Vec<u8>> = q.iter().map(|m| m.sender()).collect();
    senders.sort();
    senders.dedup();
    assert_eq!(senders.len(), n, "every message exactly once");
    assert!(
        h.queue_files()
            .iter()
            .all(|p| !p.starts_with(h.queue().join("pid"))),
        "pid/ files left behind"
    );
}

/// What each descriptor of `pid` refers to (socket:[inode], pipe:[..], a path), sorted.
fn fd_targets(pid: i32) -> Option<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    v.sort();
    Some(v)
}

/// The descriptors of an idle `pid`: the same list read twice, 100 ms apart.
fn settled_fds(pid: i32) -> Vec<String> {
    let mut last = fd_targets(pid).expect("fds");
    wait_until("the descriptors to settle", || {
        std::thread::sleep(Duration::from_millis(100));
        let now = fd_targets(pid).expect("fds");
        let same = now == last;
        last = now;
        same
    });
    last
}

#[test]
fn hundreds_of_remote_deliveries_in_flight_return_their_descriptors() {
    let n = 400usize;
    let h = mail_home();
    h.control("concurrencyremote", &format!("{n}\n"));
    fake_remote(&h);
    let held = close_gate(&h);

    let sys = System::start(h.path());
    let send = sys.pid().as_raw();
    let rspawn = {
        let mut p = 0;
        wait_until("qmail-rspawn", || {
            p = children(send)
                .into_iter()
                .find(|(_, n)| n == "qmail-rspawn")
                .map_or(0, |(p, _)| p);
            p != 0
        });
        p
    };
    let base = (open_fds(send).expect("fds"), open_fds(rspawn).expect("fds"));
    // One message for n+50 remote recipients, queued by the real qmail-queue.
    let mut env = b"Fs@testhost.example\0".to_vec();
    for i in 0..n + 50 {
        env.extend_from_slice(format!("Tr{i}@far{i}.example\0").as_bytes());
    }
    env.push(0);
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let mut qq = user_cmd(h.path(), &h.path().join("bin/qmail-queue"));
    qq.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::from(r));
    let mut child = qq.spawn().expect("qmail-queue");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"Subject: load\n\nx\n")
        .expect("msg");
    fs::File::from(w).write_all(&env).expect("env");
    assert!(child.wait().expect("wait").success());

    wait_until("n remote deliveries in flight", || running(&h).len() == n);
    let full = format!("status: local 0/10 remote {n}/{n}");
    wait_until("the limit in the log", || sys.lines().contains(&full));
    let peak = (open_fds(send).expect("fds"), open_fds(rspawn).expect("fds"));
    // qmail-send itself needs no descriptor per delivery; qmail-rspawn one (the report pipe).
    assert!(
        peak.0 <= base.0 + 8,
        "qmail-send: {} descriptors at rest, {} with {n} deliveries",
        base.0,
        peak.0
    );
    assert!(
        peak.1 <= base.1 + n + 8,
        "qmail-rspawn: {} descriptors at rest, {} with {n} deliveries",
        base.1,
        peak.1
    );
    let send_kb = proc_kb(&proc_status(send).expect("alive"), "VmRSS");
    eprintln!(
        "{n} remote deliveries in flight: qmail-send {} -> {} descriptors, {send_kb} KiB; qmail-rspawn {} -> {} descriptors",
        base.0, peak.0, base.1, peak.1
    );
    assert!(send_kb < 64 * 1024, "qmail-send uses {send_kb} KiB");
    drop(held);
    wait_until("every delivery done", || queue_empty(h.path()));
    let log = sys.lines();
    assert_eq!(
        log.iter().filter(|l| l.contains(": success: ")).count(),
        n + 50
    );
    wait_until("descriptors returned", || {
        (open_fds(send), open_fds(rspawn)) == (Some(base.0), Some(base.1))
    });
    assert_eq!(sys.terminate(), Some(0));
}
