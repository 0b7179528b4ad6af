//! qmail-popup and qmail-pop3d as users meet them: under tcpserver on 127.0.0.1, with a
//! checkpassword program, over a real Maildir, driven by Python's poplib, fetchmail and
//! getmail6 in the clear, after STLS and with TLS from the first byte (POP3S); scripted
//! sessions with exact replies (netqmail's), hostile input, odd Maildirs, root mode with
//! Debian's checkpw and checkapoppw, and the service files.

use crate::smtpd_tls::{
    Key, common_service_checks, py, services, tls_home, xinetd_env, xinetd_get,
};
use rqmail_tests::fakes::checkpassword;
use rqmail_tests::net::LoggedServer;
use rqmail_tests::single::{chown_tree, runner_ids, wait_until};
use rqmail_tests::{Home, KillOnDrop, Piped, bin, free_port, is_root, tool, wait_for_port};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Helpers

/// The messages of a test Maildir: (file name below the Maildir, modification time,
/// contents). Listed oldest first, which is the order qmail-pop3d numbers them in.
const MESSAGES: [(&str, i64, &str); 3] = [
    (
        "new/1000000001.1.testhost",
        1_000_000_001,
        "From: a@example\nSubject: first\n\n.leading dot\nbody one\n",
    ),
    (
        "cur/1000000002.2.testhost:2,S",
        1_000_000_002,
        "Subject: second\n\nline 1\nline 2\nline 3\n",
    ),
    (
        "new/1000000003.3.testhost",
        1_000_000_003,
        "Subject: third\n\nlast line without a newline",
    ),
];

/// Sets a file's access and modification times.
fn set_times(p: &Path, atime: i64, mtime: i64) {
    use nix::sys::time::TimeVal;
    nix::sys::stat::lutimes(p, &TimeVal::new(atime, 0), &TimeVal::new(mtime, 0)).expect("utimes");
}

/// A mailbox owner's home in `dir`: the test checkpassword and a Maildir with
/// [`MESSAGES`]. Given to the single-user runner. Returns the home.
fn mailbox(dir: &Path) -> PathBuf {
    let h = dir.to_path_buf();
    for d in ["new", "cur", "tmp"] {
        fs::create_dir_all(h.join("Maildir").join(d)).expect("maildir");
    }
    for (name, t, text) in MESSAGES {
        let p = h.join("Maildir").join(name);
        fs::write(&p, text).expect("message");
        set_times(&p, t, t);
    }
    checkpassword(&h);
    fs::set_permissions(&h, fs::Permissions::from_mode(0o755)).expect("chmod");
    chown_tree(&h);
    h
}

/// The file names in the Maildir's new/ and cur/, sorted (`new/x`, `cur/y`).
fn maildir_names(home: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for sub in ["cur", "new"] {
        for e in fs::read_dir(home.join("Maildir").join(sub)).expect("read_dir") {
            let name = e.expect("entry").file_name();
            v.push(format!("{sub}/{}", name.to_string_lossy()));
        }
    }
    v.sort();
    v
}

/// qmail-popup under tcpserver on 127.0.0.1 for the mailbox `owner` (whose checkpw it
/// runs), its descriptor 2 in popup.log of the home. In single-user mode when the
/// tests run as root (tcpserver -u), unless `root` is set.
struct Server;

impl Server {
    fn start(home: &Home, env: &[(&str, &str)], owner: &Path, root: bool) -> LoggedServer {
        Server::start_with(home, env, owner, root, &owner.join("checkpw"))
    }

    fn start_with(
        home: &Home,
        env: &[(&str, &str)],
        owner: &Path,
        root: bool,
        checkpw: &Path,
    ) -> LoggedServer {
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = home.path().join(format!("popup-{n}.log"));
        let mut opts = Vec::new();
        let ids = runner_ids();
        let (u, g) = (ids.0.to_string(), ids.1.to_string());
        if is_root() && !root {
            opts = vec!["-u", u.as_str(), "-g", g.as_str()];
        }
        let (popup, pop3d) = (bin("qmail-popup"), bin("qmail-pop3d"));
        let program = [
            popup.as_os_str(),
            "testhost.example".as_ref(),
            checkpw.as_os_str(),
            pop3d.as_os_str(),
            "Maildir".as_ref(),
        ];
        LoggedServer::start(home.path(), env, &opts, &program, log, Some(owner))
    }
}

/// A line-by-line POP3 client over any stream.
struct Client<S: Read + Write> {
    r: BufReader<S>,
}

impl Client<TcpStream> {
    fn connect(port: u16) -> Client<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Client {
            r: BufReader::new(s),
        }
    }
}

impl<S: Read + Write> Client<S> {
    /// One line with its CR LF, or "" at the end of input.
    fn line(&mut self) -> String {
        let mut l = Vec::new();
        self.r.read_until(b'\n', &mut l).expect("read");
        String::from_utf8_lossy(&l).into_owned()
    }

    fn send(&mut self, data: &[u8]) {
        self.r.get_mut().write_all(data).expect("send");
    }

    /// Sends a command, returns the first line of the reply.
    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// The lines of a multi-line reply after its first line, up to the dot.
    fn multi(&mut self) -> String {
        let mut out = String::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "end of input in a multi-line reply: {out:?}");
            if l == ".\r\n" {
                return out;
            }
            out.push_str(&l);
        }
    }

    /// True when the server has closed the connection.
    fn at_eof(&mut self) -> bool {
        self.line().is_empty()
    }
}

/// Greeting `+OK <pid.time@testhost.example>`.
fn assert_greeting(l: &str) {
    let inner = l
        .strip_prefix("+OK <")
        .and_then(|s| s.strip_suffix("@testhost.example>\r\n"))
        .unwrap_or_else(|| panic!("greeting {l:?}"));
    let (pid, time) = inner.split_once('.').expect("pid.time");
    assert!(
        pid.parse::<u32>().is_ok() && time.parse::<u64>().is_ok(),
        "{l:?}"
    );
}

