//! DANE (RFC 7672) in qmail-remote against a real validating resolver.
//!
//! The set-up, which needs no network: each test writes a zone for `example.` with the
//! test's MX hosts and TLSA records, signs it with ldnsutils (`ldns-keygen` for a KSK and
//! a ZSK, ECDSA P-256, and `ldns-signzone`, NSEC), and starts Debian's unbound on a free
//! port of 127.0.0.1 with that zone as an `auth-zone` (`for-upstream: yes`, so that its
//! answers go through unbound's validator like any upstream answer) and the KSK's DS
//! record as the only trust anchor. A second zone, `example.net.`, is served unsigned and
//! without an anchor: its answers are insecure. A tampered RRSIG makes an answer bogus,
//! which unbound turns into SERVFAIL; a removed RRSIG in the signed zone too. qmail-remote
//! is told to trust unbound's AD bit by control/dane. The SMTP servers are the harness's
//! fake server (Python's ssl module, STARTTLS, the test PKI's mx.tls.test certificate),
//! and the TLSA data is computed from the certificate with openssl, not with the code
//! under test.
//!
//! Each test uses addresses of its own in 127.74.N.x.

use rqmail_tests::certs::{signed, test_pki};
use rqmail_tests::fakes::{fake_getpw, fake_local, mail_dir};
use rqmail_tests::home::scratch;
use rqmail_tests::single::{System, inject, user_home};
use rqmail_tests::smtp_peer::SmtpServer;
use rqmail_tests::{Home, KillOnDrop, free_port, run_with_input, tool, wait_for_port};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

// ------------------------------------------------------------------ the signed zone

