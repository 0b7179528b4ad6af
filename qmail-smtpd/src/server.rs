//! qmail-smtpd-server (qmail-smtpd-server(8)): tcpserver's job for qmail-smtpd, without
//! an exec per connection.
//!
//! The parent binds, drops privileges, loads the TLS server configuration, and keeps one
//! spare child forked in advance, waiting for the next connection: the fork is not
//! between a client's connect and the server's first bytes. The parent never accepts.
//! The spare polls the listening socket (non-blocking, shared with the parent), accepts
//! one connection, tells the parent so by writing its pid on a pipe, and becomes that
//! connection's child; the parent then forks the next spare, as long as fewer than `-c`
//! connections are served (so at most `-c` children exist, the spare among them).
//!
//! The child sets the environment tcpserver would set (and the variables of the tcprules
//! database), moves the connection to descriptors 0 and 1, looks at the TLS files again
//! (they may have changed while it waited; it reloads them only then), and runs the
//! session qmail-smtpd runs ([`crate::run_with`]) with that configuration. Control files
//! are read by each session, as under tcpserver; qmail-queue is started for each
//! message, as always.
//!
//! The parent stays single-threaded (fork and the environment changes depend on it:
//! [`control::fork`], [`control::set_environment`]); it waits for signals through a
//! signalfd, so that SIGCHLD, SIGTERM and SIGINT are read in its poll loop beside the
//! pipe. A spare unblocks them at once, so that SIGTERM ends it while it waits, and it
//! gets SIGTERM if the parent dies (the parent-death signal, cleared once it has a
//! connection). On SIGTERM or SIGINT the parent kills and collects its idle spare, and
//! exits; the children serving connections go on.

mod rules;

use crate::config::Env;
use control::Exit;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt,
    socket, sockopt,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use qmail_tls::{FdTransport, TlsServer};
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const USAGE: &str = "qmail-smtpd-server: usage: qmail-smtpd-server \
[ -vqQRHX ] [ -c limit ] [ -b backlog ] [ -u uid ] [ -g gid ] [ -x rules.cdb ] \
[ -l localname ] host port [ hostname checkpassword subprogram ... ]";

/// How long the server waits before it accepts again after accept failed (EMFILE, say).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How often an accept error that lasts is logged again.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// The command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// 0 with `-q` (nothing on descriptor 2), 1 by default (warnings), 2 with `-v`.
    pub verbosity: u8,
    /// `-c`: children at most at once (40).
    pub limit: u64,
    /// `-b`: the listen backlog (20).
    pub backlog: i32,
    /// `-u`: the uid to take after binding (0: keep).
    pub uid: u32,
    /// `-g`: the gid (and only supplementary group) to take after binding (0: keep).
    pub gid: u32,
    /// `-x`: the tcprules database.
    pub rules: Option<PathBuf>,
    /// `-X`: a missing database allows every connection.
    pub allow_no_rules: bool,
    /// `-l`: TCPLOCALHOST (unset without it).
    pub localhost: Option<OsString>,
    pub host: IpAddr,
    pub port: u16,
    /// qmail-smtpd's arguments: `hostname checkpassword subprogram...`.
    pub args: Vec<Vec<u8>>,
}

fn number(letter: char, v: Option<OsString>) -> Result<u64, String> {
    let v = v.unwrap_or_default();
    let b = v.as_bytes();
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "qmail-smtpd-server: fatal: -{letter} needs a number, not {}",
            v.to_string_lossy()
        ));
    }
    b.iter()
        .try_fold(0u64, |n, &c| {
            n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        })
        .ok_or_else(|| format!("qmail-smtpd-server: fatal: -{letter}: number too large"))
}

