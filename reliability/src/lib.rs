//! The crash-consistency harness behind `rqmail-crashtest COUNT DURATION`; (module
//! [`powerloss`]) the power-loss test behind `rqmail-powerloss`; (module [`queuefuzz`])
//! the differential queue fuzzer behind `rqmail-queuefuzz`.
//!
//! It lays out a qmail home with rqmail-install (single-user mode), runs qmail-smtpd
//! under tcpserver and qmail-start (restarted whenever qmail-send exits), a sink standing
//! in for a remote MX (reached by qmail-remote through control/smtproutes), and then:
//!
//! 1. sends up to COUNT messages for at most DURATION seconds, through SMTP and through
//!    qmail-inject, each with a unique `X-Crash-Id` header and a local recipient, a
//!    remote one, or both; a message counts as accepted when the client saw it accepted
//!    (250 after DATA, or qmail-inject's exit 0);
//! 2. meanwhile SIGKILLs a random component (qmail-smtpd, qmail-queue, qmail-send,
//!    qmail-lspawn, qmail-local, qmail-rspawn, qmail-remote, qmail-clean) at random
//!    instants;
//! 3. then stops the killing, lets qmail-send retry everything (ALRM), and checks that
//!    every accepted message reached every one of its recipients at least once and that
//!    nothing bounced;
//! 4. stops qmail-send, ages what crashed programs left in the queue by 37 hours (the
//!    age after which qmail-send and qmail-clean remove such files, as in netqmail),
//!    starts it again so that its cleanups run, and checks that the queue is empty and
//!    passes `rqmail-install -c`.
//!
//! Run as root, it copies the programs to a directory every user can read and runs the
//! whole test as `nobody` (the mail system needs no privilege in single-user mode).

#![forbid(unsafe_code)]

mod check;
mod clients;
mod killer;
mod powerloss;
pub mod queuefuzz;
mod rng;
pub mod targets;
mod world;

pub use check::Report;
pub use powerloss::main as powerloss_main;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most messages to send.
    pub count: usize,
    /// Longest time to send (and kill) for.
    pub duration: Duration,
    /// Where the rqmail programs are.
    pub bindir: PathBuf,
    /// Seed of the random choices (printed, so that a run can be repeated).
    pub seed: u64,
    /// Pause between two kills: a random time up to this many milliseconds.
    pub kill_every_ms: u64,
    /// Sending threads through SMTP and through qmail-inject.
    pub smtp_clients: usize,
    pub inject_clients: usize,
    /// How long to wait for the deliveries after the sending ends.
    pub drain: Duration,
    /// Keep the work directory (its path is printed).
    pub keep: bool,
}

const USAGE: &str = "usage: rqmail-crashtest [-b bindir] [-s seed] [-k kill-ms] [-c smtp-clients] [-i inject-clients] [-w drain-seconds] [-K] COUNT DURATION";

fn parse() -> Result<Config, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut positional = Vec::new();
    let exe = std::env::current_exe().map_err(|e| lexopt::Error::Custom(Box::new(e)))?;
    let mut c = Config {
        count: 0,
        duration: Duration::ZERO,
        bindir: exe.parent().map(PathBuf::from).unwrap_or_default(),
        seed: seed_from_clock(),
        kill_every_ms: 300,
        smtp_clients: 4,
        inject_clients: 2,
        drain: Duration::from_secs(300),
        keep: false,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Short('b') => c.bindir = PathBuf::from(p.value()?),
            Short('s') => c.seed = p.value()?.parse()?,
            Short('k') => c.kill_every_ms = p.value()?.parse()?,
            Short('c') => c.smtp_clients = p.value()?.parse()?,
            Short('i') => c.inject_clients = p.value()?.parse()?,
            Short('w') => c.drain = Duration::from_secs(p.value()?.parse()?),
            Short('K') => c.keep = true,
            Value(v) => positional.push(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let [count, secs] = positional.as_slice() else {
        return Err("COUNT and DURATION are required".into());
    };
    c.count = count.parse().map_err(|_| "COUNT must be a number")?;
    let secs: u64 = secs.parse().map_err(|_| "DURATION must be seconds")?;
    c.duration = Duration::from_secs(secs);
    Ok(c)
}

pub(crate) fn seed_from_clock() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

/// The program: exit 0 when every check passed, 1 when one failed, 100 for a usage
/// error, 111 when the harness itself could not run.
pub fn main() -> i32 {
    let cfg = match parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rqmail-crashtest: {e}\n{USAGE}");
            return 100;
        }
    };
    if nix::unistd::geteuid().is_root() {
        return match world::rerun_as_nobody(&cfg) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("rqmail-crashtest: {e}");
                111
            }
        };
    }
    match run(&cfg) {
        Ok(report) => {
            print!("{}", report.text());
            if report.ok() { 0 } else { 1 }
        }
        Err(e) => {
            eprintln!("rqmail-crashtest: {e}");
            111
        }
    }
}

/// One whole run; the report says what was seen.
pub fn run(cfg: &Config) -> Result<check::Report, String> {
    let started = Instant::now();
    println!(
        "rqmail-crashtest: seed {} count {} duration {}s",
        cfg.seed,
        cfg.count,
        cfg.duration.as_secs()
    );
    let mut w = world::World::start(cfg)?;
    println!("rqmail-crashtest: work directory {}", w.dir.display());

    // Phase 1: send while killing.
    let stop_kill = Arc::new(AtomicBool::new(false));
    let killer = killer::Killer::start(&w, cfg, stop_kill.clone());
    let ledger = clients::send_all(&w, cfg);
    stop_kill.store(true, Ordering::SeqCst);
    let kills = killer.join();
    let sent_for = started.elapsed();

    // Phase 2: every accepted message delivered.
    let drain_started = Instant::now();
    let delivered = check::drain(&w, &ledger, cfg.drain);
    let drained_in = drain_started.elapsed();

    // Phase 3: cleanups, empty queue, install check.
    let cleanup = check::cleanup(&w);
    let mut report = check::Report {
        seed: cfg.seed,
        ledger,
        delivered,
        kills,
        restarts: w.restarts(),
        cleanup,
        sent_for,
        drained_in,
        total: started.elapsed(),
        workdir: w.dir.clone(),
    };
    if !report.ok() || cfg.keep {
        w.keep();
        report.workdir = w.dir.clone();
    }
    drop(w);
    Ok(report)
}

/// Runs a command and returns its exit status, or an error naming it.
fn status(c: &mut Command, what: &str) -> Result<std::process::ExitStatus, String> {
    c.status().map_err(|e| format!("cannot run {what}: {e}"))
}
