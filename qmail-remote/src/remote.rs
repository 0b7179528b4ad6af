//! The qmail-remote program: `qmail-remote host sender recip [recip ...]`.
//!
//! In netqmail's order: arguments, the home directory, control files, the route for
//! `host`, the sender, this host's addresses, the recipients (their domains replaced by
//! canonical names unless a relay is routed to), the addresses to try, then one SMTP
//! dialogue with the first address that answers. Everything ends in one message report;
//! the exit code is always 0 (qmail-rspawn reads the reports).

use crate::conn::{self, Conn};
use crate::dns::{DnsError, Lookup, Resolver};
use crate::mx::{self, Random, Target};
use crate::report::{Output, Report};
use crate::routes::{Route, Routes};
use crate::smtp::{self, Params};
use crate::tcpto::Tables;
use crate::{addr, dane, ipme, mtasts, qmtp, routes, tls, utf8};
use std::ffi::OsString;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The port that means TLS from the first byte (SMTPS), as in the qmail TLS patch.
pub const PORT_SMTPS: u16 = 465;

/// The control files qmail-remote reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub timeout: Duration,
    pub timeout_connect: Duration,
    pub helo: Vec<u8>,
    pub routes: Routes,
    /// control/qmtproutes: hosts reached by QMTP; consulted before smtproutes.
    pub qmtproutes: Routes,
    pub tlsverify: Vec<Vec<u8>>,
    /// control/dane: the validating resolvers whose AD bit is trusted (none: no DANE).
    pub dane: Vec<std::net::SocketAddr>,
    /// control/mtasts: MTA-STS on.
    pub mtasts: bool,
}

fn seconds(n: u64) -> Duration {
    // At least a second (netqmail's 0 times out at once), at most about 136 years.
    Duration::from_secs(n.clamp(1, 1 << 32))
}

/// Reads the control files of `home`; any failure is netqmail's "Unable to read control
/// files".
pub fn settings(home: &Path) -> Result<Settings, Report> {
    let bad = |_| Report::control();
    let c = control::Controls::open(home).map_err(bad)?;
    let timeout = seconds(c.int_or("timeoutremote", 1200).map_err(bad)?);
    let timeout_connect = seconds(c.int_or("timeoutconnect", 60).map_err(bad)?);
    let helo = c
        .line_or("helohost", true, None)
        .map_err(bad)?
        .ok_or_else(Report::control)?;
    let helo = utf8::ascii_name(&helo).into_owned();
    let lines = |name| -> Result<_, Report> {
        let l = c.lines(name).map_err(bad)?.unwrap_or_default();
        Ok(utf8::route_lines(l))
    };
    let routes = Routes::new(lines("smtproutes")?);
    let qmtproutes = Routes::new(lines("qmtproutes")?);
    let tlsverify = c.lines("tlsverify").map_err(bad)?.unwrap_or_default();
    let dane = dane::resolvers(&c.lines("dane").map_err(bad)?.unwrap_or_default())
        .map_err(|_| Report::control())?;
    let mtasts = mtasts::enabled(&c).map_err(bad)?;
    Ok(Settings {
        timeout,
        timeout_connect,
        helo,
        routes,
        qmtproutes,
        tlsverify,
        dane,
        mtasts,
    })
}

/// Everything qmail-remote prints, for the arguments `args` (program name first), the
/// home `home`, the message `msg` and the resolver `dns`.
pub fn run(args: &[OsString], home: &Path, msg: Option<File>, dns: &mut dyn Lookup) -> Vec<u8> {
    let mut out = Output::new();
    let r = deliver(args, home, msg, dns, &mut out);
    out.finish(&r)
}

fn deliver(
    args: &[OsString],
    home: &Path,
    msg: Option<File>,
    dns: &mut dyn Lookup,
    out: &mut Output,
) -> Report {
    match try_deliver(args, home, msg, dns, out) {
        Ok(r) | Err(r) => r,
    }
}

