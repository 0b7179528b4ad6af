//! The mail system under test: rqmail in single-user mode (everything as `nobody`) in a
//! home of its own, or netqmail 1.06 as root in a home made for this test, with its
//! queue and its Maildir on LazyFS.
//!
//! Every case gets fresh data: a copy of the pristine queue (taken once, before any
//! mount) and an empty Maildir, each in a directory of the case that LazyFS serves at
//! `HOME/queue` and `HOME/alias/Maildir`. The home's own queue stays untouched below
//! the mount.

use super::lazyfs::{Build, LazyFs};
use crate::killer::ours;
use crate::world::ME;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which qmail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    /// rqmail's programs from this directory, installed by its rqmail-install.
    Rqmail(PathBuf),
    /// netqmail (or any qmail with netqmail's interfaces) installed in this home, which
    /// must be one made for the test: its control files are rewritten.
    Netqmail(PathBuf),
}

impl Flavor {
    pub fn name(&self) -> &'static str {
        match self {
            Flavor::Rqmail(_) => "rqmail",
            Flavor::Netqmail(_) => "netqmail",
        }
    }
}

fn ids(user: &str) -> Result<(u32, u32), String> {
    let u = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| format!("no user {user}"))?;
    Ok((u.uid.as_raw(), u.gid.as_raw()))
}

fn group(name: &str) -> Result<u32, String> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| format!("no group {name}"))
}

