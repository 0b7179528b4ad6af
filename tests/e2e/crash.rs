//! The crash-consistency harness (rqmail-crashtest, see RELIABILITY.md) in a short run:
//! messages through SMTP and qmail-inject while random components are SIGKILLed; every
//! accepted message delivered, no bounce, nothing stuck after the cleanups, and the
//! queue passes rqmail-install -c. `scripts/crashtest COUNT DURATION` is the long run.

use rqmail_tests::{bin, bin_dir, tool};
use std::process::Command;

#[test]
fn short_crash_run_loses_nothing() {
    let _ = tool("tcpserver");
    let out = Command::new(bin("rqmail-crashtest"))
        .arg("-b")
        .arg(bin_dir())
        .args(["-k", "150", "300", "30"])
        .output()
        .expect("rqmail-crashtest");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\nlost: 0\n"), "{text}");
    assert!(text.contains("\nbounces: 0\n"), "{text}");
    assert!(text.contains("after the cleanups: 0\n"), "{text}");
    assert!(text.contains("rqmail-install -c: ok\n"), "{text}");
    assert!(text.ends_with("RESULT: PASS\n"), "{text}");
    // Something was really killed and something was really accepted.
    let kills: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("kills: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("kills line");
    assert!(kills > 0, "{text}");
    assert!(!text.contains("local 0/0, remote 0/0"), "{text}");
}
