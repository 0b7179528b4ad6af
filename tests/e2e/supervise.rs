//! Supervision files for qmail-send (services/daemontools/qmail-send, services/systemd/
//! qmail-send.service): the scripts are valid sh, the daemontools run script started by
//! svscan in single-user mode logs qmail-send's "status:" line through multilog, and the
//! systemd unit's command logs it on standard output (the journal), passing the whole of
//! control/defaultdelivery to qmail-lspawn.

use rqmail_tests::users::as_user;
use rqmail_tests::{Home, KillOnDrop, is_root, tool, user_ids};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn services() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../services")
}

/// The status line qmail-send writes when it starts (netqmail's defaults).
const STATUS: &str = "status: local 0/10 remote 0/20";

/// When root, everything runs as nobody (single-user mode); the home must be theirs.
fn single_user_home() -> Home {
    let home = Home::new();
    if is_root() {
        let (uid, gid) = user_ids("nobody");
        home.chown_all(uid, gid);
    }
    home
}

/// A command run as nobody when root, as this user otherwise, with a small environment.
fn as_single_user(prog: &Path) -> Command {
    let mut c = if is_root() {
        let (uid, gid) = user_ids("nobody");
        as_user(uid, gid, prog)
    } else {
        Command::new(prog)
    };
    c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin");
    c
}

/// The processes whose parent is `pid`, with their command lines (NUL-separated).
fn children(pid: u32) -> Vec<(u32, Vec<u8>)> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid)
            && let Ok(cmd) = fs::read(format!("/proc/{p}/cmdline"))
        {
            v.push((p, cmd));
        }
    }
    v
}

