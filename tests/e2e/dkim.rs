//! qmail-dkim: mail signed on its way to the queue, through qmail-inject and through
//! qmail-smtpd under tcpserver, checked by two independent verifiers, Debian's
//! opendkim-tools (`opendkim-testmsg`, `opendkim-testkey`) and python3-dkim
//! (`dkimverify`). The public keys are published by a real DNS server, dnsmasq, that the
//! verification starts in a private network and mount namespace (`unshare`) where
//! /etc/resolv.conf is bind-mounted to point at it on 127.0.0.1:53; nothing of the host's
//! DNS is used or changed. Both verifiers check RSA-SHA256 and Ed25519-SHA256 on Debian 12
//! (opendkim 2.11, and dkimpy with python3-nacl).
//!
//! The namespaces need root: as another user the tests that verify say so on stderr and
//! pass without checking, as the root-mode tests do. The tests of failures (keys that
//! cannot be read, messages that cannot be signed) run as anyone.

use rqmail_tests::fakes::checkpassword;
use rqmail_tests::queue::run_as_queue;
use rqmail_tests::single::{nobody, queue_with};
use rqmail_tests::smtp_peer::SmtpServer;
use rqmail_tests::{Home, KillOnDrop, bin, is_root, python, tool};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

// ------------------------------------------------------------------ keys

/// A private key file and the TXT record that publishes its public key.
struct Key {
    path: PathBuf,
    record: String,
}

/// Keys made once per test process with openssl.
struct Keys {
    rsa: Key,
    ed: Key,
    /// The RSA key in PKCS #1 form (`BEGIN RSA PRIVATE KEY`).
    rsa_pkcs1: Key,
    /// A 1024-bit RSA key, which ring refuses to sign with.
    rsa1024: Key,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool("openssl"))
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn b64(data: &[u8]) -> String {
    let out = Command::new(tool("base64"))
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(data)?;
            c.wait_with_output()
        })
        .expect("base64");
    String::from_utf8(out.stdout).expect("ascii")
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("dkim-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir keys");
        let p = |n: &str| d.join(n).display().to_string();
        let rsa = |bits: &str, name: &str| {
            openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                &format!("rsa_keygen_bits:{bits}"),
                "-out",
                &p(name),
            ]);
            let der = openssl(&["pkey", "-in", &p(name), "-pubout", "-outform", "DER"]);
            Key {
                path: d.join(name),
                record: format!("v=DKIM1; k=rsa; p={}", b64(&der)),
            }
        };
        let rsa2048 = rsa("2048", "rsa.pem");
        let rsa1024 = rsa("1024", "rsa1024.pem");
        openssl(&["genpkey", "-algorithm", "ed25519", "-out", &p("ed.pem")]);
        let der = openssl(&["pkey", "-in", &p("ed.pem"), "-pubout", "-outform", "DER"]);
        let ed = Key {
            path: d.join("ed.pem"),
            // RFC 8463: the 32 bytes of the key itself, the end of the DER form.
            record: format!("v=DKIM1; k=ed25519; p={}", b64(&der[der.len() - 32..])),
        };
        let pkcs1 = openssl(&["pkey", "-in", &p("rsa.pem"), "-traditional"]);
        assert!(pkcs1.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));
        fs::write(d.join("rsa-pkcs1.pem"), pkcs1).expect("pkcs1");
        let rsa_pkcs1 = Key {
            path: d.join("rsa-pkcs1.pem"),
            record: rsa2048.record.clone(),
        };
        for e in fs::read_dir(&d).expect("keys").flatten() {
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o644));
        }
        Keys {
            rsa: rsa2048,
            ed,
            rsa_pkcs1,
            rsa1024,
        }
    })
}

/// One line of control/dkimkeys: pattern, selector, key, signing domain.
type KeyLine<'a> = (&'a str, &'a str, &'a Key, Option<&'a str>);

/// Writes control/dkimkeys with the keys copied to control/dkim/SELECTOR.key.
fn set_keys(h: &Home, lines: &[KeyLine]) {
    let dir = h.path().join("control/dkim");
    fs::create_dir_all(&dir).expect("mkdir control/dkim");
    let mut text = String::from("# pattern:selector:keyfile[:signing-domain]\n");
    for (pattern, sel, key, domain) in lines {
        fs::copy(&key.path, dir.join(format!("{sel}.key"))).expect("copy key");
        text.push_str(&format!("{pattern}:{sel}:control/dkim/{sel}.key"));
        if let Some(d) = domain {
            text.push_str(&format!(":{d}"));
        }
        text.push('\n');
    }
    h.control("dkimkeys", &text);
}

/// A home signing mail from example.com with an RSA key (selector rsa1) and an Ed25519
/// key (ed1).
fn rsa_and_ed25519_home() -> (&'static Keys, Home) {
    let k = keys();
    let h = Home::new();
    set_keys(
        &h,
        &[
            ("example.com", "rsa1", &k.rsa, None),
            ("example.com", "ed1", &k.ed, None),
        ],
    );
    (k, h)
}

/// The DNS records for [`rsa_and_ed25519_home`].
fn rsa_and_ed25519_records(k: &Keys) -> [(String, String); 2] {
    [
        record("rsa1", "example.com", &k.rsa),
        record("ed1", "example.com", &k.ed),
    ]
}

