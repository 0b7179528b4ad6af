//! qmail-smtpd-server, driven as an administrator runs it: real clients (Python's
//! smtplib, plain sockets) on 127.0.0.1, rules made with the real `tcprules`, its log
//! lines in tcpserver's formats, children reaped, SIGTERM.

use crate::rootmode::{install_root_home, lock_root_home};
use crate::smtpd_tls::py;
use rqmail_tests::certs::{Key, self_signed, tls_home};
use rqmail_tests::process::{children, fmt_match, proc_stat};
use rqmail_tests::{
    Home, KillOnDrop, Smtp, free_port, is_root, python, tool, user_ids, wait_for_port,
};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// qmail-smtpd-server on 127.0.0.1 with `-R -H -l testhost.example`, the options
/// `opts`, qmail-smtpd's arguments `args`, QMAIL_HOME and `env`; descriptor 2 in
/// server.log of the home.
struct Server {
    proc: KillOnDrop,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(home: &Path, opts: &[&str], args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let log = home.join("server.log");
        let mut c = Command::new(home.join("bin/qmail-smtpd-server"));
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("QMAIL_HOME", home)
            .envs(env.iter().copied())
            .args(["-R", "-H", "-l", "testhost.example"])
            .args(opts)
            .arg("127.0.0.1")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log"));
        let proc = KillOnDrop(c.spawn().expect("start qmail-smtpd-server"));
        wait_for_port(port);
        Server { proc, port, log }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.proc.0.id()).expect("pid")
    }

    /// SIGTERM to the server, which must then exit 0.
    fn stop(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill");
        let status = self.proc.0.wait().expect("wait");
        assert_eq!(status.code(), Some(0));
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (hang guard: 20 s) until the log has a line `f` accepts; returns the log.
    fn wait_log(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let l = self.log();
            if l.lines().any(&f) {
                return l;
            }
            assert!(Instant::now() < deadline, "{what} never logged; log:\n{l}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every process whose parent is `parent`, zombies included.
fn all_children(parent: i32) -> Vec<i32> {
    fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|&p| proc_stat(p).is_some_and(|(_, ppid, _)| ppid == parent))
        .collect()
}

/// The spare the server forked in advance, once it exists (while no connection is
/// served, the server's only child).
fn spare(server: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let [(pid, _)] = children(server)[..] {
            return pid;
        }
        assert!(Instant::now() < deadline, "no spare under {server}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Renames a new self-signed certificate (and its key) over control/servercert.pem, as an
/// administrator installs one; returns the certificate's file.
fn replace_certificate(home: &Path) -> PathBuf {
    let dir = home.join("new");
    fs::create_dir(&dir).expect("mkdir");
    let (k, c) = self_signed(&dir, "server", Key::Ec, "/CN=testhost.example");
    let mut pem = fs::read(&k).expect("key");
    pem.extend(fs::read(&c).expect("cert"));
    let tmp = home.join("control/servercert.pem.new");
    fs::write(&tmp, pem).expect("write");
    fs::rename(&tmp, home.join("control/servercert.pem")).expect("rename");
    c
}

/// smtplib: one message from a@client.example to `rcpt`, in plaintext (`mode` plain),
/// after STARTTLS (`starttls`) or over SMTPS (`smtps`), trusting the certificate `ca`.
const SEND: &str = r#"
import smtplib, ssl, sys
port, mode, rcpt, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca) if ca else None
if mode == "smtps":
    s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=30)
else:
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.ehlo("client.example")
if mode == "starttls":
    s.starttls(context=ctx)
    s.ehlo("client.example")
try:
    s.sendmail("a@client.example", [rcpt], "Subject: via server\r\n\r\nhello\r\n")
    print("sent")
except smtplib.SMTPRecipientsRefused as e:
    print("refused", e)
s.quit()
"#;

fn send(port: u16, mode: &str, rcpt: &str, ca: Option<&Path>) -> String {
    let ca = ca.map(|p| p.display().to_string()).unwrap_or_default();
    let (ok, out, err) = py(SEND, &[&port.to_string(), mode, rcpt, &ca]);
    assert!(ok, "smtplib failed: {out}{err}");
    out
}

/// The peer certificate of an SMTPS server, as PEM.
fn smtps_certificate(port: u16) -> String {
    let (ok, out, err) = py(
        "import ssl,sys; print(ssl.get_server_certificate(('127.0.0.1', int(sys.argv[1]))))",
        &[&port.to_string()],
    );
    assert!(ok, "{out}{err}");
    out
}

/// The DER bytes of the first certificate in a PEM text (to compare certificates).
fn der(pem: &str) -> Vec<u8> {
    let (ok, out, err) = py(
        "import ssl,sys; print(ssl.PEM_cert_to_DER_cert(sys.argv[1]).hex())",
        &[pem.trim()],
    );
    assert!(ok, "{out}{err}");
    out.trim().as_bytes().to_vec()
}

/// A tcprules database made by the real tcprules from `text`.
fn tcprules(home: &Path, text: &str) -> PathBuf {
    let cdb = home.join("rules.cdb");
    let mut c = Command::new(tool("tcprules"))
        .arg(&cdb)
        .arg(home.join("rules.tmp"))
        .stdin(Stdio::piped())
        .spawn()
        .expect("tcprules");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("rules");
    assert!(c.wait().expect("tcprules").success());
    cdb
}

/// A queue program that records its environment in env.txt, then queues.
fn recording_queue(home: &Path) -> String {
    let p = home.join("queue-env");
    fs::write(
        &p,
        format!(
            "#!/bin/sh\nenv > {}/env.txt\nexec {}/bin/qmail-queue\n",
            home.display(),
            home.display()
        ),
    )
    .expect("script");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    p.display().to_string()
}

#[test]
fn plain_smtp_reaches_the_queue_with_tcpservers_environment() {
    let home = Home::new();
    let qq = recording_queue(home.path());
    let s = Server::start(home.path(), &[], &[], &[("QMAILQUEUE", &qq)]);
    assert!(send(s.port, "plain", "user@testhost.example", None).contains("sent"));
    let q = home.queued();
    assert_eq!(q.len(), 1);
    let mess = String::from_utf8_lossy(&q[0].mess).into_owned();
    assert!(
        mess.contains("Received: from unknown (HELO client.example) (127.0.0.1)\n  by testhost.example with SMTP; "),
        "{mess}"
    );
    assert!(mess.contains("Subject: via server\n\nhello\n"), "{mess}");
    let env = fs::read_to_string(home.path().join("env.txt")).expect("env.txt");
    let lines: Vec<&str> = env.lines().collect();
    for want in [
        "PROTO=TCP",
        "TCPLOCALIP=127.0.0.1",
        &format!("TCPLOCALPORT={}", s.port),
        "TCPLOCALHOST=testhost.example",
        "TCPREMOTEIP=127.0.0.1",
    ] {
        assert!(lines.contains(&want), "{want} missing: {env}");
    }
    assert!(lines.iter().any(|l| l.starts_with("TCPREMOTEPORT=")));
    assert!(!env.contains("TCPREMOTEHOST=") && !env.contains("TCPREMOTEINFO="));
    // The server's own options are not qmail-smtpd's arguments: no AUTH offered.
    let mut c = Smtp::connect(s.port);
    c.reply();
    let ehlo = c.cmd("EHLO client.example");
    assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
    c.cmd("QUIT");
}

#[test]
fn smtps_and_starttls_with_the_preloaded_configuration() {
    let (home, cert) = tls_home(Key::Ec);
    let smtps = Server::start(home.path(), &[], &[], &[("SMTPS", "1")]);
    assert!(send(smtps.port, "smtps", "user@testhost.example", Some(&cert)).contains("sent"));
    let plain = Server::start(home.path(), &[], &[], &[]);
    assert!(send(plain.port, "starttls", "user@testhost.example", Some(&cert)).contains("sent"));
    let q = home.queued();
    assert_eq!(q.len(), 2);
    let texts: Vec<String> = q
        .iter()
        .map(|m| String::from_utf8_lossy(&m.mess).into_owned())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains(" with ESMTPS (")),
        "{texts:?}"
    );
}

