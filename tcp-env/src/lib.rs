//! tcp-env: describe the TCP connection on standard input in the environment variables of
//! tcp-environ(5), then run a program (netqmail 1.06's tcp-env, with IPv6 and the
//! tcpserver options `-h`, `-H`, `-l`).
//!
//! * `options`: the command line;
//! * `addr`: how addresses are written (IPv4 dotted, IPv4-mapped shown as IPv4, IPv6 as
//!   RFC 5952);
//! * `hostname`: the check a reverse-DNS name passes before it is exported;
//! * `ident`: the RFC 1413 question and netqmail's reading of the answer;
//! * [`describe`]: the variables to set and unset for one connection;
//! * [`main`]: the program, with its single exit code 111 for every failure.

mod addr;
mod hostname;
mod ident;
mod options;
mod sys;

use std::convert::Infallible;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use control::{Exit, ExitError};
use options::Options;
use sys::Reverse;

/// netqmail's exit code for every failure of tcp-env: a temporary failure.
pub const EXIT_FAILURE: Exit = Exit::TEMP;

/// The value netqmail exports for a host name when DNS failed temporarily.
pub const SOFT_DNS_ERROR: &str = "softdnserror";

/// Longest `-t` honoured (longer values are cut to this many seconds).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Why tcp-env gives up (always exit code 111).
#[derive(Debug)]
pub enum Fatal {
    /// No program was named.
    Usage,
    /// Standard input is not a connected TCP socket.
    NotTcp(io::Error),
    /// The resolver ran out of memory.
    Mem,
    /// The program could not be executed.
    Exec(OsString, io::Error),
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::Usage => write!(
                f,
                "usage: tcp-env [ -rRhH ] [ -t timeout ] [ -l localname ] program [ arg ... ]"
            ),
            Fatal::NotTcp(e) => write!(
                f,
                "fatal: standard input is not a connected TCP socket: {}",
                describe_error(e)
            ),
            Fatal::Mem => write!(f, "fatal: out of memory"),
            Fatal::Exec(p, e) => write!(
                f,
                "fatal: unable to run {}: {}",
                p.to_string_lossy(),
                describe_error(e)
            ),
        }
    }
}

impl ExitError for Fatal {
    fn exit(&self) -> Exit {
        EXIT_FAILURE
    }
}

/// An error's text without Rust's "(os error N)" suffix.
fn describe_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// One environment change: set to the value, or unset when `None`.
pub type EnvChange = (&'static str, Option<OsString>);

/// The local and remote addresses of the TCP connection on standard input.
pub fn stdin_connection() -> io::Result<(SocketAddr, SocketAddr)> {
    // A duplicate of fd 0 lets std ask for the addresses without unsafe code; it is closed
    // again when `s` is dropped (and is close-on-exec in any case).
    let fd = io::stdin().as_fd().try_clone_to_owned()?;
    let kind = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SockType)
        .map_err(io::Error::from)?;
    if kind != nix::sys::socket::SockType::Stream {
        return Err(io::Error::other("not a stream socket"));
    }
    let s = TcpStream::from(fd);
    Ok((s.local_addr()?, s.peer_addr()?))
}

/// The value of TCPLOCALHOST or TCPREMOTEHOST for a lookup result.
fn host_value(r: Reverse) -> Result<Option<OsString>, Fatal> {
    match r {
        Reverse::Name(raw) => Ok(hostname::validate(&raw).map(OsString::from)),
        Reverse::Soft => Ok(Some(OsString::from(SOFT_DNS_ERROR))),
        Reverse::Hard => Ok(None),
        Reverse::Mem => Err(Fatal::Mem),
    }
}

/// The environment changes for a connection from `remote` to `local`, in netqmail's
/// order. `lookup` is the reverse lookup and `ask` the ident query (replaceable in tests).
pub fn describe(
    o: &Options,
    local: SocketAddr,
    remote: SocketAddr,
    lookup: &mut dyn FnMut(IpAddr) -> Reverse,
    ask: &mut dyn FnMut(SocketAddr, SocketAddr, Duration) -> Option<String>,
) -> Result<Vec<EnvChange>, Fatal> {
    let local = addr::canonical_sock(local);
    let remote = addr::canonical_sock(remote);
    let mut env: Vec<EnvChange> = vec![
        ("PROTO", Some("TCP".into())),
        ("TCPLOCALPORT", Some(local.port().to_string().into())),
        ("TCPLOCALIP", Some(addr::format_ip(local.ip()).into())),
    ];
    let local_host = match &o.local_name {
        Some(name) => Some(name.clone()),
        None => host_value(lookup(local.ip()))?,
    };
    env.push(("TCPLOCALHOST", local_host));
    env.push(("TCPREMOTEPORT", Some(remote.port().to_string().into())));
    env.push(("TCPREMOTEIP", Some(addr::format_ip(remote.ip()).into())));
    let remote_host = if o.remote_lookup {
        host_value(lookup(remote.ip()))?
    } else {
        None
    };
    env.push(("TCPREMOTEHOST", remote_host));
    let info = if o.remote_info {
        let t = Duration::from_secs(o.timeout.min(MAX_TIMEOUT_SECS));
        ask(local, remote, t).map(OsString::from)
    } else {
        None
    };
    env.push(("TCPREMOTEINFO", info));
    Ok(env)
}

