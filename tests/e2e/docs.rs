//! Every program has a man page, every man page renders without warnings, and the
//! installer knows every program.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

fn man_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../man")
}

fn built_programs() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(rqmail_tests::bin_dir())
        .expect("bin dir")
        .flatten()
        .filter(|e| {
            let p = e.path();
            p.is_file()
                && fs::metadata(&p)
                    .map(|m| m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains('.') && !n.starts_with("rqmail_tests"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_program_has_a_man_page_and_is_installed() {
    let progs = built_programs();
    assert!(progs.iter().any(|p| p == "qmail-queue"), "{progs:?}");
    for p in &progs {
        let found = ["1", "5", "7", "8"]
            .iter()
            .any(|s| man_dir().join(format!("{p}.{s}")).exists());
        assert!(found, "no man page for {p} under man/");
        // Test tools (the crash-consistency harness) are built but never installed.
        assert!(
            p == "rqmail-crashtest" || install::PROGRAMS.iter().any(|(n, _, _)| n == p),
            "rqmail-install does not know the program {p}"
        );
    }
}

#[test]
fn man_pages_render_without_warnings() {
    let groff = rqmail_tests::tool("groff");
    let mut n = 0;
    for e in fs::read_dir(man_dir()).expect("man dir").flatten() {
        let p = e.path();
        let out = Command::new(&groff)
            .args(["-man", "-ww", "-z", "-Tutf8"])
            .arg(&p)
            .output()
            .expect("groff");
        assert!(out.status.success(), "{}: groff failed", p.display());
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        n += 1;
    }
    assert!(n >= 5, "only {n} man pages found");
}