/// The argument vector of qmail-lspawn started by qmail-send `pid` (waits for it).
fn lspawn_args(pid: u32) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((_, cmd)) = children(pid)
            .into_iter()
            .find(|(_, c)| c.starts_with(b"qmail-lspawn\0"))
        {
            return cmd
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
        }
        assert!(Instant::now() < deadline, "no qmail-lspawn under {pid}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The ExecStart= command of a unit, unquoted as systemd does for this simple form
/// (`/bin/sh -c '...'`), with `$$` turned back into `$`.
fn exec_start(unit: &str) -> (String, String) {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let (prog, rest) = line.split_once(" -c '").expect("/bin/sh -c '...'");
    let script = rest.strip_suffix('\'').expect("closing quote");
    assert!(!script.contains('\''), "nested quotes: {script}");
    (prog.to_string(), script.replace("$$", "$"))
}

#[test]
fn service_files_are_valid() {
    let sh = tool("sh");
    for f in [
        "daemontools/qmail-send/run",
        "daemontools/qmail-send/log/run",
    ] {
        let p = services().join(f);
        let md = fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            md.permissions().mode() & 0o111,
            0o111,
            "{f} is not executable"
        );
        let text = fs::read_to_string(&p).expect("read");
        assert!(text.starts_with("#!/bin/sh\n"), "{f}");
        let out = Command::new(&sh).arg("-n").arg(&p).output().expect("sh -n");
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let unit = fs::read_to_string(services().join("systemd/qmail-send.service")).expect("unit");
    for key in [
        "[Unit]",
        "[Service]",
        "[Install]",
        "StandardOutput=journal",
        "KillMode=mixed",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Environment=QMAIL_HOME=/var/qmail",
    ] {
        assert!(
            unit.lines().any(|l| l == key),
            "{key} missing from the unit"
        );
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let copy = tmp.path().join("qmail-send.service");
    fs::write(&copy, &unit).expect("copy");
    let out = Command::new(tool("systemd-analyze"))
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    let (prog, script) = exec_start(&unit);
    assert_eq!(prog, "/bin/sh");
    let out = Command::new(&sh)
        .args(["-n", "-c", &script])
        .output()
        .expect("sh -n");
    assert!(
        out.status.success(),
        "ExecStart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// svscan and the supervise processes it started: stopped (svc -dx) and killed on drop.
struct Svscan {
    scan: PathBuf,
    child: Option<KillOnDrop>,
}

impl Svscan {
    fn svc(&self, flags: &str, dirs: &[&str]) {
        for dir in dirs {
            let _ = as_single_user(&tool("svc"))
                .arg(flags)
                .arg(self.scan.join(dir))
                .status();
        }
    }
}

impl Drop for Svscan {
    fn drop(&mut self) {
        // svscan first, so that it does not start the services again.
        drop(self.child.take());
        self.svc("-dx", &["qmail-send", "qmail-send/log"]);
    }
}

fn wait_for_file_text(p: &Path, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = fs::read_to_string(p).unwrap_or_default();
        if text.contains(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{want:?} never appeared in {}: {text:?}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn daemontools_run_script_logs_status_through_multilog() {
    let home = single_user_home();
    let dd = "# delivered by the run script\n./Maildir/";
    home.control("defaultdelivery", &format!("{dd}\n"));
    let tmp = tempfile::Builder::new()
        .prefix("rqmail-svscan-")
        .tempdir()
        .expect("tmp");
    let scan = tmp.path().join("service");
    let svc = scan.join("qmail-send");
    fs::create_dir_all(svc.join("log")).expect("mkdir");
    for f in ["run", "log/run"] {
        fs::copy(
            services().join("daemontools/qmail-send").join(f),
            svc.join(f),
        )
        .expect("copy");
    }
    if is_root() {
        let (uid, gid) = user_ids("nobody");
        for p in [tmp.path(), &scan, &svc, &svc.join("log")] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
        }
    }
    let child = as_single_user(&tool("svscan"))
        .arg(&scan)
        .env("QMAIL_HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("svscan");
    let guard = Svscan {
        scan: scan.clone(),
        child: Some(KillOnDrop(child)),
    };
    let current = svc.join("log/main/current");
    let text = wait_for_file_text(&current, STATUS);
    // multilog's TAI64N stamp, then qmail-send's own line.
    let line = text.lines().find(|l| l.contains(STATUS)).expect("line");
    assert!(
        line.starts_with('@') && line[25..].starts_with(' '),
        "no TAI64N stamp: {line:?}"
    );
    assert_eq!(&line[26..], STATUS);

    // The whole defaultdelivery file reaches qmail-lspawn as one argument.
    let pid: u32 = wait_for_pid(&svc);
    assert_eq!(
        lspawn_args(pid),
        vec!["qmail-lspawn".to_string(), dd.to_string()]
    );

    // svc -d: TERM to qmail-send, which says it is exiting.
    guard.svc("-d", &["qmail-send"]);
    wait_for_file_text(&current, "status: exiting");
    drop(guard);
}

/// The pid supervise started for ./run (qmail-start became qmail-send): svstat's "(pid N)".
fn wait_for_pid(svc: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = as_single_user(&tool("svstat"))
            .arg(svc)
            .output()
            .expect("svstat");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(pid) = text
            .split("(pid ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|s| s.parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "svstat: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read_until(r: &mut impl BufRead, want: &str) -> String {
    let mut all = String::new();
    loop {
        let mut l = String::new();
        let n = r.read_line(&mut l).expect("read log");
        assert!(n > 0, "log ended before {want:?}: {all}");
        all.push_str(&l);
        if l.contains(want) {
            return all;
        }
    }
}

#[test]
fn systemd_unit_command_logs_status_on_stdout() {
    let unit = fs::read_to_string(services().join("systemd/qmail-send.service")).expect("unit");
    let (prog, script) = exec_start(&unit);
    let home = single_user_home();
    let mut child: Child = as_single_user(Path::new(&prog))
        .arg("-c")
        .arg(&script)
        // What Environment= sets, pointed at the test home.
        .env("QMAIL_HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let mut guard = KillOnDrop(child);
    let mut log = BufReader::new(stdout);
    let first = read_until(&mut log, STATUS);
    assert_eq!(first, format!("{STATUS}\n"));
    // Without control/defaultdelivery: ./Maildir/.
    assert_eq!(
        lspawn_args(pid),
        vec!["qmail-lspawn".to_string(), "./Maildir/".to_string()]
    );
    // systemctl stop: TERM to the main process (KillMode=mixed), which is qmail-send.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    read_until(&mut log, "status: exiting");
    let st = guard.0.wait().expect("wait");
    assert_eq!(st.code(), Some(0), "qmail-send's exit status: {st:?}");
}

#[test]
fn run_script_with_splogger_sends_status_to_syslog() {
    let home = single_user_home();
    let tmp = tempfile::Builder::new()
        .prefix("rqmail-splogger-")
        .tempdir()
        .expect("tmp");
    let sock_path = tmp.path().join("log");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&sock_path, fs::Permissions::from_mode(0o777)).expect("chmod");
    // The run script empties the environment, so the test's syslog socket is given to
    // splogger through env(1) inside SEND_LOGGER.
    let logger = format!("env SPLOGGER_SOCKET={} splogger qmail", sock_path.display());
    let child = as_single_user(&tool("sh"))
        .arg(services().join("daemontools/qmail-send/run"))
        .env("QMAIL_HOME", home.path())
        .env("SEND_LOGGER", &logger)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run");
    let pid = child.id();
    let mut guard = KillOnDrop(child);
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).expect("a syslog datagram");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    // <mail.info>Mmm dd hh:mm:ss qmail: SECONDS.MICROSECONDS status: ...
    assert!(msg.starts_with("<22>"), "{msg:?}");
    assert!(msg.contains(" qmail: "), "{msg:?}");
    assert!(msg.ends_with(&format!(" {STATUS}")), "{msg:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let n = sock.recv(&mut buf).expect("a syslog datagram");
    assert!(
        String::from_utf8_lossy(&buf[..n]).ends_with(" status: exiting"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let st = guard.0.wait().expect("wait");
    assert_eq!(st.code(), Some(0));
    // Nothing went to the run script's own output: the logger had it all.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut guard.0.stdout.take().expect("stdout"), &mut rest)
        .expect("read");
    assert_eq!(rest, "");
}
