//! The power-loss test behind `rqmail-powerloss` (rqmail-powerloss(8)).
//!
//! kill -9 (rqmail-crashtest) leaves the kernel's page cache alone, so it cannot tell
//! whether an fsync is missing. Here the queue and the Maildir are on LazyFS, a FUSE
//! file system that keeps written data in a cache of its own until it is fsynced and
//! loses it when it crashes. For each case the harness:
//!
//! 1. mounts fresh data (a copy of the idle queue, an empty Maildir) with LazyFS at
//!    `HOME/queue` and `HOME/alias/Maildir`, and starts qmail-smtpd under tcpserver and
//!    qmail-start;
//! 2. sends mail through SMTP, qmail-inject and qmail-queue for a warm-up time, noting
//!    what each client saw (250 after DATA, exit 0);
//! 3. cuts the power: arms a fault point (LazyFS crashes itself at the next matching
//!    operation: a create, write, fsync, link or unlink of one step of qmail-queue's,
//!    qmail-send's or qmail-local's sequence, before or after it), or kills both LazyFS
//!    processes at once (`power`), or stops the mail system and drops LazyFS's cache
//!    (`clear`); the mail system is killed with it;
//! 4. with the fsyncdir patch of LazyFS, undoes the directory entries no directory fsync
//!    made durable ([`journal`]);
//! 5. mounts the data again, starts qmail-send, wakes it (ALRM) until it has delivered
//!    everything it can, and checks ([`verdict`]) that every message whose acceptance a
//!    client saw, and every message whose delivery qmail-send logged as successful before
//!    the crash, is whole in the Maildir.

pub mod journal;
pub mod lazyfs;
pub mod load;
pub mod plan;
pub mod system;
pub mod verdict;

use journal::Model;
use lazyfs::Build;
use load::{Load, Senders};
use plan::{Case, Fault};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use system::{Flavor, System};
use verdict::{LogFacts, Verdict, Via};

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    pub lazyfs: PathBuf,
    pub flavor: Flavor,
    pub faults: Option<Vec<Fault>>,
    pub repeat: usize,
    pub model: Option<Model>,
    pub seed: u64,
    pub warmup_ms: (u64, u64),
    pub senders: Senders,
    /// How long an armed fault may wait for its operation.
    pub fire_limit: Duration,
    /// Longest drain after the restart.
    pub drain: Duration,
    /// Most messages a case sends.
    pub max_messages: usize,
    pub keep: bool,
}

const USAGE: &str = "usage: rqmail-powerloss -L lazyfs-dir [-b bindir | -n qmail-home] [-f faults] [-r repeat] [-m none|posix|ordered] [-s seed] [-w min-ms,max-ms] [-c smtp] [-i inject] [-q queue] [-x mbox-one-in] [-p pop3] [-M max-messages] [-t fire-seconds] [-d drain-seconds] [-K]\n       rqmail-powerloss -l";

enum Parsed {
    Run(Config),
    List,
}

fn parse() -> Result<Parsed, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let exe = std::env::current_exe().map_err(|e| lexopt::Error::Custom(Box::new(e)))?;
    let mut lazyfs = None;
    let mut bindir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let mut nq = None;
    let mut c = Config {
        lazyfs: PathBuf::new(),
        flavor: Flavor::Rqmail(PathBuf::new()),
        faults: None,
        repeat: 1,
        model: None,
        seed: crate::seed_from_clock(),
        warmup_ms: (300, 2500),
        senders: Senders {
            smtp: 3,
            inject: 1,
            queue: 2,
            mbox_one_in: 8,
            pop3: 1,
        },
        fire_limit: Duration::from_secs(15),
        drain: Duration::from_secs(90),
        max_messages: 2000,
        keep: false,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Short('l') => return Ok(Parsed::List),
            Short('L') => lazyfs = Some(PathBuf::from(p.value()?)),
            Short('b') => bindir = PathBuf::from(p.value()?),
            Short('n') => nq = Some(PathBuf::from(p.value()?)),
            Short('f') => {
                c.faults =
                    Some(plan::parse_faults(&p.value()?.string()?).map_err(lexopt::Error::from)?);
            }
            Short('r') => c.repeat = p.value()?.parse()?,
            Short('m') => c.model = Some(Model::parse(&p.value()?.string()?)?),
            Short('s') => c.seed = p.value()?.parse()?,
            Short('w') => {
                let v = p.value()?.string()?;
                let (a, b) = v.split_once(',').unwrap_or((&v, &v));
                let a: u64 = a.parse().map_err(|_| "-w takes MIN-MS,MAX-MS")?;
                let b: u64 = b.parse().map_err(|_| "-w takes MIN-MS,MAX-MS")?;
                c.warmup_ms = (a.min(b), a.max(b));
            }
            Short('c') => c.senders.smtp = p.value()?.parse()?,
            Short('i') => c.senders.inject = p.value()?.parse()?,
            Short('q') => c.senders.queue = p.value()?.parse()?,
            Short('x') => c.senders.mbox_one_in = p.value()?.parse()?,
            Short('p') => c.senders.pop3 = p.value()?.parse()?,
            Short('t') => c.fire_limit = Duration::from_secs(p.value()?.parse()?),
            Short('d') => c.drain = Duration::from_secs(p.value()?.parse()?),
            Short('M') => c.max_messages = p.value()?.parse()?,
            Short('K') => c.keep = true,
            _ => return Err(arg.unexpected()),
        }
    }
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    c.lazyfs = absolute(lazyfs.ok_or("-L LAZYFS-DIR is required")?);
    c.flavor = match nq {
        Some(h) => Flavor::Netqmail(absolute(h)),
        None => Flavor::Rqmail(absolute(bindir)),
    };
    if c.senders.smtp + c.senders.inject + c.senders.queue == 0 {
        return Err("at least one sender is needed".into());
    }
    Ok(Parsed::Run(c))
}

