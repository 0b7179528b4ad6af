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
        // Test tools (the crash-consistency and power-loss harnesses, the queue fuzzer)
        // are built but never installed.
        assert!(
            ["rqmail-crashtest", "rqmail-powerloss", "rqmail-queuefuzz"].contains(&p.as_str())
                || install::PROGRAMS.iter().any(|(n, _, _)| n == p),
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

/// The workspace's floors (README.md): which crates stand where.
const GROUND: [&str; 5] = ["control", "recipient", "qmail-tls", "dkim", "srs"];
const QUEUE_FLOOR: [&str; 1] = ["qmail-queue"];
const BESIDE: [&str; 2] = ["rqmail-tests", "rqmail-reliability"];

/// One workspace crate, as its Cargo.toml describes it.
struct Member {
    name: String,
    deps: Vec<String>,
    /// It builds programs (src/main.rs, src/bin/ or [[bin]]).
    programs: bool,
}

/// The names in a manifest's `[dependencies]` table (not dev-dependencies: tests may use
/// anything).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut v = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.split(['.', '=', ' ']).next() {
            v.push(name.trim().to_string());
        }
    }
    v
}

fn members() -> Vec<Member> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let top = fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let list = top
        .split_once("members = [")
        .and_then(|(_, r)| r.split_once(']'))
        .expect("workspace members")
        .0;
    list.split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|dir| {
            let manifest = fs::read_to_string(root.join(dir).join("Cargo.toml")).expect(dir);
            let name = manifest
                .lines()
                .find_map(|l| l.trim().strip_prefix("name = "))
                .expect("package name")
                .trim_matches('"')
                .to_string();
            let programs = root.join(dir).join("src/main.rs").exists()
                || root.join(dir).join("src/bin").is_dir()
                || manifest.contains("[[bin]]");
            Member {
                name,
                deps: dependencies(&manifest),
                programs,
            }
        })
        .collect()
}

#[test]
fn imports_point_down_the_floors_and_no_program_imports_another() {
    let all = members();
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    for must in GROUND.iter().chain(&QUEUE_FLOOR).chain(&BESIDE) {
        assert!(names.contains(must), "no workspace crate {must}: {names:?}");
    }
    let floor = |n: &str| -> Option<u8> {
        if GROUND.contains(&n) {
            Some(0)
        } else if QUEUE_FLOOR.contains(&n) {
            Some(1)
        } else if BESIDE.contains(&n) {
            None
        } else {
            Some(2)
        }
    };
    let program_crate =
        |n: &str| floor(n) == Some(2) && all.iter().any(|m| m.name == n && m.programs);
    let mut wrong = Vec::new();
    for m in &all {
        let Some(mine) = floor(&m.name) else {
            continue;
        };
        for d in m.deps.iter().filter(|d| names.contains(&d.as_str())) {
            let ok = match floor(d) {
                None => false,
                // A library on the programs' floor (no programs of its own) is shared
                // by programs; nothing else may stand on a program.
                Some(2) => !program_crate(d) && mine == 2,
                Some(f) => f < mine || (f == 0 && mine == 0 && GROUND[0] == d.as_str()),
            };
            if !ok {
                wrong.push(format!("{} imports {d}", m.name));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the floors: {wrong:?}");
    // The programs the README's table lists.
    for p in [
        "qmail-smtpd",
        "qmail-pop3",
        "qmail-send",
        "qmail-local",
        "qmail-remote",
        "qmail-inject",
        "qmail-qctl",
        "qmail-dkim",
        "qmail-authverify",
        "tcp-env",
        "install",
    ] {
        assert!(program_crate(p), "{p} is not a program crate");
    }
}

#[test]
fn the_manifest_reader_sees_dependencies() {
    let m = "[package]\nname = \"x\"\n\n[dependencies]\ncontrol.workspace = true\n# c\nnix = { workspace = true }\nlibc = \"0.2\"\n\n[dev-dependencies]\ntempfile.workspace = true\n";
    assert_eq!(dependencies(m), ["control", "nix", "libc"]);
}
