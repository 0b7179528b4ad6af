//! Whose mail is signed: the environment qmail-dkim inherits from the program that runs
//! it says who handed over the message (qmail-dkim(8)).
//!
//! * `SMTPAUTHUSER` set: qmail-smtpd's client authenticated with SMTP AUTH (qmail-smtpd
//!   sets it for the qmail-queue it starts, and removes an inherited one otherwise);
//! * `RELAYCLIENT` set: the client may relay (set by tcpserver's rules, as for
//!   qmail-smtpd itself);
//! * `TCPREMOTEIP` not set: no network client at all, a local injection (qmail-inject,
//!   sendmail, a qmail-smtpd run on a pipe with `sendmail -bs`).
//!
//! Anything else is mail from a stranger: it goes to qmail-queue untouched.

use std::ffi::OsString;

/// Why a message is to be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// SMTP AUTH, with the user name qmail-smtpd passed on.
    Authenticated(OsString),
    /// A relay client.
    RelayClient,
    /// Local injection.
    Local,
}

/// The decision for an environment read through `get`.
pub fn decide(get: impl Fn(&str) -> Option<OsString>) -> Option<Trust> {
    if let Some(user) = get("SMTPAUTHUSER") {
        return Some(Trust::Authenticated(user));
    }
    if get("RELAYCLIENT").is_some() {
        return Some(Trust::RelayClient);
    }
    if get("TCPREMOTEIP").is_none() {
        return Some(Trust::Local);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Option<Trust> {
        decide(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn decisions() {
        assert_eq!(with(&[]), Some(Trust::Local));
        assert_eq!(with(&[("TCPREMOTEIP", "192.0.2.1")]), None);
        assert_eq!(
            with(&[("TCPREMOTEIP", "192.0.2.1"), ("RELAYCLIENT", "")]),
            Some(Trust::RelayClient)
        );
        assert_eq!(
            with(&[("TCPREMOTEIP", "192.0.2.1"), ("SMTPAUTHUSER", "joe")]),
            Some(Trust::Authenticated("joe".into()))
        );
        // TCPREMOTEIP set to nothing is still a network client.
        assert_eq!(with(&[("TCPREMOTEIP", "")]), None);
    }
}
