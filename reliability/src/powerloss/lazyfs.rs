//! One LazyFS file system: mounted by the harness (as root) with the options the mail
//! system needs, served by a LazyFS process running as the user who owns the data, and
//! controlled through LazyFS's fault FIFO.
//!
//! The harness opens /dev/fuse and mounts it itself (`fd=N,allow_other,...`), then starts
//! LazyFS with the mount point `/dev/fd/N` (libfuse's way to serve a mount made by
//! someone else) as the user the files belong to: LazyFS carries out every operation
//! with its own ids, so the files it makes belong to that user whoever asked, as qmail
//! expects (qmail-lspawn refuses a message file not owned by qmailq), and
//! /etc/fuse.conf's `user_allow_other` is not needed.

use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How LazyFS is started.
#[derive(Debug, Clone)]
pub struct Build {
    /// The LazyFS program (`lazyfs/build/lazyfs` of its tree).
    pub program: PathBuf,
}

impl Build {
    /// Finds the program in a LazyFS tree (or takes the program itself).
    pub fn locate(dir: &Path) -> Result<Build, String> {
        let candidates = [
            dir.join("lazyfs/build/lazyfs"),
            dir.join("build/lazyfs"),
            dir.to_path_buf(),
        ];
        candidates
            .iter()
            .find(|p| p.is_file())
            .map(|p| Build { program: p.clone() })
            .ok_or_else(|| {
                format!(
                    "{}: no LazyFS program (lazyfs/build/lazyfs) there; see rqmail-powerloss(8) for how to build it",
                    dir.display()
                )
            })
    }
}

/// A mounted LazyFS.
/// What [`LazyFs::wait_idle`] waited for.
#[derive(Debug, Clone, Default)]
pub struct IdleWait {
    /// The most processes seen using the file system.
    pub users: usize,
    /// Processes killed because they still used it.
    pub killed: usize,
    /// The most unanswered requests seen.
    pub requests: u64,
    /// Whether fusectl's count could be read.
    pub fusectl: bool,
    /// Bytes the namespace journal grew by while the harness waited: operations LazyFS
    /// carried out after the mail system was killed.
    pub late: u64,
    /// The programs seen using the file system (their /proc/PID/exe names).
    pub names: std::collections::BTreeSet<String>,
    /// How long it took.
    pub waited: Duration,
}

pub struct LazyFs {
    pub mountpoint: PathBuf,
    /// The tree LazyFS keeps its data in (its `subdir`).
    pub root: PathBuf,
    /// Its configuration, FIFO, log and journal.
    pub dir: PathBuf,
    child: Option<Child>,
    mounted: bool,
}

impl std::fmt::Debug for LazyFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyFs")
            .field("mountpoint", &self.mountpoint)
            .field("root", &self.root)
            .finish()
    }
}

fn fuse_device() -> Result<OwnedFd, String> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/fuse")
        .map_err(|e| format!("/dev/fuse: {e}"))?;
    Ok(OwnedFd::from(f))
}

