//! The addresses of an address-list header field such as From: (RFC 5322 section 3.4),
//! read far enough to find each mailbox's domain: the author domain that DMARC aligns
//! with and that chooses the DKIM signing domain.
//!
//! Display names, comments (nested), quoted strings, angle addresses with obsolete source
//! routes and groups are understood; bytes above 127 count as text (RFC 6532). Anything
//! else is an error rather than a guess.

use std::fmt;

/// A mailbox: the local part as written (quotes kept) and the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub local: Vec<u8>,
    pub domain: Domain,
}

/// The domain of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    /// A domain name, as written (dots between atoms, no white space).
    Name(Vec<u8>),
    /// A domain literal such as `[192.0.2.1]`, brackets included.
    Literal(Vec<u8>),
}

/// Why a field's value is not an address list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// A comment, quoted string, domain literal or angle address is not closed.
    Unclosed,
    /// A mailbox has no `@domain`.
    NoDomain,
    /// Something that belongs in no address (a stray `<`, `>`, `:` or `;`, an empty
    /// domain).
    Syntax,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::Unclosed => "unclosed comment, quote, literal or angle address",
            AddressError::NoDomain => "address without a domain",
            AddressError::Syntax => "not an address list",
        })
    }
}

impl std::error::Error for AddressError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Atoms and dots run together (`a.b`, `John`), as written.
    Word(Vec<u8>),
    /// A quoted string, quotes included.
    Quoted(Vec<u8>),
    /// A domain literal, brackets included.
    Literal(Vec<u8>),
    /// One of `<>@,;:`.
    Special(u8),
    /// White space or a comment between tokens.
    Space,
}

/// ASCII control characters (CR, LF and tab included) and DEL.
fn is_ctl(c: u8) -> bool {
    c < 0x20 || c == 0x7f
}

fn is_special(c: u8) -> bool {
    matches!(c, b'<' | b'>' | b'@' | b',' | b';' | b':')
}

fn tokens(v: &[u8]) -> Result<Vec<Token>, AddressError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let c = v[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                if out.last() != Some(&Token::Space) {
                    out.push(Token::Space);
                }
            }
            b'(' => {
                let mut depth = 0usize;
                loop {
                    match v.get(i) {
                        None => return Err(AddressError::Unclosed),
                        Some(b'\\') => i += 1,
                        Some(b'(') => depth += 1,
                        Some(b')') => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                    i += 1;
                }
                if out.last() != Some(&Token::Space) {
                    out.push(Token::Space);
                }
            }
            b'"' | b'[' => {
                let close = if c == b'"' { b'"' } else { b']' };
                let start = i;
                i += 1;
                loop {
                    match v.get(i) {
                        None => return Err(AddressError::Unclosed),
                        Some(b'\\') => i += 2,
                        Some(&x) if x == close => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                let s = v[start..i.min(v.len())].to_vec();
                out.push(if c == b'"' {
                    Token::Quoted(s)
                } else {
                    Token::Literal(s)
                });
            }
            _ if is_special(c) => {
                out.push(Token::Special(c));
                i += 1;
            }
            // Control characters belong in no atom (only in quotes and comments).
            _ if is_ctl(c) => return Err(AddressError::Syntax),
            _ => {
                let start = i;
                while i < v.len()
                    && !is_special(v[i])
                    && !is_ctl(v[i])
                    && !matches!(v[i], b' ' | b'(' | b'"' | b'[')
                {
                    i += 1;
                }
                out.push(Token::Word(v[start..i].to_vec()));
            }
        }
    }
    Ok(out)
}

/// The mailbox named by the tokens of one addr-spec (`local@domain`), white space
/// between tokens allowed (obsolete syntax).
fn addr_spec(toks: &[Token]) -> Result<Mailbox, AddressError> {
    let toks: Vec<&Token> = toks.iter().filter(|t| **t != Token::Space).collect();
    let at = toks
        .iter()
        .rposition(|t| **t == Token::Special(b'@'))
        .ok_or(AddressError::NoDomain)?;
    let local = dotted(&toks[..at], true)?;
    let domain = match &toks[at + 1..] {
        [Token::Literal(l)] => Domain::Literal(l.clone()),
        rest => Domain::Name(dotted(rest, false)?),
    };
    Ok(Mailbox { local, domain })
}

