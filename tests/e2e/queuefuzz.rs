//! The differential queue fuzzer (rqmail-queuefuzz, see RELIABILITY.md) in a short run on
//! rqmail alone: a case of every kind of damaged queue file next to a valid message, run
//! through the real qmail-start, qmail-send, the spawns and qmail-clean, and the queue
//! readers; then every case file kept in `fuzz/regressions/queuefuzz/` replayed.
//! `scripts/queuefuzz` is the long run, and the comparison with netqmail.

use rqmail_tests::{bin, bin_dir};
use std::path::Path;
use std::process::Command;

fn queuefuzz(args: &[&str]) -> String {
    let out = Command::new(bin("rqmail-queuefuzz"))
        .arg("-b")
        .arg(bin_dir())
        .args(args)
        .output()
        .expect("rqmail-queuefuzz");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\nrqmail failures: 0\n"), "{text}");
    assert!(text.ends_with("RESULT: PASS\n"), "{text}");
    text
}

#[test]
fn short_queuefuzz_run_every_kind_of_queue_file() {
    // One case of each of the twelve kinds, from a seed of the clock (printed).
    let text = queuefuzz(&["-c", "12"]);
    assert!(text.contains("\ncases: 12 in "), "{text}");
    for kind in [
        "todo",
        "intd",
        "mess",
        "info",
        "local",
        "remote",
        "bounce",
        "tcpto",
        "trigger",
        "sendmutex",
        "pid",
        "stray",
    ] {
        assert!(text.contains(&format!(" {kind} 1")), "{kind}: {text}");
    }
}

#[test]
fn queuefuzz_regression_cases_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/queuefuzz");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("fuzz/regressions/queuefuzz")
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".case"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut args = Vec::new();
    for f in &files {
        args.push("-r");
        args.push(f.as_str());
    }
    let text = queuefuzz(&args);
    assert!(
        text.contains(&format!("\ncases: {} in ", files.len())),
        "{text}"
    );
}
