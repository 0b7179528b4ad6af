//! Handing a message to qmail-queue, as netqmail's qmail.c does for qmail-smtpd,
//! qmail-inject, qmail-local (forwards) and qmail-send (bounces).
//!
//! The program is `$QMAILQUEUE` when set, else `bin/qmail-queue`; it runs in the qmail
//! home with the message on its descriptor 0 and the envelope on its descriptor 1. Its exit
//! code becomes a [`QueueError`] carrying netqmail's exact text, so that SMTP replies and
//! bounces read the same.
//!
//! Custom errors (the convention of the qmail-queue-custom-error patch, opt-in through
//! [`QueueClient::with_custom_error`]): the program gets a pipe on descriptor
//! [`CUSTOM_ERROR_FD`] (4) and `ERROR_FD=4` in its environment; when it exits
//! [`CUSTOM_ERROR_EXIT`] (82) after writing `D` (permanent) or `Z` (temporary) and a text
//! there, that text is the verdict. Exit 82 without such a text keeps netqmail's meaning
//! ("qq temporary problem").

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Why qmail-queue did not accept a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueError {
    /// True for a permanent failure (netqmail's "D" prefix): SMTP 554, a bounce.
    pub permanent: bool,
    /// The text, e.g. `qq write error or disk full (#4.3.0)`, or a custom error's.
    pub text: Cow<'static, str>,
    /// The exit code, when the program exited.
    pub code: Option<i32>,
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for QueueError {}

impl QueueError {
    const fn z(text: &'static str, code: Option<i32>) -> QueueError {
        QueueError {
            permanent: false,
            text: Cow::Borrowed(text),
            code,
        }
    }
    const fn d(text: &'static str, code: Option<i32>) -> QueueError {
        QueueError {
            permanent: true,
            text: Cow::Borrowed(text),
            code,
        }
    }

    /// The verdict of a custom error (exit [`CUSTOM_ERROR_EXIT`]) from what the program
    /// wrote on its error descriptor: `D` or `Z` and a text, of which the first line is
    /// kept (at most [`CUSTOM_ERROR_MAX`] bytes, bytes outside printable ASCII made `?`).
    /// `None` when there is no such text.
    pub fn custom(written: &[u8]) -> Option<QueueError> {
        let (&kind, rest) = written.split_first()?;
        let permanent = match kind {
            b'D' => true,
            b'Z' => false,
            _ => return None,
        };
        let line = rest
            .split(|&c| c == b'\n' || c == b'\r')
            .next()
            .unwrap_or(b"");
        let line = &line[..line.len().min(CUSTOM_ERROR_MAX)];
        let text: String = line
            .iter()
            .map(|&c| {
                if (b' '..=b'~').contains(&c) {
                    c as char
                } else {
                    '?'
                }
            })
            .collect();
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        Some(QueueError {
            permanent,
            text: Cow::Owned(text.to_string()),
            code: Some(CUSTOM_ERROR_EXIT),
        })
    }

    /// The SMTP reply line (with CRLF): 554 or 451 and the text, as netqmail's
    /// qmail-smtpd says it; a custom error's text that already starts with a reply code
    /// of the right kind (`550 5.7.1 ...` for a permanent one, `4xx ...` for a temporary
    /// one) is the reply as it is.
    pub fn smtp_reply(&self) -> String {
        let first = if self.permanent { b'5' } else { b'4' };
        let t = self.text.as_bytes();
        let coded = self.code == Some(CUSTOM_ERROR_EXIT)
            && t.len() > 4
            && t[0] == first
            && t[1..3].iter().all(u8::is_ascii_digit)
            && t[3] == b' ';
        if coded {
            format!("{}\r\n", self.text)
        } else {
            format!(
                "{} {}\r\n",
                if self.permanent { "554" } else { "451" },
                self.text
            )
        }
    }

    /// netqmail's qmail_close mapping from an exit code. `Ok(())` for 0 (when nothing went
    /// wrong on our side of the pipes).
    pub fn from_exit(code: i32, write_failed: bool) -> Result<(), QueueError> {
        let c = Some(code);
        Err(match code {
            0 if !write_failed => return Ok(()),
            11 | 115 => QueueError::d("envelope address too long for qq (#5.1.3)", c),
            31 => QueueError::d("mail server permanently rejected message (#5.3.0)", c),
            51 => QueueError::z("qq out of memory (#4.3.0)", c),
            52 => QueueError::z("qq timeout (#4.3.0)", c),
            53 => QueueError::z("qq write error or disk full (#4.3.0)", c),
            0 | 54 => QueueError::z("qq read error (#4.3.0)", c),
            55 => QueueError::z("qq unable to read configuration (#4.3.0)", c),
            56 => QueueError::z("qq trouble making network connection (#4.3.0)", c),
            61 => QueueError::z("qq trouble in home directory (#4.3.0)", c),
            62..=66 => QueueError::z("qq trouble creating files in queue (#4.3.0)", c),
            71 => QueueError::z("mail server temporarily rejected message (#4.3.0)", c),
            72 => QueueError::z("connection to mail server timed out (#4.4.1)", c),
            73 => QueueError::z("connection to mail server rejected (#4.4.1)", c),
            74 => QueueError::z("communication with mail server failed (#4.4.2)", c),
            81 | 91 => QueueError::z("qq internal bug (#4.3.0)", c),
            120 => QueueError::z("unable to exec qq (#4.3.0)", c),
            11..=40 => QueueError::d("qq permanent problem (#5.3.0)", c),
            _ => QueueError::z("qq temporary problem (#4.3.0)", c),
        })
    }

    /// The program was killed by a signal.
    pub fn crashed() -> QueueError {
        QueueError::z("qq crashed (#4.3.0)", None)
    }

    /// The program could not be started.
    pub fn exec_failed() -> QueueError {
        QueueError::z("unable to exec qq (#4.3.0)", Some(120))
    }

    /// netqmail's string form: `D` or `Z` followed by the text.
    pub fn prefixed(&self) -> String {
        format!("{}{}", if self.permanent { 'D' } else { 'Z' }, self.text)
    }
}

/// The descriptor on which a queue program may write a custom error.
pub const CUSTOM_ERROR_FD: i32 = 4;
/// The exit code that says "my verdict is on the custom error descriptor".
pub const CUSTOM_ERROR_EXIT: i32 = 82;
/// The most bytes of a custom error's text that are kept.
pub const CUSTOM_ERROR_MAX: usize = 512;

/// Which program to run: `$QMAILQUEUE` if set and non-empty, else `bin/qmail-queue`
/// (relative to the qmail home, where it runs).
pub fn queue_program() -> PathBuf {
    match std::env::var_os("QMAILQUEUE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("bin/qmail-queue"),
    }
}

/// The buffer in front of the program's descriptor 0: a few pipe writes per message
/// are cheap, while every byte of this buffer is touched (and held by each receiving
/// process: a qmail-smtpd session during DATA) once a message is larger than it.
/// Larger pieces of the message bypass it.
const MESSAGE_BUF: usize = 8 * 1024;

enum State {
    /// Writing the message to the program's descriptor 0.
    Message(BufWriter<File>),
    /// Writing the envelope to its descriptor 1.
    Envelope(BufWriter<File>),
    Closed,
}

/// A started program: by posix_spawn (see [`spawn`]), or by std's Command.
enum Running {
    Spawned(nix::unistd::Pid),
    Forked(Child),
}

impl Running {
    fn id(&self) -> u32 {
        match self {
            Running::Spawned(p) => u32::try_from(p.as_raw()).unwrap_or(0),
            Running::Forked(c) => c.id(),
        }
    }

    /// Waits for the program: `Ok(Some(code))` when it exited, `Ok(None)` when a signal
    /// ended it.
    fn wait(&mut self) -> io::Result<Option<i32>> {
        use nix::sys::wait::{WaitStatus, waitpid};
        match self {
            Running::Spawned(pid) => loop {
                match waitpid(*pid, None) {
                    Ok(WaitStatus::Exited(_, code)) => return Ok(Some(code)),
                    Ok(WaitStatus::Signaled(..)) => return Ok(None),
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(io::Error::from(e)),
                }
            },
            Running::Forked(c) => loop {
                match c.wait() {
                    Ok(s) => return Ok(s.code()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            },
        }
    }
}

/// A running qmail-queue.
pub struct QueueClient {
    child: Option<Running>,
    envelope_w: Option<File>,
    state: State,
    failed: bool,
    /// The read end of the custom error pipe, when the program got one.
    custom_r: Option<File>,
}

impl std::fmt::Debug for QueueClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueClient")
            .field("pid", &self.pid())
            .finish()
    }
}

impl QueueClient {
    /// Starts `program` in `home`. A program that cannot be executed is not an error here:
    /// as with netqmail, the message is swallowed and [`close`](Self::close) reports
    /// "unable to exec qq". An error means pipes could not be made or fork failed.
    pub fn open(home: &Path, program: &Path) -> io::Result<QueueClient> {
        QueueClient::open_env(home, program, &[])
    }

    /// As [`open`](Self::open), with environment variables changed for the program: each
    /// `(name, Some(value))` set, each `(name, None)` removed.
    pub fn open_env(
        home: &Path,
        program: &Path,
        env: &[(&str, Option<&[u8]>)],
    ) -> io::Result<QueueClient> {
        QueueClient::open_with(home, program, env, false)
    }

    /// As [`open_env`](Self::open_env), and the program may answer with a custom error
    /// (see the module documentation): qmail-smtpd's way to give a queue front end's
    /// own reply to the client.
    pub fn with_custom_error(
        home: &Path,
        program: &Path,
        env: &[(&str, Option<&[u8]>)],
    ) -> io::Result<QueueClient> {
        QueueClient::open_with(home, program, env, true)
    }

    fn open_with(
        home: &Path,
        program: &Path,
        env: &[(&str, Option<&[u8]>)],
        custom: bool,
    ) -> io::Result<QueueClient> {
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (env_r, env_w) = nix::unistd::pipe2(cloexec).map_err(io::Error::from)?;
        let (msg_r, msg_w) = nix::unistd::pipe2(cloexec).map_err(io::Error::from)?;
        let (custom_r, custom_w) = if custom {
            let (r, w) = nix::unistd::pipe2(cloexec).map_err(io::Error::from)?;
            (Some(File::from(r)), Some(w))
        } else {
            (None, None)
        };
        let error_fd = CUSTOM_ERROR_FD.to_string();
        let mut changes: Vec<(&str, Option<&[u8]>)> =
            vec![("ERROR_FD", custom.then_some(error_fd.as_bytes()))];
        changes.extend_from_slice(env);
        let spawned = if in_directory(home) && spawnable(&msg_r, &env_r, custom_w.as_ref()) {
            spawn(program, &changes, msg_r, env_r, custom_w).map(Running::Spawned)
        } else {
            // Another directory: std's Command, which forks to change into it.
            let mut cmd = Command::new(program);
            if let Some(w) = custom_w {
                crate::sys::on_exec_move_fd(&mut cmd, w, CUSTOM_ERROR_FD);
            }
            for (name, value) in &changes {
                match value {
                    Some(v) => cmd.env(name, std::ffi::OsStr::from_bytes(v)),
                    None => cmd.env_remove(name),
                };
            }
            cmd.current_dir(home)
                .stdin(Stdio::from(msg_r))
                .stdout(Stdio::from(env_r))
                .spawn()
                .map(Running::Forked)
        };
        match spawned {
            Ok(child) => Ok(QueueClient {
                child: Some(child),
                envelope_w: Some(File::from(env_w)),
                state: State::Message(BufWriter::with_capacity(MESSAGE_BUF, File::from(msg_w))),
                failed: false,
                custom_r,
            }),
            Err(e) if is_exec_error(&e) => Ok(QueueClient {
                child: None,
                envelope_w: None,
                state: State::Closed,
                failed: true,
                custom_r: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// Starts `$QMAILQUEUE` or `bin/qmail-queue` in `home`.
    pub fn open_default(home: &Path) -> io::Result<QueueClient> {
        QueueClient::open(home, &queue_program())
    }

    /// Starts `$QMAILQUEUE` or `bin/qmail-queue` in `home` with environment changes (see
    /// [`open_env`](Self::open_env)).
    pub fn open_default_env(home: &Path, env: &[(&str, Option<&[u8]>)]) -> io::Result<QueueClient> {
        QueueClient::open_env(home, &queue_program(), env)
    }

    /// The program's process id (0 when it could not be started): the `qp` of the logs.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Running::id)
    }

    /// Marks the message as failed: qmail-queue will see an incomplete envelope, and
    /// [`close`](Self::close) reports a failure whatever it exits with.
    pub fn fail(&mut self) {
        self.failed = true;
    }

    /// True once anything has failed.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Appends message bytes.
    pub fn put(&mut self, data: &[u8]) {
        if self.failed {
            return;
        }
        if let State::Message(w) = &mut self.state
            && w.write_all(data).is_err()
        {
            self.failed = true;
        }
    }

    fn env_put(&mut self, data: &[u8]) {
        if self.failed {
            return;
        }
        if let State::Envelope(w) = &mut self.state
            && w.write_all(data).is_err()
        {
            self.failed = true;
        }
    }

    /// Ends the message and writes the sender record.
    pub fn from(&mut self, sender: &[u8]) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        if let State::Message(mut w) = state {
            if w.flush().is_err() {
                self.failed = true;
            }
            drop(w);
        }
        if let Some(f) = self.envelope_w.take() {
            self.state = State::Envelope(BufWriter::with_capacity(4096, f));
        }
        self.env_put(b"F");
        self.env_put(sender);
        self.env_put(b"\0");
    }

    /// Writes a recipient record.
    pub fn to(&mut self, recipient: &[u8]) {
        self.env_put(b"T");
        self.env_put(recipient);
        self.env_put(b"\0");
    }

    /// Writes raw envelope bytes (records already formatted as `Taddr\0...`).
    pub fn put_envelope_raw(&mut self, records: &[u8]) {
        self.env_put(records);
    }

    /// Ends the envelope, waits for the program and maps its exit as netqmail does.
    pub fn close(mut self) -> Result<(), QueueError> {
        self.env_put(b"\0");
        let state = std::mem::replace(&mut self.state, State::Closed);
        match state {
            State::Envelope(mut w) => {
                if w.flush().is_err() {
                    self.failed = true;
                }
            }
            State::Message(w) => {
                // close() without from(): the envelope is never sent.
                drop(w);
                self.failed = true;
            }
            State::Closed => {}
        }
        self.envelope_w = None;
        let Some(mut child) = self.child.take() else {
            return Err(QueueError::exec_failed());
        };
        let Ok(code) = child.wait() else {
            return Err(QueueError::z("qq waitpid surprise (#4.3.0)", None));
        };
        match code {
            Some(CUSTOM_ERROR_EXIT) => Err(self
                .read_custom_error()
                .unwrap_or_else(|| QueueError::z("qq temporary problem (#4.3.0)", Some(82)))),
            Some(code) => QueueError::from_exit(code, self.failed),
            None => Err(QueueError::crashed()),
        }
    }
}

impl QueueClient {
    /// What the program left in the custom error pipe, read after it exited without
    /// waiting (a process it left behind may hold the write end open).
    fn read_custom_error(&mut self) -> Option<QueueError> {
        let f = self.custom_r.take()?;
        nix::fcntl::fcntl(
            &f,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .ok()?;
        let mut buf = Vec::new();
        let _ = (&f).take(CUSTOM_ERROR_MAX as u64 + 2).read_to_end(&mut buf);
        QueueError::custom(&buf)
    }
}

impl Drop for QueueClient {
    fn drop(&mut self) {
        self.state = State::Closed;
        self.envelope_w = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// True when this process's current directory is `dir` (the same inode): qmail-smtpd,
/// qmail-qmqpd and qmail-qmtpd run in the qmail home, where the program must run.
fn in_directory(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata("."), std::fs::metadata(dir)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// True when the descriptors can be moved into place by posix_spawn's dup2 actions in
/// the order [`spawn`] gives them (0, then 1, then 4): none is overwritten before it is
/// used, and none is its own target (whose close-on-exec flag dup2 would not clear).
/// Pipes made while 0, 1 and 2 are open always pass; anything else takes std's way.
fn spawnable(message: &OwnedFd, envelope: &OwnedFd, custom: Option<&OwnedFd>) -> bool {
    let (m, e) = (message.as_raw_fd(), envelope.as_raw_fd());
    let c = custom.map(AsRawFd::as_raw_fd);
    m != 0 && e != 0 && e != 1 && c.is_none_or(|c| c > 1 && c != CUSTOM_ERROR_FD)
}

/// Starts `program` with posix_spawn (the C library makes it a vfork: no copy of this
/// process's page tables, which std's Command would fork for the descriptor move and
/// the directory): `message` on its descriptor 0, `envelope` on 1, `custom` (if any) on
/// [`CUSTOM_ERROR_FD`]; this process's environment with `changes` (`None` removes);
/// every signal unblocked and SIGPIPE back to its default, as std's Command does.
fn spawn(
    program: &Path,
    changes: &[(&str, Option<&[u8]>)],
    message: OwnedFd,
    envelope: OwnedFd,
    custom: Option<OwnedFd>,
) -> io::Result<nix::unistd::Pid> {
    use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
    use std::ffi::CString;
    let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in an argument");
    let path = CString::new(program.as_os_str().as_bytes()).map_err(nul)?;
    let mut envp: Vec<CString> = Vec::new();
    for (name, value) in std::env::vars_os() {
        if changes.iter().any(|(n, _)| name.as_bytes() == n.as_bytes()) {
            continue;
        }
        let mut kv = std::os::unix::ffi::OsStringExt::into_vec(name);
        kv.push(b'=');
        kv.extend_from_slice(value.as_bytes());
        envp.push(CString::new(kv).map_err(nul)?);
    }
    for (name, value) in changes {
        if let Some(v) = value {
            envp.push(CString::new([name.as_bytes(), b"=", v].concat()).map_err(nul)?);
        }
    }
    let mut actions = PosixSpawnFileActions::init().map_err(io::Error::from)?;
    actions
        .add_dup2(message.as_raw_fd(), 0)
        .and_then(|()| actions.add_dup2(envelope.as_raw_fd(), 1))
        .map_err(io::Error::from)?;
    if let Some(c) = &custom {
        actions
            .add_dup2(c.as_raw_fd(), CUSTOM_ERROR_FD)
            .map_err(io::Error::from)?;
    }
    let mut attr = PosixSpawnAttr::init().map_err(io::Error::from)?;
    let mut pipe = nix::sys::signal::SigSet::empty();
    pipe.add(nix::sys::signal::Signal::SIGPIPE);
    attr.set_sigmask(&nix::sys::signal::SigSet::empty())
        .and_then(|()| attr.set_sigdefault(&pipe))
        .and_then(|()| {
            attr.set_flags(
                PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
            )
        })
        .map_err(io::Error::from)?;
    posix_spawn(path.as_c_str(), &actions, &attr, &[&path], &envp).map_err(io::Error::from)
}

fn is_exec_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    ) || e.raw_os_error() == Some(libc::ENOEXEC)
        || e.raw_os_error() == Some(libc::ENOTDIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_mapping_matches_netqmail() {
        assert_eq!(QueueError::from_exit(0, false), Ok(()));
        assert_eq!(
            QueueError::from_exit(0, true).unwrap_err().prefixed(),
            "Zqq read error (#4.3.0)"
        );
        assert_eq!(
            QueueError::from_exit(53, false).unwrap_err().prefixed(),
            "Zqq write error or disk full (#4.3.0)"
        );
        assert_eq!(
            QueueError::from_exit(11, false).unwrap_err().prefixed(),
            "Denvelope address too long for qq (#5.1.3)"
        );
        assert_eq!(
            QueueError::from_exit(25, false).unwrap_err().prefixed(),
            "Dqq permanent problem (#5.3.0)"
        );
        assert_eq!(
            QueueError::from_exit(99, false).unwrap_err().prefixed(),
            "Zqq temporary problem (#4.3.0)"
        );
        assert_eq!(
            QueueError::from_exit(91, false).unwrap_err().prefixed(),
            "Zqq internal bug (#4.3.0)"
        );
        assert_eq!(
            QueueError::from_exit(64, false).unwrap_err().prefixed(),
            "Zqq trouble creating files in queue (#4.3.0)"
        );
    }

    #[test]
    fn missing_program_swallows_and_reports() {
        let d = tempfile::tempdir().unwrap();
        let mut c = QueueClient::open(d.path(), Path::new("bin/nonexistent")).unwrap();
        c.put(b"data");
        c.from(b"a@b");
        c.to(b"c@d");
        assert_eq!(
            c.close().unwrap_err().prefixed(),
            "Zunable to exec qq (#4.3.0)"
        );
    }

    /// The home a test runs the program in: this process's own directory (`here`: the
    /// posix_spawn way) or `elsewhere` (std's Command, which forks to change into it).
    fn home_for(here: bool, elsewhere: &Path) -> PathBuf {
        if here {
            std::env::current_dir().unwrap()
        } else {
            elsewhere.to_path_buf()
        }
    }

    #[test]
    fn runs_a_program_with_both_descriptors() {
        // In another directory (std's Command forks to change into it), and in this
        // process's own (posix_spawn).
        for here in [false, true] {
            both_descriptors(here);
        }
    }

    fn both_descriptors(here: bool) {
        let d = tempfile::tempdir().unwrap();
        let home = home_for(here, d.path());
        let script = d.path().join("fakeqq");
        let out = d.path().join("out");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat > {0}.m\ncat <&1 > {0}.e\nexit 0\n",
                out.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = QueueClient::open(&home, &script).unwrap();
        assert!(c.pid() > 0);
        c.put(b"hello\n");
        c.from(b"a@b");
        c.to(b"c@d");
        c.close().unwrap();
        assert_eq!(std::fs::read(d.path().join("out.m")).unwrap(), b"hello\n");
        assert_eq!(
            std::fs::read(d.path().join("out.e")).unwrap(),
            b"Fa@b\0Tc@d\0\0"
        );

        // Variables set and removed for the program only.
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat >/dev/null\necho \"${{SET_ME-unset}} ${{HOME-unset}}\" > {}.v\n",
                out.display()
            ),
        )
        .unwrap();
        let mut c =
            QueueClient::open_env(&home, &script, &[("SET_ME", Some(b"a b")), ("HOME", None)])
                .unwrap();
        c.put(b"x");
        c.from(b"");
        c.close().unwrap();
        assert_eq!(
            std::fs::read(d.path().join("out.v")).unwrap(),
            b"a b unset\n"
        );

        std::fs::write(&script, "#!/bin/sh\ncat >/dev/null\nexit 53\n").unwrap();
        let mut c = QueueClient::open(&home, &script).unwrap();
        c.put(b"x");
        c.from(b"");
        assert_eq!(c.close().unwrap_err().code, Some(53));
    }

    #[test]
    fn custom_errors() {
        let e = QueueError::custom(b"D550 5.7.1 rejected by policy\nmore").unwrap();
        assert!(e.permanent);
        assert_eq!(e.smtp_reply(), "550 5.7.1 rejected by policy\r\n");
        let e = QueueError::custom(b"Zbusy \x01 now").unwrap();
        assert_eq!(e.smtp_reply(), "451 busy ? now\r\n");
        // A code of the wrong kind is text, not the reply's code.
        let e = QueueError::custom(b"D451 4.0.0 odd").unwrap();
        assert_eq!(e.smtp_reply(), "554 451 4.0.0 odd\r\n");
        assert_eq!(QueueError::custom(b"Xwhat"), None);
        assert_eq!(QueueError::custom(b"D  \n"), None);
        assert_eq!(QueueError::custom(b""), None);
        let long = QueueError::custom(&[b'D'; 2000]).unwrap();
        assert_eq!(long.text.len(), CUSTOM_ERROR_MAX);
        // netqmail's codes keep their replies.
        let e = QueueError::from_exit(31, false).unwrap_err();
        assert_eq!(
            e.smtp_reply(),
            "554 mail server permanently rejected message (#5.3.0)\r\n"
        );
    }

    #[test]
    fn a_program_gives_its_own_reply_on_descriptor_4() {
        for here in [false, true] {
            own_reply(here);
        }
    }

    fn own_reply(here: bool) {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let home = home_for(here, d.path());
        let script = d.path().join("fakeqq");
        let run = |body: &str, custom: bool| {
            std::fs::write(&script, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut c = if custom {
                QueueClient::with_custom_error(&home, &script, &[]).unwrap()
            } else {
                QueueClient::open(&home, &script).unwrap()
            };
            c.put(b"x\n");
            c.from(b"a@b");
            c.to(b"c@d");
            c.close()
        };
        let e = run("printf 'D550 5.7.1 no (#5.7.1)' >&$ERROR_FD; exit 82", true).unwrap_err();
        assert_eq!(e.smtp_reply(), "550 5.7.1 no (#5.7.1)\r\n");
        let e = run("echo 'Ztry later' >&4; exit 82", true).unwrap_err();
        assert_eq!(e.smtp_reply(), "451 try later\r\n");
        // Exit 82 without a text, or a text without exit 82: netqmail's meaning.
        let e = run("exit 82", true).unwrap_err();
        assert_eq!(e.smtp_reply(), "451 qq temporary problem (#4.3.0)\r\n");
        let e = run("echo 'D550 no' >&4; exit 31", true).unwrap_err();
        assert_eq!(e.text, "mail server permanently rejected message (#5.3.0)");
        // Without the convention the program has no descriptor 4 and no ERROR_FD.
        let e = run(
            "[ -z \"${ERROR_FD-}\" ] || exit 99; echo D >&4 || exit 82; exit 0",
            false,
        )
        .unwrap_err();
        assert_eq!(e.code, Some(82));
        assert!(!e.permanent);
        run("exit 0", true).unwrap();
    }
}