/// Words (and, for a local part, quoted strings) joined into one dot-separated string:
/// two of them may only meet at a dot (obsolete syntax allows white space around dots,
/// never instead of one).
fn dotted(toks: &[&Token], quoted_ok: bool) -> Result<Vec<u8>, AddressError> {
    let mut out: Vec<u8> = Vec::new();
    for t in toks {
        let w = match t {
            Token::Word(w) => w,
            Token::Quoted(w) if quoted_ok => w,
            _ => return Err(AddressError::Syntax),
        };
        if !out.is_empty() && out.last() != Some(&b'.') && w.first() != Some(&b'.') {
            return Err(AddressError::Syntax);
        }
        out.extend_from_slice(w);
    }
    if out.is_empty() {
        return Err(AddressError::Syntax);
    }
    Ok(out)
}

/// One mailbox (`name <addr>` or `addr`) from its tokens.
fn mailbox(toks: &[Token]) -> Result<Mailbox, AddressError> {
    match toks.iter().position(|t| *t == Token::Special(b'<')) {
        None => addr_spec(toks),
        Some(open) => {
            let close = toks[open..]
                .iter()
                .position(|t| *t == Token::Special(b'>'))
                .map(|i| open + i)
                .ok_or(AddressError::Unclosed)?;
            if toks[close + 1..].iter().any(|t| *t != Token::Space)
                || toks[..open]
                    .iter()
                    .any(|t| matches!(t, Token::Special(_) | Token::Literal(_)))
            {
                return Err(AddressError::Syntax);
            }
            let mut inner = &toks[open + 1..close];
            // An obsolete source route: `<@a,@b:local@domain>`.
            if let Some(colon) = inner.iter().position(|t| *t == Token::Special(b':')) {
                inner = &inner[colon + 1..];
            }
            addr_spec(inner)
        }
    }
}

