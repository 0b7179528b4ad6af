//! Remote delivery: qmail-remote, a drop-in for netqmail 1.06's, with IPv6, DNS through
//! hickory-proto, control/smtproutes and outbound STARTTLS (rustls) configured as the qmail
//! TLS patch does; and qmail-tcpto and qmail-tcpok for the table of hosts that timed out.
//!
//! * `remote`: the program's flow, from arguments to reports;
//! * `routes`, `addr`, `mx`, `dns`, `ipme`: where the mail goes and what the
//!   envelope looks like;
//! * `conn`, `reply`, `smtp`, `tls`: the SMTP dialogue;
//! * `report`: the output protocol read by qmail-rspawn;
//! * `utf8`: SMTPUTF8 and internationalized domain names;
//! * `mtasts`: MTA-STS (RFC 8461), policies fetched over HTTPS and cached;
//! * `qmtp`: delivery by QMTP to the hosts in control/qmtproutes;
//! * `qmqpc`: qmail-qmqpc, qmail-queue's interface over QMQP (mini-qmail);
//! * `tcpto`: the timeout table and its two programs.

#![forbid(unsafe_code)]

mod addr;
mod conn;
pub mod dane;
mod dns;
mod ipme;
mod mtasts;
mod mx;
mod qmqpc;
mod qmtp;
mod remote;
mod reply;
mod report;
mod routes;
mod smtp;
mod tcpto;
mod tls;
mod utf8;

pub use qmqpc::main as qmail_qmqpc;
pub use remote::main as qmail_remote;
pub use tcpto::{tcpok_main as qmail_tcpok, tcpto_main as qmail_tcpto};

/// The parsers of untrusted input, for the fuzz targets.
pub use mtasts::fetch::{Response as StsResponse, parse_response as parse_sts_response};
pub use mtasts::policy::{parse_policy as parse_sts_policy, parse_txt as parse_sts_txt};
pub use qmqpc::{
    parse_server as parse_qmqp_server, read_envelope as read_qmqp_envelope,
    scan_reply as scan_qmqp_reply,
};
pub use reply::{Parser as ReplyParser, Reply, parse_all as parse_replies};
pub use routes::{BadRoute, Route, Routes, parse_relay};

/// The records of lock/tcpto (and tcpto6) as qmail-remote and qmail-tcpto read them.
pub mod tcpto_table {
    pub use crate::tcpto::{Layout, V4, V6, check, show, update};
}
