//! The measurements under load: remote deliveries to a slow MX, injection while
//! qmail-send delivers, and many idle qmail-smtpd sessions.

use crate::inst::{self, Inst, LOCAL_RCPT, REMOTE_RCPT};
use crate::measure::{Cfg, fill_by_injection, maildir_home, start_send_timed};
use crate::sys::{self, Bg};
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// CPU seconds used so far by qmail-send (`pid`, qmail-start's process, which became
/// qmail-send) and the daemons qmail-start forked: (name, seconds), the delivery programs
/// (waited for by qmail-lspawn and qmail-rspawn) counted as "qmail-local" and
/// "qmail-remote".
pub fn daemon_cpu(pid: u32) -> Vec<(String, f64)> {
    let mut v = Vec::new();
    if let Some((_, own, _)) = sys::proc_cpu(pid) {
        v.push(("qmail-send".to_string(), own));
    }
    for kid in sys::children(pid) {
        let Some((comm, own, kids)) = sys::proc_cpu(kid) else {
            continue;
        };
        match comm.as_str() {
            "qmail-rspawn" => v.push(("qmail-remote".into(), kids)),
            "qmail-lspawn" => v.push(("qmail-local".into(), kids)),
            _ => {}
        }
        v.push((comm, own));
    }
    v
}

/// The CPU of one daemon in a [`daemon_cpu`] list, milliseconds per message.
pub fn cpu_ms(list: &[(String, f64)], name: &str, messages: u64) -> f64 {
    list.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, s)| *s)
        .sum::<f64>()
        * 1000.0
        / messages.max(1) as f64
}

/// What one slow-MX run found.
#[derive(Debug, Clone)]
pub struct SlowMx {
    /// Deliveries per second, from the start of qmail-start until the queue is empty.
    pub rate: f64,
    /// The most SMTP sessions smtp-sink held at once (sampled every 100 ms).
    pub peak_sessions: f64,
    /// Deliveries the log does not call successful.
    pub failed: u64,
    /// CPU seconds of qmail-send and its daemons (see [`daemon_cpu`]).
    pub cpu: Vec<(String, f64)>,
}

/// ESTABLISHED TCP connections whose local port is `port` (the server's side), from
/// /proc/net/tcp.
pub fn established_on(port: u16) -> usize {
    let Ok(t) = fs::read_to_string("/proc/net/tcp") else {
        return 0;
    };
    let want = format!(":{port:04X}");
    t.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "01"
        })
        .count()
}

