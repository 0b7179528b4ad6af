//! tcp-env with a real TCP connection on its standard input, as inetd, xinetd or a systemd
//! socket unit with `Accept=yes` would start it: every variable over IPv4, IPv6 and a
//! dual-stack listener, `-l`/`-H`/`-R`, the failures, the RFC 1413 query against a responder
//! the test starts on port 113, reverse DNS against a DNS server the test starts (in a mount
//! namespace whose resolv.conf points at it), and the chain tcp-env → qmail-smtpd.

use rqmail_tests::{Home, Smtp, bin, is_root, tool};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Hang guard for every program run here (never a timing assertion).
const GUARD: Duration = Duration::from_secs(120);

/// Serialises the tests that take a fixed port (113, 53) across every test process on
/// this machine (several people may run the suite at once).
fn fixed_port_lock() -> nix::fcntl::Flock<fs::File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/rqmail-test-tcpenv-ports.lock")
        .expect("lock file");
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock")
}

/// A connected pair: (the server's accepted socket, the client's socket).
fn connection(listen: &str) -> (TcpStream, TcpStream) {
    let l = TcpListener::bind(listen).expect("listen");
    let client = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (server, _) = l.accept().expect("accept");
    (server, client)
}

/// Waits for `child` with the hang guard; returns (exit code, stdout, stderr).
fn finish(mut child: Child) -> (i32, String, String) {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut s);
        }
        s
    });
    let deadline = Instant::now() + GUARD;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("program did not finish within {GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = String::from_utf8_lossy(&t_out.join().expect("stdout")).into_owned();
    let err = String::from_utf8_lossy(&t_err.join().expect("stderr")).into_owned();
    (status.code().unwrap_or(-1), out, err)
}

/// Runs tcp-env with `stdin` and returns (exit code, stdout, stderr).
fn run(mut cmd: Command, stdin: Stdio) -> (i32, String, String) {
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    finish(cmd.spawn().expect("spawn tcp-env"))
}

/// tcp-env from the home's bin/ with stale connection variables in its environment, so
/// that every test also proves which variables tcp-env replaces or removes.
fn tcp_env(home: &Home, args: &[&str]) -> Command {
    let mut c = home.cmd("tcp-env");
    for v in [
        "TCPLOCALHOST",
        "TCPLOCALIP",
        "TCPLOCALPORT",
        "TCPREMOTEHOST",
        "TCPREMOTEIP",
        "TCPREMOTEPORT",
        "TCPREMOTEINFO",
    ] {
        c.env(v, "stale");
    }
    c.args(args);
    c
}

/// The output of `env` as a map.
fn env_map(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn var<'a>(m: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    m.get(k).map(String::as_str)
}

/// Runs `tcp-env ARGS /usr/bin/env` on a connection accepted from `listen`; returns the
/// variables and the two sockets' addresses as the test sees them (local, remote).
fn env_over(
    home: &Home,
    listen: &str,
    args: &[&str],
) -> (BTreeMap<String, String>, SocketAddr, SocketAddr) {
    let (server, _client) = connection(listen);
    let local = server.local_addr().expect("local");
    let remote = server.peer_addr().expect("peer");
    let mut a = args.to_vec();
    a.push("/usr/bin/env");
    let (code, out, err) = run(tcp_env(home, &a), Stdio::from(OwnedFd::from(server)));
    assert_eq!(code, 0, "tcp-env failed: {err}");
    assert_eq!(err, "");
    (env_map(&out), local, remote)
}

