//! How the installed programs are linked: each one is static or dynamic as README.md's
//! table "How the programs are linked" says (the build decides it per program, from the
//! `// rqmail-link: static` line of its source), and a static program that looks up an
//! id missing from /etc/passwd gets "no such user" instead of loading an NSS module it
//! cannot use.

use rqmail_tests::{bin_dir, is_root};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A uid and gid no account has (not in /etc/passwd or /etc/group).
const STRANGER: u32 = 54321;

/// How an ELF executable is linked: true for static (no program interpreter), false for
/// dynamic (a PT_INTERP header names the dynamic loader).
fn is_static(p: &Path) -> bool {
    let b = fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        b.len() > 64 && &b[..4] == b"\x7fELF",
        "{} is not ELF",
        p.display()
    );
    assert_eq!(b[4], 2, "{}: not a 64-bit ELF file", p.display());
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes")) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    let mut interp = false;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        if p_type == 3 {
            interp = true;
        }
    }
    !interp
}

/// The README's table: program name to "static" or "dynamic".
fn readme_table() -> BTreeMap<String, String> {
    let readme = fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## How the programs are linked\n")
        .nth(1)
        .expect("README.md has a section \"How the programs are linked\"");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut t = BTreeMap::new();
    for l in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 2 || !matches!(cells[1], "static" | "dynamic") {
            continue;
        }
        for name in cells[0].split(',') {
            let name = name.trim().trim_matches('`').to_string();
            assert!(
                t.insert(name.clone(), cells[1].to_string()).is_none(),
                "{name} is listed twice in README.md's table"
            );
        }
    }
    t
}

/// A command run as the stranger when the tests run as root, else as the caller.
fn as_stranger(program: &Path) -> Command {
    rqmail_tests::users::as_user(STRANGER, STRANGER, program)
}

/// A home installed by rqmail-install from this build, owned by the stranger (root) or
/// the caller (single-user mode either way).
fn installed_home() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::Builder::new()
        .prefix("rqmail-linking-")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    if is_root() {
        std::os::unix::fs::chown(d.path(), Some(STRANGER), Some(STRANGER)).expect("chown");
    }
    let home = d.path().join("home");
    let out = as_stranger(&bin_dir().join("rqmail-install"))
        .arg("-b")
        .arg(bin_dir())
        .arg(&home)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .output()
        .expect("run rqmail-install");
    assert!(
        out.status.success(),
        "rqmail-install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (d, home)
}

#[test]
fn installed_programs_are_linked_as_the_readme_says() {
    let table = readme_table();
    let (_d, home) = installed_home();
    let mut seen = Vec::new();
    for e in fs::read_dir(home.join("bin")).expect("bin/").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let want = table
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is installed but not in README.md's table"));
        let got = if is_static(&e.path()) {
            "static"
        } else {
            "dynamic"
        };
        assert_eq!(got, want, "{name} is linked {got}, README.md says {want}");
        seen.push(name);
    }
    for name in table.keys() {
        assert!(
            seen.contains(name),
            "README.md lists {name}, which is not installed"
        );
    }
    // The two the policy is about, whatever the table says.
    assert_eq!(table["qmail-lspawn"], "dynamic");
    assert_eq!(table["qmail-getpw"], "dynamic");
    assert_eq!(table["qmail-queue"], "static");
}

/// qmail-queue, linked statically, run by a uid that has no account: it looks the invoker
/// up (only to compare the name with alias, qmaild and qmails), finds nothing in
/// /etc/passwd and queues the message as "invoked by uid N". A static glibc asked to go
/// on to another NSS source (nss_systemd on Debian) would load a shared module and crash.
#[test]
fn static_program_run_by_an_unknown_uid_queues() {
    if !is_root() {
        eprintln!(
            "static_program_run_by_an_unknown_uid_queues: needs root (a uid with no account)"
        );
        return;
    }
    let (_d, home) = installed_home();
    let queue = home.join("bin/qmail-queue");
    assert!(is_static(&queue), "qmail-queue is expected to be static");
    let (r0, mut w0) = std::io::pipe().expect("pipe");
    w0.write_all(b"Subject: hello\n\nhi\n").expect("write");
    drop(w0);
    let (r1, mut w1) = std::io::pipe().expect("pipe");
    w1.write_all(b"Fa@example.org\0Tb@example.org\0\0")
        .expect("write");
    drop(w1);
    let out = as_stranger(&queue)
        .env_clear()
        .env("QMAIL_HOME", &home)
        .stdin(Stdio::from(r0))
        .stdout(Stdio::from(r1))
        .stderr(Stdio::piped())
        .output()
        .expect("run qmail-queue");
    assert_eq!(
        out.status.code(),
        Some(0),
        "qmail-queue as uid {STRANGER}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = Vec::new();
    rqmail_tests::walk(&home.join("queue/mess"), &mut files);
    let mess: Vec<_> = files.iter().filter(|p| p.is_file()).collect();
    assert_eq!(mess.len(), 1, "{files:?}");
    let text = fs::read_to_string(mess[0]).expect("read message");
    assert!(
        text.starts_with("Received: (qmail ")
            && text.contains(&format!("invoked by uid {STRANGER});")),
        "{text}"
    );
}
