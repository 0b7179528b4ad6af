//! The fake programs, each once: stand-ins for qmail-local, qmail-remote and qmail-getpw
//! that qmail-lspawn and qmail-rspawn run in place of the real ones, and a checkpassword
//! program for qmail-smtpd's AUTH and qmail-popup.
//!
//! The delivery fakes take their behaviour from files in `$QMAIL_HOME`, so that one script
//! serves every test:
//!
//! | file or directory | qmail-local | qmail-remote |
//! |---|---|---|
//! | `running/` | touches `running/LOCAL` on start | touches `running/remote-RECIPIENT` |
//! | `gate` | waits for a shared lock on it ([`close_gate`] holds it exclusively) | the same |
//! | `fail-LOCAL`, a local part `nosuch*` | fails permanently (exit 100) | |
//! | `defer-LOCAL` | defers (exit 111) | |
//! | `fail-remote` | | fails permanently (a `h` report) |
//! | `mail/` | keeps the message as `mail/LOCAL@DOMAIN.PID` | keeps it as `mail/remote-RECIPIENT.PID` |
//!
//! Every delivery that succeeds is recorded: `LOCAL@DOMAIN SENDER` in `delivered`
//! ([`delivered`]), `RECIPIENT SENDER` in `delivered-remote` ([`remote_delivered`]).

use crate::home::{Home, script, user_file, write_executable};
use crate::process::file_lines;
use crate::programs::python;
use crate::users::chown_user;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Stand-in for qmail-local (`qmail-local -- user home local dash ext domain sender
/// aliasempty`); see the module's table for what it does.
pub const FAKE_LOCAL: &str = r#"#!/bin/sh
# -- user home local dash ext domain sender aliasempty
q="$QMAIL_HOME"
if [ -d "$q/running" ]; then touch "$q/running/$4"; fi
if [ -e "$q/gate" ]; then flock -s "$q/gate" true; fi
case "$4" in
  nosuch*) echo "Sorry, no mailbox here by that name. (#5.1.1)"; exit 100 ;;
esac
if [ -e "$q/fail-$4" ]; then echo "Sorry, $4 is failing. (#5.1.1)"; exit 100; fi
if [ -e "$q/defer-$4" ]; then echo "Deferring $4 for now. (#4.2.1)"; exit 111; fi
if [ -d "$q/mail" ]; then cat > "$q/mail/$4@$7.$$"; else cat > /dev/null; fi
echo "$4@$7 $8" >> "$q/delivered"
echo "did 0+0+1"
exit 0
"#;

/// Stand-in for qmail-remote (`qmail-remote host sender recipient`): accepts, or rejects
/// permanently when `fail-remote` exists; see the module's table.
pub const FAKE_REMOTE: &str = r#"#!/bin/sh
# qmail-remote host sender recip
q="$QMAIL_HOME"
if [ -d "$q/running" ]; then touch "$q/running/remote-$3"; fi
if [ -e "$q/gate" ]; then flock -s "$q/gate" true; fi
if [ -e "$q/fail-remote" ]; then
  printf 'h%s does not like recipient.\nRemote host said: 550 no such user\n\0DGiving up on 10.0.0.1.\n\0' "$1"
  exit 0
fi
if [ -d "$q/mail" ]; then cat > "$q/mail/remote-$3.$$"; else cat > /dev/null; fi
echo "$3 $2" >> "$q/delivered-remote"
printf 'r\0K%s accepted message.\nRemote host said: 250 ok\n\0' "$1"
exit 0
"#;

/// Stand-in for qmail-getpw: every local part belongs to `nobody` (65534), home
/// `$QMAIL_HOME`, no extension.
pub const FAKE_GETPW: &str = r#"#!/bin/sh
printf '%s\0' nobody 65534 65534 "$QMAIL_HOME" - "$1"
"#;

/// Installs the fake qmail-local in the home's bin/.
pub fn fake_local(h: &Home) {
    script(h, "qmail-local", FAKE_LOCAL);
}

