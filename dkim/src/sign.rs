//! Making a DKIM-Signature header field (RFC 6376 sections 3.5, 3.7 and 5).
//!
//! The body hash comes from [`crate::canon::BodyHasher`]; the header fields from a parsed
//! [`crate::header::Header`]. Which fields are signed, and how often, is a [`HeaderList`]:
//! each name is listed once for every field of that name in the message, chosen from the
//! bottom up as section 5.4.2 says, and an "oversigned" name once more, so that a field of
//! that name added later on the way breaks the signature instead of going unnoticed.

use crate::canon::{self, Canon};
use crate::header::Header;
use crate::key::{KeyError, SigningKey};
use base64::Engine as _;
use std::collections::HashMap;
use std::fmt;

/// A field name to sign, and whether to sign it once more than it occurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// The name, lower case.
    pub name: &'static str,
    /// Sign one more instance than the message has (an empty one when it has none).
    pub oversign: bool,
}

const fn over(name: &'static str) -> Signed {
    Signed {
        name,
        oversign: true,
    }
}

const fn once(name: &'static str) -> Signed {
    Signed {
        name,
        oversign: false,
    }
}

/// The fields signed, in the order of the `h=` tag.
pub type HeaderList = [Signed];

/// The default list. Oversigned: the fields a reader sees as author, recipients, subject
/// and date, and the MIME fields that decide how the body is shown (adding any of them
/// later is the classic way to change what a signed message says). Signed as often as they
/// occur: threading, resent, list and key-exchange fields, which mailing lists and other
/// honest relays may add.
pub const DEFAULT_HEADERS: &HeaderList = &[
    over("from"),
    over("reply-to"),
    over("subject"),
    over("date"),
    over("to"),
    over("cc"),
    over("mime-version"),
    over("content-type"),
    over("content-transfer-encoding"),
    once("sender"),
    once("message-id"),
    once("in-reply-to"),
    once("references"),
    once("content-id"),
    once("content-description"),
    once("content-disposition"),
    once("resent-date"),
    once("resent-from"),
    once("resent-sender"),
    once("resent-to"),
    once("resent-cc"),
    once("resent-message-id"),
    once("list-id"),
    once("list-help"),
    once("list-unsubscribe"),
    once("list-unsubscribe-post"),
    once("list-subscribe"),
    once("list-post"),
    once("list-owner"),
    once("list-archive"),
    once("autocrypt"),
    once("openpgp"),
];