#[test]
fn a_new_certificate_is_seen_by_the_next_connection() {
    let (home, cert) = tls_home(Key::Ec);
    let s = Server::start(home.path(), &[], &[], &[("SMTPS", "1")]);
    let first = der(&smtps_certificate(s.port));
    assert_eq!(first, der(&fs::read_to_string(&cert).expect("cert")));
    let c = replace_certificate(home.path());
    let second = der(&smtps_certificate(s.port));
    assert_ne!(first, second);
    assert_eq!(second, der(&fs::read_to_string(&c).expect("cert")));
}

/// The spare was forked, with the configuration loaded then, before the certificate
/// was replaced: it looks at the files itself before it serves the connection.
#[test]
fn a_certificate_replaced_while_the_spare_waits_is_served() {
    let (home, cert) = tls_home(Key::Ec);
    let s = Server::start(home.path(), &["-v"], &[], &[("SMTPS", "1")]);
    let waiting = spare(s.pid());
    let c = replace_certificate(home.path());
    let served = der(&smtps_certificate(s.port));
    assert_ne!(served, der(&fs::read_to_string(&cert).expect("cert")));
    assert_eq!(served, der(&fs::read_to_string(&c).expect("cert")));
    let log = s.wait_log("the session", |l| l.contains(" from 127.0.0.1"));
    assert!(
        log.lines()
            .any(|l| l == format!("qmail-smtpd-server: pid {waiting} from 127.0.0.1")),
        "not served by the spare {waiting}:\n{log}"
    );
}

