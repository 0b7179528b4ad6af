//! The envelope sender of a forward, with SRS (the `srs` crate, configured by
//! control/srsdomain and its companions): what `&address` lines, forward(1) and
//! condredirect(1) give qmail-queue.
//!
//! The sender is rewritten into an SRS address at the SRS domain only when all of these
//! hold; otherwise the forward keeps netqmail's sender:
//! 1. control/srsdomain exists with a domain (without it nothing else is read);
//! 2. the sender is the message's own (`$SENDER`), not a list owner's address from the
//!    `-owner` files (that address is this host's: its bounces come straight back);
//! 3. at least one recipient of the forward is remote, as qmail-send would route it
//!    (control/locals and virtualdomains, through the `recipient` crate's rules): a
//!    local forward is checked by nobody's SPF;
//! 4. the sender is not null, not qmail's `#@[]` or VERP `-@[]` form, not already at the
//!    SRS domain, and its domain is not listed in control/srsexclude.

use control::Controls;
use recipient::{Channel, Route};

/// A forward that cannot be given its sender: a control file could not be used. Always a
/// temporary failure.
#[derive(Debug)]
pub struct Unconfigured(pub String);

/// The envelope sender for forwarding mail whose sender is `sender` to `recips`, where
/// netqmail would use `newsender` (`$NEWSENDER`: the sender, or a list owner's address).
/// Reads the qmail home's control files; `now` is the time for the SRS timestamp.
pub fn forward_sender<R: AsRef<[u8]>>(
    sender: &[u8],
    newsender: &[u8],
    recips: &[R],
    now: u64,
) -> Result<Vec<u8>, Unconfigured> {
    if newsender != sender || sender.is_empty() {
        return Ok(newsender.to_vec());
    }
    let home = control::qmail_home();
    let fwd = srs::Forwarding::load(&home).map_err(|e| Unconfigured(e.to_string()))?;
    let Some(fwd) = fwd else {
        return Ok(newsender.to_vec());
    };
    if !any_remote(fwd.controls(), recips)? {
        return Ok(newsender.to_vec());
    }
    Ok(fwd
        .rewrite(sender, now)
        .unwrap_or_else(|| newsender.to_vec()))
}

/// Whether qmail-send would deliver any of `recips` remotely.
fn any_remote<R: AsRef<[u8]>>(ctl: &Controls, recips: &[R]) -> Result<bool, Unconfigured> {
    let route = Route::load(ctl).map_err(|e| {
        Unconfigured(format!(
            "control/{}: unable to read: {}",
            e.file,
            control::describe_error(&e.error)
        ))
    })?;
    Ok(recips
        .iter()
        .any(|r| recipient::rewrite(&route, r.as_ref()).0 == Channel::Remote))
}
