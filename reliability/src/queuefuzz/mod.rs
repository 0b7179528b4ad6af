//! The differential queue fuzzer behind `rqmail-queuefuzz` (rqmail-queuefuzz(8)).
//!
//! Every file qmail-send and the queue tools read can hold anything after a disk error, a
//! hand edit or another program's bug. Each case plants one message (the *bad* one) in a
//! known state with netqmail's file formats, damages one of its files (bytes: truncated,
//! missing or extra NULs, empty records, unknown record types, huge records, garbage; or
//! the file itself: a directory, a FIFO, a symbolic link, missing, unreadable), or a lock
//! file, or adds a stray entry; queues a valid message with the real qmail-queue next to
//! it; and then:
//!
//! 1. runs qmail-qread, qmail-qstat, qmail-tcpto and qmail-qctl over the queue;
//! 2. runs the real set (qmail-start, qmail-send, qmail-lspawn, qmail-rspawn,
//!    qmail-clean) until the valid message is delivered and the log is quiet, then stops
//!    qmail-send with TERM;
//! 3. runs the readers again, qmail-clean on the bad message, and for lock/tcpto the
//!    real qmail-remote.
//!
//! A run fails when qmail-send dies or hangs, the valid message is not delivered, a
//! daemon loses a helper, a log line leaves qmail-log(5)'s formats, or a reader crashes
//! or hangs. Given a netqmail home (`-n`), every case runs on netqmail too, and what the
//! two systems did differently is listed: their log lines (normalized), the bad message's
//! deliveries, the queue left behind, and the readers' outputs.

mod case;
mod outcome;
mod side;

pub use case::{Case, Kind, from_text as case_from_text, generate, to_text as case_to_text};

use crate::rng::Rng;
use side::{Limits, Side};
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    pub bindir: PathBuf,
    /// A netqmail home to compare with.
    pub netqmail: Option<PathBuf>,
    pub seed: u64,
    /// Generated cases (kinds in turn).
    pub cases: usize,
    /// Only this case of the sequence (its index).
    pub only: Option<usize>,
    /// Only these kinds.
    pub kinds: Vec<Kind>,
    /// Case files to replay instead of generated cases.
    pub replay: Vec<PathBuf>,
    /// Where failing and differing cases are written as case files.
    pub save: Option<PathBuf>,
    /// Write every case there, not only those.
    pub save_all: bool,
    /// Only write the cases (to `save`, or standard output); run nothing.
    pub dry: bool,
    pub quiet: Duration,
    /// How long the good message may take to be delivered.
    pub deliver: Duration,
    pub keep: bool,
    pub verbose: bool,
}

const USAGE: &str = "usage: rqmail-queuefuzz [-b bindir] [-n netqmail-home] [-s seed] [-c cases] [-i index] [-k kind]... [-o dir [-a]] [-d] [-q quiet-ms] [-t deliver-seconds] [-K] [-v] [-r casefile]...";

fn parse() -> Result<Config, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let exe = std::env::current_exe().map_err(|e| lexopt::Error::Custom(Box::new(e)))?;
    let mut c = Config {
        bindir: exe.parent().map(PathBuf::from).unwrap_or_default(),
        netqmail: None,
        seed: crate::seed_from_clock(),
        cases: Kind::ALL.len(),
        only: None,
        kinds: Vec::new(),
        replay: Vec::new(),
        save: None,
        save_all: false,
        dry: false,
        quiet: Duration::from_millis(400),
        deliver: Duration::from_secs(60),
        keep: false,
        verbose: false,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Short('b') => c.bindir = PathBuf::from(p.value()?),
            Short('n') => c.netqmail = Some(PathBuf::from(p.value()?)),
            Short('s') => c.seed = p.value()?.parse()?,
            Short('c') => c.cases = p.value()?.parse()?,
            Short('i') => c.only = Some(p.value()?.parse()?),
            Short('k') => {
                let v = p.value()?.string()?;
                c.kinds
                    .push(Kind::from_name(&v).ok_or(format!("no kind {v}"))?);
            }
            Short('r') => c.replay.push(PathBuf::from(p.value()?)),
            Short('o') => c.save = Some(PathBuf::from(p.value()?)),
            Short('a') => c.save_all = true,
            Short('d') => c.dry = true,
            Short('q') => c.quiet = Duration::from_millis(p.value()?.parse()?),
            Short('t') => c.deliver = Duration::from_secs(p.value()?.parse()?),
            Short('K') => c.keep = true,
            Short('v') => c.verbose = true,
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(c)
}

/// The cases of a run: replayed files, or the generated sequence (kind `i % kinds`).
fn cases(cfg: &Config, now: i64) -> Result<Vec<(usize, Case)>, String> {
    if !cfg.replay.is_empty() {
        let mut v = Vec::new();
        for (i, p) in cfg.replay.iter().enumerate() {
            let text = fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            v.push((
                i,
                case::from_text(&text).map_err(|e| format!("{}: {e}", p.display()))?,
            ));
        }
        return Ok(v);
    }
    let kinds = if cfg.kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        cfg.kinds.clone()
    };
    let mut rng = Rng::new(cfg.seed);
    let mut v = Vec::new();
    let n = cfg.only.map_or(cfg.cases, |i| i + 1);
    for i in 0..n {
        let mut r = rng.fork(i as u64);
        let c = case::generate(kinds[i % kinds.len()], &mut r, now);
        if cfg.only.is_none_or(|o| o == i) {
            v.push((i, c));
        }
    }
    Ok(v)
}

