//! The start cost of the per-message programs: CPU time and minor page faults of one run,
//! from the kernel's accounting of the waited-for children (getrusage RUSAGE_CHILDREN):
//! exec, dynamic loading and relocation when there is any, reading the control files,
//! the program's work, exit. Time spent waiting (for fsync, for the peer) is not CPU time,
//! so the disk does not count.

use crate::inst::{self, Inst, LOCAL_RCPT, REMOTE_RCPT, SENDER};
use crate::measure::{Cfg, maildir_home};
use crate::sys::{self, Bg};
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The programs measured, with the line's text.
pub const PROGRAMS: [(&str, &str); 4] = [
    (
        "qmail-smtpd",
        "qmail-smtpd, exec to greeting and end of input",
    ),
    ("qmail-queue", "qmail-queue, one message"),
    ("qmail-local", "qmail-local, one delivery to a Maildir"),
    ("qmail-remote", "qmail-remote, one delivery to smtp-sink"),
];

/// Runs `make()` `runs` times, one after the other; returns (CPU ms, minor faults) per run.
/// A run that does not exit 0 is an error when `check`.
fn per_run(
    runs: u32,
    check: bool,
    mut make: impl FnMut() -> io::Result<Command>,
) -> io::Result<(f64, f64)> {
    let (cpu0, flt0) = sys::children_usage();
    for _ in 0..runs {
        let st = make()?.status()?;
        if check && !st.success() {
            return Err(io::Error::other(format!("exit status {st}")));
        }
    }
    let (cpu1, flt1) = sys::children_usage();
    let n = f64::from(runs);
    Ok(((cpu1 - cpu0) * 1000.0 / n, (flt1 - flt0) as f64 / n))
}

/// One program of one installation: (CPU ms, minor faults) per run, over `runs` runs.
pub fn program(inst: &mut Inst, prog: &str, runs: u32, cfg: &Cfg) -> io::Result<(f64, f64)> {
    let msgfile = cfg.work.join("startcost.msg");
    fs::write(&msgfile, inst::message(cfg.size, LOCAL_RCPT))?;
    match prog {
        // qmail-smtpd exits 1 at the end of its input without QUIT (netqmail's too).
        "qmail-smtpd" => per_run(runs, false, || {
            let mut c = inst.cmd("qmail-smtpd");
            c.env("TCPREMOTEIP", "127.0.0.1")
                .env("TCPREMOTEPORT", "40000")
                .env("TCPLOCALIP", "127.0.0.1")
                .env("TCPLOCALPORT", "25")
                .env("TCPLOCALHOST", "bench.example")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            Ok(c)
        }),
        "qmail-queue" => {
            let msg = inst::message(cfg.size, LOCAL_RCPT);
            let env = inst::envelope(LOCAL_RCPT);
            let (cpu0, flt0) = sys::children_usage();
            for _ in 0..runs {
                if !inst.inject(&msg, &env)? {
                    return Err(io::Error::other("qmail-queue failed"));
                }
            }
            let (cpu1, flt1) = sys::children_usage();
            inst::empty(&inst.queue())?;
            let n = f64::from(runs);
            Ok(((cpu1 - cpu0) * 1000.0 / n, (flt1 - flt0) as f64 / n))
        }
        "qmail-local" => {
            let (uid, gid) = sys::user_ids("alias")?;
            let home = maildir_home(inst, cfg);
            let new = home.join("Maildir/new");
            let r = per_run(runs, true, || {
                let mut c = inst.cmd("qmail-local");
                c.arg("--")
                    .args(["alias"])
                    .arg(&home)
                    .args(["bench", "", "", "bench.example", SENDER, "./Maildir/"])
                    .uid(uid)
                    .gid(gid)
                    .stdin(Stdio::from(fs::File::open(&msgfile)?))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                Ok(c)
            });
            for f in fs::read_dir(&new)?.flatten() {
                fs::remove_file(f.path())?;
            }
            r
        }
        "qmail-remote" => {
            let Some(sink) = &cfg.smtp_sink else {
                return Err(io::Error::other("smtp-sink missing"));
            };
            let port = sys::free_port()?;
            let mut c = cfg.postfix(sink);
            c.args(["-u", "nobody"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("64")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut sink = Bg::spawn("smtp-sink", c)?;
            crate::load::wait_listening(port)?;
            inst.set_control(
                "smtproutes",
                Some(&format!("sink.example:127.0.0.1:{port}\n")),
            )?;
            let r = per_run(runs, true, || {
                let mut c = inst.cmd("qmail-remote");
                c.args(["sink.example", SENDER, REMOTE_RCPT])
                    .stdin(Stdio::from(fs::File::open(&msgfile)?))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                Ok(c)
            });
            sink.stop(std::time::Duration::from_secs(5));
            r
        }
        _ => Err(io::Error::other(format!("unknown program {prog}"))),
    }
}