/// Reads the command line (the words after the program name). An error is the text
/// for descriptor 2 (then the program exits 100, as tcpserver does).
pub fn parse_args(args: Vec<OsString>) -> Result<Options, String> {
    let mut o = Options {
        verbosity: 1,
        limit: 40,
        backlog: 20,
        uid: 0,
        gid: 0,
        rules: None,
        allow_no_rules: false,
        localhost: None,
        host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        args: Vec::new(),
    };
    let mut g = control::Getopt::new(args, "vqQRHXx:c:b:u:g:l:");
    for opt in g.by_ref() {
        let opt = opt.map_err(|e| {
            format!(
                "{}\n{USAGE}",
                String::from_utf8_lossy(&e.complaint(b"qmail-smtpd-server"))
            )
        })?;
        match opt.letter {
            b'v' => o.verbosity = 2,
            b'q' => o.verbosity = 0,
            b'Q' => o.verbosity = 1,
            b'R' | b'H' => {}
            b'X' => o.allow_no_rules = true,
            b'x' => o.rules = opt.arg.map(PathBuf::from),
            b'c' => {
                o.limit = number('c', opt.arg)?;
                if o.limit == 0 {
                    return Err("qmail-smtpd-server: fatal: -c must be at least 1".into());
                }
            }
            b'b' => {
                let b = number('b', opt.arg)?;
                o.backlog = i32::try_from(b).unwrap_or(i32::MAX).min(libc::SOMAXCONN);
            }
            b'u' => {
                o.uid = u32::try_from(number('u', opt.arg)?)
                    .map_err(|_| "qmail-smtpd-server: fatal: -u: no such uid".to_string())?;
            }
            b'g' => {
                o.gid = u32::try_from(number('g', opt.arg)?)
                    .map_err(|_| "qmail-smtpd-server: fatal: -g: no such gid".to_string())?;
            }
            b'l' => o.localhost = opt.arg,
            _ => return Err(USAGE.to_string()),
        }
    }
    let mut rest = g.operands().into_iter();
    let (Some(host), Some(port)) = (rest.next(), rest.next()) else {
        return Err(USAGE.to_string());
    };
    o.host = match host.as_bytes() {
        b"" | b"0" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        h => std::str::from_utf8(h)
            .ok()
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| {
                format!(
                    "qmail-smtpd-server: fatal: not an IP address: {} (host names are not looked up)",
                    host.to_string_lossy()
                )
            })?,
    };
    o.port = u16::try_from(number('p', Some(port.clone())).unwrap_or(u64::MAX)).map_err(|_| {
        format!(
            "qmail-smtpd-server: fatal: not a port number: {}",
            port.to_string_lossy()
        )
    })?;
    o.args = rest.map(OsString::into_vec).collect();
    Ok(o)
}

/// Lines on descriptor 2, in tcpserver's formats with this program's name.
#[derive(Debug, Clone, Copy)]
struct Log {
    verbosity: u8,
}

impl Log {
    fn line(&self, min: u8, text: &str) {
        if self.verbosity >= min {
            let line = format!("qmail-smtpd-server: {text}\n");
            let _ = io::stderr().write_all(line.as_bytes());
        }
    }
    fn warn(&self, text: &str) {
        self.line(1, &format!("warning: {text}"));
    }
    fn drop_conn(&self, text: &str) {
        self.warn(&format!("dropping connection, {text}"));
    }
    fn fatal(&self, text: &str) -> Exit {
        self.line(1, &format!("fatal: {text}"));
        Exit::TEMP
    }
}

fn sys(e: &io::Error) -> &'static str {
    control::error_str(e)
}

/// tcpserver's `safecats`: at most 100 bytes, each outside `!`..`~`, and `%` and `:`,
/// replaced by `?`, `...` after a longer text.
fn safe(s: &[u8]) -> String {
    let mut out: String = s
        .iter()
        .take(100)
        .map(|&c| match c {
            b'%' | b':' => '?',
            33..=126 => char::from(c),
            _ => '?',
        })
        .collect();
    if s.len() > 100 {
        out.push_str("...");
    }
    out
}

