//! Requests while qmail-send is not running, applied to the queue files directly.
//!
//! qmail-qctl takes `lock/sendmutex` (the lock qmail-send holds while it runs), so no
//! qmail-send can start in the middle; with it, no delivery is running and the files can
//! be changed in place:
//!
//! * hold and release set and clear the hold mark;
//! * delete holds the message, then removes bounce/N, local/S/N and remote/S/N (made
//!   durable): what is left (info/S/N, mess/S/N) is a finished message, which the next
//!   qmail-send - rqmail's or netqmail's - removes when it starts;
//! * retry sets the modification time of the recipient lists to now, which is where
//!   qmail-send keeps the time of the next attempt across restarts;
//! * a message still in todo/ cannot be held or deleted: only qmail-send preprocesses;
//! * pause and resume only make sense for a running qmail-send.

use qmail_queue::qctl as mark;
use qmail_queue::qctl::{Kind, Reply, Request};
use qmail_queue::{Queue, SPLIT};
use std::fs::{self, File, FileTimes};
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// The queue with qmail-send kept from starting.
#[derive(Debug)]
pub struct Offline {
    _lock: nix::fcntl::Flock<File>,
    q: Queue,
}

/// Takes lock/sendmutex. `Ok(None)` when it is taken: qmail-send is running.
pub fn lock(q: &Queue) -> io::Result<Option<Offline>> {
    let f = control::open_write(q.root().join("lock/sendmutex"))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(Offline {
            _lock: l,
            q: q.clone(),
        })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e.into()),
    }
}

fn exists(p: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn trouble(what: &str, p: &Path, e: &io::Error) -> Reply {
    eprintln!("qmail-qctl: warning: unable to {what} {}: {e}", p.display());
    Reply::new(Kind::Later, "trouble")
}

impl Offline {
    /// Applies one request to the files.
    pub fn request(&self, req: &Request) -> Reply {
        match *req {
            Request::Hold(id) => self.hold(id),
            Request::Release(id) => self.release(id),
            Request::Delete(id) => self.delete(id),
            Request::Retry(id) => self.retry(id),
            Request::RetryAll => self.retry_all(),
            Request::Pause(_) | Request::Resume(_) => Reply::new(Kind::Later, "not-running"),
            Request::Status => match self.held_count() {
                Ok(n) => Reply::new(Kind::Ok, "not-running").field("held", n),
                Err(e) => trouble("read", self.q.root(), &e),
            },
        }
    }

    /// `Err(reply)` when message `id` is in todo/ (needs qmail-send) or not in the queue.
    fn preprocessed(&self, id: u64) -> Result<(), Reply> {
        let todo = self.q.todo(id);
        match exists(&todo) {
            Ok(true) => Err(Reply::new(Kind::Later, "not-preprocessed").field("id", id)),
            Ok(false) => Ok(()),
            Err(e) => Err(trouble("stat", &todo, &e)),
        }
    }

    fn mark(&self, id: u64, hold: bool) -> Result<bool, Reply> {
        let info = self.q.info(id);
        mark::set_hold(&info, hold).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Reply::new(Kind::No, "not-found").field("id", id)
            } else {
                trouble("change the mode of", &info, &e)
            }
        })
    }

    fn hold(&self, id: u64) -> Reply {
        if let Err(r) = self.preprocessed(id) {
            return r;
        }
        match self.mark(id, true) {
            Ok(changed) => Reply::new(Kind::Ok, "held")
                .field("id", id)
                .field("already", u8::from(!changed))
                .field("offline", 1),
            Err(r) => r,
        }
    }

    fn release(&self, id: u64) -> Reply {
        if matches!(exists(&self.q.todo(id)), Ok(true)) {
            return Reply::new(Kind::Ok, "released")
                .field("id", id)
                .field("already", 1)
                .field("offline", 1);
        }
        match self.mark(id, false) {
            Ok(changed) => Reply::new(Kind::Ok, "released")
                .field("id", id)
                .field("already", u8::from(!changed))
                .field("offline", 1),
            Err(r) => r,
        }
    }

    fn delete(&self, id: u64) -> Reply {
        if let Err(r) = self.preprocessed(id) {
            return r;
        }
        if let Err(r) = self.mark(id, true) {
            return r;
        }
        let q = &self.q;
        let mut dirs = Vec::new();
        for p in [q.bounce(id), q.local(id), q.remote(id)] {
            match fs::remove_file(&p) {
                Ok(()) => {
                    if let Some(d) = p.parent() {
                        dirs.push(d.to_path_buf());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return trouble("unlink", &p, &e),
            }
        }
        for d in dirs {
            if let Err(e) = qmail_queue::fsync_dir(&d) {
                return trouble("fsync", &d, &e);
            }
        }
        Reply::new(Kind::Ok, "deleted")
            .field("id", id)
            .field("finished", 0)
            .field("offline", 1)
    }

    /// Makes the recipient lists of `id` due now. Returns how many there were.
    fn touch(&self, id: u64) -> Result<usize, Reply> {
        let mut n = 0;
        for p in [self.q.local(id), self.q.remote(id)] {
            let f = match control::open_write(&p) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(trouble("open", &p, &e)),
            };
            f.set_times(FileTimes::new().set_modified(SystemTime::now()))
                .map_err(|e| trouble("set the time of", &p, &e))?;
            n += 1;
        }
        Ok(n)
    }

    fn held(&self, id: u64) -> io::Result<Option<bool>> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(self.q.info(id)) {
            Ok(m) => Ok(Some(mark::is_held(m.mode()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn retry(&self, id: u64) -> Reply {
        match self.held(id) {
            Ok(Some(true)) => Reply::new(Kind::No, "held").field("id", id),
            Ok(Some(false)) => match self.touch(id) {
                Ok(n) => Reply::new(Kind::Ok, "retrying")
                    .field("id", id)
                    .field("channels", n)
                    .field("busy", 0)
                    .field("offline", 1),
                Err(r) => r,
            },
            Ok(None) if matches!(exists(&self.q.todo(id)), Ok(true)) => {
                Reply::new(Kind::Ok, "retrying")
                    .field("id", id)
                    .field("channels", 0)
                    .field("busy", 0)
                    .field("offline", 1)
            }
            Ok(None) => Reply::new(Kind::No, "not-found").field("id", id),
            Err(e) => trouble("stat", &self.q.info(id), &e),
        }
    }

    fn info_ids(&self) -> io::Result<Vec<u64>> {
        let mut v = Vec::new();
        for s in 0..SPLIT {
            for id in qmail_queue::ids_in(&self.q.root().join(format!("info/{s}")))? {
                v.push(id?);
            }
        }
        Ok(v)
    }

    fn retry_all(&self) -> Reply {
        let ids = match self.info_ids() {
            Ok(v) => v,
            Err(e) => return trouble("read", &self.q.root().join("info"), &e),
        };
        let mut n = 0;
        for id in ids {
            if let Ok(Some(false)) = self.held(id) {
                match self.touch(id) {
                    Ok(k) => n += k,
                    Err(r) => return r,
                }
            }
        }
        Reply::new(Kind::Ok, "retrying")
            .field("waiting", n)
            .field("offline", 1)
    }

    fn held_count(&self) -> io::Result<usize> {
        let mut n = 0;
        for id in self.info_ids()? {
            if self.held(id)? == Some(true) {
                n += 1;
            }
        }
        Ok(n)
    }
}