/// The program: 0 when nothing was lost, 1 when something was, 100 for a usage error,
/// 111 when the test could not run.
pub fn main() -> i32 {
    let cfg = match parse() {
        Ok(Parsed::Run(c)) => c,
        Ok(Parsed::List) => {
            print!("{}", plan::describe());
            return 0;
        }
        Err(e) => {
            eprintln!("rqmail-powerloss: {e}\n{USAGE}");
            return 100;
        }
    };
    match run(&cfg) {
        Ok(r) => {
            if r.ok() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("rqmail-powerloss: {e}");
            111
        }
    }
}

/// Whether `p` is a mount point (in /proc/self/mountinfo).
pub fn mounted(p: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

/// How a case's fault went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// LazyFS crashed at the fault point this long after it was armed.
    At(Duration),
    /// No matching operation came within the limit: the power was cut then.
    NotReached,
    /// The harness cut the power (power, clear).
    Cut,
}

/// What one case saw.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub case: Case,
    pub fired: Fired,
    /// Directory entries undone (the journal), one line each.
    pub undone: Vec<String>,
    /// For `clear` and `checkpoint`: what was waited for before LazyFS was told, per
    /// disk (processes still on it, requests unanswered, time).
    pub idle: Vec<String>,
    pub verdict: Verdict,
    /// The drain ran out of time with accepted mail still missing and the queue busy.
    pub timed_out: bool,
    pub drained_in: Duration,
    pub error: Option<String>,
    pub dir: PathBuf,
}

