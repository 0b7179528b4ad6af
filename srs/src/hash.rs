//! The SRS hash: HMAC-SHA1 under a secret over the ASCII-lowercased fields one after
//! another, written in base64 (standard alphabet, no padding) and cut to the configured
//! length, as libsrs2 and Mail::SRS make it; compared as they compare it.

use base64::Engine as _;
use ring::hmac;

/// The longest hash: all 27 base64 characters of HMAC-SHA1's 20 bytes.
pub(crate) const MAX_HASH: usize = 27;

/// The full base64 text of HMAC-SHA1 under `secret` over `parts`, each lowercased (ASCII
/// letters only, as libsrs2's `tolower` in the C locale and Perl's `lc` on bytes do).
pub(crate) fn digest(secret: &[u8], parts: &[&[u8]]) -> [u8; MAX_HASH] {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mut ctx = hmac::Context::with_key(&key);
    let mut buf = [0u8; 256];
    for part in parts {
        for chunk in part.chunks(buf.len()) {
            let lc = &mut buf[..chunk.len()];
            lc.copy_from_slice(chunk);
            lc.make_ascii_lowercase();
            ctx.update(lc);
        }
    }
    let tag = ctx.sign();
    let mut out = [0u8; MAX_HASH];
    let n = base64::engine::general_purpose::STANDARD_NO_PAD
        .encode_slice(tag.as_ref(), &mut out)
        .unwrap_or(0);
    debug_assert_eq!(n, MAX_HASH);
    out
}

/// A hash character as it is compared: letters without regard to case (a remote MTA may
/// change the case of a local part), `-` the same as `+` and `_` the same as `/` (the
/// URL-safe alphabet postsrsd 2 writes). `None` for a byte no hash holds.
fn class(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c.to_ascii_lowercase()),
        b'a'..=b'z' | b'0'..=b'9' => Some(c),
        b'+' | b'-' => Some(b'+'),
        b'/' | b'_' => Some(b'/'),
        _ => None,
    }
}

/// Whether the hash `given` (from an address) is the start of `computed`, character by
/// character as [`class`] compares them, without stopping at the first difference.
pub(crate) fn matches(given: &[u8], computed: &[u8]) -> bool {
    if given.len() > computed.len() {
        return false;
    }
    let mut differ = false;
    for (&g, &c) in given.iter().zip(computed) {
        differ |= match (class(g), class(c)) {
            (Some(a), Some(b)) => a != b,
            _ => true,
        };
    }
    !differ
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_in_base64() {
        // RFC 2202's second HMAC-SHA1 test case (key "Jefe", data in lower case):
        // effcdf6ae5eb2fa2d27416d5f184df9c259a7c79, split into two fields.
        let d = digest(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(&d, b"7/zfauXrL6LSdBbV8YTfnCWafHk");
        // Fields are lowercased first.
        assert_eq!(digest(b"Jefe", &[b"What Do Ya Want For Nothing?"]), d);
        // Fields are hashed one after another, lowercased.
        assert_eq!(digest(b"k", &[b"AB", b"c"]), digest(b"k", &[b"a", b"bC"]));
        assert_ne!(digest(b"k", &[b"ab"]), digest(b"k2", &[b"ab"]));
        // Longer than the lowercasing buffer.
        let long = vec![b'X'; 1000];
        let lower = vec![b'x'; 1000];
        assert_eq!(digest(b"k", &[&long]), digest(b"k", &[&lower]));
    }

    #[test]
    fn comparison_forgives_case_and_the_url_safe_alphabet() {
        assert!(matches(b"ab+/", b"ab+/xyz"));
        assert!(matches(b"AB-_", b"ab+/xyz"));
        assert!(matches(b"", b"abc"));
        assert!(!matches(b"ab+0", b"ab+/xyz"));
        assert!(!matches(b"ab=/", b"ab=/xyz"));
        assert!(!matches(b"abcd", b"abc"));
        assert!(!matches(b"a\xffc", b"a\xffc"));
    }
}