/// An address as TCPREMOTEIP and TCPLOCALIP show it: an IPv4 client of an IPv6 socket
/// (::ffff:a.b.c.d) as a.b.c.d.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The identity of a file the TLS configuration is read from; `None` when it cannot be
/// looked at (absent).
type Stamp = Option<(u64, u64, u64, i64, i64, i64, i64)>;

fn stamp(p: &Path) -> Stamp {
    std::fs::metadata(p).ok().map(|m| {
        (
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    })
}

/// The TLS server configuration, loaded once and again when a file it is read from
/// changes.
struct TlsCache {
    home: PathBuf,
    /// `$TLSCIPHERS` of the server's own environment.
    ciphers: Option<Vec<u8>>,
    stamps: Option<[Stamp; 3]>,
    server: Option<TlsServer>,
}

impl TlsCache {
    fn new(home: &Path) -> TlsCache {
        TlsCache {
            home: home.to_path_buf(),
            ciphers: std::env::var_os("TLSCIPHERS").map(OsString::into_vec),
            stamps: None,
            server: None,
        }
    }

    /// Looks at the files (dev, inode, size, mtime, ctime) and rebuilds the
    /// configuration when any of them differs from the last time.
    fn refresh(&mut self, log: Log) {
        let stamps = [
            qmail_tls::SERVERCERT,
            qmail_tls::CLIENTCA,
            qmail_tls::CIPHERS,
        ]
        .map(|f| stamp(&self.home.join(f)));
        if self.stamps.as_ref() == Some(&stamps) {
            return;
        }
        self.stamps = Some(stamps);
        self.server = match qmail_tls::load(&self.home, self.ciphers.as_deref(), true) {
            Ok(s) => s,
            Err(e) => {
                log.warn(&format!("unable to load the TLS configuration: {e}"));
                None
            }
        };
    }
}

/// What the parent's loop ends with.
enum Role {
    /// The parent is done (SIGTERM or SIGINT).
    Stop(Exit),
    /// This is the spare, a new child waiting for the next connection.
    Spare,
}

/// The listening socket: SO_REUSEADDR, bound, listening with `backlog`, non-blocking
/// (the loop polls it), close-on-exec.
fn listener(host: IpAddr, port: u16, backlog: i32) -> io::Result<TcpListener> {
    let family = match host {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    match SocketAddr::new(host, port) {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    listen(&fd, Backlog::new(backlog.max(0))?)?;
    let l = TcpListener::from(fd);
    l.set_nonblocking(true)?;
    Ok(l)
}

/// tcpserver's `-g` and `-u`: the group (and it alone as supplementary group), then the
/// user; 0 keeps what the process has.
fn drop_privileges(o: &Options, log: Log) -> Result<(), Exit> {
    if o.gid != 0 {
        let g = Gid::from_raw(o.gid);
        nix::unistd::setgroups(&[g])
            .and_then(|()| nix::unistd::setgid(g))
            .map_err(|e| log.fatal(&format!("unable to set gid: {}", sys(&e.into()))))?;
    }
    if o.uid != 0 {
        nix::unistd::setuid(Uid::from_raw(o.uid))
            .map_err(|e| log.fatal(&format!("unable to set uid: {}", sys(&e.into()))))?;
    }
    Ok(())
}

/// A wait status as wait(2) reports it (tcpserver logs the number).
fn wstat(s: WaitStatus) -> Option<(i32, i32)> {
    match s {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), (code & 0xff) << 8)),
        WaitStatus::Signaled(pid, sig, core) => {
            Some((pid.as_raw(), sig as i32 | if core { 0x80 } else { 0 }))
        }
        _ => None,
    }
}

/// Warnings about an error that may last (accept or fork failing, retried every
/// [`ACCEPT_PAUSE`]): the same error is logged again only after [`ACCEPT_LOG_EVERY`].
#[derive(Default)]
struct Repeats(Option<(Option<i32>, Instant)>);