// ------------------------------------------------------------------ verification

/// A TXT record: `SELECTOR._domainkey.DOMAIN` and its text.
fn record(selector: &str, domain: &str, key: &Key) -> (String, String) {
    (
        format!("{selector}._domainkey.{domain}"),
        key.record.clone(),
    )
}

/// What the verifiers said about one message.
#[derive(Debug)]
struct Verdict {
    /// dkimverify's verdict on each signature, top to bottom.
    dkimpy: Vec<bool>,
    /// opendkim-testmsg's on each signature (the message with only that one).
    opendkim: Vec<bool>,
    /// Everything they printed.
    log: String,
}

impl Verdict {
    fn all_pass(&self) -> bool {
        !self.dkimpy.is_empty()
            && self.dkimpy.iter().all(|&v| v)
            && self.opendkim.iter().all(|&v| v)
    }

    fn all_fail(&self) -> bool {
        !self.dkimpy.is_empty()
            && self.dkimpy.iter().all(|&v| !v)
            && self.opendkim.iter().all(|&v| !v)
    }
}

/// The message as it goes on the wire: each LF as CR LF.
fn wire(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 40);
    for &c in msg {
        if c == b'\n' {
            out.push(b'\r');
        }
        out.push(c);
    }
    out
}

/// The DKIM-Signature fields of a message (qmail form), each with its continuation lines.
fn signature_fields(msg: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(msg);
    let header = text.split("\n\n").next().unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    let mut in_sig = false;
    for line in header.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if in_sig && let Some(s) = out.last_mut() {
                s.push('\n');
                s.push_str(line);
            }
            continue;
        }
        in_sig = line.to_ascii_lowercase().starts_with("dkim-signature:");
        if in_sig {
            out.push(line.to_string());
        }
    }
    out
}

/// The message with every DKIM-Signature field but the `keep`-th removed.
fn only_signature(msg: &[u8], keep: usize) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(msg).into_owned();
    for (i, f) in signature_fields(msg).iter().enumerate() {
        if i != keep {
            text = text.replacen(&format!("{f}\n"), "", 1);
        }
    }
    text.into_bytes()
}

/// The shell script run in the namespaces: the loopback up, resolv.conf pointing at
/// 127.0.0.1, dnsmasq with the records, then each verifier on each message file.
const VERIFY_SCRIPT: &str = r#"
set -u
dir=$1; shift
ip link set lo up || { echo "setup: ip failed"; exit 0; }
echo "nameserver 127.0.0.1" > "$dir/resolv.conf"
mount --bind "$dir/resolv.conf" /etc/resolv.conf || { echo "setup: mount failed"; exit 0; }
dnsmasq --no-resolv --no-hosts --port=53 --listen-address=127.0.0.1 --bind-interfaces \
    --user=nobody --group=nogroup --pid-file="$dir/dnsmasq.pid" \
    --log-facility="$dir/dnsmasq.log" --log-queries "$@" \
    || { echo "setup: dnsmasq failed"; exit 0; }
for m in "$dir"/msg-*; do
    name=${m##*/}
    case $name in
    *.py-*) i=${name##*.py-}
        dkimverify --index "$i" < "$m" > "$m.out" 2>&1
        echo "dkimpy ${name%.py-*} $i $?" ;;
    *.od-*) i=${name##*.od-}
        opendkim-testmsg < "$m" > "$m.out" 2>&1
        echo "opendkim ${name%.od-*} $i $?" ;;
    esac
    sed "s/^/  $name: /" "$m.out"
done
# opendkim-testkey resolves with libunbound, which ignores resolv.conf.
echo "Nameservers 127.0.0.1" > "$dir/opendkim.conf"
for k in "$dir"/testkey-*; do
    [ -e "$k" ] || continue
    read -r domain selector keyfile < "$k"
    opendkim-testkey -x "$dir/opendkim.conf" -d "$domain" -s "$selector" -k "$keyfile" \
        -vvv > "$k.out" 2>&1
    echo "testkey ${k##*/} 0 $?"
    sed "s/^/  ${k##*/}: /" "$k.out"
done
kill "$(cat "$dir/dnsmasq.pid")"
"#;

/// Runs both verifiers on each message (qmail form), with `records` published by
/// dnsmasq; also `opendkim-testkey` on each `(domain, selector, key file)` of `testkeys`.
/// Returns a verdict per message and the testkey results.
fn verify_all(
    records: &[(String, String)],
    msgs: &[&[u8]],
    testkeys: &[(&str, &str, &Path)],
) -> (Vec<Verdict>, Vec<bool>, String) {
    let dir = tempfile::Builder::new()
        .prefix("rqmail-dkim-verify-")
        .tempdir()
        .expect("tempdir");
    let d = dir.path();
    fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
    for (n, m) in msgs.iter().enumerate() {
        let count = signature_fields(m).len();
        for i in 0..count {
            fs::write(d.join(format!("msg-{n}.py-{i}")), wire(m)).expect("write");
            let one = wire(&only_signature(m, i));
            fs::write(d.join(format!("msg-{n}.od-{i}")), one).expect("write");
        }
    }
    for (n, (domain, sel, key)) in testkeys.iter().enumerate() {
        fs::write(
            d.join(format!("testkey-{n}")),
            format!("{domain} {sel} {}\n", key.display()),
        )
        .expect("write");
    }
    let mut args: Vec<String> = Vec::new();
    let mut zones: Vec<String> = Vec::new();
    for (name, txt) in records {
        args.push(format!("--txt-record={name},{txt}"));
        let zone = name
            .split("._domainkey.")
            .nth(1)
            .unwrap_or(name)
            .to_string();
        if !zones.contains(&zone) {
            args.push(format!("--local=/{zone}/"));
            zones.push(zone);
        }
    }
    let script = d.join("verify.sh");
    fs::write(&script, VERIFY_SCRIPT).expect("script");
    let out = Command::new(tool("unshare"))
        .args(["--net", "--mount", "--"])
        .arg("/bin/sh")
        .arg(&script)
        .arg(d)
        .args(&args)
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .output()
        .expect("run unshare");
    let log = format!(
        "{}{}\ndnsmasq: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(d.join("dnsmasq.log")).unwrap_or_default()
    );
    assert!(
        out.status.success() && !log.contains("setup:"),
        "verification setup failed: {log}"
    );
    let mut verdicts: Vec<Verdict> = msgs
        .iter()
        .map(|m| Verdict {
            dkimpy: vec![false; signature_fields(m).len()],
            opendkim: vec![false; signature_fields(m).len()],
            log: log.clone(),
        })
        .collect();
    let mut testkey = vec![false; testkeys.len()];
    for line in log.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        if w.len() != 4 {
            continue;
        }
        let ok = w[3] == "0";
        let (Ok(i), Some(n)) = (w[2].parse::<usize>(), w[1].rsplit('-').next()) else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        match w[0] {
            "dkimpy" => verdicts[n].dkimpy[i] = ok,
            "opendkim" => verdicts[n].opendkim[i] = ok,
            "testkey" => testkey[n] = ok,
            _ => {}
        }
    }
    (verdicts, testkey, log)
}

