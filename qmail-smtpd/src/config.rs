//! Everything qmail-smtpd learns before it greets: control files and environment
//! variables, read once at startup as netqmail's `setup()` does.
//!
//! A control file that exists but cannot be read is never taken as its default: the
//! client gets `421 unable to read controls (#4.3.0)` and the connection ends.

use crate::rcptcheck::RcptCheck;
use control::BadMailFrom;
use control::Controls;
use control::RcptHosts;
use qmail_tls::TlsServer;
use std::cell::OnceCell;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default for control/timeoutsmtpd, in seconds.
pub const DEFAULT_TIMEOUT: u64 = 1200;

/// The environment variables qmail-smtpd reads (tcp-environ(5) and its own), as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub tcp_remote_ip: Option<Vec<u8>>,
    pub tcp_remote_host: Option<Vec<u8>>,
    pub tcp_remote_info: Option<Vec<u8>>,
    pub tcp_local_host: Option<Vec<u8>>,
    pub tcp_local_ip: Option<Vec<u8>>,
    pub relay_client: Option<Vec<u8>>,
    pub databytes: Option<Vec<u8>>,
    /// SMTPS: TLS from the first byte when set and not empty.
    pub smtps: Option<Vec<u8>>,
    /// DENY_TLS: STARTTLS neither offered nor accepted when set (to anything).
    pub deny_tls: Option<Vec<u8>>,
    /// TLSCIPHERS: overrides control/tlsserverciphers.
    pub tls_ciphers: Option<Vec<u8>>,
    /// SMTPAUTH: `-` turns AUTH off; a leading `!` makes it required; a value containing
    /// `cram` adds CRAM-MD5.
    pub smtpauth: Option<Vec<u8>>,
    /// FORCETLS: `0` allows AUTH without TLS.
    pub forcetls: Option<Vec<u8>>,
    /// The command-line arguments after the program name: `hostname checkpassword
    /// subprogram...` for SMTP AUTH.
    pub args: Vec<Vec<u8>>,
}

impl Env {
    /// The variables of this process.
    pub fn from_process() -> Env {
        let get = |name: &str| std::env::var_os(name).map(OsStringExt::into_vec);
        Env {
            tcp_remote_ip: get("TCPREMOTEIP"),
            tcp_remote_host: get("TCPREMOTEHOST"),
            tcp_remote_info: get("TCPREMOTEINFO"),
            tcp_local_host: get("TCPLOCALHOST"),
            tcp_local_ip: get("TCPLOCALIP"),
            relay_client: get("RELAYCLIENT"),
            databytes: get("DATABYTES"),
            smtps: get("SMTPS"),
            deny_tls: get("DENY_TLS"),
            tls_ciphers: get("TLSCIPHERS"),
            smtpauth: get("SMTPAUTH"),
            forcetls: get("FORCETLS"),
            args: std::env::args_os()
                .skip(1)
                .map(OsStringExt::into_vec)
                .collect(),
        }
    }
}

/// What is known about the two ends of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// TCPREMOTEIP, or `unknown`.
    pub ip: Vec<u8>,
    /// TCPREMOTEHOST, or `unknown`.
    pub host: Vec<u8>,
    /// TCPREMOTEINFO, when set.
    pub info: Option<Vec<u8>>,
    /// TCPLOCALHOST, else TCPLOCALIP, else `unknown`.
    pub local: Vec<u8>,
}

impl Remote {
    /// The facts with netqmail's defaults. A variable set to the empty string is used as
    /// it is (netqmail only falls back when a variable is absent).
    pub fn from_env(env: &Env) -> Remote {
        let unknown = || b"unknown".to_vec();
        Remote {
            ip: env.tcp_remote_ip.clone().unwrap_or_else(unknown),
            host: env.tcp_remote_host.clone().unwrap_or_else(unknown),
            info: env.tcp_remote_info.clone(),
            local: env
                .tcp_local_host
                .clone()
                .or_else(|| env.tcp_local_ip.clone())
                .unwrap_or_else(unknown),
        }
    }
}

