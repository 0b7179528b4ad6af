//! The fault plan: the named fault points (each a file system operation of one step of
//! qmail-queue's, qmail-send's or qmail-local's sequence, on the queue's or the Maildir's
//! file system), the faults built from them, their LazyFS commands, and the list of
//! cases a run goes through.

use crate::rng::Rng;
use std::fmt;

/// The two file systems under LazyFS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disk {
    /// `queue/`.
    Queue,
    /// The Maildir (`alias/Maildir/`).
    Maildir,
}

impl Disk {
    /// The last component of the directory that holds this disk's data under LazyFS:
    /// short and distinctive, so that the fault patterns below can name it (LazyFS
    /// reads commands of at most 100 bytes and matches them against whole paths).
    pub fn backing_name(self) -> &'static str {
        match self {
            Disk::Queue => "lq",
            Disk::Maildir => "lm",
        }
    }
}

/// The file system operations a fault point can stop at (LazyFS's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Write,
    Fsync,
    /// An fsync of a directory. Stock LazyFS does not implement it (the kernel then
    /// reports success without asking the file system): only a LazyFS with the patch of
    /// `reliability/lazyfs/` sees it.
    Fsyncdir,
    Link,
    Rename,
    Unlink,
}

impl Op {
    pub fn lazyfs_name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Write => "write",
            Op::Fsync => "fsync",
            Op::Fsyncdir => "fsyncdir",
            Op::Link => "link",
            Op::Rename => "rename",
            Op::Unlink => "unlink",
        }
    }

    /// Operations with a source and a destination path.
    fn two_paths(self) -> bool {
        matches!(self, Op::Link | Op::Rename)
    }
}

/// Crash before the operation is carried out, or after it (then it reached the
/// underlying file system, but its caller never hears that it succeeded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timing {
    Before,
    After,
}

impl Timing {
    pub fn name(self) -> &'static str {
        match self {
            Timing::Before => "before",
            Timing::After => "after",
        }
    }
}

/// One step of a durable sequence where the power can be cut.
#[derive(Debug, PartialEq, Eq)]
pub struct Point {
    /// `program-area.directory.operation`, e.g. `queue.todo.link`.
    pub name: &'static str,
    pub disk: Disk,
    pub op: Op,
    /// What the path (the destination, for a link) must contain, as a regular expression
    /// (ECMAScript, as LazyFS's std::regex reads it), starting at the disk's directory.
    pub pattern: &'static str,
    /// The step, for the report and the man page.
    pub what: &'static str,
}

