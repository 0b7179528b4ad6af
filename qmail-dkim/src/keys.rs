//! control/dkimkeys: which key signs mail from which author domain (qmail-dkim(8)).
//!
//! One line per key, `pattern:selector:keyfile[:signing-domain]`, empty lines and lines
//! starting with `#` skipped (qmail's list-file rules). The pattern is a domain
//! (`example.com`, that domain only), a domain with a leading dot (`.example.com`, every
//! domain below it), or `*` (any other domain). The key file is a path below the qmail
//! home or an absolute path. The signing domain (`d=`) is the pattern's domain unless
//! given; a `*` line must give it. Several lines with one pattern make several
//! signatures (an RSA and an Ed25519 key, say), in the file's order.
//!
//! The From: domain chooses the lines: the exact domain first, then its parent domains
//! with a leading dot from the nearest up, then `*`. The first pattern present wins.

use dkim::valid_name;
use std::fmt;
use std::path::{Path, PathBuf};

/// The control file's name.
pub const DKIMKEYS: &str = "dkimkeys";

/// The most lines (signatures) one pattern may have.
pub const MAX_KEYS_PER_PATTERN: usize = 8;

/// One key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// The pattern, lower case, as written (`example.com`, `.example.com`, `*`).
    pub pattern: String,
    pub selector: String,
    /// The key file, made absolute with the qmail home.
    pub keyfile: PathBuf,
    /// The signing domain, lower case.
    pub domain: String,
    /// The line number, for messages.
    pub lineno: usize,
}

/// A line that is not `pattern:selector:keyfile[:signing-domain]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The line number, from 1.
    pub line: usize,
    pub why: &'static str,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "control/{DKIMKEYS} line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for BadLine {}

/// The parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyTable {
    lines: Vec<KeyLine>,
}

impl KeyTable {
    /// Parses the file's contents, with relative key paths taken below `home`.
    pub fn parse(data: &[u8], home: &Path) -> Result<KeyTable, BadLine> {
        let mut lines: Vec<KeyLine> = Vec::new();
        for (i, raw) in data.split(|&c| c == b'\n').enumerate() {
            // qmail's list-file rules, line by line to keep the numbers.
            let Some(raw) = control::parse_lines(raw).pop() else {
                continue;
            };
            let bad = |why| BadLine { line: i + 1, why };
            let text = std::str::from_utf8(&raw).map_err(|_| bad("not UTF-8"))?;
            let parts: Vec<&str> = text.split(':').collect();
            let (pattern, selector, keyfile, domain) = match parts.as_slice() {
                [p, s, k] => (*p, *s, *k, None),
                [p, s, k, d] => (*p, *s, *k, Some(*d)),
                _ => return Err(bad("not pattern:selector:keyfile[:signing-domain]")),
            };
            let pattern = pattern.to_ascii_lowercase();
            let named = pattern.strip_prefix('.').unwrap_or(&pattern);
            if pattern != "*" && !valid_name(named) {
                return Err(bad("the pattern is not a domain, .domain or *"));
            }
            if !valid_name(selector) {
                return Err(bad("the selector is not a valid DNS name"));
            }
            if keyfile.is_empty() {
                return Err(bad("no key file"));
            }
            let domain = match domain {
                Some(d) if valid_name(d) => d.to_ascii_lowercase(),
                Some(_) => return Err(bad("the signing domain is not a valid domain name")),
                None if pattern == "*" => return Err(bad("a * line needs a signing domain")),
                None => named.to_string(),
            };
            if lines.iter().filter(|l| l.pattern == pattern).count() >= MAX_KEYS_PER_PATTERN {
                return Err(bad("more than 8 keys for one pattern"));
            }
            lines.push(KeyLine {
                pattern,
                selector: selector.to_string(),
                keyfile: home.join(keyfile),
                domain,
                lineno: i + 1,
            });
        }
        Ok(KeyTable { lines })
    }