/// The configuration of one session.
#[derive(Debug)]
pub struct Config {
    /// control/smtpgreeting, else control/me: the text after 220, 250 and 221.
    pub greeting: Vec<u8>,
    /// control/localiphost, else control/me: replaces `[d.d.d.d]` naming this host.
    pub localiphost: Option<Vec<u8>>,
    /// control/timeoutsmtpd: seconds to wait for each read or write (at least 1).
    pub timeout: u64,
    /// control/timeoutsession (rqmail only): seconds a whole session may last, counted
    /// from the greeting; 0 (the default, as netqmail has no such limit) for no limit.
    pub timeout_session: u64,
    /// DATABYTES, else control/databytes: the largest message stored; 0 for no limit.
    pub databytes: u64,
    pub rcpthosts: RcptHosts,
    pub badmailfrom: BadMailFrom,
    /// RELAYCLIENT: when set, appended to each recipient, and rcpthosts is not checked.
    pub relayclient: Option<Vec<u8>>,
    pub remote: Remote,
    /// This host's addresses (for localiphost).
    pub ipme: Vec<Ipv4Addr>,
    /// This host's IPv6 addresses (for localiphost with `[IPv6:...]`).
    pub ipme6: Vec<Ipv6Addr>,
    /// The interface addresses are still to be listed into `ipme` and `ipme6`
    /// ([`Config::list_ipme`]): only a session that meets an address literal while
    /// localiphost is set needs them, so the listing (a netlink dump) waits until then.
    pub ipme_pending: bool,
    pub tls: TlsSetting,
    /// SMTP AUTH, when the checkpassword arguments were given.
    pub auth: Option<AuthConfig>,
    /// Recipient validation, when configured (handed to the backend at startup).
    pub rcptcheck: Option<RcptCheck>,
    /// control/smtputf8 (rqmail only): SMTPUTF8 (RFC 6531) is offered when it holds a
    /// number other than 0; off by default, as netqmail has no such thing.
    pub smtputf8: bool,
}

/// STARTTLS and SMTPS.
#[derive(Debug, Clone, Default)]
pub struct TlsSetting {
    /// control/servercert.pem exists and DENY_TLS is not set: STARTTLS is offered.
    pub offer: bool,
    /// SMTPS is set: the connection is TLS from the first byte.
    pub smtps: bool,
    /// Where the server configuration comes from, when TLS is offered or SMTPS is set.
    /// It is loaded the first time it is asked for ([`TlsSetting::server`]): when
    /// STARTTLS is accepted, or before the handshake of an SMTPS connection, never for a
    /// session that stays in plaintext.
    pub source: Option<TlsSource>,
    /// The configuration once loaded, or why it could not be built.
    server: OnceCell<Result<TlsServer, String>>,
    /// control/tlsclients, read at startup when TLS is offered or SMTPS is set: the
    /// subject e-mail addresses of client certificates (verified against clientca.pem)
    /// allowed to relay, lower case.
    pub clients: Vec<Vec<u8>>,
}

/// What the TLS server configuration is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSource {
    /// The qmail home (control/servercert.pem, clientca.pem, tlsserverciphers).
    pub home: PathBuf,
    /// TLSCIPHERS, which overrides control/tlsserverciphers.
    pub ciphers: Option<Vec<u8>>,
}

impl TlsSetting {
    /// True when a verified client certificate with subject address `email` may relay.
    pub fn client_may_relay(&self, email: &str) -> bool {
        let e = email.to_ascii_lowercase();
        self.clients.iter().any(|c| c == e.as_bytes())
    }

    /// Uses `server`, loaded beforehand from the same files (by qmail-smtpd-server's
    /// parent), instead of loading the configuration when it is first asked for. Nothing
    /// changes without a [`source`](Self::source) (TLS neither offered nor SMTPS), or
    /// when the configuration was already loaded.
    pub fn preload(&mut self, server: TlsServer) {
        if self.source.is_some() {
            let _ = self.server.set(Ok(server));
        }
    }

    /// The server configuration, loaded (key, certificates, rustls configuration) the
    /// first time it is asked for: `None` without a [`source`](Self::source), else the
    /// configuration or why it cannot be built (then STARTTLS gets 454 and an SMTPS
    /// connection is closed).
    pub fn server(&self) -> Option<&Result<TlsServer, String>> {
        let src = self.source.as_ref()?;
        Some(self.server.get_or_init(|| {
            qmail_tls::load(&src.home, src.ciphers.as_deref(), true)
                .map_err(|e| e.to_string())
                .and_then(|s| s.ok_or_else(|| format!("{} does not exist", qmail_tls::SERVERCERT)))
        }))
    }
}

