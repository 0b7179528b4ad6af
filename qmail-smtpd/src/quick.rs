//! What qmail-qmqpd and qmail-qmtpd share: the whole connection has one deadline (an
//! hour, netqmail's `alarm(3600)`, kept by [`watchdog`]), and the reply to a message is
//! netqmail's `Kok TIME qp PID` or the queue's `D`/`Z` text.

use crate::session::Message;
use control::Exit;
use qmail_queue::QueueError;
use std::time::Duration;

/// netqmail's limit on a whole QMQP or QMTP connection.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// Exit codes of both servers, as netqmail's: 0 when the client went away (or after the
/// QMQP reply), 100 for a protocol violation, 111 for a local problem or the timeout.
pub const EXIT_OK: Exit = Exit::OK;
pub const EXIT_BADPROTO: Exit = Exit::PERM;
pub const EXIT_RESOURCES: Exit = Exit::TEMP;

/// Ends the process with exit 111 once `limit` has passed, whatever it is doing then
/// (netqmail's `alarm(3600)`): a client that stops reading its answers cannot hold the
/// process either. A message being read is abandoned with the process.
pub fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        std::process::exit(EXIT_RESOURCES.code());
    });
}

/// The reply text for a message that went to qmail-queue: netqmail's `Kok TIME qp PID`
/// on success, else the queue's text with its `D` or `Z`.
pub fn verdict(result: Result<(), QueueError>, now: u64, qp: u32) -> String {
    match result {
        Ok(()) => format!("Kok {now} qp {qp}"),
        Err(e) => e.prefixed(),
    }
}

/// Ends a message that will not be completed: qmail-queue sees its input end before the
/// envelope does and stores nothing.
pub fn abandon<M: Message>(m: Option<M>) {
    if let Some(mut m) = m {
        m.fail();
        m.abandon();
    }
}

/// A diagnostic line: `PROGRAM: MSG` on descriptor 2, unless descriptor 2 is the client's
/// connection (as under inetd). The program's name is the one its main gave
/// [`control::diagnostics::init`].
pub fn log(_program: &str, msg: &str) {
    tracing::error!("{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(Ok(()), 1700000000, 42), "Kok 1700000000 qp 42");
        assert_eq!(
            verdict(QueueError::from_exit(53, false), 1, 2),
            "Zqq write error or disk full (#4.3.0)"
        );
        assert_eq!(
            verdict(QueueError::from_exit(31, false), 1, 2),
            "Dmail server permanently rejected message (#5.3.0)"
        );
    }
}
