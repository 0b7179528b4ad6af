//! DKIM (DomainKeys Identified Mail, RFC 6376, with Ed25519 from RFC 8463) as a library:
//! what qmail-dkim signs with, and what a verifier can build on.
//!
//! * [`header`]: the header section of a message streamed past ([`header::Collector`],
//!   bounded) and split into fields ([`header::Header`]);
//! * [`canon`]: simple and relaxed canonicalisation of header fields and of a body fed in
//!   pieces, the SHA-256 body hash ([`canon::BodyHasher`]), and the conversion of bare
//!   CRs into line ends that RFC 6376 asks of a signer ([`canon::LineEnds`]);
//! * [`address`]: the mailboxes of a From: (or any address-list) field, for the author
//!   domain;
//! * [`key`]: private keys read from PEM files, RSA-SHA256 and Ed25519-SHA256 signing with
//!   ring, the public key in DNS record form;
//! * [`sign`]: the DKIM-Signature field: which fields are signed (oversigning), its tags,
//!   folding and signature.
//!
//! Messages are taken in qmail's stored form (lines end in LF); every computation is on
//! the wire form qmail-remote sends (CR LF for each LF, any other byte as it is).

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod address;
pub mod canon;
pub mod header;
pub mod key;
pub mod sign;

pub use address::{Domain, Mailbox, mailboxes};
pub use canon::{BodyHasher, Canon, LineEnds};
pub use header::{Collector, Feed, Header};
pub use key::{Algorithm, KeyError, SigningKey};
pub use sign::{DEFAULT_HEADERS, SignError, Signer};
