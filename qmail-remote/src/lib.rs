//! Remote delivery: qmail-remote, a drop-in for netqmail 1.06's, with IPv6, DNS through
//! hickory-proto, control/smtproutes and outbound STARTTLS (rustls) configured as the qmail
//! TLS patch does; and qmail-tcpto and qmail-tcpok for the table of hosts that timed out.
//!
//! * [`remote`]: the program's flow, from arguments to reports;
//! * [`routes`], [`addr`], [`mx`], [`dns`], [`ipme`]: where the mail goes and what the
//!   envelope looks like;
//! * [`conn`], [`reply`], [`smtp`], [`tls`]: the SMTP dialogue;
//! * [`report`]: the output protocol read by qmail-rspawn;
//! * [`tcpto`]: the timeout table and its two programs.

pub mod addr;
pub mod conn;
pub mod dns;
pub mod ipme;
pub mod mx;
pub mod remote;
pub mod reply;
pub mod report;
pub mod routes;
pub mod smtp;
pub mod tcpto;
pub mod tls;
