//! qmail-remote against SMTP servers the tests start on loopback addresses (a scripted
//! Python server and Postfix's smtp-sink), with a DNS server the tests start (never the
//! machine's resolv.conf); qmail-tcpto and qmail-tcpok on real tables; and the whole path
//! qmail-queue → qmail-send → qmail-rspawn → qmail-remote → SMTP server.
//!
//! Each test uses addresses of its own in 127.0.0.0/8 (127.1.N.x), so that an address with
//! nothing listening really refuses connections whatever the other tests do.

use rqmail_tests::certs::test_pki;
use rqmail_tests::home::scratch;
use rqmail_tests::process::start_python;
use rqmail_tests::smtp_peer::SmtpServer;
use rqmail_tests::{Home, KillOnDrop, is_root, run_with_input, tool};
use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Hang guard for anything waited for (never a timing assertion).
const GUARD: Duration = Duration::from_secs(120);

// ------------------------------------------------------------------ the test peers

/// A DNS server answering from a JSON zone: `{"name": {"MX": [[10, "mx.name"]], "A":
/// [...], "AAAA": [...], "CNAME": "target"}}`, or `{"rcode": "SERVFAIL"}`; unknown names
/// get NXDOMAIN. A CNAME is followed once for other types. Each question is logged as
/// `TYPE name`.
const DNS_SERVER: &str = r#"
import json, socket, struct, sys
zone = json.load(open(sys.argv[1]))
log = sys.argv[2]
TYPES = {1: "A", 28: "AAAA", 15: "MX", 5: "CNAME"}
def name(n):
    return b"".join(bytes([len(l)]) + l.encode() for l in n.rstrip(".").split(".") if l) + b"\0"
def rr(owner, t, v):
    if t == "A": code, data = 1, socket.inet_pton(socket.AF_INET, v)
    elif t == "AAAA": code, data = 28, socket.inet_pton(socket.AF_INET6, v)
    elif t == "MX": code, data = 15, struct.pack(">H", v[0]) + name(v[1])
    else: code, data = 5, name(v)
    return name(owner) + struct.pack(">HHIH", code, 1, 60, len(data)) + data
def answer(q):
    qid = struct.unpack(">H", q[:2])[0]
    pos, labels = 12, []
    while q[pos]:
        labels.append(q[pos + 1:pos + 1 + q[pos]].decode()); pos += 1 + q[pos]
    qtype = struct.unpack(">H", q[pos + 1:pos + 3])[0]
    n, t = ".".join(labels).lower(), TYPES.get(qtype, str(qtype))
    with open(log, "a") as f:
        f.write("%s %s\n" % (t, n))
    e, rcode, ans = zone.get(n), 0, []
    if e is None:
        rcode = 3
    elif "rcode" in e:
        rcode = {"SERVFAIL": 2, "NXDOMAIN": 3, "REFUSED": 5}[e["rcode"]]
    else:
        owner = n
        if "CNAME" in e:
            ans.append(rr(n, "CNAME", e["CNAME"]))
            if t != "CNAME":
                owner = e["CNAME"]; e = zone.get(owner, {})
        if t in ("A", "AAAA", "MX"):
            ans += [rr(owner, t, v) for v in e.get(t, [])]
    return struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, len(ans), 0, 0) + q[12:pos + 5] + b"".join(ans)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    q, peer = s.recvfrom(512)
    try:
        s.sendto(answer(q), peer)
    except Exception:
        pass
"#;

/// Two servers on the same port at two addresses.
fn servers_on_one_port(a: &str, cfg_a: &str, b: &str, cfg_b: &str) -> (SmtpServer, SmtpServer) {
    for _ in 0..20 {
        let first = SmtpServer::start(a, cfg_a);
        if let Some(second) = SmtpServer::try_start(b, first.port, cfg_b) {
            return (first, second);
        }
    }
    panic!("no common free port for {a} and {b}");
}

/// A running DNS server.
struct Dns {
    _proc: KillOnDrop,
    dir: tempfile::TempDir,
    port: u16,
}

