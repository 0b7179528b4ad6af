//! The mail system under test: a qmail home laid out by rqmail-install, qmail-smtpd under
//! tcpserver, qmail-start under a supervisor that restarts it whenever qmail-send exits,
//! and a sink standing in for the remote MX.

use crate::{Config, status};
use rqmail_tests::Sink;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// This host's name, and the domain the sink receives mail for.
pub const ME: &str = "crash.example";
pub const REMOTE: &str = "sink.example";

/// The running system.
pub struct World {
    /// The work directory: home/, logs.
    pub dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
    pub home: PathBuf,
    pub sink: Sink,
    pub smtp_port: u16,
    tcpserver: Child,
    send: Arc<Mutex<Option<Child>>>,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicUsize>,
    /// Set by stop_send: the next start is intended, not a restart after a crash.
    intended: Arc<AtomicBool>,
    supervisor: Option<JoinHandle<()>>,
}

fn base_env(c: &mut Command, home: &Path) {
    c.env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("QMAIL_HOME", home)
        .current_dir(home);
}

fn log_file(p: &Path) -> Result<fs::File, String> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| format!("{}: {e}", p.display()))
}

fn find_tool(name: &str) -> Result<PathBuf, String> {
    ["/usr/bin", "/usr/sbin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| format!("{name} is not installed (Debian package ucspi-tcp for tcpserver)"))
}

impl World {
    pub fn start(cfg: &Config) -> Result<World, String> {
        let tmp = tempfile::Builder::new()
            .prefix("rqmail-crash-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let dir = tmp.path().to_path_buf();
        let home = dir.join("home");
        let st = status(
            Command::new(cfg.bindir.join("rqmail-install"))
                .arg("-b")
                .arg(&cfg.bindir)
                .arg(&home)
                .stdout(Stdio::null()),
            "rqmail-install",
        )?;
        if !st.success() {
            return Err(format!("rqmail-install {} failed", home.display()));
        }
        let sink = Sink::start(None);
        let control = |name: &str, text: &str| {
            fs::write(home.join("control").join(name), text)
                .map_err(|e| format!("control/{name}: {e}"))
        };
        control("me", &format!("{ME}\n"))?;
        control("rcpthosts", &format!("{ME}\n"))?;
        control("locals", &format!("{ME}\n"))?;
        control("smtproutes", &format!("{REMOTE}:127.0.0.1:{}\n", sink.port))?;
        // Short enough that a remote delivery stuck on a killed peer gives up soon.
        control("timeoutremote", "30\n")?;
        let st = status(
            Command::new(home.join("bin/maildirmake")).arg(home.join("alias/Maildir")),
            "maildirmake",
        )?;
        if !st.success() {
            return Err("maildirmake failed".into());
        }
        fs::write(home.join("alias/.qmail-default"), "./Maildir/\n")
            .map_err(|e| format!("alias/.qmail-default: {e}"))?;

        // SMTP: tcpserver, every client a relay client (the sink's domain is remote).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            l.local_addr().map_err(|e| e.to_string())?.port()
        };
        let mut c = Command::new(find_tool("tcpserver")?);
        base_env(&mut c, &home);
        c.env("RELAYCLIENT", "")
            .args(["-q", "-R", "-H", "-l", ME, "-c", "60", "127.0.0.1"])
            .arg(port.to_string())
            .arg(home.join("bin/qmail-smtpd"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&dir.join("smtpd.log"))?);
        let tcpserver = c.spawn().map_err(|e| format!("tcpserver: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("tcpserver did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }

        let mut w = World {
            dir,
            tmp: Some(tmp),
            home,
            sink,
            smtp_port: port,
            tcpserver,
            send: Arc::new(Mutex::new(None)),
            paused: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            restarts: Arc::new(AtomicUsize::new(0)),
            intended: Arc::new(AtomicBool::new(false)),
            supervisor: None,
        };
        w.supervisor = Some(w.supervise()?);
        w.wait_send_up()?;
        Ok(w)
    }

    /// Starts qmail-start again whenever qmail-send is gone (unless paused).
    fn supervise(&self) -> Result<JoinHandle<()>, String> {
        let home = self.home.clone();
        let log = self.dir.join("send.log");
        log_file(&log)?;
        let (send, paused, stop, restarts, intended) = (
            self.send.clone(),
            self.paused.clone(),
            self.stop.clone(),
            self.restarts.clone(),
            self.intended.clone(),
        );
        Ok(std::thread::spawn(move || {
            let mut first = true;
            while !stop.load(Ordering::SeqCst) {
                {
                    let mut g = send.lock().unwrap_or_else(|e| e.into_inner());
                    let gone = match g.as_mut() {
                        None => true,
                        Some(c) => !matches!(c.try_wait(), Ok(None)),
                    };
                    if gone {
                        *g = None;
                    }
                    if gone && !paused.load(Ordering::SeqCst) {
                        let mut c = Command::new(home.join("bin/qmail-start"));
                        base_env(&mut c, &home);
                        c.arg("./Maildir/").stdin(Stdio::null());
                        if let (Ok(o), Ok(e)) = (log_file(&log), log_file(&log)) {
                            c.stdout(o).stderr(e);
                        }
                        if let Ok(child) = c.spawn() {
                            *g = Some(child);
                            // A start after stop_send is not a restart after a crash.
                            if !first && !intended.swap(false, Ordering::SeqCst) {
                                restarts.fetch_add(1, Ordering::SeqCst);
                            }
                            first = false;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }))
    }

    /// Waits until qmail-send is running and has written its first status line since
    /// the log was `from` bytes long.
    fn wait_send_up(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.send_pid().is_some()
                && fs::read_to_string(self.dir.join("send.log"))
                    .is_ok_and(|s| s.contains("status: local"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("qmail-send did not start; see send.log".into())
    }

    /// The pid of the current qmail-start/qmail-send process.
    pub fn send_pid(&self) -> Option<i32> {
        let mut g = self.send.lock().unwrap_or_else(|e| e.into_inner());
        let c = g.as_mut()?;
        matches!(c.try_wait(), Ok(None)).then(|| c.id() as i32)
    }

    /// How often qmail-send was started again.
    pub fn restarts(&self) -> usize {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Sends a signal to qmail-send (when it runs).
    pub fn signal_send(&self, sig: nix::sys::signal::Signal) {
        if let Some(p) = self.send_pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
        }
    }

    /// Stops qmail-send (TERM, then waits) and keeps it stopped.
    pub fn stop_send(&self) -> Result<(), String> {
        self.paused.store(true, Ordering::SeqCst);
        self.intended.store(true, Ordering::SeqCst);
        let mut g = self.send.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = g.as_mut() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if !matches!(c.try_wait(), Ok(None)) {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    *g = None;
                    return Err("qmail-send did not exit within 120 s of TERM".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        *g = None;
        drop(g);
        // The spawns and qmail-clean end when qmail-send has gone.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if crate::killer::ours(&self.home)
                .iter()
                .all(|(_, n)| n == "qmail-smtpd" || n == "qmail-queue")
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("qmail-send's helpers did not exit".into())
    }

    /// Lets the supervisor start qmail-send again and waits for it.
    pub fn start_send(&self) -> Result<(), String> {
        self.paused.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.send_pid().is_none() {
            if Instant::now() > deadline {
                return Err("qmail-send did not start again".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Keeps the work directory after the run.
    pub fn keep(&mut self) {
        if let Some(t) = self.tmp.take() {
            let _ = t.keep();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.supervisor.take() {
            let _ = s.join();
        }
        let _ = self.tcpserver.kill();
        let _ = self.tcpserver.wait();
        let mut g = self.send.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = g.as_mut() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        drop(g);
        // Whatever of ours is still running (started by this run, found by its program
        // path under this home) is ended by its pid.
        for (pid, _) in crate::killer::ours(&self.home) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// As root: copies the programs (and this harness) to a directory every user can read,
/// runs the harness there as `nobody`, removes the copy, and returns its exit code.
pub fn rerun_as_nobody(cfg: &Config) -> Result<i32, String> {
    let stage = tempfile::Builder::new()
        .prefix("rqmail-crash-bin-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    fs::set_permissions(stage.path(), fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let rd = fs::read_dir(&cfg.bindir).map_err(|e| format!("{}: {e}", cfg.bindir.display()))?;
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let is_prog = p.is_file()
            && !name.to_string_lossy().contains('.')
            && fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
        if is_prog {
            let to = stage.path().join(&name);
            // A hard link when the program is readable and executable by everyone (the
            // build's programs are; no copy of hundreds of megabytes), else a copy.
            let everyone = fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005);
            if !(everyone && fs::hard_link(&p, &to).is_ok()) {
                fs::copy(&p, &to).map_err(|e| format!("copy {}: {e}", p.display()))?;
                fs::set_permissions(&to, fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let me = stage.path().join("rqmail-crashtest");
    if !me.exists() {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        fs::copy(&exe, &me).map_err(|e| e.to_string())?;
        fs::set_permissions(&me, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let mut c = Command::new(find_tool("setpriv")?);
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&me)
        .arg("-b")
        .arg(stage.path())
        .args(["-s", &cfg.seed.to_string()])
        .args(["-k", &cfg.kill_every_ms.to_string()])
        .args(["-c", &cfg.smtp_clients.to_string()])
        .args(["-i", &cfg.inject_clients.to_string()])
        .args(["-w", &cfg.drain.as_secs().to_string()]);
    if cfg.keep {
        c.arg("-K");
    }
    c.arg(cfg.count.to_string())
        .arg(cfg.duration.as_secs().to_string())
        .env("TMPDIR", "/tmp")
        .current_dir("/");
    let st = status(&mut c, "setpriv")?;
    Ok(st.code().unwrap_or(111))
}
