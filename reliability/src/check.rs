//! The checks at the end of a run: deliveries (at least once for every accepted message
//! and recipient, no bounce), the queue emptied by qmail-send's and qmail-clean's
//! cleanups, and `rqmail-install -c`.

use crate::clients::{Sent, Via};
use crate::world::World;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What arrived where.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    /// Messages in the Maildir, by id.
    pub local: HashMap<String, usize>,
    /// Messages at the sink, by id.
    pub remote: HashMap<String, usize>,
    /// Bounces (messages from the null sender) in the Maildir.
    pub bounces: Vec<String>,
    /// Files left in the Maildir's tmp/ (killed qmail-local runs).
    pub maildir_tmp: usize,
    /// The drain ended because time ran out.
    pub timed_out: bool,
}

/// The state of the queue around the cleanups.
#[derive(Debug, Clone, Default)]
pub struct Cleanup {
    /// Files in the queue after the deliveries, before the aged cleanup.
    pub before: Vec<String>,
    /// Files in the queue after the cleanups (must be none).
    pub after: Vec<String>,
    /// rqmail-install -c: None when it passed, else its output.
    pub install_check: Option<String>,
    /// A step that could not be done.
    pub error: Option<String>,
}

fn crash_id(msg: &[u8]) -> Option<String> {
    let head_end = msg
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(msg.len());
    let head = String::from_utf8_lossy(&msg[..head_end]);
    head.lines()
        .find_map(|l| l.strip_prefix("X-Crash-Id: "))
        .map(|s| s.trim().to_string())
}

/// Looks at the Maildir and the sink.
pub fn scan(w: &World) -> Delivered {
    let mut d = Delivered::default();
    let md = w.home.join("alias/Maildir");
    for sub in ["new", "cur"] {
        let Ok(rd) = fs::read_dir(md.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = fs::read(e.path()) else { continue };
            if m.starts_with(b"Return-Path: <>\n") || m.starts_with(b"Return-Path: <#@[]>\n") {
                d.bounces.push(e.file_name().to_string_lossy().into_owned());
            } else if let Some(id) = crash_id(&m) {
                *d.local.entry(id).or_default() += 1;
            }
        }
    }
    d.maildir_tmp = fs::read_dir(md.join("tmp")).map_or(0, Iterator::count);
    for m in w.sink.messages() {
        if let Some(id) = crash_id(&m.data) {
            *d.remote.entry(id).or_default() += 1;
        }
    }
    d
}

/// Accepted messages not yet at every recipient.
pub fn missing(ledger: &[Sent], d: &Delivered) -> Vec<String> {
    let mut v = Vec::new();
    for s in ledger.iter().filter(|s| s.accepted) {
        if s.local.is_some() && !d.local.contains_key(&s.id) {
            v.push(format!(
                "{} (local {})",
                s.id,
                s.local.as_deref().unwrap_or("")
            ));
        }
        if s.remote.is_some() && !d.remote.contains_key(&s.id) {
            v.push(format!(
                "{} (remote {})",
                s.id,
                s.remote.as_deref().unwrap_or("")
            ));
        }
    }
    v
}

/// Files below the queue (lock/ excepted), relative to it.
pub fn queue_files(home: &Path) -> Vec<String> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() && !p.is_symlink() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
    }
    let q = home.join("queue");
    let mut v = Vec::new();
    walk(&q, &mut v);
    let mut out: Vec<String> = v
        .into_iter()
        .filter(|p| !p.starts_with(q.join("lock")))
        .filter_map(|p| p.strip_prefix(&q).ok().map(|r| r.display().to_string()))
        .collect();
    out.sort();
    out
}

/// True when no message is in progress (nothing in todo/, info/, local/, remote/).
fn nothing_in_progress(home: &Path) -> bool {
    queue_files(home).iter().all(|f| {
        !["todo/", "info/", "local/", "remote/", "bounce/"]
            .iter()
            .any(|d| f.starts_with(d))
    })
}