fn verify(records: &[(String, String)], msgs: &[&[u8]]) -> Vec<Verdict> {
    verify_all(records, msgs, &[]).0
}

/// True when the namespaces can be made; says why not otherwise.
fn can_verify(test: &str) -> bool {
    if !is_root() {
        eprintln!("{test}: the verifiers' namespaces need root");
    }
    is_root()
}

// ------------------------------------------------------------------ running

/// qmail-inject through qmail-dkim: returns (exit code, stderr).
fn inject(h: &Home, msg: &str, rcpts: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = h.cmd("qmail-inject");
    c.env("QMAILQUEUE", bin("qmail-dkim"))
        .arg("-fsender@example.com")
        .args(rcpts);
    for (k, v) in env {
        c.env(k, v);
    }
    let (code, _, err) = rqmail_tests::run_with_input(c, msg.as_bytes());
    (code, String::from_utf8_lossy(&err).into_owned())
}

/// qmail-dkim run directly with the message on descriptor 0, an envelope on descriptor
/// 1 and `env` added: (exit code, stderr).
fn dkim_direct(h: &Home, msg: &[u8], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = h.cmd("qmail-dkim");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stderr(Stdio::piped());
    let envelope = b"Fsender@example.com\0Trcpt@example.net\0\0";
    let (code, _, err) = run_as_queue(c, msg, envelope);
    (code, text(&err))
}

/// The one message queued since the last call (ids in `seen`), which it adds to `seen`.
fn take_new(h: &Home, seen: &mut Vec<u64>) -> Vec<u8> {
    let new: Vec<_> = h
        .queued()
        .into_iter()
        .filter(|q| !seen.contains(&q.id))
        .collect();
    assert_eq!(new.len(), 1, "messages queued since the last look");
    seen.push(new[0].id);
    new[0].mess.clone()
}

