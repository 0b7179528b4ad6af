//! One mail system under test, and one case run on it.
//!
//! * rqmail: the programs of a build directory, hard-linked (or copied) into a home of
//!   the harness's own, run in single-user mode (as `nobody` when the harness is root);
//! * netqmail: an installation given by its home (its programs have it compiled in), run
//!   as root with the qmail ids, as netqmail must be.
//!
//! In both, qmail-local, qmail-getpw and qmail-remote are small scripts that record what
//! they are given in `spool/` (a recipient whose local part starts with `fail` fails
//! permanently): what is under test is qmail-start, qmail-send, the two spawns and
//! qmail-clean, and the programs that read the queue (qmail-qread, qmail-qstat,
//! qmail-qctl, qmail-tcpto; and the real qmail-remote, run on its own, for lock/tcpto).

use super::case::{self, BAD, Case, Node};
use crate::killer::ours;
use control::Ids;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which system a side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Rqmail,
    Netqmail,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Rqmail => "rqmail",
            Flavor::Netqmail => "netqmail",
        }
    }
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exit(i32),
    Signal(i32),
    /// Still running after the time allowed (then killed).
    Hung,
    /// Could not be started.
    NotRun(String),
}

impl Ended {
    pub fn text(&self) -> String {
        match self {
            Ended::Exit(c) => format!("exit {c}"),
            Ended::Signal(s) => format!("killed by signal {s}"),
            Ended::Hung => "hung (killed)".into(),
            Ended::NotRun(e) => format!("not run: {e}"),
        }
    }

    /// Crashed or hung: what no program may do, whatever it reads.
    pub fn broken(&self) -> bool {
        matches!(self, Ended::Signal(_) | Ended::Hung)
    }
}

/// A program run over the queue: how it ended and what it printed (standard output and
/// standard error, each cut at 64 KiB).
#[derive(Debug, Clone)]
pub struct ToolRun {
    pub name: String,
    pub ended: Ended,
    pub out: Vec<u8>,
    pub err: Vec<u8>,
}

/// What running one case on one system gave.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// The good message's number.
    pub good: Option<u64>,
    /// The queue readers before qmail-send started.
    pub pre: Vec<ToolRun>,
    /// qmail-send's log.
    pub log: Vec<String>,
    /// How qmail-start/qmail-send ended.
    pub send: Option<Ended>,
    /// The deliveries the fake programs recorded (`local ADDR SENDER`, `remote ...`).
    pub delivered: Vec<String>,
    /// Whether the good message was delivered to both its recipients.
    pub good_delivered: bool,
    /// Each bounce delivered: `bounce ADDR <SENDER> CKSUM SIZE` of its text after the
    /// header (the collected failures and the copy of the message).
    pub bounces: Vec<String>,
    /// Problems of the harness's own checks (qmail-send died, hung, ...).
    pub failures: Vec<String>,
    /// The queue readers after qmail-send stopped, qmail-clean and qmail-remote.
    pub post: Vec<ToolRun>,
    /// The queue's entries after the run (normalized paths, types, small contents).
    pub queue_after: Vec<String>,
}

/// Time limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For the good message to be delivered.
    pub deliver: Duration,
    /// Quiet time in the log after that before qmail-send is stopped.
    pub quiet: Duration,
    /// For a queue reader to finish.
    pub tool: Duration,
    /// For qmail-send to exit after TERM.
    pub stop: Duration,
}

/// One system.
pub struct Side {
    pub flavor: Flavor,
    pub home: PathBuf,
    spool: PathBuf,
    /// rqmail as root: the user single-user mode runs as.
    runner: Option<(u32, u32)>,
    /// netqmail: the qmail ids.
    ids: Option<Ids>,
    _tmp: Option<tempfile::TempDir>,
}

const FAKE_GETPW: &str = r#"#!/bin/sh
# qmail-getpw local: every local part is the user that runs deliveries
printf '%s\0' USER UID GID SPOOL - "$1"
"#;