fn try_deliver(
    args: &[OsString],
    home: &Path,
    mut msg: Option<File>,
    dns: &mut dyn Lookup,
    out: &mut Output,
) -> Result<Report, Report> {
    if args.len() < 4 {
        return Err(Report::usage());
    }
    std::env::set_current_dir(home).map_err(|_| Report::chdir())?;
    let set = settings(home)?;
    let host = utf8::host(args[1].as_bytes()).ok_or_else(|| {
        Report::perm(
            "Sorry, the host name is not a valid internationalized domain name. (#5.1.2)\n",
        )
    })?;
    let host = &*host;
    // A host in qmtproutes is reached by QMTP (port 209 unless the line gives one).
    let (route, use_qmtp) = match set.qmtproutes.lookup(host) {
        Some(v) => (
            routes::parse_relay_port(v, qmtp::PORT_QMTP).map_err(|_| Report::bad_route())?,
            true,
        ),
        None => (
            set.routes.route(host).map_err(|_| Report::bad_route())?,
            false,
        ),
    };
    let (port, relay) = match &route {
        Route::Mx { port } => (*port, None),
        Route::Relay { host, port } => (*port, Some(host.clone())),
    };
    if !set.dane.is_empty() {
        dns.validate_with(set.dane.clone());
    }
    let sender_arg = &*utf8::address(args[2].as_bytes());
    if !addr::command_safe(sender_arg) {
        return Err(Report::perm(
            "Sorry, I won't send a sender address with CR or LF in it. (#5.1.7)\n",
        ));
    }
    let sender = addr::mangle(sender_arg, None);
    let mut all_aliases = true;
    let mut recips = Vec::new();
    // For QMTP: the addresses as they are (netstrings need no quoting), with the
    // canonical domain.
    let mut raw_recips = Vec::new();
    let recip_args: Vec<_> = args[3..]
        .iter()
        .map(|a| utf8::address(a.as_bytes()))
        .collect();
    let mut need = utf8::envelope_needs(sender_arg, recip_args.iter().map(|a| &**a))
        .then_some(utf8::Need::Addresses);
    for a in &recip_args {
        let a = &**a;
        if !addr::command_safe(a) {
            all_aliases = false;
            recips.push(None);
            raw_recips.push(None);
            continue;
        }
        let (canon, alias) = match (relay.is_none(), addr::split(a).1) {
            (true, Some(d)) => {
                let (c, alias) = mx::canonical(dns, d).map_err(|_| Report::dnscanon())?;
                (Some(c), alias)
            }
            _ => (None, relay.is_none()),
        };
        if !alias {
            all_aliases = false;
        }
        recips.push(Some(addr::mangle(a, canon.as_deref())));
        raw_recips.push(Some(match (addr::split(a), &canon) {
            ((local, Some(_)), Some(c)) => [local, b"@", c].concat(),
            _ => a.to_vec(),
        }));
    }

    let targets = match &relay {
        Some(r) => match mx::ip(dns, r) {
            Ok(t) => t,
            Err(DnsError::Soft) => return Err(Report::dns_temp()),
            Err(DnsError::Hard) => return Err(Report::dns_perm(r)),
        },
        None => match mx::mxip(dns, host, &mut Random::from_time_and_pid()) {
            Ok(f) if f.soft && f.targets.is_empty() => return Err(Report::dns_temp()),
            Ok(f) => f.targets,
            Err(DnsError::Soft) => return Err(Report::dns_temp()),
            Err(DnsError::Hard) => return Err(Report::dns_perm(host)),
        },
    };
    if targets.is_empty() {
        return Err(Report::nomx());
    }
    // The loop check (netqmail's prefme) needs this host's addresses, a netlink dump of
    // the interfaces; a routed relay and an all-alias delivery skip the check, so they
    // skip the dump too.
    let prefme = if all_aliases {
        500_000
    } else if relay.is_some() {
        300_000
    } else {
        let me = ipme::addresses().map_err(|_| Report::oserr())?;
        targets
            .iter()
            .filter(|t| ipme::is_me(&me, &t.ip))
            .map(|t| t.pref)
            .min()
            .unwrap_or(100_000)
            .min(100_000)
    };
    tracing::debug!(
        "targets: {}; this host's preference {prefme}",
        targets
            .iter()
            .map(|t| format!("{} {} {}", t.pref, t.fqdn.as_deref().unwrap_or("-"), t.ip))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let usable: Vec<&Target> = targets.iter().filter(|t| t.pref < prefme).collect();
    if usable.is_empty() {
        return Err(Report::ambigmx());
    }

    // MTA-STS (crate::mtasts): for deliveries by MX only; its lookups go where the
    // delivery's go (control/dane's resolvers when set).
    let sts = (set.mtasts && relay.is_none() && !use_qmtp)
        .then(|| {
            let mut r = Resolver::system();
            if !set.dane.is_empty() {
                r.validate_with(set.dane.clone());
            }
            mtasts::lookup(home, host, &mut r)
        })
        .flatten();
    let (mut sts_refused, mut sts_notes) = (None, Vec::new());
    let mut tables = Tables::new(home);
    // The hosts DANE refused, a line each, for the report if no other host takes the mail.
    let mut refused = Vec::new();
    let mx_domain = std::str::from_utf8(host).ok().filter(|_| relay.is_none());
    for t in usable {
        let verdict = sts.as_ref().map(|s| s.verdict(t));
        match &verdict {
            Some(mtasts::Verdict::Refuse(why)) => {
                tracing::debug!("skipping {}: {why}", t.ip);
                sts_refused = Some(why.clone());
                continue;
            }
            Some(mtasts::Verdict::Note(why)) => {
                sts_notes.push(format!("MTA-STS (testing): {why}."))
            }
            _ => {}
        }
        if tables.skip(&t.ip) {
            tracing::debug!("skipping {}: it timed out recently (qmail-tcpto)", t.ip);
            continue;
        }
        let tlsa = if set.dane.is_empty() || use_qmtp {
            None
        } else {
            match dane::decide(dns, t, port, mx_domain) {
                dane::Decision::None(why) => {
                    tracing::debug!("DANE does not apply to {}: {why}", t.ip);
                    None
                }
                dane::Decision::Use(d) => Some(d),
                dane::Decision::Skip(line) => {
                    tracing::debug!("{}", line.trim_end());
                    refused.extend_from_slice(line.as_bytes());
                    continue;
                }
            }
        };
        match conn::connect(t.ip, port, set.timeout_connect) {
            Ok(sock) => {
                tracing::debug!("connected to {} port {port}", t.ip);
                tables.record(&t.ip, false);
                if use_qmtp {
                    let Some(mut msg) = msg else {
                        return Err(Report::read());
                    };
                    let p = qmtp::Package {
                        sender: sender_arg,
                        recips: &raw_recips,
                    };
                    return Ok(qmtp::deliver(sock, set.timeout, t.ip, &p, &mut msg, out));
                }
                let mut policy =
                    tls::policy(home, t, &set.tlsverify).map_err(|_| Report::control())?;
                if let (Some(s), Some(mtasts::Verdict::Require)) = (&sts, &verdict) {
                    policy = s.tls_policy(policy);
                }
                // Validated TLSA records win over everything but the administrator's
                // own word for this host (notlshosts, tlshosts/HOST.pem).
                if let Some(d) = tlsa
                    && !matches!(policy, tls::Policy::Off | tls::Policy::CaFile(_))
                {
                    policy = tls::Policy::Dane(d);
                }
                let dane = matches!(policy, tls::Policy::Dane(_));
                tracing::debug!(
                    "TLS policy for {}: {}",
                    t.fqdn.as_deref().unwrap_or("an address literal"),
                    policy.explain()
                );
                let Some(msg) = msg.as_mut() else {
                    return Err(Report::read());
                };
                if need.is_none() && utf8::message_needs(msg) {
                    need = Some(utf8::Need::Message);
                }
                let p = Params {
                    home,
                    helo: &set.helo,
                    sender: &sender,
                    recips: &recips,
                    target: t,
                    policy,
                    smtps: port == PORT_SMTPS,
                    smtputf8: need,
                };
                let start = msg.stream_position().ok();
                let (r, tls_failed) = smtp::deliver(Conn::new(sock, set.timeout), &p, msg, out);
                // A host that fails its DANE policy gets no mail: try the next one (the
                // message was not read, but rewind anyway when it can be).
                if dane && tls_failed && r.letter == b'Z' {
                    refused.extend_from_slice(&r.text);
                    if let Some(pos) = start {
                        let _ = msg.seek(std::io::SeekFrom::Start(pos));
                    }
                    continue;
                }
                return Ok(match &sts {
                    Some(s) => s.annotate(r, &sts_notes),
                    None => r,
                });
            }
            Err(timed_out) => {
                tracing::debug!(
                    "no connection to {} port {port}: {}",
                    t.ip,
                    if timed_out {
                        "timed out"
                    } else {
                        "refused or unreachable"
                    }
                );
                tables.record(&t.ip, timed_out)
            }
        }
    }
    if !refused.is_empty() {
        let r = Report {
            letter: b'Z',
            text: refused,
        };
        return Err(match &sts {
            Some(s) => s.annotate(r, &sts_notes),
            None => r,
        });
    }
    Err(match (&sts, sts_refused) {
        (Some(s), Some(why)) => s.refused(&why),
        (Some(s), None) => s.annotate(Report::noconn(), &sts_notes),
        _ => Report::noconn(),
    })
}

/// The program: reads the message from fd 0, prints the reports on fd 1, exits 0.
/// qmail-remote's confinement (qmail-remote(8), CONFINEMENT): no_new_privs; reading
/// control/ (and what its symbolic links point to), the certificate directories and
/// /etc/resolv.conf, writing the tcpto tables in queue/lock; the system calls of a
/// network client that reads files. Nothing is logged: descriptor 1 is the report.
pub fn confine(home: &Path) {
    use control::confine::{FsAccess, Policy, syscalls};
    let _ = Policy::new()
        .no_new_privs()
        .allow_control(home)
        .allow_certificates()
        .allow("/etc/resolv.conf", FsAccess::Read)
        .allow_random_devices()
        .allow(home.join("queue/lock"), FsAccess::ReadWrite)
        .allow(home.join(mtasts::cache::DIR), FsAccess::ReadWrite)
        .syscalls(&[
            syscalls::RUNTIME,
            syscalls::FILES,
            syscalls::NETWORK,
            mtasts::cache::SYSCALLS,
        ])
        .apply();
}

pub fn main() -> control::Exit {
    let args: Vec<OsString> = std::env::args_os().collect();
    let home: PathBuf = control::qmail_home();
    control::diagnostics::init("qmail-remote", &home, control::stderr_is_not_output());
    // fd 0 as a File of its own (a duplicate), so it can be rewound after a look at it.
    let msg = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(File::from);
    confine(&home);
    let mut dns = Resolver::system();
    let bytes = run(&args, &home, msg, &mut dns);
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(&bytes);
    let _ = o.flush();
    control::Exit::OK
}