/// Under strace (when installed): servercert.pem is opened once, by the parent, however
/// many SMTPS sessions follow (each spare only looks at the file's stamp); every session
/// still reads control/me.
#[test]
fn smtps_sessions_read_no_key() {
    let strace = Path::new("/usr/bin/strace");
    if !strace.exists() {
        eprintln!("smtps_sessions_read_no_key: needs strace");
        return;
    }
    let (home, cert) = tls_home(Key::Ec);
    let trace = home.path().join("trace.txt");
    let port = free_port();
    let mut c = Command::new(strace);
    c.env_clear()
        .env("QMAIL_HOME", home.path())
        .env("SMTPS", "1")
        .args(["-f", "-e", "trace=openat", "-o"])
        .arg(&trace)
        .arg(home.path().join("bin/qmail-smtpd-server"))
        .args(["-R", "-H", "-l", "testhost.example", "127.0.0.1"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = KillOnDrop(c.spawn().expect("strace"));
    wait_for_port(port);
    for _ in 0..3 {
        assert!(send(port, "smtps", "user@testhost.example", Some(&cert)).contains("sent"));
    }
    assert_eq!(home.queued().len(), 3);
    let text = fs::read_to_string(&trace).expect("trace");
    let opened = |name: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("/control/{name}\"")) && !l.contains("ENOENT"))
            .count()
    };
    assert_eq!(opened("servercert.pem"), 1, "{text}");
    assert_eq!(opened("me"), 3, "{text}");
    // A killed strace leaves the server running: stop it first.
    let pid = children(i32::try_from(server.0.id()).expect("pid"))
        .into_iter()
        .find(|(_, n)| n.starts_with("qmail-smtpd-ser"))
        .map(|(p, _)| p);
    if let Some(p) = pid {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

#[test]
fn tcprules_allow_with_relayclient_and_deny() {
    let home = Home::new();
    home.control("rcpthosts", "testhost.example\n");
    let rules = tcprules(home.path(), "127.0.0.1:allow,RELAYCLIENT=\"\"\n:allow\n");
    let r = rules.display().to_string();
    let s = Server::start(home.path(), &["-x", &r], &[], &[]);
    assert!(send(s.port, "plain", "someone@elsewhere.example", None).contains("sent"));
    assert_eq!(home.queued().len(), 1);
    drop(s);

    // Without the rule, the same recipient is refused.
    tcprules(home.path(), ":allow\n");
    let s = Server::start(home.path(), &["-x", &r], &[], &[]);
    assert!(send(s.port, "plain", "someone@elsewhere.example", None).contains("refused"));

    // The database is read for each connection: deny, without restarting.
    tcprules(home.path(), "127.:deny\n");
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).expect("read");
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    drop(s);

    // A missing database: refused, unless -X.
    fs::remove_file(&rules).expect("rm");
    let s = Server::start(home.path(), &["-x", &r], &[], &[]);
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).expect("read");
    assert!(buf.is_empty());
    assert!(
        s.log()
            .contains("qmail-smtpd-server: warning: dropping connection, unable to read ")
    );
    drop(s);
    let s = Server::start(home.path(), &["-X", "-x", &r], &[], &[]);
    let mut c = Smtp::connect(s.port);
    assert!(c.reply()[0].starts_with("220 testhost.example ESMTP"));
    c.cmd("QUIT");
}