const FAKE_LOCAL: &str = r#"#!/bin/sh
# qmail-local -- user home local dash ext domain sender aliasempty
# A bounce (sender empty or #@[]): the checksum and size of its text after the header,
# which is the collected failures (bounce/N) and the copy of the message (mess/N).
case "$8" in
  ''|'#@[]') echo "bounce $4@$7 <$8> $(sed '1,/^$/d' | cksum)" >> SPOOL/bodies ;;
  *) cat > /dev/null ;;
esac
case "$4" in
  fail*) echo "Sorry, no mailbox here by that name. (#5.1.1)"; exit 100 ;;
esac
echo "local $4@$7 $8" >> SPOOL/delivered
echo "did 0+0+1/"
exit 0
"#;

const FAKE_REMOTE: &str = r#"#!/bin/sh
# qmail-remote host sender recip
case "$2" in
  ''|'#@[]') echo "bounce $3 <$2> $(sed '1,/^$/d' | cksum)" >> SPOOL/bodies ;;
  *) cat > /dev/null ;;
esac
echo "remote $3 $2" >> SPOOL/delivered
printf 'r\0K%s accepted message.\nRemote host said: 250 ok\n\0' "$1"
exit 0
"#;

/// The rqmail programs a home needs (the real qmail-remote is kept as qmail-remote.real).
const PROGRAMS: &[&str] = &[
    "qmail-start",
    "qmail-send",
    "qmail-lspawn",
    "qmail-rspawn",
    "qmail-clean",
    "qmail-queue",
    "qmail-qread",
    "qmail-qstat",
    "qmail-qctl",
    "qmail-tcpto",
    "qmail-remote",
];

fn io<T>(what: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn find_tool(name: &str) -> Result<PathBuf, String> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| format!("{name} is not installed"))
}

fn write_script(p: &Path, text: &str) -> Result<(), String> {
    let _ = fs::remove_file(p);
    io(&p.display().to_string(), fs::write(p, text))?;
    io(
        "chmod",
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)),
    )
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .map_or(65534, |u| u.uid.as_raw());
    let g = nix::unistd::Group::from_name("nogroup")
        .ok()
        .flatten()
        .map_or(65534, |g| g.gid.as_raw());
    (u, g)
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::lchown(p, Some(uid), Some(gid));
    if p.is_dir()
        && !p.is_symlink()
        && let Ok(rd) = fs::read_dir(p)
    {
        for e in rd.flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

/// Makes every directory below `p` usable again (a case may plant one with mode 0).
fn unlock_tree(p: &Path) {
    if p.is_dir() && !p.is_symlink() {
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                unlock_tree(&e.path());
            }
        }
    }
}