impl LazyFs {
    /// Mounts the tree `root` at `mountpoint`, served by LazyFS as `uid`:`gid`, with a
    /// page cache of `cache_mb` MiB. `dir` (made here, owned by that user) gets the
    /// configuration, the fault FIFO, LazyFS's log and, when `journal`, the namespace
    /// journal of the fsyncdir patch.
    pub fn mount(
        build: &Build,
        mountpoint: &Path,
        root: &Path,
        dir: &Path,
        (uid, gid): (u32, u32),
        cache_mb: u32,
        journal: bool,
    ) -> Result<LazyFs, String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let config = dir.join("lazyfs.toml");
        // LazyFS takes a --config-path argument containing "-o" (in any case) for a FUSE
        // option and falls back to config/default.toml.
        if config.to_string_lossy().to_ascii_lowercase().contains("-o") {
            return Err(format!(
                "{}: LazyFS cannot take a configuration path containing \"-o\" (set TMPDIR elsewhere)",
                config.display()
            ));
        }
        let log = dir.join("lazyfs.log");
        // Leftovers of an earlier mount in the same directory would be read as this one's.
        for f in ["lazyfs.log", "faults.fifo", "dirops"] {
            let _ = fs::remove_file(dir.join(f));
        }
        let _ = fs::remove_dir_all(dir.join("grave"));
        fs::write(
            &config,
            format!(
                "[faults]\nfifo_path=\"{}\"\n[cache]\napply_eviction=false\n[cache.simple]\ncustom_size=\"{cache_mb}mb\"\nblocks_per_page=1\n[filesystem]\nlog_all_operations=false\nlogfile=\"{}\"\n",
                dir.join("faults.fifo").display(),
                log.display()
            ),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;

        let fuse = fuse_device()?;
        let opts = format!(
            "fd={},rootmode=40000,user_id={uid},group_id={gid},allow_other",
            std::os::fd::AsRawFd::as_raw_fd(&fuse)
        );
        nix::mount::mount(
            Some("lazyfs"),
            mountpoint,
            Some("fuse.lazyfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )
        .map_err(|e| format!("mount {}: {e}", mountpoint.display()))?;
        let mut me = LazyFs {
            mountpoint: mountpoint.to_path_buf(),
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
            child: None,
            mounted: true,
        };
        let out = fs::File::create(dir.join("lazyfs.out")).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fuse);
        let mut c = Command::new(&build.program);
        c.arg(format!("/dev/fd/{raw}"))
            .arg("--config-path")
            .arg(&config)
            .args(["-o", "modules=subdir", "-o"])
            .arg(format!("subdir={}", root.display()))
            .arg("-f")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .uid(uid)
            .gid(gid)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if journal {
            // The graveyard keeps removed files, so that their names can be given back;
            // it must be on the file system of `root` (hard links).
            let grave = dir.join("grave");
            fs::create_dir_all(&grave).map_err(|e| format!("{}: {e}", grave.display()))?;
            std::os::unix::fs::chown(&grave, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", grave.display()))?;
            c.env("LAZYFS_DIROPS", dir.join("dirops"))
                .env("LAZYFS_GRAVEYARD", &grave);
        }
        // LazyFS inherits the descriptor: its close-on-exec flag is cleared for this one
        // spawn. The harness mounts while it starts no other program (the senders are
        // not running yet, or have ended): a copy of the descriptor left in another
        // process would keep the file system's connection open after LazyFS is killed.
        nix::fcntl::fcntl(
            &fuse,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(|e| format!("/dev/fuse: {e}"))?;
        let spawned = c.spawn();
        drop(fuse);
        let child = spawned.map_err(|e| format!("{}: {e}", build.program.display()))?;
        me.child = Some(child);
        // Ready once its fault thread waits for commands (started by FUSE's init).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if me.log().contains("waiting for fault commands") {
                break;
            }
            if me.exited() || Instant::now() > deadline {
                let out = fs::read_to_string(dir.join("lazyfs.out")).unwrap_or_default();
                return Err(format!(
                    "LazyFS did not start on {}:\n{}",
                    mountpoint.display(),
                    out.lines().rev().take(10).collect::<Vec<_>>().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(me)
    }

    /// LazyFS's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("lazyfs.log")).unwrap_or_default()
    }

    /// Where LazyFS keeps the files it removes (with the fsyncdir patch).
    pub fn graveyard(&self) -> PathBuf {
        self.dir.join("grave")
    }

    /// The namespace journal so far (empty without the fsyncdir patch).
    pub fn journal(&self) -> String {
        fs::read_to_string(self.dir.join("dirops")).unwrap_or_default()
    }

    /// Sends one command to LazyFS's fault FIFO.
    pub fn command(&self, cmd: &str) -> Result<(), String> {
        let fifo = self.dir.join("faults.fifo");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .map_err(|e| format!("{}: {e}", fifo.display()))?;
        // LazyFS reads a command with one read of at most 100 bytes.
        let line = format!("{cmd}\n");
        if line.len() >= 100 {
            return Err(format!("LazyFS command too long: {cmd}"));
        }
        f.write_all(line.as_bytes())
            .map_err(|e| format!("{}: {e}", fifo.display()))?;
        // One command per read: give LazyFS time to take it before the next.
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    }

    /// The pid of the LazyFS process, while it runs.
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The processes, other than LazyFS, with a descriptor, a working directory or a root
    /// on this file system: a killed program keeps its descriptors (and sends their last
    /// requests, FUSE's flush on close) until it has exited.
    pub fn users(&self) -> Vec<i32> {
        let me = self.pid().and_then(|p| i32::try_from(p).ok());
        let under = |p: &Path| p.starts_with(&self.mountpoint);
        let mut v = Vec::new();
        let Ok(rd) = fs::read_dir("/proc") else {
            return v;
        };
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if Some(pid) == me {
                continue;
            }
            let proc = e.path();
            let mut uses = ["cwd", "root"]
                .iter()
                .any(|l| fs::read_link(proc.join(l)).is_ok_and(|t| under(&t)));
            if !uses && let Ok(fds) = fs::read_dir(proc.join("fd")) {
                uses = fds
                    .flatten()
                    .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| under(&t)));
            }
            if uses {
                v.push(pid);
            }
        }
        v
    }

    /// The number of requests the kernel has sent or queued to LazyFS and that are not
    /// answered yet (fusectl's `waiting`, which counts every request a process waits
    /// for; FUSE's release, sent in the background after the last close, is not
    /// counted). `None` when fusectl cannot be read.
    pub fn waiting(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let dev = fs::metadata(&self.mountpoint).ok()?.dev();
        let conns = Path::new("/sys/fs/fuse/connections");
        let f = conns.join(libc::minor(dev).to_string()).join("waiting");
        if !f.exists() {
            // fusectl is not mounted by every system; mounting it changes nothing else.
            let _ = nix::mount::mount(
                Some("fusectl"),
                conns,
                Some("fusectl"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            );
        }
        fs::read_to_string(f).ok()?.trim().parse().ok()
    }

    /// Waits until nothing uses the file system any more and LazyFS has answered every
    /// request (and its journal and log have stopped growing for `quiet`): so that no
    /// operation of a program the harness killed reaches LazyFS after what comes next
    /// (a clear-cache). A program that still uses the file system after `limit` is
    /// killed (it can only be one the mail system started). Returns what was waited for.
    pub fn wait_idle(&self, quiet: Duration, limit: Duration) -> Result<IdleWait, String> {
        let start = Instant::now();
        let mut w = IdleWait::default();
        let size = |n: &str| fs::metadata(self.dir.join(n)).map_or(0, |m| m.len());
        let first = size("dirops");
        loop {
            let users = self.users();
            if users.is_empty() {
                break;
            }
            w.users = w.users.max(users.len());
            for pid in &users {
                let exe = fs::read_link(format!("/proc/{pid}/exe"))
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "(exiting)".into());
                w.names.insert(exe);
            }
            if start.elapsed() > limit {
                for pid in users {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    w.killed += 1;
                }
                if start.elapsed() > limit * 2 {
                    return Err(format!(
                        "processes still use {} after {:?}",
                        self.mountpoint.display(),
                        limit * 2
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut last = (size("dirops"), size("lazyfs.log"));
        let mut still = Instant::now();
        loop {
            let waiting = self.waiting();
            w.fusectl = waiting.is_some();
            let now = (size("dirops"), size("lazyfs.log"));
            if now != last || waiting.is_some_and(|n| n > 0) {
                w.requests = w.requests.max(waiting.unwrap_or(0));
                last = now;
                still = Instant::now();
            } else if still.elapsed() >= quiet {
                w.waited = start.elapsed();
                w.late = now.0.saturating_sub(first);
                return Ok(w);
            }
            if start.elapsed() > limit * 3 {
                return Err(format!(
                    "LazyFS on {} did not become idle ({waiting:?} requests waiting)",
                    self.mountpoint.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Drops the unsynced data and waits until LazyFS says it has.
    pub fn clear_cache(&self) -> Result<(), String> {
        let before = self.log().matches("cache is cleared").count();
        self.command("lazyfs::clear-cache")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log().matches("cache is cleared").count() == before {
            if Instant::now() > deadline {
                return Err("LazyFS did not clear its cache".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Writes all unsynced data to the disk below (without an fsync) and waits until
    /// LazyFS says it has.
    pub fn checkpoint(&self) -> Result<(), String> {
        let before = self.log().matches("checkpoint is done").count();
        self.command("lazyfs::cache-checkpoint")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log().matches("checkpoint is done").count() == before {
            if Instant::now() > deadline {
                return Err("LazyFS did not write its cache out".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// True once the LazyFS process has ended.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => !matches!(c.try_wait(), Ok(None)),
        }
    }

    /// True when LazyFS killed itself at a fault it was given.
    pub fn fired(&self) -> bool {
        self.log().contains("Killing LazyFS pid")
    }

    /// The power goes: SIGKILL (LazyFS's cache, all unsynced data, is lost with it).
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Detaches the mount (the processes that used it are gone), kills LazyFS if it
    /// still runs, and waits for it.
    pub fn unmount(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
            self.mounted = false;
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Whether a LazyFS build has the fsyncdir patch: mounts a scratch tree, fsyncs a
/// directory in it and looks for the journal line.
pub fn has_fsyncdir_patch(build: &Build, work: &Path, owner: (u32, u32)) -> Result<bool, String> {
    let base = work.join("probe");
    let (mnt, root, dir) = (base.join("mnt"), base.join("root"), base.join("lazyfs"));
    for d in [&mnt, &root] {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        std::os::unix::fs::chown(d, Some(owner.0), Some(owner.1)).map_err(|e| e.to_string())?;
    }
    let mut l = LazyFs::mount(build, &mnt, &root, &dir, owner, 8, true)?;
    let sub = mnt.join("d");
    let r = fs::create_dir(&sub)
        .and_then(|()| fs::File::open(&sub))
        .and_then(|f| f.sync_all());
    let journal = l.journal();
    l.unmount();
    drop(l);
    let _ = fs::remove_dir_all(&base);
    r.map_err(|e| format!("LazyFS probe: {e}"))?;
    Ok(journal.lines().any(|x| x.starts_with("fsyncdir\t")))
}
