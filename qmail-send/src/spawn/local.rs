//! qmail-lspawn's part: find the user in charge of a local address (users/cdb written by
//! qmail-newu, else bin/qmail-getpw), then run bin/qmail-local as that user.
//!
//! As in netqmail, a failure on the way is an exit code of the "child" mapped to a report
//! (qlx.h: control's `Exit::QLX_*`).

use super::{Status, Step, args_too_long, error_temp, output_pipe, running};
use control::Cdb;
use control::Exit;
use nix::unistd::{Gid, Uid};
use recipient::Assignment;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// netqmail's truncreport for qmail-local's output.
pub const TRUNCREPORT: usize = 3000;
const TRUNCMESS: &[u8] = b"\nError report too long, sorry.\n";
/// The most of qmail-getpw's answer kept.
pub const GETPW_LIMIT: usize = 64 * 1024;

/// The report when qmail-local's arguments are too long for the kernel (netqmail's
/// qmail-lspawn reports `DUnable to run qmail-local.` for the same failure).
pub const LOCAL_ARGS_TOO_LONG: &[u8] = b"DUnable to run qmail-local: the sender or recipient \
is longer than a program argument may be (131071 bytes). (#5.1.0)\n";
/// The report when the local part is too long to be qmail-getpw's argument (netqmail's
/// qmail-lspawn reports the temporary `ZUnable to run qmail-getpw.` until queuelifetime).
pub const GETPW_ARGS_TOO_LONG: &[u8] = b"DUnable to run qmail-getpw: the recipient's local \
part is longer than a program argument may be (131071 bytes). (#5.1.0)\n";

/// The report for a finished delivery, from the exit status and qmail-local's output
/// (netqmail's qmail-lspawn report()).
pub fn report(status: Status, output: &[u8]) -> Vec<u8> {
    let code = match status {
        Status::Crashed => return b"Zqmail-local crashed.\n".to_vec(),
        Status::Exited(c) => c,
    };
    let fixed: Option<&str> = match code {
        Exit::QLX_CDB => Some("ZTrouble reading users/cdb in qmail-lspawn.\n"),
        Exit::QLX_NOMEM => Some("ZOut of memory in qmail-lspawn.\n"),
        Exit::QLX_SYS => Some("ZTemporary failure in qmail-lspawn.\n"),
        Exit::QLX_NOALIAS => Some("ZUnable to find alias user!\n"),
        Exit::QLX_ROOT => Some("ZNot allowed to perform deliveries as root.\n"),
        Exit::QLX_USAGE => Some("ZInternal qmail-lspawn bug.\n"),
        Exit::QLX_NFS => Some("ZNFS failure in qmail-local.\n"),
        Exit::QLX_EXECHARD => Some("DUnable to run qmail-local.\n"),
        Exit::QLX_EXECSOFT => Some("ZUnable to run qmail-local.\n"),
        Exit::QLX_EXECPW => Some("ZUnable to run qmail-getpw.\n"),
        _ => None,
    };
    if let Some(t) = fixed {
        return t.as_bytes().to_vec();
    }
    let letter = match code {
        Exit::TEMP | Exit::EX_OSERR | Exit::EX_IOERR | Exit::EX_TEMPFAIL => b'Z',
        Exit::OK => b'K',
        _ => b'D',
    };
    let mut v = vec![letter];
    let end = output.iter().position(|&c| c == 0).unwrap_or(output.len());
    v.extend_from_slice(&output[..end]);
    v
}

/// Looks `local` up in an open users/cdb as qmail-lspawn does
/// ([`recipient::lookup_users_cdb`]). Returns the user's fields, `\0`-terminated, or
/// `None`. An error is Exit::QLX_CDB.
pub fn cdb_lookup(db: &Cdb, local: &[u8]) -> Result<Option<Vec<u8>>, Exit> {
    recipient::lookup_users_cdb(db, local).map_err(|_| Exit::QLX_CDB)
}

/// Where a local delivery stands.
#[derive(Debug)]
pub enum Stage {
    /// qmail-getpw is running.
    GetPw {
        mess: File,
        sender: Vec<u8>,
        recip: Vec<u8>,
        at: usize,
    },
    /// qmail-local is running.
    Local,
}

/// The qmail-lspawn spawner.
#[derive(Debug)]
pub struct Local {
    pub home: PathBuf,
    pub aliasempty: Vec<u8>,
    /// Run children under their own ids (root mode).
    pub switch_ids: bool,
    pub qmailp: Uid,
    pub nofiles: Gid,
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

impl Local {
    fn done(code: Exit) -> Step<Stage> {
        Step::Done(report(Status::Exited(code), b""))
    }