#[test]
fn ipv4_every_variable() {
    let home = Home::new();
    let (m, local, remote) = env_over(&home, "127.0.0.1:0", &["-R", "-H", "-l", "mx.example"]);
    assert_eq!(var(&m, "PROTO"), Some("TCP"));
    assert_eq!(var(&m, "TCPLOCALIP"), Some("127.0.0.1"));
    assert_eq!(var(&m, "TCPLOCALPORT"), Some(&*local.port().to_string()));
    assert_eq!(var(&m, "TCPLOCALHOST"), Some("mx.example"));
    assert_eq!(var(&m, "TCPREMOTEIP"), Some("127.0.0.1"));
    assert_eq!(var(&m, "TCPREMOTEPORT"), Some(&*remote.port().to_string()));
    // -H and -R: no name, no remote info, and the stale values are gone.
    assert_eq!(var(&m, "TCPREMOTEHOST"), None);
    assert_eq!(var(&m, "TCPREMOTEINFO"), None);
    // The rest of the environment is passed on untouched.
    assert_eq!(
        var(&m, "QMAIL_HOME"),
        Some(&*home.path().display().to_string())
    );
    assert_eq!(var(&m, "PATH"), Some("/usr/bin:/bin:/usr/sbin:/sbin"));
    // Nothing else was added: the five TCP variables that have values.
    let tcp: Vec<&String> = m.keys().filter(|k| k.starts_with("TCP")).collect();
    assert_eq!(tcp.len(), 5, "{tcp:?}");
}

#[test]
fn ipv6_every_variable() {
    let home = Home::new();
    let (m, local, remote) = env_over(&home, "[::1]:0", &["-RH", "-l0"]);
    assert_eq!(var(&m, "PROTO"), Some("TCP"));
    assert_eq!(var(&m, "TCPLOCALIP"), Some("::1"));
    assert_eq!(var(&m, "TCPLOCALPORT"), Some(&*local.port().to_string()));
    assert_eq!(var(&m, "TCPLOCALHOST"), Some("0"));
    assert_eq!(var(&m, "TCPREMOTEIP"), Some("::1"));
    assert_eq!(var(&m, "TCPREMOTEPORT"), Some(&*remote.port().to_string()));
    assert_eq!(var(&m, "TCPREMOTEHOST"), None);
    assert_eq!(var(&m, "TCPREMOTEINFO"), None);
}

#[test]
fn ipv4_client_on_dual_stack_listener_is_dotted() {
    let home = Home::new();
    let l = TcpListener::bind("[::]:0").expect("listen on ::");
    let port = l.local_addr().expect("addr").port();
    let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (server, peer) = l.accept().expect("accept");
    assert!(
        matches!(peer.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()),
        "the kernel shows the client as IPv4-mapped: {peer}"
    );
    let (code, out, err) = run(
        tcp_env(&home, &["-R", "-H", "-l", "mx.example", "/usr/bin/env"]),
        Stdio::from(OwnedFd::from(server)),
    );
    assert_eq!(code, 0, "{err}");
    let m = env_map(&out);
    assert_eq!(var(&m, "TCPLOCALIP"), Some("127.0.0.1"));
    assert_eq!(var(&m, "TCPREMOTEIP"), Some("127.0.0.1"));
    assert_eq!(var(&m, "TCPREMOTEPORT"), Some(&*peer.port().to_string()));
}

#[test]
fn program_found_in_path_with_its_arguments() {
    let home = Home::new();
    let (server, _client) = connection("127.0.0.1:0");
    // "sh" has no slash: found through PATH as execvp does; options after the program
    // name belong to the program.
    let (code, out, err) = run(
        tcp_env(
            &home,
            &[
                "-R",
                "-H",
                "-l",
                "mx.example",
                "sh",
                "-c",
                "printf '%s|%s|%s' \"$TCPLOCALHOST\" \"$0\" \"$1\"",
                "-R",
                "two words",
            ],
        ),
        Stdio::from(OwnedFd::from(server)),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "mx.example|-R|two words");
}

#[test]
fn program_runs_with_default_sigpipe() {
    let home = Home::new();
    let (server, _client) = connection("127.0.0.1:0");
    let (code, out, err) = run(
        tcp_env(
            &home,
            &["-RH", "-lx", "grep", "^SigIgn:", "/proc/self/status"],
        ),
        Stdio::from(OwnedFd::from(server)),
    );
    assert_eq!(code, 0, "{err}");
    let mask = u64::from_str_radix(out.trim().trim_start_matches("SigIgn:").trim(), 16)
        .expect("SigIgn mask");
    assert_eq!(mask & (1 << (13 - 1)), 0, "SIGPIPE is ignored: {out}");
}