impl CaseReport {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.verdict.ok()
    }

    pub fn line(&self) -> String {
        let v = &self.verdict;
        let acc: usize = v.accepted.values().sum();
        let by: Vec<String> = [Via::Smtp, Via::Inject, Via::Queue]
            .iter()
            .map(|w| format!("{} {}", w.name(), v.accepted.get(w).copied().unwrap_or(0)))
            .collect();
        let fired = match self.fired {
            Fired::At(d) => format!("fired after {:.1} s", d.as_secs_f64()),
            Fired::NotReached => "NOT REACHED (power cut)".into(),
            Fired::Cut => "cut".into(),
        };
        let mut t = format!(
            "case {} {}: {fired}; sent {} accepted {acc} ({}); logged before the crash {} deliveries, {} failures; entries undone {}; lost {}; bounced as expected {}; not acknowledged but delivered {}; duplicates {}; stray bounces {}; drain {:.1} s{}",
            self.case.number,
            self.case.fault,
            v.sent,
            by.join(", "),
            v.delivered_before,
            v.failed_before,
            self.undone.len(),
            v.lost.len(),
            v.bounced,
            v.unacknowledged,
            v.duplicates,
            v.stray_bounces,
            self.drained_in.as_secs_f64(),
            if self.timed_out { " (timed out)" } else { "" },
        );
        if v.unreadable > 0 {
            let _ = write!(t, "; unreadable files {}", v.unreadable);
        }
        if !self.idle.is_empty() {
            let _ = write!(t, "; idle before the fault: {}", self.idle.join(", "));
        }
        if let Some(e) = &self.error {
            let _ = write!(t, "; ERROR {e}");
        }
        for l in v.lost.iter().take(10) {
            let _ = write!(t, "\n  LOST {}", l.text());
        }
        if v.lost.len() > 10 {
            let _ = write!(
                t,
                "\n  ... and {} more (all in {})",
                v.lost.len() - 10,
                self.dir.join("lost").display()
            );
        }
        if !self.ok() || self.timed_out {
            let _ = write!(t, "\n  kept: {}", self.dir.display());
        }
        t
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub cases: Vec<CaseReport>,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.cases.iter().all(CaseReport::ok)
    }

    /// Totals by fault, and overall.
    pub fn summary(&self) -> String {
        #[derive(Default)]
        struct Row {
            cases: usize,
            not_reached: usize,
            sent: usize,
            accepted: usize,
            delivered: usize,
            failed: usize,
            undone: usize,
            bounced: usize,
            lost: usize,
            errors: usize,
        }
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        let mut total = Row::default();
        for c in &self.cases {
            for r in [
                rows.entry(c.case.fault.to_string()).or_default(),
                &mut total,
            ] {
                r.cases += 1;
                r.not_reached += usize::from(c.fired == Fired::NotReached);
                r.sent += c.verdict.sent;
                r.accepted += c.verdict.accepted.values().sum::<usize>();
                r.delivered += c.verdict.delivered_before;
                r.failed += c.verdict.failed_before;
                r.undone += c.undone.len();
                r.bounced += c.verdict.bounced;
                r.lost += c.verdict.lost.len();
                r.errors += usize::from(c.error.is_some());
            }
        }
        let mut t = String::from(
            "fault                        cases unreached   sent accepted delivered failed undone bounced  lost errors\n",
        );
        let mut put = |name: &str, r: &Row| {
            let _ = writeln!(
                t,
                "{name:<28} {:>5} {:>9} {:>6} {:>8} {:>9} {:>6} {:>6} {:>7} {:>5} {:>6}",
                r.cases,
                r.not_reached,
                r.sent,
                r.accepted,
                r.delivered,
                r.failed,
                r.undone,
                r.bounced,
                r.lost,
                r.errors
            );
        };
        for (k, r) in &rows {
            put(k, r);
        }
        put("total", &total);
        t
    }
}

/// Runs every case; prints one line per case as it ends, then the summary.
pub fn run(cfg: &Config) -> Result<RunReport, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root (it mounts LazyFS)".into());
    }
    let build = Build::locate(&cfg.lazyfs)?;
    let tmp = tempfile::Builder::new()
        .prefix("rqmail-powerloss.")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let work = tmp.path().to_path_buf();
    fs::set_permissions(&work, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let nobody = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
        .ok_or("no user nobody")?;
    let patched = lazyfs::has_fsyncdir_patch(&build, &work, nobody)?;
    let model = match cfg.model {
        Some(m) if m != Model::None && !patched => {
            return Err(format!(
                "-m {} needs a LazyFS with the fsyncdir patch (reliability/lazyfs/); {} has not",
                m.name(),
                build.program.display()
            ));
        }
        Some(m) => m,
        None if patched => Model::Posix,
        None => Model::None,
    };
    let mut faults = cfg.faults.clone().unwrap_or_else(plan::all_faults);
    if !patched {
        let before = faults.len();
        faults.retain(|f| !f.needs_fsyncdir());
        if faults.len() < before {
            println!(
                "rqmail-powerloss: this LazyFS has no fsyncdir: the {} directory-fsync faults are left out",
                before - faults.len()
            );
        }
        if faults.is_empty() {
            return Err("no fault left to inject".into());
        }
    }
    let cases = plan::cases(
        &faults,
        cfg.repeat.max(1),
        cfg.seed,
        cfg.warmup_ms.0,
        cfg.warmup_ms.1,
    );
    println!(
        "rqmail-powerloss: {} {}; LazyFS {} ({}); directory model {}; seed {}; {} cases; work directory {}",
        cfg.flavor.name(),
        match &cfg.flavor {
            Flavor::Rqmail(b) => format!("programs from {}", b.display()),
            Flavor::Netqmail(h) => format!("home {}", h.display()),
        },
        build.program.display(),
        if patched {
            "with the fsyncdir patch"
        } else {
            "stock"
        },
        model.name(),
        cfg.seed,
        cases.len(),
        work.display()
    );
    let sys = Arc::new(System::setup(&cfg.flavor, &work)?);
    let mut reports = Vec::new();
    for case in &cases {
        let dir = work.join(format!("case-{}", case.number));
        let r = run_case(cfg, &sys, &build, case, &dir, patched, model);
        println!("{}", r.line());
        let _ = std::io::stdout().flush();
        // A case whose queue did not empty in time is kept too, to be looked at (what
        // had to arrive did; see the verdict).
        if r.ok() && !r.timed_out && !cfg.keep {
            let _ = fs::remove_dir_all(&dir);
        }
        reports.push(r);
    }
    let report = RunReport { cases: reports };
    print!("{}", report.summary());
    let keep = cfg.keep || !report.ok() || report.cases.iter().any(|c| c.timed_out);
    sys.cleanup();
    if keep {
        let _ = tmp.keep();
        println!("work directory kept: {}", work.display());
    }
    println!("RESULT: {}", if report.ok() { "PASS" } else { "FAIL" });
    Ok(report)
}