/// Runs a tool in `dir`; returns its standard output.
fn run(dir: &Path, prog: &str, args: &[&str]) -> String {
    let out = Command::new(tool(prog))
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(out.status.success(), "{prog} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A shell pipeline in `dir` (openssl's digests of a certificate).
fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new(tool("sh"))
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(out.status.success(), "{script} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The hex digest (`sha256`, `sha512`) of the DER public key (SubjectPublicKeyInfo) of
/// the PEM certificate `cert`, or of the whole certificate with `full`.
fn digest(cert: &Path, full: bool, alg: &str) -> String {
    let c = cert.display();
    let der = if full {
        format!("openssl x509 -in {c} -outform DER")
    } else {
        format!("openssl x509 -in {c} -noout -pubkey | openssl pkey -pubin -outform DER")
    };
    let out = sh(Path::new("/"), &format!("{der} | openssl dgst -{alg} -r"));
    out.split_whitespace().next().expect("digest").to_string()
}

/// The zone `origin` made of `records` (owner names relative to it), with SOA and NS.
fn zone_text(origin: &str, records: &str) -> String {
    format!(
        "$ORIGIN {origin}\n$TTL 300\n@ IN SOA ns.example. hostmaster.example. 1 3600 600 86400 300\n\
         @ IN NS ns.example.\n{records}"
    )
}

/// Signs the zone file `dir/name.zone` for `origin`: returns the signed text and the DS
/// record of its key-signing key.
fn sign(dir: &Path, origin: &str, name: &str) -> (String, String) {
    let ksk = run(dir, "ldns-keygen", &["-a", "ECDSAP256SHA256", "-k", origin]);
    let zsk = run(dir, "ldns-keygen", &["-a", "ECDSAP256SHA256", origin]);
    let (ksk, zsk) = (ksk.trim(), zsk.trim());
    run(dir, "ldns-signzone", &[&format!("{name}.zone"), ksk, zsk]);
    let signed = fs::read_to_string(dir.join(format!("{name}.zone.signed"))).expect("signed");
    let ds = fs::read_to_string(dir.join(format!("{ksk}.ds"))).expect("ds");
    (signed, ds)
}

/// The signed zone with the signatures of `owner`'s `rtype` RRset changed: `drop`
/// removes them, otherwise one byte of each is altered (a bogus signature).
fn tamper(signed: &str, owner: &str, rtype: &str, drop: bool) -> String {
    let mut out = String::new();
    let mut hit = 0;
    for l in signed.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 12 && f[0].eq_ignore_ascii_case(owner) && f[3] == "RRSIG" && f[4] == rtype {
            hit += 1;
            if drop {
                continue;
            }
            // The signature is the last field (base64): change its first character.
            let sig = f[f.len() - 1];
            let first = if sig.starts_with('A') { "B" } else { "A" };
            let head = &l[..l.len() - sig.len()];
            out.push_str(&format!("{head}{first}{}\n", &sig[1..]));
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    assert!(hit > 0, "no RRSIG for {owner} {rtype}");
    out
}

/// unbound, validating, serving the test zones from its auth-zones.
struct Resolver {
    _proc: KillOnDrop,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Resolver {
    /// `signed`: the records of `example.` (signed; `edit` may tamper with the signed
    /// text); `insecure`: the records of `example.net.` (unsigned).
    fn start(signed: &str, insecure: &str, edit: impl Fn(String) -> String) -> Resolver {
        let dir = scratch("rqmail-dane-");
        let d = dir.path();
        fs::write(d.join("example.zone"), zone_text("example.", signed)).expect("zone");
        let (text, ds) = sign(d, "example.", "example");
        fs::write(d.join("example.zone.signed"), edit(text)).expect("signed zone");
        fs::write(d.join("anchor.ds"), ds).expect("anchor");
        fs::write(d.join("net.zone"), zone_text("example.net.", insecure)).expect("zone");
        for _ in 0..10 {
            let port = free_port();
            let conf = format!(
                "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n  chroot: \"\"\n\
                 \x20 username: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n\
                 \x20 logfile: \"\"\n  verbosity: 1\n  val-log-level: 2\n  do-ip6: no\n\
                 \x20 module-config: \"validator iterator\"\n  trust-anchor-file: \"{dir}/anchor.ds\"\n\
                 \x20 do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n\
                 auth-zone:\n  name: \"example.\"\n  zonefile: \"{dir}/example.zone.signed\"\n\
                 \x20 for-upstream: yes\n  for-downstream: no\n  fallback-enabled: no\n\
                 auth-zone:\n  name: \"example.net.\"\n  zonefile: \"{dir}/net.zone\"\n\
                 \x20 for-upstream: yes\n  for-downstream: no\n  fallback-enabled: no\n",
                dir = d.display()
            );
            let cf = d.join("unbound.conf");
            fs::write(&cf, conf).expect("unbound.conf");
            let log = fs::File::create(d.join("unbound.log")).expect("log");
            let child = Command::new(tool("unbound"))
                .arg("-d")
                .arg("-c")
                .arg(&cf)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start unbound");
            let mut k = KillOnDrop(child);
            // A port taken in the meantime: unbound exits; try another.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = k.0.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    wait_for_port(port);
                    return Resolver {
                        _proc: k,
                        port,
                        _dir: dir,
                    };
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "unbound did not start"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        panic!("unbound could not start");
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

// ------------------------------------------------------------------ qmail-remote

/// The message report (letter, text) of qmail-remote for `x@domain`, with `dns` as the
/// resolver of RQMAIL_NAMESERVERS.
fn remote(h: &Home, dns: &str, domain: &str) -> (char, String) {
    let mut c = h.cmd("qmail-remote");
    c.args([domain, "s@here.example", &format!("x@{domain}")])
        .env("RQMAIL_NAMESERVERS", dns);
    let (code, out, err) = run_with_input(c, b"Subject: dane\n\nhello\n");
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let last = out[..out.len() - 1]
        .split(|&c| c == 0)
        .next_back()
        .expect("a report");
    (
        last[0] as char,
        String::from_utf8_lossy(&last[1..]).into_owned(),
    )
}

/// A home that sends mail for the `domains` to their MX hosts on `port`, and trusts the
/// resolver `dns` for DNSSEC (control/dane).
fn home(domains: &[&str], port: u16, dns: Option<&Resolver>) -> Home {
    let h = Home::new();
    let routes: String = domains.iter().map(|d| format!("{d}::{port}\n")).collect();
    h.control("smtproutes", &routes);
    if let Some(r) = dns {
        h.control("dane", &format!("{}\n", r.addr()));
    }
    h
}

const STARTTLS: &str = r#""extensions": ["PIPELINING", "STARTTLS"]"#;

/// A port on which nothing listens: without control/dane, no test reaches the resolver
/// through RQMAIL_NAMESERVERS by accident.
const NO_DNS: &str = "127.0.0.1:9";

fn mail_sent(s: &SmtpServer) -> bool {
    s.messages().iter().any(|m| m.from == "<s@here.example>")
}

// ------------------------------------------------------------------ the tests

/// DANE-EE: records that match the server's public key or certificate (SHA-256,
/// SHA-512, exact) make a delivery with a verified certificate; a record that matches
/// nothing keeps the mail from that server (certificate-not-trusted) and defers it;
/// PKIX-EE alone is unusable: TLS without authentication, but mandatory. Without
/// control/dane the same DNS changes nothing (opportunistic TLS).
#[test]
fn dane_ee_match_and_mismatch() {
    let s = SmtpServer::start("127.74.1.2", STARTTLS);
    let p = s.port;
    let mx = test_pki().join("mx.pem");
    let spki256 = digest(&mx, false, "sha256");
    let spki512 = digest(&mx, false, "sha512");
    let full256 = digest(&mx, true, "sha256");
    let wrong = "00".repeat(32);
    let mut z = String::new();
    for (name, tlsa) in [
        ("good", format!("3 1 1 {spki256}")),
        ("sha512", format!("3 1 2 {spki512}")),
        ("full", format!("3 0 1 {full256}")),
        ("bad", format!("3 1 1 {wrong}")),
        ("pkix", format!("1 1 1 {spki256}")),
    ] {
        z.push_str(&format!(
            "{name} IN MX 10 mx.{name}.example.\nmx.{name} IN A 127.74.1.2\n\
             _{p}._tcp.mx.{name} IN TLSA {tlsa}\n"
        ));
    }
    // An exchange that is an alias: the TLSA records of its CNAME's target count.
    z.push_str(&format!(
        "alias IN MX 10 mx.alias.example.\nmx.alias IN CNAME real.alias.example.\n\
         real.alias IN A 127.74.1.2\n_{p}._tcp.real.alias IN TLSA 3 1 1 {spki256}\n"
    ));
    let dns = Resolver::start(&z, "", |t| t);
    let domains = [
        "alias.example",
        "good.example",
        "sha512.example",
        "full.example",
        "bad.example",
        "pkix.example",
    ];
    let h = home(&domains, p, Some(&dns));
    for d in ["good", "sha512", "full"] {
        let (l, text) = remote(&h, NO_DNS, &format!("{d}.example"));
        assert_eq!(l, 'K', "{d}: {text}");
        assert!(
            text.contains(&format!(
                "certificate verified with the DANE TLSA records of _{p}._tcp.mx.{d}.example.\n"
            )),
            "{text}"
        );
    }
    let (l, text) = remote(&h, NO_DNS, "alias.example");
    assert_eq!(l, 'K', "{text}");
    assert!(
        text.contains(&format!(
            "certificate verified with the DANE TLSA records of _{p}._tcp.real.alias.example.\n"
        )),
        "{text}"
    );
    assert_eq!(s.transcripts(4).len(), 4);
    let (l, text) = remote(&h, NO_DNS, "bad.example");
    assert_eq!(l, 'Z', "{text}");
    assert_eq!(
        text,
        format!(
            "TLS unable to verify server with the DANE TLSA records of _{p}._tcp.mx.bad.example: \
             result-type=certificate-not-trusted (no TLSA record of _{p}._tcp.mx.bad.example \
             matches the server's certificate chain); connected to 127.74.1.2.\n"
        )
    );
    let t = &s.transcripts(5)[4];
    assert_eq!(t.commands, ["EHLO testhost.example", "STARTTLS"], "{t:?}");
    let (l, text) = remote(&h, NO_DNS, "pkix.example");
    assert_eq!(l, 'K', "{text}");
    assert!(
        text.contains(&format!(
            "certificate not verified (TLSA records of _{p}._tcp.mx.pkix.example unusable)"
        )),
        "{text}"
    );
    // Off by default: the same resolver through RQMAIL_NAMESERVERS, no control/dane.
    let plain = home(&domains, p, None);
    let (l, text) = remote(&plain, &dns.addr(), "bad.example");
    assert_eq!(l, 'K', "{text}");
    assert!(text.ends_with("certificate not verified.\n"), "{text}");
}

/// A server that does not offer STARTTLS gets no mail when TLSA records require TLS
/// (starttls-not-supported); qmail-remote goes on to the next MX, and defers when there is
/// none. The message never reaches the server without TLS.
#[test]
fn tls_required_next_mx() {
    let (plain, tls) = loop {
        let a = SmtpServer::start("127.74.2.2", r#""extensions": ["PIPELINING"]"#);
        if let Some(b) = SmtpServer::try_start("127.74.2.3", a.port, STARTTLS) {
            break (a, b);
        }
    };
    let p = plain.port;
    let spki = digest(&test_pki().join("mx.pem"), false, "sha256");
    let z = format!(
        "two IN MX 10 mx-a.example.\ntwo IN MX 20 mx-b.example.\none IN MX 10 mx-a.example.\n\
         mx-a IN A 127.74.2.2\nmx-b IN A 127.74.2.3\n\
         _{p}._tcp.mx-a IN TLSA 3 1 1 {spki}\n_{p}._tcp.mx-b IN TLSA 3 1 1 {spki}\n"
    );
    let dns = Resolver::start(&z, "", |t| t);
    let h = home(&["two.example", "one.example"], p, Some(&dns));
    let (l, text) = remote(&h, NO_DNS, "two.example");
    assert_eq!(l, 'K', "{text}");
    assert!(text.starts_with("127.74.2.3 accepted message."), "{text}");
    assert!(mail_sent(&tls));
    let (l, text) = remote(&h, NO_DNS, "one.example");
    assert_eq!(
        (l, text.as_str()),
        (
            'Z',
            format!(
                "No TLS achieved while DANE TLSA records for _{p}._tcp.mx-a.example exist \
                 (result-type=starttls-not-supported); connecting to 127.74.2.2.\n"
            )
            .as_str()
        )
    );
    assert!(!mail_sent(&plain));
}

/// DNSSEC failures: a bogus TLSA signature (unbound answers SERVFAIL) or a missing one in
/// the signed zone keeps qmail-remote from connecting at all (dnssec-invalid) and defers;
/// a bogus MX RRset defers; an unsigned zone (insecure) is today's opportunistic TLS even
/// with TLSA records that match nothing; a resolver that does not answer defers.
#[test]
fn dnssec_bogus_insecure_and_silent() {
    let s = SmtpServer::start("127.74.3.2", STARTTLS);
    let p = s.port;
    let wrong = "00".repeat(32);
    let z = format!(
        "bogus IN MX 10 mx.bogus.example.\nmx.bogus IN A 127.74.3.2\n_{p}._tcp.mx.bogus IN TLSA 3 1 1 {wrong}\n\
         nosig IN MX 10 mx.nosig.example.\nmx.nosig IN A 127.74.3.2\n_{p}._tcp.mx.nosig IN TLSA 3 1 1 {wrong}\n\
         bogusmx IN MX 10 mx.nosig.example.\n"
    );
    let insecure = format!(
        "@ IN MX 10 mx.example.net.\nmx IN A 127.74.3.2\n_{p}._tcp.mx IN TLSA 3 1 1 {wrong}\n"
    );
    let dns = Resolver::start(&z, &insecure, |t| {
        let t = tamper(&t, &format!("_{p}._tcp.mx.bogus.example."), "TLSA", false);
        let t = tamper(&t, &format!("_{p}._tcp.mx.nosig.example."), "TLSA", true);
        tamper(&t, "bogusmx.example.", "MX", false)
    });
    let h = home(
        &[
            "bogus.example",
            "nosig.example",
            "bogusmx.example",
            "example.net",
        ],
        p,
        Some(&dns),
    );
    for d in ["bogus", "nosig"] {
        let (l, text) = remote(&h, NO_DNS, &format!("{d}.example"));
        assert_eq!(
            (l, text.as_str()),
            (
                'Z',
                format!(
                    "DANE TLSA lookup for _{p}._tcp.mx.{d}.example failed (result-type=dnssec-invalid): \
                     SERVFAIL, a bogus DNSSEC answer or no answer; not connecting to 127.74.3.2.\n"
                )
                .as_str()
            )
        );
    }
    let (l, text) = remote(&h, NO_DNS, "bogusmx.example");
    assert_eq!(l, 'Z', "{text}");
    assert!(s.untouched(), "no connection for a DNSSEC failure");
    let (l, text) = remote(&h, NO_DNS, "example.net");
    assert_eq!(l, 'K', "{text}");
    assert!(text.ends_with("certificate not verified.\n"), "{text}");
    // A validating resolver that does not answer: a temporary failure.
    let quiet = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let hq = Home::new();
    hq.control("smtproutes", &format!("example.net::{p}\n"));
    hq.control("dane", &format!("{}\n", quiet.local_addr().expect("addr")));
    let (l, text) = remote(&hq, NO_DNS, "example.net");
    assert_eq!(l, 'Z', "{text}");
    // control/dane with something that is not an address: control files unreadable.
    hq.control("dane", "resolver.example\n");
    let (l, text) = remote(&hq, NO_DNS, "example.net");
    assert_eq!(
        (l, text.as_str()),
        ('Z', "Unable to read control files. (#4.3.0)\n")
    );
}

/// DANE-TA: a record that matches the certificate authority the server sends in its chain
/// (full certificate or public key) makes a verified delivery when the server's
/// certificate chains to it and names the MX host; a host name the certificate does not
/// have is certificate-host-mismatch; a record for another authority is
/// certificate-not-trusted.
#[test]
fn dane_ta_chain_and_name() {
    let pki = test_pki();
    let dir = scratch("rqmail-dane-ta-");
    let d = dir.path();
    let (key, leaf) = signed(
        d,
        "mxta",
        "/CN=mx.ta.example",
        &(pki.join("ca.key"), pki.join("ca.pem")),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:mx.ta.example\nextendedKeyUsage=serverAuth\n",
    );
    let mut chain = fs::read(&leaf).expect("leaf");
    chain.extend(fs::read(pki.join("ca.pem")).expect("ca"));
    fs::write(d.join("chain.pem"), chain).expect("chain");
    for f in ["chain.pem", "mxta.key"] {
        fs::set_permissions(d.join(f), fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let s = SmtpServer::start(
        "127.74.4.2",
        &format!(
            r#"{STARTTLS}, "cert": "{}", "key": "{}""#,
            d.join("chain.pem").display(),
            key.display()
        ),
    );
    let p = s.port;
    let ca_full = digest(&pki.join("ca.pem"), true, "sha256");
    let ca_key = digest(&pki.join("ca.pem"), false, "sha512");
    let other_ca = digest(&pki.join("ca2.pem"), true, "sha256");
    let z = format!(
        "ta IN MX 10 mx.ta.example.\nmx.ta IN A 127.74.4.2\n_{p}._tcp.mx.ta IN TLSA 2 0 1 {ca_full}\n\
         name IN MX 10 mx.name.example.\nmx.name IN A 127.74.4.2\n_{p}._tcp.mx.name IN TLSA 2 1 2 {ca_key}\n\
         cn IN MX 10 mx.cn.example.\nmx.cn IN CNAME mx.ta.example.\n\
         wrong IN MX 10 mx.wrong.example.\nmx.wrong IN A 127.74.4.2\n_{p}._tcp.mx.wrong IN TLSA 2 0 1 {other_ca}\n"
    );
    let dns = Resolver::start(&z, "", |t| t);
    let h = home(
        &["ta.example", "cn.example", "name.example", "wrong.example"],
        p,
        Some(&dns),
    );
    let (l, text) = remote(&h, NO_DNS, "ta.example");
    assert_eq!(l, 'K', "{text}");
    assert!(
        text.contains(&format!(
            "certificate verified with the DANE TLSA records of _{p}._tcp.mx.ta.example.\n"
        )),
        "{text}"
    );
    // An alias for the exchange: its target's TLSA records, and its target's name in the
    // certificate.
    let (l, text) = remote(&h, NO_DNS, "cn.example");
    assert_eq!(l, 'K', "{text}");
    assert!(
        text.contains(&format!("DANE TLSA records of _{p}._tcp.mx.ta.example.\n")),
        "{text}"
    );
    let (l, text) = remote(&h, NO_DNS, "name.example");
    assert_eq!(l, 'Z', "{text}");
    assert!(
        text.contains("result-type=certificate-host-mismatch"),
        "{text}"
    );
    let (l, text) = remote(&h, NO_DNS, "wrong.example");
    assert_eq!(l, 'Z', "{text}");
    assert!(
        text.contains("result-type=certificate-not-trusted"),
        "{text}"
    );
    // Only the verified delivery carried a message.
    assert_eq!(s.messages().len(), 2);
}

/// The whole path: qmail-send hands the message to qmail-rspawn and the real qmail-remote,
/// and the mail log's deferral line says why DANE forbade the delivery.
#[test]
fn deferral_reason_in_the_mail_log() {
    let s = SmtpServer::start("127.74.5.2", STARTTLS);
    let p = s.port;
    let wrong = "11".repeat(32);
    let z = format!(
        "far IN MX 10 mx.far.example.\nmx.far IN A 127.74.5.2\n_{p}._tcp.mx.far IN TLSA 3 1 1 {wrong}\n"
    );
    let dns = Resolver::start(&z, "", |t| t);
    let h = user_home();
    mail_dir(&h);
    fake_local(&h);
    fake_getpw(&h);
    h.control("smtproutes", &format!("far.example::{p}\n"));
    h.control("dane", &format!("{}\n", dns.addr()));
    let sys = System::start(&h);
    inject(
        &h,
        "Subject: dane\n\nx\n",
        "s@testhost.example",
        &["x@far.example"],
    );
    sys.wait_log("the deferral", |l| l.contains(": deferral: "));
    let lines = sys.stop();
    let line = lines
        .iter()
        .find(|l| l.contains(": deferral: "))
        .expect("deferral");
    assert!(
        line.ends_with(&format!(
            ": deferral: TLS_unable_to_verify_server_with_the_DANE_TLSA_records_of_\
             _{p}._tcp.mx.far.example:_result-type=certificate-not-trusted_(no_TLSA_record_of_\
             _{p}._tcp.mx.far.example_matches_the_server's_certificate_chain);_connected_to_\
             127.74.5.2./"
        )),
        "{line}"
    );
    assert!(!mail_sent(&s));
}