#[test]
fn standard_input_not_a_socket() {
    let home = Home::new();
    let marker = home.path().join("ran");
    let script = format!("touch {}", marker.display());
    // /dev/null, a pipe, and a listening (unconnected) TCP socket.
    let (pipe_r, _pipe_w) = nix::unistd::pipe().expect("pipe");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let inputs: Vec<(&str, Stdio)> = vec![
        ("/dev/null", Stdio::null()),
        ("a pipe", Stdio::from(pipe_r)),
        ("a listening socket", Stdio::from(OwnedFd::from(listener))),
    ];
    for (what, stdin) in inputs {
        let (code, out, err) = run(tcp_env(&home, &["-R", "sh", "-c", &script]), stdin);
        assert_eq!(code, 111, "{what}: {err}");
        assert_eq!(out, "", "{what}");
        assert!(
            err.starts_with("tcp-env: fatal: standard input is not a connected TCP socket: "),
            "{what}: {err}"
        );
        assert!(!marker.exists(), "{what}: the program must not run");
    }
}

#[test]
fn proto_tcp_means_already_described() {
    let home = Home::new();
    // As netqmail: with PROTO=TCP nothing is looked at or changed, even on /dev/null.
    let mut c = tcp_env(&home, &["/usr/bin/env"]);
    c.env("PROTO", "TCP");
    let (code, out, err) = run(c, Stdio::null());
    assert_eq!(code, 0, "{err}");
    let m = env_map(&out);
    assert_eq!(var(&m, "TCPREMOTEIP"), Some("stale"));
    assert_eq!(var(&m, "TCPREMOTEHOST"), Some("stale"));
    assert_eq!(var(&m, "TCPREMOTEINFO"), Some("stale"));
    // Any other PROTO is replaced.
    let (server, _client) = connection("127.0.0.1:0");
    let mut c = tcp_env(&home, &["-RHl", "x", "/usr/bin/env"]);
    c.env("PROTO", "TCP6");
    let (code, out, err) = run(c, Stdio::from(OwnedFd::from(server)));
    assert_eq!(code, 0, "{err}");
    let m = env_map(&out);
    assert_eq!(var(&m, "PROTO"), Some("TCP"));
    assert_eq!(var(&m, "TCPREMOTEIP"), Some("127.0.0.1"));
}

#[test]
fn no_program_or_unrunnable_program() {
    let home = Home::new();
    let (code, out, err) = run(tcp_env(&home, &["-R", "-H"]), Stdio::null());
    assert_eq!((code, out.as_str()), (111, ""));
    assert!(err.starts_with("tcp-env: usage: tcp-env "), "{err}");

    let (server, _client) = connection("127.0.0.1:0");
    let (code, out, err) = run(
        tcp_env(&home, &["-RH", "-l", "x", "/nonexistent/program"]),
        Stdio::from(OwnedFd::from(server)),
    );
    assert_eq!((code, out.as_str()), (111, ""));
    assert_eq!(
        err,
        "tcp-env: fatal: unable to run /nonexistent/program: No such file or directory\n"
    );
}

// ---------------------------------------------------------------------------------------
// RFC 1413: a responder on port 113 (root only).

