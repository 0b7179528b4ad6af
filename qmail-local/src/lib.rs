//! Local delivery, as netqmail does it.
//!
//! * [`local`]: qmail-local, with the .qmail rules of the `recipient` crate (which
//!   .qmail file, what its lines say), [`headers`] (Delivered-To, Return-Path, From_), [`maildir`], [`mbox`] and
//!   [`program`] deliveries, forwards through qmail-queue;
//! * [`getpw`]: qmail-getpw, which user controls a local address (the rules are the
//!   `recipient` crate's);
//! * [`newu`]: qmail-newu, users/assign compiled into users/cdb;
//! * [`pw2u`]: qmail-pw2u, assignments from a passwd file;
//! * [`maildirmake`] and [`helpers`] (forward, preline, condredirect, bouncesaying,
//!   except): the small programs .qmail files call;
//! * [`fail`]: how a delivery fails (netqmail's words for errors are control's
//!   `errstr`).

pub mod fail;
pub mod getpw;
pub mod headers;
pub mod helpers;
pub mod local;
pub mod maildir;
pub mod maildirmake;
pub mod mbox;
pub mod newu;
pub mod program;
pub mod pw2u;