    fn getpw(&self, mess: File, sender: &[u8], recip: &[u8], at: usize) -> Step<Stage> {
        let Ok((r, w, _w2)) = output_pipe() else {
            return Self::done(Exit::QLX_SYS);
        };
        let mut c = Command::new(self.home.join("bin/qmail-getpw"));
        c.arg0("bin/qmail-getpw")
            .arg(os(&recip[..at]))
            .current_dir(&self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::from(w))
            .stderr(Stdio::null());
        if self.switch_ids {
            crate::sys::on_exec_become(
                &mut c,
                self.qmailp.as_raw(),
                self.nofiles.as_raw(),
                Exit::QLX_USAGE,
            );
        }
        super::child_limits(&mut c);
        match c.spawn() {
            Ok(child) => Step::Run(
                running(child, r),
                Stage::GetPw {
                    mess,
                    sender: sender.to_vec(),
                    recip: recip.to_vec(),
                    at,
                },
            ),
            Err(e) if args_too_long(&e) => Step::Done(GETPW_ARGS_TOO_LONG.to_vec()),
            Err(_) => Self::done(Exit::QLX_EXECPW),
        }
    }

    fn local(
        &self,
        nughde: &[u8],
        mess: File,
        sender: &[u8],
        recip: &[u8],
        at: usize,
    ) -> Step<Stage> {
        let Some(n) = Assignment::parse(nughde) else {
            return Self::done(Exit::QLX_USAGE);
        };
        let (Ok(uid), Ok(gid)) = (u32::try_from(n.uid), u32::try_from(n.gid)) else {
            return Self::done(Exit::QLX_USAGE);
        };
        if self.switch_ids && uid == 0 {
            return Self::done(Exit::QLX_ROOT);
        }
        let Ok((r, w, w2)) = output_pipe() else {
            return Self::done(Exit::QLX_SYS);
        };
        let mut c = Command::new(self.home.join("bin/qmail-local"));
        c.arg0("bin/qmail-local")
            .arg("--")
            .arg(os(&n.user))
            .arg(os(&n.home))
            .arg(os(&recip[..at]))
            .arg(os(&n.dash))
            .arg(os(&n.ext))
            .arg(os(&recip[at + 1..]))
            .arg(os(sender))
            .arg(os(&self.aliasempty))
            .current_dir(&self.home)
            .stdin(Stdio::from(mess))
            .stdout(Stdio::from(w))
            .stderr(Stdio::from(w2));
        if self.switch_ids {
            crate::sys::on_exec_become(&mut c, uid, gid, Exit::QLX_USAGE);
        }
        super::child_limits(&mut c);
        match c.spawn() {
            Ok(child) => Step::Run(running(child, r), Stage::Local),
            Err(e) if args_too_long(&e) => Step::Done(LOCAL_ARGS_TOO_LONG.to_vec()),
            Err(e) if error_temp(&e) => Self::done(Exit::QLX_EXECSOFT),
            Err(_) => Self::done(Exit::QLX_EXECHARD),
        }
    }
}

impl super::Spawner for Local {
    type Stage = Stage;

    fn start(&mut self, mess: File, sender: &[u8], recip: &[u8], at: usize) -> Step<Stage> {
        let local = &recip[..at];
        if local.is_empty() {
            // An empty mailbox name is a trash address.
            return Step::Done(report(Status::Exited(Exit::OK), b""));
        }
        let db = match Cdb::open_optional(&self.home.join("users/cdb")) {
            Ok(db) => db,
            Err(_) => return Self::done(Exit::QLX_CDB),
        };
        if let Some(db) = db {
            match cdb_lookup(&db, local) {
                Err(code) => return Self::done(code),
                Ok(Some(n)) => return self.local(&n, mess, sender, recip, at),
                Ok(None) => {}
            }
        }
        self.getpw(mess, sender, recip, at)
    }

    fn finish(
        &mut self,
        stage: Stage,
        status: Status,
        mut output: Vec<u8>,
        overflow: bool,
    ) -> Step<Stage> {
        match stage {
            Stage::GetPw {
                mess,
                sender,
                recip,
                at,
            } => match status {
                Status::Crashed => Self::done(Exit::QLX_SYS),
                Status::Exited(Exit::OK) if overflow => Self::done(Exit::QLX_SYS),
                Status::Exited(Exit::OK) => self.local(&output, mess, &sender, &recip, at),
                Status::Exited(code) => Self::done(code),
            },
            Stage::Local => {
                if overflow {
                    output.truncate(TRUNCREPORT - TRUNCMESS.len() - 3);
                    output.extend_from_slice(TRUNCMESS);
                }
                Step::Done(report(status, &output))
            }
        }
    }