/// What the ident responder does with one query.
enum Ident {
    /// Sends these bytes, then closes.
    Reply(&'static [u8]),
    /// Reads the query and waits for tcp-env to give up.
    Silent,
}

/// Accepts one connection on `l`, returns the query line it read.
fn ident_once(l: &TcpListener, how: Ident) -> JoinHandle<String> {
    let l = l.try_clone().expect("clone listener");
    std::thread::spawn(move || {
        let (s, _) = l.accept().expect("ident accept");
        s.set_read_timeout(Some(GUARD)).expect("timeout");
        let mut r = BufReader::new(s);
        let mut q = String::new();
        r.read_line(&mut q).expect("read query");
        let mut s = r.into_inner();
        match how {
            Ident::Reply(b) => {
                let _ = s.write_all(b);
            }
            Ident::Silent => {
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            }
        }
        q
    })
}

/// tcp-env (with RFC 1413, no DNS) on a connection to `listen`; returns TCPREMOTEINFO and
/// the ports (remote, local).
fn remote_info(
    home: &Home,
    listen: &str,
    extra: &[&str],
    l113: &TcpListener,
    how: Ident,
) -> (Option<String>, String, u16, u16) {
    let (server, _client) = connection(listen);
    let rp = server.peer_addr().expect("peer").port();
    let lp = server.local_addr().expect("local").port();
    let t = ident_once(l113, how);
    let mut args = vec!["-H", "-l", "mx.example"];
    args.extend_from_slice(extra);
    args.push("/usr/bin/env");
    let (code, out, err) = run(tcp_env(home, &args), Stdio::from(OwnedFd::from(server)));
    assert_eq!(code, 0, "{err}");
    let q = t.join().expect("ident thread");
    let m = env_map(&out);
    (var(&m, "TCPREMOTEINFO").map(str::to_string), q, rp, lp)
}

#[test]
fn remote_info_from_an_ident_server() {
    assert!(
        is_root(),
        "this test listens on port 113 and needs root (the parser has unit tests)"
    );
    let _lock = fixed_port_lock();
    let home = Home::new();
    for (listen, ident_addr) in [("127.0.0.1:0", "127.0.0.1:113"), ("[::1]:0", "[::1]:113")] {
        // Nothing listens on port 113 yet: refused, so no TCPREMOTEINFO.
        let (server, _client) = connection(listen);
        let (code, out, err) = run(
            tcp_env(&home, &["-H", "-l", "x", "/usr/bin/env"]),
            Stdio::from(OwnedFd::from(server)),
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(var(&env_map(&out), "TCPREMOTEINFO"), None);

        let l113 = TcpListener::bind(ident_addr).expect("bind port 113");

        let (info, q, rp, lp) = remote_info(
            &home,
            listen,
            &[],
            &l113,
            Ident::Reply(b"4711 , 25 : USERID : UNIX : joe\r\n"),
        );
        assert_eq!(
            q,
            format!("{rp} , {lp}\r\n"),
            "the question, client port first"
        );
        assert_eq!(info.as_deref(), Some("joe"));

        // An ERROR reply has two colons: netqmail exports the empty string.
        let (info, ..) = remote_info(
            &home,
            listen,
            &["-t", "60"],
            &l113,
            Ident::Reply(b"4711 , 25 : ERROR : NO-USER\r\n"),
        );
        assert_eq!(info.as_deref(), Some(""));

        // Control characters never reach the environment.
        let (info, ..) = remote_info(
            &home,
            listen,
            &["-r"],
            &l113,
            Ident::Reply(b"1,2:USERID:UNIX:ev\x1b]0;il\x07\xff\r\n"),
        );
        assert_eq!(info.as_deref(), Some("ev?]0;il??"));

        // A reply cut short, and a server that never answers (-t 1), give nothing.
        let (info, ..) = remote_info(
            &home,
            listen,
            &[],
            &l113,
            Ident::Reply(b"1,2:USERID:UNIX:joe"),
        );
        assert_eq!(info, None);
        let (info, ..) = remote_info(&home, listen, &["-t1"], &l113, Ident::Silent);
        assert_eq!(info, None);

        // -R asks nothing and removes the stale value.
        l113.set_nonblocking(true).expect("nonblocking");
        let (server, _client) = connection(listen);
        let (code, out, err) = run(
            tcp_env(&home, &["-R", "-H", "-l", "x", "/usr/bin/env"]),
            Stdio::from(OwnedFd::from(server)),
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(var(&env_map(&out), "TCPREMOTEINFO"), None);
        assert!(
            l113.accept().is_err(),
            "-R must not connect to the ident port"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Reverse DNS against a server the test starts (root only: a mount namespace gives
// tcp-env a resolv.conf pointing at it and an empty /etc/hosts).

/// The address of the test's DNS server (a loopback address no other test uses).
const DNS_ADDR: &str = "127.83.69.53";

#[derive(Clone)]
enum Dns {
    Ptr(Vec<&'static [u8]>),
    NxDomain,
    ServFail,
}

/// The reverse-lookup name of an address.
fn arpa(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s + "ip6.arpa"
        }
    }
}

struct DnsServer {
    answers: Arc<Mutex<HashMap<String, Dns>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer to one query (None when the packet is not a query we understand).
fn dns_answer(q: &[u8], answers: &HashMap<String, Dns>) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let n = usize::from(*q.get(i)?);
        i += 1;
        if n == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + n)?).to_ascii_lowercase());
        i += n;
    }
    let qend = i + 4;
    q.get(i..qend)?;
    let ptr = q[i..i + 2] == [0, 12];
    let answer = if ptr {
        answers
            .get(&labels.join("."))
            .cloned()
            .unwrap_or(Dns::NxDomain)
    } else {
        Dns::NxDomain
    };
    let rcode = match answer {
        Dns::Ptr(_) => 0,
        Dns::NxDomain => 3,
        Dns::ServFail => 2,
    };
    let mut r = vec![q[0], q[1], 0x84 | (q[2] & 1), 0x80 | rcode, 0, 1];
    r.extend_from_slice(&[0, u8::from(matches!(answer, Dns::Ptr(_))), 0, 0, 0, 0]);
    r.extend_from_slice(&q[12..qend]);
    if let Dns::Ptr(name) = answer {
        let mut rdata = Vec::new();
        for l in name {
            rdata.push(u8::try_from(l.len()).expect("label"));
            rdata.extend_from_slice(l);
        }
        rdata.push(0);
        r.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 0]);
        r.extend_from_slice(&u16::try_from(rdata.len()).expect("rdata").to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    Some(r)
}

fn dns_server() -> DnsServer {
    let sock = UdpSocket::bind((DNS_ADDR, 53)).expect("bind the test DNS server");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let answers: Arc<Mutex<HashMap<String, Dns>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (a, s) = (answers.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !s.load(Ordering::SeqCst) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let reply = dns_answer(&buf[..n], &a.lock().expect("answers"));
            if let Some(r) = reply {
                let _ = sock.send_to(&r, from);
            }
        }
    });
    DnsServer {
        answers,
        stop,
        thread: Some(thread),
    }
}