/// A Python poplib session: list, uidl, retr 1, top 2 1, dele 1, quit. `mode` is
/// plain, stls or pop3s. Prints what it saw, one item a line.
const PY_SESSION: &str = r#"
import poplib, ssl, sys
port, mode, cafile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
if mode == "pop3s":
    p = poplib.POP3_SSL("127.0.0.1", port, context=ctx, timeout=60)
else:
    p = poplib.POP3("127.0.0.1", port, timeout=60)
caps = p.capa()
if mode == "stls":
    assert "STLS" in caps and "USER" not in caps, caps
    p.stls(context=ctx)
    caps = p.capa()
# FORCETLS=0: USER in the clear, and STLS is offered too
assert "USER" in caps and ("STLS" in caps) == (mode == "plain"), caps
print(p.user("joe"))
print(p.pass_("secret"))
print(p.stat())
print(p.list()[1])
print(p.uidl()[1])
print(p.retr(1)[1])
print(p.top(2, 1)[1])
print(p.dele(1))
print(p.quit())
# a wrong password ends the session with netqmail's words (relayed through TLS)
p = poplib.POP3_SSL("127.0.0.1", port, context=ctx, timeout=60) if mode == "pop3s" else poplib.POP3("127.0.0.1", port, timeout=60)
if mode == "stls":
    p.stls(context=ctx)
p.user("joe")
try:
    p.pass_("wrong")
except poplib.error_proto as e:
    print(e)
"#;

/// What [`PY_SESSION`] prints for [`MESSAGES`].
const PY_EXPECTED: &str = "b'+OK '
b'+OK '
(3, 135)
[b'1 54', b'2 38', b'3 43']
[b'1 1000000001.1.testhost', b'2 1000000002.2.testhost', b'3 1000000003.3.testhost']
[b'From: a@example', b'Subject: first', b'', b'.leading dot', b'body one', b'']
[b'Subject: second', b'', b'line 1', b'']
b'+OK '
b'+OK '
b'-ERR authorization failed'
";

// ---------------------------------------------------------------------------------------
// Real clients

#[test]
fn poplib_in_the_clear_after_stls_and_over_pop3s() {
    let (home, cert) = tls_home(Key::Ec);
    let cafile = cert.to_str().expect("path");
    for (mode, env) in [
        ("plain", vec![("FORCETLS", "0")]),
        ("stls", vec![]),
        ("pop3s", vec![("POP3S", "1")]),
    ] {
        let owner = mailbox(&home.path().join(format!("owner-{mode}")));
        let s = Server::start(&home, &env, &owner, false);
        let (ok, out, err) = py(PY_SESSION, &[&s.port.to_string(), mode, cafile]);
        assert!(ok, "{mode}: {out}{err}\nlog: {}", s.log());
        assert_eq!(out, PY_EXPECTED, "{mode}");
        // at QUIT: the first message is gone, the one left in new/ moved to cur/
        assert_eq!(
            maildir_names(&owner),
            [
                "cur/1000000002.2.testhost:2,S",
                "cur/1000000003.3.testhost:2,"
            ],
            "{mode}"
        );
        let log = fs::read_to_string(owner.join("checkpw.log")).expect("checkpw.log");
        assert!(log.starts_with("joe secret <"), "{log}");
        assert!(log.trim_end().ends_with("@testhost.example>"), "{log}");
        assert_eq!(s.log(), "", "{mode}");
    }
}

/// Runs fetchmail once against 127.0.0.1:`port` with the given poll options, as the
/// single-user runner; messages go through an MDA into `out`. Returns (success, output).
fn fetchmail(dir: &Path, port: u16, options: &str, out: &Path) -> (bool, String) {
    let rc = dir.join("fetchmailrc");
    fs::write(
        &rc,
        format!(
            "set no syslog\n\
             poll 127.0.0.1 service {port} protocol pop3 auth password\n\
             \tuser \"joe\" there with password \"secret\" {options}\n\
             \tfetchall nokeep\n\
             \tmda \"/bin/sh -c 'cat >> {}; echo ==== >> {}'\"\n",
            out.display(),
            out.display()
        ),
    )
    .expect("rc");
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).expect("chmod");
    let pid = dir.join("fetchmail.pid");
    let rc = rc.as_os_str();
    let args = ["--nodetach", "--nosyslog", "-v", "--fetchmailrc"].map(std::ffi::OsStr::new);
    client(
        dir,
        "fetchmail",
        &[&args[..], &[rc, "--pidfile".as_ref(), pid.as_os_str()]].concat(),
    )
}