/// Installs the fake qmail-remote in the home's bin/.
pub fn fake_remote(h: &Home) {
    script(h, "qmail-remote", FAKE_REMOTE);
}

/// Installs the fake qmail-getpw in the home's bin/.
pub fn fake_getpw(h: &Home) {
    script(h, "qmail-getpw", FAKE_GETPW);
}

/// Makes `mail/` (given to the single-user runner): the fakes keep messages there.
pub fn mail_dir(h: &Home) -> PathBuf {
    let d = h.path().join("mail");
    fs::create_dir(&d).expect("mkdir mail");
    chown_user(&d);
    d
}

/// Makes `running/` and the `gate` file (given to the single-user runner): from now on
/// the fakes announce themselves in running/ and pass the gate, which waits while
/// [`close_gate`]'s lock is held.
pub fn gated(h: &Home) {
    let running = h.path().join("running");
    if !running.exists() {
        fs::create_dir(&running).expect("mkdir running");
        chown_user(&running);
    }
    if !h.path().join("gate").exists() {
        user_file(h, "gate", b"");
    }
}

/// Closes the gate ([`gated`] first when needed): deliveries by the fakes wait until the
/// returned lock is dropped.
pub fn close_gate(h: &Home) -> nix::fcntl::Flock<fs::File> {
    gated(h);
    let f = fs::File::open(h.path().join("gate")).expect("gate");
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock gate")
}