/// SMTP AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The first argument: the host name in the CRAM-MD5 challenge.
    pub hostname: Vec<u8>,
    /// The checkpassword program and its arguments (the subprogram and the rest).
    pub program: Vec<Vec<u8>>,
    /// SMTPAUTH starts with `!`: MAIL is refused until the client has authenticated.
    pub required: bool,
    /// SMTPAUTH contains `cram`: CRAM-MD5 is offered too.
    pub cram: bool,
    /// FORCETLS is `0`: AUTH is offered and accepted without TLS.
    pub plaintext: bool,
}

impl AuthConfig {
    /// AUTH from the arguments and variables: `None` without a checkpassword program
    /// (fewer than two arguments) or with SMTPAUTH set to `-`.
    pub fn from_env(env: &Env) -> Option<AuthConfig> {
        let smtpauth = env.smtpauth.as_deref().unwrap_or(b"");
        if smtpauth == b"-" || env.args.len() < 2 || env.args[1].is_empty() {
            return None;
        }
        Some(AuthConfig {
            hostname: env.args[0].clone(),
            program: env.args[1..].to_vec(),
            required: smtpauth.first() == Some(&b'!'),
            cram: smtpauth.windows(4).any(|w| w.eq_ignore_ascii_case(b"cram")),
            plaintext: env.forcetls.as_deref() == Some(b"0"),
        })
    }
}

/// Why qmail-smtpd cannot start a session.
#[derive(Debug)]
pub enum SetupError {
    /// A control file (or the home directory) could not be read.
    Control { what: &'static str, err: io::Error },
    /// Neither control/smtpgreeting nor control/me exists.
    NoGreeting,
}

/// The reply for an unreadable control file.
pub const REPLY_CONTROLS: &str = "421 unable to read controls (#4.3.0)\r\n";
/// The reply when this host's addresses cannot be found (when a session first needs
/// them: [`Config::list_ipme`]).
pub const REPLY_IPME: &str = "421 unable to figure out my IP addresses (#4.3.0)\r\n";

impl SetupError {
    /// The SMTP reply (with CR LF) the client gets before the connection ends.
    pub fn reply(&self) -> &'static str {
        match self {
            SetupError::Control { .. } | SetupError::NoGreeting => REPLY_CONTROLS,
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Control { what, err } => write!(f, "unable to read {what}: {err}"),
            SetupError::NoGreeting => {
                f.write_str("neither control/smtpgreeting nor control/me exists")
            }
        }
    }
}

impl std::error::Error for SetupError {}

fn ctl<T>(what: &'static str, r: io::Result<T>) -> Result<T, SetupError> {
    r.map_err(|err| SetupError::Control { what, err })
}

impl Config {
    /// A configuration with netqmail's defaults and the given greeting (for tests and
    /// embedders): no rcpthosts, no badmailfrom, no size limit, unknown peer.
    pub fn new(greeting: &[u8]) -> Config {
        Config {
            greeting: greeting.to_vec(),
            localiphost: Some(greeting.to_vec()),
            timeout: DEFAULT_TIMEOUT,
            timeout_session: 0,
            databytes: 0,
            rcpthosts: RcptHosts::from_entries(None::<Vec<Vec<u8>>>),
            badmailfrom: BadMailFrom::default(),
            relayclient: None,
            remote: Remote::from_env(&Env::default()),
            ipme: vec![Ipv4Addr::UNSPECIFIED],
            ipme6: vec![Ipv6Addr::UNSPECIFIED],
            ipme_pending: false,
            tls: TlsSetting::default(),
            auth: None,
            rcptcheck: None,
            smtputf8: false,
        }
    }

