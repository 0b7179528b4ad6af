//! qmail-newu: compile QMAIL_HOME/users/assign into users/cdb (qmail-newu(8)).
//!
//! The database is written to users/cdb.tmp, fsynced, renamed over users/cdb and the
//! directory fsynced: qmail-lspawn sees the old file or the new one, never a mix. On any
//! problem users/cdb is left alone and the exit code is 111 (a temporary failure).

use control::Exit;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use recipient::{AssignError, compile_users_assign};

fn die(what: &str) -> Exit {
    let _ = io::stderr().write_all(format!("qmail-newu: fatal: {what}\n").as_bytes());
    Exit::TEMP
}

/// Compiles `home`/users/assign; the exit code.
pub fn run(home: &Path) -> Exit {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o033));
    let users = home.join("users");
    let assign = match File::open(users.join("assign")) {
        Ok(f) => f,
        Err(_) => return die("unable to open users/assign"),
    };
    let tmp_path = users.join("cdb.tmp");
    let tmp = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp_path)
    {
        Ok(f) => f,
        Err(_) => return die("unable to open users/cdb.tmp"),
    };
    let mut maker = match tmp.try_clone().and_then(cdb2::CDBMake::new) {
        Ok(m) => m,
        Err(_) => return die("unable to write users/cdb.tmp"),
    };
    let r = compile_users_assign(BufReader::with_capacity(64 * 1024, assign), |k, v| {
        maker.add(k, v)
    });
    match r {
        Ok(()) => {}
        Err(AssignError::Read(_)) => return die("unable to read users/assign"),
        Err(AssignError::Format) => return die("bad format in users/assign"),
        Err(AssignError::Write(_)) => return die("unable to write users/cdb.tmp"),
    }
    if maker.finish().and_then(|()| tmp.sync_all()).is_err() {
        return die("unable to write users/cdb.tmp");
    }
    if nix::unistd::close(tmp).is_err() {
        return die("unable to write users/cdb.tmp");
    }
    if std::fs::rename(&tmp_path, users.join("cdb")).is_err() {
        return die("unable to move users/cdb.tmp to users/cdb");
    }
    if qmail_queue::fsync_dir(&users).is_err() {
        return die("unable to move users/cdb.tmp to users/cdb");
    }
    Exit::OK
}

/// The whole program.
pub fn main() -> Exit {
    let home = control::qmail_home();
    if std::env::set_current_dir(&home).is_err() {
        return die("unable to chdir");
    }
    run(Path::new("."))
}