/// Every fault point, in the order of a message's way through the system.
pub const POINTS: &[Point] = &[
    Point {
        name: "queue.pid.create",
        disk: Disk::Queue,
        op: Op::Create,
        pattern: "/lq/pid/",
        what: "qmail-queue creates pid/PID.TIME.SEQ",
    },
    Point {
        name: "queue.mess.link",
        disk: Disk::Queue,
        op: Op::Link,
        pattern: "/lq/mess/",
        what: "qmail-queue links pid/ to mess/S/N",
    },
    Point {
        name: "queue.pid.unlink",
        disk: Disk::Queue,
        op: Op::Unlink,
        pattern: "/lq/pid/",
        what: "qmail-queue removes the pid/ name",
    },
    // qmail-queue writes and fsyncs the message through the descriptor it opened as
    // pid/..., after removing that name: FUSE then renames the open file to
    // pid/.fuse_hiddenNNN (until it is closed) and names it so to LazyFS.
    Point {
        name: "queue.mess.write",
        disk: Disk::Queue,
        op: Op::Write,
        pattern: "/lq/pid/\\.fuse_hidden",
        what: "qmail-queue writes the message",
    },
    Point {
        name: "queue.mess.fsync",
        disk: Disk::Queue,
        op: Op::Fsync,
        pattern: "/lq/pid/\\.fuse_hidden",
        what: "qmail-queue fsyncs the message",
    },
    Point {
        name: "queue.mess.dirsync",
        disk: Disk::Queue,
        op: Op::Fsyncdir,
        pattern: "/lq/mess/[0-9]+$",
        what: "qmail-queue fsyncs the directory mess/S",
    },
    Point {
        name: "queue.intd.create",
        disk: Disk::Queue,
        op: Op::Create,
        pattern: "/lq/intd/",
        what: "qmail-queue creates intd/N",
    },
    Point {
        name: "queue.intd.fsync",
        disk: Disk::Queue,
        op: Op::Fsync,
        pattern: "/lq/intd/",
        what: "qmail-queue fsyncs the envelope intd/N",
    },
    Point {
        name: "queue.todo.link",
        disk: Disk::Queue,
        op: Op::Link,
        pattern: "/lq/todo/",
        what: "qmail-queue links intd/N to todo/N",
    },
    Point {
        name: "queue.todo.dirsync",
        disk: Disk::Queue,
        op: Op::Fsyncdir,
        pattern: "/lq/todo$",
        what: "qmail-queue fsyncs the directory todo/",
    },
    Point {
        name: "send.info.create",
        disk: Disk::Queue,
        op: Op::Create,
        pattern: "/lq/info/",
        what: "qmail-send creates info/S/N",
    },
    Point {
        name: "send.info.fsync",
        disk: Disk::Queue,
        op: Op::Fsync,
        pattern: "/lq/info/",
        what: "qmail-send fsyncs info/S/N",
    },
    Point {
        name: "send.local.fsync",
        disk: Disk::Queue,
        op: Op::Fsync,
        pattern: "/lq/local/",
        what: "qmail-send fsyncs local/S/N",
    },
    Point {
        name: "send.info.dirsync",
        disk: Disk::Queue,
        op: Op::Fsyncdir,
        pattern: "/lq/info/[0-9]+$",
        what: "qmail-send fsyncs the directory info/S",
    },
    Point {
        name: "send.local.dirsync",
        disk: Disk::Queue,
        op: Op::Fsyncdir,
        pattern: "/lq/local/[0-9]+$",
        what: "qmail-send fsyncs the directory local/S",
    },
    Point {
        name: "send.todo.unlink",
        disk: Disk::Queue,
        op: Op::Unlink,
        pattern: "/lq/todo/",
        what: "qmail-send removes todo/N",
    },
    Point {
        name: "send.intd.unlink",
        disk: Disk::Queue,
        op: Op::Unlink,
        pattern: "/lq/intd/",
        what: "qmail-send (or qmail-clean) removes intd/N",
    },
    Point {
        name: "send.local.write",
        disk: Disk::Queue,
        op: Op::Write,
        pattern: "/lq/local/",
        what: "qmail-send writes local/S/N (its recipients, then a done mark)",
    },
    Point {
        name: "send.local.unlink",
        disk: Disk::Queue,
        op: Op::Unlink,
        pattern: "/lq/local/",
        what: "qmail-send removes local/S/N once its recipients are done",
    },
    Point {
        name: "send.bounce.create",
        disk: Disk::Queue,
        op: Op::Create,
        pattern: "/lq/bounce/",
        what: "qmail-send creates bounce/N for a failed recipient",
    },
    Point {
        name: "send.bounce.fsync",
        disk: Disk::Queue,
        op: Op::Fsync,
        pattern: "/lq/bounce/",
        what: "qmail-send fsyncs bounce/N",
    },
    Point {
        name: "send.bounce.dirsync",
        disk: Disk::Queue,
        op: Op::Fsyncdir,
        pattern: "/lq/bounce$",
        what: "qmail-send fsyncs the directory bounce/",
    },
    Point {
        name: "send.bounce.unlink",
        disk: Disk::Queue,
        op: Op::Unlink,
        pattern: "/lq/bounce/",
        what: "qmail-send removes bounce/N once the bounce is queued",
    },
    Point {
        name: "send.mess.unlink",
        disk: Disk::Queue,
        op: Op::Unlink,
        pattern: "/lq/mess/",
        what: "qmail-clean removes a delivered message",
    },
    Point {
        name: "send.info.unlink",
        disk: Disk::Queue,
        op: Op::Unlink,
        pattern: "/lq/info/",
        what: "qmail-send removes info/S/N of a delivered message",
    },
    Point {
        name: "local.tmp.create",
        disk: Disk::Maildir,
        op: Op::Create,
        pattern: "/lm/tmp/",
        what: "qmail-local creates Maildir/tmp/NAME",
    },
    Point {
        name: "local.tmp.write",
        disk: Disk::Maildir,
        op: Op::Write,
        pattern: "/lm/tmp/",
        what: "qmail-local writes the message",
    },
    Point {
        name: "local.tmp.fsync",
        disk: Disk::Maildir,
        op: Op::Fsync,
        pattern: "/lm/tmp/",
        what: "qmail-local fsyncs Maildir/tmp/NAME",
    },
    Point {
        name: "local.new.link",
        disk: Disk::Maildir,
        op: Op::Link,
        pattern: "/lm/new/",
        what: "qmail-local links tmp/NAME to new/NAME",
    },
    Point {
        name: "local.new.dirsync",
        disk: Disk::Maildir,
        op: Op::Fsyncdir,
        pattern: "/lm/new$",
        what: "qmail-local fsyncs the directory new/",
    },
    Point {
        name: "local.tmp.unlink",
        disk: Disk::Maildir,
        op: Op::Unlink,
        pattern: "/lm/tmp/",
        what: "qmail-local removes tmp/NAME",
    },
    Point {
        name: "local.mbox.create",
        disk: Disk::Maildir,
        op: Op::Create,
        pattern: "/lm/mbox$",
        what: "qmail-local creates the mbox (its first delivery)",
    },
    Point {
        name: "local.mbox.write",
        disk: Disk::Maildir,
        op: Op::Write,
        pattern: "/lm/mbox$",
        what: "qmail-local appends a message to the mbox",
    },
    Point {
        name: "local.mbox.fsync",
        disk: Disk::Maildir,
        op: Op::Fsync,
        pattern: "/lm/mbox$",
        what: "qmail-local fsyncs the mbox",
    },
    Point {
        name: "local.mbox.dirsync",
        disk: Disk::Maildir,
        op: Op::Fsyncdir,
        pattern: "/lm/?$",
        what: "qmail-local fsyncs the directory of a new mbox",
    },
    Point {
        name: "pop3.cur.rename",
        disk: Disk::Maildir,
        op: Op::Rename,
        pattern: "/lm/cur/",
        what: "qmail-pop3d renames new/NAME to cur/NAME:2, at QUIT",
    },
];

