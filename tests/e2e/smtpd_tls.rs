//! qmail-smtpd's security extensions driven by real clients over real sockets on
//! 127.0.0.1 (and ::1): STARTTLS and SMTPS with Python's smtplib, `openssl s_client` and
//! swaks; the STARTTLS injection (CVE-2011-0411); SMTP AUTH with a checkpassword program;
//! recipient validation; SIZE; IPv6 literals and addresses. Certificates are made with
//! openssl in each test's own home.

use rqmail_tests::fakes::checkpassword;
use rqmail_tests::net::LoggedServer;
use rqmail_tests::{
    Home, KillOnDrop, Smtp, bin, certs, free_port, is_root, python, run_with_input, tool, user_ids,
    wait_for_port,
};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Helpers

pub(crate) use rqmail_tests::certs::{Key, tls_home};

/// The arguments that turn SMTP AUTH on: hostname, checkpassword, subprogram.
fn auth_args(home: &Home) -> Vec<String> {
    vec![
        "testhost.example".to_string(),
        checkpassword(home.path()).display().to_string(),
        "/bin/true".to_string(),
    ]
}

/// qmail-smtpd under tcpserver on 127.0.0.1, its descriptor 2 in smtpd.log of the home.
struct Server;

impl Server {
    fn start(home: &Home, env: &[(&str, &str)], args: &[String]) -> LoggedServer {
        let smtpd = bin("qmail-smtpd");
        let mut program = vec![smtpd.as_os_str()];
        program.extend(args.iter().map(std::ffi::OsStr::new));
        let log = home.path().join("smtpd.log");
        LoggedServer::start(home.path(), env, &[], &program, log, None)
    }
}