impl Repeats {
    fn warn(&mut self, log: Log, what: &str, e: &io::Error) {
        let now = Instant::now();
        let repeated = self
            .0
            .is_some_and(|(errno, at)| errno == e.raw_os_error() && now - at < ACCEPT_LOG_EVERY);
        if !repeated {
            log.warn(&format!(
                "unable to {what}: {} (retrying every {} ms)",
                sys(e),
                ACCEPT_PAUSE.as_millis()
            ));
            self.0 = Some((e.raw_os_error(), now));
        }
    }
}

/// The parent's state. It never accepts: the spare does, and says so on the pipe
/// `taken` (its pid, 4 bytes in native order, written at once on `announce`).
struct Server {
    o: Options,
    log: Log,
    listener: TcpListener,
    signals: SignalFd,
    /// The pipe's read end (non-blocking): the parent's.
    taken: std::fs::File,
    /// The pipe's write end: the parent keeps it only to hand it to each spare.
    announce: std::fs::File,
    /// Children serving a connection.
    active: u64,
    /// The child waiting for the next connection, if there is one.
    spare: Option<Pid>,
    tls: TlsCache,
}

impl Server {
    fn status(&self) {
        self.log
            .line(2, &format!("status: {}/{}", self.active, self.o.limit));
    }

    /// Reads what the spare wrote on the pipe, never waiting: when it is the spare's
    /// pid, the spare now serves a connection.
    fn read_taken(&mut self) {
        use std::io::Read;
        // Each message is one write of 4 bytes (atomic on a pipe), and at most one is
        // written per spare, so a read into a multiple of 4 bytes returns whole ones.
        let mut buf = [0u8; 64];
        loop {
            match (&self.taken).read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    for m in buf[..n].chunks_exact(4) {
                        let pid = i32::from_ne_bytes([m[0], m[1], m[2], m[3]]);
                        if self.spare.is_some_and(|s| s.as_raw() == pid) {
                            self.spare = None;
                            self.active += 1;
                            self.status();
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Collects every child that has ended. Returns true when it was the spare, ended
    /// without a connection.
    fn reap(&mut self) -> bool {
        let mut spare_ended = false;
        loop {
            let s = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return spare_ended,
                Ok(s) => s,
            };
            let Some((pid, w)) = wstat(s) else { continue };
            if self.spare.is_some_and(|s| s.as_raw() == pid) {
                // A spare that took a connection wrote so before it could end.
                self.read_taken();
            }
            if self.spare.is_some_and(|s| s.as_raw() == pid) {
                self.spare = None;
                spare_ended = true;
                if w != Signal::SIGTERM as i32 {
                    self.log.warn(&format!(
                        "spare {pid} ended before taking a connection: status {w}"
                    ));
                }
            } else {
                self.log.line(2, &format!("end {pid} status {w}"));
                self.active = self.active.saturating_sub(1);
                self.status();
            }
        }
    }

    /// SIGTERM or SIGINT: the idle spare is killed and collected; the children serving
    /// connections go on. (A connection the spare accepted an instant before, before it
    /// said so, is closed with it, as those still in the listen queue are.)
    fn stop(&mut self) {
        self.read_taken();
        if let Some(pid) = self.spare.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
            while let Err(nix::errno::Errno::EINTR) = waitpid(pid, None) {}
        }
    }

    /// Keeps one spare forked in advance while fewer than the limit of connections are
    /// served, until a signal says stop; returns in each spare too.
    fn serve(&mut self) -> Role {
        let mut paused_until: Option<Instant> = None;
        let mut fork_errors = Repeats::default();
        loop {
            let now = Instant::now();
            if paused_until.is_some_and(|t| now >= t) {
                paused_until = None;
            }
            if paused_until.is_none() && self.spare.is_none() && self.active < self.o.limit {
                self.tls.refresh(self.log);
                match control::fork() {
                    Ok(ForkResult::Child) => return Role::Spare,
                    Ok(ForkResult::Parent { child }) => self.spare = Some(child),
                    Err(e) => {
                        // Connections wait in the listen queue meanwhile.
                        fork_errors.warn(self.log, "fork", &e);
                        paused_until = Some(now + ACCEPT_PAUSE);
                    }
                }
            }
            let timeout = match paused_until {
                Some(t) => PollTimeout::try_from(t.saturating_duration_since(Instant::now()))
                    .unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            let mut fds = [
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.taken.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    self.log
                        .warn(&format!("unable to poll: {}", sys(&e.into())));
                    std::thread::sleep(ACCEPT_PAUSE);
                    continue;
                }
            }
            let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
            let (signalled, taken) = (ready(&fds[0]), ready(&fds[1]));
            if taken {
                self.read_taken();
            }
            if signalled {
                while let Ok(Some(si)) = self.signals.read_signal() {
                    let sig = i32::try_from(si.ssi_signo).unwrap_or(0);
                    if sig == Signal::SIGTERM as i32 || sig == Signal::SIGINT as i32 {
                        self.stop();
                        return Role::Stop(Exit::OK);
                    }
                }
            }
            if self.reap() {
                // Not at once again: a spare that cannot start must not make a loop of
                // forks.
                paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            }
        }
    }
}

/// The spare's wait: the first connection it can accept. Failures other than a
/// connection gone or taken by no one (too many open files, say) are logged (see
/// [`Repeats`]) and retried after [`ACCEPT_PAUSE`].
fn take_connection(listener: &TcpListener, log: Log) -> (TcpStream, SocketAddr) {
    let mut errors = Repeats::default();
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                log.warn(&format!("unable to poll: {}", sys(&e.into())));
                std::thread::sleep(ACCEPT_PAUSE);
                continue;
            }
        }
        match listener.accept() {
            Ok(c) => return c,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                errors.warn(log, "accept", &e);
                std::thread::sleep(ACCEPT_PAUSE);
            }
        }
    }
}