/// Why no signature was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// The domain or selector would not be a valid tag value.
    BadTag(&'static str),
    /// The key failed to sign.
    Key(KeyError),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::BadTag(t) => write!(f, "invalid {t} for a DKIM-Signature"),
            SignError::Key(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SignError {}

/// True for a domain name or selector DKIM can name: dot-separated labels of letters,
/// digits, `-` and `_`, each of 1 to 63 characters, at most 253 in all.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// What one signature needs besides the message.
#[derive(Debug)]
pub struct Signer<'a> {
    /// The signing domain (`d=`).
    pub domain: &'a str,
    /// The selector (`s=`).
    pub selector: &'a str,
    /// The key; its algorithm gives `a=`.
    pub key: &'a SigningKey,
    /// The signature time (`t=`), seconds since the epoch.
    pub time: u64,
    /// The fields to sign.
    pub headers: &'a HeaderList,
}

/// The longest line this module writes, not counting its LF.
const WIDTH: usize = 78;

/// Builds a folded header field: pieces separated by a space, or by LF TAB where a line
/// would get too long.
struct Folder {
    out: String,
    col: usize,
}

impl Folder {
    fn new(start: &str) -> Folder {
        Folder {
            out: start.to_string(),
            col: start.len(),
        }
    }

    /// Adds `piece`, after a space (`space`) or directly, folding before it when needed.
    fn push(&mut self, piece: &str, space: bool) {
        let sep = usize::from(space);
        if self.col + sep + piece.len() > WIDTH && self.col > 1 {
            self.out.push_str("\n\t");
            self.col = 1;
        } else if space {
            self.out.push(' ');
            self.col += 1;
        }
        self.out.push_str(piece);
        self.col += piece.len();
    }
}

impl Signer<'_> {
    /// The names of the `h=` tag for this header section.
    pub fn signed_names(&self, header: &Header) -> Vec<&'static str> {
        let mut names = Vec::new();
        for s in self.headers {
            let n = header.count(s.name) + usize::from(s.oversign);
            names.extend(std::iter::repeat_n(s.name, n));
        }
        names
    }

    /// The DKIM-Signature field (relaxed/relaxed) for a message with this header section
    /// and body hash, in qmail's form: lines end in LF, the last one too.
    pub fn sign(&self, header: &Header, body_hash: &[u8; 32]) -> Result<String, SignError> {
        if !valid_name(self.domain) {
            return Err(SignError::BadTag("domain"));
        }
        if !valid_name(self.selector) {
            return Err(SignError::BadTag("selector"));
        }
        let names = self.signed_names(header);
        let b64 = base64::engine::general_purpose::STANDARD;

        let mut f = Folder::new("DKIM-Signature:");
        f.push("v=1;", true);
        f.push(&format!("a={};", self.key.algorithm()), true);
        f.push("c=relaxed/relaxed;", true);
        f.push(&format!("d={};", self.domain), true);
        f.push(&format!("s={};", self.selector), true);
        f.push(&format!("t={};", self.time), true);
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let piece = format!(
                "{}{}{}",
                if i == 0 { "h=" } else { "" },
                name,
                if last { ";" } else { ":" }
            );
            f.push(&piece, i == 0);
        }
        f.push(&format!("bh={};", b64.encode(body_hash)), true);
        f.push("b=", true);

        // The data signed: the chosen fields, bottom-up per name, then this field with an
        // empty b= and no final CR LF (section 3.7).
        let mut data = Vec::new();
        let mut used: HashMap<&str, usize> = HashMap::new();
        for name in &names {
            let k = used.entry(name).or_insert(0);
            if let Some(field) = header.all(name).rev().nth(*k) {
                canon::header(Canon::Relaxed, field.raw(), &mut data);
            }
            *k += 1;
        }
        canon::header(Canon::Relaxed, f.out.as_bytes(), &mut data);
        data.truncate(data.len() - 2);

        let sig = self.key.sign(&data).map_err(SignError::Key)?;
        let sig = b64.encode(sig);
        let mut rest = sig.as_str();
        while !rest.is_empty() {
            let room = WIDTH.saturating_sub(f.col).max(16).min(rest.len());
            let (piece, tail) = rest.split_at(room);
            f.push(piece, false);
            rest = tail;
        }
        f.out.push('\n');
        Ok(f.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canon::BodyHasher;
    use crate::header::Header;
    use crate::key::SigningKey;
    use crate::key::tests::rfc8032_key;
    use proptest::prelude::*;

    fn header(s: &str) -> Header {
        Header::parse(s.as_bytes().to_vec()).unwrap()
    }

    /// The example message of RFC 8463 appendix A.3, in qmail's form.
    const RFC8463_HEADER: &str = "From: Joe SixPack <joe@football.example.com>\n\
        To: Suzie Q <suzie@shopping.example.net>\n\
        Subject: Is dinner ready?\n\
        Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\n\
        Message-ID: <20030712040037.46341.5F8J@football.example.com>\n";
    const RFC8463_BODY: &str = "Hi.\n\nWe lost the game.  Are you hungry yet?\n\nJoe.\n";

    #[test]
    fn rfc8463_example_signature() {
        // The Ed25519 signature of appendix A.3, recomputed from the same data: the
        // signing data is built the way Signer::sign builds it, with the RFC's own
        // DKIM-Signature text, so the (deterministic) Ed25519 signature must match.
        let h = header(RFC8463_HEADER);
        let mut bh = BodyHasher::new(Canon::Relaxed);
        bh.feed(RFC8463_BODY.as_bytes());
        let (hash, _) = bh.finish();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(hash),
            "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
        );
        let sig_field = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\n \
            d=football.example.com; i=@football.example.com;\n \
            q=dns/txt; s=brisbane; t=1528637909; h=from : to :\n \
            subject : date : message-id : from : subject : date;\n \
            bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\n \
            b=";
        let mut data = Vec::new();
        let names = [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "from",
            "subject",
            "date",
        ];
        let mut used: HashMap<&str, usize> = HashMap::new();
        for name in names {
            let k = used.entry(name).or_insert(0);
            if let Some(f) = h.all(name).rev().nth(*k) {
                canon::header(Canon::Relaxed, f.raw(), &mut data);
            }
            *k += 1;
        }
        canon::header(Canon::Relaxed, sig_field.as_bytes(), &mut data);
        data.truncate(data.len() - 2);
        let sig = rfc8032_key().sign(&data).unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(sig),
            "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\
             Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="
        );
    }

    #[test]
    fn h_tag_counts_and_oversigns() {
        let k = rfc8032_key();
        let s = Signer {
            domain: "example.com",
            selector: "sel",
            key: &k,
            time: 1,
            headers: DEFAULT_HEADERS,
        };
        let h = header("Received: x\nFrom: a@example.com\nTo: b@x\nTo: c@y\nMessage-ID: <1@x>\n");
        let names = s.signed_names(&h);
        assert_eq!(
            names,
            [
                "from",
                "from",
                "reply-to",
                "subject",
                "date",
                "to",
                "to",
                "to",
                "cc",
                "mime-version",
                "content-type",
                "content-transfer-encoding",
                "message-id"
            ]
        );
    }

    #[test]
    fn field_shape() {
        let k = rfc8032_key();
        let s = Signer {
            domain: "example.com",
            selector: "sel-2024",
            key: &k,
            time: 1_700_000_000,
            headers: DEFAULT_HEADERS,
        };
        let h = header("From: a@example.com\nSubject: hi\n");
        let f = s.sign(&h, &[0; 32]).unwrap();
        assert!(f.starts_with(
            "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;\n\ts=sel-2024; t=1700000000;"
        ));
        assert!(f.ends_with('\n'));
        for line in f.lines() {
            assert!(line.len() <= WIDTH, "{line:?}");
        }
        assert!(f.contains("bh=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;"));
        // The field parses as a field.
        let parsed = Header::parse(f.as_bytes().to_vec()).unwrap();
        assert_eq!(parsed.count("dkim-signature"), 1);
    }

    #[test]
    fn bad_names_are_refused() {
        let k = rfc8032_key();
        for (d, sel) in [
            ("exa;mple.com", "s"),
            ("example.com", "s\nx"),
            ("", "s"),
            ("a..b", "s"),
            ("example.com", ""),
        ] {
            let s = Signer {
                domain: d,
                selector: sel,
                key: &k,
                time: 0,
                headers: DEFAULT_HEADERS,
            };
            assert!(matches!(
                s.sign(&header("From: a@b\n"), &[0; 32]),
                Err(SignError::BadTag(_))
            ));
        }
        assert!(valid_name("s_1.example-2.com"));
    }

    /// The two test keys, made once (RSA is slow in a debug build).
    fn keys() -> &'static [SigningKey; 2] {
        static KEYS: std::sync::OnceLock<[SigningKey; 2]> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            [
                rfc8032_key(),
                SigningKey::from_pem(test_rsa_pem().as_bytes()).unwrap(),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_line_fits_and_reparses(
            tos in 0usize..60,
            domain in "[a-z0-9]{1,40}(\\.[a-z0-9-]{1,40}){0,4}",
            key in 0usize..2,
        ) {
            let k = &keys()[key];
            let s = Signer { domain: &domain, selector: "s", key: k, time: 0, headers: DEFAULT_HEADERS };
            let mut text = String::from("From: a@example.com\n");
            for i in 0..tos {
                text.push_str(&format!("To: r{i}@example.net\n"));
            }
            let h = header(&text);
            let f = s.sign(&h, &[7; 32]).unwrap();
            for line in f.lines() {
                prop_assert!(line.len() <= WIDTH.max(domain.len() + 4), "{:?}", line);
            }
            prop_assert_eq!(Header::parse(f.as_bytes().to_vec()).unwrap().count("DKIM-Signature"), 1);
            let h_tag: String = f.split("h=").nth(1).unwrap().split(';').next().unwrap()
                .chars().filter(|c| !c.is_whitespace()).collect();
            prop_assert_eq!(h_tag.split(':').filter(|n| *n == "to").count(), tos + 1);
            prop_assert_eq!(h_tag.split(':').filter(|n| *n == "from").count(), 2);
        }
    }

    /// A 2048-bit RSA test key (generated for these tests with `openssl genpkey`).
    pub(crate) fn test_rsa_pem() -> &'static str {
        include_str!("testdata/rsa2048.pem")
    }
}
