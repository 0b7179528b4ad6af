//! SRS, the Sender Rewriting Scheme (Shevek's paper; the format of libsrs2, Mail::SRS
//! and postsrsd), for qmail: what qmail-local (and forward(1), condredirect(1)) rewrite
//! the sender of a forward into, and what srsreverse checks and undoes when a bounce
//! comes back.
//!
//! * `scheme`: SRS0 and SRS1 addresses made ([`Srs::forward`]) and checked and undone
//!   ([`Srs::reverse`]): HMAC-SHA1 hashes (ring) in base64, cut to 4 characters by
//!   default, over the lowercased fields; two-character base32 day stamps valid for 21
//!   days by default; several secrets, the first signing; [`parse`] for the form alone,
//!   [`in_extension`] to find the address in a qmail extension;
//! * `config`: the control files (srsdomain, srssecrets, srsexclude, srsmaxage,
//!   srshashlength, srshashmin, srsseparator): [`Forwarding`] for qmail-local, [`load`]
//!   for srsreverse.
//!
//! Nothing here reads the clock: callers pass the time, so that tests can pick it.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

mod config;
mod hash;
mod scheme;
mod timestamp;

pub use config::{ConfigError, Forwarding, Problem as ConfigProblem, load};
pub use scheme::{
    LONGEST_HASH, LONGEST_MAX_AGE, MIN_HASH, ParamError, Params, Parsed, ReverseError, SEPARATORS,
    Srs, in_extension, parse, tag,
};
