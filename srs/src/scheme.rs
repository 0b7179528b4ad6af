//! SRS addresses: making them (forward) and checking and undoing them (reverse), in the
//! format libsrs2, Mail::SRS (its default "Guarded" scheme) and postsrsd share.
//!
//! * A sender `user@host` forwarded by a host whose SRS domain is `srs.example` becomes
//!   `SRS0=HHHH=TT=host=user@srs.example`: `HHHH` the hash of `TT`, `host` and `user`,
//!   `TT` the day it was made.
//! * A sender that is already an SRS0 address made elsewhere,
//!   `SRS0=HHHH=TT=host=user@first.example`, becomes
//!   `SRS1=GGGG=first.example==HHHH=TT=host=user@srs.example`: `GGGG` the hash of
//!   `first.example` and `=HHHH=TT=host=user` (the SRS0 address's separator kept). A
//!   bounce to it goes back to the first forwarder, whose hash it is to check.
//! * An SRS1 sender `SRS1=GGGG=first.example==...@second.example` keeps its payload:
//!   `SRS1=FFFF=first.example==...@srs.example`, hashed anew.
//!
//! The character after `SRS0`/`SRS1` may be `=`, `+` or `-`; all other separators are
//! `=`. Tags are recognised in either case.

use crate::hash::{self, MAX_HASH};
use crate::timestamp;
use std::fmt;

/// The separators allowed after the tag.
pub const SEPARATORS: &[u8] = b"=+-";
/// The shortest hash this implementation makes or accepts: 24 bits.
pub const MIN_HASH: usize = 4;
/// The longest hash: all of HMAC-SHA1 in base64.
pub const LONGEST_HASH: usize = MAX_HASH;
/// The longest validity, in days: a timestamp's cycle is 1024 days.
pub const LONGEST_MAX_AGE: u32 = 1000;

/// The settings of a rewriter, libsrs2's defaults in [`Params::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The length of the hashes made ([`MIN_HASH`] to [`LONGEST_HASH`]; default 4).
    pub hash_length: usize,
    /// The shortest hash accepted ([`MIN_HASH`] to `hash_length`; default `hash_length`).
    pub hash_min: usize,
    /// For how many days an SRS0 address is accepted after the day it was made (1 to
    /// [`LONGEST_MAX_AGE`]; default 21).
    pub max_age: u32,
    /// The character after the tag in the addresses made (`=`, `+` or `-`; default `=`).
    pub separator: u8,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            hash_length: 4,
            hash_min: 4,
            max_age: 21,
            separator: b'=',
        }
    }
}

/// Settings a rewriter cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamError {
    NoSecret,
    EmptySecret,
    HashLength,
    HashMin,
    MaxAge,
    Separator,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::NoSecret => write!(f, "there is no secret"),
            ParamError::EmptySecret => write!(f, "a secret is empty"),
            ParamError::HashLength => write!(
                f,
                "the hash length must be between {MIN_HASH} and {LONGEST_HASH}"
            ),
            ParamError::HashMin => write!(
                f,
                "the shortest hash accepted must be between {MIN_HASH} and the hash length"
            ),
            ParamError::MaxAge => write!(
                f,
                "the validity must be between 1 and {LONGEST_MAX_AGE} days"
            ),
            ParamError::Separator => write!(f, "the separator must be one of = + -"),
        }
    }
}

/// Why an address cannot be reversed. Every reason is permanent: the address will never
/// become valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReverseError {
    /// The local part does not start with `SRS0` or `SRS1` and a separator.
    NotSrs,
    /// A field is missing or empty: its name.
    Malformed(&'static str),
    /// The SRS0 timestamp is not two base32 characters.
    BadTimestamp,
    /// The SRS0 timestamp is older than the validity (or from the future).
    Expired {
        /// The validity in days.
        max_age: u32,
    },
    /// The hash is shorter than the shortest accepted.
    HashTooShort,
    /// The hash matches no secret: a forged address, or one made with a secret that is
    /// no longer listed.
    BadHash,
}

impl fmt::Display for ReverseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReverseError::NotSrs => write!(f, "it is not an SRS address"),
            ReverseError::Malformed(what) => write!(f, "its {what} is missing"),
            ReverseError::BadTimestamp => {
                write!(f, "its timestamp is not two base32 characters")
            }
            ReverseError::Expired { max_age } => write!(
                f,
                "it has expired (SRS addresses here are valid for {max_age} days)"
            ),
            ReverseError::HashTooShort => write!(f, "its hash is too short"),
            ReverseError::BadHash => write!(f, "its hash is wrong (a forged address?)"),
        }
    }
}

impl std::error::Error for ReverseError {}
impl std::error::Error for ParamError {}