    /// Reads the control files under `home` and the variables in `env`. `ipme` is left
    /// with 0.0.0.0 only and `ipme_pending` set: [`Config::list_ipme`] adds the interface
    /// addresses when they are first needed.
    pub fn load(home: &Path, env: &Env) -> Result<Config, SetupError> {
        let c = ctl("control/me", Controls::open(home))?;
        let greeting = ctl(
            "control/smtpgreeting",
            c.line_or("smtpgreeting", true, None),
        )?
        .ok_or(SetupError::NoGreeting)?;
        let localiphost = ctl("control/localiphost", c.line_or("localiphost", true, None))?;
        let timeout = ctl(
            "control/timeoutsmtpd",
            c.int_or("timeoutsmtpd", DEFAULT_TIMEOUT),
        )?
        .max(1);
        let timeout_session = ctl("control/timeoutsession", c.int_or("timeoutsession", 0))?;
        let rcpthosts = ctl(
            "control/rcpthosts or control/morercpthosts.cdb",
            RcptHosts::load(&c),
        )?;
        let badmailfrom = ctl("control/badmailfrom", BadMailFrom::load(&c))?;
        let mut databytes = ctl("control/databytes", c.int_or("databytes", 0))?;
        if let Some(d) = &env.databytes {
            databytes = control::scan_ulong(d).unwrap_or(0);
        }
        let smtps = env.smtps.as_ref().is_some_and(|v| !v.is_empty());
        let offer = env.deny_tls.is_none() && qmail_tls::configured(home);
        // The key and the certificates are read only when TLS starts (TlsSetting::server).
        let source = (offer || smtps).then(|| TlsSource {
            home: home.to_path_buf(),
            ciphers: env.tls_ciphers.clone(),
        });
        let clients = match source {
            Some(_) => ctl("control/tlsclients", c.lines("tlsclients"))?
                .unwrap_or_default()
                .into_iter()
                .map(|l| l.to_ascii_lowercase())
                .collect(),
            None => Vec::new(),
        };
        let smtputf8 = ctl("control/smtputf8", c.int_or("smtputf8", 0))? != 0;
        let rcptcheck = ctl(
            "control/validrcptto.cdb, control/checklocalrcpt or the routing controls",
            RcptCheck::load(home, &c, Duration::from_secs(timeout)),
        )?;
        Ok(Config {
            greeting,
            localiphost,
            timeout,
            timeout_session,
            databytes,
            rcpthosts,
            badmailfrom,
            relayclient: env.relay_client.clone(),
            remote: Remote::from_env(env),
            ipme: vec![Ipv4Addr::UNSPECIFIED],
            ipme6: vec![Ipv6Addr::UNSPECIFIED],
            ipme_pending: true,
            tls: TlsSetting {
                offer,
                smtps,
                source,
                server: OnceCell::new(),
                clients,
            },
            auth: AuthConfig::from_env(env),
            rcptcheck,
            smtputf8,
        })
    }

    /// Lists this host's addresses into `ipme` and `ipme6` unless that is done. An error
    /// means the interfaces could not be listed (the session then ends with
    /// [`REPLY_IPME`], as netqmail's does when it starts).
    pub fn list_ipme(&mut self) -> io::Result<()> {
        if self.ipme_pending {
            (self.ipme, self.ipme6) = crate::ipme::addresses()?;
            self.ipme_pending = false;
        }
        Ok(())
    }

    /// True when `ip` is one of this host's addresses.
    pub fn is_me(&self, ip: Ipv4Addr) -> bool {
        self.ipme.contains(&ip)
    }

    /// True when `ip` (either family) is one of this host's addresses.
    pub fn is_me_any(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.is_me(v4),
            IpAddr::V6(v6) => self.ipme6.contains(&v6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn home() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("control")).unwrap();
        d
    }

    #[test]
    fn defaults_from_me() {
        let d = home();
        fs::write(d.path().join("control/me"), "mx.example\n").unwrap();
        let c = Config::load(d.path(), &Env::default()).unwrap();
        assert_eq!(c.greeting, b"mx.example");
        assert_eq!(c.localiphost.as_deref(), Some(&b"mx.example"[..]));
        assert_eq!(c.timeout, 1200);
        assert_eq!(c.databytes, 0);
        assert_eq!(
            c.timeout_session, 0,
            "no session deadline unless configured"
        );
        assert!(!c.rcpthosts.restricted());
        assert_eq!(c.remote.ip, b"unknown");
        assert_eq!(c.remote.host, b"unknown");
        assert_eq!(c.remote.local, b"unknown");
        assert_eq!(c.remote.info, None);
        assert_eq!(c.relayclient, None);
    }