/// Remote deliveries per second to smtp-sink answering DATA after `delay` seconds
/// (`smtp-sink -w`), with `messages` messages queued and concurrencyremote set to
/// `concurrency` (netqmail's qmail-send lowers it silently to its conf-spawn). smtp-sink
/// is allowed more sessions than the concurrency (-m) and a listen backlog as large; the
/// descriptor limit was raised for everything the driver starts.
pub fn slow_mx(
    inst: &mut Inst,
    concurrency: u32,
    messages: u64,
    delay: u32,
    cfg: &Cfg,
) -> io::Result<SlowMx> {
    let Some(sink) = &cfg.smtp_sink else {
        return Err(io::Error::other("smtp-sink missing"));
    };
    let port = sys::free_port()?;
    let room = (concurrency as usize * 2).max(256).to_string();
    let mut c = cfg.postfix(sink);
    c.args(["-u", "nobody", "-w", &delay.to_string(), "-m", &room])
        .arg(format!("127.0.0.1:{port}"))
        .arg(&room)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _sink = Bg::spawn("smtp-sink", c)?;
    sys::wait_for_port(port)?;
    inst.set_control(
        "smtproutes",
        Some(&format!("sink.example:127.0.0.1:{port}\n")),
    )?;
    inst.set_control("concurrencyremote", Some(&format!("{concurrency}\n")))?;
    fill_by_injection(inst, messages, REMOTE_RCPT, cfg)?;
    let log = cfg.work.join(format!(
        "{}-slowmx-{concurrency}.{}.log",
        inst.label,
        crate::measure::run_number()
    ));
    let queue = inst.queue();
    let mut peak = 0usize;
    let start = Instant::now();
    let mut send = start_send_timed(inst, &log, start)?;
    let deadline = start + Duration::from_secs(1800);
    let mut timed_out = false;
    while inst::count(&queue, "todo") > 0 || inst::messages(&queue) > 0 {
        if Instant::now() > deadline {
            timed_out = true;
            break;
        }
        peak = peak.max(established_on(port));
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = send
        .child
        .as_ref()
        .map(|c| daemon_cpu(c.id()))
        .unwrap_or_default();
    send.stop(Duration::from_secs(60));
    if timed_out {
        return Err(io::Error::other(format!(
            "{}: slow-MX deliveries did not finish; see {}",
            inst.label,
            log.display()
        )));
    }
    let text = fs::read_to_string(&log).unwrap_or_default();
    let ok = text.matches(": success: ").count() as u64;
    inst::empty(&inst.queue())?;
    Ok(SlowMx {
        rate: messages as f64 / secs,
        peak_sessions: peak as f64,
        failed: messages.saturating_sub(ok),
        cpu,
    })
}

/// What one injecting-while-delivering run found.
#[derive(Debug, Clone)]
pub struct Flood {
    /// Injections per second while qmail-send delivered.
    pub inject_rate: f64,
    /// The largest number of messages in todo/ (sampled every 100 ms).
    pub max_todo: f64,
    /// The median number of messages in todo/ while injecting.
    pub median_todo: f64,
    /// Seconds from the last injection to the last delivery.
    pub drain: f64,
    /// Seconds from the first injection to the last delivery.
    pub total: f64,
    /// CPU seconds of qmail-send and its daemons (see [`daemon_cpu`]), and of the
    /// qmail-queue runs ("qmail-queue").
    pub cpu: Vec<(String, f64)>,
}

/// "Injecting while delivering": qmail-send runs (concurrencylocal at its default) while
/// `writers` writers inject `messages` messages for the bench user's Maildir through
/// qmail-queue. Every 100 ms a sampler writes the elapsed time, the messages injected,
/// those in todo/ and those delivered to `work/LABEL-flood.N.tsv`.
pub fn flood(inst: &Inst, writers: usize, messages: u64, cfg: &Cfg) -> io::Result<Flood> {
    let new = maildir_home(inst, cfg).join("Maildir/new");
    for f in fs::read_dir(&new)?.flatten() {
        fs::remove_file(f.path())?;
    }
    let n = crate::measure::run_number();
    let log = cfg.work.join(format!("{}-flood.{n}.log", inst.label));
    let tsv = cfg.work.join(format!("{}-flood.{n}.tsv", inst.label));
    let queue = inst.queue();
    let t0 = Instant::now();
    let mut send = start_send_timed(inst, &log, t0)?;
    // qmail-send is up once it has created its lock and the spawns answered; a second
    // is plenty and the same for both.
    std::thread::sleep(Duration::from_secs(1));

    let msg = inst::message(cfg.size, LOCAL_RCPT);
    let env = inst::envelope(LOCAL_RCPT);
    let next = AtomicU64::new(0);
    let injected = Arc::new(AtomicU64::new(0));
    let failed = AtomicU64::new(0);
    let injecting = Arc::new(AtomicBool::new(true));
    let start = Instant::now();
    let (queue_cpu0, _) = sys::children_usage();
    // Times in the samples and in the log are seconds since qmail-start started.
    let inject_start = t0.elapsed().as_secs_f64();
    let mut samples: Vec<(f64, u64, usize, usize)> = Vec::new();
    let mut last_injection = 0.0;
    let result = std::thread::scope(|s| -> io::Result<()> {
        let mut handles = Vec::new();
        for _ in 0..writers {
            handles.push(s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < messages {
                    match inst.inject(&msg, &env) {
                        Ok(true) => injected.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        let deadline = start + Duration::from_secs(1800);
        loop {
            let t = t0.elapsed().as_secs_f64();
            let inj = injected.load(Ordering::Relaxed);
            let todo = inst::count(&queue, "todo");
            let done = count_dir(&new);
            samples.push((t, inj, todo, done));
            if injecting.load(Ordering::Relaxed) && handles.iter().all(|h| h.is_finished()) {
                injecting.store(false, Ordering::Relaxed);
                last_injection = t;
            }
            if !injecting.load(Ordering::Relaxed) && done as u64 >= inj {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("timed out waiting for the deliveries"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let total = t0.elapsed().as_secs_f64() - inject_start;
    let (queue_cpu1, _) = sys::children_usage();
    let mut cpu = send
        .child
        .as_ref()
        .map(|c| daemon_cpu(c.id()))
        .unwrap_or_default();
    cpu.push(("qmail-queue".into(), queue_cpu1 - queue_cpu0));
    send.stop(Duration::from_secs(60));
    let mut out = String::from("seconds\tinjected\ttodo\tdelivered\n");
    for (t, i, todo, d) in &samples {
        out.push_str(&format!("{t:.2}\t{i}\t{todo}\t{d}\n"));
    }
    fs::write(&tsv, out)?;
    result.map_err(|e| io::Error::other(format!("{}: {e}; see {}", inst.label, log.display())))?;
    let f = failed.load(Ordering::Relaxed);
    inst::empty(&queue)?;
    for f in fs::read_dir(&new)?.flatten() {
        fs::remove_file(f.path())?;
    }
    if f > 0 {
        return Err(io::Error::other(format!(
            "{}: {f} injections failed",
            inst.label
        )));
    }
    let during: Vec<f64> = samples
        .iter()
        .filter(|s| s.0 >= inject_start && s.0 <= last_injection)
        .map(|s| s.2 as f64)
        .collect();
    Ok(Flood {
        inject_rate: messages as f64 / (last_injection - inject_start).max(0.001),
        max_todo: samples.iter().map(|s| s.2).max().unwrap_or(0) as f64,
        median_todo: sys::median(&during),
        drain: total + inject_start - last_injection,
        total,
        cpu,
    })
}

fn count_dir(p: &Path) -> usize {
    fs::read_dir(p).map(|rd| rd.count()).unwrap_or(0)
}

/// Memory of `sessions` idle qmail-smtpd sessions under tcpserver (as qmaild, group
/// nofiles), or with `server` under rqmail's qmail-smtpd-server: each client connects and
/// reads the greeting, then all stay open while the qmail-smtpd processes (the server's
/// children) are measured. Returns (the sum of their proportional set sizes plus page
/// tables, kB; the median VmHWM, kB).
pub fn idle_sessions(
    inst: &Inst,
    sessions: usize,
    server: bool,
    cfg: &Cfg,
) -> io::Result<(f64, f64)> {
    let Some(tcpserver) = &cfg.tcpserver else {
        return Err(io::Error::other("tcpserver missing"));
    };
    let (uid, _) = sys::user_ids("qmaild")?;
    let gid = sys::group_id("nofiles")?;
    let port = sys::free_port()?;
    let room = (sessions + 10).to_string();
    let opts = ["-c".to_string(), room.clone(), "-b".to_string(), room];
    let c = inst.smtpd_front(tcpserver, server, &opts, uid, gid, port);
    let server = Bg::spawn("tcpserver", c)?;
    let server_pid = server.child.as_ref().map(|c| c.id()).unwrap_or(0);
    wait_listening(port)?;
    let mut conns = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut r = BufReader::new(s.try_clone()?);
        let mut l = String::new();
        r.read_line(&mut l)?;
        if !l.starts_with("220") {
            return Err(io::Error::other(format!("greeting: {l}")));
        }
        conns.push(s);
    }
    let kids = sys::children(server_pid);
    if kids.len() < sessions {
        return Err(io::Error::other(format!(
            "{} qmail-smtpd processes for {sessions} sessions",
            kids.len()
        )));
    }
    let mut total = 0u64;
    let mut hwm = Vec::new();
    for pid in &kids {
        total += sys::pss_kb(*pid).unwrap_or(0) + sys::status_kb(*pid, "VmPTE:").unwrap_or(0);
        if let Some(h) = sys::status_kb(*pid, "VmHWM:") {
            hwm.push(h as f64);
        }
    }
    for mut s in conns {
        let _ = s.write_all(b"QUIT\r\n");
    }
    drop(server);
    Ok((total as f64, sys::median(&hwm)))
}

/// Waits until 127.0.0.1:`port` is listening, without connecting (a probe connection
/// would be a session of its own).
pub fn wait_listening(port: u16) -> io::Result<()> {
    let want = format!(":{port:04X}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let t = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        if t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        }) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(io::Error::other(format!(
        "nothing listens on 127.0.0.1:{port}"
    )))
}
