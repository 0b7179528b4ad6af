//! rqmail-bench: measures an rqmail home (and optionally another qmail installation,
//! alternating the two) against the disk's own fsync bound, and prints a table of figures
//! and ratios. Never pass/fail. Run through bench/run, which builds and installs rqmail
//! for it; see bench/RESULTS.md.

mod inst;
mod load;
mod measure;
mod startcost;
mod sys;
mod tls;

use inst::Inst;
use measure::Cfg;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str =
    "usage: rqmail-bench --rqmail HOME [--other HOME] [--work DIR] [--rounds N] [--seconds S]
       [--messages N] [--size BYTES] [--clients N,N..] [--concurrency N,N..] [--queue-size N]
       [--sessions N] [--slow-messages N] [--slow-concurrency N] [--slow-delay S]
       [--flood-messages N] [--flood-writers N] [--idle-sessions N] [--tls-seconds S]
       [--startcost-runs N] [--postfix PATH] [--only NAME,NAME..] [--smtp-source PATH] [--smtp-sink PATH]
       [--postfix-libs DIR]
measurements (for --only): fsync inject fsynccount prep smtp local remote slowmx
       flood session startcost idle tls qtools";

const ALL: [&str; 14] = [
    "fsync",
    "inject",
    "fsynccount",
    "prep",
    "smtp",
    "local",
    "remote",
    "slowmx",
    "flood",
    "session",
    "startcost",
    "idle",
    "tls",
    "qtools",
];

struct Opts {
    rqmail: PathBuf,
    other: Option<PathBuf>,
    rounds: usize,
    clients: Vec<usize>,
    concurrency: Vec<u32>,
    only: Vec<String>,
    slow_messages: u64,
    slow_concurrency: u32,
    slow_delay: u32,
    flood_messages: u64,
    flood_writers: usize,
    idle_sessions: usize,
    tls_seconds: u32,
    startcost_runs: u32,
    cfg: Cfg,
}

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|x| x.trim().parse().map_err(|_| format!("bad list: {s}")))
        .collect()
}

