//! New TLS sessions per second from one client (`openssl s_time -new`): rqmail's
//! qmail-smtpd speaking TLS from the first byte (SMTPS=1) under tcpserver, against an
//! installed Postfix's smtpd in smtpd_tls_wrappermode on another loopback port, with the
//! same key and certificate. Postfix runs as an instance of its own (`postfix -c DIR`,
//! its queue under the work directory) and is stopped afterwards.

use crate::inst::Inst;
use crate::load::wait_listening;
use crate::measure::Cfg;
use crate::sys::{self, Bg};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A key type: its name in the table and the `openssl req -newkey` argument.
const KEYS: [(&str, &str); 2] = [("ECDSA P-256", "ec"), ("RSA-2048", "rsa:2048")];

/// Makes a self-signed certificate and its key for bench.example in `dir`: returns the
/// paths of (key, certificate).
fn make_cert(openssl: &Path, dir: &Path, kind: &str) -> io::Result<(PathBuf, PathBuf)> {
    let tag = if kind == "ec" { "ec" } else { "rsa" };
    let key = dir.join(format!("{tag}.key"));
    let crt = dir.join(format!("{tag}.crt"));
    if key.exists() && crt.exists() {
        return Ok((key, crt));
    }
    let mut c = Command::new(openssl);
    c.args([
        "req",
        "-x509",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=bench.example",
    ])
    .arg("-newkey")
    .arg(kind);
    if kind == "ec" {
        c.args(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    c.arg("-keyout").arg(&key).arg("-out").arg(&crt);
    sys::output(c, "openssl req")?;
    Ok((key, crt))
}

/// Runs `openssl s_time -new` against 127.0.0.1:`port` for `secs` seconds; returns new
/// sessions per second (connections counted by s_time, divided by the wall time of the
/// whole run as measured here).
fn s_time(openssl: &Path, port: u16, secs: u32) -> io::Result<f64> {
    let mut c = Command::new(openssl);
    c.args(["s_time", "-new", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-time")
        .arg(secs.to_string())
        .stderr(Stdio::null());
    let start = Instant::now();
    let out = sys::output(c, "openssl s_time")?;
    let wall = start.elapsed().as_secs_f64();
    // "N connections in T real seconds, ..."
    let n = out
        .lines()
        .filter(|l| l.contains("real seconds"))
        .find_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .ok_or_else(|| io::Error::other(format!("openssl s_time said: {}", out.trim())))?;
    if n == 0 {
        return Err(io::Error::other("openssl s_time made no connection"));
    }
    Ok(n as f64 / wall)
}

/// A Postfix instance of its own, stopped when dropped.
struct Postfix {
    postfix: PathBuf,
    conf: PathBuf,
}

impl Postfix {
    fn start(
        postfix: &Path,
        work: &Path,
        port: u16,
        key: &Path,
        crt: &Path,
    ) -> io::Result<Postfix> {
        let conf = work.join("postfix-conf");
        let queue = work.join("postfix-queue");
        let data = work.join("postfix-data");
        fs::create_dir_all(&conf)?;
        fs::create_dir_all(&queue)?;
        fs::create_dir_all(&data)?;
        let (uid, gid) = sys::user_ids("postfix")?;
        std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
        // Postfix wants the key readable by root only.
        fs::set_permissions(key, fs::Permissions::from_mode(0o600))?;
        fs::write(
            conf.join("main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {queue}\n\
                 data_directory = {data}\n\
                 myhostname = bench.example\n\
                 mydestination =\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 smtpd_tls_chain_files = {key}, {crt}\n\
                 smtpd_tls_security_level = may\n\
                 smtpd_tls_loglevel = 0\n\
                 smtpd_tls_session_cache_database =\n\
                 maillog_file = {work}/postfix.log\n",
                queue = queue.display(),
                data = data.display(),
                key = key.display(),
                crt = crt.display(),
                work = work.display(),
            ),
        )?;
        // Postfix's services as Debian ships them, with smtpd on a loopback port in
        // wrapper mode (TLS from the first byte) instead of port 25.
        let dist = fs::read_to_string("/usr/share/postfix/master.cf.dist")
            .or_else(|_| fs::read_to_string("/etc/postfix/master.cf"))?;
        // No service is chrooted (the chroot would need copies of /etc files).
        let mut master = String::new();
        for l in dist.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if l.starts_with("smtp ") && l.contains(" inet ") {
                master.push_str(&format!(
                    "127.0.0.1:{port} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n"
                ));
            } else if l.starts_with("postlog") {
            } else if f.len() >= 8 && !l.starts_with(['#', ' ', '\t']) {
                let mut f = f.clone();
                f[4] = "n";
                master.push_str(&f.join(" "));
                master.push('\n');
            } else {
                master.push_str(l);
                master.push('\n');
            }
        }
        master.push_str("postlog unix-dgram n - n - 1 postlogd\n");
        fs::write(conf.join("master.cf"), master)?;
        let pf = Postfix {
            postfix: postfix.to_path_buf(),
            conf,
        };
        sys::output(pf.cmd("check"), "postfix check")?;
        sys::output(pf.cmd("start"), "postfix start")?;
        wait_listening(port)?;
        Ok(pf)
    }

    fn cmd(&self, what: &str) -> Command {
        let mut c = Command::new(&self.postfix);
        c.arg("-c").arg(&self.conf).arg(what);
        c
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = sys::output(self.cmd("stop"), "postfix stop");
    }
}

/// One key's figures: its name, rqmail's samples under tcpserver, under
/// qmail-smtpd-server, Postfix's samples.
pub type KeyRates = (String, Vec<f64>, Vec<f64>, Vec<f64>);

/// Per key: (name, rqmail's samples under tcpserver and under qmail-smtpd-server,
/// Postfix's samples), `rounds` rotations of `secs` seconds each.
pub fn compare(rq: &Inst, secs: u32, rounds: usize, cfg: &Cfg) -> io::Result<Vec<KeyRates>> {
    let openssl = cfg
        .openssl
        .as_deref()
        .ok_or_else(|| io::Error::other("openssl missing"))?;
    let postfix = cfg
        .postfix_ctl
        .as_deref()
        .ok_or_else(|| io::Error::other("Postfix is not installed (bench/run installs it)"))?;
    let tcpserver = cfg
        .tcpserver
        .as_deref()
        .ok_or_else(|| io::Error::other("tcpserver missing"))?;
    let dir = cfg.work.join("tls");
    fs::create_dir_all(&dir)?;
    let (quid, _) = sys::user_ids("qmaild")?;
    let ngid = sys::group_id("nofiles")?;
    let certfile = rq.home.join("control/servercert.pem");
    let saved = sys::read_opt(&certfile);
    let mut out = Vec::new();
    let result = (|| -> io::Result<()> {
        for (name, kind) in KEYS {
            let (key, crt) = make_cert(openssl, &dir, kind)?;
            // rqmail: key and chain in one file, readable by qmaild only.
            let mut pem = fs::read(&key)?;
            pem.extend(fs::read(&crt)?);
            fs::write(&certfile, pem)?;
            std::os::unix::fs::chown(&certfile, Some(quid), Some(ngid))?;
            fs::set_permissions(&certfile, fs::Permissions::from_mode(0o400))?;
            // rqmail twice: qmail-smtpd under tcpserver (an exec per connection), and
            // under its own qmail-smtpd-server (a fork per connection, the TLS
            // configuration loaded once), with the same options.
            let opts: Vec<String> = ["-c", "100", "-b", "100"].map(String::from).into();
            let smtps = |server: bool| -> io::Result<(Bg, u16)> {
                let port = sys::free_port()?;
                let mut c = rq.smtpd_front(tcpserver, server, &opts, quid, ngid, port);
                c.env("SMTPS", "1");
                let bg = Bg::spawn(
                    if server {
                        "qmail-smtpd-server"
                    } else {
                        "tcpserver"
                    },
                    c,
                )?;
                wait_listening(port)?;
                Ok((bg, port))
            };
            let (_tcpserver, rport) = smtps(false)?;
            let server = smtps(true);
            let pport = sys::free_port()?;
            let _pf = Postfix::start(postfix, &cfg.work, pport, &key, &crt)?;
            let (mut a, mut s, mut b) = (Vec::new(), Vec::new(), Vec::new());
            for r in 0..rounds {
                for k in 0..3 {
                    let (port, v, label) = match (r + k) % 3 {
                        0 => (rport, &mut a, "rqmail (tcpserver)"),
                        1 => match &server {
                            Ok((_, p)) => (*p, &mut s, "rqmail (qmail-smtpd-server)"),
                            Err(_) => continue,
                        },
                        _ => (pport, &mut b, "Postfix"),
                    };
                    let x = s_time(openssl, port, secs);
                    match &x {
                        Ok(x) => eprintln!("bench: TLS sessions/s, {name}: {label} {x:.1}"),
                        Err(e) => eprintln!("bench: TLS sessions/s, {name}: {label} failed: {e}"),
                    }
                    v.push(x?);
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            if let Err(e) = &server {
                eprintln!(
                    "bench: TLS sessions/s, {name}: rqmail's qmail-smtpd-server did not start: {e}"
                );
            }
            out.push((name.to_string(), a, s, b));
        }
        Ok(())
    })();
    sys::restore(&certfile, &saved)?;
    result.map(|()| out)
}