/// A client connected to `port` that gets no greeting within 700 ms (the server is at
/// its limit); `why` is the failure message if it does.
fn ungreeted(port: u16, why: &str) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let mut b = [0u8; 64];
    match c.read(&mut b) {
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{why}: {e}"
        ),
        Ok(n) => panic!("{why}: {}", String::from_utf8_lossy(&b[..n])),
    }
    c
}

/// Waits (at most 20 s) for the greeting on a client `ungreeted` returned.
fn greeted(c: &mut TcpStream) {
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut b = [0u8; 64];
    let n = c.read(&mut b).expect("greeting");
    assert!(
        b[..n].starts_with(b"220 "),
        "{}",
        String::from_utf8_lossy(&b[..n])
    );
}

#[test]
fn the_limit_defers_the_next_client() {
    let home = Home::new();
    let s = Server::start(home.path(), &["-c", "1"], &[], &[]);
    let mut first = Smtp::connect(s.port);
    assert!(first.reply()[0].starts_with("220 "));
    let mut second = ungreeted(s.port, "greeted while the first client is served");
    first.cmd("QUIT");
    greeted(&mut second);
}

/// With `-c 2`: two sessions at once, a third client greeted only when one ends, and
/// never more than 2 children (sessions and spare together).
#[test]
fn at_most_limit_sessions_and_children() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let home = Home::new();
    let s = Server::start(home.path(), &["-c", "2"], &[], &[]);
    let pid = s.pid();
    let (done, most) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let watch = {
        let (done, most) = (done.clone(), most.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(all_children(pid).len(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut first = Smtp::connect(s.port);
    assert!(first.reply()[0].starts_with("220 "));
    let mut second = Smtp::connect(s.port);
    assert!(second.reply()[0].starts_with("220 "));
    let mut third = ungreeted(s.port, "greeted while two clients are served");
    assert_eq!(children(pid).len(), 2);
    second.cmd("QUIT");
    greeted(&mut third);
    assert!(first.cmd("NOOP")[0].starts_with("250 "));
    first.cmd("QUIT");
    third.write_all(b"QUIT\r\n").expect("quit");
    // Both end; a spare waits again.
    spare(pid);
    done.store(true, Ordering::Relaxed);
    watch.join().expect("watch");
    let most = most.load(Ordering::Relaxed);
    assert!((1..=2).contains(&most), "{most} children at once");
}

#[test]
fn verbose_log_lines_in_tcpservers_formats() {
    let home = Home::new();
    let rules = tcprules(home.path(), "127.0.0.2:deny\n:allow\n");
    let r = rules.display().to_string();
    let s = Server::start(home.path(), &["-v", "-c", "7", "-x", &r], &[], &[]);
    s.wait_log("the first status", |l| {
        l == "qmail-smtpd-server: status: 0/7"
    });
    let mut c = Smtp::connect(s.port);
    c.reply();
    c.cmd("QUIT");
    let log = s.wait_log("end", |l| {
        fmt_match("qmail-smtpd-server: end {n} status 0", l)
    });
    let port = s.port;
    for pat in [
        "qmail-smtpd-server: status: 1/7".to_string(),
        "qmail-smtpd-server: pid {n} from 127.0.0.1".to_string(),
        format!("qmail-smtpd-server: ok {{n}} testhost.example:127.0.0.1:{port} :127.0.0.1::{{n}}"),
    ] {
        assert!(
            log.lines().any(|l| fmt_match(&pat, l)),
            "{pat} not in\n{log}"
        );
    }
    s.wait_log("the status after the end", |l| {
        l == "qmail-smtpd-server: status: 0/7"
    });
    // A denied client: its child exits 100 (status 25600), as tcpserver's does.
    let mut d = Command::new(python())
        .arg("-c")
        .arg("import socket,sys; s=socket.socket(); s.bind(('127.0.0.2',0)); s.connect(('127.0.0.1',int(sys.argv[1]))); print(s.recv(100))")
        .arg(port.to_string())
        .output()
        .expect("python");
    assert!(d.status.success());
    d.stdout.retain(|c| !c.is_ascii_whitespace());
    assert_eq!(d.stdout, b"b''");
    let log = s.wait_log("the denied child's end", |l| {
        fmt_match("qmail-smtpd-server: end {n} status 25600", l)
    });
    assert!(
        log.lines().any(|l| fmt_match(
            &format!(
                "qmail-smtpd-server: deny {{n}} testhost.example:127.0.0.1:{port} :127.0.0.2::{{n}}"
            ),
            l
        )),
        "{log}"
    );
    // Every line is one of the formats.
    for l in log.lines() {
        assert!(
            [
                "qmail-smtpd-server: status: {n}/7",
                "qmail-smtpd-server: pid {n} from {w}",
                "qmail-smtpd-server: ok {n} {w} {w}",
                "qmail-smtpd-server: deny {n} {w} {w}",
                "qmail-smtpd-server: end {n} status {n}",
            ]
            .iter()
            .any(|f| fmt_match(f, l)),
            "{l}"
        );
    }
}

#[test]
fn children_are_reaped_and_sigterm_stops_the_server() {
    let home = Home::new();
    let mut s = Server::start(home.path(), &[], &[], &[]);
    for _ in 0..10 {
        let mut c = Smtp::connect(s.port);
        c.reply();
        c.cmd("QUIT");
    }
    let pid = s.pid();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let zombies = fs::read_dir("/proc")
            .expect("proc")
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
            .filter_map(proc_stat)
            .filter(|(_, ppid, state)| *ppid == pid && *state == 'Z')
            .count();
        // Left: the spare waiting for the next connection, alone.
        if zombies == 0 && children(pid).len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{zombies} zombies left");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A session in progress outlives the server.
    let mut open = Smtp::connect(s.port);
    assert!(open.reply()[0].starts_with("220 "));
    s.stop();
    assert!(TcpStream::connect(("127.0.0.1", s.port)).is_err());
    assert!(open.cmd("NOOP")[0].starts_with("250 "));
    open.cmd("QUIT");
}

#[test]
fn sigterm_with_only_the_spare_leaves_no_process() {
    let home = Home::new();
    let mut s = Server::start(home.path(), &[], &[], &[]);
    let pid = s.pid();
    let waiting = spare(pid);
    s.stop();
    // The server reaped its spare before it exited: neither is left, not even a zombie.
    assert!(all_children(pid).is_empty());
    assert!(!Path::new(&format!("/proc/{waiting}")).exists());
    assert!(TcpStream::connect(("127.0.0.1", s.port)).is_err());
    assert_eq!(s.log(), "");
}

/// A server killed outright (SIGKILL, no chance to stop its spare) leaves no spare
/// holding the port open: the spare gets SIGTERM as its parent dies.
#[test]
fn a_killed_server_leaves_no_spare_listening() {
    let home = Home::new();
    let mut s = Server::start(home.path(), &[], &[], &[]);
    let waiting = spare(s.pid());
    s.proc.0.kill().expect("kill");
    s.proc.0.wait().expect("wait");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{waiting}")).exists()
        && proc_stat(waiting).is_some_and(|(_, _, state)| state != 'Z')
    {
        assert!(
            Instant::now() < deadline,
            "the spare {waiting} outlived the server"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(TcpStream::connect(("127.0.0.1", s.port)).is_err());
}

/// With no descriptor left for a new connection, the spare's accept fails (EMFILE): it
/// says so once, and waits between attempts instead of spinning.
#[test]
fn accept_failures_are_logged_and_retried_without_spinning() {
    let home = Home::new();
    let s = Server::start(home.path(), &[], &[], &[]);
    let pid = spare(s.pid());
    // The spare's lowest free descriptor becomes its limit: none left to accept with.
    let open: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd")
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect();
    let free = (0..)
        .find(|n| !open.contains(n))
        .expect("a free descriptor");
    let st = Command::new(tool("prlimit"))
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={free}:{free}"))
        .status()
        .expect("prlimit");
    assert!(st.success());
    let cpu = || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .expect("fields")
            .split_whitespace()
            .collect();
        f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
    };
    let before = cpu();
    let _waiting = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu() - before;
    assert!(ticks < 50, "{ticks} clock ticks of CPU in 2 s: a busy loop");
    let text = s.log();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("unable to accept"))
        .collect();
    assert_eq!(
        warnings,
        [
            "qmail-smtpd-server: warning: unable to accept: process cannot open more files (retrying every 100 ms)"
        ],
        "{text}"
    );
    // Still the same spare, waiting: the server forked no other.
    assert_eq!(children(s.pid()), [(pid, "qmail-smtpd-ser".to_string())]);
}

#[test]
fn usage_errors_exit_100() {
    let home = Home::new();
    for args in [
        &["-z", "0", "25"][..],
        &["0"],
        &["-c", "x", "0", "25"],
        &["localhost", "25"],
    ] {
        let out = home
            .cmd("qmail-smtpd-server")
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(100), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("qmail-smtpd-server: "));
    }
}

#[test]
fn root_mode_as_qmaild_and_nofiles() {
    if !is_root() {
        eprintln!("root_mode_as_qmaild_and_nofiles: needs root");
        return;
    }
    let _g = lock_root_home();
    let home = install_root_home();
    fs::write(home.join("control/rcpthosts"), "roothost.example\n").expect("rcpthosts");
    let (uid, _) = user_ids("qmaild");
    let gid = rqmail_tests::group_id("nofiles");
    let port = free_port();
    let mut c = Command::new(home.join("bin/qmail-smtpd-server"));
    c.env_clear()
        .env("QMAIL_HOME", &home)
        .args(["-R", "-H", "-l", "roothost.example", "-u"])
        .arg(uid.to_string())
        .arg("-g")
        .arg(gid.to_string())
        .arg("127.0.0.1")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let server = KillOnDrop(c.spawn().expect("qmail-smtpd-server"));
    wait_for_port(port);
    let st = rqmail_tests::process::proc_status(i32::try_from(server.0.id()).expect("pid"))
        .expect("status");
    assert!(
        st["Uid"].split_whitespace().all(|u| u == uid.to_string()),
        "{st:?}"
    );
    assert!(
        st["Gid"].split_whitespace().all(|g| g == gid.to_string()),
        "{st:?}"
    );
    assert_eq!(st["Groups"].trim(), gid.to_string());
    let mut s = Smtp::connect(port);
    assert!(s.reply()[0].starts_with("220 roothost.example ESMTP"));
    assert!(s.cmd("HELO client.example")[0].starts_with("250 "));
    assert!(s.cmd("MAIL FROM:<a@remote.example>")[0].starts_with("250 "));
    assert!(s.cmd("RCPT TO:<user@roothost.example>")[0].starts_with("250 "));
    assert!(s.cmd("DATA")[0].starts_with("354 "));
    let r = s.cmd("Subject: root mode\r\n\r\nhello\r\n.");
    assert!(r[0].starts_with("250 ok "), "{r:?}");
    s.cmd("QUIT");
    let q = qmail_queue::Queue::in_home(&home);
    let todo: Vec<_> = fs::read_dir(home.join("queue/todo"))
        .expect("todo")
        .flatten()
        .collect();
    assert_eq!(todo.len(), 1);
    let id: u64 = todo[0].file_name().to_string_lossy().parse().expect("id");
    let env = fs::read(q.todo(id)).expect("todo");
    assert!(env.starts_with(format!("u{uid}\0").as_bytes()));
}