/// One fault: what cuts the power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// LazyFS crashes itself (losing whatever was not fsynced) at the first operation of
    /// a fault point after the fault was armed.
    At(&'static Point, Timing),
    /// The harness kills both LazyFS processes at a random instant.
    Power,
    /// The harness kills the mail system, then tells both LazyFS processes to drop their
    /// unsynced data (`lazyfs::clear-cache`) at a random instant.
    Clear,
    /// The other extreme: the harness kills the mail system, tells both LazyFS processes
    /// to write all unsynced data to the disk below (`lazyfs::cache-checkpoint`), then
    /// kills them. Only directory entries (with the fsyncdir patch) are lost: this finds
    /// a file's data made durable before the name it needs.
    Checkpoint,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::At(p, t) => write!(f, "{}:{}", p.name, t.name()),
            Fault::Power => f.write_str("power"),
            Fault::Clear => f.write_str("clear"),
            Fault::Checkpoint => f.write_str("checkpoint"),
        }
    }
}

impl Fault {
    /// The LazyFS command that arms the fault, and the disk whose LazyFS gets it.
    pub fn command(&self) -> Option<(Disk, String)> {
        let Fault::At(p, t) = self else { return None };
        let mut c = format!(
            "lazyfs::crash::timing={}::op={}::from_rgx=",
            t.name(),
            p.op.lazyfs_name()
        );
        if p.op.two_paths() {
            // LazyFS checks only the destination of a two-path operation once a source
            // pattern is given, and never fires when none is: give both.
            c.push('/');
            c.push_str(p.disk.backing_name());
            c.push_str("/::to_rgx=");
        }
        c.push_str(p.pattern);
        Some((p.disk, c))
    }

    /// True for the faults at a step that happens once in a case (the mbox is made by
    /// its first delivery): they are armed as the mail starts, with no warm-up.
    pub fn at_first_delivery(&self) -> bool {
        matches!(self, Fault::At(p, _) if matches!(p.name, "local.mbox.create" | "local.mbox.dirsync"))
    }

    /// True for the faults that need the fsyncdir patch of LazyFS.
    pub fn needs_fsyncdir(&self) -> bool {
        matches!(self, Fault::At(p, _) if p.op == Op::Fsyncdir)
    }
}

