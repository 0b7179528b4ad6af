//! Live queue management for rqmail: the qmail-qctl program, and the request protocol that
//! qmail-send serves.
//!
//! * the requests and replies on qmail-send's control socket and how a held message is
//!   marked in the queue are the queue library's (`qmail_queue::qctl`,
//!   `qmail_queue::mark`), which qmail-send uses too;
//! * `scan` and `filter` - reading the queue and selecting messages;
//! * `output` - the listings and results for people, as JSON lines and as TSV;
//! * `client` - talking to qmail-send; `offline` - the same requests applied to the
//!   files while qmail-send is not running;
//! * `cli` - the program.
//!
//! The design in short: qmail-send alone changes the state of messages, because only it
//! knows which deliveries are running. qmail-qctl reads the queue itself to list and show
//! messages (as qmail-qread does), and asks qmail-send, over a UNIX socket, to hold,
//! release, delete or retry a message or to pause or resume a channel. qmail-send applies
//! a request at once (no delivery starts for a held or deleted message after that), then
//! answers when the deliveries of that message that were already running have reported,
//! so that when qmail-qctl returns nothing of the message is being delivered.
//!
//! This crate is separate from `qmail-queue` (whose programs reproduce netqmail's exactly,
//! and whose qmail-queue is setuid) and from `qmail-send` (the daemons); the protocol both
//! ends speak is defined once, in the queue library below them.

#![forbid(unsafe_code)]

mod cli;
mod client;
mod filter;
mod offline;
mod output;
mod privs;
mod scan;

pub use cli::main as qmail_qctl;
/// What `show` makes of bounce/N and mess/N, for the fuzz targets.
pub use output::{human_text, json_str, tsv_field};
pub use scan::header as message_header;
