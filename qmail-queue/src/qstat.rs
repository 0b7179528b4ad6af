//! qmail-qstat: how many messages are in the queue, and how many of them qmail-send has
//! not preprocessed yet, counted as netqmail's script counts them:
//!
//! * `messages in queue`: every entry below the (non-hidden) subdirectories of mess/,
//!   at any depth;
//! * `messages in queue but not yet preprocessed`: every entry below todo/, at any depth.
//!
//! Symbolic links are counted, not followed (as find(1) does). A directory that cannot be
//! read is reported on standard error and left out of the count; the counts are still
//! printed, and the exit code is then 111 (netqmail's script always exited 0).

use control::Exit;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// The two numbers qmail-qstat prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Entries below mess/S/.
    pub queued: u64,
    /// Entries below todo/.
    pub unprocessed: u64,
}

/// Counts the entries below `dir` (not `dir` itself); unreadable directories go to
/// `problems` with their error.
fn descendants(dir: &Path, problems: &mut Vec<(String, io::Error)>) -> u64 {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            problems.push((dir.display().to_string(), e));
            return 0;
        }
    };
    let mut n = 0;
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problems.push((dir.display().to_string(), e));
                continue;
            }
        };
        n += 1;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            n += descendants(&entry.path(), problems);
        }
    }
    n
}

/// Counts the queue directory `root` (relative paths in `problems` stay relative).
pub fn count(root: &Path, problems: &mut Vec<(String, io::Error)>) -> Counts {
    let mess = root.join("mess");
    let mut queued = 0;
    match fs::read_dir(&mess) {
        Ok(rd) => {
            for entry in rd.flatten() {
                if entry.file_name().as_encoded_bytes().starts_with(b".") {
                    continue;
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    queued += descendants(&entry.path(), problems);
                }
            }
        }
        Err(e) => problems.push((mess.display().to_string(), e)),
    }
    let unprocessed = descendants(&root.join("todo"), problems);
    Counts {
        queued,
        unprocessed,
    }
}

/// The report, exactly as netqmail prints it.
pub fn report(c: Counts) -> String {
    format!(
        "messages in queue: {}\nmessages in queue but not yet preprocessed: {}\n",
        c.queued, c.unprocessed
    )
}

/// The program: counts QMAIL_HOME/queue.
pub fn main() -> Exit {
    let mut problems = Vec::new();
    let home = control::qmail_home();
    let counts = match std::env::set_current_dir(&home) {
        Ok(()) => count(Path::new("queue"), &mut problems),
        Err(e) => {
            problems.push((home.display().to_string(), e));
            Counts::default()
        }
    };
    for (what, e) in &problems {
        eprintln!(
            "qmail-qstat: warning: unable to read {what}: {}",
            crate::qread::error_str(e)
        );
    }
    let mut out = io::stdout().lock();
    if out.write_all(report(counts).as_bytes()).is_err() || out.flush().is_err() {
        return Exit::TEMP;
    }
    if problems.is_empty() {
        Exit::OK
    } else {
        Exit::TEMP
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format() {
        assert_eq!(
            report(Counts {
                queued: 3,
                unprocessed: 1
            }),
            "messages in queue: 3\nmessages in queue but not yet preprocessed: 1\n"
        );
    }

    #[test]
    fn counting() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path();
        for s in ["mess/0", "mess/1", "mess/.hidden", "todo"] {
            fs::create_dir_all(q.join(s)).unwrap();
        }
        for f in [
            "mess/0/23",
            "mess/0/46",
            "mess/1/24",
            "mess/.hidden/9",
            "todo/46",
        ] {
            fs::write(q.join(f), "x").unwrap();
        }
        fs::write(q.join("mess/stray"), "").unwrap();
        let mut p = Vec::new();
        let c = count(q, &mut p);
        assert!(p.is_empty());
        assert_eq!(
            c,
            Counts {
                queued: 3,
                unprocessed: 1
            }
        );
        let mut p = Vec::new();
        let c = count(&q.join("nonexistent"), &mut p);
        assert_eq!(c, Counts::default());
        assert_eq!(p.len(), 2);
    }
}
