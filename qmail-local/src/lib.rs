//! Local delivery, as netqmail does it.
//!
//! * [`local`]: qmail-local, with [`dotqmail`] (which .qmail file, what its lines say),
//!   [`headers`] (Delivered-To, Return-Path, From_), [`maildir`], [`mbox`] and
//!   [`program`] deliveries, forwards through qmail-queue;
//! * [`getpw`]: qmail-getpw, which user controls a local address;
//! * [`users`]: users/assign and users/cdb (qmail-newu, and the lookup qmail-lspawn makes);
//! * [`pw2u`]: qmail-pw2u, assignments from a passwd file;
//! * [`maildirmake`] and [`helpers`] (forward, preline, condredirect, bouncesaying,
//!   except): the small programs .qmail files call;
//! * [`errno`], [`fail`]: netqmail's words for errors and how a delivery fails.

pub mod dotqmail;
pub mod errno;
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
pub mod users;