fn parse() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mut rqmail = None;
    let mut other = None;
    let mut o = Opts {
        rqmail: PathBuf::new(),
        other: None,
        rounds: 2,
        clients: vec![10],
        concurrency: vec![20, 200],
        only: ALL.iter().map(|s| s.to_string()).collect(),
        slow_messages: 5000,
        slow_concurrency: 1000,
        slow_delay: 1,
        flood_messages: 10_000,
        flood_writers: 4,
        idle_sessions: 1000,
        tls_seconds: 10,
        startcost_runs: 200,
        cfg: Cfg {
            seconds: 3.0,
            messages: 1000,
            size: 1000,
            queue_size: 100_000,
            sessions: 30,
            work: PathBuf::from("/var/tmp/rqmail-bench/work"),
            tcpserver: sys::find_program("tcpserver"),
            smtp_source: sys::find_program("smtp-source"),
            smtp_sink: sys::find_program("smtp-sink"),
            postfix_libs: None,
            postfix_ctl: sys::find_program("postfix"),
            openssl: sys::find_program("openssl"),
            strace: sys::find_program("strace"),
        },
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| {
            v.parse::<f64>()
                .map_err(|_| format!("{a}: not a number: {v}"))
        };
        match a.as_str() {
            "--rqmail" => rqmail = Some(PathBuf::from(val()?)),
            "--other" => other = Some(PathBuf::from(val()?)),
            "--work" => o.cfg.work = PathBuf::from(val()?),
            "--rounds" => o.rounds = num(val()?)?.max(1.0) as usize,
            "--seconds" => o.cfg.seconds = num(val()?)?.max(0.1),
            "--messages" => o.cfg.messages = num(val()?)?.max(1.0) as u64,
            "--size" => o.cfg.size = num(val()?)?.max(200.0) as usize,
            "--queue-size" => o.cfg.queue_size = num(val()?)?.max(1.0) as u64,
            "--sessions" => o.cfg.sessions = num(val()?)?.max(1.0) as usize,
            "--clients" => o.clients = list(&val()?)?,
            "--concurrency" => o.concurrency = list(&val()?)?,
            "--only" => o.only = list(&val()?)?,
            "--slow-messages" => o.slow_messages = num(val()?)?.max(1.0) as u64,
            "--slow-concurrency" => o.slow_concurrency = num(val()?)?.max(1.0) as u32,
            "--slow-delay" => o.slow_delay = num(val()?)?.max(0.0) as u32,
            "--flood-messages" => o.flood_messages = num(val()?)?.max(1.0) as u64,
            "--flood-writers" => o.flood_writers = num(val()?)?.max(1.0) as usize,
            "--idle-sessions" => o.idle_sessions = num(val()?)?.max(1.0) as usize,
            "--tls-seconds" => o.tls_seconds = num(val()?)?.max(1.0) as u32,
            "--startcost-runs" => o.startcost_runs = num(val()?)?.max(1.0) as u32,
            "--postfix" => o.cfg.postfix_ctl = Some(PathBuf::from(val()?)),
            "--smtp-source" => o.cfg.smtp_source = Some(PathBuf::from(val()?)),
            "--smtp-sink" => o.cfg.smtp_sink = Some(PathBuf::from(val()?)),
            "--postfix-libs" => o.cfg.postfix_libs = Some(PathBuf::from(val()?)),
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    for n in &o.only {
        if !ALL.contains(&n.as_str()) {
            return Err(format!("unknown measurement {n}"));
        }
    }
    o.rqmail = rqmail.ok_or("--rqmail HOME is required")?;
    o.other = other;
    Ok(o)
}

/// One line of the table: per installation, the samples of every round.
struct Row {
    name: String,
    higher_better: bool,
    /// A derived line (a share): no ratio column.
    derived: bool,
    vals: Vec<Vec<f64>>,
}

impl Row {
    fn new(name: String, higher_better: bool, n: usize) -> Row {
        Row {
            name,
            higher_better,
            derived: false,
            vals: vec![Vec::new(); n],
        }
    }

    fn median(&self, i: usize) -> Option<f64> {
        let v: Vec<f64> = self.vals[i]
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        (!v.is_empty()).then(|| sys::median(&v))
    }
}

fn fmt(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(x) if x >= 1000.0 => format!("{x:.0}"),
        Some(x) if x >= 100.0 => format!("{x:.1}"),
        Some(x) if x >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

/// Prepares an installation: the benchmark's control files (saved for restoring), the
/// bench user's maildir through users/cdb, an empty queue, and a check that its
/// qmail-queue writes into this home.
fn prepare(inst: &mut Inst, cfg: &Cfg) -> io::Result<()> {
    let q = inst.queue();
    if inst::send_running(&q) {
        return Err(io::Error::other(format!(
            "{}: a qmail-send is running on this queue; stop it first",
            inst.home.display()
        )));
    }
    if !inst.rqmail && (inst::messages(&q) > 0 || inst::count(&q, "todo") > 0) {
        return Err(io::Error::other(format!(
            "{}: the queue is not empty; the benchmark needs an empty queue (it fills and empties it)",
            inst.home.display()
        )));
    }
    inst::empty(&q)?;
    if inst::split(&q) == 0 {
        return Err(io::Error::other(format!(
            "{}: no queue",
            inst.home.display()
        )));
    }
    inst.set_control("me", Some("bench.example\n"))?;
    inst.set_control("rcpthosts", Some("bench.example\n"))?;
    inst.set_control("locals", Some("bench.example\n"))?;
    for name in [
        "virtualdomains",
        "smtproutes",
        "concurrencyremote",
        "concurrencylocal",
    ] {
        inst.set_control(name, None)?;
    }
    // The bench user: users/cdb sends bench@bench.example to a maildir of its own,
    // delivered as the alias user.
    let (uid, gid) = sys::user_ids("alias")?;
    let home = measure::maildir_home(inst, cfg);
    for d in ["", "Maildir", "Maildir/tmp", "Maildir/new", "Maildir/cur"] {
        let p = if d.is_empty() {
            home.clone()
        } else {
            home.join(d)
        };
        fs::create_dir_all(&p)?;
        std::os::unix::fs::chown(&p, Some(uid), Some(gid))?;
        fs::set_permissions(
            &p,
            fs::Permissions::from_mode(if d.is_empty() { 0o755 } else { 0o700 }),
        )?;
    }
    inst.save("users/assign");
    inst.save("users/cdb");
    fs::write(
        inst.home.join("users/assign"),
        format!("=bench:alias:{uid}:{gid}:{}:::\n.\n", home.display()),
    )?;
    sys::output(
        inst.cmd("qmail-newu"),
        &format!("{} qmail-newu", inst.label),
    )?;
    // Does this qmail-queue write into this home? (A setuid one uses its compiled-in home.)
    let ok = inst.inject(
        &inst::message(cfg.size, inst::LOCAL_RCPT),
        &inst::envelope(inst::LOCAL_RCPT),
    )?;
    let landed = inst::count(&q, "todo");
    inst::empty(&q)?;
    if !ok || landed != 1 {
        return Err(io::Error::other(format!(
            "{}: a message handed to {} did not land in {} (exit ok: {ok}); its compiled-in \
             home must be this directory (bench/run builds rqmail with RQMAIL_HOME set to it)",
            inst.label,
            inst.bin("qmail-queue").display(),
            q.display()
        )));
    }
    Ok(())
}

fn machine() -> Vec<String> {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|k| format!("{} MiB", k / 1024))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    vec![
        format!("date: {date}"),
        format!("host: {}", read("/proc/sys/kernel/hostname").trim()),
        format!(
            "kernel: Linux {}",
            read("/proc/sys/kernel/osrelease").trim()
        ),
        format!("cpu: {cpu}, {cores} cores; memory {mem}"),
        format!(
            "load average at the start: {}",
            read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ]
}

/// The file system holding `p` (device, type, options), from /proc/mounts.
fn filesystem(p: &Path) -> String {
    let p = fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 || !p.starts_with(f[1]) {
            continue;
        }
        if best.as_ref().is_none_or(|(n, _)| f[1].len() >= *n) {
            best = Some((
                f[1].len(),
                format!("{} on {} ({}, {})", f[0], f[1], f[2], f[3]),
            ));
        }
    }
    best.map(|b| b.1).unwrap_or_default()
}

fn run(o: Opts) -> io::Result<()> {
    let header = machine();
    let cfg = o.cfg.clone();
    fs::create_dir_all(&cfg.work)?;
    // The qmail-send logs of the previous run.
    for e in fs::read_dir(&cfg.work)?.flatten() {
        if e.file_name().to_string_lossy().ends_with(".log") {
            fs::remove_file(e.path())?;
        }
    }
    // Enough descriptors for the slow MX (smtp-sink and qmail-rspawn hold one or more per
    // session) and for the idle sessions (the driver holds one per client).
    let want_fds = (o.slow_concurrency as u64 * 4).max(o.idle_sessions as u64 * 2) + 1024;
    let fds = sys::raise_nofile(want_fds);
    if fds < want_fds {
        eprintln!("bench: warning: descriptor limit {fds}, wanted {want_fds}");
    }
    let mut insts = vec![Inst::new("rqmail", o.rqmail.clone(), true)];
    if let Some(other) = &o.other {
        insts.push(Inst::new("other", other.clone(), false));
    }
    for i in insts.iter_mut() {
        prepare(i, &cfg)?;
    }
    let n = insts.len();
    let want = |m: &str| o.only.iter().any(|x| x == m);
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let order = |round: usize| -> Vec<usize> {
        if round.is_multiple_of(2) {
            (0..n).collect()
        } else {
            (0..n).rev().collect()
        }
    };
    let progress = |name: &str, label: &str, v: &io::Result<f64>| match v {
        Ok(x) => eprintln!("bench: {name}: {label} {}", fmt(Some(*x))),
        Err(e) => eprintln!("bench: {name}: {label} failed: {e}"),
    };
    // Runs `f` for every installation in every round, alternating the order.
    let measure = |rows: &mut Vec<Row>,
                   notes: &mut Vec<String>,
                   insts: &mut Vec<Inst>,
                   name: String,
                   higher: bool,
                   f: &mut dyn FnMut(&mut Inst) -> io::Result<f64>| {
        let mut row = Row::new(name.clone(), higher, n);
        for r in 0..o.rounds {
            for i in order(r) {
                let v = f(&mut insts[i]);
                progress(&name, &insts[i].label, &v);
                match v {
                    Ok(x) => row.vals[i].push(x),
                    Err(e) => {
                        let note = format!("{name}, {}: {e}", insts[i].label);
                        if !notes.contains(&note) {
                            notes.push(note);
                        }
                        row.vals[i].push(f64::NAN);
                    }
                }
            }
        }
        rows.push(row);
    };

    if want("fsync") || want("inject") {
        for w in [1usize, 4] {
            let fs_row = rows.len();
            measure(
                &mut rows,
                &mut notes,
                &mut insts,
                format!("fsync bound in queue/, {w} writer(s) (fsyncs/s)"),
                true,
                &mut |i| measure::fsync_bound(&i.queue().join("pid"), w, &cfg),
            );
            if want("inject") {
                let mut steps_rows = Vec::new();
                for (steps, what) in [
                    (
                        measure::Steps::DirFsyncs,
                        "with directory fsyncs (rqmail's)",
                    ),
                    (
                        measure::Steps::NoDirFsyncs,
                        "without directory fsyncs (netqmail's)",
                    ),
                    (
                        measure::Steps::Overlapped,
                        "with directory fsyncs, overlapped (proposal)",
                    ),
                ] {
                    steps_rows.push(rows.len());
                    measure(
                        &mut rows,
                        &mut notes,
                        &mut insts,
                        format!(
                            "  qmail-queue's durable steps in-process {what}, {w} writer(s) (msgs/s)"
                        ),
                        true,
                        &mut |i| measure::steps_bound(&i.queue(), w, steps, &cfg),
                    );
                }
                let inj_row = rows.len();
                measure(
                    &mut rows,
                    &mut notes,
                    &mut insts,
                    format!("qmail-queue injections/s, {w} writer(s)"),
                    true,
                    &mut |i| measure::injections(i, w, &cfg),
                );
                for (bound, what) in [
                    (fs_row, "the fsync bound"),
                    (steps_rows[0], "rqmail's durable steps"),
                    (steps_rows[1], "netqmail's durable steps"),
                ] {
                    let mut share = Row::new(format!("  share of {what}, {w} writer(s)"), true, n);
                    share.derived = true;
                    for i in 0..n {
                        if let (Some(a), Some(b)) = (rows[inj_row].median(i), rows[bound].median(i))
                        {
                            share.vals[i].push(a / b);
                        }
                    }
                    rows.push(share);
                }
            }
        }
    }
    if want("fsynccount") {
        let mut dir_row = Row::new("  of them directory fsyncs".into(), false, n);
        dir_row.derived = true;
        let mut row = Row::new("fsync calls per injected message (strace)".into(), false, n);
        for (i, inst) in insts.iter().enumerate() {
            match measure::fsyncs_per_message(inst, 20, &cfg) {
                Ok((all, dirs)) => {
                    eprintln!(
                        "bench: fsyncs per message: {} {all} ({dirs} directories)",
                        inst.label
                    );
                    row.vals[i].push(all);
                    dir_row.vals[i].push(dirs);
                }
                Err(e) => notes.push(format!("fsync count, {}: {e}", inst.label)),
            }
        }
        rows.push(row);
        rows.push(dir_row);
    }
    if want("prep") {
        for (how, what) in [
            (
                measure::Prep::Rqmail,
                "four fsyncs per message (rqmail's qmail-send)",
            ),
            (
                measure::Prep::Netqmail,
                "two file fsyncs per message (netqmail's)",
            ),
            (
                measure::Prep::Batch(64),
                "64 messages, then their file fsyncs, then each directory once (proposal)",
            ),
            (
                measure::Prep::Parallel(64, 8),
                "64 messages, then the same fsyncs from 8 threads at once (proposal)",
            ),
            (
                measure::Prep::Syncfs(64),
                "64 messages, then one syncfs (proposal)",
            ),
        ] {
            measure(
                &mut rows,
                &mut notes,
                &mut insts,
                format!("todo preprocessing's file steps in-process, {what} (msgs/s)"),
                true,
                &mut |i| measure::preprocess_bound(&i.queue(), how, &cfg),
            );
        }
    }
    if want("smtp") {
        for &c in &o.clients {
            measure(
                &mut rows,
                &mut notes,
                &mut insts,
                format!("SMTP messages accepted/s via tcpserver, {c} clients"),
                true,
                &mut |i| measure::smtp(i, c, false, &cfg),
            );
            measure(
                &mut rows,
                &mut notes,
                &mut insts,
                format!(
                    "SMTP messages accepted/s via rqmail's qmail-smtpd-server (other: tcpserver), {c} clients"
                ),
                true,
                &mut |i| measure::smtp(i, c, true, &cfg),
            );
        }
    }
    if want("local") {
        measure(
            &mut rows,
            &mut notes,
            &mut insts,
            "local deliveries/s to Maildir".into(),
            true,
            &mut |i| measure::local(i, &cfg),
        );
    }
    if want("remote") {
        let have = insts.iter().all(|i| i.bin("qmail-remote").exists());
        if have {
            for &c in &o.concurrency {
                let mut failures = vec![0u64; n];
                measure(
                    &mut rows,
                    &mut notes,
                    &mut insts,
                    format!("remote deliveries/s to smtp-sink, concurrencyremote {c}"),
                    true,
                    &mut |i| {
                        let (rate, bad) = measure::remote(i, c, &cfg)?;
                        let k = usize::from(i.label != "rqmail");
                        failures[k] += bad;
                        Ok(rate)
                    },
                );
                for (k, f) in failures.iter().enumerate() {
                    if *f > 0 {
                        notes.push(format!(
                            "remote deliveries at {c}, {}: {f} deliveries not logged as successful",
                            insts[k].label
                        ));
                    }
                }
            }
        } else {
            notes.push("remote deliveries: skipped, qmail-remote is not installed".into());
        }
    }
    if want("slowmx") {
        if insts.iter().all(|i| i.bin("qmail-remote").exists()) {
            let (c, m, w) = (o.slow_concurrency, o.slow_messages, o.slow_delay);
            let mut peak = Row::new(
                "  most SMTP sessions open at once (sampled)".into(),
                true,
                n,
            );
            peak.derived = true;
            let mut failures = vec![0u64; n];
            let mut cpu_rows: Vec<Row> =
                ["qmail-send", "qmail-rspawn", "qmail-remote", "qmail-clean"]
                    .iter()
                    .map(|d| Row::new(format!("  CPU per message (ms): {d}"), false, n))
                    .collect();
            measure(
                &mut rows,
                &mut notes,
                &mut insts,
                format!(
                    "remote deliveries/s to a slow MX (smtp-sink -w {w}), {m} messages, concurrencyremote {c}"
                ),
                true,
                &mut |i| {
                    let r = load::slow_mx(i, c, m, w, &cfg)?;
                    let k = usize::from(i.label != "rqmail");
                    for (row, d) in cpu_rows.iter_mut().zip([
                        "qmail-send",
                        "qmail-rspawn",
                        "qmail-remote",
                        "qmail-clean",
                    ]) {
                        row.vals[k].push(load::cpu_ms(&r.cpu, d, m));
                    }
                    peak.vals[k].push(r.peak_sessions);
                    failures[k] += r.failed;
                    Ok(r.rate)
                },
            );
            rows.push(peak);
            rows.extend(cpu_rows);
            for (k, f) in failures.iter().enumerate() {
                if *f > 0 {
                    notes.push(format!(
                        "slow MX, {}: {f} deliveries not logged as successful",
                        insts[k].label
                    ));
                }
            }
            if n == 2 {
                notes.push(format!(
                    "slow MX: concurrencyremote is {c} in both control files; netqmail's qmail-send lowers it to its conf-spawn (at most 255)"
                ));
            }
        } else {
            notes.push("slow MX: skipped, qmail-remote is not installed".into());
        }
    }
    if want("flood") {
        let (m, w) = (o.flood_messages, o.flood_writers);
        let mut extra: Vec<Row> = [
            ("  largest todo/ backlog (messages)", false),
            ("  median todo/ backlog while injecting (messages)", false),
            ("  largest backlog in seconds of injection", false),
            ("  drain: last injection to last delivery (s)", false),
            ("  first injection to last delivery (s)", false),
            ("  CPU per message (ms): qmail-queue", false),
            ("  CPU per message (ms): qmail-send", false),
            ("  CPU per message (ms): qmail-lspawn", false),
            ("  CPU per message (ms): qmail-local", false),
            ("  CPU per message (ms): qmail-clean", false),
        ]
        .into_iter()
        .map(|(name, hb)| Row::new(name.into(), hb, n))
        .collect();
        measure(
            &mut rows,
            &mut notes,
            &mut insts,
            format!("injecting while delivering: {m} local messages, {w} writers, injections/s"),
            true,
            &mut |i| {
                let f = load::flood(i, w, m, &cfg)?;
                let k = usize::from(i.label != "rqmail");
                for (row, v) in extra.iter_mut().zip([
                    f.max_todo,
                    f.median_todo,
                    f.max_todo / f.inject_rate,
                    f.drain,
                    f.total,
                    load::cpu_ms(&f.cpu, "qmail-queue", m),
                    load::cpu_ms(&f.cpu, "qmail-send", m),
                    load::cpu_ms(&f.cpu, "qmail-lspawn", m),
                    load::cpu_ms(&f.cpu, "qmail-local", m),
                    load::cpu_ms(&f.cpu, "qmail-clean", m),
                ]) {
                    row.vals[k].push(v);
                }
                Ok(f.inject_rate)
            },
        );
        rows.extend(extra);
        notes.push(format!(
            "injecting while delivering: the backlog over time is in {}/LABEL-flood.N.tsv",
            cfg.work.display()
        ));
    }
    if want("session") {
        let mut rss = Row::new(
            "peak RSS of one qmail-smtpd session (kB, VmHWM)".into(),
            false,
            n,
        );
        let mut rss_vals: Vec<Vec<f64>> = vec![Vec::new(); n];
        measure(
            &mut rows,
            &mut notes,
            &mut insts,
            "exec-to-banner latency of qmail-smtpd (ms)".into(),
            false,
            &mut |i| {
                let (ms, kb) = measure::session(i, &cfg)?;
                let k = usize::from(i.label != "rqmail");
                rss_vals[k].push(kb);
                Ok(ms)
            },
        );
        rss.vals = rss_vals;
        rows.push(rss);
    }
    if want("startcost") {
        let runs = o.startcost_runs;
        for (prog, what) in startcost::PROGRAMS {
            let mut faults = Row::new("  minor page faults per run".into(), false, n);
            faults.derived = true;
            measure(
                &mut rows,
                &mut notes,
                &mut insts,
                format!("CPU per run (ms): {what}"),
                false,
                &mut |i| {
                    let (ms, f) = startcost::program(i, prog, runs, &cfg)?;
                    faults.vals[usize::from(i.label != "rqmail")].push(f);
                    Ok(ms)
                },
            );
            rows.push(faults);
        }
    }
    if want("idle") {
        let k = o.idle_sessions;
        for (server, front) in [
            (false, "under tcpserver"),
            (true, "under rqmail's qmail-smtpd-server (other: tcpserver)"),
        ] {
            let mut hwm = Row::new("  median VmHWM of an idle session (kB)".into(), false, n);
            measure(
                &mut rows,
                &mut notes,
                &mut insts,
                format!("{k} idle qmail-smtpd sessions {front}: sum of PSS and page tables (MB)"),
                false,
                &mut |i| {
                    let (kb, h) = load::idle_sessions(i, k, server, &cfg)?;
                    hwm.vals[usize::from(i.label != "rqmail")].push(h);
                    Ok(kb / 1024.0)
                },
            );
            rows.push(hwm);
        }
    }
    let mut tls_rows: Vec<tls::KeyRates> = Vec::new();
    if want("tls") {
        match tls::compare(&insts[0], o.tls_seconds, o.rounds, &cfg) {
            Ok(r) => tls_rows = r,
            Err(e) => notes.push(format!("TLS sessions: {e}")),
        }
    }
    if want("qtools") {
        let qs = cfg.queue_size;
        for inst in &insts {
            eprintln!("bench: filling {} queue with {qs} messages", inst.label);
            if let Err(e) = inst::fill(&inst.queue(), qs, 1_000_000) {
                notes.push(format!("queue fill, {}: {e}", inst.label));
            }
            // Warm the cache as the timed runs will find it.
            let _ = measure::time_tool(inst, "qmail-qstat");
            let _ = measure::time_tool(inst, "qmail-qread");
        }
        for prog in ["qmail-qstat", "qmail-qread"] {
            measure(
                &mut rows,
                &mut notes,
                &mut insts,
                format!("{prog} with {qs} messages queued (s)"),
                false,
                &mut |i| measure::time_tool(i, prog),
            );
        }
        for inst in &insts {
            eprintln!("bench: emptying {} queue", inst.label);
            if let Err(e) = inst::empty(&inst.queue()) {
                notes.push(format!("emptying {}: {e}", inst.label));
            }
        }
    }

    // The table.
    println!("rqmail benchmark");
    println!();
    for l in header {
        println!("    {l}");
    }
    for inst in &insts {
        println!(
            "    {}: {} ({})",
            inst.label,
            inst.home.display(),
            filesystem(&inst.home)
        );
    }
    println!(
        "    {} round(s), installations alternated; medians; {} s per throughput run, {} messages of {} bytes per delivery run",
        o.rounds, cfg.seconds, cfg.messages, cfg.size
    );
    println!();
    if n == 2 {
        println!("| measurement | rqmail | other | rqmail advantage (x, >1 is better) |");
        println!("|---|---:|---:|---:|");
    } else {
        println!("| measurement | rqmail |");
        println!("|---|---:|");
    }
    for r in &rows {
        let a = r.median(0);
        if n == 2 {
            let b = r.median(1);
            let ratio = match (a, b, r.derived) {
                (Some(a), Some(b), false) if a > 0.0 && b > 0.0 => {
                    fmt(Some(if r.higher_better { a / b } else { b / a }))
                }
                _ => String::new(),
            };
            println!("| {} | {} | {} | {ratio} |", r.name, fmt(a), fmt(b));
        } else {
            println!("| {} | {} |", r.name, fmt(a));
        }
    }
    if !tls_rows.is_empty() {
        println!();
        println!(
            "New TLS sessions per second from one client (openssl s_time -new, {} s, median of {} round(s)): rqmail's qmail-smtpd with SMTPS=1 under tcpserver and under its own qmail-smtpd-server, Postfix's smtpd with smtpd_tls_wrappermode=yes, same key and certificate",
            o.tls_seconds, o.rounds
        );
        println!();
        println!(
            "| key | rqmail, tcpserver | rqmail, qmail-smtpd-server | Postfix | advantage, tcpserver (x, >1 is better) | advantage, qmail-smtpd-server |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for (key, a, s, b) in &tls_rows {
            let med = |v: &Vec<f64>| (!v.is_empty()).then(|| sys::median(v));
            let (ma, ms, mb) = (med(a), med(s), med(b));
            let ratio = |x: Option<f64>| match (x, mb) {
                (Some(x), Some(y)) if y > 0.0 => fmt(Some(x / y)),
                _ => String::new(),
            };
            println!(
                "| {key} | {} | {} | {} | {} | {} |",
                fmt(ma),
                fmt(ms),
                fmt(mb),
                ratio(ma),
                ratio(ms)
            );
        }
    }
    if !notes.is_empty() {
        println!();
        println!("Notes:");
        for n in &notes {
            println!("- {n}");
        }
    }
    for i in insts.iter_mut() {
        i.restore_all();
    }
    Ok(())
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("rqmail-bench: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(100);
        }
    };
    if sys::euid() != 0 {
        eprintln!("rqmail-bench: run it as root (the qmail programs run under their qmail ids)");
        std::process::exit(100);
    }
    if let Err(e) = run(o) {
        eprintln!("rqmail-bench: fatal: {e}");
        std::process::exit(111);
    }
}