impl Side {
    /// rqmail's programs from `bindir` in a new home.
    pub fn rqmail(bindir: &Path) -> Result<Side, String> {
        let tmp = io(
            "temporary directory",
            tempfile::Builder::new()
                .prefix("rqmail-queuefuzz-")
                .tempdir(),
        )?;
        let home = tmp.path().to_path_buf();
        io(
            "chmod",
            fs::set_permissions(&home, fs::Permissions::from_mode(0o755)),
        )?;
        for d in ["bin", "control", "users", "alias", "spool"] {
            io("mkdir", fs::create_dir_all(home.join(d)))?;
        }
        for p in PROGRAMS {
            let from = bindir.join(p);
            let to = match *p {
                "qmail-remote" => home.join("bin/qmail-remote.real"),
                _ => home.join("bin").join(p),
            };
            // A hard link keeps /proc/PID/exe below this home, so that the harness knows
            // its processes from everyone else's.
            if fs::hard_link(&from, &to).is_err() {
                io(&from.display().to_string(), fs::copy(&from, &to))?;
            }
        }
        let runner = if is_root() { Some(nobody()) } else { None };
        let (uid, gid) = runner.unwrap_or((
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        ));
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| "nobody".to_string(), |u| u.name);
        let side = Side {
            flavor: Flavor::Rqmail,
            spool: home.join("spool"),
            home,
            runner,
            ids: None,
            _tmp: Some(tmp),
        };
        side.scripts(&user, uid, gid)?;
        side.controls()?;
        if let Some((u, g)) = runner {
            chown_tree(&side.home, u, g);
        }
        Ok(side)
    }

    /// The netqmail installation at `home` (built with that home compiled in). Its
    /// qmail-local, qmail-getpw and qmail-remote are replaced by the scripts (the real
    /// qmail-remote is kept as qmail-remote.real); its control files are set.
    pub fn netqmail(home: &Path) -> Result<Side, String> {
        if !is_root() {
            return Err("netqmail runs as root: run the harness as root for -n".into());
        }
        let ids = Ids::lookup().map_err(|e| format!("the qmail ids: {e}"))?;
        for p in [
            "bin/qmail-send",
            "bin/qmail-start",
            "bin/qmail-qread",
            "queue",
        ] {
            if !home.join(p).exists() {
                return Err(format!(
                    "{} has no {p}: not a netqmail home",
                    home.display()
                ));
            }
        }
        let real = home.join("bin/qmail-remote.real");
        if !real.exists() {
            io(
                "keep qmail-remote",
                fs::rename(home.join("bin/qmail-remote"), &real),
            )?;
        }
        let spool = home.join("spool");
        io("mkdir spool", fs::create_dir_all(&spool))?;
        io(
            "chmod spool",
            fs::set_permissions(&spool, fs::Permissions::from_mode(0o1777)),
        )?;
        let side = Side {
            flavor: Flavor::Netqmail,
            home: home.to_path_buf(),
            spool,
            runner: None,
            ids: Some(ids),
            _tmp: None,
        };
        let (u, g) = nobody();
        side.scripts("nobody", u, g)?;
        side.controls()?;
        Ok(side)
    }

    fn scripts(&self, user: &str, uid: u32, gid: u32) -> Result<(), String> {
        let spool = self.spool.display().to_string();
        let fill = |s: &str| {
            s.replace("SPOOL", &spool)
                .replace("USER", user)
                .replace("UID", &uid.to_string())
                .replace("GID", &gid.to_string())
        };
        let bin = self.home.join("bin");
        write_script(&bin.join("qmail-getpw"), &fill(FAKE_GETPW))?;
        write_script(&bin.join("qmail-local"), &fill(FAKE_LOCAL))?;
        write_script(&bin.join("qmail-remote"), &fill(FAKE_REMOTE))
    }

    fn controls(&self) -> Result<(), String> {
        let c = self.home.join("control");
        for (name, text) in [
            ("me", format!("{}\n", case::LOCAL_DOMAIN)),
            ("locals", format!("{}\n", case::LOCAL_DOMAIN)),
            ("rcpthosts", format!("{}\n", case::LOCAL_DOMAIN)),
            // The real qmail-remote, run on its own, connects where nothing listens.
            (
                "smtproutes",
                format!("{}:127.0.0.2:1\n", case::REMOTE_DOMAIN),
            ),
            ("timeoutconnect", "5\n".into()),
        ] {
            io(&format!("control/{name}"), fs::write(c.join(name), text))?;
        }
        Ok(())
    }

    pub fn queue(&self) -> PathBuf {
        self.home.join("queue")
    }

    /// A command running `program` (a path) as this system runs its programs.
    fn cmd(&self, program: &Path) -> Command {
        let mut c = match (self.flavor, self.runner) {
            (Flavor::Rqmail, Some(_)) => {
                let mut c = Command::new(find_tool("setpriv").unwrap_or_else(|_| "setpriv".into()));
                c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                    .arg(program);
                c
            }
            _ => Command::new(program),
        };
        c.env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.home.join("bin").display()),
            )
            .current_dir(&self.home);
        if self.flavor == Flavor::Rqmail {
            c.env("QMAIL_HOME", &self.home);
        }
        c
    }

    /// A command running the program as the qmail user `user` (netqmail), or as rqmail's
    /// runner.
    fn cmd_as(&self, program: &Path, user: &str) -> Command {
        if self.flavor == Flavor::Rqmail {
            return self.cmd(program);
        }
        let mut c = Command::new(find_tool("setpriv").unwrap_or_else(|_| "setpriv".into()));
        c.arg(format!("--reuid={user}"))
            .args(["--regid=qmail", "--clear-groups"])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(&self.home);
        c
    }

    /// The owner of a planted entry.
    fn owner(&self, rel: &str) -> Option<(u32, u32)> {
        if let Some(r) = self.runner {
            return Some(r);
        }
        let ids = self.ids.as_ref()?;
        let top = rel.split('/').next().unwrap_or("");
        let uid = match (top, rel) {
            (_, "lock/tcpto") => ids.qmailr,
            (_, "lock/sendmutex" | "lock/trigger") => ids.qmails,
            ("info" | "local" | "remote" | "bounce", _) => ids.qmails,
            _ => ids.qmailq,
        };
        Some((uid.as_raw(), ids.qmail.as_raw()))
    }

    /// Ends whatever of this home still runs (by pid: only programs under its bin/).
    fn kill_leftovers(&self) {
        for (pid, _) in ours(&self.home) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// An empty queue with this system's owners, and an empty spool.
    fn reset(&self) -> Result<(), String> {
        self.kill_leftovers();
        let q = self.queue();
        unlock_tree(&q);
        if q.exists() {
            io("remove the queue", fs::remove_dir_all(&q))?;
        }
        let ids = self.ids.clone().unwrap_or_else(Ids::single_user);
        io("create the queue", qmail_queue::create_queue(&q, &ids))?;
        if let Some((u, g)) = self.runner {
            chown_tree(&q, u, g);
        }
        for name in ["delivered", "bodies"] {
            let d = self.spool.join(name);
            let _ = fs::remove_file(&d);
            io("spool", fs::write(&d, b""))?;
            io(
                "chmod",
                fs::set_permissions(&d, fs::Permissions::from_mode(0o666)),
            )?;
        }
        Ok(())
    }

    /// Writes the case's entries into the queue.
    fn plant(&self, c: &Case) -> Result<(), String> {
        for p in &c.plants {
            let path = self.queue().join(&p.path);
            let what = p.path.clone();
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                io(&what, fs::remove_dir_all(&path))?;
            } else {
                let _ = fs::remove_file(&path);
            }
            match &p.node {
                Node::File(d) => io(&what, fs::write(&path, d))?,
                Node::Dir => io(&what, fs::create_dir(&path))?,
                Node::Fifo => io(
                    &what,
                    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .map_err(std::io::Error::from),
                )?,
                Node::Symlink(t) => io(&what, std::os::unix::fs::symlink(t, &path))?,
                Node::Missing => continue,
            }
            if let Some((u, g)) = self.owner(&p.path) {
                io(&what, std::os::unix::fs::lchown(&path, Some(u), Some(g)))?;
            }
            if matches!(p.node, Node::Symlink(_)) {
                continue;
            }
            let mode = p.mode.unwrap_or_else(|| default_mode(&p.path, &p.node));
            if let Some(age) = p.age {
                let t = i64::try_from(control::now().saturating_sub(age)).unwrap_or(0);
                let tv = nix::sys::time::TimeVal::new(t, 0);
                io(
                    &what,
                    nix::sys::stat::utimes(&path, &tv, &tv).map_err(std::io::Error::from),
                )?;
            }
            io(
                &what,
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)),
            )?;
        }
        Ok(())
    }

    /// Runs a program with a time limit; standard input from `input`.
    fn tool(&self, name: &str, mut c: Command, input: &[u8], limit: Duration) -> ToolRun {
        let run = |c: &mut Command| -> Result<(Ended, Vec<u8>, Vec<u8>), String> {
            let dir = io("temporary directory", tempfile::tempdir())?;
            let (i, o, e) = (
                dir.path().join("in"),
                dir.path().join("out"),
                dir.path().join("err"),
            );
            io("input", fs::write(&i, input))?;
            c.stdin(io("input", fs::File::open(&i))?)
                .stdout(io("output", fs::File::create(&o))?)
                .stderr(io("output", fs::File::create(&e))?);
            let mut child = io(name, c.spawn())?;
            let ended = wait_for(&mut child, limit);
            let read = |p: &Path| {
                let mut v = fs::read(p).unwrap_or_default();
                v.truncate(64 * 1024);
                v
            };
            Ok((ended, read(&o), read(&e)))
        };
        match run(&mut c) {
            Ok((ended, out, err)) => ToolRun {
                name: name.to_string(),
                ended,
                out,
                err,
            },
            Err(e) => ToolRun {
                name: name.to_string(),
                ended: Ended::NotRun(e),
                out: Vec::new(),
                err: Vec::new(),
            },
        }
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.home.join("bin").join(name)
    }

    /// The queue readers: qmail-qread, qmail-qstat, qmail-tcpto, and for rqmail
    /// qmail-qctl's list and show.
    fn readers(&self, limit: Duration) -> Vec<ToolRun> {
        let mut v = vec![
            self.tool(
                "qmail-qread",
                self.cmd(&self.bin("qmail-qread")),
                b"",
                limit,
            ),
            self.tool(
                "qmail-qstat",
                self.cmd(&self.bin("qmail-qstat")),
                b"",
                limit,
            ),
            self.tool(
                "qmail-tcpto",
                self.cmd(&self.bin("qmail-tcpto")),
                b"",
                limit,
            ),
        ];
        if self.flavor == Flavor::Rqmail {
            let mut l = self.cmd(&self.bin("qmail-qctl"));
            l.arg("list");
            v.push(self.tool("qmail-qctl list", l, b"", limit));
            let mut s = self.cmd(&self.bin("qmail-qctl"));
            s.args(["show", &BAD.to_string()]);
            v.push(self.tool("qmail-qctl show", s, b"", limit));
        }
        v
    }

    /// Queues the good message with this system's qmail-queue; returns its number.
    fn inject(&self) -> Result<u64, String> {
        let before = self.todo_ids();
        let mut env = format!("F{}\0", case::GOOD_SENDER).into_bytes();
        for r in [case::GOOD_LOCAL, case::GOOD_REMOTE] {
            env.extend(format!("T{r}\0").into_bytes());
        }
        env.push(0);
        let (env_r, env_w) = io(
            "pipe",
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from),
        )?;
        io("envelope", fs::File::from(env_w).write_all(&env))?;
        let mut c = self.cmd(&self.bin("qmail-queue"));
        c.stdin(Stdio::piped())
            .stdout(Stdio::from(env_r))
            .stderr(Stdio::null());
        let mut child = io("qmail-queue", c.spawn())?;
        if let Some(mut i) = child.stdin.take() {
            io("message", i.write_all(case::GOOD_TEXT.as_bytes()))?;
        }
        match wait_for(&mut child, Duration::from_secs(60)) {
            Ended::Exit(0) => {}
            e => return Err(format!("qmail-queue: {}", e.text())),
        }
        let new: Vec<u64> = self
            .todo_ids()
            .into_iter()
            .filter(|i| !before.contains(i))
            .collect();
        match new.as_slice() {
            [id] if *id != BAD => Ok(*id),
            _ => Err(format!("cannot tell the good message in todo/: {new:?}")),
        }
    }

    fn todo_ids(&self) -> Vec<u64> {
        qmail_queue::ids_in(&self.queue().join("todo"))
            .map(|it| it.filter_map(Result::ok).collect())
            .unwrap_or_default()
    }

    fn delivered(&self) -> Vec<String> {
        fs::read_to_string(self.spool.join("delivered"))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Runs one case: resets the queue, plants the case, queues the good message, reads
    /// the queue, runs qmail-send until the good message is delivered and the log is
    /// quiet, stops it, reads the queue again and runs qmail-clean (and, for lock/tcpto,
    /// the real qmail-remote) over it.
    pub fn run(&self, c: &Case, lim: &Limits, logdir: &Path) -> Result<Run, String> {
        self.reset()?;
        self.plant(c)?;
        let mut run = Run::default();
        let good = self.inject()?;
        run.good = Some(good);
        run.pre = self.readers(lim.tool);

        let log_path = logdir.join(format!("{}.log", self.flavor.name()));
        let log = io("log", fs::File::create(&log_path))?;
        let err = io("log", log.try_clone())?;
        let mut c_start = self.cmd(&self.bin("qmail-start"));
        c_start
            .arg("./Maildir/")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let mut send = io("qmail-start", c_start.spawn())?;
        let read_log = || {
            fs::read_to_string(&log_path)
                .map(|s| s.lines().map(str::to_string).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let good_local = format!("local {} {}", case::GOOD_LOCAL, case::GOOD_SENDER);
        let good_remote = format!("remote {} {}", case::GOOD_REMOTE, case::GOOD_SENDER);
        let end_good = format!("end msg {good}");
        let started = Instant::now();
        let mut exited = None;
        let (mut last_len, mut last_change) = (0, Instant::now());
        loop {
            if let Ok(Some(st)) = send.try_wait() {
                exited = Some(ended_of(st));
                break;
            }
            let lines = read_log();
            if lines.len() != last_len {
                last_len = lines.len();
                last_change = Instant::now();
            }
            let d = self.delivered();
            let done =
                d.contains(&good_local) && d.contains(&good_remote) && lines.contains(&end_good);
            if done && last_change.elapsed() >= lim.quiet {
                run.good_delivered = true;
                break;
            }
            if started.elapsed() > lim.deliver {
                run.good_delivered = done;
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let ended = match exited {
            Some(e) => {
                run.failures
                    .push(format!("qmail-send ended by itself: {}", e.text()));
                e
            }
            None => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(send.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let e = wait_for(&mut send, lim.stop);
                if e == Ended::Hung {
                    run.failures.push(format!(
                        "qmail-send did not exit within {:?} of TERM",
                        lim.stop
                    ));
                }
                e
            }
        };
        run.send = Some(ended);
        // The spawns and qmail-clean end once qmail-send is gone.
        let deadline = Instant::now() + lim.stop;
        while !ours(&self.home).is_empty() {
            if Instant::now() > deadline {
                let left: Vec<String> = ours(&self.home).into_iter().map(|(_, n)| n).collect();
                run.failures.push(format!(
                    "still running after qmail-send ended: {}",
                    left.join(", ")
                ));
                self.kill_leftovers();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        run.log = read_log();
        run.delivered = self.delivered();
        run.bounces = fs::read_to_string(self.spool.join("bodies"))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default();

        run.post = self.readers(lim.tool);
        let clean_in = format!("todo/{BAD}\0foop/{BAD}\0");
        run.post.push(self.tool(
            "qmail-clean",
            self.cmd_as(&self.bin("qmail-clean"), "qmailq"),
            clean_in.as_bytes(),
            lim.tool,
        ));
        if c.kind == case::Kind::Tcpto {
            let mut r = self.cmd_as(&self.bin("qmail-remote.real"), "qmailr");
            r.args([case::REMOTE_DOMAIN, case::GOOD_SENDER, case::GOOD_REMOTE]);
            run.post
                .push(self.tool("qmail-remote", r, case::GOOD_TEXT.as_bytes(), lim.tool));
            run.post.push(self.tool(
                "qmail-tcpto after qmail-remote",
                self.cmd(&self.bin("qmail-tcpto")),
                b"",
                lim.tool,
            ));
        }
        run.queue_after = listing(&self.queue(), good);
        Ok(run)
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        self.kill_leftovers();
        unlock_tree(&self.queue());
    }
}

/// The mode netqmail gives a file at `rel`: qmail-queue's 0644 for its files (umask 033),
/// qmail-send's 0600 (umask 077), the lock files' of hier.
fn default_mode(rel: &str, node: &Node) -> u32 {
    match (rel.split('/').next().unwrap_or(""), rel, node) {
        (_, _, Node::Dir) => 0o755,
        (_, "lock/trigger", _) => 0o622,
        (_, "lock/tcpto", _) => 0o644,
        ("mess" | "intd" | "todo" | "pid", _, _) => 0o644,
        _ => 0o600,
    }
}

fn ended_of(st: std::process::ExitStatus) -> Ended {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => Ended::Exit(c),
        (None, Some(s)) => Ended::Signal(s),
        _ => Ended::Exit(-1),
    }
}

/// Waits for `child` at most `limit`; kills it then.
fn wait_for(child: &mut Child, limit: Duration) -> Ended {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return ended_of(st),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Ended::Hung;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Ended::NotRun(e.to_string()),
        }
    }
}

/// The queue's entries, one line each: the path with message numbers written `G` (the
/// good message), `B` (the bad one) or `M` (any other, a bounce say) and split
/// subdirectories as `*`, the type, and for the bad message's files their contents when
/// short. Sorted; lock/ and pid/ are left out.
pub fn listing(q: &Path, good: u64) -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) {
        let Ok(rd) = fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let p = e.path();
            out.push((r.clone(), p.clone()));
            if p.is_dir() && !p.is_symlink() {
                walk(&p, &r, out);
            }
        }
    }
    let mut all = Vec::new();
    walk(q, "", &mut all);
    let mut v = Vec::new();
    for (rel, p) in all {
        let parts: Vec<&str> = rel.split('/').collect();
        if matches!(parts[0], "lock" | "pid") {
            continue;
        }
        let md = fs::symlink_metadata(&p);
        let is_dir = md.as_ref().is_ok_and(fs::Metadata::is_dir);
        // Split subdirectories themselves are not listed.
        if is_dir && parts.len() == 2 && ["mess", "info", "local", "remote"].contains(&parts[0]) {
            continue;
        }
        if parts.len() == 1 {
            continue;
        }
        let last = parts[parts.len() - 1];
        let id = qmail_queue::message_id(last.as_bytes());
        let canonical = id.is_some_and(|i| i.to_string() == last);
        let name = match id {
            Some(i) if canonical && i == good => "G".to_string(),
            Some(i) if canonical && i == BAD => "B".to_string(),
            Some(_) if canonical => "M".to_string(),
            _ => last.to_string(),
        };
        let mut shown: Vec<String> = parts[..parts.len() - 1]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        if shown.len() == 2 && canonical {
            shown[1] = "*".into();
        }
        shown.push(name.clone());
        let kind = match md {
            Ok(m) if m.file_type().is_symlink() => "symlink".to_string(),
            Ok(m) if m.is_dir() => "dir".to_string(),
            Ok(m) if m.file_type().is_file() => {
                if name == "B" && m.len() <= 256 && parts[0] != "mess" {
                    let d = fs::read(&p).unwrap_or_default();
                    format!("file {:?}", String::from_utf8_lossy(&d))
                } else {
                    "file".to_string()
                }
            }
            Ok(_) => "special".to_string(),
            Err(_) => "gone".to_string(),
        };
        v.push(format!("{} {kind}", shown.join("/")));
    }
    v.sort();
    v
}