/// The message without qmail-queue's Received line.
fn after_received(m: &[u8]) -> &[u8] {
    m.iter()
        .position(|&c| c == b'\n')
        .map_or(m, |i| &m[i + 1..])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const MSG: &str = "From: Alice Example <alice@example.com>\n\
    To: Bob <bob@example.net>\n\
    Subject: signed on the way out\n\
    \n\
    Hello,  Bob.\t \n\
    \n\
    A line with trailing space   \n\
    \n\
    \n";

// ------------------------------------------------------------------ the tests

#[test]
fn injected_mail_is_signed_with_rsa_and_ed25519_and_both_verifiers_agree() {
    let (k, h) = rsa_and_ed25519_home();
    let (code, err) = inject(&h, MSG, &["bob@example.net"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "");
    let both = take_new(&h, &mut Vec::new());
    let sigs = signature_fields(&both);
    assert_eq!(sigs.len(), 2, "{}", text(&both));
    assert!(sigs[0].contains("a=rsa-sha256;") && sigs[0].contains("s=rsa1;"));
    assert!(sigs[1].contains("a=ed25519-sha256;") && sigs[1].contains("s=ed1;"));
    for s in &sigs {
        assert!(s.contains("c=relaxed/relaxed;") && s.contains("d=example.com;"));
        // From, To and Subject oversigned; Cc, absent, signed as absent.
        let h_tag: String = s
            .split("h=")
            .nth(1)
            .and_then(|t| t.split(';').next())
            .expect("h=")
            .split_whitespace()
            .collect();
        assert!(h_tag.starts_with("from:from:reply-to:subject:subject:date:date:to:to:cc:"));
    }
    // The queued message is qmail-queue's Received line, the signatures, the message.
    let lines: Vec<String> = text(&both).lines().map(str::to_string).collect();
    assert!(lines[0].starts_with("Received: (qmail "), "{}", text(&both));
    assert!(lines[1].starts_with("DKIM-Signature: "), "{}", text(&both));

    // qmail-inject's own fields (Date, Message-ID) are signed too; now tamper.
    let added_subject = text(&both).replacen("Subject:", "Subject: you won\nSubject:", 1);
    let added_from = text(&both).replacen("From:", "From: <mallory@example.com>\nFrom:", 1);
    let changed_body = text(&both).replacen("Hello,", "Hullo,", 1);
    let refolded = text(&both)
        .replacen(
            "Subject: signed on the way out",
            "Subject:   signed\n  on the way out",
            1,
        )
        .replacen("Hello,  Bob.", "Hello, Bob.", 1);
    if !can_verify("injected_mail_is_signed...") {
        return;
    }
    let dns = rsa_and_ed25519_records(k);
    let v = verify(
        &dns,
        &[
            &both,
            added_subject.as_bytes(),
            added_from.as_bytes(),
            changed_body.as_bytes(),
            refolded.as_bytes(),
        ],
    );
    assert!(v[0].all_pass(), "{v:#?}");
    assert_eq!(v[0].dkimpy.len(), 2);
    // Oversigning: a second Subject or From breaks both signatures; so does the body.
    assert!(v[1].all_fail(), "{:?}\n{}", v[1], v[1].log);
    assert!(v[2].all_fail(), "{:?}", v[2]);
    assert!(v[3].all_fail(), "{:?}", v[3]);
    // Relaxed canonicalisation: refolding and white space changes do not.
    assert!(v[4].all_pass(), "{:?}\n{}", v[4], v[4].log);
}

#[test]
fn pkcs1_keys_subdomains_and_the_fallback_domain() {
    let k = keys();
    let h = Home::new();
    set_keys(
        &h,
        &[
            ("example.com", "plain", &k.rsa_pkcs1, None),
            (".example.com", "sub", &k.ed, None),
            ("*", "relay", &k.rsa, Some("relay.example.net")),
        ],
    );
    let msgs = [
        ("alice@example.com", "d=example.com;", "s=plain;"),
        ("news@mail.Example.COM", "d=example.com;", "s=sub;"),
        ("someone@customer.test", "d=relay.example.net;", "s=relay;"),
    ];
    let mut seen = Vec::new();
    let mut q = Vec::new();
    for (from, d, s) in msgs {
        let m = format!("From: <{from}>\nDate: 6 Dec 2026 10:00:00 -0000\nSubject: x\n\nbody\n");
        assert_eq!(inject(&h, &m, &["r@example.net"], &[]).0, 0);
        let got = take_new(&h, &mut seen);
        let sig = signature_fields(&got);
        assert_eq!(sig.len(), 1, "{from}");
        assert!(
            sig[0].contains(d) && sig[0].contains(s),
            "{from}: {}",
            sig[0]
        );
        q.push(got);
    }
    if !can_verify("pkcs1_keys_subdomains_and_the_fallback_domain") {
        return;
    }
    // Two records as the dkim library writes them (SigningKey::dns_record), for
    // opendkim-testkey and the verifiers to check against the private keys.
    let ours = |key: &Key| {
        dkim::SigningKey::from_pem(&fs::read(&key.path).expect("key"))
            .expect("key")
            .dns_record()
    };
    assert_eq!(ours(&k.rsa_pkcs1), k.rsa.record);
    assert_eq!(ours(&k.ed), k.ed.record);
    let dns = [
        (
            "plain._domainkey.example.com".to_string(),
            ours(&k.rsa_pkcs1),
        ),
        ("sub._domainkey.example.com".to_string(), ours(&k.ed)),
        record("relay", "relay.example.net", &k.rsa),
    ];
    let (v, testkey, log) = verify_all(
        &dns,
        &[&q[0], &q[1], &q[2]],
        &[
            // opendkim-testkey 2.11 checks RSA keys only ("expecting an rsa key"); the
            // Ed25519 record is checked by the verifications above.
            ("example.com", "plain", &k.rsa_pkcs1.path),
            ("relay.example.net", "relay", &k.rsa.path),
        ],
    );
    for x in &v {
        assert!(x.all_pass(), "{x:#?}");
    }
    assert_eq!(testkey, [true, true], "{log}");
}

#[test]
fn unlisted_domains_and_strangers_are_not_signed() {
    let k = keys();
    let h = Home::new();
    set_keys(&h, &[("example.com", "rsa1", &k.rsa, None)]);
    // A domain without keys: queued as it came, nothing said.
    let mut seen = Vec::new();
    let m = "From: a@other.example\nSubject: x\n\nbody\n";
    let (code, err) = dkim_direct(&h, m.as_bytes(), &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(after_received(&take_new(&h, &mut seen)), m.as_bytes());
    // A network client that is not a relay client: not even read by qmail-dkim.
    let m2 = "From: spoof@example.com\nSubject: x\n\nbody\n";
    let (code, err) = dkim_direct(&h, m2.as_bytes(), &[("TCPREMOTEIP", "192.0.2.7")]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(after_received(&take_new(&h, &mut seen)), m2.as_bytes());
    // The same client with RELAYCLIENT, or with SMTPAUTHUSER, is signed.
    for env in [
        [("TCPREMOTEIP", "192.0.2.7"), ("RELAYCLIENT", "")],
        [("TCPREMOTEIP", "192.0.2.7"), ("SMTPAUTHUSER", "joe")],
    ] {
        assert_eq!(dkim_direct(&h, m2.as_bytes(), &env).0, 0);
        assert_eq!(signature_fields(&take_new(&h, &mut seen)).len(), 1);
    }
    // No control/dkimkeys at all: nothing is signed.
    h.remove_control("dkimkeys");
    assert_eq!(dkim_direct(&h, m2.as_bytes(), &[]).0, 0);
    assert_eq!(after_received(&take_new(&h, &mut seen)), m2.as_bytes());
}

#[test]
fn messages_that_cannot_be_signed_are_queued_unsigned_with_a_log_line() {
    let k = keys();
    let h = Home::new();
    set_keys(&h, &[("example.com", "rsa1", &k.rsa, None)]);
    let huge = format!(
        "From: a@example.com\nX-Long: {}\n\nbody\n",
        "y".repeat(300 * 1024)
    );
    let cases: [(&str, &str); 7] = [
        ("Subject: no author\n\nbody\n", "no From: field"),
        (
            "From: a@example.com\nFrom: b@example.com\n\nbody\n",
            "2 From: fields",
        ),
        (
            "From: a@example.com\nthis line is not a field\n\nbody\n",
            "header line 2 is not a field (no colon)",
        ),
        (
            "  continued\nFrom: a@example.com\n\nbody\n",
            "header section starts with a continuation line",
        ),
        (
            "From: Alice <alice\n\nbody\n",
            "From: field unreadable: unclosed comment, quote, literal or angle address",
        ),
        (
            "From: a@[192.0.2.1]\n\nbody\n",
            "From: address has an address literal",
        ),
        (&huge, "header section longer than 262144 bytes"),
    ];
    let mut seen = Vec::new();
    for (msg, why) in cases {
        let (code, err) = dkim_direct(&h, msg.as_bytes(), &[]);
        assert_eq!(code, 0, "{why}: {err}");
        assert_eq!(err, format!("qmail-dkim: message not signed: {why}\n"));
        assert_eq!(after_received(&take_new(&h, &mut seen)), msg.as_bytes());
    }
}

#[test]
fn key_trouble_is_a_temporary_failure_and_nothing_is_queued() {
    let k = keys();
    let h = Home::new();
    let msg = "From: a@example.com\nSubject: x\n\nbody\n";
    let fails = |h: &Home, expect_log: &str| {
        let (code, err) = inject(h, msg, &["r@example.net"], &[]);
        assert_eq!(code, 111, "{err}");
        assert!(
            err.contains(expect_log)
                && err.contains("qmail-inject: fatal: qq unable to read configuration (#4.3.0)"),
            "{err}"
        );
        assert!(h.queue_files().is_empty(), "{:?}", h.queue_files());
    };
    // A key file that is missing.
    set_keys(&h, &[("example.com", "rsa1", &k.rsa, None)]);
    fs::remove_file(h.path().join("control/dkim/rsa1.key")).expect("rm");
    fails(&h, "qmail-dkim: unable to read ");
    // Not a key; a key that is a directory; a key ring refuses (1024 bits).
    fs::write(h.path().join("control/dkim/rsa1.key"), "not a key\n").expect("write");
    fails(&h, "rsa1.key: no PEM private key");
    fs::remove_file(h.path().join("control/dkim/rsa1.key")).expect("rm");
    fs::create_dir(h.path().join("control/dkim/rsa1.key")).expect("mkdir");
    fails(&h, "rsa1.key: Is a directory");
    fs::remove_dir(h.path().join("control/dkim/rsa1.key")).expect("rmdir");
    set_keys(&h, &[("example.com", "small", &k.rsa1024, None)]);
    fails(&h, "small.key: key refused");
    // The second of two keys broken: no half-signed message either.
    set_keys(
        &h,
        &[
            ("example.com", "rsa1", &k.rsa, None),
            ("example.com", "ed1", &k.ed, None),
        ],
    );
    fs::write(h.path().join("control/dkim/ed1.key"), "").expect("truncate");
    fails(&h, "ed1.key: no PEM private key");
    // A line of control/dkimkeys that makes no sense; the file unreadable.
    h.control(
        "dkimkeys",
        "example.com:rsa1:control/dkim/rsa1.key\nexample.com\n",
    );
    fails(
        &h,
        "qmail-dkim: control/dkimkeys line 2: not pattern:selector:keyfile",
    );
    fs::remove_file(h.path().join("control/dkimkeys")).expect("rm");
    fs::create_dir(h.path().join("control/dkimkeys")).expect("mkdir");
    fails(&h, "qmail-dkim: unable to read control/dkimkeys");
    fs::remove_dir(h.path().join("control/dkimkeys")).expect("rmdir");

    // Through qmail-smtpd the client hears 451 and the same words.
    set_keys(&h, &[("example.com", "rsa1", &k.rsa, None)]);
    fs::write(h.path().join("control/dkim/rsa1.key"), "junk").expect("write");
    let mut c = h.cmd("qmail-smtpd");
    c.env("QMAILQUEUE", bin("qmail-dkim"))
        .env("RELAYCLIENT", "");
    let (_, out, err) = rqmail_tests::run_with_input(
        c,
        b"HELO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n\
          From: a@example.com\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    );
    assert!(
        text(&out).contains("\r\n451 qq unable to read configuration (#4.3.0)\r\n"),
        "{}",
        text(&out)
    );
    assert!(
        text(&err).contains("rsa1.key: no PEM private key"),
        "{}",
        text(&err)
    );
    assert!(h.queue_files().is_empty());
}

#[test]
fn a_key_only_the_owner_can_read_is_a_temporary_failure_for_others() {
    // Single-user mode as nobody (when root), the key readable by nobody: the same
    // temporary failure, nothing queued. (As root the file's mode would not stop us.)
    if !is_root() {
        eprintln!("a_key_only_the_owner_can_read...: needs root to run as nobody");
        return;
    }
    let k = keys();
    let h = Home::new();
    set_keys(&h, &[("example.com", "rsa1", &k.rsa, None)]);
    let (uid, gid) = nobody();
    h.chown_all(uid, gid);
    let key = h.path().join("control/dkim/rsa1.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o000)).expect("chmod");
    let mut c = rqmail_tests::single::user_cmd(h.path(), &bin("qmail-inject"));
    c.env("QMAILQUEUE", bin("qmail-dkim")).arg("r@example.net");
    let (code, _, err) = rqmail_tests::run_with_input(c, b"From: a@example.com\n\nbody\n");
    let err = text(&err);
    assert_eq!(code, 111, "{err}");
    assert!(err.contains("rsa1.key: Permission denied"), "{err}");
    assert!(h.queue_files().is_empty());
}

#[test]
fn the_queue_programs_exit_code_and_envelope_pass_through() {
    let k = keys();
    let h = Home::new();
    set_keys(&h, &[("example.com", "rsa1", &k.rsa, None)]);
    let msg = "From: a@example.com\nSubject: x\n\nbody\n";
    // DKIMQUEUE names the next program; its verdict is the client's.
    let refuse = h.path().join("refuse");
    fs::write(&refuse, "#!/bin/sh\ncat >/dev/null\nexit 31\n").expect("write");
    fs::set_permissions(&refuse, fs::Permissions::from_mode(0o755)).expect("chmod");
    let refuse_s = refuse.display().to_string();
    let (code, err) = inject(&h, msg, &["r@example.net"], &[("DKIMQUEUE", &refuse_s)]);
    assert_eq!(code, 100, "{err}");
    assert!(
        err.contains("mail server permanently rejected message (#5.3.0)"),
        "{err}"
    );
    let (code, err) = inject(
        &h,
        msg,
        &["r@example.net"],
        &[("DKIMQUEUE", "/nonexistent/qq")],
    );
    assert_eq!(code, 111, "{err}");
    assert!(
        err.contains("qmail-dkim: unable to run /nonexistent/qq"),
        "{err}"
    );
    assert!(err.contains("unable to exec qq (#4.3.0)"), "{err}");
    // The next program gets the signed message on descriptor 0 and qmail-inject's
    // envelope, unchanged, on descriptor 1.
    let dump = h.path().join("dump");
    fs::write(
        &dump,
        format!(
            "#!/bin/sh\ncat > {0}/got.msg\ncat <&1 > {0}/got.env\n",
            h.path().display()
        ),
    )
    .expect("write");
    fs::set_permissions(&dump, fs::Permissions::from_mode(0o755)).expect("chmod");
    let dump_s = dump.display().to_string();
    let (code, err) = inject(
        &h,
        msg,
        &["r@example.net", "s@example.org"],
        &[("DKIMQUEUE", &dump_s)],
    );
    assert_eq!(code, 0, "{err}");
    let got = fs::read(h.path().join("got.msg")).expect("got.msg");
    assert!(got.starts_with(b"DKIM-Signature: v=1; a=rsa-sha256;"));
    assert!(text(&got).contains("\nFrom: a@example.com\nSubject: x\n"));
    assert_eq!(
        fs::read(h.path().join("got.env")).expect("got.env"),
        b"Fsender@example.com\0Tr@example.net\0Ts@example.org\0\0"
    );
    assert!(h.queue_files().is_empty());
}

#[test]
fn large_messages_stream_through_bounded_memory() {
    let (k, h) = rsa_and_ed25519_home();
    // 24 MB of body, with long lines, white space runs and empty lines.
    let mut msg = String::from("From: big@example.com\nDate: 6 Dec 2026 10:00:00 -0000\n\n");
    let line = format!("{}  \t {}\n\n", "x".repeat(800), "y".repeat(100));
    while msg.len() < 24 * 1024 * 1024 {
        msg.push_str(&line);
    }
    // qmail-dkim and the qmail-queue it execs, with 8 MB for all their data.
    let mut c = Command::new(tool("prlimit"));
    c.arg("--data=8000000")
        .arg(bin("qmail-dkim"))
        .env_clear()
        .env("QMAIL_HOME", h.path())
        .current_dir(h.path());
    let code = queue_with(c, msg.as_bytes(), "big@example.com", &["r@example.net"]);
    assert_eq!(code, 0);
    let q = take_new(&h, &mut Vec::new());
    assert_eq!(signature_fields(&q).len(), 2);
    assert!(q.ends_with(line.as_bytes()));
    if !can_verify("large_messages_stream_through_bounded_memory") {
        return;
    }
    let dns = rsa_and_ed25519_records(k);
    let v = verify(&dns, &[&q]);
    assert!(v[0].all_pass(), "{:?}", v[0].dkimpy);
}

// ------------------------------------------------------------------ qmail-smtpd

/// qmail-smtpd under tcpserver with QMAILQUEUE set to a wrapper that records
/// SMTPAUTHUSER (or `-`) in `authuser.log` and execs qmail-dkim.
fn smtpd(h: &Home, env: &[(&str, &str)], args: &[String]) -> (KillOnDrop, u16) {
    let wrapper = h.path().join("qq-wrapper");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"${{SMTPAUTHUSER--}}\" >> {}/authuser.log\nexec {}\n",
            h.path().display(),
            bin("qmail-dkim").display()
        ),
    )
    .expect("write");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
    let wrapper = wrapper.display().to_string();
    let mut env = env.to_vec();
    env.push(("QMAILQUEUE", &wrapper));
    let smtpd = bin("qmail-smtpd");
    let mut program: Vec<&Path> = vec![&smtpd];
    program.extend(args.iter().map(Path::new));
    rqmail_tests::tcpserver(h, &env, &program)
}

fn swaks(port: u16, args: &[&str]) -> String {
    let out = Command::new(tool("swaks"))
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--ehlo", "client.example", "--timeout", "30"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("swaks");
    let t = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{t}");
    t
}

#[test]
fn smtp_auth_and_relay_clients_are_signed_strangers_are_not() {
    let (k, h) = rsa_and_ed25519_home();
    h.control("rcpthosts", "testhost.example\n");
    // SMTP AUTH (in plaintext: FORCETLS=0). The tcpserver environment carries a forged
    // SMTPAUTHUSER, which qmail-smtpd must not pass on for a client that did not
    // authenticate.
    let auth = vec![
        "testhost.example".to_string(),
        checkpassword(h.path()).display().to_string(),
        "/bin/true".to_string(),
    ];
    let mut seen = Vec::new();
    let (srv, port) = smtpd(&h, &[("FORCETLS", "0"), ("SMTPAUTHUSER", "forged")], &auth);
    swaks(
        port,
        &[
            "--from",
            "joe@example.com",
            "--to",
            "far@remote.example",
            "--auth",
            "PLAIN",
            "--auth-user",
            "joe",
            "--auth-password",
            "secret",
        ],
    );
    let authed = take_new(&h, &mut seen);
    // A stranger: to a local recipient, with a From: of ours.
    swaks(
        port,
        &[
            "--from",
            "spoof@example.com",
            "--to",
            "local@testhost.example",
        ],
    );
    let stranger = take_new(&h, &mut seen);
    drop(srv);
    // A relay client (RELAYCLIENT from tcpserver's rules), with Python's smtplib.
    let (_srv, port) = smtpd(&h, &[("RELAYCLIENT", "")], &[]);
    let script = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.example", timeout=30)
msg = "From: Bob <bob@example.com>\r\nTo: far@remote.example\r\nSubject: relayed\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nvia a relay client\r\n"
print(s.sendmail("bob@example.com", ["far@remote.example"], msg))
s.quit()
"#;
    let out = Command::new(python())
        .args(["-c", script, &port.to_string()])
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", text(&out.stderr));

    let log = fs::read_to_string(h.path().join("authuser.log")).expect("log");
    assert_eq!(log, "joe\n-\n-\n");
    let relayed = take_new(&h, &mut seen);
    assert_eq!(signature_fields(&authed).len(), 2, "{}", text(&authed));
    assert!(
        signature_fields(&stranger).is_empty(),
        "{}",
        text(&stranger)
    );
    assert_eq!(signature_fields(&relayed).len(), 2, "{}", text(&relayed));
    // qmail-smtpd's Received line comes after the signatures (it is not signed).
    assert!(text(&relayed).contains("\nReceived: from unknown (HELO client.example)"));
    if !can_verify("smtp_auth_and_relay_clients_are_signed_strangers_are_not") {
        return;
    }
    let dns = rsa_and_ed25519_records(k);
    let v = verify(&dns, &[&authed, &relayed]);
    assert!(v[0].all_pass(), "{:#?}", v[0]);
    assert!(v[1].all_pass(), "{:#?}", v[1]);
}

// ------------------------------------------------------------------ root mode

#[test]
fn setuid_qmail_dkim_reads_keys_its_invoker_cannot() {
    use crate::rootmode::{install_root_home, lock_root_home, run_as, todo_ids};
    use rqmail_tests::user_ids;
    use std::os::unix::fs::{MetadataExt, chown};
    if !can_verify("setuid_qmail_dkim_reads_keys_its_invoker_cannot") {
        return;
    }
    let k = keys();
    let _g = lock_root_home();
    let home = install_root_home();
    let prog = home.join("bin/qmail-dkim");
    let meta = fs::metadata(&prog).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the README's test command builds qmail-dkim with the setuid home)",
            prog.display()
        )
    });
    let (qmailq, _) = user_ids("qmailq");
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o4711, qmailq));
    // The key readable by qmailq alone; the invoker is nobody.
    let dir = home.join("control/dkim");
    fs::create_dir_all(&dir).expect("mkdir");
    let key = dir.join("rsa1.key");
    fs::copy(&k.rsa.path, &key).expect("copy");
    chown(&key, Some(qmailq), None).expect("chown");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).expect("chmod");
    fs::write(
        home.join("control/dkimkeys"),
        "example.com:rsa1:control/dkim/rsa1.key\n",
    )
    .expect("dkimkeys");
    let cat = Command::new(tool("setpriv"))
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(tool("cat"))
        .arg(&key)
        .output()
        .expect("cat");
    assert!(!cat.status.success(), "nobody can read the key");

    let msg = b"From: a@example.com\nDate: 6 Dec 2026 10:00:00 -0000\nSubject: x\n\nbody\n";
    let env = b"Fa@example.com\0Tr@example.net\0\0";
    // QMAIL_HOME points elsewhere: a setuid qmail-dkim uses its compiled-in home.
    let code = run_as("nobody", Path::new("/nonexistent"), &prog, msg, env);
    assert_eq!(code, 0);
    let ids = todo_ids(&home);
    assert_eq!(ids.len(), 1);
    let q = qmail_queue::Queue::in_home(&home);
    let mess = fs::read(q.mess(ids[0])).expect("mess");
    // qmail-queue still sees nobody as the invoker.
    let (nobody_uid, _) = user_ids("nobody");
    assert!(
        text(&mess).starts_with("Received: (qmail ")
            && text(&mess).contains(&format!(" invoked by uid {nobody_uid}); ")),
        "{}",
        text(&mess)
    );
    assert_eq!(signature_fields(&mess).len(), 1, "{}", text(&mess));
    let v = verify(&[record("rsa1", "example.com", &k.rsa)], &[&mess]);
    assert!(v[0].all_pass(), "{:#?}", v[0]);

    // A key qmailq cannot read either (root's, mode 0400): a temporary failure.
    chown(&key, Some(0), None).expect("chown");
    let code = run_as("nobody", Path::new("/nonexistent"), &prog, msg, env);
    assert_eq!(code, 55);
    assert_eq!(todo_ids(&home).len(), 1);
}