impl Dns {
    fn start(zone: &str) -> Dns {
        let dir = scratch("rqmail-remote-");
        let z = dir.path().join("zone.json");
        fs::write(&z, zone).expect("write zone");
        let log = dir.path().join("queries");
        fs::write(&log, "").expect("log");
        let (proc, port) = start_python(dir.path(), "dns.py", DNS_SERVER, &[&z, &log])
            .expect("start the DNS server");
        Dns {
            _proc: proc,
            dir,
            port,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn queries(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("queries"))
            .expect("queries")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

// ------------------------------------------------------------------ running qmail-remote

/// A port on which nothing listens: DNS queries sent there fail at once, so no test can
/// reach the machine's resolver by accident.
const NO_DNS: &str = "127.0.0.1:9";

/// The reports of one run: letter and text of each.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reports(Vec<(char, String)>);

impl Reports {
    fn parse(out: &[u8]) -> Reports {
        assert_eq!(
            out.last(),
            Some(&0),
            "output must end with a 0 byte: {out:?}"
        );
        Reports(
            out[..out.len() - 1]
                .split(|&c| c == 0)
                .map(|r| {
                    assert!(!r.is_empty(), "empty report in {out:?}");
                    (r[0] as char, String::from_utf8_lossy(&r[1..]).into_owned())
                })
                .collect(),
        )
    }

    /// The recipient report letters.
    fn letters(&self) -> String {
        self.0[..self.0.len() - 1].iter().map(|r| r.0).collect()
    }

    /// The message report.
    fn last(&self) -> (char, &str) {
        let r = self.0.last().expect("a message report");
        (r.0, &r.1)
    }
}

/// A home for qmail-remote tests.
fn home() -> Home {
    Home::new()
}

/// Runs qmail-remote with the message on a pipe and `dns` as the name server.
fn remote_env(h: &Home, dns: &str, env: &[(&str, &str)], args: &[&str], msg: &[u8]) -> Reports {
    let mut c = h.cmd("qmail-remote");
    c.args(args).env("RQMAIL_NAMESERVERS", dns);
    for (k, v) in env {
        c.env(k, v);
    }
    let (code, out, err) = run_with_input(c, msg);
    assert_eq!(
        code,
        0,
        "qmail-remote always exits 0; stderr {}",
        String::from_utf8_lossy(&err)
    );
    Reports::parse(&out)
}

fn remote(h: &Home, dns: &str, args: &[&str], msg: &[u8]) -> Reports {
    remote_env(h, dns, &[], args, msg)
}

/// Runs qmail-remote with the message in a file (seekable, as qmail-rspawn gives it).
fn remote_file(h: &Home, dns: &str, args: &[&str], msg: &[u8]) -> Reports {
    let p = h.path().join("message");
    fs::write(&p, msg).expect("message");
    let out = h
        .cmd("qmail-remote")
        .args(args)
        .env("RQMAIL_NAMESERVERS", dns)
        .stdin(fs::File::open(&p).expect("open"))
        .output()
        .expect("run qmail-remote");
    assert_eq!(out.status.code(), Some(0));
    Reports::parse(&out.stdout)
}

const MSG: &[u8] = b"Subject: test\n\nhello\n";

/// A home routing `domain` to the server.
fn routed(s: &SmtpServer, domain: &str, bind: &str) -> Home {
    let h = home();
    h.control("smtproutes", &format!("{domain}:{bind}:{}\n", s.port));
    h
}

// ------------------------------------------------------------------ the dialogue

#[test]
fn delivers_with_netqmails_reports_and_message_conversion() {
    let s = SmtpServer::start("127.1.1.2", "");
    let h = routed(&s, "far.example", "127.1.1.2");
    let msg = b"Subject: dots\n\n.leading dot\n..two\n.\nend\n";
    let r = remote(
        &h,
        NO_DNS,
        &[
            "far.example",
            "a b@here.example",
            "x@far.example",
            "y@far.example",
        ],
        msg,
    );
    assert_eq!(
        r.0,
        vec![
            ('r', String::new()),
            ('r', String::new()),
            (
                'K',
                "127.1.1.2 accepted message.\nRemote host said: 250 ok queued\n".into()
            ),
        ]
    );
    let t = s.one();
    assert_eq!(
        t.commands,
        [
            "EHLO testhost.example",
            "MAIL FROM:<\"a b\"@here.example>",
            "RCPT TO:<x@far.example>",
            "RCPT TO:<y@far.example>",
            "DATA",
            "QUIT"
        ]
    );
    assert_eq!(
        t.data.as_deref(),
        Some(std::str::from_utf8(msg).expect("utf8"))
    );
    assert!(t.errors.is_empty(), "{:?}", t.errors);
}

#[test]
fn helohost_null_sender_and_empty_message() {
    let s = SmtpServer::start("127.1.2.2", "");
    let h = routed(&s, "far.example", "127.1.2.2");
    h.control("helohost", "out.example\n");
    let r = remote(&h, NO_DNS, &["far.example", "", "x@far.example"], b"");
    assert_eq!(r.last().0, 'K');
    let t = s.one();
    assert_eq!(t.commands[0], "EHLO out.example");
    assert_eq!(t.commands[1], "MAIL FROM:<>");
    assert_eq!(t.data.as_deref(), Some(""));
}

#[test]
fn recipients_rejected_permanently_and_temporarily() {
    let s = SmtpServer::start(
        "127.1.3.2",
        r#""rcpt": {"bad@far.example": "550 no such user", "later@far.example": ["451-try", "451 again"]}"#,
    );
    let h = routed(&s, "far.example", "127.1.3.2");
    let r = remote(
        &h,
        NO_DNS,
        &[
            "far.example",
            "s@here.example",
            "bad@far.example",
            "ok@far.example",
            "later@far.example",
        ],
        MSG,
    );
    assert_eq!(
        r.0,
        vec![
            (
                'h',
                "127.1.3.2 does not like recipient.\nRemote host said: 550 no such user\n".into()
            ),
            ('r', String::new()),
            (
                's',
                "127.1.3.2 does not like recipient.\nRemote host said: 451-try\n451 again\n".into()
            ),
            (
                'K',
                "127.1.3.2 accepted message.\nRemote host said: 250 ok queued\n".into()
            ),
        ]
    );
    // Every recipient refused: no DATA.
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "bad@far.example"],
        MSG,
    );
    assert_eq!(r.letters(), "h");
    assert_eq!(r.last(), ('D', "Giving up on 127.1.3.2.\n"));
    let t = &s.transcripts(2)[1];
    assert!(!t.commands.iter().any(|c| c == "DATA"), "{t:?}");
    assert_eq!(t.commands.last().map(String::as_str), Some("QUIT"));
}

#[test]
fn sender_rejected_permanently_or_temporarily() {
    for (code, letter) in [("553", 'D'), ("451", 'Z')] {
        let s = SmtpServer::start("127.1.4.2", &format!(r#""mail": "{code} sender refused""#));
        let h = routed(&s, "far.example", "127.1.4.2");
        let r = remote(
            &h,
            NO_DNS,
            &["far.example", "s@here.example", "x@far.example"],
            MSG,
        );
        assert_eq!(r.letters(), "");
        assert_eq!(
            r.last(),
            (
                letter,
                &*format!(
                    "Connected to 127.1.4.2 but sender was rejected.\nRemote host said: {code} sender refused\n"
                )
            )
        );
    }
}

#[test]
fn data_command_and_message_rejections() {
    let cases = [
        (
            r#""data": "554 no data""#,
            'D',
            "127.1.5.2 failed on DATA command.\nRemote host said: 554 no data\n",
        ),
        (
            r#""data": "451 not now""#,
            'Z',
            "127.1.5.2 failed on DATA command.\nRemote host said: 451 not now\n",
        ),
        (
            r#""final": "451 4.3.0 try again later""#,
            'Z',
            "127.1.5.2 failed after I sent the message.\nRemote host said: 451 4.3.0 try again later\n",
        ),
        (
            r#""final": "554 5.7.1 spam""#,
            'D',
            "127.1.5.2 failed after I sent the message.\nRemote host said: 554 5.7.1 spam\n",
        ),
    ];
    for (cfg, letter, text) in cases {
        let s = SmtpServer::start("127.1.5.2", cfg);
        let h = routed(&s, "far.example", "127.1.5.2");
        let r = remote(
            &h,
            NO_DNS,
            &["far.example", "s@here.example", "x@far.example"],
            MSG,
        );
        assert_eq!(r.letters(), "r");
        assert_eq!(r.last(), (letter, text), "{cfg}");
    }
}

#[test]
fn greeting_failure_and_helo_fallback() {
    let s = SmtpServer::start("127.1.6.2", r#""greeting": ["554-go away", "554 really"]"#);
    let h = routed(&s, "far.example", "127.1.6.2");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'Z',
            "Connected to 127.1.6.2 but greeting failed.\nRemote host said: 554-go away\n554 really\n"
        )
    );
    assert_eq!(s.one().commands, ["QUIT"]);

    // EHLO refused: HELO instead, no extensions.
    let s = SmtpServer::start("127.1.6.3", r#""ehlo": false"#);
    let h = routed(&s, "far.example", "127.1.6.3");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(r.last().0, 'K');
    assert_eq!(
        &s.one().commands[..3],
        [
            "EHLO testhost.example",
            "HELO testhost.example",
            "MAIL FROM:<s@here.example>"
        ]
    );

    // Both refused.
    let s = SmtpServer::start("127.1.6.4", r#""ehlo": false, "helo": "501 bad name""#);
    let h = routed(&s, "far.example", "127.1.6.4");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'Z',
            "Connected to 127.1.6.4 but my name was rejected.\nRemote host said: 501 bad name\n"
        )
    );
}

#[test]
fn malformed_replies_are_temporary_failures() {
    let s = SmtpServer::start(
        "127.1.7.2",
        r#""rcpt": {"x@far.example": "xyz what"}, "final": "ok?""#,
    );
    let h = routed(&s, "far.example", "127.1.7.2");
    let r = remote(
        &h,
        NO_DNS,
        &[
            "far.example",
            "s@here.example",
            "x@far.example",
            "y@far.example",
        ],
        MSG,
    );
    assert_eq!(r.letters(), "sr");
    assert_eq!(
        r.last(),
        (
            'Z',
            "127.1.7.2 failed after I sent the message.\nRemote host said: ok?\n"
        )
    );
}

#[test]
fn pipelining_on_and_off() {
    let s = SmtpServer::start("127.1.8.2", r#""pipeline_wait": 10"#);
    let h = routed(&s, "far.example", "127.1.8.2");
    let r = remote(
        &h,
        NO_DNS,
        &[
            "far.example",
            "s@here.example",
            "a@far.example",
            "b@far.example",
        ],
        MSG,
    );
    assert_eq!(r.letters(), "rr");
    let t = s.one();
    assert_eq!(
        t.pipelined,
        Some(true),
        "RCPT must come before the reply to MAIL"
    );
    assert_eq!(
        t.commands[2..5],
        ["RCPT TO:<a@far.example>", "RCPT TO:<b@far.example>", "DATA"]
    );

    let s = SmtpServer::start(
        "127.1.8.3",
        r#""pipeline_wait": 0.5, "extensions": ["8BITMIME"]"#,
    );
    let h = routed(&s, "far.example", "127.1.8.3");
    let r = remote(
        &h,
        NO_DNS,
        &[
            "far.example",
            "s@here.example",
            "a@far.example",
            "b@far.example",
        ],
        MSG,
    );
    assert_eq!(r.letters(), "rr");
    assert_eq!(
        s.one().pipelined,
        Some(false),
        "without PIPELINING, MAIL waits for its reply"
    );

    // Many recipients go in several groups, in order, with every reply read.
    let s = SmtpServer::start("127.1.8.4", r#""rcpt": {"r77@far.example": "550 no"}"#);
    let h = routed(&s, "far.example", "127.1.8.4");
    let rcpts: Vec<String> = (0..300).map(|i| format!("r{i}@far.example")).collect();
    let mut args = vec!["far.example", "s@here.example"];
    args.extend(rcpts.iter().map(String::as_str));
    let r = remote(&h, NO_DNS, &args, MSG);
    let mut want = "r".repeat(300);
    want.replace_range(77..78, "h");
    assert_eq!(r.letters(), want);
    assert_eq!(r.last().0, 'K');
    assert_eq!(
        s.one()
            .commands
            .iter()
            .filter(|c| c.starts_with("RCPT"))
            .count(),
        300
    );
}

#[test]
fn eightbitmime_declared_for_8bit_messages_only() {
    let s = SmtpServer::start("127.1.9.2", "");
    let h = routed(&s, "far.example", "127.1.9.2");
    let eight = "Subject: caf\u{e9}\n\n\u{e9}t\u{e9}\n".as_bytes();
    remote_file(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        eight,
    );
    remote_file(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    let t = s.transcripts(2);
    assert_eq!(t[0].commands[1], "MAIL FROM:<s@here.example> BODY=8BITMIME");
    assert_eq!(t[0].data.as_deref(), std::str::from_utf8(eight).ok());
    assert_eq!(t[1].commands[1], "MAIL FROM:<s@here.example>");

    // Not offered: not declared.
    let s = SmtpServer::start("127.1.9.3", r#""extensions": ["PIPELINING"]"#);
    let h = routed(&s, "far.example", "127.1.9.3");
    remote_file(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        eight,
    );
    assert_eq!(s.one().commands[1], "MAIL FROM:<s@here.example>");
}

/// A message far larger than qmail-remote's read buffers (which it sizes to small
/// messages), with its only 8-bit byte past the first 64 KiB and lines starting with a
/// dot across the buffer boundaries: declared 8BITMIME, and received byte for byte.
#[test]
fn a_large_message_is_read_whole_and_scanned_to_its_end() {
    let s = SmtpServer::start("127.1.9.4", "");
    let h = routed(&s, "far.example", "127.1.9.4");
    let mut msg = String::from("Subject: large\n\n");
    for i in 0..3000 {
        msg.push_str(&format!(".line {i:05} {}\n", "x".repeat(40 + i % 37)));
    }
    msg.push_str("caf\u{e9}\n");
    assert!(msg.len() > 150_000);
    let r = remote_file(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        msg.as_bytes(),
    );
    assert_eq!(r.last().0, 'K', "{:?}", r.last());
    let t = s.one();
    assert_eq!(t.commands[1], "MAIL FROM:<s@here.example> BODY=8BITMIME");
    assert_eq!(t.data.as_deref(), Some(msg.as_str()));
}

#[test]
fn partial_final_line_is_permanent() {
    let s = SmtpServer::start("127.1.10.2", "");
    let h = routed(&s, "far.example", "127.1.10.2");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        b"Subject: x\n\nno newline",
    );
    assert_eq!(r.letters(), "r");
    assert_eq!(
        r.last(),
        (
            'D',
            "SMTP cannot transfer messages with partial final lines. (#5.6.2)\n"
        )
    );
    // The server never saw the end of the data.
    assert!(s.one().data.is_none());
}

#[test]
fn timeouts_and_dropped_connections() {
    // No greeting at all.
    let s = SmtpServer::start("127.1.11.2", r#""silent": true"#);
    let h = routed(&s, "far.example", "127.1.11.2");
    h.control("timeoutremote", "1\n");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'Z',
            "Connected to 127.1.11.2 but connection died. (#4.4.2)\n"
        )
    );

    // Silence after the message: possibly delivered.
    let s = SmtpServer::start("127.1.11.3", r#""final_delay": 30"#);
    let h = routed(&s, "far.example", "127.1.11.3");
    h.control("timeoutremote", "1\n");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(r.letters(), "r");
    assert_eq!(
        r.last(),
        (
            'Z',
            "Connected to 127.1.11.3 but connection died. Possible duplicate! (#4.4.2)\n"
        )
    );

    // A server that never stops talking.
    let s = SmtpServer::start("127.1.11.4", r#""flood": true"#);
    let h = routed(&s, "far.example", "127.1.11.4");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'Z',
            "Connected to 127.1.11.4 but connection died. Reply too long. (#4.4.2)\n"
        )
    );
}

/// A listener whose accept queue is full: the kernel drops new connection attempts, so
/// they time out. Prints its port once full.
const BLACKHOLE: &str = r#"
import socket, sys, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
l = socket.socket(fam)
l.bind((sys.argv[1], 0))
l.listen(0)
port = l.getsockname()[1]
keep = []
for _ in range(4):
    c = socket.socket(fam)
    c.settimeout(0.3)
    try:
        c.connect((sys.argv[1], port))
    except OSError:
        pass
    keep.append(c)
print(port, flush=True)
time.sleep(3600)
"#;

#[test]
fn connect_timeout_is_recorded_in_tcpto() {
    let dir = scratch("rqmail-remote-");
    let (_hole, port) = start_python(dir.path(), "hole.py", BLACKHOLE, &[Path::new("127.1.12.2")])
        .expect("start the black hole");
    let h = home();
    h.control("smtproutes", &format!("far.example:127.1.12.2:{port}\n"));
    h.control("timeoutconnect", "1\n");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'Z',
            "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
        )
    );
    let out = h.cmd("qmail-tcpto").output().expect("qmail-tcpto");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        text.starts_with("127.1.12.2 timed out ")
            && text.ends_with(" seconds ago; # recent timeouts: 1\n"),
        "{text:?}"
    );
    let t = fs::read(h.queue().join("lock/tcpto")).expect("tcpto");
    assert_eq!(&t[..5], &[127, 1, 12, 2, 1]);
}

#[test]
fn tcpto_skips_hosts_that_timed_out_until_qmail_tcpok() {
    let s = SmtpServer::start("127.1.13.2", "");
    let h = routed(&s, "far.example", "127.1.13.2");
    // netqmail's record: address, 2 timeouts, the time of the last one (now).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as u32;
    let mut table = vec![0u8; 1024];
    table[16..21].copy_from_slice(&[127, 1, 13, 2, 2]);
    table[24..28].copy_from_slice(&now.to_le_bytes());
    fs::write(h.queue().join("lock/tcpto"), &table).expect("tcpto");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'Z',
            "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
        )
    );
    assert!(s.untouched());
    let out = h.cmd("qmail-tcpto").output().expect("qmail-tcpto");
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(text.starts_with("127.1.13.2 timed out "), "{text}");
    assert!(
        text.ends_with("seconds ago; # recent timeouts: 2\n"),
        "{text}"
    );
    let out = h.cmd("qmail-tcpok").output().expect("qmail-tcpok");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(h.queue().join("lock/tcpto")).expect("tcpto"),
        vec![0u8; 1024]
    );
    let out = h.cmd("qmail-tcpto").output().expect("qmail-tcpto");
    assert!(out.stdout.is_empty());
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(r.last().0, 'K');
}