/// The child's work before the session: the environment tcpserver sets, the rules,
/// the connection on descriptors 0 and 1. `Err` is the exit code when the connection
/// is not served (denied: 100, as tcpserver's child exits; trouble: 111).
fn prepare(o: &Options, log: Log, stream: TcpStream, peer: SocketAddr) -> Result<(), Exit> {
    let pid = std::process::id();
    let remote_ip = ip_text(peer.ip());
    log.line(2, &format!("pid {pid} from {remote_ip}"));
    let local = stream.local_addr().map_err(|e| {
        log.drop_conn(&format!("unable to get local address: {}", sys(&e)));
        Exit::TEMP
    })?;
    let local_ip = ip_text(local.ip());
    let local_port = local.port().to_string();
    let remote_port = peer.port().to_string();
    let os = |s: &str| OsString::from(s);
    let mut vars: Vec<(OsString, Option<OsString>)> = vec![
        (os("PROTO"), Some(os("TCP"))),
        (os("TCPLOCALIP"), Some(os(&local_ip))),
        (os("TCPLOCALPORT"), Some(os(&local_port))),
        (os("TCPLOCALHOST"), o.localhost.clone()),
        (os("TCPREMOTEIP"), Some(os(&remote_ip))),
        (os("TCPREMOTEPORT"), Some(os(&remote_port))),
        (os("TCPREMOTEHOST"), None),
        (os("TCPREMOTEINFO"), None),
    ];
    let mut deny = false;
    if let Some(path) = &o.rules {
        let rule = rules::lookup(path, o.allow_no_rules, remote_ip.as_bytes()).map_err(|e| {
            log.drop_conn(&format!("unable to read {}: {}", path.display(), sys(&e)));
            Exit::TEMP
        })?;
        if let Some(rule) = rule {
            if rule.ignored > 0 {
                log.warn(&format!(
                    "{}: {} malformed entries ignored in the rule {}",
                    path.display(),
                    rule.ignored,
                    String::from_utf8_lossy(&rule.key)
                ));
            }
            deny = rule.deny;
            for (name, value) in rule.vars {
                vars.push((OsString::from_vec(name), Some(OsString::from_vec(value))));
            }
        }
    }
    let refs: Vec<(&OsStr, Option<&OsStr>)> = vars
        .iter()
        .map(|(n, v)| (n.as_os_str(), v.as_deref()))
        .collect();
    control::set_environment(&refs).map_err(|e| {
        log.drop_conn(&format!("unable to set the environment: {e}"));
        Exit::TEMP
    })?;
    log.line(
        2,
        &format!(
            "{} {pid} {}:{}:{} :{}::{}",
            if deny { "deny" } else { "ok" },
            o.localhost
                .as_ref()
                .map_or(String::new(), |l| safe(l.as_bytes())),
            safe(local_ip.as_bytes()),
            local_port,
            safe(remote_ip.as_bytes()),
            remote_port
        ),
    );
    if deny {
        return Err(Exit::PERM);
    }
    nix::unistd::dup2_stdin(&stream)
        .and_then(|()| nix::unistd::dup2_stdout(&stream))
        .map_err(|e| {
            log.drop_conn(&format!("unable to set up descriptors: {}", sys(&e.into())));
            Exit::TEMP
        })?;
    Ok(())
}