/// Tallies of a run.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    by_kind: BTreeMap<String, usize>,
    mutations: BTreeMap<String, usize>,
    failed: Vec<String>,
    netqmail_failed: Vec<String>,
    differing: usize,
    differences: BTreeMap<String, usize>,
    delivered: usize,
}

/// The program: exit 0 when every rqmail run passed its checks, 1 when one failed, 100
/// for a usage error, 111 when the harness itself could not run.
pub fn main() -> i32 {
    let cfg = match parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rqmail-queuefuzz: {e}\n{USAGE}");
            return 100;
        }
    };
    match run(&cfg) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("rqmail-queuefuzz: {e}");
            111
        }
    }
}

/// One whole run; prints a line per case and the summary. True when every check passed.
pub fn run(cfg: &Config) -> Result<bool, String> {
    let started = Instant::now();
    let now = i64::try_from(control::now()).unwrap_or(0);
    let cases = cases(cfg, now)?;
    if cfg.dry {
        for (i, c) in &cases {
            let text = case::to_text(c);
            match &cfg.save {
                Some(dir) => {
                    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                    let name = format!("{}-{}-{i}.case", cfg.seed, c.label().replace('/', "-"));
                    fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
                }
                None => print!("{text}"),
            }
        }
        return Ok(true);
    }
    println!(
        "rqmail-queuefuzz: seed {} cases {}{}",
        cfg.seed,
        cases.len(),
        cfg.netqmail
            .as_ref()
            .map_or(String::new(), |h| format!(" netqmail {}", h.display()))
    );
    let rq = Side::rqmail(&cfg.bindir)?;
    let nq = match &cfg.netqmail {
        Some(h) => Some(Side::netqmail(h)?),
        None => None,
    };
    let work = tempfile::Builder::new()
        .prefix("rqmail-queuefuzz-logs-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let lim = Limits {
        deliver: cfg.deliver,
        quiet: cfg.quiet,
        tool: Duration::from_secs(10),
        stop: Duration::from_secs(30),
    };
    let mut t = Tally::default();
    for (i, c) in &cases {
        let label = c.label();
        let dir = work.path().join(i.to_string());
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        fs::write(dir.join("case"), case::to_text(c)).map_err(|e| e.to_string())?;
        let a = rq.run(c, &lim, &dir)?;
        let fa = outcome::failures(c, &a);
        t.cases += 1;
        *t.by_kind.entry(c.kind.name().into()).or_default() += 1;
        *t.mutations.entry(label.clone()).or_default() += 1;
        t.delivered += usize::from(a.good_delivered);
        let mut line = format!("case {i} {label}: ");
        if fa.is_empty() {
            line.push_str("ok");
        } else {
            line.push_str(&format!("FAIL: {}", fa.join("; ")));
            t.failed
                .push(format!("case {i} {label}: {}", fa.join("; ")));
        }
        let mut diffs = Vec::new();
        if let Some(nq) = &nq {
            if c.endless() {
                line.push_str(" (not run on netqmail: it would copy an endless file)");
            } else {
                let b = nq.run(c, &lim, &dir)?;
                let fb = outcome::failures(c, &b);
                if !fb.is_empty() {
                    line.push_str(&format!(" | netqmail FAILS: {}", fb.join("; ")));
                    t.netqmail_failed
                        .push(format!("case {i} {label}: {}", fb.join("; ")));
                }
                diffs = outcome::differences(&a, &b);
            }
        }
        if !diffs.is_empty() {
            t.differing += 1;
            line.push_str(&format!(" | {} differences", diffs.len()));
            for d in &diffs {
                *t.differences.entry(format!("{label}: {d}")).or_default() += 1;
            }
        }
        println!("{line}");
        if cfg.verbose {
            for d in &diffs {
                println!("    {d}");
            }
            if !fa.is_empty() {
                for l in &a.log {
                    println!("    rqmail log: {l}");
                }
            }
        }
        if let Some(save) = &cfg.save
            && (cfg.save_all || !fa.is_empty() || !diffs.is_empty())
        {
            fs::create_dir_all(save).map_err(|e| e.to_string())?;
            let name = format!("{}-{}-{i}.case", cfg.seed, label.replace('/', "-"));
            let mut text = case::to_text(c);
            for f in &fa {
                text.push_str(&format!("# rqmail: {f}\n"));
            }
            for d in &diffs {
                text.push_str(&format!("# differs: {}\n", d.replace('\n', " ")));
            }
            fs::write(save.join(name), text).map_err(|e| e.to_string())?;
        }
    }
    print_summary(&t, started.elapsed());
    if cfg.keep {
        let kept = work.keep();
        println!("logs kept in {}", kept.display());
    }
    Ok(t.failed.is_empty())
}

fn print_summary(t: &Tally, took: Duration) {
    println!("cases: {} in {} s", t.cases, took.as_secs());
    let kinds: Vec<String> = t.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("kinds: {}", kinds.join(", "));
    println!("mutations: {} distinct", t.mutations.len());
    println!("good message delivered: {} of {}", t.delivered, t.cases);
    println!("rqmail failures: {}", t.failed.len());
    for f in &t.failed {
        println!("  {f}");
    }
    if !t.netqmail_failed.is_empty() || t.differing > 0 {
        println!("netqmail failures: {}", t.netqmail_failed.len());
        for f in &t.netqmail_failed {
            println!("  {f}");
        }
        println!("cases with differences: {}", t.differing);
        for (d, n) in &t.differences {
            println!("  {n}x {d}");
        }
    }
    println!(
        "RESULT: {}",
        if t.failed.is_empty() { "PASS" } else { "FAIL" }
    );
}
