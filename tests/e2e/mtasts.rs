//! MTA-STS in qmail-remote (qmail-remote(8), mtasts(5)) against real peers the tests
//! start: dnsmasq (Debian) serving the `_mta-sts` TXT, MX and address records, an HTTPS
//! server (Python's ssl, with a certificate of the test PKI) on port 443 serving the
//! policy, and the fake SMTP server with and without STARTTLS and with certificates that
//! do and do not match. qmail-remote trusts the test CA through `SSL_CERT_FILE`.
//!
//! RFC 8461 fixes the policy host's port at 443: these tests need root to listen there (as
//! scripts/test runs them in CI); as another user they say so on stderr and check nothing.
//! Each test has addresses of its own, 127.3.N.2 for the MX and 127.3.N.3 for the policy
//! host, so that they can run at the same time.

use rqmail_tests::certs::{Key, self_signed, signed, test_pki};
use rqmail_tests::home::scratch;
use rqmail_tests::process::start_python;
use rqmail_tests::smtp_peer::SmtpServer;
use rqmail_tests::{Home, KillOnDrop, free_port, is_root, run_with_input, tool};
use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DOMAIN: &str = "sts.test";
const MX: &str = "mx.tls.test";
const ARGS: [&str; 3] = ["sts.test", "s@here.example", "x@sts.test"];
const MSG: &[u8] = b"Subject: sts\n\nhello\n";

fn root_or_skip(test: &str) -> bool {
    if !is_root() {
        eprintln!("{test} needs root (the MTA-STS policy host listens on port 443); skipped");
    }
    is_root()
}

// ------------------------------------------------------------------ the peers

