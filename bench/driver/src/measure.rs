//! The measurements. Each runs against one installation and returns a number; the caller
//! alternates installations and takes medians.

use crate::inst::{self, Inst, LOCAL_RCPT, REMOTE_RCPT, SENDER};
use crate::sys::{self, Bg};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Settings shared by the measurements.
#[derive(Debug, Clone)]
pub struct Cfg {
    /// Length of each timed throughput run.
    pub seconds: f64,
    /// Messages per SMTP, local and remote delivery run.
    pub messages: u64,
    /// Size of the messages, bytes.
    pub size: usize,
    /// Messages in the queue for qmail-qstat and qmail-qread.
    pub queue_size: u64,
    /// qmail-smtpd sessions for the latency and memory figures.
    pub sessions: usize,
    /// Where maildirs and logs go.
    pub work: PathBuf,
    pub tcpserver: Option<PathBuf>,
    pub smtp_source: Option<PathBuf>,
    pub smtp_sink: Option<PathBuf>,
    pub postfix_libs: Option<PathBuf>,
    /// Postfix's `postfix` command (an installed Postfix), for the TLS comparison.
    pub postfix_ctl: Option<PathBuf>,
    pub openssl: Option<PathBuf>,
    pub strace: Option<PathBuf>,
}

impl Cfg {
    fn dur(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    pub fn postfix(&self, prog: &Path) -> Command {
        let mut c = Command::new(prog);
        c.env_clear().env("PATH", "/usr/bin:/bin");
        if let Some(l) = &self.postfix_libs {
            c.env("LD_LIBRARY_PATH", l);
        }
        c
    }
}

/// The disk's own bound: files created in `dir`, 1 KiB written, fsynced, closed and
/// removed, by `writers` threads for the configured time. Returns fsyncs per second.
pub fn fsync_bound(dir: &Path, writers: usize, cfg: &Cfg) -> io::Result<f64> {
    let dur = cfg.dur();
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut threads = Vec::new();
    for w in 0..writers {
        let dir = dir.to_path_buf();
        let done = Arc::clone(&done);
        threads.push(std::thread::spawn(move || -> io::Result<()> {
            let data = [b'x'; 1024];
            let mut i = 0u64;
            while start.elapsed() < dur {
                let p = dir.join(format!("rqmail-bench-fsync.{w}.{i}"));
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&p)?;
                f.write_all(&data)?;
                f.sync_all()?;
                drop(f);
                fs::remove_file(&p)?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| io::Error::other("fsync thread panicked"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// Which sequence of durable steps [`steps_bound`] replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steps {
    /// rqmail's qmail-queue: fsync mess, fsync mess/S, write and fsync intd, link todo,
    /// fsync todo/ (four fsyncs, two of them directories).
    DirFsyncs,
    /// netqmail's qmail-queue: fsync mess, write and fsync intd, link todo (two fsyncs,
    /// no directory fsync: the todo link is not durable when qmail-queue exits 0).
    NoDirFsyncs,
    /// A proposal with the same four fsyncs: write mess and intd first, then fsync mess,
    /// mess/S and intd at once (three threads), then link todo and fsync todo/.
    Overlapped,
}

/// The bound for qmail-queue's durable steps, done in this process without spawning
/// anything: a pid/ file linked to mess/S/N and unlinked, the message written, intd/N
/// written, todo/N linked, with the fsyncs of `steps` (the files are removed afterwards).
/// Returns messages per second with `writers` threads: what a qmail-queue doing these
/// steps could reach if starting a process cost nothing.
pub fn steps_bound(queue: &Path, writers: usize, steps: Steps, cfg: &Cfg) -> io::Result<f64> {
    let dur = cfg.dur();
    let split = inst::split(queue).max(1);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut threads = Vec::new();
    let msg = inst::message(cfg.size, LOCAL_RCPT);
    let env = inst::envelope(LOCAL_RCPT);
    let sync_dir = |d: &Path| fs::File::open(d).and_then(|f| f.sync_all());
    for w in 0..writers {
        let q = queue.to_path_buf();
        let done = Arc::clone(&done);
        let (msg, env) = (msg.clone(), env.clone());
        threads.push(std::thread::spawn(move || -> io::Result<()> {
            let mut i = 0u64;
            while start.elapsed() < dur {
                // Numbers far from qmail-queue's (inode numbers) and from each other.
                let id = 9_000_000_000 + (w as u64) * 100_000_000 + i;
                let s = (id % split).to_string();
                let pid = q.join(format!("pid/rqmail-bench.{w}.{i}"));
                let mess_dir = q.join("mess").join(&s);
                let mess = mess_dir.join(id.to_string());
                let intd = q.join("intd").join(id.to_string());
                let todo = q.join("todo").join(id.to_string());
                let create = |p: &Path| {
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o644)
                        .open(p)
                };
                let mut f = create(&pid)?;
                fs::hard_link(&pid, &mess)?;
                fs::remove_file(&pid)?;
                f.write_all(&msg)?;
                match steps {
                    Steps::DirFsyncs | Steps::NoDirFsyncs => {
                        f.sync_all()?;
                        if steps == Steps::DirFsyncs {
                            sync_dir(&mess_dir)?;
                        }
                        let mut e = create(&intd)?;
                        e.write_all(&env)?;
                        e.sync_all()?;
                    }
                    Steps::Overlapped => {
                        let mut e = create(&intd)?;
                        e.write_all(&env)?;
                        std::thread::scope(|sc| -> io::Result<()> {
                            let a = sc.spawn(|| sync_dir(&mess_dir));
                            let b = sc.spawn(|| e.sync_all());
                            f.sync_all()?;
                            a.join().map_err(|_| io::Error::other("panic"))??;
                            b.join().map_err(|_| io::Error::other("panic"))??;
                            Ok(())
                        })?;
                    }
                }
                fs::hard_link(&intd, &todo)?;
                if steps != Steps::NoDirFsyncs {
                    sync_dir(&q.join("todo"))?;
                }
                for p in [&todo, &intd, &mess] {
                    fs::remove_file(p)?;
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| io::Error::other("steps thread panicked"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// How [`preprocess_bound`] makes the files of preprocessing durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prep {
    /// rqmail's qmail-send today: per message, fsync info/S/N and remote/S/N, then
    /// info/S and remote/S (four fsyncs, one after the other).
    Rqmail,
    /// netqmail's: fsync info/S/N and remote/S/N (no directory fsync).
    Netqmail,
    /// A proposal: write the files of a batch of messages, then fsync every file, then
    /// every directory the batch touched once (the same guarantees, fewer directory
    /// fsyncs).
    Batch(usize),
    /// A proposal: the files of a batch of messages, then one syncfs(2) of the queue's
    /// file system.
    Syncfs(usize),
    /// A proposal: as [`Prep::Batch`], the fsyncs issued by this many threads at once
    /// (the files first, then the directories).
    Parallel(usize, usize),
}

unsafe extern "C" {
    fn syncfs(fd: i32) -> i32;
}

fn sync_fs(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(dir)?;
    // SAFETY: a descriptor of an open directory, valid for the whole call.
    if unsafe { syncfs(f.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The bound for the file work of todo preprocessing in qmail-send's loop (one thread):
/// per message, info/S/N and remote/S/N created and written, made durable as `how`
/// says, then todo/N and intd/N (made beforehand, untimed, as qmail-queue leaves them)
/// removed as qmail-clean does. Messages per second; the files are removed afterwards.
pub fn preprocess_bound(queue: &Path, how: Prep, cfg: &Cfg) -> io::Result<f64> {
    let split = inst::split(queue).max(1);
    let batch = match how {
        Prep::Batch(b) | Prep::Syncfs(b) | Prep::Parallel(b, _) => b.max(1),
        _ => 1,
    };
    let dur = cfg.dur();
    let info_rec = format!("F{SENDER}\0").into_bytes();
    let remote_rec = format!("T{REMOTE_RCPT}\0").into_bytes();
    let create = |p: &Path, data: &[u8]| -> io::Result<fs::File> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)?;
        f.write_all(data)?;
        Ok(f)
    };
    let sync_dir = |d: &Path| fs::File::open(d).and_then(|f| f.sync_all());
    let mut done = 0u64;
    let mut made: Vec<PathBuf> = Vec::new();
    let mut next = 9_100_000_000u64;
    let mut elapsed = Duration::ZERO;
    while elapsed < dur {
        let ids: Vec<u64> = (next..next + batch as u64).collect();
        next += batch as u64;
        for &id in &ids {
            for d in ["todo", "intd"] {
                fs::write(queue.join(d).join(id.to_string()), b"x")?;
            }
        }
        let t = Instant::now();
        let mut files = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for &id in &ids {
            let s = (id % split).to_string();
            let info_dir = queue.join("info").join(&s);
            let remote_dir = queue.join("remote").join(&s);
            let info = info_dir.join(id.to_string());
            let remote = remote_dir.join(id.to_string());
            let fi = create(&info, &info_rec)?;
            let fr = create(&remote, &remote_rec)?;
            made.push(info);
            made.push(remote);
            if how == Prep::Rqmail || how == Prep::Netqmail {
                fi.sync_all()?;
                fr.sync_all()?;
                if how == Prep::Rqmail {
                    sync_dir(&info_dir)?;
                    sync_dir(&remote_dir)?;
                }
            } else {
                files.push(fi);
                files.push(fr);
                for d in [info_dir, remote_dir] {
                    if !dirs.contains(&d) {
                        dirs.push(d);
                    }
                }
            }
        }
        match how {
            Prep::Batch(_) => {
                for f in &files {
                    f.sync_all()?;
                }
                for d in &dirs {
                    sync_dir(d)?;
                }
            }
            Prep::Syncfs(_) => sync_fs(queue)?,
            Prep::Parallel(_, threads) => {
                let threads = threads.max(1);
                std::thread::scope(|sc| -> io::Result<()> {
                    let hs: Vec<_> = (0..threads)
                        .map(|t| {
                            let files = &files;
                            sc.spawn(move || -> io::Result<()> {
                                for f in files.iter().skip(t).step_by(threads) {
                                    f.sync_all()?;
                                }
                                Ok(())
                            })
                        })
                        .collect();
                    for h in hs {
                        h.join().map_err(|_| io::Error::other("panic"))??;
                    }
                    let hs: Vec<_> = (0..threads)
                        .map(|t| {
                            let dirs = &dirs;
                            sc.spawn(move || -> io::Result<()> {
                                for d in dirs.iter().skip(t).step_by(threads) {
                                    sync_dir(d)?;
                                }
                                Ok(())
                            })
                        })
                        .collect();
                    for h in hs {
                        h.join().map_err(|_| io::Error::other("panic"))??;
                    }
                    Ok(())
                })?;
            }
            _ => {}
        }
        for &id in &ids {
            for d in ["todo", "intd"] {
                fs::remove_file(queue.join(d).join(id.to_string()))?;
            }
        }
        elapsed += t.elapsed();
        done += ids.len() as u64;
    }
    for p in made {
        fs::remove_file(p)?;
    }
    Ok(done as f64 / elapsed.as_secs_f64())
}

/// qmail-queue injections per second with `writers` concurrent writers, each running
/// qmail-queue for one message after the other (the queue is emptied afterwards).
pub fn injections(inst: &Inst, writers: usize, cfg: &Cfg) -> io::Result<f64> {
    let msg = inst::message(cfg.size, LOCAL_RCPT);
    let env = inst::envelope(LOCAL_RCPT);
    let dur = cfg.dur();
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            s.spawn(|| {
                while start.elapsed() < dur {
                    match inst.inject(&msg, &env) {
                        Ok(true) => done.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    inst::empty(&inst.queue())?;
    if failed.load(Ordering::Relaxed) > 0 {
        return Err(io::Error::other(format!(
            "{}: {} injections failed",
            inst.label,
            failed.load(Ordering::Relaxed)
        )));
    }
    Ok(rate)
}

/// Puts `n` messages for `to` into the queue through qmail-queue (four writers).
pub fn fill_by_injection(inst: &Inst, n: u64, to: &str, cfg: &Cfg) -> io::Result<()> {
    let msg = inst::message(cfg.size, to);
    let env = inst::envelope(to);
    let next = AtomicU64::new(0);
    // Why injections failed: qmail-queue's exit status or the error starting it, counted.
    let failed = std::sync::Mutex::new(std::collections::BTreeMap::<String, u64>::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let why = match inst.inject_status(&msg, &env) {
                        Ok(st) if st.success() => continue,
                        Ok(st) => st.to_string(),
                        Err(e) => e.to_string(),
                    };
                    if let Ok(mut m) = failed.lock() {
                        *m.entry(why).or_default() += 1;
                    }
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap_or_default();
    if failed.is_empty() {
        return Ok(());
    }
    let total: u64 = failed.values().sum();
    let whys: Vec<String> = failed.iter().map(|(w, k)| format!("{k} x {w}")).collect();
    Err(io::Error::other(format!(
        "{}: {total} injections failed ({})",
        inst.label,
        whys.join(", ")
    )))
}

/// SMTP messages accepted per second: tcpserver running this installation's qmail-smtpd
/// (as qmaild, group nofiles, as netqmail's documentation does it), or with `server`
/// rqmail's qmail-smtpd-server with the same options (see [`Inst::smtpd_front`]),
/// `clients` concurrent smtp-source sessions, one message per connection. Nothing
/// delivers meanwhile.
pub fn smtp(inst: &Inst, clients: usize, server: bool, cfg: &Cfg) -> io::Result<f64> {
    let (Some(tcpserver), Some(source)) = (&cfg.tcpserver, &cfg.smtp_source) else {
        return Err(io::Error::other("tcpserver or smtp-source missing"));
    };
    let (uid, _) = sys::user_ids("qmaild")?;
    let gid = sys::group_id("nofiles")?;
    let port = sys::free_port()?;
    let opts = ["-c".to_string(), (clients * 2).max(40).to_string()];
    let c = inst.smtpd_front(tcpserver, server, &opts, uid, gid, port);
    let _server = Bg::spawn("tcpserver", c)?;
    sys::wait_for_port(port)?;
    let mut src = cfg.postfix(source);
    src.arg("-s")
        .arg(clients.to_string())
        .arg("-m")
        .arg(cfg.messages.to_string())
        .arg("-l")
        .arg(cfg.size.to_string())
        .args(["-f", SENDER, "-t", LOCAL_RCPT, "-M", "client.example"])
        .arg(format!("127.0.0.1:{port}"));
    let start = Instant::now();
    sys::output(src, "smtp-source")?;
    let secs = start.elapsed().as_secs_f64();
    let accepted = inst::count(&inst.queue(), "todo") as u64;
    inst::empty(&inst.queue())?;
    if accepted != cfg.messages {
        return Err(io::Error::other(format!(
            "{}: {accepted} of {} SMTP messages reached the queue",
            inst.label, cfg.messages
        )));
    }
    Ok(cfg.messages as f64 / secs)
}

/// The maildir the bench user's deliveries go to, for this installation.
pub fn maildir_home(inst: &Inst, cfg: &Cfg) -> PathBuf {
    cfg.work.join(format!("maildir-{}", inst.label))
}

fn count_dir(p: &Path) -> usize {
    fs::read_dir(p).map(|rd| rd.count()).unwrap_or(0)
}

/// A number for each delivery run, so that every run keeps its own qmail-send log.
pub fn run_number() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) + 1
}

/// Starts qmail-start (as root: qmail-send and its helpers under the qmail ids), its log
/// going to `log`.
pub fn start_send(inst: &Inst, log: &Path) -> io::Result<Bg> {
    let out = fs::File::create(log)?;
    let err = out.try_clone()?;
    let mut c = inst.cmd("qmail-start");
    c.arg("./Maildir/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    Bg::spawn("qmail-start", c)
}

/// Like [`start_send`], but every line of the log is written with the seconds since
/// `t0` in front (`12.345 new msg 123`), by a thread reading qmail-start's output: the
/// timeline of preprocessing, delivery starts and ends.
pub fn start_send_timed(inst: &Inst, log: &Path, t0: Instant) -> io::Result<Bg> {
    let (r, w) = io::pipe()?;
    let w2 = w.try_clone()?;
    let mut c = inst.cmd("qmail-start");
    c.arg("./Maildir/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2));
    let bg = Bg::spawn("qmail-start", c)?;
    let mut out = io::BufWriter::new(fs::File::create(log)?);
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        while matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let t = t0.elapsed().as_secs_f64();
            let _ = write!(out, "{t:.3} ");
            let _ = out.write_all(&line);
            line.clear();
        }
        let _ = out.flush();
    });
    Ok(bg)
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Local deliveries per second into a Maildir: the queue holds `messages` messages for
/// the bench user (users/cdb points it at a maildir of its own); the time runs from the
/// start of qmail-start to the last message in Maildir/new.
pub fn local(inst: &Inst, cfg: &Cfg) -> io::Result<f64> {
    let new = maildir_home(inst, cfg).join("Maildir/new");
    for f in fs::read_dir(&new)?.flatten() {
        fs::remove_file(f.path())?;
    }
    fill_by_injection(inst, cfg.messages, LOCAL_RCPT, cfg)?;
    let log = cfg
        .work
        .join(format!("{}-local.{}.log", inst.label, run_number()));
    let start = Instant::now();
    let mut send = start_send(inst, &log)?;
    let n = cfg.messages as usize;
    let r = wait_until("local deliveries", Duration::from_secs(600), || {
        count_dir(&new) >= n
    });
    let secs = start.elapsed().as_secs_f64();
    send.stop(Duration::from_secs(60));
    r.map_err(|e| io::Error::other(format!("{}: {e}; see {}", inst.label, log.display())))?;
    inst::empty(&inst.queue())?;
    for f in fs::read_dir(&new)?.flatten() {
        fs::remove_file(f.path())?;
    }
    Ok(cfg.messages as f64 / secs)
}

/// Remote deliveries per second to smtp-sink on 127.0.0.1 (control/smtproutes), at the
/// given concurrencyremote; the time runs from the start of qmail-start until the queue is
/// empty. Also returns the number of deliveries the log does not call successful.
pub fn remote(inst: &mut Inst, concurrency: u32, cfg: &Cfg) -> io::Result<(f64, u64)> {
    let Some(sink) = &cfg.smtp_sink else {
        return Err(io::Error::other("smtp-sink missing"));
    };
    let port = sys::free_port()?;
    let mut c = cfg.postfix(sink);
    c.args(["-u", "nobody"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("1024")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _sink = Bg::spawn("smtp-sink", c)?;
    sys::wait_for_port(port)?;
    inst.set_control(
        "smtproutes",
        Some(&format!("sink.example:127.0.0.1:{port}\n")),
    )?;
    inst.set_control("concurrencyremote", Some(&format!("{concurrency}\n")))?;
    fill_by_injection(inst, cfg.messages, REMOTE_RCPT, cfg)?;
    let log = cfg.work.join(format!(
        "{}-remote-{concurrency}.{}.log",
        inst.label,
        run_number()
    ));
    let queue = inst.queue();
    let start = Instant::now();
    let mut send = start_send(inst, &log)?;
    let r = wait_until("remote deliveries", Duration::from_secs(900), || {
        inst::count(&queue, "todo") == 0 && inst::messages(&queue) == 0
    });
    let secs = start.elapsed().as_secs_f64();
    send.stop(Duration::from_secs(60));
    r.map_err(|e| io::Error::other(format!("{}: {e}; see {}", inst.label, log.display())))?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    let ok = text.matches(": success: ").count() as u64;
    inst::empty(&inst.queue())?;
    Ok((cfg.messages as f64 / secs, cfg.messages.saturating_sub(ok)))
}

/// One qmail-smtpd session over pipes, as tcpserver would start it: the time from exec to
/// the 220 greeting, and the peak resident memory (VmHWM) after a whole transaction with
/// one message, just before QUIT. Returns (median milliseconds, median kB) over the
/// configured number of sessions.
pub fn session(inst: &Inst, cfg: &Cfg) -> io::Result<(f64, f64)> {
    let mut lat = Vec::new();
    let mut rss = Vec::new();
    let body = inst::message(cfg.size, LOCAL_RCPT);
    let mut data = Vec::new();
    let body = body.strip_suffix(b"\n").unwrap_or(&body);
    for line in body.split(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            data.push(b'.');
        }
        data.extend_from_slice(line);
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    for _ in 0..cfg.sessions {
        let mut c = inst.cmd("qmail-smtpd");
        c.env("TCPREMOTEIP", "127.0.0.1")
            .env("TCPREMOTEPORT", "40000")
            .env("TCPLOCALIP", "127.0.0.1")
            .env("TCPLOCALPORT", "25")
            .env("TCPLOCALHOST", "bench.example")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let start = Instant::now();
        let mut child = c.spawn()?;
        let pid = child.id();
        let mut input = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("stdin"))?;
        let mut out = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("stdout"))?,
        );
        let reply = |out: &mut BufReader<_>| -> io::Result<String> {
            loop {
                let mut l = String::new();
                if out.read_line(&mut l)? == 0 {
                    return Err(io::Error::other("qmail-smtpd closed the connection"));
                }
                if l.as_bytes().get(3) != Some(&b'-') {
                    return Ok(l);
                }
            }
        };
        let greeting = reply(&mut out)?;
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
        if !greeting.starts_with("220 ") {
            return Err(io::Error::other(format!("greeting: {greeting}")));
        }
        for (cmd, want) in [
            ("HELO client.example\r\n".as_bytes(), "250"),
            (format!("MAIL FROM:<{SENDER}>\r\n").as_bytes(), "250"),
            (format!("RCPT TO:<{LOCAL_RCPT}>\r\n").as_bytes(), "250"),
            (b"DATA\r\n".as_slice(), "354"),
            (data.as_slice(), "250"),
        ] {
            input.write_all(cmd)?;
            let r = reply(&mut out)?;
            if !r.starts_with(want) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "{}: qmail-smtpd said {r}",
                    inst.label
                )));
            }
        }
        if let Some(kb) = sys::vm_hwm(pid) {
            rss.push(kb as f64);
        }
        input.write_all(b"QUIT\r\n")?;
        let _ = reply(&mut out);
        drop(input);
        child.wait()?;
    }
    inst::empty(&inst.queue())?;
    Ok((sys::median(&lat), sys::median(&rss)))
}

/// Seconds one run of `prog` (qmail-qstat or qmail-qread) takes, its output discarded.
pub fn time_tool(inst: &Inst, prog: &str) -> io::Result<f64> {
    let start = Instant::now();
    let st = inst
        .cmd(prog)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let secs = start.elapsed().as_secs_f64();
    if !st.success() {
        return Err(io::Error::other(format!("{} {prog}: {st}", inst.label)));
    }
    Ok(secs)
}

/// fsync calls per injected message, and how many of them are directories', counted with
/// strace over `n` injections.
pub fn fsyncs_per_message(inst: &Inst, n: u32, cfg: &Cfg) -> io::Result<(f64, f64)> {
    let Some(strace) = &cfg.strace else {
        return Err(io::Error::other("strace missing"));
    };
    let msg = inst::message(cfg.size, LOCAL_RCPT);
    let env = inst::envelope(LOCAL_RCPT);
    let trace = cfg.work.join(format!("{}-fsync.trace", inst.label));
    let (mut all, mut dirs) = (0u64, 0u64);
    for _ in 0..n {
        let (r0, mut w0) = io::pipe()?;
        w0.write_all(&msg)?;
        drop(w0);
        let (r1, mut w1) = io::pipe()?;
        w1.write_all(&env)?;
        drop(w1);
        let mut c = Command::new(strace);
        inst.env(&mut c);
        let st = c
            .args([
                "-f",
                "-qq",
                "-y",
                "-e",
                "trace=fsync,fdatasync,sync_file_range,syncfs",
                "-o",
            ])
            .arg(&trace)
            .arg(inst.bin("qmail-queue"))
            .stdin(Stdio::from(r0))
            .stdout(Stdio::from(r1))
            .stderr(Stdio::null())
            .status()?;
        if !st.success() {
            return Err(io::Error::other(format!(
                "{}: qmail-queue under strace: {st}",
                inst.label
            )));
        }
        for line in fs::read_to_string(&trace)?.lines() {
            // PID fsync(3</path>) = 0, or fsync(3</path>(deleted)) = 0
            let Some(open) = line.find("</") else {
                continue;
            };
            let Some(close) = line[open..].find('>') else {
                continue;
            };
            all += 1;
            if Path::new(&line[open + 1..open + close]).is_dir() {
                dirs += 1;
            }
        }
    }
    let _ = fs::remove_file(&trace);
    inst::empty(&inst.queue())?;
    Ok((all as f64 / n as f64, dirs as f64 / n as f64))
}