#[test]
fn tcpto_and_tcpok_failures() {
    let h = home();
    fs::remove_file(h.queue().join("lock/tcpto")).expect("rm");
    let out = h.cmd("qmail-tcpto").output().expect("qmail-tcpto");
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        out.stdout,
        b"fatal: unable to open tcpto: file does not exist\n"
    );
    let out = h.cmd("qmail-tcpok").output().expect("qmail-tcpok");
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "qmail-tcpok: fatal: unable to write {}/queue/lock/tcpto: file does not exist\n",
            h.path().display()
        )
    );
    let out = h
        .cmd("qmail-tcpok")
        .env("QMAIL_HOME", h.path().join("nowhere"))
        .output()
        .expect("qmail-tcpok");
    assert_eq!(out.status.code(), Some(111));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("qmail-tcpok: fatal: unable to chdir to ")
    );
}

#[test]
fn ipv6_relay_and_ipv6_tcpto_table() {
    let s = SmtpServer::start("::1", "");
    let h = home();
    h.control("smtproutes", &format!("six.example:[::1]:{}\n", s.port));
    let r = remote(
        &h,
        NO_DNS,
        &["six.example", "s@here.example", "x@six.example"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'K',
            "::1 accepted message.\nRemote host said: 250 ok queued\n"
        )
    );
    assert_eq!(s.one().commands[2], "RCPT TO:<x@six.example>");

    // A timeout to an IPv6 host goes to lock/tcpto6 when it exists.
    let dir = scratch("rqmail-remote-");
    let (_hole, port) = start_python(dir.path(), "hole.py", BLACKHOLE, &[Path::new("::1")])
        .expect("start the black hole");
    h.control("smtproutes", &format!("six.example:[IPv6:::1]:{port}\n"));
    h.control("timeoutconnect", "1\n");
    let tcpto6 = h.queue().join("lock/tcpto6");
    fs::write(&tcpto6, vec![0u8; 2048]).expect("tcpto6");
    let r = remote(
        &h,
        NO_DNS,
        &["six.example", "s@here.example", "x@six.example"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'Z',
            "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
        )
    );
    let t6 = fs::read(&tcpto6).expect("tcpto6");
    let mut one = [0u8; 16];
    one[15] = 1;
    assert_eq!(&t6[..16], &one);
    assert_eq!(t6[16], 1);
    assert_eq!(
        fs::read(h.queue().join("lock/tcpto")).expect("tcpto"),
        vec![0u8; 1024]
    );
    let out = h.cmd("qmail-tcpto").output().expect("qmail-tcpto");
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        text.starts_with("::1 timed out ")
            && text.ends_with(" seconds ago; # recent timeouts: 1\n"),
        "{text:?}"
    );
    let out = h.cmd("qmail-tcpok").output().expect("qmail-tcpok");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(fs::read(&tcpto6).expect("tcpto6"), vec![0u8; 2048]);
}