/// Runs a Python script with arguments; returns (success, stdout, stderr).
pub(crate) fn py(script: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs swaks against the server; returns (success, transcript).
fn swaks(port: u16, extra: &[&str]) -> (bool, String) {
    let out = Command::new(tool("swaks"))
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--from",
            "sender@client.example",
            "--ehlo",
            "client.example",
        ])
        .args(["--timeout", "30"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("swaks");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The body of the only queued message, from qmail-smtpd's Received line on.
fn only_message(home: &Home) -> String {
    let q = home.queued();
    assert_eq!(q.len(), 1, "messages queued");
    String::from_utf8_lossy(q[0].body_after_received()).into_owned()
}

/// The Received line qmail-smtpd wrote (both of its lines).
fn received(body: &str) -> String {
    body.lines().take(2).collect::<Vec<_>>().join("\n")
}

/// qmail-smtpd on pipes with the home's environment plus `env`.
fn dialogue(
    home: &Home,
    env: &[(&str, &str)],
    args: &[String],
    input: &str,
) -> (i32, String, String) {
    let mut c = home.cmd("qmail-smtpd");
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let (code, out, err) = run_with_input(c, input.as_bytes());
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Python: the ssl context trusting `cert`.
const PY_CTX: &str = r#"
import smtplib, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
port = int(sys.argv[1])
"#;

// ---------------------------------------------------------------------------------------
// STARTTLS

#[test]
fn ehlo_offers_starttls_first_and_deny_tls_hides_it() {
    let (home, _) = tls_home(Key::Ec);
    let (code, out, _) = dialogue(&home, &[], &[], "EHLO c\r\nQUIT\r\n");
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "220 testhost.example ESMTP\r\n250-testhost.example\r\n250-STARTTLS\r\n250-PIPELINING\r\n250 8BITMIME\r\n221 testhost.example\r\n"
    );
    // STARTTLS is never the last line, whatever else is listed
    home.control("databytes", "5000\n");
    let (_, out, _) = dialogue(&home, &[], &auth_args(&home), "EHLO c\r\n");
    assert!(
        out.ends_with("250-testhost.example\r\n250-STARTTLS\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 5000\r\n"),
        "{out}"
    );
    // DENY_TLS (any value, even empty): neither offered nor accepted
    for v in ["", "1"] {
        let (_, out, _) = dialogue(&home, &[("DENY_TLS", v)], &[], "EHLO c\r\nSTARTTLS\r\n");
        assert!(!out.contains("STARTTLS"), "{out}");
        assert!(
            out.ends_with("250 SIZE 5000\r\n502 unimplemented (#5.5.1)\r\n"),
            "{out}"
        );
    }
    // STARTTLS takes no parameters
    let (_, out, _) = dialogue(&home, &[], &[], "STARTTLS now\r\nNOOP\r\n");
    assert!(
        out.ends_with("501 STARTTLS takes no parameters (#5.5.4)\r\n250 ok\r\n"),
        "{out}"
    );
}

#[test]
fn smtplib_starttls_delivers_and_received_names_tls() {
    let (home, cert) = tls_home(Key::Ec);
    let srv = Server::start(&home, &[], &[]);
    let script = format!(
        "{PY_CTX}{}",
        r#"
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30)
s.ehlo()
print("before", s.has_extn("starttls"))
code, msg = s.starttls(context=ctx)
print(code, msg.decode())
print(s.sock.version(), s.sock.cipher()[0])
s.ehlo()
print("after", s.has_extn("starttls"))
print("refused", s.sendmail("a@client.example", ["b@d.example"], "Subject: t\r\n\r\nsecret\r\n"))
print(s.quit())
"#
    );
    let (ok, out, err) = py(
        &script,
        &[&srv.port.to_string(), cert.to_str().expect("path")],
    );
    assert!(ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "before True");
    assert_eq!(lines[1], "220 ready for tls");
    assert_eq!(lines[2], "TLSv1.3 TLS_AES_256_GCM_SHA384");
    assert_eq!(lines[3], "after False");
    assert_eq!(lines[4], "refused {}");
    assert_eq!(lines[5], "(221, b'testhost.example')");
    let body = only_message(&home);
    assert!(
        received(&body).starts_with("Received: from unknown (HELO client.example) (127.0.0.1)\n  by testhost.example with ESMTPS (TLSv1.3 TLS_AES_256_GCM_SHA384 encrypted); "),
        "{body}"
    );
    assert!(body.ends_with("\nSubject: t\n\nsecret\n"), "{body}");
}

#[test]
fn openssl_s_client_starttls_with_tls12_and_rsa_and_ciphers() {
    let (home, _) = tls_home(Key::Rsa);
    home.control(
        "tlsserverciphers",
        "HIGH:!aNULL:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305\n",
    );
    let srv = Server::start(&home, &[], &[]);
    let run = |versions: &[&str]| {
        let mut c = Command::new(tool("openssl"));
        c.args([
            "s_client",
            "-starttls",
            "smtp",
            "-crlf",
            "-quiet",
            "-connect",
        ])
        .arg(format!("127.0.0.1:{}", srv.port))
        .args(versions)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("s_client");
        let mut stdin = child.stdin.take().expect("stdin");
        // One line at a time, as a person would type (s_client reads stdin as it comes).
        let t = std::thread::spawn(move || {
            for l in [
                "EHLO client.example",
                "MAIL FROM:<a@client.example>",
                "RCPT TO:<b@d.example>",
                "DATA",
                "Subject: s_client",
                "",
                "hello",
                ".",
                "QUIT",
            ] {
                std::thread::sleep(Duration::from_millis(150));
                if writeln!(stdin, "{l}").is_err() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        });
        let out = child.wait_with_output().expect("s_client output");
        t.join().expect("writer");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (_, out) = run(&["-tls1_2"]);
    assert!(out.contains("250 ok"), "{out}");
    assert!(out.contains("221 testhost.example"), "{out}");
    let body = only_message(&home);
    // the first suite of the server's list (the client prefers CHACHA20-POLY1305)
    assert!(
        received(&body).contains("with ESMTPS (TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 encrypted); "),
        "{body}"
    );
    // TLS 1.1 and older are not spoken (the client is allowed to, at security level 0)
    let (_, out) = run(&["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!out.contains("250 ok"), "{out}");
    assert!(
        srv.log().contains("STARTTLS: TLS handshake failed"),
        "{}",
        srv.log()
    );
    assert_eq!(home.queued().len(), 1);
}

/// The server's order of preference wins over the client's, also without
/// tlsserverciphers (testssl's "Has server cipher order?"): the client offers the
/// suites in the reverse of rustls' order and gets the server's first choice.
#[test]
fn server_cipher_order_wins_over_the_clients() {
    let (home, _) = tls_home(Key::Rsa);
    let srv = Server::start(&home, &[], &[]);
    let negotiated = |args: &[&str]| {
        let out = Command::new(tool("openssl"))
            .args(["s_client", "-brief", "-starttls", "smtp", "-connect"])
            .arg(format!("127.0.0.1:{}", srv.port))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("s_client");
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("Ciphersuite: "))
            .unwrap_or_else(|| panic!("no Ciphersuite line: {text}"))
            .trim()
            .to_string()
    };
    let tls13 = [
        "-tls1_3",
        "-ciphersuites",
        "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
    ];
    assert_eq!(negotiated(&tls13), "TLS_AES_256_GCM_SHA384");
    let tls12 = [
        "-tls1_2",
        "-cipher",
        "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
    ];
    assert_eq!(negotiated(&tls12), "ECDHE-RSA-AES256-GCM-SHA384");
    // With a list, the list's order: its first suite, though the client offers it last.
    home.control(
        "tlsserverciphers",
        "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256\n",
    );
    let tls12 = [
        "-tls1_2",
        "-cipher",
        "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256",
    ];
    assert_eq!(negotiated(&tls12), "ECDHE-RSA-AES128-GCM-SHA256");
    let tls13 = [
        "-tls1_3",
        "-ciphersuites",
        "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
    ];
    assert_eq!(negotiated(&tls13), "TLS_AES_128_GCM_SHA256");
}

#[test]
fn swaks_tls_delivers() {
    let (home, _) = tls_home(Key::Ec);
    let srv = Server::start(&home, &[], &[]);
    let (ok, out) = swaks(srv.port, &["--to", "rcpt@d.example", "--tls"]);
    assert!(ok, "{out}");
    assert!(out.contains("<-  220 ready for tls"), "{out}");
    assert!(out.contains("=== TLS started with cipher TLSv1.3"), "{out}");
    let body = only_message(&home);
    assert!(received(&body).contains(" with ESMTPS (TLSv1."), "{body}");
}

/// Python: a raw STARTTLS whose first line after the handshake is printed.
const PY_INJECT: &str = r#"
def line(sock):
    b = b""
    while not b.endswith(b"\n"):
        c = sock.recv(1)
        if not c:
            break
        b += c
    return b.decode().rstrip("\r\n")

def reply(sock):
    out = []
    while True:
        l = line(sock)
        out.append(l)
        if len(l) < 4 or l[3] != "-":
            return out

s = socket.create_connection(("127.0.0.1", port), timeout=30)
print(reply(s))
s.sendall(b"EHLO client.example\r\n")
reply(s)
s.sendall(b"MAIL FROM:<early@client.example>\r\n")
print(reply(s))
s.sendall(sys.argv[3].encode().replace(b"|", b"\r\n"))
print(reply(s))
t = ctx.wrap_socket(s, server_hostname="testhost.example")
t.sendall(b"NOOP\r\n")
print(reply(t))
t.sendall(b"RCPT TO:<x@d.example>\r\n")
print(reply(t))
t.sendall(b"MAIL FROM:<late@client.example>\r\n")
print(reply(t))
t.sendall(b"EHLO second.example\r\n")
print(reply(t))
t.sendall(b"STARTTLS\r\n")
print(reply(t))
t.sendall(b"RCPT TO:<x@d.example>\r\n")
print(reply(t))
"#;

#[test]
fn starttls_command_injection_is_discarded() {
    // CVE-2011-0411: commands pipelined in plaintext behind STARTTLS must not be
    // answered inside TLS.
    let (home, cert) = tls_home(Key::Ec);
    let srv = Server::start(&home, &[], &[]);
    let script = format!("{PY_CTX}{PY_INJECT}");
    let (ok, out, err) = py(
        &script,
        &[
            &srv.port.to_string(),
            cert.to_str().expect("path"),
            "STARTTLS|RSET|MAIL FROM:<evil@client.example>|RCPT TO:<victim@d.example>|",
        ],
    );
    assert!(ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "['220 testhost.example ESMTP']");
    assert_eq!(lines[1], "['250 ok']");
    assert_eq!(lines[2], "['220 ready for tls']");
    // The first reply inside TLS answers NOOP: RSET, MAIL and RCPT were thrown away.
    assert_eq!(lines[3], "['250 ok']");
    // State was reset: neither the early MAIL nor the injected one is in force, and a
    // new EHLO is wanted before MAIL.
    assert_eq!(lines[4], "['503 MAIL first (#5.5.1)']");
    assert_eq!(lines[5], "['503 EHLO first (#5.5.1)']");
    // No STARTTLS in the new EHLO reply, and a second STARTTLS is refused.
    assert_eq!(
        lines[6],
        "['250-testhost.example', '250-PIPELINING', '250 8BITMIME']"
    );
    assert_eq!(lines[7], "['502 unimplemented (#5.5.1)']");
    assert_eq!(lines[8], "['503 MAIL first (#5.5.1)']");
    assert!(home.queued().is_empty());
}

#[test]
fn starttls_state_reset_and_new_helo_in_received() {
    let (home, cert) = tls_home(Key::Ec);
    let srv = Server::start(&home, &[], &[]);
    let script = format!(
        "{PY_CTX}{}",
        r#"
s = smtplib.SMTP("127.0.0.1", port, local_hostname="first.example", timeout=30)
s.ehlo()
print(s.docmd("MAIL", "FROM:<before@client.example>"))
print(s.docmd("RCPT", "TO:<before@d.example>"))
s.starttls(context=ctx)
print(s.docmd("DATA"))
print(s.docmd("MAIL", "FROM:<x@y>"))
s.ehlo("second.example")
print(s.docmd("DATA"))
print(s.sendmail("after@client.example", ["after@d.example"], "Subject: r\r\n\r\nx\r\n"))
s.quit()
"#
    );
    let (ok, out, err) = py(
        &script,
        &[&srv.port.to_string(), cert.to_str().expect("path")],
    );
    assert!(ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "(250, b'ok')",
            "(250, b'ok')",
            "(503, b'MAIL first (#5.5.1)')",
            "(503, b'EHLO first (#5.5.1)')",
            "(503, b'MAIL first (#5.5.1)')",
            "{}"
        ]
    );
    let q = home.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender(), b"after@client.example");
    assert_eq!(q[0].recipients(), vec![b"after@d.example".to_vec()]);
    let body = only_message(&home);
    assert!(
        body.starts_with("Received: from unknown (HELO second.example) (127.0.0.1)\n"),
        "{body}"
    );
}

#[test]
fn pipelined_plaintext_after_starttls_breaks_the_handshake_not_the_rules() {
    // The client sends STARTTLS and, without waiting, more plaintext: either it arrives
    // with STARTTLS (and is discarded) or later, where it is not TLS and the handshake
    // fails. In no case is it answered inside TLS.
    let (home, cert) = tls_home(Key::Ec);
    let srv = Server::start(&home, &[], &[]);
    let script = format!(
        "{PY_CTX}{}",
        r#"
import time
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.recv(100)
s.sendall(b"STARTTLS\r\n")
time.sleep(0.2)
s.sendall(b"RSET\r\n")
got = b""
while not got.endswith(b"\n"):
    got += s.recv(1)
print(got.decode().strip())
try:
    t = ctx.wrap_socket(s, server_hostname="testhost.example")
    t.sendall(b"NOOP\r\n")
    print("inside", t.recv(100))
except (ssl.SSLError, OSError) as e:
    print("handshake failed")
"#
    );
    let (ok, out, err) = py(
        &script,
        &[&srv.port.to_string(), cert.to_str().expect("path")],
    );
    assert!(ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "220 ready for tls");
    assert!(
        lines[1] == "handshake failed" || lines[1] == "inside b'250 ok\\r\\n'",
        "{out}"
    );
}

#[test]
fn broken_certificate_gives_454_and_plaintext_goes_on() {
    let home = Home::new();
    home.control(
        "servercert.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    );
    let (code, out, err) = dialogue(
        &home,
        &[],
        &[],
        "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
    );
    assert_eq!(code, 0);
    assert!(out.contains("250-STARTTLS\r\n"), "{out}");
    assert!(
        out.contains("454 TLS not available due to temporary reason (#4.3.0)\r\n250 ok\r\n"),
        "{out}"
    );
    assert!(err.contains("servercert.pem"), "{err}");
}

#[test]
fn a_plaintext_session_never_reads_the_key() {
    // servercert.pem is a FIFO: opening it for reading waits for a writer, so a
    // qmail-smtpd that read the key before its greeting would hang here. The key is read
    // when TLS starts, which this session never asks for.
    let home = Home::new();
    let pem = home.path().join("control/servercert.pem");
    nix::unistd::mkfifo(&pem, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Hang guard: after 20 s a writer opens the FIFO (only if a reader waits on it), which
    // lets a blocked qmail-smtpd go on, and the test fails.
    let watchdog = {
        let (done, pem) = (done.clone(), pem.clone());
        std::thread::spawn(move || {
            for _ in 0..200 {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&pem)
                .is_ok()
        })
    };
    let (code, out, _) = dialogue(
        &home,
        &[],
        &[],
        "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
    );
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        !watchdog.join().expect("watchdog"),
        "qmail-smtpd opened servercert.pem"
    );
    assert_eq!(code, 0);
    assert!(out.contains("250-STARTTLS\r\n"), "{out}");
    assert!(out.contains("250 ok "), "{out}");
    assert!(out.ends_with("221 testhost.example\r\n"), "{out}");
}

// ---------------------------------------------------------------------------------------
// SMTPS

#[test]
fn smtps_on_an_unusual_port_because_smtps_is_set() {
    let (home, cert) = tls_home(Key::Ec);
    let srv = Server::start(&home, &[("SMTPS", "1")], &[]);
    let script = format!(
        "{PY_CTX}{}",
        r#"
s = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.example", timeout=30, context=ctx)
code, msg = s.ehlo()
print(code, msg.decode().replace("\n", "|"))
print(s.sendmail("a@client.example", ["b@d.example"], "Subject: smtps\r\n\r\nx\r\n"))
print(s.quit())
"#
    );
    let (ok, out, err) = py(
        &script,
        &[&srv.port.to_string(), cert.to_str().expect("path")],
    );
    assert!(ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    // already TLS: no STARTTLS offered
    assert_eq!(lines[0], "250 testhost.example|PIPELINING|8BITMIME");
    assert_eq!(lines[1], "{}");
    let body = only_message(&home);
    assert!(received(&body).contains(" with ESMTPS (TLSv1.3 "), "{body}");

    // swaks --tlsc (TLS on connect) too
    let (ok, out) = swaks(srv.port, &["--to", "c@d.example", "--tlsc"]);
    assert!(ok, "{out}");
    assert_eq!(home.queued().len(), 2);

    // a plaintext client gets no plaintext greeting
    let mut s = TcpStream::connect(("127.0.0.1", srv.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(b"EHLO plain\r\n").expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("220 "), "{buf:?}");
}

#[test]
fn no_smtps_without_the_variable_whatever_the_port() {
    let (home, _) = tls_home(Key::Ec);
    // The local port 465 does not turn TLS on; neither does an empty SMTPS.
    for env in [
        vec![("TCPLOCALPORT", "465")],
        vec![("TCPLOCALPORT", "465"), ("SMTPS", "")],
    ] {
        let (code, out, _) = dialogue(&home, &env, &[], "QUIT\r\n");
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "220 testhost.example ESMTP\r\n221 testhost.example\r\n"
        );
    }
}

#[test]
fn smtps_without_a_certificate_says_nothing_in_plaintext() {
    let home = Home::new();
    let (code, out, err) = dialogue(&home, &[("SMTPS", "1")], &[], "EHLO x\r\nQUIT\r\n");
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(err.contains("servercert.pem"), "{err}");
}

// ---------------------------------------------------------------------------------------
// SMTP AUTH

#[test]
fn auth_is_offered_only_inside_tls() {
    let (home, cert) = tls_home(Key::Ec);
    let args = auth_args(&home);
    // plaintext: not listed, and refused with 538
    let (_, out, _) = dialogue(
        &home,
        &[],
        &args,
        "EHLO c\r\nAUTH PLAIN AGpvZQBzZWNyZXQ=\r\nAUTH LOGIN\r\n",
    );
    assert!(!out.contains("AUTH"), "{out}");
    assert!(
        out.ends_with(
            "538 auth not available without TLS (#5.3.3)\r\n538 auth not available without TLS (#5.3.3)\r\n"
        ),
        "{out}"
    );
    // without the checkpassword arguments AUTH is an unknown command, as in netqmail
    let (_, out, _) = dialogue(&home, &[("FORCETLS", "0")], &[], "AUTH PLAIN x\r\n");
    assert!(out.ends_with("502 unimplemented (#5.5.1)\r\n"), "{out}");
    // SMTPAUTH=- turns it off
    let (_, out, _) = dialogue(
        &home,
        &[("FORCETLS", "0"), ("SMTPAUTH", "-")],
        &args,
        "EHLO c\r\nAUTH PLAIN x\r\n",
    );
    assert!(
        !out.contains("250-AUTH") && !out.contains("250 AUTH"),
        "{out}"
    );
    assert!(out.ends_with("502 unimplemented (#5.5.1)\r\n"), "{out}");
    // inside TLS it is listed (last) and works
    let srv = Server::start(&home, &[], &args);
    let script = format!(
        "{PY_CTX}{}",
        r#"
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30)
s.ehlo()
print("plain", s.has_extn("auth"))
s.starttls(context=ctx)
code, msg = s.ehlo()
print(msg.decode().split("\n")[-1])
print(s.login("joe", "secret"))
"#
    );
    let (ok, out, err) = py(
        &script,
        &[&srv.port.to_string(), cert.to_str().expect("path")],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "plain False",
            "AUTH LOGIN PLAIN",
            "(235, b'ok, go ahead (#2.0.0)')"
        ]
    );
}

#[test]
fn smtplib_login_allows_relaying_and_names_the_user() {
    let (home, cert) = tls_home(Key::Ec);
    home.control("rcpthosts", "testhost.example\n");
    let srv = Server::start(&home, &[], &auth_args(&home));
    let script = format!(
        "{PY_CTX}{}",
        r#"
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30)
s.starttls(context=ctx)
s.ehlo()
print(s.docmd("MAIL", "FROM:<joe@client.example>"))
print(s.docmd("RCPT", "TO:<far@remote.example>"))
s.rset()
print(s.login("joe", "secret"))
print(s.sendmail("joe@client.example", ["far@remote.example", "local@testhost.example"], "Subject: relay\r\n\r\nx\r\n"))
print(s.quit())
"#
    );
    let (ok, out, err) = py(
        &script,
        &[&srv.port.to_string(), cert.to_str().expect("path")],
    );
    assert!(ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "(250, b'ok')");
    assert_eq!(
        lines[1],
        "(553, b\"sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\")"
    );
    assert_eq!(lines[2], "(235, b'ok, go ahead (#2.0.0)')");
    assert_eq!(lines[3], "{}");
    let q = home.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(
        q[0].recipients(),
        vec![
            b"far@remote.example".to_vec(),
            b"local@testhost.example".to_vec()
        ]
    );
    let body = only_message(&home);
    assert!(
        received(&body).starts_with(
            "Received: from unknown (HELO client.example) (joe@127.0.0.1)\n  by testhost.example with ESMTPSA (TLSv1.3 TLS_AES_256_GCM_SHA384 encrypted, authenticated); "
        ),
        "{body}"
    );
    // smtplib prefers PLAIN when CRAM-MD5 is not offered
    let log = srv.wait_log("auth-success");
    assert!(
        log.contains("qmail-smtpd: auth: auth-success type=plain user=<joe> remote=127.0.0.1\n"),
        "{log}"
    );
    // the checkpassword program got a timestamp of the CRAM-MD5 challenge's form
    let fields = fs::read_to_string(home.path().join("checkpw.log")).expect("checkpw.log");
    let fields: Vec<&str> = fields.trim_end().split(' ').collect();
    let (user, ts) = (fields[0], fields[fields.len() - 1]);
    assert_eq!(user, "joe");
    assert!(
        ts.starts_with('<') && ts.ends_with("@testhost.example>") && ts.contains('.'),
        "{ts}"
    );
}

#[test]
fn wrong_passwords_are_refused_and_limited() {
    let (home, cert) = tls_home(Key::Ec);
    home.control("rcpthosts", "testhost.example\n");
    let srv = Server::start(&home, &[], &auth_args(&home));
    let script = format!(
        "{PY_CTX}{}",
        r#"
import base64
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30)
s.starttls(context=ctx)
s.ehlo()
for pw in ("wrong", "Secret"):
    print(s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0joe\0" + pw.encode()).decode()))
print(s.docmd("MAIL", "FROM:<joe@client.example>"))
print(s.docmd("RCPT", "TO:<far@remote.example>"))
s.rset()
print(s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0nobody\0secret").decode()))
try:
    print(s.docmd("NOOP"))
except smtplib.SMTPServerDisconnected:
    print("closed")
"#
    );
    let (ok, out, err) = py(
        &script,
        &[&srv.port.to_string(), cert.to_str().expect("path")],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "(535, b'authorization failed (#5.7.0)')",
            "(535, b'authorization failed (#5.7.0)')",
            "(250, b'ok')",
            "(553, b\"sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\")",
            "(421, b'too many authentication failures (#4.7.0)')",
            "closed"
        ]
    );
    let log = srv.wait_log("user=<nobody>");
    assert_eq!(log.matches("auth-failed type=plain").count(), 3, "{log}");
    assert!(!log.contains("auth-success"), "{log}");
    assert!(home.queued().is_empty());
}

#[test]
fn swaks_auth_plain_and_login() {
    let (home, _) = tls_home(Key::Ec);
    home.control("rcpthosts", "testhost.example\n");
    let srv = Server::start(&home, &[], &auth_args(&home));
    for mech in ["PLAIN", "LOGIN"] {
        let (ok, out) = swaks(
            srv.port,
            &[
                "--to",
                "far@remote.example",
                "--tls",
                "--auth",
                mech,
                "--auth-user",
                "joe",
                "--auth-password",
                "secret",
            ],
        );
        assert!(ok, "{out}");
        assert!(out.contains("<~  235 ok, go ahead (#2.0.0)"), "{out}");
    }
    let (ok, out) = swaks(
        srv.port,
        &[
            "--to",
            "far@remote.example",
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "joe",
            "--auth-password",
            "bad",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("<~* 535 authorization failed (#5.7.0)"),
        "{out}"
    );
    assert_eq!(home.queued().len(), 2);
    let log = srv.wait_log("type=login user=<joe>");
    assert!(log.contains("auth-success type=login user=<joe>"), "{log}");
    assert!(log.contains("auth-failed type=login user=<joe>"), "{log}");
}

#[test]
fn auth_in_plaintext_when_forcetls_is_0() {
    let home = Home::new();
    home.control("rcpthosts", "testhost.example\n");
    let srv = Server::start(&home, &[("FORCETLS", "0")], &auth_args(&home));
    let (ok, out) = swaks(
        srv.port,
        &[
            "--to",
            "far@remote.example",
            "--auth",
            "LOGIN",
            "--auth-user",
            "joe",
            "--auth-password",
            "secret",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("<-  250 AUTH LOGIN PLAIN"), "{out}");
    let body = only_message(&home);
    assert!(
        received(&body).contains("(joe@127.0.0.1)\n  by testhost.example with ESMTPA; "),
        "{body}"
    );
}

#[test]
fn cram_md5_when_smtpauth_asks_for_it() {
    let (home, cert) = tls_home(Key::Ec);
    home.control("rcpthosts", "testhost.example\n");
    let srv = Server::start(&home, &[("SMTPAUTH", "+cram")], &auth_args(&home));
    let script = format!(
        "{PY_CTX}{}",
        r#"
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30)
s.starttls(context=ctx)
code, msg = s.ehlo()
print(msg.decode().split("\n")[-1])
print(s.login("joe", "secret"))
print(s.sendmail("joe@client.example", ["far@remote.example"], "Subject: cram\r\n\r\nx\r\n"))
"#
    );
    let (ok, out, err) = py(
        &script,
        &[&srv.port.to_string(), cert.to_str().expect("path")],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "AUTH LOGIN PLAIN CRAM-MD5",
            "(235, b'ok, go ahead (#2.0.0)')",
            "{}"
        ]
    );
    // smtplib prefers CRAM-MD5: the program got the digest and the challenge
    let log = srv.wait_log("auth-success");
    assert!(
        log.contains("auth-success type=cram-md5 user=<joe>"),
        "{log}"
    );
    assert_eq!(home.queued().len(), 1);
}

#[test]
fn auth_required_for_submission() {
    let home = Home::new();
    let args = auth_args(&home);
    let env = [("SMTPAUTH", "!"), ("FORCETLS", "0")];
    let (_, out, _) = dialogue(
        &home,
        &env,
        &args,
        "EHLO c\r\nMAIL FROM:<joe@client.example>\r\nAUTH PLAIN AGpvZQBzZWNyZXQ=\r\nMAIL FROM:<joe@client.example>\r\nRCPT TO:<x@anywhere.example>\r\n",
    );
    assert!(
        out.ends_with(
            "250 AUTH LOGIN PLAIN\r\n530 authentication required (#5.7.1)\r\n235 ok, go ahead (#2.0.0)\r\n250 ok\r\n250 ok\r\n"
        ),
        "{out}"
    );
}

#[test]
fn auth_exchange_replies() {
    let home = Home::new();
    let args = auth_args(&home);
    let env = [("FORCETLS", "0")];
    let (_, out, _) = dialogue(
        &home,
        &env,
        &args,
        "AUTH DIGEST-MD5\r\nAUTH CRAM-MD5\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\nnot base64!\r\n\
         AUTH LOGIN\r\nam9l\r\n*\r\nAUTH LOGIN am9l\r\n\r\nAUTH PLAIN dGVtcGZhaWwAdGVtcGZhaWwAeA==\r\n\
         MAIL FROM:<a@b>\r\nAUTH PLAIN AGpvZQBzZWNyZXQ=\r\nRSET\r\nAUTH PLAIN YWRtaW4Aam9lAHNlY3JldA==\r\n\
         AUTH LOGIN am9l\r\nc2VjcmV0\r\nAUTH PLAIN AGpvZQBzZWNyZXQ=\r\nNOOP\r\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "220 testhost.example ESMTP",
            "504 auth type unimplemented (#5.5.1)",
            // CRAM-MD5 only when SMTPAUTH asks for it
            "504 auth type unimplemented (#5.5.1)",
            "334 ",
            "501 auth exchange cancelled (#5.0.0)",
            "334 ",
            "501 malformed auth input (#5.5.4)",
            "334 VXNlcm5hbWU6",
            "334 UGFzc3dvcmQ6",
            "501 auth exchange cancelled (#5.0.0)",
            "334 UGFzc3dvcmQ6",
            "501 malformed auth input (#5.5.4)",
            // the checkpassword program exits 111
            "454 temporary authentication failure (#4.3.0)",
            "250 ok",
            "503 no auth during mail transaction (#5.5.0)",
            "250 flushed",
            // an authorization identity that is not the user: refused without asking
            "535 authorization failed (#5.7.0)",
            "334 UGFzc3dvcmQ6",
            "235 ok, go ahead (#2.0.0)",
            "503 you're already authenticated (#5.5.0)",
            "250 ok",
        ]
    );
    // a checkpassword program that cannot be run
    let bad = vec![
        "testhost.example".to_string(),
        "/nonexistent/checkpassword".to_string(),
        "/bin/true".to_string(),
    ];
    let (_, out, err) = dialogue(&home, &env, &bad, "AUTH PLAIN AGpvZQBzZWNyZXQ=\r\n");
    assert!(
        out.ends_with("454 oops, child won't start and I can't auth (#4.3.0)\r\n"),
        "{out}"
    );
    assert!(err.contains("/nonexistent/checkpassword"), "{err}");
}

