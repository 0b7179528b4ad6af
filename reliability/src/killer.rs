//! SIGKILL for a random component at random instants. Only processes of this run are
//! touched: those whose program is under this run's `home/bin/` (read from
//! /proc/PID/exe), each ended by its pid.

use crate::Config;
use crate::rng::Rng;
use crate::world::World;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The components the harness kills.
pub const TARGETS: [&str; 8] = [
    "qmail-smtpd",
    "qmail-queue",
    "qmail-send",
    "qmail-lspawn",
    "qmail-local",
    "qmail-rspawn",
    "qmail-remote",
    "qmail-clean",
];

/// (pid, program name) of every running process started from `home/bin/`.
pub fn ours(home: &Path) -> Vec<(i32, String)> {
    let bin = home.join("bin");
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
            continue;
        };
        if exe.parent() == Some(bin.as_path())
            && let Some(name) = exe.file_name()
        {
            // A zombie has no exe link, so everything found here is alive.
            v.push((pid, name.to_string_lossy().into_owned()));
        }
    }
    v
}

/// The running killer thread.
pub struct Killer {
    thread: JoinHandle<BTreeMap<String, usize>>,
}

impl Killer {
    pub fn start(w: &World, cfg: &Config, stop: Arc<AtomicBool>) -> Killer {
        let home = w.home.clone();
        let mut rng = Rng::new(cfg.seed ^ 0x6b69_6c6c);
        let every = cfg.kill_every_ms.max(1);
        let thread = std::thread::spawn(move || {
            let mut kills: BTreeMap<String, usize> =
                TARGETS.iter().map(|t| (t.to_string(), 0)).collect();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(rng.below(every) + 1));
                let target = TARGETS[rng.below(TARGETS.len() as u64) as usize];
                // Short-lived programs are waited for a little.
                for _ in 0..100 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let found: Vec<i32> = ours(&home)
                        .into_iter()
                        .filter(|(_, n)| n == target)
                        .map(|(p, _)| p)
                        .collect();
                    if found.is_empty() {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    let pid = found[rng.below(found.len() as u64) as usize];
                    if nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    )
                    .is_ok()
                        && let Some(n) = kills.get_mut(target)
                    {
                        *n += 1;
                    }
                    break;
                }
            }
            kills
        });
        Killer { thread }
    }

    /// Waits for the thread (after its stop flag was set); returns the kills by target.
    pub fn join(self) -> BTreeMap<String, usize> {
        self.thread.join().unwrap_or_default()
    }
}