fn run(c: &mut Command, what: &str) -> Result<(), String> {
    let o = c.output().map_err(|e| format!("{what}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

fn tool(name: &str) -> Result<PathBuf, String> {
    ["/usr/bin", "/usr/sbin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| format!("{name} is not installed"))
}

/// `chown -R` (the queue LazyFS serves as one user).
fn chown_tree(p: &Path, (uid, gid): (u32, u32)) -> Result<(), String> {
    run(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(p),
        "chown -R",
    )
}

/// The size of each LazyFS cache. LazyFS keeps every page it was given (clean or not,
/// unless eviction is on, which would write unsynced pages out) until the file goes:
/// a case sends a bounded number of messages (-M) so that this is never full.
const CACHE_MB: u32 = 256;

/// The system, set up once per run.
#[derive(Debug)]
pub struct System {
    pub flavor: Flavor,
    pub home: PathBuf,
    /// The ids clients (qmail-inject, qmail-queue) run as.
    pub client: (u32, u32),
    /// The ids qmail-start and tcpserver run as.
    pub daemon: (u32, u32),
    /// tcpserver's -u and -g for qmail-smtpd (netqmail).
    pub smtpd: Option<(u32, u32)>,
    /// Who LazyFS runs as, for the queue and for the Maildir.
    pub queue_owner: (u32, u32),
    pub maildir_owner: (u32, u32),
    /// The pristine queue, copied for each case.
    template: PathBuf,
}

impl System {
    /// Lays out (rqmail) or prepares (netqmail) the home under `work`.
    pub fn setup(flavor: &Flavor, work: &Path) -> Result<System, String> {
        let nobody = ids("nobody")?;
        let sys = match flavor {
            Flavor::Rqmail(bindir) => {
                let home = work.join("home");
                fs::create_dir_all(&home).map_err(|e| e.to_string())?;
                chown(&home, Some(nobody.0), Some(nobody.1)).map_err(|e| e.to_string())?;
                run(
                    Command::new(bindir.join("rqmail-install"))
                        .arg("-b")
                        .arg(bindir)
                        .arg(&home)
                        .env_clear()
                        .env("PATH", "/usr/bin:/bin")
                        .current_dir("/")
                        .uid(nobody.0)
                        .gid(nobody.1),
                    "rqmail-install (as nobody)",
                )?;
                System {
                    flavor: flavor.clone(),
                    home: home.clone(),
                    client: nobody,
                    daemon: nobody,
                    smtpd: None,
                    queue_owner: nobody,
                    maildir_owner: nobody,
                    template: work.join("queue.template"),
                }
            }
            Flavor::Netqmail(home) => {
                for p in [
                    "bin/qmail-start",
                    "bin/qmail-send",
                    "bin/qmail-queue",
                    "queue/lock",
                ] {
                    if !home.join(p).exists() {
                        return Err(format!("{}: no {p}: not a qmail home", home.display()));
                    }
                }
                let qmailq = (ids("qmailq")?.0, group("qmail")?);
                let alias = (ids("alias")?.0, group("nofiles")?);
                let qmaild = (ids("qmaild")?.0, group("nofiles")?);
                System {
                    flavor: flavor.clone(),
                    home: home.clone(),
                    client: nobody,
                    daemon: (0, 0),
                    smtpd: Some(qmaild),
                    queue_owner: qmailq,
                    maildir_owner: alias,
                    template: work.join("queue.template"),
                }
            }
        };
        sys.configure()?;
        Ok(sys)
    }

    fn configure(&self) -> Result<(), String> {
        let home = &self.home;
        let (cu, cg) = match self.flavor {
            Flavor::Rqmail(_) => self.daemon,
            Flavor::Netqmail(_) => (0, 0),
        };
        for (name, text) in [
            ("me", format!("{ME}\n")),
            ("rcpthosts", format!("{ME}\n")),
            ("locals", format!("{ME}\n")),
        ] {
            let p = home.join("control").join(name);
            fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            chown(&p, Some(cu), Some(cg)).map_err(|e| e.to_string())?;
        }
        let alias = home.join("alias");
        let dq = alias.join(".qmail-default");
        fs::write(&dq, "./Maildir/\n").map_err(|e| format!("{}: {e}", dq.display()))?;
        fs::set_permissions(&dq, fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())?;
        // bx-ID fails permanently: qmail-send bounces the message to sender@ME, whose
        // bounce goes to the Maildir.
        let fail = alias.join(".qmail-bx-default");
        fs::write(&fail, "|exit 100\n").map_err(|e| format!("{}: {e}", fail.display()))?;
        fs::set_permissions(&fail, fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())?;
        // mb-ID is appended to an mbox on the Maildir's disk (made by its first delivery).
        let mbox = alias.join(".qmail-mb-default");
        fs::write(&mbox, format!("./Maildir/{}\n", super::verdict::MBOX))
            .map_err(|e| format!("{}: {e}", mbox.display()))?;
        fs::set_permissions(&mbox, fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())?;
        let md = alias.join("Maildir");
        match fs::create_dir(&md) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", md.display())),
        }
        for p in [&dq, &fail, &mbox, &md] {
            chown(p, Some(self.maildir_owner.0), Some(self.maildir_owner.1))
                .map_err(|e| e.to_string())?;
        }
        fs::set_permissions(&md, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
        if let Flavor::Netqmail(_) = self.flavor {
            // Every local address to the alias user in this home (qmail-users(5)); else
            // qmail-getpw would take alias's home from /etc/passwd.
            let assign = home.join("users/assign");
            fs::write(
                &assign,
                format!(
                    "+:alias:{}:{}:{}:-::\n.\n",
                    self.maildir_owner.0,
                    self.maildir_owner.1,
                    alias.display()
                ),
            )
            .map_err(|e| format!("{}: {e}", assign.display()))?;
            run(&mut Command::new(home.join("bin/qmail-newu")), "qmail-newu")?;
        }

        // The pristine queue, with no message in it.
        let q = home.join("queue");
        if super::mounted(&q) || super::mounted(&md) {
            return Err(format!(
                "{} or {} is a mount point already (an earlier run still there?)",
                q.display(),
                md.display()
            ));
        }
        let busy: Vec<String> = crate::check::queue_files(home)
            .into_iter()
            .filter(|f| !f.starts_with("lock/"))
            .collect();
        if !busy.is_empty() {
            return Err(format!(
                "{}: the queue is not empty ({} files, e.g. {}): the test needs an idle queue",
                q.display(),
                busy.len(),
                busy[0]
            ));
        }
        run(
            Command::new("cp").arg("-a").arg(&q).arg(&self.template),
            "cp -a queue",
        )?;
        chown_tree(&self.template, self.queue_owner)?;
        Ok(())
    }

    /// Makes the case's data directories: `lq` (a copy of the queue) and `lm` (an
    /// empty Maildir).
    pub fn case_data(&self, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let lq = dir.join("lq");
        run(
            Command::new("cp").arg("-a").arg(&self.template).arg(&lq),
            "cp -a queue",
        )?;
        let lm = dir.join("lm");
        for d in ["", "tmp", "new", "cur"] {
            let p = lm.join(d);
            fs::create_dir_all(&p).map_err(|e| e.to_string())?;
            chown(&p, Some(self.maildir_owner.0), Some(self.maildir_owner.1))
                .map_err(|e| e.to_string())?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
        }
        Ok((lq, lm))
    }

    /// Mounts the case's data: LazyFS at `queue/` and at `alias/Maildir/`.
    pub fn mount(
        &self,
        build: &Build,
        dir: &Path,
        generation: usize,
        journal: bool,
    ) -> Result<Disks, String> {
        let queue = LazyFs::mount(
            build,
            &self.home.join("queue"),
            &dir.join("lq"),
            &dir.join(format!("lazyfs-queue.{generation}")),
            self.queue_owner,
            CACHE_MB,
            journal,
        )?;
        let maildir = LazyFs::mount(
            build,
            &self.home.join("alias/Maildir"),
            &dir.join("lm"),
            &dir.join(format!("lazyfs-maildir.{generation}")),
            self.maildir_owner,
            CACHE_MB,
            journal,
        )?;
        Ok(Disks { queue, maildir })
    }

    fn env(&self, c: &mut Command) {
        // netqmail's qmail-start finds qmail-send, qmail-lspawn etc. through $PATH, as its
        // rc files (env - PATH="/var/qmail/bin:$PATH" qmail-start ...) arrange.
        let mut path = std::ffi::OsString::from(self.home.join("bin"));
        path.push(":/usr/bin:/bin:/usr/sbin:/sbin");
        c.env_clear().env("PATH", path).current_dir(&self.home);
        if matches!(self.flavor, Flavor::Rqmail(_)) {
            c.env("QMAIL_HOME", &self.home);
        }
    }

    /// A command for one of the home's programs, run as a client.
    pub fn client_cmd(&self, program: &str) -> Command {
        let mut c = Command::new(self.home.join("bin").join(program));
        self.env(&mut c);
        c.uid(self.client.0).gid(self.client.1);
        c
    }

    /// qmail-pop3d on the Maildir, as its owner in `alias/` (what qmail-popup and a
    /// checkpassword would start for a POP3 client).
    pub fn pop3d_cmd(&self) -> Command {
        let mut c = Command::new(self.home.join("bin/qmail-pop3d"));
        self.env(&mut c);
        c.arg("./Maildir/")
            .current_dir(self.home.join("alias"))
            .uid(self.maildir_owner.0)
            .gid(self.maildir_owner.1);
        c
    }

    /// qmail-smtpd under tcpserver on a free port of 127.0.0.1.
    pub fn start_smtpd(&self, log: &Path) -> Result<(Child, u16), String> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            l.local_addr().map_err(|e| e.to_string())?.port()
        };
        let mut c = Command::new(tool("tcpserver")?);
        self.env(&mut c);
        c.args(["-q", "-R", "-H", "-l", ME, "-c", "40"]);
        match self.smtpd {
            Some((u, g)) => {
                c.args(["-u", &u.to_string(), "-g", &g.to_string()]);
            }
            None => {
                c.uid(self.daemon.0).gid(self.daemon.1);
            }
        }
        c.arg("127.0.0.1")
            .arg(port.to_string())
            .arg(self.home.join("bin/qmail-smtpd"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(log)?);
        let child = c.spawn().map_err(|e| format!("tcpserver: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("tcpserver did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((child, port))
    }

    /// qmail-start ./Maildir/ with its log appended to `log`; waits for qmail-send's
    /// first status line.
    pub fn start_send(&self, log: &Path) -> Result<Child, String> {
        let from = fs::metadata(log).map_or(0, |m| m.len() as usize);
        let mut c = Command::new(self.home.join("bin/qmail-start"));
        self.env(&mut c);
        if self.daemon != (0, 0) {
            c.uid(self.daemon.0).gid(self.daemon.1);
        }
        c.arg("./Maildir/")
            .stdin(Stdio::null())
            .stdout(log_file(log)?)
            .stderr(log_file(log)?);
        let mut child = c.spawn().map_err(|e| format!("qmail-start: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = fs::read(log).unwrap_or_default();
            if String::from_utf8_lossy(text.get(from..).unwrap_or_default())
                .contains("status: local")
            {
                return Ok(child);
            }
            if Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("qmail-send did not start; see {}", log.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs every process running one of the home's programs, until none is left
    /// (an error names those that would not go).
    pub fn kill_all(&self) -> Result<(), String> {
        self.kill_all_found().map(|_| ())
    }

    /// [`System::kill_all`], returning the names of the programs it found running.
    pub fn kill_all_found(&self) -> Result<Vec<String>, String> {
        let mut found = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..500 {
            found = ours(&self.home);
            if found.is_empty() {
                return Ok(seen);
            }
            if seen.is_empty() {
                seen = found.iter().map(|(_, n)| n.clone()).collect();
            }
            for (pid, _) in &found {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let names: Vec<String> = found.iter().map(|(p, n)| format!("{n} {p}")).collect();
        Err(format!(
            "processes that would not die: {}",
            names.join(", ")
        ))
    }

    /// Stops qmail-send with TERM (it finishes the deliveries in progress), then kills
    /// whatever of the home's programs is left.
    pub fn stop_send(&self, send: &mut Child) {
        let _ = kill(Pid::from_raw(send.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while matches!(send.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = send.kill();
        let _ = send.wait();
        let _ = self.kill_all();
    }

    /// Removes the run's files (the pristine queue copy; the home when it is ours).
    pub fn cleanup(&self) {
        let _ = fs::remove_dir_all(&self.template);
    }
}

fn log_file(p: &Path) -> Result<fs::File, String> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// The two LazyFS mounts of a case.
#[derive(Debug)]
pub struct Disks {
    pub queue: LazyFs,
    pub maildir: LazyFs,
}

impl Disks {
    /// The power goes on both disks at once.
    pub fn kill(&mut self) {
        self.queue.kill();
        self.maildir.kill();
    }

    pub fn unmount(&mut self) {
        self.queue.unmount();
        self.maildir.unmount();
    }

    pub fn get(&self, d: super::plan::Disk) -> &LazyFs {
        match d {
            super::plan::Disk::Queue => &self.queue,
            super::plan::Disk::Maildir => &self.maildir,
        }
    }

    pub fn get_mut(&mut self, d: super::plan::Disk) -> &mut LazyFs {
        match d {
            super::plan::Disk::Queue => &mut self.queue,
            super::plan::Disk::Maildir => &mut self.maildir,
        }
    }
}