/// Runs the client program `name` with `args` as the single-user runner, with `dir` as
/// its home and working directory (given to the runner first); returns (success, its
/// output and errors).
fn client(dir: &Path, name: &str, args: &[&std::ffi::OsStr]) -> (bool, String) {
    chown_tree(dir);
    let o = rqmail_tests::single::user_cmd(dir, &tool(name))
        .env("HOME", dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn fetchmail_in_the_clear_after_stls_and_over_pop3s() {
    let (home, cert) = tls_home(Key::Ec);
    let tls = format!(
        "sslcertck sslcertfile \"{}\" sslcommonname testhost.example",
        cert.display()
    );
    for (mode, env, options) in [
        (
            "plain",
            vec![("FORCETLS", "0")],
            "sslproto \"\"".to_string(),
        ),
        ("stls", vec![], format!("sslproto tls1.2+ {tls}")),
        (
            "pop3s",
            vec![("POP3S", "1")],
            format!("ssl sslproto tls1.2+ {tls}"),
        ),
    ] {
        let owner = mailbox(&home.path().join(format!("owner-{mode}")));
        let s = Server::start(&home, &env, &owner, false);
        let work = home.path().join(format!("fetchmail-{mode}"));
        fs::create_dir(&work).expect("dir");
        let out = work.join("fetched");
        let (ok, text) = fetchmail(&work, s.port, &options, &out);
        assert!(ok, "{mode}: {text}\nlog: {}", s.log());
        let fetched = fs::read_to_string(&out).expect("fetched");
        assert_eq!(fetched.matches("====\n").count(), 3, "{mode}: {fetched}");
        for (_, _, text) in MESSAGES {
            let subject = text.lines().find(|l| l.starts_with("Subject:")).expect("s");
            assert!(fetched.contains(subject), "{mode}: {fetched}");
        }
        assert!(fetched.contains("\n.leading dot\n"), "{fetched}");
        // fetchall nokeep: every message deleted at QUIT
        assert!(maildir_names(&owner).is_empty(), "{mode}");
        if mode != "plain" {
            assert!(
                !text.contains("not encrypted") && !text.contains("TLS is mandatory"),
                "{text}"
            );
        }
    }
}

/// Runs getmail6 once (to a Maildir in `dir`, deleting on the server); returns
/// (success, output).
fn getmail(dir: &Path, port: u16, ssl: Option<&Path>) -> (bool, String) {
    let dest = dir.join("Maildir");
    for d in ["new", "cur", "tmp"] {
        fs::create_dir_all(dest.join(d)).expect("dest");
    }
    let retriever = match ssl {
        None => "type = SimplePOP3Retriever\n".to_string(),
        Some(ca) => format!(
            "type = SimplePOP3SSLRetriever\nca_certs = {}\n",
            ca.display()
        ),
    };
    fs::write(
        dir.join("getmailrc"),
        format!(
            "[retriever]\n{retriever}server = 127.0.0.1\nport = {port}\nusername = joe\npassword = secret\n\n\
             [destination]\ntype = Maildir\npath = {}/\n\n\
             [options]\ndelete = true\nread_all = true\nverbose = 2\n",
            dest.display()
        ),
    )
    .expect("getmailrc");
    let rc = dir.join("getmailrc");
    let args = [
        "--getmaildir".as_ref(),
        dir.as_os_str(),
        "--rcfile".as_ref(),
        rc.as_os_str(),
    ];
    // getmail 6.18 waits for its delivery child on a condition the SIGCHLD handler may
    // have signalled before the wait began (on a busy machine the child is that fast),
    // and then gives up with "waiting child pid N timed out" without saying QUIT. Nothing
    // was deleted on the server then (deletions happen at QUIT only): the same run again,
    // into an empty Maildir, is the same test.
    let mut tries = 0;
    loop {
        let (ok, text) = client(dir, "getmail", &args);
        tries += 1;
        if ok || tries == 3 || !text.contains("timed out") || !text.contains("waiting child pid") {
            return (ok, text);
        }
        for d in ["new", "cur", "tmp"] {
            for e in fs::read_dir(dest.join(d)).expect("dest").flatten() {
                fs::remove_file(e.path()).expect("clear");
            }
        }
    }
}

/// getmail6 has no STLS for POP3 (only IMAP STARTTLS): in the clear and over POP3S.
#[test]
fn getmail_in_the_clear_and_over_pop3s() {
    let (home, cert) = tls_home(Key::Ec);
    for (mode, env, ssl) in [
        ("plain", vec![("FORCETLS", "0")], None),
        ("pop3s", vec![("POP3S", "1")], Some(cert.as_path())),
    ] {
        let owner = mailbox(&home.path().join(format!("owner-{mode}")));
        let s = Server::start(&home, &env, &owner, false);
        let work = home.path().join(format!("getmail-{mode}"));
        fs::create_dir(&work).expect("dir");
        let (ok, text) = getmail(&work, s.port, ssl);
        assert!(ok, "{mode}: {text}\nlog: {}", s.log());
        let mut got: Vec<String> = fs::read_dir(work.join("Maildir/new"))
            .expect("new")
            .map(|e| fs::read_to_string(e.expect("e").path()).expect("msg"))
            .collect();
        got.sort();
        assert_eq!(got.len(), 3, "{mode}: {text}");
        assert!(
            got.iter().any(|m| m.contains(".leading dot\nbody one\n")),
            "{got:?}"
        );
        assert!(maildir_names(&owner).is_empty(), "{mode}");
    }
}

// ---------------------------------------------------------------------------------------
// The dialogue

#[test]
fn no_password_before_tls() {
    let (home, cert) = tls_home(Key::Ec);
    let owner = mailbox(&home.path().join("owner"));
    let s = Server::start(&home, &[], &owner, false);
    let mut c = Client::connect(s.port);
    assert_greeting(&c.line());
    assert_eq!(c.cmd("CAPA"), "+OK capability list follows\r\n");
    assert_eq!(c.multi(), "TOP\r\nUIDL\r\nSTLS\r\n");
    assert_eq!(c.cmd("USER joe"), "-ERR STLS first\r\n");
    assert_eq!(c.cmd("PASS secret"), "-ERR STLS first\r\n");
    assert_eq!(
        c.cmd("APOP joe 0123456789abcdef0123456789abcdef"),
        "-ERR STLS first\r\n"
    );
    assert_eq!(c.cmd("STAT"), "-ERR authorization first\r\n");
    assert_eq!(c.cmd("QUIT"), "+OK \r\n");
    assert!(c.at_eof());
    assert!(
        !owner.join("checkpw.log").exists(),
        "no password reached checkpw"
    );

    // Commands pipelined behind STLS are dropped (CVE-2011-0411): the USER sent in the
    // clear is forgotten, so PASS inside TLS wants a USER first.
    let script = r#"
import socket, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
s = socket.create_connection(("127.0.0.1", port), timeout=60)
f = s.makefile("rb")
f.readline()
s.sendall(b"USER joe\r\nSTLS\r\nUSER eve\r\n")
print(f.readline(), f.readline())
t = ctx.wrap_socket(s, server_hostname="testhost.example")
g = t.makefile("rb")
t.sendall(b"PASS secret\r\n")
print(g.readline())
t.sendall(b"CAPA\r\n")
print(g.readline(), g.readline(), g.readline(), g.readline(), g.readline())
t.sendall(b"STLS\r\nQUIT\r\n")
print(g.readline(), g.readline())
"#;
    let (ok, out, err) = py(script, &[&s.port.to_string(), cert.to_str().expect("p")]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out,
        "b'-ERR STLS first\\r\\n' b'+OK begin TLS\\r\\n'\n\
         b'-ERR USER first\\r\\n'\n\
         b'+OK capability list follows\\r\\n' b'TOP\\r\\n' b'UIDL\\r\\n' b'USER\\r\\n' b'.\\r\\n'\n\
         b'-ERR TLS already active\\r\\n' b'+OK \\r\\n'\n"
    );

    // Without a certificate and without FORCETLS=0, no login is possible at all; STLS
    // is then an unknown command, as in netqmail.
    let plain = Home::new();
    let owner = mailbox(&plain.path().join("owner"));
    let s = Server::start(&plain, &[], &owner, false);
    let mut c = Client::connect(s.port);
    assert_greeting(&c.line());
    assert_eq!(c.cmd("STLS"), "-ERR authorization first\r\n");
    assert_eq!(c.cmd("CAPA"), "+OK capability list follows\r\n");
    assert_eq!(c.multi(), "TOP\r\nUIDL\r\n");
    assert_eq!(
        c.cmd("USER joe"),
        "-ERR TLS required but not configured\r\n"
    );

    // POP3S without a certificate: no byte in the clear, a line in the log.
    let s = Server::start(&plain, &[("POP3S", "1")], &owner, false);
    let mut c = Client::connect(s.port);
    assert!(c.at_eof());
    wait_until("the POP3S log line", || {
        s.log().contains("TLS not available")
    });
    assert!(
        s.log().contains("servercert.pem does not exist"),
        "{}",
        s.log()
    );
}

#[test]
fn deletions_happen_at_quit_only() {
    let home = Home::new();
    let owner = mailbox(&home.path().join("owner"));
    let s = Server::start(&home, &[("FORCETLS", "0")], &owner, false);
    let before = maildir_names(&owner);
    let login = |c: &mut Client<TcpStream>| {
        assert_greeting(&c.line());
        assert_eq!(c.cmd("USER joe"), "+OK \r\n");
        assert_eq!(c.cmd("PASS secret"), "+OK \r\n");
    };

    // DELE, then the client goes away: nothing changes
    let mut c = Client::connect(s.port);
    login(&mut c);
    assert_eq!(c.cmd("DELE 1"), "+OK \r\n");
    assert_eq!(c.cmd("DELE 3"), "+OK \r\n");
    assert_eq!(c.cmd("STAT"), "+OK 3 38\r\n");
    drop(c);
    // the next session sees everything (and waits until the last one has ended)
    let mut c = Client::connect(s.port);
    login(&mut c);
    assert_eq!(c.cmd("STAT"), "+OK 3 135\r\n");
    assert_eq!(maildir_names(&owner), before);
    // DELE, RSET, DELE, QUIT: only the last deletion counts
    assert_eq!(c.cmd("DELE 1"), "+OK \r\n");
    assert_eq!(c.cmd("LAST"), "+OK 1\r\n");
    assert_eq!(c.cmd("RSET"), "+OK \r\n");
    assert_eq!(c.cmd("DELE 2"), "+OK \r\n");
    assert_eq!(c.cmd("LAST"), "+OK 2\r\n");
    assert_eq!(maildir_names(&owner), before);
    assert_eq!(c.cmd("QUIT"), "+OK \r\n");
    assert!(c.at_eof());
    assert_eq!(
        maildir_names(&owner),
        [
            "cur/1000000001.1.testhost:2,",
            "cur/1000000003.3.testhost:2,"
        ]
    );
}

/// A whole session on pipes (qmail-popup run directly, FORCETLS=0), byte for byte.
/// These are the bytes netqmail 1.06's qmail-popup and qmail-pop3d write for the same
/// session and Maildir (compared by hand, see qmail-pop3d(8)); only the time stamp in
/// the greeting differs from run to run.
#[test]
fn a_session_byte_for_byte() {
    let home = Home::new();
    let owner = mailbox(&home.path().join("owner"));
    let mut cmd = rqmail_tests::single::user_cmd(&owner, &bin("qmail-popup"));
    cmd.env("FORCETLS", "0")
        .env("QMAIL_HOME", home.path())
        .arg("testhost.example")
        .arg(owner.join("checkpw"))
        .arg(bin("qmail-pop3d"))
        .arg("Maildir");
    let mut p = Piped::start(cmd, Duration::from_secs(120));
    let mut out = Vec::new();
    let mut say = |p: &mut Piped, line: &str, lines: usize| {
        p.write_all(line.as_bytes()).expect("write");
        let mut r = BufReader::new(&mut *p);
        for _ in 0..lines {
            let mut l = Vec::new();
            r.read_until(b'\n', &mut l).expect("read");
            out.extend(l);
        }
        assert!(r.buffer().is_empty());
    };
    say(&mut p, "", 1);
    say(&mut p, "NOOP\r\n", 1);
    say(&mut p, "LIST\r\n", 1);
    say(&mut p, "USER joe\r\n", 1);
    say(&mut p, "PASS secret\r\n", 1);
    say(&mut p, "STAT\r\n", 1);
    say(&mut p, "LIST\r\n", 5);
    say(&mut p, "UIDL\r\n", 5);
    say(&mut p, "UIDL 2\r\n", 1);
    say(&mut p, "LIST 4\r\n", 1);
    say(&mut p, "LIST 0\r\n", 1);
    say(&mut p, "LIST x\r\n", 1);
    say(&mut p, "RETR 1\r\n", 8);
    say(&mut p, "TOP 2 1\r\n", 6);
    say(&mut p, "RETR 3\r\n", 6);
    say(&mut p, "RETR 2 0\r\n", 5);
    say(&mut p, "DELE 2\r\n", 1);
    say(&mut p, "DELE 2\r\n", 1);
    say(&mut p, "STAT\r\n", 1);
    say(&mut p, "LAST\r\n", 1);
    say(&mut p, "CAPA\r\n", 1);
    say(&mut p, "QUIT\r\n", 1);
    assert!(p.at_eof());
    let out = String::from_utf8(out).expect("utf-8");
    let (greeting, rest) = out.split_once("\r\n").expect("greeting");
    assert_greeting(&format!("{greeting}\r\n"));
    assert_eq!(
        rest,
        "+OK \r\n\
         -ERR authorization first\r\n\
         +OK \r\n\
         +OK \r\n\
         +OK 3 135\r\n\
         +OK \r\n1 54\r\n2 38\r\n3 43\r\n.\r\n\
         +OK \r\n1 1000000001.1.testhost\r\n2 1000000002.2.testhost\r\n3 1000000003.3.testhost\r\n.\r\n\
         +OK 2 1000000002.2.testhost\r\n\
         -ERR not that many messages\r\n\
         -ERR messages are counted from 1\r\n\
         -ERR syntax error\r\n\
         +OK \r\nFrom: a@example\r\nSubject: first\r\n\r\n..leading dot\r\nbody one\r\n\r\n.\r\n\
         +OK \r\nSubject: second\r\n\r\nline 1\r\n\r\n.\r\n\
         +OK \r\nSubject: third\r\n\r\nlast line without a newline\r\n\r\n.\r\n\
         +OK \r\nSubject: second\r\n\r\n\r\n.\r\n\
         +OK \r\n\
         -ERR already deleted\r\n\
         +OK 3 97\r\n\
         +OK 2\r\n\
         -ERR unimplemented\r\n\
         +OK \r\n"
    );
    assert_eq!(
        maildir_names(&owner),
        [
            "cur/1000000001.1.testhost:2,",
            "cur/1000000003.3.testhost:2,"
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Bad input

#[test]
fn failed_logins_end_the_session_as_in_netqmail() {
    let home = Home::new();
    let owner = mailbox(&home.path().join("owner"));
    let s = Server::start(&home, &[("FORCETLS", "0")], &owner, false);
    for (user, pass, reply) in [
        ("joe", "wrong", "-ERR authorization failed\r\n"),
        ("nobody", "secret", "-ERR authorization failed\r\n"),
        ("tempfail", "x", "-ERR authorization failed\r\n"),
        ("crash", "x", "-ERR aack, child crashed\r\n"),
    ] {
        let mut c = Client::connect(s.port);
        assert_greeting(&c.line());
        assert_eq!(c.cmd(&format!("USER {user}")), "+OK \r\n");
        assert_eq!(c.cmd(&format!("PASS {pass}")), reply, "{user}");
        assert!(c.at_eof(), "{user}");
    }
    // APOP with the digest of the greeting's time stamp
    let mut c = Client::connect(s.port);
    let greeting = c.line();
    let ts = &greeting["+OK ".len()..greeting.len() - 2];
    let digest = Command::new(tool("md5sum"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            ch.stdin
                .take()
                .expect("stdin")
                .write_all(format!("{ts}secret").as_bytes())?;
            ch.wait_with_output()
        })
        .expect("md5sum");
    let digest = String::from_utf8_lossy(&digest.stdout)[..32].to_string();
    assert_eq!(c.cmd(&format!("APOP joe {digest}")), "+OK \r\n");
    assert_eq!(c.cmd("STAT"), "+OK 3 135\r\n");
    assert_eq!(c.cmd("QUIT"), "+OK \r\n");
    let log = fs::read_to_string(owner.join("checkpw.log")).expect("log");
    assert!(log.ends_with(&format!("joe {digest} {ts}\n")), "{log}");

    // a subprogram that cannot be started
    let s = Server::start_with(
        &home,
        &[("FORCETLS", "0")],
        &owner,
        false,
        Path::new("/nonexistent/checkpassword"),
    );
    let mut c = Client::connect(s.port);
    assert_greeting(&c.line());
    assert_eq!(c.cmd("USER joe"), "+OK \r\n");
    assert_eq!(c.cmd("PASS secret"), "-ERR authorization failed\r\n");
    assert!(c.at_eof());
    wait_until("the log line", || s.log().contains("unable to run"));
}

#[test]
fn hostile_input() {
    let home = Home::new();
    let owner = mailbox(&home.path().join("owner"));
    let s = Server::start(&home, &[("FORCETLS", "0")], &owner, false);
    let before = maildir_names(&owner);

    // commands before authorization
    let mut c = Client::connect(s.port);
    assert_greeting(&c.line());
    for cmd in [
        "STAT", "LIST", "RETR 1", "DELE 1", "TOP 1 1", "UIDL", "LAST", "RSET", "XYZZY", "",
    ] {
        assert_eq!(c.cmd(cmd), "-ERR authorization first\r\n", "{cmd}");
    }
    assert_eq!(c.cmd("PASS secret"), "-ERR USER first\r\n");
    assert_eq!(c.cmd("USER"), "-ERR syntax error\r\n");
    assert_eq!(c.cmd("APOP joe"), "-ERR syntax error\r\n");
    // NUL ends a line; tabs do not separate; lower case is fine
    c.send(b"NOOP\0junk\r\n");
    assert_eq!(c.line(), "+OK \r\n");
    assert_eq!(c.cmd("NOOP\tx"), "-ERR authorization first\r\n");
    assert_eq!(c.cmd("noop"), "+OK \r\n");
    // a huge line: answered, and the connection ends (one byte beyond the bound, so
    // that the server has read everything and closes without a reset)
    c.send(&vec![b'A'; 16385]);
    assert_eq!(c.line(), "-ERR line too long\r\n");
    assert!(c.at_eof());

    // after authorization: unknown commands, bad numbers, a huge line (nothing deleted)
    let mut c = Client::connect(s.port);
    assert_greeting(&c.line());
    assert_eq!(c.cmd("USER joe"), "+OK \r\n");
    assert_eq!(c.cmd("PASS secret"), "+OK \r\n");
    for (cmd, reply) in [
        ("USER joe", "-ERR unimplemented\r\n"),
        ("CAPA", "-ERR unimplemented\r\n"),
        ("STLS", "-ERR unimplemented\r\n"),
        ("XYZZY", "-ERR unimplemented\r\n"),
        ("DELE", "-ERR syntax error\r\n"),
        ("DELE -1", "-ERR syntax error\r\n"),
        ("DELE 0", "-ERR messages are counted from 1\r\n"),
        (
            "DELE 99999999999999999999",
            "-ERR not that many messages\r\n",
        ),
        ("RETR 4", "-ERR not that many messages\r\n"),
        ("DELE 1", "+OK \r\n"),
        ("RETR 1", "-ERR already deleted\r\n"),
    ] {
        assert_eq!(c.cmd(cmd), reply, "{cmd}");
    }
    c.send(&vec![b'B'; 16385]);
    assert_eq!(c.line(), "-ERR line too long\r\n");
    assert!(c.at_eof());
    assert_eq!(maildir_names(&owner), before);

    // usage errors
    let o = rqmail_tests::single::user_cmd(&owner, &bin("qmail-popup"))
        .arg("testhost.example")
        .stdin(Stdio::null())
        .output()
        .expect("qmail-popup");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(o.stdout, b"-ERR usage: popup hostname subprogram\r\n");
    for (args, reply) in [
        (&[][..], "-ERR this user has no $HOME/Maildir\r\n"),
        (
            &["nonexistent"][..],
            "-ERR this user has no $HOME/Maildir\r\n",
        ),
        (
            &["Maildir/new"][..],
            "-ERR unable to scan $HOME/Maildir\r\n",
        ),
    ] {
        let o = rqmail_tests::single::user_cmd(&owner, &bin("qmail-pop3d"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("qmail-pop3d");
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), reply, "{args:?}");
    }
}

/// qmail-pop3d run directly on a Maildir in `dir` with `input`; returns its output.
fn pop3d(dir: &Path, input: &str) -> Vec<u8> {
    let mut c = rqmail_tests::single::user_cmd(dir, &bin("qmail-pop3d"));
    c.arg("Maildir");
    let mut p = Piped::start(c, Duration::from_secs(120));
    p.write_all(input.as_bytes()).expect("write");
    p.close_input();
    let mut out = Vec::new();
    p.read_to_end(&mut out).expect("read");
    out
}

fn now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    i64::try_from(d.as_secs()).expect("time")
}

/// qmail-pop3d(8), CONFINEMENT, in single-user mode: no_new_privs and seccomp while it
/// serves, and a message linked to a file outside the Maildir (readable by the user) is
/// listed but cannot be read; the others are served and moved to cur/ at QUIT.
#[test]
fn pop3d_is_confined_to_the_maildir() {
    let home = Home::new();
    let dir = home.path().join("confined");
    mailbox(&dir);
    fs::write(dir.join("secret"), "not for POP3\n").expect("write");
    set_times(&dir.join("secret"), 1_000_000_004, 1_000_000_004);
    std::os::unix::fs::symlink(
        "../../secret",
        dir.join("Maildir/cur/1000000004.4.testhost"),
    )
    .expect("symlink");
    chown_tree(&dir);
    let mut c = rqmail_tests::single::user_cmd(&dir, &bin("qmail-pop3d"));
    c.arg("Maildir");
    let mut p = Piped::start(c, Duration::from_secs(120));
    let mut greeting = [0u8; 6];
    p.read_exact(&mut greeting).expect("greeting");
    assert_eq!(&greeting, b"+OK \r\n");
    let (nnp, seccomp, _) = confinement(p.pid());
    assert_eq!((nnp.as_str(), seccomp.as_str()), ("1", "2"));
    p.write_all(b"LIST 4\r\nRETR 4\r\nRETR 3\r\nQUIT\r\n")
        .expect("write");
    p.close_input();
    let mut out = Vec::new();
    p.read_to_end(&mut out).expect("read");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+OK 4 13\r\n-ERR unable to open that message\r\n\
         +OK \r\nSubject: third\r\n\r\nlast line without a newline\r\n\r\n.\r\n+OK \r\n"
    );
    assert_eq!(
        maildir_names(&dir),
        [
            "cur/1000000001.1.testhost:2,",
            "cur/1000000002.2.testhost:2,S",
            "cur/1000000003.3.testhost:2,",
            "cur/1000000004.4.testhost",
        ]
    );
}

#[test]
fn a_maildir_with_odd_names() {
    let home = Home::new();
    let dir = home.path().join("odd");
    let md = dir.join("Maildir");
    for d in ["new", "cur", "tmp"] {
        fs::create_dir_all(md.join(d)).expect("mkdir");
    }
    let file = |name: &[u8], t: i64, text: &str| {
        let p = md.join(std::ffi::OsStr::from_bytes(name));
        fs::write(&p, text).expect("write");
        set_times(&p, t, t);
    };
    file(b"new/100.with space.host", 100, "a\n");
    file(b"cur/101.no-colon", 101, "bb\n");
    file(b"cur/102.two:colons:2,S", 102, "ccc\n");
    file(b"new/.hidden", 103, "hidden\n");
    file(b"new/104.caf\xe9", 104, "dddd\n");
    // a message from the future (or from this very second) waits for a later session
    file(b"new/999.future", 4_000_000_000, "future\n");
    // a dangling symbolic link is left out; a link is listed as what it points to, but
    // one that leads out of the Maildir cannot be read (qmail-pop3d(8), CONFINEMENT)
    std::os::unix::fs::symlink("/nonexistent", md.join("new/105.dangling")).expect("ln");
    fs::write(dir.join("elsewhere"), "eeeee\n").expect("write");
    set_times(&dir.join("elsewhere"), 106, 106);
    std::os::unix::fs::symlink("../../elsewhere", md.join("cur/106.link")).expect("ln");
    // a FIFO reads as an empty message (netqmail opens messages without blocking)
    nix::unistd::mkfifo(
        &md.join("cur/107.fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    set_times(&md.join("cur/107.fifo"), 107, 107);
    // tmp/: a file not read for 40 hours is removed, a fresh one stays
    let now = now();
    file(b"tmp/old", now - 40 * 3600, "x");
    file(b"tmp/fresh", now, "x");
    chown_tree(&dir);

    let out = pop3d(&dir, "LIST\r\nUIDL\r\nRETR 5\r\nRETR 6\r\nQUIT\r\n");
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(
            b"+OK \r\n\
              +OK \r\n1 2\r\n2 3\r\n3 4\r\n4 5\r\n5 6\r\n6 0\r\n.\r\n\
              +OK \r\n1 100.with space.host\r\n2 101.no-colon\r\n3 102.two\r\n4 104.caf\xe9\r\n\
              5 106.link\r\n6 107.fifo\r\n.\r\n\
              -ERR unable to open that message\r\n\
              +OK \r\n\r\n.\r\n\
              +OK \r\n"
        )
    );
    assert!(
        out.windows(5).any(|w| w == b"caf\xe9\r"),
        "the name's bytes as they are"
    );
    assert!(!md.join("tmp/old").exists());
    assert!(md.join("tmp/fresh").exists());
    // at QUIT the messages of new/ move to cur/; the hidden and future ones stay
    assert!(md.join("cur/100.with space.host:2,").exists());
    assert!(
        md.join(std::ffi::OsStr::from_bytes(b"cur/104.caf\xe9:2,"))
            .exists()
    );
    assert!(md.join("new/.hidden").exists() && md.join("new/999.future").exists());

    // a directory among the messages is listed with its size, and reading it ends the
    // session right after +OK, as in netqmail (nothing is deleted)
    fs::create_dir(md.join("cur/200.dir")).expect("mkdir");
    set_times(&md.join("cur/200.dir"), 200, 200);
    chown_tree(&dir);
    let out = pop3d(&dir, "DELE 1\r\nUIDL 7\r\nRETR 7\r\nQUIT\r\n");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+OK \r\n+OK \r\n+OK 7 200.dir\r\n+OK \r\n"
    );
    assert!(md.join("cur/100.with space.host:2,").exists());
}

// ---------------------------------------------------------------------------------------
// Root mode

/// The system user of the root-mode test, its home, and a lock for both across test
/// processes.
const POP_USER: &str = "rqmailpop";
const POP_USER_HOME: &str = "/var/tmp/rqmail-pop-user";

#[test]
fn root_mode_with_debian_checkpw_and_checkapoppw() {
    if !is_root() {
        eprintln!("root_mode_with_debian_checkpw_and_checkapoppw needs root: not checked");
        return;
    }
    rqmail_tests::ensure_qmail_users();
    // the user's home is wiped and made anew: one test process at a time
    let _lock = rqmail_tests::lock_file("/var/tmp/rqmail-pop-user.lock");
    let (uid, gid) = rqmail_tests::ensure_system_user(POP_USER, POP_USER_HOME);
    let (qmaild, _) = rqmail_tests::user_ids("qmaild");
    let user_home = Path::new(POP_USER_HOME);
    let _ = fs::remove_dir_all(user_home);
    let (home, cert) = tls_home(Key::Ec);
    mailbox(user_home);
    fs::write(user_home.join("Maildir/.password"), "secret\n").expect("password");
    fs::set_permissions(
        user_home.join("Maildir/.password"),
        fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    chown_all(user_home, uid, gid);

    // checkpw under qmail-popup as root, in the clear (FORCETLS=0) so that the
    // processes can be inspected mid-session
    let s = Server::start_with(
        &home,
        &[("FORCETLS", "0")],
        user_home,
        true,
        &tool("checkpw"),
    );
    let mut c = Client::connect(s.port);
    assert_greeting(&c.line());
    // the parent keeps root; the worker that reads the client runs as qmaild
    let tcpserver = s.pid();
    let popup = only_child(tcpserver, "qmail-popup");
    assert_eq!(uid_of(popup), 0);
    let worker = only_child(popup, "qmail-popup");
    assert_eq!(uid_of(worker), qmaild);
    // qmail-popup(8), CONFINEMENT: the parent as it was started (it runs checkpw), the
    // worker with no_new_privs, seccomp and an empty bounding set
    let full = confinement(popup).2;
    assert_eq!(confinement(popup), ("0".into(), "0".into(), full.clone()));
    assert_eq!(
        confinement(worker),
        ("1".into(), "2".into(), "0000000000000000".into())
    );
    assert_eq!(c.cmd(&format!("USER {POP_USER}")), "+OK \r\n");
    assert_eq!(c.cmd("PASS secret"), "+OK \r\n");
    // qmail-pop3d runs as the user, under qmail-popup, confined (qmail-pop3d(8))
    let pop3d = only_child(popup, "qmail-pop3d");
    assert_eq!(uid_of(pop3d), uid);
    assert_eq!(confinement(pop3d), ("1".into(), "2".into(), full));
    assert_eq!(c.cmd("STAT"), "+OK 3 135\r\n");
    assert_eq!(c.cmd("DELE 2"), "+OK \r\n");
    assert_eq!(c.cmd("QUIT"), "+OK \r\n");
    assert!(c.at_eof());
    assert_eq!(
        maildir_names(user_home),
        [
            "cur/1000000001.1.testhost:2,",
            "cur/1000000003.3.testhost:2,"
        ]
    );
    let mut c = Client::connect(s.port);
    c.line();
    c.cmd(&format!("USER {POP_USER}"));
    assert_eq!(c.cmd("PASS wrong"), "-ERR authorization failed\r\n");
    drop(s);

    // checkpw after STLS, and checkapoppw with APOP over POP3S, with poplib
    let script = r#"
import poplib, ssl, sys
port, mode, cafile, user = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
if mode == "pop3s":
    p = poplib.POP3_SSL("127.0.0.1", port, context=ctx, timeout=60)
    print(p.apop(user, "secret"))
else:
    p = poplib.POP3("127.0.0.1", port, timeout=60)
    p.stls(context=ctx)
    p.user(user)
    print(p.pass_("secret"))
print(p.stat())
print(p.quit())
"#;
    for (mode, env, prog) in [
        ("stls", vec![], "checkpw"),
        ("pop3s", vec![("POP3S", "1")], "checkapoppw"),
    ] {
        let s = Server::start_with(&home, &env, user_home, true, &tool(prog));
        let (ok, out, err) = py(
            script,
            &[
                &s.port.to_string(),
                mode,
                cert.to_str().expect("p"),
                POP_USER,
            ],
        );
        assert!(ok, "{mode}: {out}{err}\nlog: {}", s.log());
        assert_eq!(out, "b'+OK '\n(2, 97)\nb'+OK '\n", "{mode}");
    }
}

/// Gives `p` and everything below it to uid:gid.
fn chown_all(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).expect("chown");
    if p.is_dir() && !p.is_symlink() {
        for e in fs::read_dir(p).expect("read_dir") {
            chown_all(&e.expect("entry").path(), uid, gid);
        }
    }
}

/// The one child of `parent` named `name` (waits for it to appear).
fn only_child(parent: i32, name: &str) -> i32 {
    let mut found = 0;
    wait_until(&format!("a {name} under {parent}"), || {
        let v: Vec<i32> = rqmail_tests::children(parent)
            .into_iter()
            .filter(|(_, n)| n == name)
            .map(|(p, _)| p)
            .collect();
        found = v.first().copied().unwrap_or(0);
        v.len() == 1
    });
    found
}

/// (NoNewPrivs, Seccomp, CapBnd) of `pid`.
fn confinement(pid: i32) -> (String, String, String) {
    let st = rqmail_tests::proc_status(pid).expect("alive");
    (
        st["NoNewPrivs"].clone(),
        st["Seccomp"].clone(),
        st["CapBnd"].clone(),
    )
}

fn uid_of(pid: i32) -> u32 {
    rqmail_tests::proc_status(pid)
        .and_then(|s| s.get("Uid").cloned())
        .and_then(|u| u.split_whitespace().nth(1).and_then(|e| e.parse().ok()))
        .expect("uid")
}

// ---------------------------------------------------------------------------------------
// Service files

/// The POP3 services of services/ (their systemd units are verified with the SMTP ones,
/// in smtpd_tls.rs).
pub(crate) const SERVICES: [&str; 2] = ["qmail-pop3d", "qmail-pop3s"];

#[test]
fn service_files_are_well_formed() {
    for s in SERVICES {
        // root: the checkpassword program must become the user
        let (run, attrs, svc) = common_service_checks(s, "root", "/var/qmail/bin/qmail-popup ");
        assert!(run.contains("/bin/qmail-pop3d"), "{s}");
        assert_eq!(run.contains("\nPOP3S=1\n"), s == "qmail-pop3s", "{s}");
        let (env, port) = (xinetd_env(&attrs), xinetd_get(s, &attrs, "port"));
        match s {
            "qmail-pop3s" => assert_eq!((env, port), (vec!["POP3S=1"], "995")),
            _ => assert_eq!((env, port), (vec![], "110")),
        }
        let pop3s = svc
            .iter()
            .any(|(_, k, v)| k == "Environment" && v == "POP3S=1");
        assert_eq!(pop3s, s == "qmail-pop3s");
        let sock =
            fs::read_to_string(services().join(format!("systemd/{s}.socket"))).expect("socket");
        assert!(sock.contains(&format!("\nListenStream={port}\n")), "{sock}");
    }
}

/// The daemontools run scripts serve a test home: POP3S with poplib.
#[test]
fn the_pop3s_run_script_serves_a_test_home() {
    let (home, cert) = tls_home(Key::Ec);
    let owner = mailbox(&home.path().join("owner"));
    let dir = services().join("daemontools/qmail-pop3s");
    let port = free_port();
    let log = home.path().join("run.log");
    let run = Command::new(dir.join("run"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("QMAIL_HOME", home.path())
        .env("POP3D_IP", "127.0.0.1")
        .env("POP3D_PORT", port.to_string())
        .env("CHECKPASSWORD", owner.join("checkpw"))
        .current_dir(&owner)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let _run = KillOnDrop(run);
    wait_for_port(port);
    let (ok, out, err) = py(
        PY_SESSION,
        &[&port.to_string(), "pop3s", cert.to_str().expect("p")],
    );
    let log = fs::read_to_string(&log).unwrap_or_default();
    assert!(ok, "{out}{err}\nlog: {log}");
    assert_eq!(out, PY_EXPECTED);
    assert!(log.contains("tcpserver: status: 1/"), "{log}");
}