/// Every fault: each point before and after, then power and clear.
pub fn all_faults() -> Vec<Fault> {
    let mut v = Vec::new();
    for p in POINTS {
        v.push(Fault::At(p, Timing::Before));
        v.push(Fault::At(p, Timing::After));
    }
    v.push(Fault::Power);
    v.push(Fault::Clear);
    v.push(Fault::Checkpoint);
    v
}

/// Reads a comma-separated list of fault names: `NAME:before`, `NAME:after`, `NAME`
/// (both timings), a prefix ending in `*` (`queue.*`, `local.new.*:after`), `power`,
/// `clear`, `checkpoint` or `all`. Duplicates are dropped; the order of the list is kept.
pub fn parse_faults(spec: &str) -> Result<Vec<Fault>, String> {
    let mut out: Vec<Fault> = Vec::new();
    for word in spec.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let found: Vec<Fault> = match word {
            "all" => all_faults(),
            "power" => vec![Fault::Power],
            "clear" => vec![Fault::Clear],
            "checkpoint" => vec![Fault::Checkpoint],
            _ => {
                let (name, timing) = match word.rsplit_once(':') {
                    Some((n, "before")) => (n, Some(Timing::Before)),
                    Some((n, "after")) => (n, Some(Timing::After)),
                    Some(_) => return Err(format!("{word}: the timing is before or after")),
                    None => (word, None),
                };
                let matches = |p: &&Point| match name.strip_suffix('*') {
                    Some(prefix) => p.name.starts_with(prefix),
                    None => p.name == name,
                };
                let timings: &[Timing] = match timing {
                    Some(Timing::Before) => &[Timing::Before],
                    Some(Timing::After) => &[Timing::After],
                    None => &[Timing::Before, Timing::After],
                };
                let v: Vec<Fault> = POINTS
                    .iter()
                    .filter(matches)
                    .flat_map(|p| timings.iter().map(move |t| Fault::At(p, *t)))
                    .collect();
                if v.is_empty() {
                    return Err(format!("{word}: no such fault point (see -l)"));
                }
                v
            }
        };
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    if out.is_empty() {
        return Err("no fault named".into());
    }
    Ok(out)
}

/// The table printed by `-l`.
pub fn describe() -> String {
    let mut t = String::new();
    for p in POINTS {
        t.push_str(&format!(
            "{:<20} {:<8} {:<9} {}{}\n",
            p.name,
            match p.disk {
                Disk::Queue => "queue",
                Disk::Maildir => "Maildir",
            },
            p.op.lazyfs_name(),
            p.what,
            if p.op == Op::Fsyncdir {
                " (needs the fsyncdir patch)"
            } else {
                ""
            }
        ));
    }
    t.push_str("power                kill both LazyFS processes at a random instant\n");
    t.push_str(
        "clear                stop the mail system, then lazyfs::clear-cache at a random instant\n",
    );
    t.push_str(
        "checkpoint           stop the mail system, lazyfs::cache-checkpoint, then kill both LazyFS\n",
    );
    t
}

/// One crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub number: usize,
    pub fault: Fault,
    /// How long the mail is sent before the fault is armed (for power and clear: before
    /// the power goes).
    pub warmup_ms: u64,
}

