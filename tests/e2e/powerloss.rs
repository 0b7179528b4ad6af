//! The durable sequence of a message, read from strace: the order of writes, fsyncs,
//! links, renames and removals that the power-loss runs on LazyFS (rqmail-powerloss(8),
//! RELIABILITY.md) showed loses nothing. LazyFS is built from its repository, which the
//! suite cannot fetch; this test keeps the order those runs proved, so that a change of
//! the fsync sequence (for speed, say) fails here before it is tried on LazyFS.
//!
//! The rule checked is the posix model of rqmail-powerloss: a name is durable once the
//! directory holding it was fsynced after the name was made, a file's data once the file
//! was fsynced after its last write. Each acknowledgement must come after everything the
//! message then depends on is durable:
//!
//! * qmail-queue's exit 0 (what qmail-smtpd turns into 250 after DATA): `mess/S/N` and
//!   `todo/N` durable names, the message and the envelope durable data;
//! * qmail-send's removal of `todo/N`: `info/S/N` and `local/S/N` durable;
//! * qmail-local's report `did 1+0+0` (what qmail-send logs as `delivery N: success`):
//!   the Maildir file's data durable and its name in `new/` durable.

use crate::relsys::mail_home;
use rqmail_tests::single::{System, queue_with, user_cmd, wait_until};
use rqmail_tests::{bin, is_root, tool};
use std::fs;

/// What a trace says about the queue's and the Maildir's files, in order. Paths are
/// keys relative to `queue/` or to the Maildir (`todo/N`, `info/S/N`, `new/NAME`; a
/// directory is `todo`, `info/S`, `new`), which do not overlap; the processes work with
/// absolute paths, paths relative to a directory descriptor (`strace -y` shows its
/// path) or paths relative to `queue/` (qmail-send and qmail-clean).
#[derive(Debug, Default)]
struct Trace {
    /// Index of each call, in order: the call's line.
    lines: Vec<String>,
    /// name -> (index the name was made, file id), for every name ever made.
    made: Vec<(usize, String, usize)>,
    /// name -> file id, latest (kept after removals: a removed file's descriptor still
    /// shows its old name).
    ids: std::collections::HashMap<String, usize>,
    next_id: usize,
    /// (index, file id) of every write and of every fsync of a file.
    writes: Vec<(usize, usize)>,
    file_syncs: Vec<(usize, usize)>,
    /// (index, directory) of every fsync of a directory.
    dir_syncs: Vec<(usize, String)>,
}

/// The key of a path (see [`Trace`]).
fn key(path: &str) -> String {
    let path = path.trim_end_matches('/');
    for root in ["/queue", "/Maildir"] {
        if let Some(i) = path.rfind(&format!("{root}/")) {
            return path[i + root.len() + 1..].to_string();
        }
        if path.ends_with(root) {
            return String::new();
        }
    }
    path.trim_start_matches("./").to_string()
}

