//! DKIM (DomainKeys Identified Mail, RFC 6376, with Ed25519 from RFC 8463) as a library:
//! what qmail-dkim signs with, and what a verifier can build on.
//!
//! * `header`: the header section of a message streamed past ([`Collector`], bounded)
//!   and split into fields ([`Header`], [`Field`]);
//! * `canon`: simple and relaxed canonicalisation of header fields
//!   ([`canonicalize_header`]) and of a body fed in pieces ([`BodyCanon`]), the SHA-256
//!   body hash ([`BodyHasher`]), and the conversion of bare CRs into line ends that RFC
//!   6376 asks of a signer ([`LineEnds`]);
//! * `address`: the mailboxes of a From: (or any address-list) field, for the author
//!   domain ([`mailboxes`]);
//! * `key`: private keys read from PEM files, RSA-SHA256 and Ed25519-SHA256 signing with
//!   ring, the public key in DNS record form ([`SigningKey`]);
//! * `sign`: the DKIM-Signature field: which fields are signed (oversigning,
//!   [`DEFAULT_HEADERS`]), its tags, folding and signature ([`Signer`]).
//!
//! Messages are taken in qmail's stored form (lines end in LF); every computation is on
//! the wire form qmail-remote sends (CR LF for each LF, any other byte as it is).

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

mod address;
mod canon;
mod header;
mod key;
mod sign;

pub use address::{AddressError, Domain, Mailbox, mailboxes};
pub use canon::{Body as BodyCanon, BodyHasher, Canon, LineEnds, header as canonicalize_header};
pub use header::{Collector, Feed, Field, Header, Malformed, TooLong};
pub use key::{Algorithm, KeyError, SigningKey};
pub use sign::{DEFAULT_HEADERS, HeaderList, SignError, Signed, Signer, valid_name};