/// tcp-env -R inside a mount namespace that sees only the test's DNS server; returns the
/// two host variables.
fn lookup_names(
    home: &Home,
    listen: &str,
    dns: &DnsServer,
    local: Dns,
    remote: Dns,
) -> (Option<String>, Option<String>) {
    let (server, _client) = connection(listen);
    {
        let mut a = dns.answers.lock().expect("answers");
        a.clear();
        // When both ends share an address (::1), the remote answer serves both.
        a.insert(arpa(server.local_addr().expect("local").ip()), local);
        a.insert(arpa(server.peer_addr().expect("peer").ip()), remote);
    }
    let etc = home.path().join("etc");
    fs::create_dir_all(&etc).expect("mkdir etc");
    fs::write(
        etc.join("resolv.conf"),
        format!("nameserver {DNS_ADDR}\noptions timeout:5 attempts:2\n"),
    )
    .expect("resolv.conf");
    fs::write(etc.join("hosts"), "# nothing: every name comes from DNS\n").expect("hosts");
    let mut c = Command::new(tool("unshare"));
    c.env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("TCPREMOTEHOST", "stale")
        .env("TCPLOCALHOST", "stale")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$1\" /etc/resolv.conf && mount --bind \"$2\" /etc/hosts && shift 2 && exec \"$@\"",
            "sh",
        ])
        .arg(etc.join("resolv.conf"))
        .arg(etc.join("hosts"))
        .arg(bin("tcp-env"))
        .args(["-R", "/usr/bin/env"]);
    let (code, out, err) = run(c, Stdio::from(OwnedFd::from(server)));
    assert_eq!(code, 0, "{err}");
    let m = env_map(&out);
    (
        var(&m, "TCPLOCALHOST").map(str::to_string),
        var(&m, "TCPREMOTEHOST").map(str::to_string),
    )
}