impl Trace {
    fn new(text: &str) -> Trace {
        let mut t = Trace::default();
        // strace splits a call that another process interrupts into `... <unfinished
        // ...>` and `<... NAME resumed> ...`: join them, at the place it ended.
        let mut pending: std::collections::HashMap<&str, &str> = Default::default();
        for l in text.lines() {
            let Some((pid, rest)) = l.split_once(' ') else {
                continue;
            };
            let rest = rest.trim_start();
            if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
                pending.insert(pid, head);
                continue;
            }
            let call = if rest.starts_with("<... ") {
                let Some(head) = pending.remove(pid) else {
                    continue;
                };
                let tail = &rest[rest.find("resumed>").map_or(0, |i| i + 8)..];
                format!("{head}{tail}")
            } else {
                rest.to_string()
            };
            t.note(call);
        }
        t
    }

    fn note(&mut self, call: String) {
        let i = self.lines.len();
        let name = call[..call.find('(').unwrap_or(0)].to_string();
        let ok = !call.contains("= -1 ");
        // The paths in the call: `<fd path>` and quoted ones, in order.
        let mut args: Vec<(bool, String)> = Vec::new();
        let mut rest = call.as_str();
        while let Some(j) = rest.find(['<', '"']) {
            let close = if rest.as_bytes()[j] == b'<' { '>' } else { '"' };
            let Some(k) = rest[j + 1..].find(close) else {
                break;
            };
            args.push((close == '>', rest[j + 1..j + 1 + k].to_string()));
            rest = &rest[j + 2 + k..];
        }
        // A quoted relative path after a directory descriptor is relative to it.
        let joined = |n: usize| -> Option<String> {
            let (fd, p) = args.get(n)?;
            if *fd || p.starts_with('/') || n == 0 {
                return Some(key(p));
            }
            match args.get(n - 1) {
                Some((true, d)) => Some(key(&format!("{d}/{p}"))),
                _ => Some(key(p)),
            }
        };
        let fresh = |t: &mut Trace, k: String| {
            let id = t.next_id;
            t.next_id += 1;
            t.ids.insert(k.clone(), id);
            t.made.push((i, k, id));
        };
        if ok {
            match name.as_str() {
                "openat" if call.contains("O_CREAT") => {
                    if let Some(k) = joined(1) {
                        fresh(self, k);
                    }
                }
                "link" | "linkat" | "rename" | "renameat" | "renameat2" => {
                    let (a, b) = if name == "link" || name == "rename" {
                        (joined(0), joined(1))
                    } else {
                        (joined(1), joined(3))
                    };
                    if let (Some(a), Some(b)) = (a, b)
                        && let Some(&id) = self.ids.get(&a)
                    {
                        self.ids.insert(b.clone(), id);
                        self.made.push((i, b, id));
                    }
                }
                "write" => {
                    if let Some(id) = args.first().and_then(|(_, p)| self.ids.get(&key(p))) {
                        self.writes.push((i, *id));
                    }
                }
                "fsync" | "fdatasync" => {
                    if let Some((_, p)) = args.first() {
                        let k = key(p);
                        match self.ids.get(&k) {
                            Some(&id) => self.file_syncs.push((i, id)),
                            None => self.dir_syncs.push((i, k)),
                        }
                    }
                }
                _ => {}
            }
        }
        self.lines.push(call);
    }

    /// The first call from `from` on that satisfies `f`.
    fn find(&self, from: usize, what: &str, f: impl Fn(&str) -> bool) -> usize {
        self.lines
            .iter()
            .skip(from)
            .position(|l| f(l))
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("no {what} in the trace:\n{}", self.lines.join("\n")))
    }

    /// The name `k` as it stands at call `at`: made when, which file.
    fn name_at(&self, k: &str, at: usize) -> (usize, usize) {
        self.made
            .iter()
            .filter(|(i, n, _)| n == k && *i < at)
            .map(|(i, _, id)| (*i, *id))
            .next_back()
            .unwrap_or_else(|| panic!("{k} was not made before call {at}"))
    }

    /// Why `k` is not durable at call `at` (posix model), or None.
    fn not_durable(&self, k: &str, at: usize) -> Option<String> {
        let (made, id) = self.name_at(k, at);
        let dir = k.rsplit_once('/').map_or("", |(d, _)| d);
        if !self
            .dir_syncs
            .iter()
            .any(|(i, d)| d == dir && made < *i && *i < at)
        {
            return Some(format!(
                "{k}: its directory {dir}/ was not fsynced between its making (call {made}) and call {at}"
            ));
        }
        let last_write = self
            .writes
            .iter()
            .filter(|(i, f)| *f == id && *i < at)
            .map(|(i, _)| *i)
            .max();
        let last_sync = self
            .file_syncs
            .iter()
            .filter(|(i, f)| *f == id && *i < at)
            .map(|(i, _)| *i)
            .max();
        match (last_write, last_sync) {
            (Some(w), Some(s)) if s > w => None,
            (None, _) => None,
            (Some(w), _) => Some(format!(
                "{k}: written at call {w}, not fsynced after that before call {at}"
            )),
        }
    }

    /// Panics unless every name in `names` is durable at call `at`.
    fn assert_durable(&self, what: &str, names: &[String], at: usize) {
        let bad: Vec<String> = names
            .iter()
            .filter_map(|k| self.not_durable(k, at))
            .collect();
        assert!(
            bad.is_empty(),
            "{what} (call {at}: {}) before\n{}\ntrace:\n{}",
            self.lines[at],
            bad.join("\n"),
            self.lines
                .iter()
                .enumerate()
                .map(|(i, l)| format!("{i} {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn each_acknowledgement_follows_the_fsyncs_it_needs() {
    if !is_root() {
        eprintln!("skipped: needs root (the suite runs as root)");
        return;
    }
    let h = mail_home();
    let trace_q = h.path().join("trace-queue");
    let trace_s = h.path().join("trace-send");
    let syscalls = "trace=openat,write,fsync,fdatasync,link,linkat,rename,renameat,renameat2,unlink,unlinkat,exit_group";
    let mut c = user_cmd(h.path(), &tool("strace"));
    c.args(["-f", "-qq", "-y", "-s", "64", "-e", syscalls, "-o"])
        .arg(&trace_s)
        .arg(h.path().join("bin/qmail-start"));
    let sys = System::start_cmd(c, &["./Maildir/"]);
    let mut q = user_cmd(h.path(), &tool("strace"));
    q.args(["-f", "-qq", "-y", "-s", "64", "-e", syscalls, "-o"])
        .arg(&trace_q)
        .arg(bin("qmail-queue"));
    let code = queue_with(
        q,
        b"Subject: durable\n\nhello\n",
        "sender@testhost.example",
        &["someone@testhost.example"],
    );
    assert_eq!(code, 0, "qmail-queue");
    sys.wait_count("the delivery", 1, |l| l.starts_with("end msg "));
    let strace = sys.pid().as_raw();
    let (send, _) = rqmail_tests::children(strace)
        .into_iter()
        .find(|(_, n)| n == "qmail-send")
        .expect("qmail-send under strace");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(send),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("TERM qmail-send");
    wait_until("strace's end", || {
        rqmail_tests::proc_stat(strace).is_none_or(|(_, _, state)| state == 'Z')
    });
    sys.kill();
    let tq = Trace::new(&fs::read_to_string(&trace_q).expect("qmail-queue's trace"));
    let ts = Trace::new(&fs::read_to_string(&trace_s).expect("qmail-send's trace"));

    // qmail-queue's exit 0: the message and its envelope, under their queue names.
    let exit = tq.find(0, "exit 0 of qmail-queue", |l| {
        l.starts_with("exit_group(0)")
    });
    let names = |t: &Trace, prefix: &str| -> Vec<String> {
        t.made
            .iter()
            .filter(|(_, k, _)| k.starts_with(prefix))
            .map(|(_, k, _)| k.clone())
            .collect()
    };
    let mess = names(&tq, "mess/");
    let todo = names(&tq, "todo/");
    assert_eq!((mess.len(), todo.len()), (1, 1), "{:?}", tq.made);
    tq.assert_durable(
        "qmail-queue exited 0",
        &[mess[0].clone(), todo[0].clone()],
        exit,
    );
    let n = todo[0].trim_start_matches("todo/").to_string();

    // The removal of todo/N: info/S/N and local/S/N.
    let gone = ts.find(0, "removal of todo/N", |l| {
        l.starts_with("unlink") && l.contains(&format!("todo/{n}\"")) && l.ends_with("= 0")
    });
    let mut kept = names(&ts, "info/");
    kept.extend(names(&ts, "local/"));
    assert_eq!(kept.len(), 2, "{:?}", ts.made);
    ts.assert_durable("todo/N removed", &kept, gone);

    // qmail-local's report (qmail-send's "delivery N: success"): the Maildir file.
    let did = ts.find(0, "qmail-local's report", |l| {
        l.starts_with("write(1") && l.contains("\"did 1+0+0\\n\"")
    });
    let new = names(&ts, "new/");
    assert_eq!(new.len(), 1, "{:?}", ts.made);
    ts.assert_durable("qmail-local reported success", &new, did);
    let logged = ts.find(did, "the success in qmail-send's log", |l| {
        l.contains("delivery 1: success")
    });
    assert!(did < logged);
}