/// An SRS local part split into its fields (nothing checked but the form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// `SRS0<sep>hash=stamp=host=user`.
    Srs0 {
        hash: &'a [u8],
        stamp: &'a [u8],
        host: &'a [u8],
        user: &'a [u8],
    },
    /// `SRS1<sep>hash=host=rest`, where `rest` (starting with the SRS0 address's
    /// separator) follows `SRS0` in the address the bounce goes back to, at `host`.
    Srs1 {
        hash: &'a [u8],
        host: &'a [u8],
        rest: &'a [u8],
    },
}

/// Which tag `local` starts with: `Some(0)`, `Some(1)` or `None` (the tag in either case,
/// followed by one of [`SEPARATORS`]).
pub fn tag(local: &[u8]) -> Option<u8> {
    if local.len() < 5
        || !local[..3].eq_ignore_ascii_case(b"SRS")
        || !SEPARATORS.contains(&local[4])
    {
        return None;
    }
    match local[3] {
        b'0' => Some(0),
        b'1' => Some(1),
        _ => None,
    }
}

/// `s` split at its first `n - 1` `=` into `n` fields; `None` with fewer.
fn fields<const N: usize>(s: &[u8]) -> Option<[&[u8]; N]> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut rest = s;
    for slot in out.iter_mut().take(N - 1) {
        let i = rest.iter().position(|&c| c == b'=')?;
        *slot = &rest[..i];
        rest = &rest[i + 1..];
    }
    out[N - 1] = rest;
    Some(out)
}

/// Splits an SRS local part (without `@domain`) into its fields. Every field must be
/// present and non-empty; the user part of an SRS0 address keeps any further `=`.
pub fn parse(local: &[u8]) -> Result<Parsed<'_>, ReverseError> {
    let t = tag(local).ok_or(ReverseError::NotSrs)?;
    let body = &local[5..];
    let nonempty = |f: &'static str, v: &[u8]| {
        if v.is_empty() {
            Err(ReverseError::Malformed(f))
        } else {
            Ok(())
        }
    };
    if t == 0 {
        let Some([hash, stamp, host, user]) = fields::<4>(body) else {
            let missing = match body.iter().filter(|&&c| c == b'=').count() {
                0 => "timestamp",
                1 => "host",
                _ => "user",
            };
            return Err(ReverseError::Malformed(missing));
        };
        nonempty("hash", hash)?;
        nonempty("timestamp", stamp)?;
        nonempty("host", host)?;
        nonempty("user", user)?;
        Ok(Parsed::Srs0 {
            hash,
            stamp,
            host,
            user,
        })
    } else {
        let Some([hash, host, rest]) = fields::<3>(body) else {
            let missing = if body.contains(&b'=') { "user" } else { "host" };
            return Err(ReverseError::Malformed(missing));
        };
        nonempty("hash", hash)?;
        nonempty("host", host)?;
        nonempty("user", rest)?;
        Ok(Parsed::Srs1 { hash, host, rest })
    }
}

/// The SRS local part inside a qmail address extension: the first place, at the start of
/// `ext` or right after a `-`, where an SRS tag begins. For `srs-SRS0=HHHH=TT=h=u` (the
/// extension a `.qmail-srs-default` file sees) that is `SRS0=HHHH=TT=h=u`.
pub fn in_extension(ext: &[u8]) -> Option<&[u8]> {
    (0..ext.len())
        .filter(|&i| i == 0 || ext[i - 1] == b'-')
        .map(|i| &ext[i..])
        .find(|s| tag(s).is_some())
}

/// A rewriter: its secrets (the first signs, all are accepted) and [`Params`]. Its
/// `Debug` form never shows a secret.
#[derive(Clone)]
pub struct Srs {
    secrets: Vec<Vec<u8>>,
    params: Params,
}

impl fmt::Debug for Srs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Srs")
            .field("secrets", &self.secrets.len())
            .field("params", &self.params)
            .finish()
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

impl Srs {
    /// A rewriter with `secrets` (the first makes hashes; at least one, none empty).
    pub fn new(secrets: Vec<Vec<u8>>, params: Params) -> Result<Srs, ParamError> {
        if secrets.is_empty() {
            return Err(ParamError::NoSecret);
        }
        if secrets.iter().any(Vec::is_empty) {
            return Err(ParamError::EmptySecret);
        }
        if !(MIN_HASH..=LONGEST_HASH).contains(&params.hash_length) {
            return Err(ParamError::HashLength);
        }
        if !(MIN_HASH..=params.hash_length).contains(&params.hash_min) {
            return Err(ParamError::HashMin);
        }
        if !(1..=LONGEST_MAX_AGE).contains(&params.max_age) {
            return Err(ParamError::MaxAge);
        }
        if !SEPARATORS.contains(&params.separator) {
            return Err(ParamError::Separator);
        }
        Ok(Srs { secrets, params })
    }

