//! What qmail-queue does, step by step (INTERNALS, qmail-queue(8)):
//!
//! 1. create `pid/PID.TIME.SEQ` exclusively; its inode number N names the message;
//! 2. link it to `mess/S/N`, remove the pid name;
//! 3. write the Received line and the message from descriptor 0; fsync the file and the
//!    `mess/S` directory;
//! 4. create `intd/N` exclusively with `uUID\0pPID\0` and the envelope from descriptor 1;
//!    fsync it;
//! 5. link `intd/N` to `todo/N`, fsync `todo/`: from now on the message is qmail-send's;
//! 6. write a byte to `lock/trigger`.
//!
//! Any failure before step 5 removes what was made (netqmail leaves the files of an
//! envelope format error for qmail-send's cleanup; rqmail removes them at once).

use crate::durable::fsync_parent;
use crate::envelope::{self, EnvelopeError, RecordWriter};
use crate::fdio::Fill;
use crate::layout::Queue;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// qmail-queue's exit codes (qmail-queue(8)) are control's [`Exit`]`::QQ_*`.
pub use control::Exit;

/// Seconds after which qmail-queue gives up (exit 52): 24 hours, below qmail-send's
/// 36-hour limit for cleaning up abandoned files.
pub const DEATH_SECS: u64 = 86400;

/// The words after "invoked" for the user `name` (uid `uid`): the alias user "by alias",
/// qmaild "from network", qmails "for bounce", anyone else (or a uid without a name)
/// "by uid N". netqmail compares the uid with the qmail uids compiled into it; rqmail
/// compares the invoker's name, which needs one lookup instead of three.
pub fn invoked_words(uid: u32, name: Option<&str>) -> String {
    match name {
        Some("alias") => "by alias".to_string(),
        Some("qmaild") => "from network".to_string(),
        Some("qmails") => "for bounce".to_string(),
        _ => format!("by uid {uid}"),
    }
}

/// Facts about the invocation that end up in the queue files.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// This process's id (the `qp` of the logs).
    pub pid: u32,
    /// The real uid of the invoker.
    pub uid: u32,
    /// Start time, seconds since the epoch.
    pub now: u64,
    /// The words after "invoked": `by alias`, `from network`, `for bounce` or `by uid N`.
    pub invoked: String,
    /// QUEUE_EXTRA: records added after the sender (empty in netqmail's default build).
    pub extra: Vec<u8>,
}

impl Invocation {
    /// Describes the current process, naming the invoker as netqmail does: the alias user
    /// "by alias", qmaild "from network", qmails "for bounce", anyone else "by uid N".
    pub fn current() -> Invocation {
        let uid = nix::unistd::getuid().as_raw();
        // One read of /etc/passwd (the invoker's name), not one lookup per qmail user.
        let name = crate::passwd::user_name(uid);
        Invocation {
            pid: std::process::id(),
            uid,
            now: control::now(),
            invoked: invoked_words(uid, name.as_deref()),
            extra: Vec::new(),
        }
    }

    /// Appends `Received: (qmail PID invoked ...); DATE\n` to `buf`.
    fn write_received(&self, buf: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = writeln!(
            buf,
            "Received: (qmail {} invoked {}); {}",
            self.pid,
            self.invoked,
            control::date822(self.now)
        );
    }
}

struct Made {
    mess: Option<(PathBuf, File)>,
    intd: Option<(PathBuf, File)>,
}

impl Made {
    /// Removes what was made, truncating first so that a stale name holds no data.
    fn cleanup(&mut self) {
        if let Some((p, f)) = self.intd.take() {
            let _ = f.set_len(0);
            if fs::remove_file(&p).is_err() {
                return;
            }
        }
        if let Some((p, f)) = self.mess.take() {
            let _ = f.set_len(0);
            let _ = fs::remove_file(&p);
        }
    }
}

fn open_excl(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(p)
}

const BUF: usize = 64 * 1024;