#[test]
fn usage_and_configuration_failures() {
    let h = home();
    let r = remote(&h, NO_DNS, &["far.example", "s@here.example"], MSG);
    assert_eq!(
        r.0,
        vec![(
            'D',
            "I (qmail-remote) was invoked improperly. (#5.3.5)\n".into()
        )]
    );

    h.remove_control("me");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(r.last(), ('Z', "Unable to read control files. (#4.3.0)\n"));
    h.control("me", "testhost.example\n");

    fs::create_dir(h.path().join("control/smtproutes")).expect("mkdir");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(r.last(), ('Z', "Unable to read control files. (#4.3.0)\n"));
    fs::remove_dir(h.path().join("control/smtproutes")).expect("rmdir");

    h.control("smtproutes", "far.example:127.0.0.1:99999\n");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here.example", "x@far.example"],
        MSG,
    );
    assert_eq!(
        r.last(),
        ('Z', "Unusable route in control/smtproutes. (#4.3.5)\n")
    );

    let out = h
        .cmd("qmail-remote")
        .args(["far.example", "s@here.example", "x@far.example"])
        .env("QMAIL_HOME", h.path().join("nowhere"))
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        out.stdout,
        b"ZUnable to switch to home directory. (#4.3.0)\n\0"
    );
}

#[test]
fn addresses_with_line_breaks_are_never_sent() {
    let s = SmtpServer::start("127.1.14.2", "");
    let h = routed(&s, "far.example", "127.1.14.2");
    let r = remote(
        &h,
        NO_DNS,
        &[
            "far.example",
            "s@here.example",
            "x@far.example\r\nRSET",
            "y@far.example",
        ],
        MSG,
    );
    assert_eq!(r.letters(), "hr");
    assert_eq!(
        r.0[0].1,
        "Sorry, I won't send an address with CR or LF in it. (#5.1.3)\n"
    );
    assert_eq!(r.last().0, 'K');
    let t = s.one();
    assert!(!t.commands.iter().any(|c| c.contains("RSET")), "{t:?}");
    let r = remote(
        &h,
        NO_DNS,
        &["far.example", "s@here\n.example", "y@far.example"],
        MSG,
    );
    assert_eq!(r.last().0, 'D');
}

// ------------------------------------------------------------------ DNS

#[test]
fn mx_preference_order_and_connection_refused_then_next_mx() {
    // 127.1.20.2 refuses (nothing listens); 127.1.20.3 and .4 listen on one port.
    let (third, second) = servers_on_one_port("127.1.20.4", "", "127.1.20.3", "");
    let dns = Dns::start(
        r#"{"mx.test": {"MX": [[30, "c.mx.test"], [10, "a.mx.test"], [20, "b.mx.test"]]},
            "a.mx.test": {"A": ["127.1.20.2"]}, "b.mx.test": {"A": ["127.1.20.3"]},
            "c.mx.test": {"A": ["127.1.20.4"]}}"#,
    );
    let h = home();
    h.control("smtproutes", &format!("mx.test::{}\n", second.port));
    let r = remote(
        &h,
        &dns.addr(),
        &["mx.test", "s@here.example", "x@mx.test"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'K',
            "127.1.20.3 accepted message.\nRemote host said: 250 ok queued\n"
        )
    );
    assert_eq!(second.one().commands[2], "RCPT TO:<x@mx.test>");
    assert!(third.untouched());
    let q = dns.queries();
    assert_eq!(q[0], "CNAME mx.test");
    assert_eq!(q[1], "MX mx.test");
    assert!(q.contains(&"A a.mx.test".to_string()) && q.contains(&"AAAA a.mx.test".to_string()));

    // Nothing answers at all: deferral.
    let dns = Dns::start(
        r#"{"dead.test": {"MX": [[10, "a.dead.test"]]}, "a.dead.test": {"A": ["127.1.20.5"]}}"#,
    );
    h.control("smtproutes", &format!("dead.test::{}\n", second.port));
    let r = remote(
        &h,
        &dns.addr(),
        &["dead.test", "s@here.example", "x@dead.test"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'Z',
            "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
        )
    );
}

#[test]
fn no_mx_uses_the_address_records() {
    let s = SmtpServer::start("127.1.21.2", "");
    let dns = Dns::start(r#"{"plain.test": {"A": ["127.1.21.2"]}}"#);
    let h = home();
    h.control("smtproutes", &format!("plain.test::{}\n", s.port));
    let r = remote(
        &h,
        &dns.addr(),
        &["plain.test", "s@here.example", "x@plain.test"],
        MSG,
    );
    assert_eq!(r.last().0, 'K');
    assert_eq!(
        dns.queries(),
        [
            "CNAME plain.test",
            "MX plain.test",
            "AAAA plain.test",
            "A plain.test"
        ]
    );

    // Only an AAAA record, and it is this host (::1): never deliver to myself.
    let dns = Dns::start(
        r#"{"six.test": {"AAAA": ["::1"]}, "me.test": {"MX": [[5, "lo.me.test"]]}, "lo.me.test": {"A": ["127.0.0.1"]}}"#,
    );
    let ambig = "Sorry. Although I'm listed as a best-preference MX or A for that host,\n\
                 it isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\n";
    for host in ["six.test", "me.test"] {
        let rcpt = format!("x@{host}");
        let r = remote(&h, &dns.addr(), &[host, "s@here.example", &rcpt], MSG);
        assert_eq!(r.last(), ('D', ambig), "{host}");
    }

    // A name with neither MX nor address records.
    let dns = Dns::start(r#"{"empty.test": {}, "cname.test": {"CNAME": "nowhere.test"}}"#);
    let r = remote(
        &h,
        &dns.addr(),
        &["empty.test", "s@here.example", "x@empty.test"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'D',
            "Sorry, I couldn't find any host named empty.test. (#5.1.2)\n"
        )
    );
}

#[test]
fn nxdomain_is_permanent_and_servfail_defers() {
    let dns = Dns::start(
        r#"{"fail.test": {"rcode": "SERVFAIL"}, "refused.test": {"rcode": "REFUSED"},
            "softmx.test": {"MX": [[10, "a.softmx.test"]]}, "a.softmx.test": {"rcode": "SERVFAIL"},
            "alias.test": {"rcode": "SERVFAIL"}, "real.test": {"A": ["127.1.22.2"]}}"#,
    );
    let h = home();
    let run = |host: &str| {
        let rcpt = format!("x@{host}");
        remote(&h, &dns.addr(), &[host, "s@here.example", &rcpt], MSG)
    };
    assert_eq!(
        run("nowhere.test").last(),
        (
            'D',
            "Sorry, I couldn't find any host named nowhere.test. (#5.1.2)\n"
        )
    );
    let temp = (
        'Z',
        "Sorry, I couldn't find any host by that name. (#4.1.2)\n",
    );
    for host in ["fail.test", "refused.test", "softmx.test"] {
        // (fail.test's CNAME lookup fails first.)
        let r = run(host);
        if host == "fail.test" || host == "refused.test" {
            assert_eq!(
                r.last(),
                ('Z', "CNAME lookup failed temporarily. (#4.4.3)\n"),
                "{host}"
            );
        } else {
            assert_eq!(r.last(), temp, "{host}");
        }
    }
    // SERVFAIL for the MX of a routed domain (no CNAME lookups for relays).
    h.control("smtproutes", "relayed.test:fail.test\n");
    let r = remote(
        &h,
        &dns.addr(),
        &["relayed.test", "s@here.example", "x@relayed.test"],
        MSG,
    );
    assert_eq!(r.last(), temp);
    // A name server that does not answer.
    let r = remote(
        &h,
        NO_DNS,
        &["relayed.test", "s@here.example", "x@relayed.test"],
        MSG,
    );
    assert_eq!(r.last(), temp);
    // The recipient's domain cannot be canonicalised now.
    h.control("smtproutes", "");
    let r = remote(
        &h,
        &dns.addr(),
        &["real.test", "s@here.example", "x@alias.test"],
        MSG,
    );
    assert_eq!(
        r.last(),
        ('Z', "CNAME lookup failed temporarily. (#4.4.3)\n")
    );
}

#[test]
fn recipients_domains_are_canonicalised_unless_relayed() {
    let s = SmtpServer::start("127.1.23.2", "");
    let dns = Dns::start(
        r#"{"alias.test": {"CNAME": "real.test"}, "real.test": {"A": ["127.1.23.2"]},
            "relay.test": {"A": ["127.1.23.2"]}}"#,
    );
    let h = home();
    h.control(
        "smtproutes",
        &format!("real.test::{0}\nalias.test::{0}\n", s.port),
    );
    let r = remote(
        &h,
        &dns.addr(),
        &["real.test", "s@here.example", "x@alias.test", "y@real.test"],
        MSG,
    );
    assert_eq!(r.last().0, 'K');
    assert_eq!(
        &s.one().commands[2..4],
        ["RCPT TO:<x@real.test>", "RCPT TO:<y@real.test>"]
    );

    // Through a relay named in smtproutes: its A record, no MX, no CNAME lookups.
    let dns = Dns::start(
        r#"{"relay.test": {"A": ["127.1.23.2"]}, "alias.test": {"CNAME": "real.test"}}"#,
    );
    h.control("smtproutes", &format!("alias.test:relay.test:{}\n", s.port));
    let r = remote(
        &h,
        &dns.addr(),
        &["alias.test", "s@here.example", "x@alias.test"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'K',
            "127.1.23.2 accepted message.\nRemote host said: 250 ok queued\n"
        )
    );
    assert_eq!(s.transcripts(2)[1].commands[2], "RCPT TO:<x@alias.test>");
    assert_eq!(dns.queries(), ["AAAA relay.test", "A relay.test"]);
    h.control("smtproutes", &format!("alias.test:gone.test:{}\n", s.port));
    let r = remote(
        &h,
        &dns.addr(),
        &["alias.test", "s@here.example", "x@alias.test"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'D',
            "Sorry, I couldn't find any host named gone.test. (#5.1.2)\n"
        )
    );
}