    fn output_limit(&self, stage: &Stage) -> usize {
        match stage {
            Stage::GetPw { .. } => GETPW_LIMIT,
            Stage::Local => TRUNCREPORT,
        }
    }
}

/// Keeps only CAP_SETUID and CAP_SETGID (bounding, effective and permitted sets), clears
/// the inheritable and ambient sets. Called once at start when running as root.
pub fn drop_capabilities() -> Result<(), caps::errors::CapsError> {
    use caps::{CapSet, Capability, CapsHashSet};
    let kept = [Capability::CAP_SETUID, Capability::CAP_SETGID];
    // The bounding set first: changing it needs CAP_SETPCAP, which goes next. (Started
    // by qmail-start it is already that; started as root otherwise, it becomes that; where
    // root lacks CAP_SETPCAP, as in some containers, it stays as it was.)
    let _ = control::confine::Policy::new().bounding_set(&kept).apply();
    let keep: CapsHashSet = kept.into_iter().collect();
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    Ok(())
}

/// The qmail-lspawn program (`qmail-lspawn defaultdelivery`). Returns its exit code.
pub fn main() -> Exit {
    let mut args = std::env::args_os().skip(1);
    let Some(aliasempty) = args.next() else {
        return Exit::PERM;
    };
    let Some(home) = super::enter_queue() else {
        return Exit::TEMP;
    };
    let ids = match control::Ids::for_this_process() {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("qmail-lspawn: fatal: {e}");
            return Exit::TEMP;
        }
    };
    if !ids.single_user
        && let Err(e) = drop_capabilities()
    {
        eprintln!("qmail-lspawn: fatal: unable to drop capabilities: {e}");
        return Exit::TEMP;
    }
    let wide = super::wide_max(super::raise_nofile());
    let spawner = Local {
        home,
        aliasempty: aliasempty.as_bytes().to_vec(),
        switch_ids: !ids.single_user,
        qmailp: ids.qmailp,
        nofiles: ids.nofiles,
    };
    super::Server::new(spawner, ids.qmailq.as_raw(), wide).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_match_netqmail() {
        assert_eq!(report(Status::Crashed, b""), b"Zqmail-local crashed.\n");
        assert_eq!(
            report(Status::Exited(Exit::OK), b"did 0+0+1/\n"),
            b"Kdid 0+0+1/\n"
        );
        assert_eq!(
            report(Status::Exited(Exit::from_status(111)), b"temp\0junk"),
            b"Ztemp"
        );
        assert_eq!(report(Status::Exited(Exit::from_status(75)), b"x"), b"Zx");
        assert_eq!(
            report(Status::Exited(Exit::from_status(100)), b"no"),
            b"Dno"
        );
        assert_eq!(report(Status::Exited(Exit::from_status(99)), b"no"), b"Dno");
        assert_eq!(
            report(Status::Exited(Exit::QLX_ROOT), b"x"),
            b"ZNot allowed to perform deliveries as root.\n"
        );
        assert_eq!(
            report(Status::Exited(Exit::QLX_EXECHARD), b""),
            b"DUnable to run qmail-local.\n"
        );
        assert_eq!(
            report(Status::Exited(Exit::QLX_NOALIAS), b""),
            b"ZUnable to find alias user!\n"
        );
    }

    #[test]
    fn cdb_exact_and_wildcards() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cdb");
        // As qmail-newu writes them for:
        //   +:alias:7790:2108:/q/alias:-::
        //   +joe-:joe:507:100:/home/joe:-::
        //   =joe:joe:507:100:/home/joe:::
        let entries: Vec<(&[u8], &[u8])> = vec![
            (b"!", b"alias\x007790\x002108\x00/q/alias\x00-\x00"),
            (b"!joe-", b"joe\x00507\x00100\x00/home/joe\x00-\x00"),
            (b"!joe\0", b"joe\x00507\x00100\x00/home/joe\x00\x00"),
            (b"", b"-"),
        ];
        control::write_cdb(&p, &d.path().join("tmp"), entries).unwrap();
        let db = Cdb::open_optional(&p).unwrap().unwrap();
        let get = |l: &[u8]| Assignment::parse(&cdb_lookup(&db, l).unwrap().unwrap()).unwrap();
        let joe = get(b"Joe");
        assert_eq!(
            (joe.dash.as_slice(), joe.ext.as_slice()),
            (&b""[..], &b""[..])
        );
        let direct = get(b"joe-direct");
        assert_eq!(
            (
                direct.user.as_slice(),
                direct.dash.as_slice(),
                direct.ext.as_slice()
            ),
            (&b"joe"[..], &b"-"[..], &b"direct"[..])
        );
        let bill = get(b"bill");
        assert_eq!(
            (bill.user.as_slice(), bill.ext.as_slice()),
            (&b"alias"[..], &b"bill"[..])
        );
        // "joex" must not match "!joe-" and "!joe" is not a wildcard key: falls to "+".
        let joex = get(b"joex");
        assert_eq!(
            (joex.user.as_slice(), joex.ext.as_slice()),
            (&b"alias"[..], &b"joex"[..])
        );
    }

    #[test]
    fn cdb_without_wildchars_is_trouble() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cdb");
        control::write_cdb(&p, &d.path().join("tmp"), vec![(&b"!a\0"[..], &b"x"[..])]).unwrap();
        let db = Cdb::open_optional(&p).unwrap().unwrap();
        assert_eq!(cdb_lookup(&db, b"a"), Err(Exit::QLX_CDB));
    }

    proptest::proptest! {
        #[test]
        fn untrusted_fields_never_panic(x in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), code in 0i32..256) {
            let r = report(Status::Exited(Exit::from_status(code)), &x);
            proptest::prop_assert!(matches!(r[0], b'K' | b'Z' | b'D'));
            proptest::prop_assert!(!r.contains(&0));
        }
    }
}