// ------------------------------------------------------------------ on the wire

#[test]
fn what_qmail_remote_sends_is_what_was_signed() {
    // The signatures are computed on the message as qmail-remote will send it: every LF
    // as CR LF, nothing else changed. Check that against qmail-remote itself, with lines
    // that need dot-stuffing and 8-bit text, given to qmail-inject with CR LF line ends
    // and a lone CR, which qmail-dkim stores as plain line ends (RFC 6376 section 5.3):
    // OpenDKIM would otherwise read the CRs differently from dkimpy.
    let (k, h) = rsa_and_ed25519_home();
    let msg = "From: a@example.com\r\nDate: 6 Dec 2026 10:00:00 -0000\r\nSubject: wire\r\n\r\n\
               .leading dot\r\n..two\r\n.\r\nlone\rCR\r\ncaf\u{e9}  \t\r\n\r\n";
    let (code, err) = inject(&h, msg, &["r@remote.example"], &[]);
    assert_eq!(code, 0, "{err}");
    let queued = take_new(&h, &mut Vec::new());
    assert!(!queued.contains(&b'\r'), "{}", text(&queued));
    assert!(text(&queued).contains("\nlone\nCR\ncaf\u{e9}  \t\n"));
    // The fake SMTP server keeping the DATA bytes exactly as they arrive (CR LF,
    // dot-stuffing), up to the final `.` line.
    let sink = SmtpServer::start(
        "127.1.9.2",
        r#""greeting": "220 raw.example ESMTP", "name": "raw.example",
        "extensions": ["8BITMIME"], "raw_data": true"#,
    );
    h.control(
        "smtproutes",
        &format!("remote.example:127.1.9.2:{}\n", sink.port),
    );
    let mut c = h.cmd("qmail-remote");
    c.args(["remote.example", "sender@example.com", "r@remote.example"])
        .env("RQMAIL_NAMESERVERS", "127.0.0.1:9");
    let (code, out, err) = rqmail_tests::run_with_input(c, &queued);
    assert_eq!(code, 0, "{}", text(&err));
    assert!(
        text(&out).contains("Kraw.example") || text(&out).contains("K127.1.9.2"),
        "{}",
        text(&out)
    );
    let sent = sink.one().messages.remove(0).data;
    // Undo the dot-stuffing only: what a receiving MTA hands to its verifier.
    let mut received = Vec::new();
    for line in sent.split_inclusive(|&c| c == b'\n') {
        received.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    assert_eq!(received, wire(&queued), "{}", text(&sent));
    if !can_verify("what_qmail_remote_sends_is_what_was_signed") {
        return;
    }
    let dns = rsa_and_ed25519_records(k);
    let v = verify(&dns, &[&queued]);
    assert!(v[0].all_pass(), "{:#?}", v[0]);
}