#[test]
fn ipv6_through_dns_when_every_recipient_is_an_alias() {
    // ::1 is this host; netqmail's rule still allows it when every recipient's domain
    // is an alias (the canonical name may be handled here by another route).
    let s = SmtpServer::start("::1", "");
    let dns = Dns::start(r#"{"v6.test": {"AAAA": ["::1"]}, "alias6.test": {"CNAME": "v6.test"}}"#);
    let h = home();
    h.control("smtproutes", &format!("v6.test::{}\n", s.port));
    let r = remote(
        &h,
        &dns.addr(),
        &["v6.test", "s@here.example", "x@alias6.test"],
        MSG,
    );
    assert_eq!(
        r.last(),
        (
            'K',
            "::1 accepted message.\nRemote host said: 250 ok queued\n"
        )
    );
    assert_eq!(s.one().commands[2], "RCPT TO:<x@v6.test>");
}

// ------------------------------------------------------------------ TLS

fn tls_server(bind: &str, cfg: &str) -> SmtpServer {
    let ext = r#""extensions": ["PIPELINING", "STARTTLS", "8BITMIME"]"#;
    let sep = if cfg.is_empty() { "" } else { ", " };
    SmtpServer::start(bind, &format!("{ext}{sep}{cfg}"))
}

/// A home that routes tls.test to the relay mx.tls.test (127.1.N.2 through the test DNS).
fn tls_home(s: &SmtpServer) -> Home {
    let h = home();
    h.control("smtproutes", &format!("tls.test:mx.tls.test:{}\n", s.port));
    fs::create_dir_all(h.path().join("control/tlshosts")).expect("mkdir");
    fs::create_dir_all(h.path().join("control/notlshosts")).expect("mkdir");
    h
}

fn tls_dns(ip: &str) -> Dns {
    Dns::start(&format!(r#"{{"mx.tls.test": {{"A": ["{ip}"]}}}}"#))
}

const TLS_ARGS: [&str; 3] = ["tls.test", "s@here.example", "x@tls.test"];

#[test]
fn starttls_opportunistic() {
    let s = tls_server("127.1.30.2", "");
    let dns = tls_dns("127.1.30.2");
    let h = tls_home(&s);
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    let (letter, text) = r.last();
    assert_eq!(letter, 'K');
    assert!(
        text.starts_with(
            "127.1.30.2 accepted message.\nRemote host said: 250 ok queued\nTLS: TLSv1.3, TLS13_"
        ),
        "{text:?}"
    );
    assert!(text.ends_with(", certificate not verified.\n"), "{text:?}");
    let t = s.one();
    assert!(
        t.tls.as_deref().is_some_and(|v| v.starts_with("TLSv1.3")),
        "{t:?}"
    );
    assert_eq!(
        &t.commands[..3],
        ["EHLO testhost.example", "STARTTLS", "EHLO testhost.example"]
    );
    assert_eq!(t.data.as_deref(), std::str::from_utf8(MSG).ok());
    assert!(t.client.is_none());
}

#[test]
fn starttls_refused() {
    let s = tls_server("127.1.31.2", r#""starttls": "454 TLS not available""#);
    let dns = tls_dns("127.1.31.2");
    let h = tls_home(&s);
    // Opportunistic: on in plain text.
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    assert_eq!(
        r.last(),
        (
            'K',
            "127.1.31.2 accepted message.\nRemote host said: 250 ok queued\n"
        )
    );
    let t = s.one();
    assert!(t.tls.is_none());
    assert_eq!(t.commands[2], "MAIL FROM:<s@here.example>");
    // Required: deferred.
    fs::copy(
        test_pki().join("ca.pem"),
        h.path().join("control/tlshosts/mx.tls.test.pem"),
    )
    .expect("cp");
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    assert_eq!(
        r.last(),
        (
            'Z',
            "STARTTLS rejected while control/tlshosts/mx.tls.test.pem exists; connecting to 127.1.31.2.\n\
             Remote host said: 454 TLS not available\n"
        )
    );
}

/// qmail-remote's confinement (qmail-remote(8), CONFINEMENT): while it waits for a
/// silent server, /proc shows no_new_privs and a seccomp filter.
#[test]
fn confined_while_it_delivers() {
    let listener = std::net::TcpListener::bind("127.1.40.2:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let h = home();
    h.control("smtproutes", &format!("confine.test:127.1.40.2:{port}\n"));
    h.control("timeoutremote", "30\n");
    let mut c = h.cmd("qmail-remote");
    c.args(["confine.test", "s@here.example", "x@confine.test"])
        .env("RQMAIL_NAMESERVERS", "127.0.0.1:9")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = KillOnDrop(c.spawn().expect("qmail-remote"));
    let pid = child.0.id() as i32;
    child
        .0
        .stdin
        .take()
        .expect("stdin")
        .write_all(MSG)
        .expect("message");
    // The connection is made only after start-up: then it is confined.
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(30);
    let conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(_) if Instant::now() < deadline => {
                if let Ok(Some(st)) = child.0.try_wait() {
                    let mut out = String::new();
                    if let Some(mut o) = child.0.stdout.take() {
                        let _ = std::io::Read::read_to_string(&mut o, &mut out);
                    }
                    panic!("qmail-remote ended ({st}) without connecting: {out:?}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("qmail-remote never connected: {e}"),
        }
    };
    let st = rqmail_tests::proc_status(pid).expect("qmail-remote alive");
    assert_eq!(st["NoNewPrivs"], "1");
    assert_eq!(st["Seccomp"], "2");
    drop(conn);
    let status = child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "qmail-remote always exits 0");
}

/// Landlock: a CA file for tlshosts that is a symbolic link to a file outside control/
/// and the certificate directories cannot be read, so the delivery is deferred; the same
/// file inside control/tlshosts/ works.
#[test]
fn tlshosts_file_outside_control_cannot_be_read() {
    let s = tls_server("127.1.41.2", "");
    let dns = tls_dns("127.1.41.2");
    let h = tls_home(&s);
    let outside = scratch("rqmail-remote-");
    let ca = outside.path().join("ca.pem");
    fs::copy(test_pki().join("ca.pem"), &ca).expect("cp");
    let pem = h.path().join("control/tlshosts/mx.tls.test.pem");
    std::os::unix::fs::symlink(&ca, &pem).expect("symlink");
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    let (letter, text) = r.last();
    assert_eq!(letter, 'Z', "{text}");
    assert!(text.contains("control/tlshosts/mx.tls.test.pem"), "{text}");
    assert!(text.contains("ermission denied"), "{text}");
    // The file itself, in control/tlshosts/: delivered.
    fs::remove_file(&pem).expect("rm");
    fs::copy(&ca, &pem).expect("cp");
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    let (letter, text) = r.last();
    assert_eq!(letter, 'K', "{text}");
}

#[test]
fn tlshosts_certificate_verification() {
    let s = tls_server("127.1.32.2", "");
    let dns = tls_dns("127.1.32.2");
    let h = tls_home(&s);
    let pem = h.path().join("control/tlshosts/mx.tls.test.pem");
    fs::copy(test_pki().join("ca.pem"), &pem).expect("cp");
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    let (letter, text) = r.last();
    assert_eq!(letter, 'K', "{text}");
    assert!(
        text.ends_with(", certificate verified with control/tlshosts/mx.tls.test.pem.\n"),
        "{text:?}"
    );
    // The wrong authority.
    fs::copy(test_pki().join("ca2.pem"), &pem).expect("cp");
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    assert_eq!(
        r.last(),
        (
            'Z',
            "TLS unable to verify server with control/tlshosts/mx.tls.test.pem: invalid peer certificate: \
             UnknownIssuer; connected to 127.1.32.2.\n"
        )
    );
    // The right authority, the wrong name.
    fs::copy(test_pki().join("ca.pem"), &pem).expect("cp");
    let other = tls_server(
        "127.1.32.3",
        &format!(
            r#""cert": "{}", "key": "{}""#,
            test_pki().join("other.pem").display(),
            test_pki().join("other.key").display()
        ),
    );
    let dns2 = tls_dns("127.1.32.3");
    h.control(
        "smtproutes",
        &format!("tls.test:mx.tls.test:{}\n", other.port),
    );
    let r = remote(&h, &dns2.addr(), &TLS_ARGS, MSG);
    let (letter, text) = r.last();
    assert_eq!(letter, 'Z');
    assert!(
        text.starts_with(
            "TLS unable to verify server with control/tlshosts/mx.tls.test.pem: invalid peer certificate: \
             certificate not valid for name \"mx.tls.test\""
        )
            && text.ends_with("; connected to 127.1.32.3.\n"),
        "{text:?}"
    );
    // STARTTLS not offered at all.
    let plain = SmtpServer::start("127.1.32.4", "");
    let dns3 = tls_dns("127.1.32.4");
    h.control(
        "smtproutes",
        &format!("tls.test:mx.tls.test:{}\n", plain.port),
    );
    let r = remote(&h, &dns3.addr(), &TLS_ARGS, MSG);
    assert_eq!(
        r.last(),
        (
            'Z',
            "No TLS achieved while control/tlshosts/mx.tls.test.pem exists; connecting to 127.1.32.4.\n"
        )
    );
    assert_eq!(plain.one().commands, ["EHLO testhost.example", "QUIT"]);
}

#[test]
fn broken_tls_defers() {
    let s = tls_server("127.1.33.2", r#""tls_broken": true"#);
    let dns = tls_dns("127.1.33.2");
    let h = tls_home(&s);
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    let (letter, text) = r.last();
    assert_eq!(letter, 'Z');
    assert!(text.starts_with("TLS connect failed: "), "{text:?}");
    assert!(text.ends_with("; connected to 127.1.33.2.\n"), "{text:?}");
    assert_eq!(r.letters(), "");
}

#[test]
fn notlshosts_and_exhaustivelist_turn_tls_off() {
    let s = tls_server("127.1.34.2", "");
    let dns = tls_dns("127.1.34.2");
    let h = tls_home(&s);
    fs::write(h.path().join("control/notlshosts/mx.tls.test"), "").expect("notlshosts");
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    assert_eq!(
        r.last(),
        (
            'K',
            "127.1.34.2 accepted message.\nRemote host said: 250 ok queued\n"
        )
    );
    fs::remove_file(h.path().join("control/notlshosts/mx.tls.test")).expect("rm");
    fs::write(h.path().join("control/tlshosts/exhaustivelist"), "").expect("exhaustivelist");
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    assert_eq!(r.last().0, 'K');
    for t in s.transcripts(2) {
        assert!(!t.commands.iter().any(|c| c == "STARTTLS"), "{t:?}");
        assert!(t.tls.is_none());
    }
}

#[test]
fn client_certificate_is_offered() {
    let s = tls_server(
        "127.1.35.2",
        &format!(r#""client_ca": "{}""#, test_pki().join("ca.pem").display()),
    );
    let dns = tls_dns("127.1.35.2");
    let h = tls_home(&s);
    fs::copy(
        test_pki().join("clientcert.pem"),
        h.path().join("control/clientcert.pem"),
    )
    .expect("cp");
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    assert_eq!(r.last().0, 'K');
    assert_eq!(s.one().client.as_deref(), Some("client.rqmail.test"));
    // A broken client certificate file defers rather than being ignored.
    fs::write(
        h.path().join("control/clientcert.pem"),
        "not a certificate\n",
    )
    .expect("write");
    let r = remote(&h, &dns.addr(), &TLS_ARGS, MSG);
    let (letter, text) = r.last();
    assert_eq!(letter, 'Z');
    assert!(
        text.starts_with("TLS unable to load control/clientcert.pem: "),
        "{text:?}"
    );
}

#[test]
fn tlsverify_checks_against_the_system_roots() {
    let s = tls_server("127.1.36.2", "");
    let dns = tls_dns("127.1.36.2");
    let h = tls_home(&s);
    h.control("tlsverify", ".tls.test\n");
    let ca = test_pki().join("ca.pem");
    let ca = ca.to_str().expect("path");
    let r = remote_env(&h, &dns.addr(), &[("SSL_CERT_FILE", ca)], &TLS_ARGS, MSG);
    let (letter, text) = r.last();
    assert_eq!(letter, 'K', "{text}");
    assert!(
        text.ends_with(", certificate verified with the system's roots.\n"),
        "{text:?}"
    );
    let other = test_pki().join("ca2.pem");
    let r = remote_env(
        &h,
        &dns.addr(),
        &[("SSL_CERT_FILE", other.to_str().expect("path"))],
        &TLS_ARGS,
        MSG,
    );
    let (letter, text) = r.last();
    assert_eq!(letter, 'Z');
    assert!(
        text.starts_with("TLS unable to verify server with the system's roots: invalid peer certificate: UnknownIssuer"),
        "{text:?}"
    );
}

#[test]
fn smtps_on_port_465() {
    if !is_root() {
        eprintln!("smtps_on_port_465 needs root (it listens on port 465); skipped");
        return;
    }
    let Some(s) = SmtpServer::try_start("127.1.37.2", 465, r#""smtps": true"#) else {
        panic!("port 465 on 127.1.37.2 is taken");
    };
    let h = home();
    h.control("smtproutes", "smtps.test:127.1.37.2:465\n");
    let r = remote(
        &h,
        NO_DNS,
        &["smtps.test", "s@here.example", "x@smtps.test"],
        MSG,
    );
    let (letter, text) = r.last();
    assert_eq!(letter, 'K', "{text}");
    assert!(text.contains("\nTLS: TLSv1.3"), "{text:?}");
    let t = s.one();
    assert!(t.tls.is_some());
    assert_eq!(t.commands[0], "EHLO testhost.example");
    assert!(!t.commands.iter().any(|c| c == "STARTTLS"));
}

// ------------------------------------------------------------------ diagnostics

/// Runs qmail-remote as `remote_env` does; its reports and its standard error.
fn remote_diag(h: &Home, dns: &str, env: &[(&str, &str)], args: &[&str]) -> (Reports, String) {
    let mut c = h.cmd("qmail-remote");
    c.args(args).env("RQMAIL_NAMESERVERS", dns);
    for (k, v) in env {
        c.env(k, v);
    }
    let (code, out, err) = run_with_input(c, MSG);
    assert_eq!(code, 0);
    (
        Reports::parse(&out),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// The verbose level (control/loglevel or QMAIL_LOGLEVEL) shows why a TLS handshake
/// failed, the server certificate's subject and issuer, the TLS policy and the DNS steps;
/// the default level writes nothing, and the reports are the same at every level.
#[test]
fn verbose_diagnostics_explain_a_failed_tls_handshake() {
    let s = tls_server("127.1.38.2", "");
    let dns = tls_dns("127.1.38.2");
    let h = tls_home(&s);
    fs::copy(
        test_pki().join("ca2.pem"),
        h.path().join("control/tlshosts/mx.tls.test.pem"),
    )
    .expect("cp");
    let failed = (
        'Z',
        "TLS unable to verify server with control/tlshosts/mx.tls.test.pem: invalid peer certificate: \
         UnknownIssuer; connected to 127.1.38.2.\n"
            .to_string(),
    );
    let (r, err) = remote_diag(&h, &dns.addr(), &[], &TLS_ARGS);
    assert_eq!((r.last().0, r.last().1.to_string()), failed);
    assert_eq!(err, "", "nothing on stderr at the default level");

    h.control("loglevel", "warn\nqmail-remote:debug\n");
    let (r, err) = remote_diag(&h, &dns.addr(), &[], &TLS_ARGS);
    assert_eq!((r.last().0, r.last().1.to_string()), failed);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("qmail-remote: debug: pid ")),
        "{err}"
    );
    for want in [
        "DNS: A mx.tls.test: 127.1.38.2",
        &format!("connected to 127.1.38.2 port {}", s.port),
        "TLS policy for mx.tls.test: TLS required, certificate checked with control/tlshosts/mx.tls.test.pem",
        "TLS: server certificate subject CN=mx.tls.test, issuer CN=rqmail test CA, 0 intermediate certificates",
        "TLS: certificate verification failed: invalid peer certificate: UnknownIssuer",
        "TLS: handshake with 127.1.38.2 failed: invalid peer certificate: UnknownIssuer",
    ] {
        assert!(
            lines.iter().any(|l| l.ends_with(want)),
            "no {want:?} in\n{err}"
        );
    }

    // The environment wins over the file, in both directions.
    let (_, err) = remote_diag(&h, &dns.addr(), &[("QMAIL_LOGLEVEL", "info")], &TLS_ARGS);
    assert_eq!(err, "");
    h.remove_control("loglevel");
    let (r, err) = remote_diag(&h, &dns.addr(), &[("QMAIL_LOGLEVEL", "debug")], &TLS_ARGS);
    assert_eq!((r.last().0, r.last().1.to_string()), failed);
    assert!(
        err.contains("TLS: certificate verification failed: "),
        "{err}"
    );

    // A level word that is not one is a warning at the default level.
    h.control("loglevel", "loud\n");
    let (_, err) = remote_diag(&h, &dns.addr(), &[], &TLS_ARGS);
    assert_eq!(err, "qmail-remote: control/loglevel: not a level: loud\n");
}

/// A successful handshake at the verbose level: protocol, cipher, the certificate's
/// names and the verdict; and at trace level, nothing breaks.
#[test]
fn verbose_diagnostics_of_a_verified_tls_session() {
    let s = tls_server("127.1.38.3", "");
    let dns = tls_dns("127.1.38.3");
    let h = tls_home(&s);
    fs::copy(
        test_pki().join("ca.pem"),
        h.path().join("control/tlshosts/mx.tls.test.pem"),
    )
    .expect("cp");
    let (r, err) = remote_diag(&h, &dns.addr(), &[("QMAIL_LOGLEVEL", "debug")], &TLS_ARGS);
    assert_eq!(r.last().0, 'K', "{r:?}");
    for want in [
        "TLS: server certificate subject CN=mx.tls.test, issuer CN=rqmail test CA, 0 intermediate certificates",
        "TLS: certificate verified for mx.tls.test",
        ", certificate verified with control/tlshosts/mx.tls.test.pem.",
    ] {
        assert!(
            err.lines().any(|l| l.ends_with(want)),
            "no {want:?} in\n{err}"
        );
    }
    assert!(err.contains(": TLS: TLSv1.3, TLS13_"), "{err}");
    let (r, err) = remote_diag(&h, &dns.addr(), &[("QMAIL_LOGLEVEL", "trace")], &TLS_ARGS);
    assert_eq!(r.last().0, 'K', "{r:?}");
    assert!(err.contains("qmail-remote: debug: pid "), "{err}");
}

/// qmail-rspawn gives qmail-remote one pipe as standard output and standard error: what
/// is read there is the report, so no diagnostic line may go there at any level.
#[test]
fn no_diagnostics_on_the_report_pipe() {
    let s = tls_server("127.1.38.4", "");
    let dns = tls_dns("127.1.38.4");
    let h = tls_home(&s);
    h.control("loglevel", "trace\n");
    let (mut read, write) = std::io::pipe().expect("pipe");
    let mut c = h.cmd("qmail-remote");
    c.args(TLS_ARGS)
        .env("RQMAIL_NAMESERVERS", dns.addr())
        .stdin(Stdio::null())
        .stdout(write.try_clone().expect("dup"))
        .stderr(write);
    let mut child = c.spawn().expect("spawn");
    drop(c);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut read, &mut out).expect("read");
    assert!(child.wait().expect("wait").success());
    let r = Reports::parse(&out);
    assert_eq!(r.letters(), "r", "{r:?}");
    assert!(
        r.last().1.starts_with("127.1.38.4 accepted message.\n"),
        "{r:?}"
    );
}

// ------------------------------------------------------------------ Postfix's smtp-sink

/// Where scripts/test unpacks Debian's postfix package (RQMAIL_POSTFIX_DIR).
fn postfix_dir() -> PathBuf {
    let d = std::env::var_os("RQMAIL_POSTFIX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/rqmail-postfix"));
    assert!(
        d.join("usr/sbin/smtp-sink").exists(),
        "Postfix's smtp-sink is not unpacked in {}: run scripts/test (the README's test command), which does it",
        d.display()
    );
    d
}

/// smtp-sink on `bind` with `opts`, dumping each message into a directory.
fn smtp_sink(bind: &str, opts: &[&str]) -> (KillOnDrop, u16, tempfile::TempDir) {
    let pf = postfix_dir();
    let dump = scratch("rqmail-remote-");
    for _ in 0..20 {
        let port = {
            let l = std::net::TcpListener::bind((bind, 0)).expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut c = Command::new(pf.join("usr/sbin/smtp-sink"));
        c.env("LD_LIBRARY_PATH", pf.join("usr/lib/postfix"));
        if is_root() {
            c.args(["-u", "nobody"]);
        }
        c.args(opts)
            .arg("-d")
            .arg(format!("{}/%M.", dump.path().display()))
            .arg(format!("{bind}:{port}"))
            .arg("16")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut k = KillOnDrop(c.spawn().expect("start smtp-sink"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect((bind, port)).is_ok() {
                return (k, port, dump);
            }
            if k.0.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("smtp-sink did not start");
}

/// The dump smtp-sink wrote for one message, once it holds `tail` (smtp-sink adds an empty
/// line after each message).
fn sink_dump(dir: &Path, tail: &str) -> String {
    let deadline = Instant::now() + GUARD;
    loop {
        let found = fs::read_dir(dir)
            .expect("dump dir")
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .find(|s| s.ends_with(&format!("{tail}\n")));
        if let Some(d) = found {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "smtp-sink wrote no complete dump"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn smtp_sink_with_and_without_pipelining() {
    for (i, opts) in [&[][..], &["-p"][..], &["-e"][..]].iter().enumerate() {
        let bind = format!("127.1.40.{}", i + 2);
        let (_sink, port, dump) = smtp_sink(&bind, opts);
        let h = home();
        h.control("smtproutes", &format!("sink.test:{bind}:{port}\n"));
        let msg = b"Subject: to the sink\n\n.a dot\n\nline two\n";
        let r = remote(
            &h,
            NO_DNS,
            &["sink.test", "s@here.example", "a@sink.test", "b@sink.test"],
            msg,
        );
        assert_eq!(r.letters(), "rr", "{opts:?}");
        assert_eq!(
            r.last(),
            (
                'K',
                &*format!("{bind} accepted message.\nRemote host said: 250 2.0.0 Ok\n")
            ),
            "{opts:?}"
        );
        let d = &sink_dump(dump.path(), "\n\nline two\n");
        assert!(d.contains("X-Mail-Args: <s@here.example>\n"), "{d}");
        assert!(
            d.contains("X-Rcpt-Args: <a@sink.test>\n")
                && d.contains("X-Rcpt-Args: <b@sink.test>\n"),
            "{d}"
        );
        let proto = if opts.contains(&"-e") {
            "SMTP"
        } else {
            "ESMTP"
        };
        assert!(d.contains(&format!("X-Client-Proto: {proto}\n")), "{d}");
        assert!(
            d.ends_with("\nSubject: to the sink\n\n.a dot\n\nline two\n\n"),
            "{d}"
        );
    }
}

#[test]
fn smtp_sink_rejections() {
    let cases: [(&[&str], &str, char, &str); 4] = [
        (&["-f", "rcpt"], "h", 'D', "Giving up on {ip}.\n"),
        (&["-r", "rcpt"], "s", 'D', "Giving up on {ip}.\n"),
        (
            &["-r", "."],
            "r",
            'Z',
            "{ip} failed after I sent the message.\nRemote host said: 450 4.3.0 Error: command failed\n",
        ),
        (
            &["-q", "data"],
            "r",
            'Z',
            "Connected to {ip} but connection died. (#4.4.2)\n",
        ),
    ];
    for (i, (opts, letters, letter, text)) in cases.iter().enumerate() {
        let bind = format!("127.1.41.{}", i + 2);
        let (_sink, port, _dump) = smtp_sink(&bind, opts);
        let h = home();
        h.control("smtproutes", &format!("sink.test:{bind}:{port}\n"));
        let r = remote(
            &h,
            NO_DNS,
            &["sink.test", "s@here.example", "a@sink.test"],
            MSG,
        );
        assert_eq!(r.letters(), *letters, "{opts:?}");
        assert_eq!(
            r.last(),
            (*letter, &*text.replace("{ip}", &bind)),
            "{opts:?}"
        );
    }
}

// ------------------------------------------------------------------ through qmail-send

/// Waits for a log line matching `f` in the file the log goes to.
fn wait_log(log: &Path, what: &str, f: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + GUARD;
    loop {
        // One snapshot, complete lines only, for both the test and the result.
        let lines: Vec<String> = fs::read_to_string(log)
            .unwrap_or_default()
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .map(str::to_string)
            .collect();
        if f(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in the log: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command for `prog` of the home in single-user mode: as nobody when root.
fn user_cmd(h: &Home, prog: &str) -> Command {
    let path = h.path().join("bin").join(prog);
    let mut c = if is_root() {
        let mut c = Command::new(tool("setpriv"));
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(path);
        c
    } else {
        Command::new(path)
    };
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAIL_HOME", h.path())
        .env("RQMAIL_NAMESERVERS", NO_DNS)
        .current_dir(h.path());
    c
}

#[test]
fn delivered_through_qmail_send_and_qmail_rspawn() {
    let s = SmtpServer::start(
        "127.1.50.2",
        r#""rcpt": {"nobody@far.example": "550 5.1.1 no such user"}"#,
    );
    let h = home();
    fs::set_permissions(h.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    h.control(
        "smtproutes",
        &format!("far.example:127.1.50.2:{}\n", s.port),
    );
    if is_root() {
        let (u, g) = rqmail_tests::user_ids("nobody");
        h.chown_all(u, g);
    }
    let log = h.path().join("log");
    let mut start = user_cmd(&h, "qmail-start");
    start
        .arg("./Maildir/")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).expect("log"))
        .stderr(Stdio::inherit());
    let sys = KillOnDrop(start.spawn().expect("qmail-start"));
    wait_log(&log, "the first status line", |ls| {
        ls.iter().any(|l| l.starts_with("status: local"))
    });

    let mut q = user_cmd(&h, "qmail-queue");
    let (env_r, env_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    q.stdin(Stdio::piped()).stdout(Stdio::from(env_r));
    let mut child = q.spawn().expect("qmail-queue");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"Subject: wired\n\nthrough the whole system\n")
        .expect("message");
    fs::File::from(env_w)
        .write_all(b"Fsender@far.example\0Tx@far.example\0Tnobody@far.example\0\0")
        .expect("envelope");
    assert_eq!(child.wait().expect("wait").code(), Some(0));

    let done = |l: &str| l.contains(": success: 127.1.50.2_accepted");
    let lines = wait_log(&log, "a success and a failure", |ls| {
        ls.iter().any(|l| done(l)) && ls.iter().any(|l| l.contains(": failure: "))
    });
    let success = lines.iter().find(|l| done(l)).expect("success");
    assert!(success.starts_with("delivery "), "{success}");
    assert!(
        success
            .ends_with(": success: 127.1.50.2_accepted_message./Remote_host_said:_250_ok_queued/"),
        "{success}"
    );
    let failure = lines
        .iter()
        .find(|l| l.contains(": failure: "))
        .expect("failure");
    assert!(
        failure.ends_with(
            ": failure: 127.1.50.2_does_not_like_recipient./Remote_host_said:_550_5.1.1_no_such_user/Giving_up_on_127.1.50.2./"
        ),
        "{failure}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("starting delivery ") && l.ends_with(" to remote x@far.example")),
        "{lines:#?}"
    );
    let t = s.transcripts(2);
    let data = t.iter().find_map(|t| t.data.clone()).expect("data");
    assert!(data.starts_with("Received: "), "{data}");
    assert!(
        data.ends_with("Subject: wired\n\nthrough the whole system\n"),
        "{data}"
    );
    // The bounce for nobody@far.example goes back to the sender through the same route.
    let bounce = wait_log(&log, "the bounce's delivery", |_| {
        s.dir.path().join("conn-3.log").exists()
    });
    let _ = bounce;
    let t = s.transcripts(3);
    assert!(
        t.iter()
            .any(|t| t.commands.iter().any(|c| c == "MAIL FROM:<>")),
        "{t:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sys.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
}

#[test]
fn root_mode_runs_as_qmailr() {
    if !is_root() {
        eprintln!("root_mode_runs_as_qmailr needs root (it runs qmail-remote as qmailr); skipped");
        return;
    }
    rqmail_tests::ensure_qmail_users();
    let (qmailr, qmail) = rqmail_tests::user_ids("qmailr");
    let (qmailq, _) = rqmail_tests::user_ids("qmailq");
    let h = home();
    // hier's owners and modes for what qmail-remote touches.
    fs::set_permissions(h.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    for (p, uid, mode) in [
        (h.queue(), qmailq, 0o750),
        (h.queue().join("lock"), qmailq, 0o750),
        (h.queue().join("lock/tcpto"), qmailr, 0o644),
        (h.queue().join("lock/tcpto6"), qmailr, 0o644),
    ] {
        std::os::unix::fs::chown(&p, Some(uid), Some(qmail)).expect("chown");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let as_qmailr = |prog: &str| {
        let mut c = Command::new(tool("setpriv"));
        c.args(["--reuid=qmailr", "--regid=qmail", "--init-groups"])
            .arg(h.path().join("bin").join(prog))
            .env_clear()
            .env("QMAIL_HOME", h.path())
            .env("RQMAIL_NAMESERVERS", NO_DNS)
            .current_dir("/");
        c
    };
    let s = SmtpServer::start("127.1.60.2", "");
    let dir = scratch("rqmail-remote-");
    let (_hole, hole_port) =
        start_python(dir.path(), "hole.py", BLACKHOLE, &[Path::new("127.1.60.3")])
            .expect("start the black hole");
    h.control(
        "smtproutes",
        &format!(
            "far.example:127.1.60.2:{}\nslow.example:127.1.60.3:{hole_port}\n",
            s.port
        ),
    );
    h.control("timeoutconnect", "1\n");
    let mut c = as_qmailr("qmail-remote");
    c.args(["far.example", "s@here.example", "x@far.example"]);
    let (code, out, _) = run_with_input(c, MSG);
    assert_eq!(code, 0);
    assert_eq!(Reports::parse(&out).last().0, 'K');
    let mut c = as_qmailr("qmail-remote");
    c.args(["slow.example", "s@here.example", "x@slow.example"]);
    let (_, out, _) = run_with_input(c, MSG);
    assert_eq!(
        Reports::parse(&out).last(),
        (
            'Z',
            "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
        )
    );
    let out = as_qmailr("qmail-tcpto").output().expect("qmail-tcpto");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("127.1.60.3 timed out "),
        "{out:?}"
    );
    // Another user may not touch the table.
    let mut c = Command::new(tool("setpriv"));
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(h.path().join("bin/qmail-tcpok"))
        .env_clear()
        .env("QMAIL_HOME", h.path());
    let out = c.output().expect("qmail-tcpok");
    assert_eq!(out.status.code(), Some(111));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("qmail-tcpok: fatal: unable to chdir to "),
        "{out:?}"
    );
    let out = as_qmailr("qmail-tcpok").output().expect("qmail-tcpok");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        fs::read(h.queue().join("lock/tcpto")).expect("tcpto"),
        vec![0u8; 1024]
    );
}