/// Does tcp-env's work; returns only on failure.
pub fn run(o: &Options) -> Result<Infallible, Fatal> {
    let Some((program, args)) = o.program.split_first() else {
        return Err(Fatal::Usage);
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    // Like netqmail: PROTO=TCP means a server already described the connection.
    if std::env::var_os("PROTO").is_none_or(|p| p != "TCP") {
        let (local, remote) = stdin_connection().map_err(Fatal::NotTcp)?;
        let changes = describe(o, local, remote, &mut sys::reverse, &mut ident::query)?;
        for (name, value) in changes {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
    }
    // execvp(3) underneath: a PATH search, /bin/sh for a script without #!, the default
    // SIGPIPE disposition restored.
    let e = cmd.exec();
    Err(Fatal::Exec(program.clone(), e))
}

/// The program: parses the command line, runs, and turns a failure into a message on
/// standard error and netqmail's exit code.
pub fn main() -> Exit {
    let o = options::parse(std::env::args_os().skip(1));
    match run(&o) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("tcp-env: {e}");
            e.exit()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        options::parse(args.iter().chain(["prog"].iter()).copied())
    }

    fn lookup_ok(ip: IpAddr) -> Reverse {
        match ip.to_string().as_str() {
            "192.0.2.1" => Reverse::Name(b"Mail.Example.".to_vec()),
            "198.51.100.9" => Reverse::Name(b"bad name.example".to_vec()),
            "2001:db8::25" => Reverse::Name(b"v6.example".to_vec()),
            "2001:db8::99" => Reverse::Soft,
            _ => Reverse::Hard,
        }
    }

    fn get<'a>(env: &'a [EnvChange], k: &str) -> Option<&'a str> {
        env.iter()
            .find(|(n, _)| *n == k)
            .expect("every variable is set or unset")
            .1
            .as_ref()
            .map(|v| v.to_str().unwrap())
    }

    #[test]
    fn ipv4_everything() {
        let mut asked = Vec::new();
        let env = describe(
            &opts(&[]),
            "192.0.2.1:25".parse().unwrap(),
            "198.51.100.9:4321".parse().unwrap(),
            &mut lookup_ok,
            &mut |l, r, t| {
                asked.push((l, r, t));
                Some("joe".into())
            },
        )
        .unwrap();
        assert_eq!(get(&env, "PROTO"), Some("TCP"));
        assert_eq!(get(&env, "TCPLOCALIP"), Some("192.0.2.1"));
        assert_eq!(get(&env, "TCPLOCALPORT"), Some("25"));
        assert_eq!(get(&env, "TCPLOCALHOST"), Some("mail.example"));
        assert_eq!(get(&env, "TCPREMOTEIP"), Some("198.51.100.9"));
        assert_eq!(get(&env, "TCPREMOTEPORT"), Some("4321"));
        // An invalid name counts as no name.
        assert_eq!(get(&env, "TCPREMOTEHOST"), None);
        assert_eq!(get(&env, "TCPREMOTEINFO"), Some("joe"));
        assert_eq!(env.len(), 8);
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].2, Duration::from_secs(30));
    }

    #[test]
    fn mapped_and_ipv6() {
        let env = describe(
            &opts(&["-R", "-t", "5"]),
            "[::ffff:192.0.2.1]:25".parse().unwrap(),
            "[::ffff:203.0.113.5]:1000".parse().unwrap(),
            &mut lookup_ok,
            &mut |_, _, _| panic!("-R asks nothing"),
        )
        .unwrap();
        assert_eq!(get(&env, "TCPLOCALIP"), Some("192.0.2.1"));
        assert_eq!(get(&env, "TCPLOCALHOST"), Some("mail.example"));
        assert_eq!(get(&env, "TCPREMOTEIP"), Some("203.0.113.5"));
        assert_eq!(get(&env, "TCPREMOTEINFO"), None);

        let mut asked = Vec::new();
        let env = describe(
            &opts(&["-t99999999"]),
            "[2001:db8::25]:587".parse().unwrap(),
            "[2001:db8::99]:5555".parse().unwrap(),
            &mut lookup_ok,
            &mut |l, r, t| {
                asked.push((l, r, t));
                None
            },
        )
        .unwrap();
        assert_eq!(get(&env, "TCPLOCALIP"), Some("2001:db8::25"));
        assert_eq!(get(&env, "TCPLOCALHOST"), Some("v6.example"));
        assert_eq!(get(&env, "TCPREMOTEIP"), Some("2001:db8::99"));
        assert_eq!(get(&env, "TCPREMOTEHOST"), Some("softdnserror"));
        assert_eq!(get(&env, "TCPREMOTEINFO"), None);
        assert_eq!(asked[0].2, Duration::from_secs(MAX_TIMEOUT_SECS));
    }

    #[test]
    fn local_name_and_no_remote_lookup() {
        let mut looked = Vec::new();
        let env = describe(
            &opts(&["-H", "-R", "-l", "0"]),
            "192.0.2.1:25".parse().unwrap(),
            "192.0.2.2:26".parse().unwrap(),
            &mut |ip| {
                looked.push(ip);
                Reverse::Hard
            },
            &mut |_, _, _| None,
        )
        .unwrap();
        assert!(looked.is_empty());
        assert_eq!(get(&env, "TCPLOCALHOST"), Some("0"));
        assert_eq!(get(&env, "TCPREMOTEHOST"), None);
    }

    #[test]
    fn resolver_out_of_memory_is_fatal() {
        let r = describe(
            &opts(&["-R"]),
            "192.0.2.1:25".parse().unwrap(),
            "192.0.2.2:26".parse().unwrap(),
            &mut |_| Reverse::Mem,
            &mut |_, _, _| None,
        );
        assert!(matches!(r, Err(Fatal::Mem)));
    }

    #[test]
    fn no_program_is_usage() {
        let o = options::parse(["-R"]);
        assert!(matches!(run(&o), Err(Fatal::Usage)));
    }
}
