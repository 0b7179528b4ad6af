//! Local delivery, as netqmail does it.
//!
//! * `local`: qmail-local, with the .qmail rules of the `recipient` crate (which .qmail
//!   file, what its lines say), `headers` (Delivered-To, Return-Path, From_), `maildir`,
//!   `mbox` and `program` deliveries, forwards through qmail-queue;
//! * `forwarding`: the envelope sender of a forward, rewritten with SRS (the `srs`
//!   crate) when control/srsdomain asks for it; `srsreverse`: the program that checks
//!   an SRS address a bounce comes back to and forwards the bounce to the original
//!   sender;
//! * `getpw`: qmail-getpw, which user controls a local address (the rules are the
//!   `recipient` crate's);
//! * `newu`: qmail-newu, users/assign compiled into users/cdb;
//! * `pw2u`: qmail-pw2u, assignments from a passwd file;
//! * `maildirmake` and `helpers` (forward, preline, condredirect, bouncesaying, except):
//!   the small programs .qmail files call;
//! * `maildir2mbox`, `maildirwatch`, `qbiff`, `qreceipt`: the tools for reading mail
//!   netqmail ships (moving a Maildir into an mbox, watching one, announcing and
//!   acknowledging deliveries), with `summary` (what a notice shows of a message) and
//!   `tools` (their messages and `$MAILDIR`);
//! * `fail`: how a delivery fails (netqmail's words for errors are control's `errstr`).
//!
//! Other crates use the programs only.

#![forbid(unsafe_code)]

mod fail;
mod forwarding;
mod getpw;
mod headers;
mod helpers;
mod local;
mod maildir;
mod maildir2mbox;
mod maildirmake;
mod maildirwatch;
mod mbox;
mod newu;
mod program;
mod pw2u;
mod qbiff;
mod qreceipt;
mod srsreverse;
mod summary;
mod tools;

pub use getpw::main as qmail_getpw;
pub use helpers::{
    bouncesaying_main as bouncesaying, condredirect_main as condredirect, except_main as except,
    forward_main as forward, preline_main as preline,
};
pub use local::main as qmail_local;
pub use maildir2mbox::main as maildir2mbox;
pub use maildirmake::main as maildirmake;
pub use maildirwatch::main as maildirwatch;
pub use newu::main as qmail_newu;
pub use pw2u::main as qmail_pw2u;
pub use qbiff::main as qbiff;
pub use qreceipt::main as qreceipt;
pub use srsreverse::main as srsreverse;

/// What the mail readers' tools read from messages, for the fuzz targets.
pub use maildir2mbox::from_line as mbox_from_line;
pub use qreceipt::{
    ReadError as ReceiptError, Request as ReceiptRequest, read_request as receipt_request,
};
pub use summary::{Summary, printable, summarize};