    /// The settings.
    pub fn params(&self) -> Params {
        self.params
    }

    /// How many secrets are accepted.
    pub fn secrets(&self) -> usize {
        self.secrets.len()
    }

    fn hash(&self, parts: &[&[u8]]) -> Vec<u8> {
        hash::digest(&self.secrets[0], parts)[..self.params.hash_length].to_vec()
    }

    fn verify(&self, given: &[u8], parts: &[&[u8]]) -> Result<(), ReverseError> {
        if given.len() < self.params.hash_min {
            return Err(ReverseError::HashTooShort);
        }
        let mut ok = false;
        for s in &self.secrets {
            ok |= hash::matches(given, &hash::digest(s, parts));
        }
        if ok {
            Ok(())
        } else {
            Err(ReverseError::BadHash)
        }
    }

    /// The SRS address for the envelope sender `sender` of mail forwarded by a host whose
    /// SRS domain is `domain`, made at `now` (seconds since the epoch). `None` leaves the
    /// sender as it is: no `@` (the null sender among them), an empty local part or
    /// domain, an `@` in the local part, a domain with `=` (which no SRS0 address can
    /// carry) or qmail's `[]` (the `#@[]` of double bounces, the `-@[]` of VERP), or a
    /// sender already at `domain`.
    ///
    /// A sender that is an SRS0 address becomes SRS1, an SRS1 sender a new SRS1
    /// address with the same payload; an SRS1 sender without the fields of one is
    /// treated as a plain address.
    pub fn forward(&self, sender: &[u8], domain: &[u8], now: u64) -> Option<Vec<u8>> {
        let (user, host) = control::split_at_last_at(sender)?;
        if user.is_empty()
            || host.is_empty()
            || user.contains(&b'@')
            || host.contains(&b'=')
            || host == b"[]"
            || host.eq_ignore_ascii_case(domain)
        {
            return None;
        }
        let sep = [self.params.separator];
        match tag(user) {
            Some(1) => {
                if let Some([old, srshost, rest]) = fields::<3>(&user[5..])
                    && !old.is_empty()
                    && !srshost.is_empty()
                    && !rest.is_empty()
                {
                    let h = self.hash(&[srshost, rest]);
                    return Some(cat(&[
                        b"SRS1", &sep, &h, b"=", srshost, b"=", rest, b"@", domain,
                    ]));
                }
            }
            Some(_) => {
                let rest = &user[4..];
                let h = self.hash(&[host, rest]);
                return Some(cat(&[
                    b"SRS1", &sep, &h, b"=", host, b"=", rest, b"@", domain,
                ]));
            }
            None => {}
        }
        let stamp = timestamp::create(now);
        let h = self.hash(&[&stamp, host, user]);
        Some(cat(&[
            b"SRS0", &sep, &h, b"=", &stamp, b"=", host, b"=", user, b"@", domain,
        ]))
    }

    /// The address an SRS local part (without `@domain`) stands for, checked at `now`:
    /// `user@host` for SRS0 (hash and timestamp checked), the SRS0 address at the first
    /// forwarder for SRS1 (hash checked). The hash is checked before the timestamp, so
    /// that a forged address is called forged whatever its date.
    pub fn reverse(&self, local: &[u8], now: u64) -> Result<Vec<u8>, ReverseError> {
        match parse(local)? {
            Parsed::Srs0 {
                hash,
                stamp,
                host,
                user,
            } => {
                let then = timestamp::decode(stamp).ok_or(ReverseError::BadTimestamp)?;
                self.verify(hash, &[stamp, host, user])?;
                if timestamp::age(then, now) > self.params.max_age {
                    return Err(ReverseError::Expired {
                        max_age: self.params.max_age,
                    });
                }
                Ok(cat(&[user, b"@", host]))
            }
            Parsed::Srs1 { hash, host, rest } => {
                self.verify(hash, &[host, rest])?;
                Ok(cat(&[b"SRS0", rest, b"@", host]))
            }
        }
    }

    /// [`Srs::reverse`] for a whole address: the local part is what precedes the last
    /// `@` (the domain is not checked: the hash binds what matters).
    pub fn reverse_address(&self, addr: &[u8], now: u64) -> Result<Vec<u8>, ReverseError> {
        let local = control::split_at_last_at(addr).map_or(addr, |(l, _)| l);
        self.reverse(local, now)
    }
}

#[cfg(test)]
mod tests;