#[test]
fn host_names_from_reverse_dns() {
    assert!(
        is_root(),
        "this test needs root (a mount namespace and port 53); the name check has unit tests"
    );
    let _lock = fixed_port_lock();
    let home = Home::new();
    let dns = dns_server();

    // Names are lowercased, the trailing dot dropped. (The client side of a connection to
    // 127.0.0.2 is 127.0.0.1.)
    let (l, r) = lookup_names(
        &home,
        "127.0.0.2:0",
        &dns,
        Dns::Ptr(vec![b"Local", b"Example"]),
        Dns::Ptr(vec![b"Client", b"Example", b"NET"]),
    );
    assert_eq!(l.as_deref(), Some("local.example"));
    assert_eq!(r.as_deref(), Some("client.example.net"));

    // No name: unset (the stale values are removed).
    let (l, r) = lookup_names(&home, "127.0.0.3:0", &dns, Dns::NxDomain, Dns::NxDomain);
    assert_eq!((l, r), (None, None));

    // A temporary failure is netqmail's "softdnserror"; a name that is not a host name
    // (posing as an address, or with characters no host name has) is no name.
    let (l, r) = lookup_names(
        &home,
        "127.0.0.4:0",
        &dns,
        Dns::ServFail,
        Dns::Ptr(vec![b"127", b"0", b"0", b"1"]),
    );
    assert_eq!(l.as_deref(), Some("softdnserror"));
    assert_eq!(r, None);
    let (l, r) = lookup_names(
        &home,
        "127.0.0.5:0",
        &dns,
        Dns::Ptr(vec![b"ok", b"example"]),
        Dns::Ptr(vec![b"evil name;$(reboot)", b"example"]),
    );
    assert_eq!(l.as_deref(), Some("ok.example"));
    assert_eq!(r, None);

    // IPv6: both ends are ::1, so both names are the same answer.
    let (l, r) = lookup_names(
        &home,
        "[::1]:0",
        &dns,
        Dns::NxDomain,
        Dns::Ptr(vec![b"Six", b"Example"]),
    );
    assert_eq!(l.as_deref(), Some("six.example"));
    assert_eq!(r.as_deref(), Some("six.example"));
}

// ---------------------------------------------------------------------------------------
// The chain an inetd-style service runs: tcp-env -R -H -l NAME qmail-smtpd.

