//! The privilege qmail-dkim is installed with (setuid qmailq, like qmail-queue) and how
//! little of it is used.
//!
//! The keys are readable by qmailq only, so that the users who inject mail (qmaild, local
//! users) cannot read them. The effective uid stays qmailq only while control/dkimkeys
//! and the key files are read: it becomes the invoker's while the message (a stranger's
//! bytes) is read and parsed, with qmailq kept as the saved uid for the key files of the
//! From: domain, and all three uids become the invoker's before the keys are used and the
//! queue program runs. The kernel keeps a process whose ids changed this way from being
//! traced or dumped by the invoker, so the key in memory stays out of the invoker's reach,
//! as in OpenSSH's setuid ssh-keysign.
//!
//! Run without setuid privilege (single-user mode, or root), none of this changes anything.

use nix::unistd::{Gid, Uid, getresgid, getresuid, setresgid, setresuid};

/// The ids this process started with.
#[derive(Debug, Clone, Copy)]
pub struct Privs {
    real: Uid,
    privileged: Uid,
    gid: Gid,
}

impl Privs {
    /// The ids now (at the start: the real uid is the invoker's, the effective one the
    /// setuid owner's).
    pub fn current() -> nix::Result<Privs> {
        let u = getresuid()?;
        let g = getresgid()?;
        Ok(Privs {
            real: u.real,
            privileged: u.effective,
            gid: g.real,
        })
    }

    /// True when the program runs with an effective uid it did not inherit.
    pub fn setuid(&self) -> bool {
        self.real != self.privileged
    }

    /// Acts as the invoker, keeping the privileged uid as the saved one.
    pub fn suspend(&self) -> nix::Result<()> {
        if self.setuid() {
            setresuid(self.real, self.real, self.privileged)?;
        }
        Ok(())
    }

    /// Acts as the privileged uid again (after [`suspend`](Self::suspend)).
    pub fn resume(&self) -> nix::Result<()> {
        if self.setuid() {
            setresuid(self.real, self.privileged, self.privileged)?;
        }
        Ok(())
    }

    /// Becomes the invoker for good: real, effective and saved ids all the invoker's.
    pub fn drop_for_good(&self) -> nix::Result<()> {
        if getresgid()?.effective != self.gid {
            setresgid(self.gid, self.gid, self.gid)?;
        }
        setresuid(self.real, self.real, self.real)?;
        let u = getresuid()?;
        if u.effective != self.real || u.saved != self.real {
            return Err(nix::errno::Errno::EPERM);
        }
        Ok(())
    }
}