/// Queues one message: the message from `msg`, the envelope from `env`.
pub fn enqueue<M: Fill, E: Read>(home: &Path, msg: M, env: E, inv: &Invocation) -> Exit {
    match fs::metadata(home) {
        Ok(m) if m.is_dir() => {}
        _ => return Exit::QQ_HOME,
    }
    let queue = Queue::in_home(home);
    match fs::metadata(queue.root()) {
        Ok(m) if m.is_dir() => {}
        _ => return Exit::QQ_QUEUEDIR,
    }

    // 1. the pid file
    let mut pid_file = None;
    for seq in 1..10 {
        let p = queue
            .root()
            .join(format!("pid/{}.{}.{}", inv.pid, inv.now, seq));
        if let Ok(f) = open_excl(&p) {
            pid_file = Some((p, f));
            break;
        }
    }
    let Some((pid_path, mess_file)) = pid_file else {
        return Exit::QQ_PID;
    };
    let id = match mess_file.metadata() {
        Ok(m) => m.ino(),
        Err(_) => {
            let _ = fs::remove_file(&pid_path);
            return Exit::QQ_PID;
        }
    };

    // 2. pid -> mess. A file system without a free inode or block still lets the pid
    // file be made and then refuses the link (tmpfs counts each link as an inode): the
    // pid file goes, as everything else qmail-queue made (netqmail leaves it for
    // qmail-send's 36-hour cleanup).
    let mess_path = queue.mess(id);
    if fs::hard_link(&pid_path, &mess_path).is_err() {
        let _ = fs::remove_file(&pid_path);
        return Exit::QQ_MESS;
    }
    if fs::remove_file(&pid_path).is_err() {
        let _ = mess_file.set_len(0);
        let _ = fs::remove_file(&mess_path);
        return Exit::QQ_PID;
    }
    let mut made = Made {
        mess: None,
        intd: None,
    };
    let r = write_message(&mess_file, msg, inv, &mess_path);
    made.mess = Some((mess_path, mess_file));
    if let Err(code) = r {
        made.cleanup();
        return code;
    }

    // 4. intd
    let intd_path = queue.intd(id);
    let intd_file = match open_excl(&intd_path) {
        Ok(f) => f,
        Err(_) => {
            made.cleanup();
            return Exit::QQ_INTD;
        }
    };
    let r = write_intd(&intd_file, env, inv);
    made.intd = Some((intd_path.clone(), intd_file));
    if let Err(code) = r {
        made.cleanup();
        return code;
    }

    // 5. intd -> todo
    let todo_path = queue.todo(id);
    if fs::hard_link(&intd_path, &todo_path).is_err() {
        made.cleanup();
        return Exit::QQ_TODO;
    }
    // The todo link exists: the message now belongs to qmail-send, whatever happens next.
    made.mess = None;
    made.intd = None;
    if fsync_parent(&todo_path).is_err() {
        return Exit::QQ_TODO;
    }

    // 6. trigger
    crate::trigger::pull(queue.root());
    Exit::OK
}

/// Step 3: the Received line and the message, through one buffer that the reads fill
/// directly (no copy between buffers, nothing zeroed first), written when full and at the
/// end; then the file and its directory made durable.
fn write_message<M: Fill>(
    mut file: &File,
    mut msg: M,
    inv: &Invocation,
    path: &Path,
) -> Result<(), Exit> {
    let mut buf = Vec::with_capacity(BUF);
    inv.write_received(&mut buf);
    loop {
        if buf.len() == buf.capacity() {
            file.write_all(&buf).map_err(|_| Exit::QQ_WRITE)?;
            buf.clear();
        }
        match msg.fill(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Exit::QQ_READ),
        }
    }
    file.write_all(&buf).map_err(|_| Exit::QQ_WRITE)?;
    file.sync_all().map_err(|_| Exit::QQ_WRITE)?;
    fsync_parent(path).map_err(|_| Exit::QQ_WRITE)?;
    Ok(())
}

fn write_intd<E: Read>(file: &File, env: E, inv: &Invocation) -> Result<(), Exit> {
    let mut out = BufWriter::with_capacity(BUF, file);
    write!(out, "u{}\0p{}\0", inv.uid, inv.pid).map_err(|_| Exit::QQ_WRITE)?;
    let mut w = RecordWriter {
        out,
        extra: inv.extra.clone(),
    };
    let mut input = BufReader::with_capacity(2048, env);
    match envelope::copy(&mut input, &mut w) {
        Ok(()) => {}
        Err(EnvelopeError::TooLong) => return Err(Exit::QQ_ADDR_TOO_LONG),
        Err(EnvelopeError::Format) => return Err(Exit::QQ_FORMAT),
        Err(EnvelopeError::Read(_)) => return Err(Exit::QQ_READ),
        Err(EnvelopeError::Write(_)) => return Err(Exit::QQ_WRITE),
    }
    let file = w.out.into_inner().map_err(|_| Exit::QQ_WRITE)?;
    file.sync_all().map_err(|_| Exit::QQ_WRITE)?;
    Ok(())
}