/// The cases of a run: every fault `repeat` times, in order, each with a warm-up drawn
/// from the seed in `min_ms..=max_ms` (none for the faults
/// [at the first delivery](Fault::at_first_delivery)).
pub fn cases(faults: &[Fault], repeat: usize, seed: u64, min_ms: u64, max_ms: u64) -> Vec<Case> {
    let mut rng = Rng::new(seed ^ 0x706c_616e);
    let span = max_ms.saturating_sub(min_ms) + 1;
    let mut v: Vec<Case> = Vec::new();
    for _ in 0..repeat {
        for f in faults {
            let warmup_ms = min_ms + rng.below(span);
            v.push(Case {
                number: v.len() + 1,
                fault: *f,
                warmup_ms: if f.at_first_delivery() { 0 } else { warmup_ms },
            });
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_patterns_name_their_disk() {
        let mut names: Vec<&str> = POINTS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), POINTS.len());
        for p in POINTS {
            let dir = format!("/{}/", p.disk.backing_name());
            assert!(p.pattern.starts_with(&dir), "{}", p.name);
            assert!(!p.pattern.contains("::"), "{}", p.name);
        }
    }

    #[test]
    fn commands_fit_lazyfs_s_read_buffer() {
        // LazyFS reads at most 100 bytes per command and replaces the last one by NUL.
        for f in all_faults() {
            if let Some((_, c)) = f.command() {
                assert!(c.len() + 1 < 100, "{f}: {c}");
                assert!(!c.contains('\n'));
            }
        }
    }

    #[test]
    fn commands_are_lazyfs_s_syntax() {
        let f = parse_faults("queue.todo.link:after").unwrap();
        assert_eq!(
            f[0].command(),
            Some((
                Disk::Queue,
                "lazyfs::crash::timing=after::op=link::from_rgx=/lq/::to_rgx=/lq/todo/".into()
            ))
        );
        let f = parse_faults("local.tmp.fsync:before").unwrap();
        assert_eq!(
            f[0].command(),
            Some((
                Disk::Maildir,
                "lazyfs::crash::timing=before::op=fsync::from_rgx=/lm/tmp/".into()
            ))
        );
        let f = parse_faults("pop3.cur.rename:before").unwrap();
        assert_eq!(
            f[0].command(),
            Some((
                Disk::Maildir,
                "lazyfs::crash::timing=before::op=rename::from_rgx=/lm/::to_rgx=/lm/cur/".into()
            ))
        );
        assert_eq!(Fault::Power.command(), None);
        assert!(parse_faults("queue.todo.dirsync:after").unwrap()[0].needs_fsyncdir());
        assert!(!parse_faults("queue.todo.link:after").unwrap()[0].needs_fsyncdir());
    }

    #[test]
    fn fault_lists() {
        assert_eq!(all_faults().len(), POINTS.len() * 2 + 3);
        let f = parse_faults("queue.todo.link,power,queue.todo.link:after").unwrap();
        let names: Vec<String> = f.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["queue.todo.link:before", "queue.todo.link:after", "power"]
        );
        let f = parse_faults("local.*:after").unwrap();
        assert!(f.len() >= 5);
        assert!(
            f.iter()
                .all(|f| matches!(f, Fault::At(p, Timing::After) if p.name.starts_with("local.")))
        );
        assert_eq!(parse_faults("all").unwrap(), all_faults());
        assert!(parse_faults("queue.nothing").is_err());
        assert!(parse_faults("queue.todo.link:during").is_err());
        assert!(parse_faults(" , ").is_err());
        // Every name printed by Display reads back as itself.
        for f in all_faults() {
            assert_eq!(parse_faults(&f.to_string()).unwrap(), vec![f]);
        }
    }

    #[test]
    fn cases_are_numbered_repeatable_and_bounded() {
        let faults = parse_faults("power,clear").unwrap();
        let a = cases(&faults, 3, 7, 100, 200);
        assert_eq!(a.len(), 6);
        assert_eq!(a, cases(&faults, 3, 7, 100, 200));
        for (i, c) in a.iter().enumerate() {
            assert_eq!(c.number, i + 1);
            assert!((100..=200).contains(&c.warmup_ms));
            assert_eq!(c.fault, faults[i % 2]);
        }
        assert_eq!(cases(&faults, 1, 7, 50, 50)[0].warmup_ms, 50);
        // The mbox is made once: its faults are armed at once.
        let f = parse_faults("local.mbox.*:before").unwrap();
        let c = cases(&f, 1, 7, 50, 50);
        let names: Vec<String> = c
            .iter()
            .map(|c| format!("{} {}", c.fault, c.warmup_ms))
            .collect();
        assert_eq!(
            names,
            [
                "local.mbox.create:before 0",
                "local.mbox.write:before 50",
                "local.mbox.fsync:before 50",
                "local.mbox.dirsync:before 0"
            ]
        );
    }

    #[test]
    fn describe_and_the_man_page_list_every_point() {
        let d = describe();
        let man = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/rqmail-powerloss.8"),
        )
        .unwrap();
        for p in POINTS {
            assert!(d.contains(p.name));
            // The entry: .B name, then the step (operation, disk).
            let entry = format!(
                ".TP\n.B {}\n{} ({}, {})\n",
                p.name,
                p.what,
                p.op.lazyfs_name(),
                match p.disk {
                    Disk::Queue => "queue",
                    Disk::Maildir => "Maildir",
                }
            );
            assert!(man.contains(&entry), "rqmail-powerloss.8 lacks {entry:?}");
        }
    }
}