/// dnsmasq on 127.0.0.1 with the records of one test; answers only from them.
struct Dns {
    _proc: KillOnDrop,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Dns {
    /// MX of sts.test → mx.tls.test at `mx_ip`, mta-sts.sts.test at `web_ip`, and the
    /// TXT record `txt` of _mta-sts.sts.test when given.
    fn start(n: u8, txt: Option<&str>) -> Dns {
        let dir = scratch("rqmail-mtasts-dns-");
        for _ in 0..20 {
            let port = free_port();
            let mut c = Command::new(tool("dnsmasq"));
            c.args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--local=/test/",
                "--user=nobody",
                "--group=nogroup",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--mx-host={DOMAIN},{MX},10"))
            .arg(format!("--host-record={MX},127.3.{n}.2"))
            .arg(format!("--host-record=mta-sts.{DOMAIN},127.3.{n}.3"));
            if let Some(t) = txt {
                c.arg(format!("--txt-record=_mta-sts.{DOMAIN},{t}"));
            }
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let proc = KillOnDrop(c.spawn().expect("start dnsmasq"));
            if answers(port) {
                return Dns {
                    _proc: proc,
                    _dir: dir,
                    port,
                };
            }
        }
        panic!("dnsmasq did not start");
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// True once a DNS server answers on 127.0.0.1:`port` (a query for the A record of
/// `test`, within 5 seconds).
fn answers(port: u16) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let q = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04test\x00\x00\x01\x00\x01";
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        let _ = s.send_to(q, ("127.0.0.1", port));
        if s.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

/// The HTTPS server of the policy host: answers every request with the bytes of the
/// file `response` (a whole HTTP answer, written by the test), closes cleanly, and
/// appends each request's head to `requests`.
const HTTPS_SERVER: &str = r#"
import os, socket, ssl, sys, threading
cert, key, ip, d = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, 443))
s.listen(16)
print(443, flush=True)
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
        req = b""
        while b"\r\n\r\n" not in req and len(req) < 65536:
            b = t.recv(4096)
            if not b:
                break
            req += b
        with open(os.path.join(d, "requests"), "ab") as f:
            f.write(req.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
        t.sendall(open(os.path.join(d, "response"), "rb").read())
        t.unwrap().close()
    except Exception as e:
        with open(os.path.join(d, "errors"), "a") as f:
            f.write("%r\n" % e)
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

struct Web {
    _proc: KillOnDrop,
    dir: tempfile::TempDir,
}

impl Web {
    /// The policy host on 127.3.`n`.3:443 with the certificate (key, certificate)
    /// `cert`, answering `policy` with 200 text/plain.
    fn start(n: u8, cert: &(PathBuf, PathBuf), policy: &str) -> Web {
        let dir = scratch("rqmail-mtasts-web-");
        fs::write(dir.path().join("response"), ok(policy)).expect("response");
        let ip = PathBuf::from(format!("127.3.{n}.3"));
        let (proc, _) = start_python(
            dir.path(),
            "https.py",
            HTTPS_SERVER,
            &[&cert.1, &cert.0, &ip, dir.path()],
        )
        .expect("start the HTTPS server");
        Web { _proc: proc, dir }
    }

    fn answer(&self, raw: &str) {
        fs::write(self.dir.path().join("response"), raw).expect("response");
    }

    /// The heads of the requests so far.
    fn requests(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("requests"))
            .unwrap_or_default()
            .split("\r\n\r\n")
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// A whole HTTP answer: 200, text/plain, `body`.
fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

/// The test PKI's CA signs a certificate for mta-sts.sts.test: (key, certificate).
fn web_cert() -> &'static (PathBuf, PathBuf) {
    static C: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    C.get_or_init(|| {
        let pki = test_pki();
        let d = pki.join("mtasts");
        fs::create_dir_all(&d).expect("mkdir");
        signed(
            &d,
            "web",
            "/CN=mta-sts.sts.test",
            &(pki.join("ca.key"), pki.join("ca.pem")),
            "basicConstraints=CA:FALSE\nsubjectAltName=DNS:mta-sts.sts.test\nextendedKeyUsage=serverAuth\n",
        )
    })
}

/// The SMTP server at 127.3.`n`.2 (certificate of mx.tls.test unless `cfg` says
/// otherwise), offering STARTTLS when `tls`.
fn smtp(n: u8, tls: bool, cfg: &str) -> SmtpServer {
    let ext = if tls {
        r#""extensions": ["PIPELINING", "STARTTLS"]"#
    } else {
        r#""extensions": ["PIPELINING"]"#
    };
    let sep = if cfg.is_empty() { "" } else { ", " };
    SmtpServer::start(&format!("127.3.{n}.2"), &format!("{ext}{sep}{cfg}"))
}

// ------------------------------------------------------------------ qmail-remote

/// A home delivering sts.test by MX on the SMTP server's port, MTA-STS on.
fn home(s: &SmtpServer) -> Home {
    let h = Home::new();
    h.control("smtproutes", &format!("{DOMAIN}::{}\n", s.port));
    h.control("mtasts", "1\n");
    fs::create_dir(h.path().join("mtasts")).expect("mkdir mtasts");
    h
}

/// The message report of one qmail-remote run: letter and text.
fn remote(h: &Home, dns: &Dns, ca: &Path) -> (char, String) {
    let mut c = h.cmd("qmail-remote");
    c.args(ARGS)
        .env("RQMAIL_NAMESERVERS", dns.addr())
        .env("SSL_CERT_FILE", ca);
    let (code, out, err) = run_with_input(c, MSG);
    assert_eq!(code, 0, "stderr {}", String::from_utf8_lossy(&err));
    let last = out
        .strip_suffix(b"\0")
        .and_then(|o| o.split(|&c| c == 0).next_back())
        .expect("a message report");
    (
        last[0] as char,
        String::from_utf8_lossy(&last[1..]).into_owned(),
    )
}

fn ca() -> PathBuf {
    test_pki().join("ca.pem")
}

fn cache(h: &Home) -> String {
    fs::read_to_string(h.path().join("mtasts").join(DOMAIN)).unwrap_or_default()
}

fn put_cache(h: &Home, id: &str, expires: u64, policy: &str) {
    fs::write(
        h.path().join("mtasts").join(DOMAIN),
        format!("id: {id}\nfetched: 1\nexpires: {expires}\n\n{policy}"),
    )
    .expect("cache file");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

// ------------------------------------------------------------------ the tests

#[test]
fn enforce_delivers_over_verified_tls_and_caches_the_policy() {
    if !root_or_skip("enforce_delivers_over_verified_tls_and_caches_the_policy") {
        return;
    }
    let s = smtp(1, true, "");
    let web = Web::start(1, web_cert(), &policy("enforce", "*.tls.test"));
    let h = home(&s);
    let (letter, text) = {
        let dns = Dns::start(1, Some("v=STSv1; id=one;"));
        remote(&h, &dns, &ca())
    };
    assert_eq!(letter, 'K', "{text}");
    assert!(
        text.ends_with(
            ", certificate verified with the system's roots (MTA-STS policy of sts.test).\n"
        ),
        "{text:?}"
    );
    let t = s.one();
    assert!(t.tls.is_some(), "{t:?}");
    let req = web.requests();
    assert_eq!(req.len(), 1, "{req:?}");
    assert!(
        req[0].starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"),
        "{req:?}"
    );
    assert!(req[0].contains("\r\nHost: mta-sts.sts.test\r\n"), "{req:?}");
    let c = cache(&h);
    assert!(c.starts_with("id: one\nfetched: "), "{c:?}");
    assert!(
        c.ends_with("\n\nversion: STSv1\nmode: enforce\nmax_age: 86400\nmx: *.tls.test\n"),
        "{c:?}"
    );

    // The same id: the cached policy, no fetch.
    let dns = Dns::start(1, Some("v=STSv1; id=one;"));
    assert_eq!(remote(&h, &dns, &ca()).0, 'K');
    assert_eq!(web.requests().len(), 1);
    drop(dns);

    // A new id: fetched again. The new policy is testing.
    web.answer(&ok(&policy("testing", "*.tls.test")));
    let dns = Dns::start(1, Some("v=STSv1; id=two;"));
    assert_eq!(remote(&h, &dns, &ca()).0, 'K');
    assert_eq!(web.requests().len(), 2);
    assert!(cache(&h).contains("id: two\n"));
    assert!(cache(&h).contains("mode: testing\n"));
    drop(dns);

    // A new id whose policy cannot be fetched: the cached one counts, and the report
    // says why there is no fresh one.
    web.answer("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n");
    let dns = Dns::start(1, Some("v=STSv1; id=three;"));
    let (letter, text) = remote(&h, &dns, &ca());
    assert_eq!(letter, 'K', "{text}");
    assert!(
        text.contains("MTA-STS: no fresh policy for sts.test: sts-policy-fetch-error (HTTP status \"HTTP/1.1 404 Not Found\""),
        "{text:?}"
    );
    assert!(text.ends_with("; using the cached policy.\n"), "{text:?}");
    assert!(cache(&h).contains("id: two\n"));
}

#[test]
fn enforce_refuses_without_tls_with_a_bad_certificate_or_an_unlisted_mx() {
    if !root_or_skip("enforce_refuses_without_tls_with_a_bad_certificate_or_an_unlisted_mx") {
        return;
    }
    let web = Web::start(2, web_cert(), &policy("enforce", MX));
    let dns = Dns::start(2, Some("v=STSv1; id=1"));

    // No STARTTLS.
    let s = smtp(2, false, "");
    let h = home(&s);
    let (letter, text) = remote(&h, &dns, &ca());
    assert_eq!(
        (letter, text.as_str()),
        (
            'Z',
            "No TLS achieved while the MTA-STS policy of sts.test is enforced \
             (starttls-not-supported); connecting to 127.3.2.2.\n"
        )
    );
    assert!(s.one().messages.is_empty());
    drop(s);

    // STARTTLS with a certificate for another name.
    let pki = test_pki();
    let other = format!(
        r#""cert": "{}", "key": "{}""#,
        pki.join("other.pem").display(),
        pki.join("other.key").display()
    );
    let s = smtp(2, true, &other);
    let h = home(&s);
    let (letter, text) = remote(&h, &dns, &ca());
    assert_eq!(letter, 'Z');
    assert!(
        text.starts_with(
            "TLS unable to verify server for the MTA-STS policy of sts.test: \
             certificate-host-mismatch (invalid peer certificate: "
        ),
        "{text:?}"
    );
    assert!(text.ends_with("; connected to 127.3.2.2.\n"), "{text:?}");
    drop(s);

    // A certificate no trusted authority signed.
    let d = scratch("rqmail-mtasts-cert-");
    let (k, c) = self_signed(d.path(), "self", Key::Ec, "/CN=mx.tls.test");
    let s = smtp(
        2,
        true,
        &format!(r#""cert": "{}", "key": "{}""#, c.display(), k.display()),
    );
    let h = home(&s);
    let (letter, text) = remote(&h, &dns, &ca());
    assert_eq!(letter, 'Z');
    assert!(
        text.starts_with(
            "TLS unable to verify server for the MTA-STS policy of sts.test: certificate-not-trusted ("
        ),
        "{text:?}"
    );
    drop(s);

    // The MX host is not in the policy: not even tried.
    web.answer(&ok(&policy("enforce", "mail.elsewhere.test")));
    let s = smtp(2, true, "");
    let h = home(&s);
    let (letter, text) = remote(&h, &dns, &ca());
    assert_eq!(
        (letter, text.as_str()),
        (
            'Z',
            "Sorry, the MTA-STS policy of sts.test allows none of its MX hosts: MX host \
             mx.tls.test is not in the MTA-STS policy of sts.test (validation-failure). (#4.7.5)\n"
        )
    );
    assert!(s.untouched());
}

#[test]
fn testing_mode_delivers_and_notes_what_enforce_would_refuse() {
    if !root_or_skip("testing_mode_delivers_and_notes_what_enforce_would_refuse") {
        return;
    }
    let _web = Web::start(3, web_cert(), &policy("testing", "mail.elsewhere.test"));
    let dns = Dns::start(3, Some("v=STSv1; id=1"));
    let s = smtp(3, false, "");
    let h = home(&s);
    let (letter, text) = remote(&h, &dns, &ca());
    assert_eq!(
        (letter, text.as_str()),
        (
            'K',
            "127.3.3.2 accepted message.\nRemote host said: 250 ok queued\n\
             MTA-STS (testing): MX host mx.tls.test is not in the MTA-STS policy of sts.test \
             (validation-failure).\n"
        )
    );
    assert!(cache(&h).contains("mode: testing\n"));
}

#[test]
fn policies_that_cannot_be_had() {
    if !root_or_skip("policies_that_cannot_be_had") {
        return;
    }
    let enforce = policy("enforce", MX);
    // Each way of failing, without a cached policy: delivered as if there were none,
    // with the reason in the report.
    let cases: [(&str, &str, &str); 4] = [
        (
            "",
            "",
            "sts-policy-fetch-error (no connection to mta-sts.sts.test port 443)",
        ),
        (
            "malformed",
            "version: STSv1\r\nmode: strict\r\n",
            "sts-policy-invalid (unknown mode \"strict\")",
        ),
        (
            "redirect",
            "HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.test/\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
            "sts-policy-fetch-error (HTTP status \"HTTP/1.1 301 Moved\" (only 200 counts; redirects are not followed))",
        ),
        (
            "webpki",
            "",
            "sts-webpki-invalid (invalid peer certificate: ",
        ),
    ];
    for (i, (what, answer, why)) in cases.into_iter().enumerate() {
        let n = 40 + i as u8;
        let dns = Dns::start(n, Some("v=STSv1; id=1"));
        let s = smtp(n, false, "");
        let h = home(&s);
        let _web = match what {
            "" => None,
            // The policy host presents mx.tls.test's certificate.
            "webpki" => Some(Web::start(
                n,
                &(test_pki().join("mx.key"), test_pki().join("mx.pem")),
                &enforce,
            )),
            "malformed" => Some(Web::start(n, web_cert(), answer)),
            _ => {
                let w = Web::start(n, web_cert(), &enforce);
                w.answer(answer);
                Some(w)
            }
        };
        let (letter, text) = remote(&h, &dns, &ca());
        assert_eq!(letter, 'K', "{what}: {text}");
        let want = format!("MTA-STS: no fresh policy for sts.test: {why}");
        assert!(text.contains(&want), "{what}: {text:?}");
        assert!(
            text.ends_with("; delivering as if it had none.\n"),
            "{text:?}"
        );
        assert_eq!(cache(&h), "", "{what}");
    }
    let dns = Dns::start(4, Some("v=STSv1; id=1"));
    let s = smtp(4, false, "");
    // With a cached enforce policy (under another id): it counts, and the server
    // without STARTTLS is refused.
    let h = home(&s);
    put_cache(&h, "0", now() + 3600, &enforce.replace('\r', ""));
    let (letter, text) = remote(&h, &dns, &ca());
    assert_eq!(letter, 'Z', "{text}");
    assert!(
        text.starts_with("No TLS achieved while the MTA-STS policy of sts.test is enforced (starttls-not-supported)"),
        "{text:?}"
    );
    assert!(
        text.ends_with("MTA-STS: no fresh policy for sts.test: sts-policy-fetch-error (no connection to mta-sts.sts.test port 443); using the cached policy.\n"),
        "{text:?}"
    );
}

#[test]
fn cached_policies_expire_and_outlive_their_txt_record() {
    if !root_or_skip("cached_policies_expire_and_outlive_their_txt_record") {
        return;
    }
    let enforce = policy("enforce", MX).replace('\r', "");
    let dns = Dns::start(5, None);
    let s = smtp(5, false, "");
    let h = home(&s);
    // No TXT record, an unexpired cached policy: in force.
    put_cache(&h, "0", now() + 3600, &enforce);
    let (letter, text) = remote(&h, &dns, &ca());
    assert_eq!(letter, 'Z', "{text}");
    assert!(text.contains("(starttls-not-supported)"), "{text:?}");
    // Expired: as if there were none.
    put_cache(&h, "0", now() - 1, &enforce);
    let (letter, text) = remote(&h, &dns, &ca());
    assert_eq!(
        (letter, text.as_str()),
        (
            'K',
            "127.3.5.2 accepted message.\nRemote host said: 250 ok queued\n"
        )
    );
    // Removing the file clears the policy.
    put_cache(&h, "0", now() + 3600, &enforce);
    fs::remove_file(h.path().join("mtasts").join(DOMAIN)).expect("rm");
    assert_eq!(remote(&h, &dns, &ca()).0, 'K');
}

#[test]
fn off_unless_control_mtasts_says_1() {
    if !root_or_skip("off_unless_control_mtasts_says_1") {
        return;
    }
    let web = Web::start(6, web_cert(), &policy("enforce", "mail.elsewhere.test"));
    let dns = Dns::start(6, Some("v=STSv1; id=1"));
    let s = smtp(6, false, "");
    let h = home(&s);
    for setting in [None, Some("0\n")] {
        match setting {
            None => h.remove_control("mtasts"),
            Some(v) => h.control("mtasts", v),
        }
        let (letter, text) = remote(&h, &dns, &ca());
        assert_eq!(
            (letter, text.as_str()),
            (
                'K',
                "127.3.6.2 accepted message.\nRemote host said: 250 ok queued\n"
            )
        );
    }
    assert!(web.requests().is_empty());
    // A route in smtproutes is the administrator's choice: no MTA-STS for it.
    h.control("mtasts", "1\n");
    h.control("smtproutes", &format!("{DOMAIN}:127.3.6.2:{}\n", s.port));
    assert_eq!(remote(&h, &dns, &ca()).0, 'K');
    assert!(web.requests().is_empty());
}

#[test]
fn qmail_remote_as_qmailr_writes_the_documented_cache_directory() {
    if !root_or_skip("qmail_remote_as_qmailr_writes_the_documented_cache_directory") {
        return;
    }
    rqmail_tests::ensure_qmail_users();
    let (qmailr, qmail) = rqmail_tests::user_ids("qmailr");
    let _web = Web::start(7, web_cert(), &policy("enforce", MX));
    let dns = Dns::start(7, Some("v=STSv1; id=1"));
    let s = smtp(7, true, "");
    let h = home(&s);
    // mtasts(5): install -d -o qmailr -g qmail -m 700 $QMAIL_HOME/mtasts
    fs::set_permissions(h.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let cache_dir = h.path().join("mtasts");
    std::os::unix::fs::chown(&cache_dir, Some(qmailr), Some(qmail)).expect("chown");
    fs::set_permissions(&cache_dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut c = Command::new(tool("setpriv"));
    c.args(["--reuid=qmailr", "--regid=qmail", "--init-groups"])
        .arg(h.path().join("bin/qmail-remote"))
        .args(ARGS)
        .env_clear()
        .env("QMAIL_HOME", h.path())
        .env("RQMAIL_NAMESERVERS", dns.addr())
        .env("SSL_CERT_FILE", ca())
        .current_dir("/");
    let (code, out, _) = run_with_input(c, MSG);
    assert_eq!(code, 0);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("r\0K127.3.7.2 accepted message."),
        "{text:?}"
    );
    assert!(text.contains("(MTA-STS policy of sts.test)"), "{text:?}");
    let f = cache_dir.join(DOMAIN);
    let meta = fs::metadata(&f).expect("the cache file");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), qmailr);
    assert!(cache(&h).contains("mode: enforce\n"));
    // Nothing else was left in the directory.
    let names: Vec<_> = fs::read_dir(&cache_dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from(DOMAIN)]);
}