// ---------------------------------------------------------------------------------------
// SIZE and IPv6

#[test]
fn size_is_advertised_and_enforced_at_mail() {
    let home = Home::new();
    home.control("databytes", "1000\n");
    let (code, out, _) = dialogue(
        &home,
        &[],
        &[],
        "EHLO c\r\nMAIL FROM:<a@b> SIZE=1001\r\nRCPT TO:<c@d>\r\nMAIL FROM:<a@b> BODY=8BITMIME SIZE=1000\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1..9],
        [
            "250-testhost.example",
            "250-PIPELINING",
            "250-8BITMIME",
            "250 SIZE 1000",
            "552 sorry, that message size exceeds my databytes limit (#5.3.4)",
            "503 MAIL first (#5.5.1)",
            "250 ok",
            "250 ok",
        ]
    );
    assert_eq!(home.queued().len(), 1);
    // DATABYTES=0: no limit, no SIZE, any SIZE= accepted
    let (_, out, _) = dialogue(
        &home,
        &[("DATABYTES", "0")],
        &[],
        "EHLO c\r\nMAIL FROM:<a@b> SIZE=99999999999\r\n",
    );
    assert!(!out.contains("SIZE"), "{out}");
    assert!(out.ends_with("250 8BITMIME\r\n250 ok\r\n"), "{out}");
}