/// The mailboxes of an address-list field value (From:, Sender:, Reply-To:, To:, Cc:),
/// groups opened up. An empty group (`undisclosed-recipients:;`) gives no mailbox.
pub fn mailboxes(value: &[u8]) -> Result<Vec<Mailbox>, AddressError> {
    let toks = tokens(value)?;
    let mut out = Vec::new();
    let mut in_group = false;
    let mut start = 0;
    let mut in_angle = false;
    let end_mailbox = |piece: &[Token], out: &mut Vec<Mailbox>| {
        if piece.iter().all(|t| *t == Token::Space) {
            return Ok(());
        }
        out.push(mailbox(piece)?);
        Ok(())
    };
    for (i, t) in toks.iter().enumerate() {
        match t {
            Token::Special(b'<') if !in_angle => in_angle = true,
            Token::Special(b'>') if in_angle => in_angle = false,
            Token::Special(b'<' | b'>') => return Err(AddressError::Syntax),
            Token::Special(b',') if !in_angle => {
                end_mailbox(&toks[start..i], &mut out)?;
                start = i + 1;
            }
            Token::Special(b':') if !in_angle => {
                // A group's display name ends here.
                if in_group
                    || toks[start..i]
                        .iter()
                        .any(|t| matches!(t, Token::Special(_)))
                {
                    return Err(AddressError::Syntax);
                }
                in_group = true;
                start = i + 1;
            }
            Token::Special(b';') if !in_angle => {
                if !in_group {
                    return Err(AddressError::Syntax);
                }
                end_mailbox(&toks[start..i], &mut out)?;
                in_group = false;
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_angle {
        return Err(AddressError::Unclosed);
    }
    end_mailbox(&toks[start..], &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn domains(v: &str) -> Result<Vec<String>, AddressError> {
        Ok(mailboxes(v.as_bytes())?
            .into_iter()
            .map(|m| match m.domain {
                Domain::Name(d) | Domain::Literal(d) => String::from_utf8(d).unwrap(),
            })
            .collect())
    }

    #[test]
    fn plain_forms() {
        assert_eq!(domains(" a@example.com").unwrap(), ["example.com"]);
        assert_eq!(
            domains(" Alice <alice@Example.COM>").unwrap(),
            ["Example.COM"]
        );
        assert_eq!(
            domains(" \"Doe, John\" <j@x.example>, b@y.example").unwrap(),
            ["x.example", "y.example"]
        );
        assert_eq!(
            domains(" <@relay.example:a@z.example>").unwrap(),
            ["z.example"]
        );
        assert_eq!(domains(" a@[192.0.2.1]").unwrap(), ["[192.0.2.1]"]);
    }

    #[test]
    fn comments_quotes_and_folding() {
        assert_eq!(
            domains(" (comment (nested) \\) ) a(x)@(y)example.com (trailing)").unwrap(),
            ["example.com"]
        );
        assert_eq!(
            domains(" \"a@fake.example\" <b@real.example>").unwrap(),
            ["real.example"]
        );
        assert_eq!(
            domains(" \"quoted@local\"@real.example").unwrap(),
            ["real.example"]
        );
        assert_eq!(domains(" Name\n\t<a@b.example>").unwrap(), ["b.example"]);
        assert_eq!(
            domains(" =?utf-8?q?J=C3=B6rg?= <j@c.example>").unwrap(),
            ["c.example"]
        );
        assert_eq!(domains(" J\u{f6}rg <j@d.example>").unwrap(), ["d.example"]);
    }

    #[test]
    fn groups() {
        assert_eq!(
            domains(" undisclosed-recipients:;").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            domains(" team: a@x.example, B <b@y.example>;, c@z.example").unwrap(),
            ["x.example", "y.example", "z.example"]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(domains(" alice"), Err(AddressError::NoDomain));
        assert_eq!(domains(" Alice <alice>"), Err(AddressError::NoDomain));
        assert_eq!(domains(" a@"), Err(AddressError::Syntax));
        assert_eq!(domains(" @b.example"), Err(AddressError::Syntax));
        assert_eq!(domains(" <a@b.example"), Err(AddressError::Unclosed));
        assert_eq!(domains(" a@b.example>"), Err(AddressError::Syntax));
        assert_eq!(domains(" (open a@b.example"), Err(AddressError::Unclosed));
        assert_eq!(domains(" \"open a@b.example"), Err(AddressError::Unclosed));
        assert_eq!(domains(" a@b.example;"), Err(AddressError::Syntax));
        assert_eq!(domains(" x <a@b.example> y"), Err(AddressError::Syntax));
        assert_eq!(domains(" g: h: a@b;"), Err(AddressError::Syntax));
        assert_eq!(domains(" a@b c.example"), Err(AddressError::Syntax));
        // Control characters only inside quotes and comments (a fuzzer's find).
        assert_eq!(domains(" <a@ex\x0cample.com>"), Err(AddressError::Syntax));
        assert_eq!(domains(" a\x7f@example.com"), Err(AddressError::Syntax));
        assert_eq!(
            domains(" \"x\x01\" (\x02) <a@example.com>").unwrap(),
            ["example.com"]
        );
        assert_eq!(domains(" a@b . c.example").unwrap(), ["b.c.example"]);
        assert_eq!(domains(" \"a\" . b@c.example").unwrap(), ["c.example"]);
    }

    proptest! {
        #[test]
        fn never_panics_and_domains_are_clean(
            v in proptest::collection::vec(prop_oneof![
                Just(b'@'), Just(b'<'), Just(b'>'), Just(b'"'), Just(b'('), Just(b')'),
                Just(b'\\'), Just(b','), Just(b':'), Just(b';'), Just(b'['), Just(b']'),
                Just(b' '), Just(b'a'), Just(b'.'), any::<u8>()], 0..120),
        ) {
            if let Ok(ms) = mailboxes(&v) {
                for m in ms {
                    prop_assert!(!m.local.is_empty());
                    match m.domain {
                        Domain::Name(d) => {
                            prop_assert!(!d.is_empty());
                            prop_assert!(!d.iter().any(|&c| is_ctl(c) || matches!(c, b' ' | b'@' | b'<' | b'>' | b',' | b';' | b':' | b'(' | b'"')));
                        }
                        Domain::Literal(l) => {
                            prop_assert!(l.starts_with(b"[") && l.ends_with(b"]"));
                        }
                    }
                }
            }
        }
    }
}
