//! Who qmail-qctl runs as.
//!
//! Started by root, it becomes the user qmails with group qmail (netqmail's ids, looked
//! up by name) before it reads anything: that user owns info/, local/, remote/ and
//! bounce/, may read mess/ and todo/ through the group, and is the one qmail-send answers
//! besides root. Started by another user it stays that user (single-user mode, where
//! that user owns the whole queue; anyone else gets "permission denied").

use control::{Ids, root_mode};

/// Switches to qmails:qmail when running as root.
pub fn become_queue_user() -> Result<(), String> {
    if !root_mode() {
        return Ok(());
    }
    let ids = Ids::lookup().map_err(|e| e.to_string())?;
    nix::unistd::setgroups(&[ids.qmail]).map_err(|e| format!("unable to set groups: {e}"))?;
    nix::unistd::setresgid(ids.qmail, ids.qmail, ids.qmail)
        .map_err(|e| format!("unable to set gid: {e}"))?;
    nix::unistd::setresuid(ids.qmails, ids.qmails, ids.qmails)
        .map_err(|e| format!("unable to set uid: {e}"))?;
    Ok(())
}