/// Lets qmail-send retry everything (ALRM once a second) until every accepted message
/// is delivered and nothing is in progress, or `limit` passes.
pub fn drain(w: &World, ledger: &[Sent], limit: Duration) -> Delivered {
    let deadline = Instant::now() + limit;
    let mut last_alrm = Instant::now() - Duration::from_secs(10);
    loop {
        let d = scan(w);
        if missing(ledger, &d).is_empty() && nothing_in_progress(&w.home) {
            return d;
        }
        if Instant::now() > deadline {
            return Delivered {
                timed_out: true,
                ..d
            };
        }
        if last_alrm.elapsed() >= Duration::from_secs(1) {
            w.signal_send(nix::sys::signal::Signal::SIGALRM);
            last_alrm = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ages what crashed programs left in the queue past qmail's 36-hour limit, lets a fresh
/// qmail-send (and its qmail-clean) clean up, and runs the install check.
pub fn cleanup(w: &World) -> Cleanup {
    let mut c = Cleanup {
        before: queue_files(&w.home),
        ..Cleanup::default()
    };
    if let Err(e) = w.stop_send() {
        c.error = Some(e);
        return c;
    }
    let q = w.home.join("queue");
    let old = control::now().saturating_sub(37 * 3600);
    let t = nix::sys::time::TimeVal::new(old as i64, 0);
    for f in queue_files(&w.home) {
        if f.starts_with("pid/") || f.starts_with("mess/") || f.starts_with("intd/") {
            let _ = nix::sys::stat::utimes(&q.join(&f), &t, &t);
        }
    }
    if let Err(e) = w.start_send() {
        c.error = Some(e);
        return c;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !queue_files(&w.home).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Err(e) = w.stop_send() {
        c.error = Some(e);
    }
    c.after = queue_files(&w.home);
    match Command::new(w.home.join("bin/rqmail-install"))
        .arg("-c")
        .arg(&w.home)
        .env_clear()
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            c.install_check = Some(format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Err(e) => c.install_check = Some(format!("cannot run rqmail-install -c: {e}")),
    }
    c
}

/// Everything a run saw.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub ledger: Vec<Sent>,
    pub delivered: Delivered,
    pub kills: BTreeMap<String, usize>,
    pub restarts: usize,
    pub cleanup: Cleanup,
    pub sent_for: Duration,
    pub drained_in: Duration,
    pub total: Duration,
    pub workdir: PathBuf,
}

impl Report {
    pub fn lost(&self) -> Vec<String> {
        missing(&self.ledger, &self.delivered)
    }

    /// True when every check passed.
    pub fn ok(&self) -> bool {
        self.lost().is_empty()
            && self.delivered.bounces.is_empty()
            && !self.delivered.timed_out
            && self.cleanup.after.is_empty()
            && self.cleanup.install_check.is_none()
            && self.cleanup.error.is_none()
    }

    /// The report as printed (the format RELIABILITY.md records).
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let l = &self.ledger;
        let count = |via: Via, acc: bool| {
            l.iter()
                .filter(|s| s.via == via && s.accepted == acc)
                .count()
        };
        let acc: Vec<&Sent> = l.iter().filter(|s| s.accepted).collect();
        let d = &self.delivered;
        let want_local = acc.iter().filter(|s| s.local.is_some()).count();
        let want_remote = acc.iter().filter(|s| s.remote.is_some()).count();
        let got_local = acc
            .iter()
            .filter(|s| s.local.is_some() && d.local.contains_key(&s.id))
            .count();
        let got_remote = acc
            .iter()
            .filter(|s| s.remote.is_some() && d.remote.contains_key(&s.id))
            .count();
        let dups = d
            .local
            .values()
            .chain(d.remote.values())
            .filter(|&&n| n > 1)
            .count();
        let unacked = l
            .iter()
            .filter(|s| {
                !s.accepted && (d.local.contains_key(&s.id) || d.remote.contains_key(&s.id))
            })
            .count();
        let _ = writeln!(t, "seed: {}", self.seed);
        let _ = writeln!(
            t,
            "sent: {} messages in {:.1} s (smtp {} accepted + {} not; inject {} accepted + {} not)",
            l.len(),
            self.sent_for.as_secs_f64(),
            count(Via::Smtp, true),
            count(Via::Smtp, false),
            count(Via::Inject, true),
            count(Via::Inject, false)
        );
        let kills: Vec<String> = self.kills.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            t,
            "kills: {} ({}); qmail-send restarted {} times",
            self.kills.values().sum::<usize>(),
            kills.join(", "),
            self.restarts
        );
        let _ = writeln!(
            t,
            "delivered: local {got_local}/{want_local}, remote {got_remote}/{want_remote}; \
             delivered more than once: {dups}; delivered though not acknowledged: {unacked}"
        );
        let _ = writeln!(
            t,
            "drain: {:.1} s{}",
            self.drained_in.as_secs_f64(),
            if d.timed_out { " (TIMED OUT)" } else { "" }
        );
        let lost = self.lost();
        let _ = writeln!(t, "lost: {}", lost.len());
        for x in lost.iter().take(20) {
            let _ = writeln!(t, "  lost {x}");
        }
        let _ = writeln!(t, "bounces: {}", d.bounces.len());
        let mut by_dir: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &self.cleanup.before {
            *by_dir.entry(f.split('/').next().unwrap_or("")).or_default() += 1;
        }
        let dirs: Vec<String> = by_dir.iter().map(|(k, v)| format!("{k}/ {v}")).collect();
        let _ = writeln!(
            t,
            "queue files left by crashes: {} ({}); after the cleanups: {}",
            self.cleanup.before.len(),
            dirs.join(", "),
            self.cleanup.after.len()
        );
        for f in self.cleanup.after.iter().take(20) {
            let _ = writeln!(t, "  stuck {f}");
        }
        let _ = writeln!(
            t,
            "rqmail-install -c: {}",
            match &self.cleanup.install_check {
                None => "ok".to_string(),
                Some(o) => format!("FAILED\n{o}"),
            }
        );
        if let Some(e) = &self.cleanup.error {
            let _ = writeln!(t, "error: {e}");
        }
        let _ = writeln!(
            t,
            "Maildir tmp/ files left by killed qmail-local: {}",
            d.maildir_tmp
        );
        let _ = writeln!(t, "total: {:.1} s", self.total.as_secs_f64());
        let _ = writeln!(t, "work directory: {}", self.workdir.display());
        let _ = writeln!(t, "RESULT: {}", if self.ok() { "PASS" } else { "FAIL" });
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_id_is_read_from_the_header_only() {
        assert_eq!(
            crash_id(b"Return-Path: <a@b>\nX-Crash-Id: 1f-2\n\nX-Crash-Id: no\n"),
            Some("1f-2".to_string())
        );
        assert_eq!(crash_id(b"Subject: x\n\nX-Crash-Id: 9\n"), None);
    }

    #[test]
    fn missing_counts_each_recipient_kind() {
        let s = |id: &str, l: bool, r: bool, acc: bool| Sent {
            id: id.into(),
            via: Via::Smtp,
            local: l.then(|| "u1".into()),
            remote: r.then(|| "r1@sink.example".into()),
            accepted: acc,
            detail: String::new(),
        };
        let ledger = vec![s("a", true, true, true), s("b", true, false, false)];
        let mut d = Delivered::default();
        d.local.insert("a".into(), 1);
        assert_eq!(missing(&ledger, &d), ["a (remote r1@sink.example)"]);
        d.remote.insert("a".into(), 2);
        assert!(missing(&ledger, &d).is_empty());
    }
}