    #[test]
    fn files_and_env_override() {
        let d = home();
        let w = |n: &str, t: &str| fs::write(d.path().join("control").join(n), t).unwrap();
        w("me", "mx.example\n");
        w("smtpgreeting", "greet.example hello there \n");
        w("localiphost", "lip.example\n");
        w("timeoutsmtpd", "0\n");
        w("databytes", "5000\n");
        w("timeoutsession", "600\n");
        let env = Env {
            tcp_local_ip: Some(b"10.0.0.1".to_vec()),
            tcp_remote_host: Some(b"".to_vec()),
            relay_client: Some(b"".to_vec()),
            ..Env::default()
        };
        let c = Config::load(d.path(), &env).unwrap();
        assert_eq!(c.greeting, b"greet.example hello there");
        assert_eq!(c.localiphost.as_deref(), Some(&b"lip.example"[..]));
        assert_eq!(c.timeout, 1);
        assert_eq!(c.timeout_session, 600);
        assert_eq!(c.databytes, 5000);
        assert_eq!(c.remote.local, b"10.0.0.1");
        assert_eq!(c.remote.host, b"");
        assert_eq!(c.relayclient.as_deref(), Some(&b""[..]));
        let env = Env {
            databytes: Some(b"12x".to_vec()),
            tcp_local_host: Some(b"lh".to_vec()),
            tcp_local_ip: Some(b"10.0.0.1".to_vec()),
            ..Env::default()
        };
        let c = Config::load(d.path(), &env).unwrap();
        assert_eq!(c.databytes, 12);
        assert_eq!(c.remote.local, b"lh");
        let env = Env {
            databytes: Some(b"none".to_vec()),
            ..Env::default()
        };
        assert_eq!(Config::load(d.path(), &env).unwrap().databytes, 0);
    }

    #[test]
    fn tls_configuration_is_loaded_when_asked_for() {
        let d = home();
        fs::write(d.path().join("control/me"), "mx.example\n").unwrap();
        let c = Config::load(d.path(), &Env::default()).unwrap();
        assert!(!c.tls.offer);
        assert!(
            c.tls.server().is_none(),
            "no servercert.pem: nothing to load"
        );
        // Not a key: the session still starts, STARTTLS is offered, and the
        // configuration is tried (and found unusable) only when asked for.
        fs::write(d.path().join("control/servercert.pem"), "not a key\n").unwrap();
        fs::write(d.path().join("control/tlsclients"), "A@B.Example\n").unwrap();
        let c = Config::load(d.path(), &Env::default()).unwrap();
        assert!(c.tls.offer);
        assert_eq!(c.tls.clients, vec![b"a@b.example".to_vec()]);
        assert!(
            c.tls.server.get().is_none(),
            "loaded before it was asked for"
        );
        let e = c.tls.server().unwrap().as_ref().unwrap_err().clone();
        assert!(e.contains("servercert.pem"), "{e}");
        assert!(c.tls.server.get().is_some());
        // DENY_TLS without SMTPS: nothing to load, tlsclients not read.
        let env = Env {
            deny_tls: Some(Vec::new()),
            ..Env::default()
        };
        let c = Config::load(d.path(), &env).unwrap();
        assert!(!c.tls.offer && c.tls.server().is_none() && c.tls.clients.is_empty());
    }

    #[test]
    fn unreadable_controls_are_errors() {
        let d = home();
        let e = Config::load(d.path(), &Env::default()).unwrap_err();
        assert!(matches!(e, SetupError::NoGreeting));
        assert_eq!(e.reply(), REPLY_CONTROLS);
        fs::write(d.path().join("control/me"), "mx.example\n").unwrap();
        for name in [
            "rcpthosts",
            "badmailfrom",
            "databytes",
            "timeoutsmtpd",
            "localiphost",
            "smtpgreeting",
        ] {
            let p = d.path().join("control").join(name);
            fs::create_dir(&p).unwrap();
            let e = Config::load(d.path(), &Env::default()).unwrap_err();
            assert!(matches!(e, SetupError::Control { .. }), "{name}");
            assert!(e.to_string().contains(name), "{e}");
            assert_eq!(e.reply(), REPLY_CONTROLS);
            fs::remove_dir(&p).unwrap();
        }
        Config::load(d.path(), &Env::default()).unwrap();
    }
}