fn run_case(
    cfg: &Config,
    sys: &Arc<System>,
    build: &Build,
    case: &Case,
    dir: &Path,
    journal: bool,
    model: Model,
) -> CaseReport {
    let mut r = CaseReport {
        case: case.clone(),
        fired: Fired::Cut,
        undone: Vec::new(),
        idle: Vec::new(),
        verdict: Verdict::default(),
        timed_out: false,
        drained_in: Duration::ZERO,
        error: None,
        dir: dir.to_path_buf(),
    };
    if let Err(e) = case_steps(cfg, sys, build, case, dir, journal, model, &mut r) {
        r.error = Some(e);
    }
    if let Err(e) = sys.kill_all() {
        r.error.get_or_insert(e);
    }
    r
}

/// Files below `dir` (recursively).
/// The files below `dir` that qmail-send still has to handle: not the `.fuse_hiddenNNN`
/// files libfuse leaves behind (a file removed while open is renamed so until it is
/// closed; when LazyFS dies first, the name stays), which qmail-send never reads.
fn count_files(dir: &Path) -> usize {
    let mut v = Vec::new();
    rqmail_tests::walk(dir, &mut v);
    v.iter().filter(|p| !is_fuse_hidden(p)).count()
}

fn is_fuse_hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".fuse_hidden"))
}