/// The program; see the module documentation. Returns the exit code: the parent's, or a
/// child's (its session's).
pub fn main() -> Exit {
    let o = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(o) => o,
        Err(text) => {
            let _ = io::stderr().write_all(format!("{text}\n").as_bytes());
            return Exit::PERM;
        }
    };
    let log = Log {
        verbosity: o.verbosity,
    };
    let home = control::qmail_home();
    let listener = match listener(o.host, o.port, o.backlog) {
        Ok(l) => l,
        Err(e) => return log.fatal(&format!("unable to bind: {}", sys(&e))),
    };
    if let Err(exit) = drop_privileges(&o, log) {
        return exit;
    }
    let stop = [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT];
    if let Err(e) = control::default_signals(&stop) {
        return log.fatal(&format!("unable to set up signals: {}", sys(&e)));
    }
    let mut mask = SigSet::empty();
    stop.iter().for_each(|&s| mask.add(s));
    let old_mask = match mask.thread_swap_mask(SigmaskHow::SIG_BLOCK) {
        Ok(m) => m,
        Err(e) => return log.fatal(&format!("unable to block signals: {}", sys(&e.into()))),
    };
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    {
        Ok(s) => s,
        Err(e) => return log.fatal(&format!("unable to make a signalfd: {}", sys(&e.into()))),
    };
    let (taken, announce) =
        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
            Ok((r, w)) => (std::fs::File::from(r), std::fs::File::from(w)),
            Err(e) => return log.fatal(&format!("unable to make a pipe: {}", sys(&e.into()))),
        };
    let parent = nix::unistd::getpid();
    let mut server = Server {
        log,
        listener,
        signals,
        taken,
        announce,
        active: 0,
        spare: None,
        tls: TlsCache::new(&home),
        o,
    };
    server.tls.refresh(log);
    server.status();
    if let Role::Stop(exit) = server.serve() {
        return exit;
    }
    // The spare: nothing of the parent's loop stays open or blocked, and SIGTERM (the
    // parent's, or the parent-death signal if the parent is killed) ends it while it
    // waits.
    let Server {
        o,
        listener,
        signals,
        taken,
        announce,
        mut tls,
        ..
    } = server;
    drop(signals);
    drop(taken);
    if old_mask.thread_set_mask().is_err() {
        log.warn("spare: unable to unblock signals");
        return Exit::TEMP;
    }
    let orphan = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).is_err()
        || nix::unistd::getppid() != parent;
    if orphan {
        return Exit::TEMP;
    }
    let (stream, peer) = take_connection(&listener, log);
    // A connection is served to its end, whatever becomes of the parent.
    let _ = nix::sys::prctl::set_pdeathsig(None);
    drop(listener);
    let pid = i32::try_from(std::process::id()).unwrap_or(0);
    if let Err(e) = (&announce).write_all(&pid.to_ne_bytes()) {
        log.warn(&format!("unable to tell the server: {}", sys(&e)));
    }
    drop(announce);
    if let Err(exit) = prepare(&o, log, stream, peer) {
        return exit;
    }
    // The configuration may have changed while this process waited.
    tls.refresh(log);
    crate::set_panic_hook();
    control::diagnostics::init("qmail-smtpd", &home, control::stderr_is_private());
    let mut env = Env::from_process();
    env.args = o.args;
    // The configuration loaded is the one this session would load, unless a rule gave
    // it another $TLSCIPHERS.
    let preloaded = tls
        .server
        .as_ref()
        .filter(|_| env.tls_ciphers == tls.ciphers);
    let mut t = FdTransport::new(control::stdin_fd(), control::stdout_fd());
    crate::run_with(&home, &env, &mut t, preloaded).code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Options, String> {
        parse_args(words.iter().map(OsString::from).collect())
    }

    #[test]
    fn options() {
        let o = parse(&["0", "25"]).unwrap();
        assert_eq!(
            (o.verbosity, o.limit, o.backlog, o.uid, o.gid, o.port),
            (1, 40, 20, 0, 0, 25)
        );
        assert_eq!(o.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(o.args.is_empty() && o.rules.is_none() && o.localhost.is_none());
        let o = parse(&[
            "-vRHX",
            "-c",
            "5",
            "-b100",
            "-u",
            "7",
            "-g",
            "8",
            "-x",
            "r.cdb",
            "-l",
            "me.example",
            "::1",
            "2525",
            "host",
            "/bin/cp",
            "/bin/true",
        ])
        .unwrap();
        assert_eq!(
            (o.verbosity, o.limit, o.backlog, o.uid, o.gid, o.port),
            (2, 5, 100, 7, 8, 2525)
        );
        assert!(o.allow_no_rules);
        assert_eq!(o.rules, Some(PathBuf::from("r.cdb")));
        assert_eq!(o.localhost, Some(OsString::from("me.example")));
        assert_eq!(o.host, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            o.args,
            vec![b"host".to_vec(), b"/bin/cp".to_vec(), b"/bin/true".to_vec()]
        );
        assert_eq!(parse(&["-q", "127.0.0.1", "1"]).unwrap().verbosity, 0);
        assert_eq!(
            parse(&["-b", "99999", "0", "1"]).unwrap().backlog,
            libc::SOMAXCONN
        );
        // qmail-smtpd's own options after the port are its arguments, not ours.
        assert_eq!(parse(&["0", "1", "-v"]).unwrap().args, vec![b"-v".to_vec()]);
    }

    #[test]
    fn bad_command_lines() {
        for bad in [
            &["-z", "0", "25"][..],
            &["-c"],
            &["-c", "x", "0", "25"],
            &["-c", "0", "0", "25"],
            &["-u", "-1", "0", "25"],
            &["-g", "99999999999", "0", "25"],
            &["0"],
            &[],
            &["localhost", "25"],
            &["0", "smtp"],
            &["0", "65536"],
            &["-r", "0", "25"],
            &["-h", "0", "25"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let e = parse(&["-z", "0", "25"]).unwrap_err();
        assert!(
            e.contains("illegal option -- z") && e.contains("usage:"),
            "{e}"
        );
    }

    #[test]
    fn log_fields_as_tcpserver_writes_them() {
        assert_eq!(safe(b"127.0.0.1"), "127.0.0.1");
        assert_eq!(safe(b"a:b%c d\x7f"), "a?b?c?d?");
        assert_eq!(safe(&[b'x'; 101]), format!("{}...", "x".repeat(100)));
        assert_eq!(ip_text("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(ip_text("::1".parse().unwrap()), "::1");
        let pid = nix::unistd::Pid::from_raw(9);
        assert_eq!(wstat(WaitStatus::Exited(pid, 1)), Some((9, 256)));
        assert_eq!(
            wstat(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some((9, 9))
        );
    }
}