    /// True when the file has no entry.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The key lines for mail whose author domain is `domain` (any case, a final dot
    /// ignored); empty when nothing matches.
    pub fn lookup(&self, domain: &str) -> Vec<&KeyLine> {
        let d = domain
            .strip_suffix('.')
            .unwrap_or(domain)
            .to_ascii_lowercase();
        let with =
            |p: &str| -> Vec<&KeyLine> { self.lines.iter().filter(|l| l.pattern == p).collect() };
        if d.is_empty() {
            return with("*");
        }
        let exact = with(&d);
        if !exact.is_empty() {
            return exact;
        }
        let mut rest = d.as_str();
        while let Some(dot) = rest.find('.') {
            let parent = &rest[dot..];
            let found = with(parent);
            if !found.is_empty() {
                return found;
            }
            rest = &rest[dot + 1..];
        }
        with("*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> Result<KeyTable, BadLine> {
        KeyTable::parse(s.as_bytes(), Path::new("/q"))
    }

    fn pick(t: &KeyTable, d: &str) -> Vec<(String, String, String)> {
        t.lookup(d)
            .into_iter()
            .map(|l| {
                (
                    l.domain.clone(),
                    l.selector.clone(),
                    l.keyfile.display().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn exact_parent_and_star() {
        let t = table(
            "# keys\n\
             Example.COM:rsa1:control/dkim/ex.rsa\n\
             example.com:ed1:/etc/dkim/ex.ed\n\
             .example.com:sub:control/dkim/sub\n\
             .org:org:k\n\
             *:any:control/dkim/any:relay.example.net\n",
        )
        .unwrap();
        assert_eq!(
            pick(&t, "EXAMPLE.com."),
            [
                (
                    "example.com".into(),
                    "rsa1".into(),
                    "/q/control/dkim/ex.rsa".into()
                ),
                ("example.com".into(), "ed1".into(), "/etc/dkim/ex.ed".into())
            ]
        );
        assert_eq!(
            pick(&t, "a.b.example.com"),
            [(
                "example.com".into(),
                "sub".into(),
                "/q/control/dkim/sub".into()
            )]
        );
        assert_eq!(pick(&t, "x.org")[0].1, "org");
        assert_eq!(
            pick(&t, "other.net"),
            [(
                "relay.example.net".into(),
                "any".into(),
                "/q/control/dkim/any".into()
            )]
        );
        // `.example.com` does not cover example.com itself, nor does `.org` cover `org`.
        let t = table(".example.com:s:k\n").unwrap();
        assert!(t.lookup("example.com").is_empty());
        assert!(t.lookup("notexample.com").is_empty());
        assert!(!t.lookup("x.example.com").is_empty());
    }

    #[test]
    fn signing_domain_override() {
        let t = table("customer.example:s1:k:provider.example\n").unwrap();
        assert_eq!(t.lookup("customer.example")[0].domain, "provider.example");
    }

    #[test]
    fn bad_lines() {
        for (text, why) in [
            ("example.com:s\n", "not pattern"),
            ("example.com:s:k:d:e\n", "not pattern"),
            ("exa mple.com:s:k\n", "the pattern"),
            ("..example.com:s:k\n", "the pattern"),
            ("example.com:s s:k\n", "the selector"),
            ("example.com::k\n", "the selector"),
            ("example.com:s:\n", "no key file"),
            ("example.com:s:k:bad;domain\n", "the signing domain"),
            ("*:s:k\n", "a * line"),
        ] {
            let e = table(&format!("# first\nok.example:s:k\n{text}")).unwrap_err();
            assert_eq!(e.line, 3, "{text}");
            assert!(e.why.starts_with(why), "{text}: {}", e.why);
        }
        let many: String = (0..9).map(|i| format!("a.example:s{i}:k\n")).collect();
        assert_eq!(table(&many).unwrap_err().line, 9);
        assert_eq!(
            table("a:b:\u{0}\n").map(|t| t.is_empty()),
            Ok(false),
            "odd bytes in a path are the file system's business"
        );
    }
}