/// Waits `d`, checking that both LazyFS processes stay up.
fn watch(disks: &mut system::Disks, d: Duration) -> Result<(), String> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        alive(disks)?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn alive(disks: &mut system::Disks) -> Result<(), String> {
    for (name, l) in [("queue", &mut disks.queue), ("Maildir", &mut disks.maildir)] {
        if l.exited() {
            return Err(format!(
                "the {name}'s LazyFS ended on its own (see {})",
                l.dir.join("lazyfs.out").display()
            ));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn case_steps(
    cfg: &Config,
    sys: &Arc<System>,
    build: &Build,
    case: &Case,
    dir: &Path,
    journal: bool,
    model: Model,
    r: &mut CaseReport,
) -> Result<(), String> {
    let (lq, lm) = sys.case_data(dir)?;
    let send_log = dir.join("send.log");
    let mut disks = sys.mount(build, dir, 1, journal)?;
    let (mut tcpserver, port) = sys.start_smtpd(&dir.join("smtpd.log"))?;
    let mut send = match sys.start_send(&send_log) {
        Ok(s) => s,
        Err(e) => {
            let _ = tcpserver.kill();
            let _ = tcpserver.wait();
            return Err(e);
        }
    };
    let load = Load::start(
        sys,
        port,
        case.number,
        cfg.seed,
        cfg.senders,
        cfg.max_messages,
    );
    let warm = watch(&mut disks, Duration::from_millis(case.warmup_ms));

    // The fault.
    let mut fault = warm;
    if fault.is_ok()
        && let Some((disk, cmd)) = case.fault.command()
    {
        fault = (|| {
            let armed = Instant::now();
            disks.get(disk).command(&cmd)?;
            loop {
                if disks.get_mut(disk).exited() {
                    if !disks.get(disk).fired() {
                        return Err(format!(
                            "LazyFS ended without firing the fault (see {})",
                            disks.get(disk).dir.join("lazyfs.out").display()
                        ));
                    }
                    r.fired = Fired::At(armed.elapsed());
                    break;
                }
                if armed.elapsed() > cfg.fire_limit {
                    r.fired = Fired::NotReached;
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            // The other disk was up until now.
            let (other, name) = match disk {
                plan::Disk::Queue => (&mut disks.maildir, "Maildir"),
                plan::Disk::Maildir => (&mut disks.queue, "queue"),
            };
            if other.exited() {
                return Err(format!(
                    "the {name}'s LazyFS ended on its own (see {})",
                    other.dir.join("lazyfs.out").display()
                ));
            }
            Ok(())
        })();
    }
    // The power goes: the disks first, then every process. (The senders stop first:
    // only the messages in flight fail.) clear and checkpoint stop the mail system
    // first and then act on the data.
    load.signal_stop();
    if fault.is_ok() && matches!(case.fault, Fault::Clear | Fault::Checkpoint) {
        // No new SMTP session, then the mail system killed until it stays dead: a
        // program the harness or tcpserver was starting as the others were killed (between
        // fork and exec it is not yet one of the home's programs) would otherwise run on
        // after the fault, its operations reaching LazyFS as if made after the power went.
        let _ = tcpserver.kill();
        let _ = tcpserver.wait();
        fault = (|| {
            let mut late: Vec<String> = Vec::new();
            for round in 0.. {
                let found = sys.kill_all_found()?;
                if round > 0 {
                    if found.is_empty() {
                        break;
                    }
                    late.extend(found);
                }
                if round == 20 {
                    return Err(format!(
                        "the mail system kept starting programs: {}",
                        late.join(" ")
                    ));
                }
                // The killed programs' last requests (and those of any other process
                // still on the disks) are answered before the cache is dropped (run A3's
                // case 74).
                for (l, name) in [(&disks.queue, "queue"), (&disks.maildir, "Maildir")] {
                    let w = l.wait_idle(Duration::from_millis(200), Duration::from_secs(10))?;
                    let names: Vec<&str> = w.names.iter().map(String::as_str).collect();
                    r.idle.push(format!(
                        "{name}: {} users{}, {} killed, {} requests, {} journal bytes{}, {} ms",
                        w.users,
                        if names.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", names.join(" "))
                        },
                        w.killed,
                        w.requests,
                        w.late,
                        if w.fusectl { "" } else { " (no fusectl)" },
                        w.waited.as_millis()
                    ));
                }
            }
            if !late.is_empty() {
                r.idle
                    .push(format!("started late and killed: {}", late.join(" ")));
            }
            for l in [&disks.queue, &disks.maildir] {
                if case.fault == Fault::Clear {
                    l.clear_cache()?;
                } else {
                    l.checkpoint()?;
                }
            }
            Ok(())
        })();
    }
    disks.kill();
    let killed = sys.kill_all();
    let _ = tcpserver.kill();
    let _ = tcpserver.wait();
    let _ = send.kill();
    let _ = send.wait();
    let ledger = load.finish();
    fault?;
    killed?;
    sys.kill_all()?;
    let _ = fs::write(
        dir.join("ledger"),
        ledger
            .iter()
            .map(|s| {
                format!(
                    "{} {} {}\n",
                    s.id,
                    s.via.name(),
                    if s.accepted { "accepted" } else { &s.detail }
                )
            })
            .collect::<String>(),
    );
    let before: LogFacts = verdict::parse_log(&fs::read_to_string(&send_log).unwrap_or_default());
    disks.unmount();

    // Directory entries no fsync made durable.
    for l in [&disks.queue, &disks.maildir] {
        let entries = journal::parse(&l.journal());
        let undos = journal::undo_list(&entries, model);
        let done = journal::apply(&l.root, &l.graveyard(), &undos)
            .map_err(|e| format!("undoing the journal: {e}"))?;
        r.undone.extend(done);
    }
    if !r.undone.is_empty() {
        let _ = fs::write(dir.join("undone"), r.undone.join("\n") + "\n");
    }
    drop(disks);

    // Power back: the same data, a fresh LazyFS, qmail-send alone. The harness reads
    // the data below LazyFS (what a new power loss would leave of it: deliveries are
    // fsynced before they are linked into new/), so as not to fill LazyFS's cache.
    let mut disks = sys.mount(build, dir, 2, journal)?;
    let mut send = sys.start_send(&send_log)?;
    let must = verdict::expected(&ledger, &before);
    let mut scanner = verdict::Scanner::default();
    let started = Instant::now();
    let mut last_alrm = Instant::now();
    let mut idle_since: Option<Instant> = None;
    let drained = loop {
        if let Err(e) = alive(&mut disks) {
            break Err(e);
        }
        let mb = scanner.scan(&lm);
        let idle = count_files(&lq.join("todo")) + count_files(&lq.join("info")) == 0;
        if idle {
            idle_since.get_or_insert_with(Instant::now);
        } else {
            idle_since = None;
        }
        let all_there = must.iter().all(|(id, w)| verdict::arrived(&mb, id, *w));
        if (all_there && idle) || idle_since.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
            break Ok(());
        }
        if started.elapsed() > cfg.drain {
            r.timed_out = true;
            break Ok(());
        }
        if last_alrm.elapsed() >= Duration::from_secs(1) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(send.id() as i32),
                nix::sys::signal::Signal::SIGALRM,
            );
            last_alrm = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    r.drained_in = started.elapsed();
    sys.stop_send(&mut send);
    drained?;
    let mailbox = scanner.scan(&lm);
    drop(disks);
    r.verdict = verdict::judge(&ledger, &before, &mailbox);
    if !r.verdict.lost.is_empty() {
        let text: String = r.verdict.lost.iter().map(|l| l.text() + "\n").collect();
        let _ = fs::write(dir.join("lost"), text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(n: usize, fault: Fault, fired: Fired, lost: usize) -> CaseReport {
        let mut v = Verdict {
            sent: 10,
            delivered_before: 3,
            failed_before: 1,
            bounced: 1,
            ..Verdict::default()
        };
        v.accepted.insert(Via::Smtp, 6);
        v.accepted.insert(Via::Queue, 2);
        for i in 0..lost {
            v.lost.push(verdict::Loss {
                id: format!("c{n}m{i}"),
                want: verdict::Want::Delivery,
                via: Some(Via::Smtp),
                accepted: true,
                logged: false,
                cut: 0,
                mbox: false,
            });
        }
        CaseReport {
            case: Case {
                number: n,
                fault,
                warmup_ms: 100,
            },
            fired,
            undone: vec!["removed x".into(); 2],
            idle: Vec::new(),
            verdict: v,
            timed_out: false,
            drained_in: Duration::from_millis(1500),
            error: None,
            dir: PathBuf::from(format!("/w/case-{n}")),
        }
    }

    #[test]
    fn fuse_s_hidden_files_are_not_queue_work() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("todo")).unwrap();
        fs::write(t.path().join("todo/.fuse_hidden000000cf00000034"), b"").unwrap();
        assert_eq!(count_files(&t.path().join("todo")), 0);
        fs::write(t.path().join("todo/123"), b"").unwrap();
        assert_eq!(count_files(&t.path().join("todo")), 1);
    }

    #[test]
    fn lines_and_totals() {
        let ok = report(1, Fault::Power, Fired::Cut, 0);
        assert!(ok.ok());
        assert!(ok.line().starts_with(
            "case 1 power: cut; sent 10 accepted 8 (smtp 6, inject 0, qmail-queue 2); logged before the crash 3 deliveries, 1 failures; entries undone 2; lost 0;"
        ));
        assert!(!ok.line().contains("kept"));
        // A case whose queue did not empty in time passes, and is kept to be looked at.
        let mut slow = report(3, Fault::Power, Fired::Cut, 0);
        slow.timed_out = true;
        assert!(slow.ok());
        assert!(slow.line().ends_with("(timed out)\n  kept: /w/case-3"));
        let f = plan::parse_faults("queue.todo.link:after").unwrap()[0];
        let bad = report(2, f, Fired::NotReached, 12);
        assert!(!bad.ok());
        let l = bad.line();
        assert!(l.contains("NOT REACHED"));
        assert_eq!(l.matches("\n  LOST c2m").count(), 10);
        assert!(l.contains("... and 2 more (all in /w/case-2/lost)"));
        assert!(l.ends_with("kept: /w/case-2"));
        let r = RunReport {
            cases: vec![ok, bad],
        };
        assert!(!r.ok());
        let s = r.summary();
        let total = s.lines().last().unwrap();
        let cols: Vec<&str> = total.split_whitespace().collect();
        assert_eq!(
            cols,
            ["total", "2", "1", "20", "16", "6", "2", "4", "2", "12", "0"]
        );
        assert!(s.contains("\npower "));
        assert!(s.contains("\nqueue.todo.link:after "));
    }
}