#[test]
fn chain_with_qmail_smtpd() {
    let home = Home::new();
    home.control("rcpthosts", "example.com\n");
    let (server, client) = connection("127.0.0.1:0");
    let out = server.try_clone().expect("dup socket");
    let mut c = tcp_env(&home, &["-R", "-H", "-l", "mx.example"]);
    c.arg(bin("qmail-smtpd"))
        .stdin(Stdio::from(OwnedFd::from(server)))
        .stdout(Stdio::from(OwnedFd::from(out)))
        .stderr(Stdio::piped());
    let child = c.spawn().expect("spawn tcp-env");
    client.set_read_timeout(Some(GUARD)).expect("timeout");
    let mut s = Smtp::new(client);
    let greeting = s.reply();
    assert!(
        greeting[0].starts_with("220 testhost.example ESMTP"),
        "{greeting:?}"
    );
    assert!(s.cmd("HELO client.example")[0].starts_with("250 "));
    assert!(s.cmd("MAIL FROM:<joe@example.org>")[0].starts_with("250 "));
    assert!(s.cmd("RCPT TO:<ann@example.com>")[0].starts_with("250 "));
    assert!(s.cmd("DATA")[0].starts_with("354 "));
    s.send(b"Subject: hello\r\n\r\nvia tcp-env\r\n.\r\n");
    let r = s.reply();
    assert!(r[0].starts_with("250 ok"), "{r:?}");
    assert!(s.cmd("QUIT")[0].starts_with("221 "));
    drop(s);
    let (code, _, err) = finish(child);
    assert_eq!(code, 0, "{err}");

    let q = home.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender(), b"joe@example.org");
    assert_eq!(q[0].recipients(), vec![b"ann@example.com".to_vec()]);
    let body = String::from_utf8_lossy(q[0].body_after_received()).into_owned();
    // qmail-smtpd's Received line, built from what tcp-env exported: no TCPREMOTEHOST
    // (-H) gives "unknown", TCPREMOTEIP in parentheses, TCPLOCALHOST (-l) after "by".
    assert!(
        body.starts_with(
            "Received: from unknown (HELO client.example) (127.0.0.1)\n  by mx.example with SMTP; "
        ),
        "{body}"
    );
    assert!(body.ends_with("Subject: hello\n\nvia tcp-env\n"), "{body}");
}

/// A real client (Python's smtplib) over a real TCP socket through tcp-env, the way inetd
/// runs it: the accepted connection is tcp-env's descriptor 0 and 1.
#[test]
fn smtplib_through_tcp_env_and_qmail_smtpd() {
    let home = Home::new();
    home.control("rcpthosts", "example.com\n");
    let l = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = l.local_addr().expect("addr").port();
    let server_home = home.path().to_path_buf();
    let server = std::thread::spawn(move || {
        let (conn, _) = l.accept().expect("accept");
        let out = conn.try_clone().expect("dup");
        let mut c = Command::new(bin("tcp-env"));
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("QMAIL_HOME", &server_home)
            .args(["-R", "-H", "-l", "mx.example"])
            .arg(bin("qmail-smtpd"))
            .stdin(Stdio::from(OwnedFd::from(conn)))
            .stdout(Stdio::from(OwnedFd::from(out)))
            .stderr(Stdio::piped());
        let child = c.spawn().expect("spawn tcp-env");
        finish(child)
    });
    let client = format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port}, timeout=60)\n\
         code, _ = s.ehlo('client.example')\n\
         assert code == 250\n\
         assert s.has_extn('pipelining') and s.has_extn('8bitmime')\n\
         r = s.sendmail('joe@example.org', ['ann@example.com', 'bob@example.com'], \
         b'Subject: smtplib via tcp-env\\r\\n\\r\\nline\\r\\n.dot\\r\\n')\n\
         assert r == {{}}, r\n\
         try:\n    s.sendmail('joe@example.org', ['x@elsewhere.example'], b'x\\r\\n')\n    raise SystemExit('relayed')\n\
         except smtplib.SMTPRecipientsRefused as e:\n    assert e.recipients['x@elsewhere.example'][0] == 553\n\
         s.quit()\n"
    );
    let st = Command::new(rqmail_tests::python())
        .arg("-c")
        .arg(&client)
        .status()
        .expect("python");
    assert!(st.success(), "smtplib dialogue failed");
    let (code, _, err) = server.join().expect("server thread");
    assert_eq!(code, 0, "{err}");
    let q = home.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender(), b"joe@example.org");
    assert_eq!(
        q[0].recipients(),
        vec![b"ann@example.com".to_vec(), b"bob@example.com".to_vec()]
    );
    let body = String::from_utf8_lossy(q[0].body_after_received()).into_owned();
    assert!(
        body.starts_with(
            "Received: from unknown (HELO client.example) (127.0.0.1)\n  by mx.example with SMTP; "
        ),
        "{body}"
    );
    assert!(
        body.ends_with("Subject: smtplib via tcp-env\n\nline\n.dot\n"),
        "{body}"
    );
}