#[test]
fn ipv6_literals_in_helo_and_rcpt() {
    let home = Home::new();
    home.control("localiphost", "lip.example\n");
    home.control("rcpthosts", "lip.example\n");
    let (code, out, _) = dialogue(
        &home,
        &[
            ("TCPREMOTEIP", "2001:db8::7"),
            ("TCPREMOTEHOST", "client.example"),
        ],
        &[],
        "HELO [IPv6:2001:db8::7]\r\nMAIL FROM:<a@[IPv6:2001:db8::7]>\r\nRCPT TO:<u@[IPv6:::1]>\r\nRCPT TO:<u@[IPv6:2001:db8::99]>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "250 ok\r\n553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n354"
        ),
        "{out}"
    );
    let q = home.queued();
    assert_eq!(q[0].sender(), b"a@[IPv6:2001:db8::7]");
    assert_eq!(q[0].recipients(), vec![b"u@lip.example".to_vec()]);
    let body = only_message(&home);
    assert!(
        body.starts_with(
            "Received: from client.example (HELO ?IPv6:2001:db8::7?) (2001:db8::7)\n  by unknown with SMTP; "
        ),
        "{body}"
    );
}

#[test]
fn ipv6_connection_through_tcp_env() {
    // An IPv6 client reaches qmail-smtpd through tcp-env (as under xinetd or a systemd
    // socket unit): TCPREMOTEIP in IPv6 form in the Received field.
    let home = Home::new();
    let l = TcpListener::bind("[::1]:0").expect("listen on ::1");
    let client = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (server, _) = l.accept().expect("accept");
    let out = server.try_clone().expect("dup");
    let mut c = home.cmd("tcp-env");
    c.args(["-R", "-H", "-l", "mx.example"])
        .arg(bin("qmail-smtpd"))
        .stdin(Stdio::from(OwnedFd::from(server)))
        .stdout(Stdio::from(OwnedFd::from(out)))
        .stderr(Stdio::null());
    let mut child = KillOnDrop(c.spawn().expect("tcp-env"));
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut s = Smtp::new(client);
    assert_eq!(s.reply(), ["220 testhost.example ESMTP"]);
    s.cmd("HELO six.example");
    s.cmd("MAIL FROM:<a@b>");
    s.cmd("RCPT TO:<c@d>");
    assert_eq!(s.cmd("DATA"), ["354 go ahead"]);
    assert!(s.cmd("x\r\n.")[0].starts_with("250 ok"));
    assert_eq!(s.cmd("QUIT"), ["221 testhost.example"]);
    let _ = child.0.wait();
    let body = only_message(&home);
    assert!(
        body.starts_with(
            "Received: from unknown (HELO six.example) (::1)\n  by mx.example with SMTP; "
        ),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------
// Recipient validation

/// The account recipient validation runs as, and what it looks like: (uid, gid, name,
/// home directory). As root that is nobody (single-user mode for a user who is not
/// qmaild: the accounts are nobody itself, with $HOME, and alias); otherwise the invoking
/// user.
struct Account {
    uid: u32,
    gid: u32,
    name: String,
    dir: PathBuf,
}

fn account(home: &Home) -> Account {
    let (uid, gid) = if is_root() {
        user_ids("nobody")
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    };
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .expect("getpwuid")
        .expect("account")
        .name;
    let dir = home.path().join("userhome");
    fs::create_dir_all(&dir).expect("mkdir");
    if is_root() {
        home.chown_all(uid, gid);
    }
    Account {
        uid,
        gid,
        name,
        dir,
    }
}

/// qmail-smtpd as that account (through setpriv when it is not us), HOME its home.
fn dialogue_as(home: &Home, a: &Account, env: &[(&str, &str)], input: &str) -> String {
    let (out, err) = dialogue_as_logged(home, a, env, input);
    assert!(err.is_empty(), "{err}");
    out
}

/// [`dialogue_as`], with what qmail-smtpd wrote on descriptor 2.
fn dialogue_as_logged(
    home: &Home,
    a: &Account,
    env: &[(&str, &str)],
    input: &str,
) -> (String, String) {
    let mut c = if a.uid == nix::unistd::getuid().as_raw() {
        home.cmd("qmail-smtpd")
    } else {
        let mut c = Command::new(tool("setpriv"));
        c.arg(format!("--reuid={}", a.uid))
            .arg(format!("--regid={}", a.gid))
            .arg("--clear-groups")
            .arg(bin("qmail-smtpd"))
            .env_clear()
            .env("QMAIL_HOME", home.path())
            .current_dir("/");
        c
    };
    c.env("HOME", &a.dir);
    for (k, v) in env {
        c.env(k, v);
    }
    let (_, out, err) = run_with_input(c, input.as_bytes());
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// The replies to one RCPT each, after MAIL.
fn rcpt_replies(home: &Home, a: &Account, env: &[(&str, &str)], rcpts: &[&str]) -> Vec<String> {
    let mut input = "MAIL FROM:<a@client.example>\r\n".to_string();
    for r in rcpts {
        input.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    let out = dialogue_as(home, a, env, &input);
    let lines: Vec<String> = out.lines().skip(2).map(str::to_string).collect();
    assert_eq!(lines.len(), rcpts.len(), "{out}");
    lines
}

fn touch(p: &Path) {
    fs::write(p, "").expect("touch");
}

const OK: &str = "250 ok";
const NO_MAILBOX: &str = "550 sorry, no mailbox here by that name (#5.1.1)";
const NOT_RCPTHOST: &str = "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)";

#[test]
fn unknown_local_recipients_get_550() {
    let home = Home::new();
    home.control("rcpthosts", "testhost.example\nvirt.example\n");
    let a = account(&home);
    let u = a.name.clone();
    home.control("virtualdomains", &format!("virt.example:{u}\n"));
    touch(&home.path().join("alias/.qmail-known"));
    touch(&a.dir.join(".qmail-ext"));
    touch(&a.dir.join(".qmail-list-default"));
    if is_root() {
        home.chown_all(a.uid, a.gid);
    }
    let rcpts = [
        format!("{u}@testhost.example"),
        format!("{u}-ext@TestHost.Example"),
        format!("{u}-other@testhost.example"),
        format!("{u}-list-anything@testhost.example"),
        "known@testhost.example".to_string(),
        "unknown@testhost.example".to_string(),
        "Postmaster@testhost.example".to_string(),
        "abuse@virt.example".to_string(),
        "ext@virt.example".to_string(),
        "box@virt.example".to_string(),
        "x@remote.example".to_string(),
        "postmaster".to_string(),
        "unknown".to_string(),
    ];
    let r: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    // off unless configured: everyone in rcpthosts is accepted, as by netqmail
    let got = rcpt_replies(&home, &a, &[], &r);
    assert_eq!(
        got,
        [OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, NOT_RCPTHOST, OK, OK]
    );
    home.control("checklocalrcpt", "1\n");
    let got = rcpt_replies(&home, &a, &[], &r);
    assert_eq!(
        got,
        [
            OK,           // the user: default delivery
            OK,           // .qmail-ext
            NO_MAILBOX,   // no .qmail-other, no .qmail-default
            OK,           // .qmail-list-default
            OK,           // alias/.qmail-known
            NO_MAILBOX,   // nothing in alias
            OK,           // always
            OK,           // always
            OK,           // virt.example:USER -> USER-ext -> .qmail-ext
            NO_MAILBOX,   // USER-box: no such file
            NOT_RCPTHOST, // unchanged
            OK,           // always
            NO_MAILBOX,   // envnoathost (me) is local: alias has no .qmail-unknown
        ]
    );
    // relay clients: nothing is validated, relaying as before
    let got = rcpt_replies(
        &home,
        &a,
        &[("RELAYCLIENT", "")],
        &["unknown@testhost.example", "x@remote.example"],
    );
    assert_eq!(got, [OK, OK]);
    // a -default file in alias's home catches everything else
    touch(&home.path().join("alias/.qmail-default"));
    let got = rcpt_replies(&home, &a, &[], &["unknown@testhost.example"]);
    assert_eq!(got, [OK]);
}

#[test]
fn users_cdb_decides_first_and_unsearchable_homes_accept() {
    let home = Home::new();
    home.control("rcpthosts", "testhost.example\n");
    home.control("checklocalrcpt", "1\n");
    let a = account(&home);
    let (u, d) = (&a.name, a.dir.display().to_string());
    fs::write(
        home.path().join("users/assign"),
        format!(
            "=someone:{u}:{uid}:{gid}:{d}:::\n+list-:{u}:{uid}:{gid}:{d}:-:lst-:\n.\n",
            uid = a.uid,
            gid = a.gid
        ),
    )
    .expect("assign");
    let st = home.cmd("qmail-newu").status().expect("qmail-newu");
    assert!(st.success());
    if is_root() {
        home.chown_all(a.uid, a.gid);
    }
    let got = rcpt_replies(
        &home,
        &a,
        &[],
        &[
            "someone@testhost.example",
            "list-foo@testhost.example",
            "stranger@testhost.example",
        ],
    );
    assert_eq!(got, [OK, NO_MAILBOX, NO_MAILBOX]);
    touch(&a.dir.join(".qmail-lst-default"));
    let got = rcpt_replies(&home, &a, &[], &["list-foo@testhost.example"]);
    assert_eq!(got, [OK]);
    // alias's home cannot be searched by this user: the answer is unknowable, so the
    // recipient is accepted (qmail-local would defer, not bounce)
    let alias = home.path().join("alias");
    fs::set_permissions(&alias, fs::Permissions::from_mode(0o000)).expect("chmod");
    let got = rcpt_replies(&home, &a, &[], &["stranger@testhost.example"]);
    fs::set_permissions(&alias, fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(got, [OK]);
}

/// The system user root-mode recipient validation must find, and its home.
const RCPT_USER: &str = "rqmrcpt";
const RCPT_USER_HOME: &str = "/var/tmp/rqmrcpt";
const RCPT_TEMP: &str = "451 unable to check recipient (#4.3.0)";

/// Root mode: qmail-smtpd as qmaild (as tcpserver -u qmaild runs it) asks bin/qmail-getpw,
/// which, run as qmaild, sees the system's accounts: a real user, its .qmail files, and
/// alias for the rest; never the single-user accounts.
#[test]
fn as_qmaild_validation_finds_system_users_through_qmail_getpw() {
    if !is_root() {
        eprintln!("as_qmaild_validation_finds_system_users_through_qmail_getpw: needs root");
        return;
    }
    let (uid, gid) = rqmail_tests::ensure_system_user(RCPT_USER, RCPT_USER_HOME);
    fs::create_dir_all(RCPT_USER_HOME).expect("mkdir");
    std::os::unix::fs::chown(RCPT_USER_HOME, Some(uid), Some(gid)).expect("chown");
    fs::set_permissions(RCPT_USER_HOME, fs::Permissions::from_mode(0o755)).expect("chmod");
    touch(&Path::new(RCPT_USER_HOME).join(".qmail-ext"));
    let _ = fs::remove_file(Path::new(RCPT_USER_HOME).join(".qmail-default"));
    let home = Home::new();
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    home.control("rcpthosts", "testhost.example\n");
    home.control("checklocalrcpt", "1\n");
    let (qd_uid, qd_gid) = user_ids("qmaild");
    let qmaild = Account {
        uid: qd_uid,
        gid: qd_gid,
        name: "qmaild".into(),
        dir: home.path().to_path_buf(),
    };
    let u = RCPT_USER;
    let rcpts = [
        format!("{u}@testhost.example"),
        format!("{u}-ext@testhost.example"),
        format!("{u}-none@testhost.example"),
        format!("{}@testhost.example", u.to_uppercase()),
    ];
    let r: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let got = rcpt_replies(&home, &qmaild, &[], &r);
    assert_eq!(got, [OK, OK, NO_MAILBOX, OK]);
    // qmail-getpw itself, as qmaild: the system's account (single-user mode would know
    // only qmaild and alias).
    let out = rqmail_tests::users::as_user(qd_uid, qd_gid, &bin("qmail-getpw"))
        .arg(format!("{u}-ext"))
        .env("QMAIL_HOME", home.path())
        .current_dir(home.path())
        .output()
        .expect("qmail-getpw");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{u}\0{uid}\0{gid}\0{RCPT_USER_HOME}\0-\0ext\0").into_bytes()
    );
}

/// When qmail-getpw gives no answer (it fails, crashes, cannot be run), the recipient
/// gets a temporary error and the session goes on; users/cdb's entries and postmaster
/// need no answer from it.
#[test]
fn recipient_check_without_qmail_getpw_answer_is_temporary() {
    let home = Home::new();
    home.control("rcpthosts", "testhost.example\n");
    home.control("checklocalrcpt", "1\n");
    let a = account(&home);
    let (u, d) = (&a.name, a.dir.display().to_string());
    fs::write(
        home.path().join("users/assign"),
        format!(
            "=someone:{u}:{uid}:{gid}:{d}:::\n.\n",
            uid = a.uid,
            gid = a.gid
        ),
    )
    .expect("assign");
    let st = home.cmd("qmail-newu").status().expect("qmail-newu");
    assert!(st.success());
    let getpw = home.path().join("bin/qmail-getpw");
    let rcpts = [
        "stranger@testhost.example",
        "someone@testhost.example",
        "postmaster@testhost.example",
    ];
    let mut input = "MAIL FROM:<a@client.example>\r\n".to_string();
    for r in rcpts {
        input.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    let expect = format!("250 ok\r\n{RCPT_TEMP}\r\n250 ok\r\n250 ok\r\n");
    for (script, why) in [
        ("exit 116", "qmail-getpw exited 116"),
        ("exit 111", "qmail-getpw exited 111"),
        ("kill -9 $$", "qmail-getpw crashed"),
        ("printf 'alias'", "qmail-getpw's answer is not six fields"),
        ("", "unable to run qmail-getpw"),
    ] {
        fs::remove_file(&getpw).expect("rm qmail-getpw");
        if !script.is_empty() {
            fs::write(&getpw, format!("#!/bin/sh\n{script}\n")).expect("write");
            fs::set_permissions(&getpw, fs::Permissions::from_mode(0o755)).expect("chmod");
            if is_root() {
                home.chown_all(a.uid, a.gid);
            }
        }
        let (out, err) = dialogue_as_logged(&home, &a, &[], &input);
        assert!(out.ends_with(&expect), "qmail-getpw: {script:?}: {out}");
        assert!(
            err.starts_with(&format!("qmail-smtpd: recipient check: {why}")),
            "qmail-getpw: {script:?}: {err}"
        );
    }
}

#[test]
fn validrcptto_cdb_lists_addresses_and_domains() {
    let home = Home::new();
    home.control(
        "rcpthosts",
        "testhost.example\nopen.example\nclosed.example\n",
    );
    control::write_cdb(
        &home.path().join("control/validrcptto.cdb"),
        &home.path().join("control/validrcptto.tmp"),
        [
            (&b"known@testhost.example"[..], &b""[..]),
            (b"@open.example", b""),
        ],
    )
    .expect("cdb");
    let a = account(&home);
    let got = rcpt_replies(
        &home,
        &a,
        &[],
        &[
            "Known@TestHost.example",
            "other@testhost.example",
            "anyone@open.example",
            "x@closed.example",
            "postmaster@closed.example",
            "x@remote.example",
        ],
    );
    assert_eq!(got, [OK, NO_MAILBOX, OK, NO_MAILBOX, OK, NOT_RCPTHOST]);
    // with the local check as well, either one accepting is enough
    home.control("checklocalrcpt", "1\n");
    touch(&home.path().join("alias/.qmail-other"));
    if is_root() {
        home.chown_all(a.uid, a.gid);
    }
    let got = rcpt_replies(
        &home,
        &a,
        &[],
        &[
            "known@testhost.example",
            "other@testhost.example",
            "third@testhost.example",
        ],
    );
    assert_eq!(got, [OK, OK, NO_MAILBOX]);
    // an unreadable list is never taken as no list
    fs::remove_file(home.path().join("control/validrcptto.cdb")).expect("rm");
    fs::create_dir(home.path().join("control/validrcptto.cdb")).expect("mkdir");
    let (code, out, _) = dialogue(&home, &[], &[], "MAIL FROM:<a@b>\r\n");
    assert_eq!(code, 1);
    assert_eq!(out, "421 unable to read controls (#4.3.0)\r\n");
}

// ---------------------------------------------------------------------------------------
// Service files (services/)

pub(crate) fn services() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../services")
}

const SERVICES: [&str; 3] = ["qmail-smtpd", "qmail-smtps", "qmail-submission"];

/// A minimal reader of xinetd's format: `service NAME { key = value ... }` blocks, with
/// `=`, `+=` and `-=`; comments and blank lines. Returns (name, [(key, value)]) or an error.
type XinetdService = (String, Vec<(String, String)>);

fn parse_xinetd(text: &str) -> Result<Vec<XinetdService>, String> {
    const KEYS: [&str; 14] = [
        "type",
        "port",
        "socket_type",
        "protocol",
        "wait",
        "user",
        "group",
        "env",
        "server",
        "server_args",
        "instances",
        "disable",
        "log_on_failure",
        "only_from",
    ];
    let mut out = Vec::new();
    let mut current: Option<XinetdService> = None;
    let mut open = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("service ") {
            if current.is_some() {
                return Err(format!("line {}: service inside service", n + 1));
            }
            current = Some((name.trim().to_string(), Vec::new()));
        } else if line == "{" {
            if current.is_none() || open {
                return Err(format!("line {}: stray {{", n + 1));
            }
            open = true;
        } else if line == "}" {
            if !open {
                return Err(format!("line {}: stray }}", n + 1));
            }
            out.push(current.take().ok_or("no service")?);
            open = false;
        } else {
            if !open {
                return Err(format!("line {}: attribute outside a block", n + 1));
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: no =", n + 1))?;
            let k = k.trim().trim_end_matches(['+', '-']).trim();
            if !KEYS.contains(&k) {
                return Err(format!("line {}: unknown attribute {k}", n + 1));
            }
            if let Some(c) = current.as_mut() {
                c.1.push((k.to_string(), v.trim().to_string()));
            }
        }
    }
    if open || current.is_some() {
        return Err("unterminated service".into());
    }
    Ok(out)
}

/// A minimal reader of systemd unit files: sections and keys, each key known for its
/// section.
fn parse_unit(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let known = |section: &str, key: &str| match section {
        "Unit" => ["Description", "Documentation"].contains(&key),
        "Socket" => ["ListenStream", "Accept", "MaxConnections"].contains(&key),
        "Install" => ["WantedBy"].contains(&key),
        "Service" => [
            "ExecStart",
            "StandardInput",
            "StandardOutput",
            "StandardError",
            "User",
            "Group",
            "Environment",
        ]
        .contains(&key),
        _ => false,
    };
    let mut section = String::new();
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: no =", n + 1))?;
        if !known(&section, k) {
            return Err(format!("line {}: unknown key {k} in [{section}]", n + 1));
        }
        out.push((section.clone(), k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// The value of attribute `k` of an xinetd service (`xinetd/s`); panics when missing.
pub(crate) fn xinetd_get<'a>(s: &str, attrs: &'a [(String, String)], k: &str) -> &'a str {
    attrs
        .iter()
        .find(|(a, _)| a == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("xinetd/{s}: no {k}"))
}

/// A service's run script, xinetd attributes and systemd service entries.
pub(crate) type ServiceFiles = (String, Vec<(String, String)>, Vec<(String, String, String)>);

/// The checks every service of services/ passes, for the service `s` whose connections
/// run `program` as `user`: its run scripts are executable, pass `sh -n` and never look
/// at TCPLOCALPORT; its xinetd file is one stream service through tcp-env; its systemd
/// socket accepts each connection and its service runs tcp-env on the socket.
pub(crate) fn common_service_checks(s: &str, user: &str, program: &str) -> ServiceFiles {
    let dir = services();
    for f in [
        format!("daemontools/{s}/run"),
        format!("daemontools/{s}/log/run"),
    ] {
        let p = dir.join(&f);
        let mode = fs::metadata(&p).expect(&f).permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{f} is not executable");
        let st = Command::new("/bin/sh")
            .arg("-n")
            .arg(&p)
            .status()
            .expect("sh");
        assert!(st.success(), "sh -n {f}");
    }
    let run = fs::read_to_string(dir.join(format!("daemontools/{s}/run"))).expect("run");
    assert!(!run.contains("TCPLOCALPORT"), "{s}");

    // xinetd: one service through tcp-env
    let x = fs::read_to_string(dir.join(format!("xinetd/{s}"))).expect("xinetd");
    let mut parsed = parse_xinetd(&x).unwrap_or_else(|e| panic!("xinetd/{s}: {e}"));
    assert_eq!(parsed.len(), 1, "{s}");
    let attrs = parsed.remove(0).1;
    assert_eq!(xinetd_get(s, &attrs, "socket_type"), "stream");
    assert_eq!(xinetd_get(s, &attrs, "wait"), "no");
    assert_eq!(xinetd_get(s, &attrs, "user"), user);
    assert_eq!(xinetd_get(s, &attrs, "server"), "/var/qmail/bin/tcp-env");
    assert!(
        xinetd_get(s, &attrs, "server_args").contains(program),
        "{s}"
    );

    // systemd: a socket with Accept=yes and its per-connection service through tcp-env
    let sock = fs::read_to_string(dir.join(format!("systemd/{s}.socket"))).expect("socket");
    let sock = parse_unit(&sock).unwrap_or_else(|e| panic!("{s}.socket: {e}"));
    assert!(sock.contains(&("Socket".into(), "Accept".into(), "yes".into())));
    let svc = fs::read_to_string(dir.join(format!("systemd/{s}@.service"))).expect("svc");
    let svc = parse_unit(&svc).unwrap_or_else(|e| panic!("{s}@.service: {e}"));
    let exec = svc
        .iter()
        .find(|(_, k, _)| k == "ExecStart")
        .map(|(_, _, v)| v.clone())
        .expect("ExecStart");
    assert!(exec.starts_with("/var/qmail/bin/tcp-env "), "{exec}");
    assert!(exec.contains(program), "{exec}");
    assert!(svc.contains(&("Service".into(), "StandardInput".into(), "socket".into())));
    (run, attrs, svc)
}

/// The `env` attributes of an xinetd service.
pub(crate) fn xinetd_env(attrs: &[(String, String)]) -> Vec<&str> {
    attrs
        .iter()
        .filter(|(a, _)| a == "env")
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn service_files_are_well_formed() {
    let dir = services();
    for s in SERVICES {
        let (run, attrs, svc) = common_service_checks(s, "qmaild", "/var/qmail/bin/qmail-smtpd");
        // TLS from the first byte only where SMTPS is set, explicitly
        assert_eq!(run.contains("\nSMTPS=1\n"), s == "qmail-smtps", "{s}");
        assert_eq!(
            run.contains("\nSMTPAUTH='!'\n"),
            s == "qmail-submission",
            "{s}"
        );
        let env = xinetd_env(&attrs);
        let port = || xinetd_get(s, &attrs, "port");
        match s {
            "qmail-smtps" => assert_eq!((env, port()), (vec!["SMTPS=1"], "465")),
            "qmail-submission" => assert_eq!((env, port()), (vec!["SMTPAUTH=!"], "587")),
            _ => assert!(env.is_empty()),
        }
        let smtps = svc
            .iter()
            .any(|(_, k, v)| k == "Environment" && v == "SMTPS=1");
        assert_eq!(smtps, s == "qmail-smtps");
    }

    // tcprules accepts the rules
    let tmp = tempfile::tempdir().expect("tmp");
    for r in ["tcp.smtp", "tcp.submission"] {
        let st = Command::new(tool("tcprules"))
            .arg(tmp.path().join(format!("{r}.cdb")))
            .arg(tmp.path().join(format!("{r}.tmp")))
            .stdin(fs::File::open(dir.join(r)).expect("rules"))
            .status()
            .expect("tcprules");
        assert!(st.success(), "{r}");
    }
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    // The units (SMTP and POP3) with their programs pointed at this build's tcp-env.
    let tmp = tempfile::tempdir().expect("tmp");
    for e in fs::read_dir(services().join("systemd")).expect("systemd/") {
        let e = e.expect("entry");
        let text = fs::read_to_string(e.path()).expect("unit");
        let text = text.replace(
            "/var/qmail/bin/tcp-env",
            &bin("tcp-env").display().to_string(),
        );
        fs::write(tmp.path().join(e.file_name()), text).expect("copy");
    }
    for s in SERVICES.iter().chain(&crate::pop3::SERVICES) {
        let out = Command::new(tool("systemd-analyze"))
            .args(["verify", "--man=no"])
            .arg(tmp.path().join(format!("{s}.socket")))
            .arg(tmp.path().join(format!("{s}@0.service")))
            .output()
            .expect("systemd-analyze");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.trim().is_empty(), "{s}: {err}");
    }
}

/// Starts `services/daemontools/NAME/run` (its output into `log/run`, multilog) for the
/// home on a free port; returns (run, log, port, log directory).
fn start_service(
    home: &Home,
    name: &str,
    logs: &Path,
    extra: &[(&str, &str)],
) -> (KillOnDrop, std::process::Child, u16) {
    let dir = services().join("daemontools").join(name);
    let port = free_port();
    let rules = home.path().join("tcp.smtp.cdb");
    let mut run = Command::new(dir.join("run"));
    run.env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("QMAIL_HOME", home.path())
        .env("SMTPD_IP", "127.0.0.1")
        .env("SMTPD_PORT", port.to_string())
        .env("SMTPD_RULES", &rules)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (k, v) in extra {
        run.env(k, v);
    }
    let mut run = run.spawn().expect("run");
    let out = run.stdout.take().expect("stdout");
    let log = Command::new(dir.join("log/run"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("SMTPD_LOGDIR", logs.join("main"))
        .current_dir(dir.join("log"))
        .stdin(Stdio::from(out))
        .spawn()
        .expect("log/run");
    let run = KillOnDrop(run);
    wait_for_port(port);
    (run, log, port)
}

#[test]
fn daemontools_run_scripts_serve_a_test_home() {
    run_scripts_serve_a_test_home("tcpserver");
}

#[test]
fn daemontools_run_scripts_serve_a_test_home_through_qmail_smtpd_server() {
    run_scripts_serve_a_test_home("qmail-smtpd-server");
}

#[test]
fn run_scripts_refuse_an_unknown_front_end() {
    let home = Home::new();
    for s in SERVICES {
        let out = Command::new(services().join("daemontools").join(s).join("run"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("QMAIL_HOME", home.path())
            .env("SMTPD_FRONT", "inetd")
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{s}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "run: SMTPD_FRONT is inetd: tcpserver or qmail-smtpd-server\n",
            "{s}"
        );
    }
}

/// The three SMTP run scripts with SMTPD_FRONT=`front` (tcpserver or
/// qmail-smtpd-server): mail through each, and the front end's status in the log.
fn run_scripts_serve_a_test_home(front: &str) {
    let (home, cert) = tls_home(Key::Ec);
    let checkpw = checkpassword(home.path());
    home.control("rcpthosts", "testhost.example\n");
    for r in ["tcp.smtp", "tcp.submission"] {
        let st = Command::new(tool("tcprules"))
            .arg(home.path().join(format!("{r}.cdb")))
            .arg(home.path().join(format!("{r}.tmp")))
            .stdin(fs::File::open(services().join(r)).expect("rules"))
            .status()
            .expect("tcprules");
        assert!(st.success());
    }
    let logs = tempfile::tempdir().expect("logs");
    fs::set_permissions(logs.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    if is_root() {
        // the connections run as qmaild, the log as qmaill
        rqmail_tests::ensure_qmail_users();
        let (u, g) = user_ids("qmaild");
        home.chown_all(u, g);
        let (lu, lg) = user_ids("qmaill");
        std::os::unix::fs::chown(logs.path(), Some(lu), Some(lg)).expect("chown");
    }
    let cp = checkpw.display().to_string();
    let port_arg = |p: u16| p.to_string();

    // port 25 service: STARTTLS; 127. may relay (tcp.smtp)
    let (run, mut log, port) =
        start_service(&home, "qmail-smtpd", logs.path(), &[("SMTPD_FRONT", front)]);
    let script = format!(
        "{PY_CTX}{}",
        r#"
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30)
s.starttls(context=ctx)
print(s.sendmail("a@client.example", ["far@remote.example"], "Subject: svc\r\n\r\nx\r\n"))
s.quit()
"#
    );
    let (ok, out, err) = py(&script, &[&port_arg(port), cert.to_str().expect("path")]);
    assert!(ok, "{out}{err}");
    drop(run);
    let _ = log.wait();
    let current = fs::read_to_string(logs.path().join("main/current")).expect("log");
    assert!(current.starts_with('@'), "{current}");
    assert!(
        current.contains(&format!("{front}: status: 1/40")),
        "{current}"
    );
    let body = only_message(&home);
    assert!(received(&body).contains(" with ESMTPS (TLSv1.3 "), "{body}");
    if is_root() {
        let (u, _) = user_ids("qmaild");
        let q = home.queued();
        assert!(q[0].todo.starts_with(format!("u{u}\0").as_bytes()));
    }

    // port 465 service: SMTPS, AUTH with the test checkpassword
    let (run, mut log, port) = start_service(
        &home,
        "qmail-smtps",
        logs.path(),
        &[("CHECKPASSWORD", &cp), ("SMTPD_FRONT", front)],
    );
    let script = format!(
        "{PY_CTX}{}",
        r#"
s = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.example", timeout=30, context=ctx)
print(s.login("joe", "secret"))
s.quit()
"#
    );
    let (ok, out, err) = py(&script, &[&port_arg(port), cert.to_str().expect("path")]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "(235, b'ok, go ahead (#2.0.0)')");
    drop(run);
    let _ = log.wait();

    // port 587 service: AUTH required, after STARTTLS
    let (run, mut log, port) = start_service(
        &home,
        "qmail-submission",
        logs.path(),
        &[
            ("SMTPD_FRONT", front),
            ("CHECKPASSWORD", &cp),
            (
                "SMTPD_RULES",
                &home.path().join("tcp.submission.cdb").display().to_string(),
            ),
        ],
    );
    let script = format!(
        "{PY_CTX}{}",
        r#"
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30)
print(s.docmd("MAIL", "FROM:<joe@client.example>"))
s.starttls(context=ctx)
s.ehlo()
print(s.docmd("MAIL", "FROM:<joe@client.example>"))
s.rset()
print(s.login("joe", "secret"))
print(s.sendmail("joe@client.example", ["far@remote.example"], "Subject: sub\r\n\r\nx\r\n"))
s.quit()
"#
    );
    let (ok, out, err) = py(&script, &[&port_arg(port), cert.to_str().expect("path")]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "(530, b'authentication required (#5.7.1)')",
            "(530, b'authentication required (#5.7.1)')",
            "(235, b'ok, go ahead (#2.0.0)')",
            "{}"
        ]
    );
    drop(run);
    let _ = log.wait();
    assert_eq!(home.queued().len(), 2);
}

// ---------------------------------------------------------------------------------------
// Client certificates: clientca.pem and tlsclients

#[test]
fn tlsclients_lets_a_listed_client_certificate_relay() {
    let (home, server_cert) = tls_home(Key::Ec);
    let d = home.path().join("certs");
    fs::create_dir(&d).expect("certs");
    // Version 3 client certificates (webpki, like most TLS libraries today, takes no
    // version 1 certificates); "forged" is self-signed and marked an authority.
    let client =
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n";
    let ca = certs::authority(&d, "ca", "/CN=Test Client CA");
    let listed = certs::signed(
        &d,
        "listed",
        "/O=Example/CN=Client One/emailAddress=Client.One@Example.org",
        &ca,
        client,
    );
    let unlisted = certs::signed(
        &d,
        "unlisted",
        "/CN=Client Two/emailAddress=two@example.org",
        &ca,
        client,
    );
    let forged = certs::authority(
        &d,
        "forged",
        "/CN=Client One/emailAddress=client.one@example.org",
    );
    fs::copy(&ca.1, home.path().join("control/clientca.pem")).expect("clientca");
    home.control("tlsclients", "client.one@example.org\n");
    home.control("rcpthosts", "testhost.example\n");
    let server = Server::start(&home, &[], &[]);

    let script = format!(
        "{PY_CTX}{}",
        r#"
if len(sys.argv) > 3:
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.starttls(context=ctx)
s.ehlo("client.example")
s.mail("sender@client.example")
code, text = s.rcpt("friend@far.example")
print(code)
if code == 250:
    s.data(b"Subject: relayed\r\n\r\nby certificate\r\n")
s.quit()
"#
    );
    let port = server.port.to_string();
    let sc = server_cert.to_string_lossy().into_owned();
    let attempt = |cert: Option<&(PathBuf, PathBuf)>| {
        let mut args = vec![port.clone(), sc.clone()];
        if let Some((k, c)) = cert {
            args.push(c.to_string_lossy().into_owned());
            args.push(k.to_string_lossy().into_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = py(&script, &args);
        assert!(ok, "{out}{err}");
        out.trim().to_string()
    };

    // Not signed by clientca.pem, not listed, no certificate: no relaying.
    assert_eq!(attempt(Some(&forged)), "553");
    assert_eq!(attempt(Some(&unlisted)), "553");
    assert_eq!(attempt(None), "553");
    assert!(home.queued().is_empty());

    // Signed and listed (the comparison ignores case): relayed, and named.
    assert_eq!(attempt(Some(&listed)), "250");
    let body = only_message(&home);
    let r: Vec<&str> = body.lines().take(3).collect();
    assert!(r[1].ends_with(" encrypted)"), "{r:?}");
    assert!(
        r[2].starts_with("  (cert Client.One@Example.org); "),
        "{r:?}"
    );
    assert_eq!(
        home.queued()[0].recipients(),
        vec![b"friend@far.example".to_vec()]
    );
}

#[test]
fn unreadable_tlsclients_is_a_temporary_failure() {
    let (home, _) = tls_home(Key::Ec);
    // A directory where the list should be: reading it fails, even as root.
    fs::create_dir(home.path().join("control/tlsclients")).expect("mkdir");
    let (code, out, err) = dialogue(&home, &[], &[], "EHLO c\r\nQUIT\r\n");
    assert_eq!(out, "421 unable to read controls (#4.3.0)\r\n");
    assert_ne!(code, 0);
    assert!(err.contains("control/tlsclients"), "{err}");
    // Without TLS configured the file is not read at all.
    fs::remove_file(home.path().join("control/servercert.pem")).expect("rm");
    let (code, out, _) = dialogue(&home, &[], &[], "QUIT\r\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("220 "), "{out}");
}

// ---------------------------------------------------------------------------------------
// Diagnostics

/// The diagnostic lines keep their text at the default level; QMAIL_LOGLEVEL=debug adds
/// the connection and the TLS session, each line marked with its level and process id.
#[test]
fn diagnostics_default_lines_unchanged_and_verbose_level() {
    let (home, _) = tls_home(Key::Ec);
    // A client that sends STARTTLS and then no handshake: one line, netqmail-TLS style.
    let input = "EHLO c\r\nSTARTTLS\r\n";
    let (_, out, err) = dialogue(&home, &[], &[], input);
    assert!(out.ends_with("220 ready for tls\r\n"), "{out}");
    assert!(
        err.starts_with("qmail-smtpd: STARTTLS: TLS handshake failed: ")
            && err.ends_with('\n')
            && err.lines().count() == 1,
        "{err:?}"
    );
    let (_, _, verbose) = dialogue(&home, &[("QMAIL_LOGLEVEL", "debug")], &[], input);
    let lines: Vec<&str> = verbose.lines().collect();
    assert_eq!(lines.len(), 2, "{verbose}");
    assert!(
        lines[0].starts_with("qmail-smtpd: debug: pid ")
            && lines[0].ends_with(": connection from unknown (unknown), TLS offered (STARTTLS)"),
        "{verbose}"
    );
    assert_eq!(
        format!("{}\n", lines[1]),
        err,
        "the same line at every level"
    );
    // control/loglevel turns it off for this program only.
    home.control("loglevel", "qmail-remote:debug\nqmail-smtpd:off\n");
    let (_, _, none) = dialogue(&home, &[], &[], input);
    assert_eq!(none, "");
    home.remove_control("loglevel");

    // A whole TLS session under tcpserver, at the verbose level.
    let srv = Server::start(&home, &[("QMAIL_LOGLEVEL", "debug")], &[]);
    let (ok, out) = swaks(srv.port, &["--to", "rcpt@d.example", "--tls"]);
    assert!(ok, "{out}");
    let log = srv.wait_log("TLS: TLSv1.3, ");
    assert!(
        log.contains(": connection from 127.0.0.1 (")
            && log.contains(", client certificate none or not verified\n"),
        "{log}"
    );
    assert!(
        log.lines()
            .all(|l| l.starts_with("qmail-smtpd: debug: pid ")),
        "{log}"
    );
}