/// The names in `running/`: `LOCAL` for qmail-local, `remote-RECIPIENT` for qmail-remote.
pub fn running(h: &Home) -> BTreeSet<String> {
    fs::read_dir(h.path().join("running"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What the fakes kept in `mail/`: (file name, contents), sorted by name.
pub fn mail_files(h: &Home) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fs::read_dir(h.path().join("mail"))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().to_string(),
                        fs::read_to_string(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The local deliveries so far, in order: `LOCAL@DOMAIN SENDER`.
pub fn delivered(h: &Home) -> Vec<String> {
    file_lines(&h.path().join("delivered"))
}

/// The local parts of the local deliveries so far, in order.
pub fn delivered_locals(h: &Home) -> Vec<String> {
    delivered(h)
        .iter()
        .map(|l| {
            let addr = l.split(' ').next().unwrap_or_default();
            addr.rsplit_once('@')
                .map_or(addr, |(local, _)| local)
                .to_string()
        })
        .collect()
}

/// The remote deliveries so far, in order: `RECIPIENT SENDER`.
pub fn remote_delivered(h: &Home) -> Vec<String> {
    file_lines(&h.path().join("delivered-remote"))
}

/// The recipients of the remote deliveries so far, in order.
pub fn remote_recipients(h: &Home) -> Vec<String> {
    remote_delivered(h)
        .iter()
        .map(|l| l.split(' ').next().unwrap_or_default().to_string())
        .collect()
}

/// The test checkpassword program (Python), written as `dir/checkpw` (mode 0755) and
/// returned. It reads `user\0password\0timestamp\0` on descriptor 3 (at most 4096 bytes;
/// another shape exits 2) and appends `user password timestamp` to `checkpw.log` beside
/// itself. It exits 111 for the user "tempfail", kills itself for "crash", and accepts the
/// user joe with the password "secret", the APOP digest md5(timestamp + "secret") or the
/// CRAM-MD5 digest of the timestamp keyed with "secret"; anything else exits 1. On success
/// it changes to its own directory (a mailbox owner's home), sets USER and HOME, and runs
/// its arguments, as checkpassword does. It never switches users, so it serves
/// single-user mode and root mode alike.
pub fn checkpassword(dir: &Path) -> PathBuf {
    let p = dir.join("checkpw");
    write_executable(&p, format!("#!{}\n{CHECKPW}", python().display()));
    p
}

const CHECKPW: &str = r#"import hashlib, hmac, os, signal, sys
data = b""
while len(data) < 4096:
    b = os.read(3, 4096)
    if not b:
        break
    data += b
f = data.split(b"\0")
if len(f) != 4 or f[3] != b"":
    sys.exit(2)
user, pw, ts = f[0], f[1], f[2]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "checkpw.log"), "ab") as log:
    log.write(user + b" " + pw + b" " + ts + b"\n")
if user == b"tempfail":
    sys.exit(111)
if user == b"crash":
    os.kill(os.getpid(), signal.SIGKILL)
apop = hashlib.md5(ts + b"secret").hexdigest().encode()
cram = hmac.new(b"secret", ts, hashlib.md5).hexdigest().encode()
if user != b"joe" or not (pw == b"secret" or hmac.compare_digest(pw, apop) or hmac.compare_digest(pw, cram)):
    sys.exit(1)
os.chdir(here)
os.environ["USER"] = "joe"
os.environ["HOME"] = here
os.execvp(sys.argv[1], sys.argv[1:])
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::run_with_input;

    /// The home's bin/`name` (a fake once installed) with QMAIL_HOME set.
    fn fake(h: &Home, name: &str) -> std::process::Command {
        let mut c = std::process::Command::new(h.path().join("bin").join(name));
        c.env("QMAIL_HOME", h.path());
        c
    }

    /// Runs the home's fake qmail-local as qmail-lspawn would for `local`@testhost.example.
    fn local(h: &Home, local: &str) -> (i32, String) {
        let mut c = fake(h, "qmail-local");
        c.args([
            "--",
            "nobody",
            "/x",
            local,
            "",
            "",
            "testhost.example",
            "s@far.example",
            "",
        ]);
        let (code, out, _) = run_with_input(c, b"Subject: x\n\nbody\n");
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn fake_local_takes_its_behaviour_from_files_in_the_home() {
        let h = Home::new();
        fake_local(&h);
        mail_dir(&h);
        gated(&h);
        assert_eq!(local(&h, "joe"), (0, "did 0+0+1\n".to_string()));
        assert_eq!(local(&h, "nosuchuser").0, 100);
        fs::write(h.path().join("defer-ann"), "").expect("defer");
        let (code, out) = local(&h, "ann");
        assert_eq!(
            (code, out.as_str()),
            (111, "Deferring ann for now. (#4.2.1)\n")
        );
        assert_eq!(delivered(&h), ["joe@testhost.example s@far.example"]);
        assert_eq!(delivered_locals(&h), ["joe"]);
        assert_eq!(
            running(&h).into_iter().collect::<Vec<_>>(),
            ["ann", "joe", "nosuchuser"]
        );
        let mail = mail_files(&h);
        assert_eq!(mail.len(), 1);
        assert!(mail[0].0.starts_with("joe@testhost.example."), "{mail:?}");
        assert_eq!(mail[0].1, "Subject: x\n\nbody\n");
    }

    #[test]
    fn fake_remote_reports_as_qmail_remote_does() {
        let h = Home::new();
        fake_remote(&h);
        let run = |h: &Home| {
            let mut c = fake(h, "qmail-remote");
            c.args(["far.example", "s@here.example", "r@far.example"]);
            run_with_input(c, b"x\n")
        };
        let (code, out, _) = run(&h);
        assert_eq!(code, 0);
        assert_eq!(
            out,
            b"r\0Kfar.example accepted message.\nRemote host said: 250 ok\n\0"
        );
        assert_eq!(remote_delivered(&h), ["r@far.example s@here.example"]);
        assert_eq!(remote_recipients(&h), ["r@far.example"]);
        fs::write(h.path().join("fail-remote"), "").expect("fail-remote");
        let (_, out, _) = run(&h);
        assert!(
            out.starts_with(b"hfar.example does not like recipient."),
            "{out:?}"
        );
        assert_eq!(remote_delivered(&h).len(), 1);
    }
}