/// The whole qmail-queue program: message on fd 0, envelope on fd 1.
pub fn main() -> Exit {
    std::panic::set_hook(Box::new(|_| std::process::exit(Exit::QQ_BUG.code())));
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o033));
    crate::sys::arm_death_alarm(DEATH_SECS);
    let home = control::qmail_home();
    // As netqmail: into the home first (exit 61 when that fails), so that every later
    // path is short and relative (fewer components for the kernel to walk per step).
    if std::env::set_current_dir(&home).is_err() {
        return Exit::QQ_HOME;
    }
    let inv = Invocation::current();
    let stdin = io::stdin();
    let stdout = io::stdout();
    use std::os::fd::AsFd;
    let msg = crate::fdio::FdReader::new(stdin.as_fd());
    let env = crate::fdio::FdReader::new(stdout.as_fd());
    enqueue(Path::new("."), msg, env, &inv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::Ids;

    fn setup() -> (tempfile::TempDir, Invocation) {
        let d = tempfile::tempdir().unwrap();
        crate::layout::create(&d.path().join("queue"), &Ids::single_user()).unwrap();
        let inv = Invocation {
            pid: 4242,
            uid: 1000,
            now: 812_090_814,
            invoked: "by uid 1000".into(),
            extra: vec![],
        };
        (d, inv)
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for e in walk(dir) {
            if e.is_file() {
                v.push(e);
            }
        }
        v
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    v.extend(walk(&p));
                } else {
                    v.push(p);
                }
            }
        }
        v
    }

    #[test]
    fn queues_exact_bytes() {
        let (d, inv) = setup();
        let code = enqueue(
            d.path(),
            &b"Subject: hi\n\nbody\n"[..],
            &b"Fa@b\0Tc@d\0Te@f\0\0"[..],
            &inv,
        );
        assert_eq!(code, Exit::OK);
        let todo: Vec<_> = files(&d.path().join("queue/todo"));
        assert_eq!(todo.len(), 1);
        let id: u64 = todo[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let q = Queue::in_home(d.path());
        assert_eq!(
            fs::read(q.mess(id)).unwrap(),
            b"Received: (qmail 4242 invoked by uid 1000); 26 Sep 1995 04:46:54 -0000\nSubject: hi\n\nbody\n"
        );
        assert_eq!(
            fs::read(q.todo(id)).unwrap(),
            b"u1000\0p4242\0Fa@b\0Tc@d\0Te@f\0"
        );
        assert_eq!(fs::read(q.intd(id)).unwrap(), fs::read(q.todo(id)).unwrap());
        assert!(files(&d.path().join("queue/pid")).is_empty());
    }

    #[test]
    fn message_longer_than_the_buffer() {
        let (d, inv) = setup();
        let body: Vec<u8> = (0..3 * BUF + 17).map(|i| b'a' + (i % 26) as u8).collect();
        let code = enqueue(d.path(), &body[..], &b"Fa@b\0Tc@d\0\0"[..], &inv);
        assert_eq!(code, Exit::OK);
        let todo = files(&d.path().join("queue/todo"));
        let id: u64 = todo[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let mut want = Vec::new();
        inv.write_received(&mut want);
        want.extend_from_slice(&body);
        assert_eq!(fs::read(Queue::in_home(d.path()).mess(id)).unwrap(), want);
    }

    #[test]
    fn faults_leave_nothing() {
        for (env, want) in [
            (&b"Xa\0\0"[..], Exit::QQ_FORMAT),
            (b"Fa\0Tb\0", Exit::QQ_READ),
            (b"Fa\0Ub\0\0", Exit::QQ_FORMAT),
        ] {
            let (d, inv) = setup();
            assert_eq!(enqueue(d.path(), &b"x\n"[..], env, &inv), want);
            let left = files(&d.path().join("queue"))
                .into_iter()
                .filter(|p| !p.starts_with(d.path().join("queue/lock")))
                .collect::<Vec<_>>();
            assert!(left.is_empty(), "{left:?}");
        }
        let (d, inv) = setup();
        let mut long = b"F".to_vec();
        long.extend(std::iter::repeat_n(b'a', 2000));
        long.extend(b"\0\0");
        assert_eq!(
            enqueue(d.path(), &b"x"[..], &long[..], &inv),
            Exit::QQ_ADDR_TOO_LONG
        );
    }

    #[test]
    fn missing_dirs() {
        let (d, inv) = setup();
        assert_eq!(
            enqueue(&d.path().join("nope"), &b""[..], &b"F\0\0"[..], &inv),
            Exit::QQ_HOME
        );
        let e = tempfile::tempdir().unwrap();
        assert_eq!(
            enqueue(e.path(), &b""[..], &b"F\0\0"[..], &inv),
            Exit::QQ_QUEUEDIR
        );
        fs::remove_dir_all(d.path().join("queue/todo")).unwrap();
        assert_eq!(
            enqueue(d.path(), &b""[..], &b"F\0\0"[..], &inv),
            Exit::QQ_TODO
        );
        let left = files(&d.path().join("queue/mess"));
        assert!(left.is_empty());
    }

    #[test]
    fn invoked_words_as_netqmail() {
        assert_eq!(invoked_words(7, Some("alias")), "by alias");
        assert_eq!(invoked_words(7, Some("qmaild")), "from network");
        assert_eq!(invoked_words(7, Some("qmails")), "for bounce");
        assert_eq!(invoked_words(1000, Some("joe")), "by uid 1000");
        assert_eq!(invoked_words(4242, None), "by uid 4242");
    }

    #[test]
    fn received_line_format() {
        let (_d, inv) = setup();
        let mut v = Vec::new();
        inv.write_received(&mut v);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "Received: (qmail 4242 invoked by uid 1000); 26 Sep 1995 04:46:54 -0000\n"
        );
    }
}
