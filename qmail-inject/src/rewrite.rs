//! How qmail-inject completes an address (qmail-header(5), netqmail's rwgeneric).
//!
//! Applied to every address in a sender or recipient field, to the recipient arguments
//! and to `-f`:
//!
//! 1. `<>` and `<x@[]>` are left alone;
//! 2. a source route (`@a,@b:user@host`) is removed;
//! 3. a trailing `.`, then a trailing `@`, is removed;
//! 4. an address without `@` gets `@defaulthost`;
//! 5. a host ending in `+` loses the `+` and gets `.plusdomain`;
//! 6. a host without a dot (and not a `[literal]`) gets `.defaultdomain`.

use control::rfc822::{self, Kind, Syntax, Token};

/// The three completions, already cut into tokens.
#[derive(Debug, Clone)]
pub struct Rewriter {
    /// `@defaulthost`
    pub defaulthost: Vec<Token>,
    /// `.defaultdomain`
    pub defaultdomain: Vec<Token>,
    /// `.plusdomain`
    pub plusdomain: Vec<Token>,
}

impl Rewriter {
    /// Builds the rewriter from the three names (control files or environment). A name
    /// that does not cut into tokens is an error carrying the text that failed.
    pub fn new(
        defaulthost: &[u8],
        defaultdomain: &[u8],
        plusdomain: &[u8],
    ) -> Result<Rewriter, Vec<u8>> {
        let tok = |prefix: u8, name: &[u8]| {
            let mut s = vec![prefix];
            s.extend_from_slice(name);
            rfc822::parse_tokens(&s).map_err(|Syntax| s)
        };
        Ok(Rewriter {
            defaultdomain: tok(b'.', defaultdomain)?,
            defaulthost: tok(b'@', defaulthost)?,
            plusdomain: tok(b'.', plusdomain)?,
        })
    }

    /// Completes one address (its tokens in reading order) in place.
    pub fn rewrite(&self, addr: &mut Vec<Token>) {
        if addr.is_empty() {
            return; // <>
        }
        let n = addr.len();
        if n >= 2
            && addr[n - 2].kind == Kind::At
            && addr[n - 1].kind == Kind::Literal
            && addr[n - 1].text.is_empty()
        {
            return; // <foo@[]>
        }
        // A source route: everything up to the first colon goes.
        if addr[0].kind == Kind::At {
            match addr.iter().position(|t| t.kind == Kind::Colon) {
                Some(c) => {
                    addr.drain(..=c);
                }
                None => addr.clear(),
            }
            if addr.is_empty() {
                return;
            }
        }
        if addr.last().map(|t| t.kind) == Some(Kind::Dot) {
            addr.pop();
            if addr.is_empty() {
                return;
            }
        }
        if addr.last().map(|t| t.kind) == Some(Kind::At) {
            addr.pop();
            if addr.is_empty() {
                return;
            }
        }
        if !addr.iter().any(|t| t.kind == Kind::At) {
            addr.extend(self.defaulthost.iter().cloned());
        }
        if let Some(last) = addr.last_mut()
            && last.kind == Kind::Atom
            && last.text.last() == Some(&b'+')
        {
            last.text.pop();
            addr.extend(self.plusdomain.iter().cloned());
        }
        // The host part: tokens after the last `@`.
        let host_start = addr
            .iter()
            .rposition(|t| t.kind == Kind::At)
            .map_or(0, |i| i + 1);
        let host = &addr[host_start..];
        if host
            .iter()
            .any(|t| t.kind == Kind::Dot || t.kind == Kind::Literal)
        {
            return;
        }
        addr.extend(self.defaultdomain.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(r: &Rewriter, s: &str) -> String {
        let mut t = rfc822::parse_tokens(s.as_bytes()).unwrap();
        r.rewrite(&mut t);
        String::from_utf8(rfc822::unquote_tokens(&t)).unwrap()
    }

    #[test]
    fn completions() {
        let r = Rewriter::new(b"silverton", b"berkeley.edu", b"cs.berkeley.edu").unwrap();
        assert_eq!(rw(&r, "djb"), "djb@silverton.berkeley.edu");
        assert_eq!(rw(&r, "djb@silverton"), "djb@silverton.berkeley.edu");
        assert_eq!(rw(&r, "eric@mammoth+"), "eric@mammoth.cs.berkeley.edu");
        assert_eq!(
            rw(&r, "eric@mammoth.cs+"),
            "eric@mammoth.cs.cs.berkeley.edu"
        );
        assert_eq!(rw(&r, "a@b.c"), "a@b.c");
        assert_eq!(rw(&r, "a@[1.2.3.4]"), "a@[1.2.3.4]");
        assert_eq!(rw(&r, "a@x."), "a@x.berkeley.edu");
        assert_eq!(rw(&r, "a@"), "a@silverton.berkeley.edu");
        assert_eq!(rw(&r, "@r1,@r2:a@b.c"), "a@b.c");
        assert_eq!(rw(&r, "@r1"), "");
        assert_eq!(rw(&r, "."), "");
        assert_eq!(rw(&r, "@"), "");
        assert_eq!(rw(&r, "x@[]"), "x@[]");
        assert_eq!(rw(&r, "\"joe smith\"@a.b"), "joe smith@a.b");
        // A plus on a quoted string is not a plus-domain.
        assert_eq!(rw(&r, "\"a+\""), "a+@silverton.berkeley.edu");
        let dotted = Rewriter::new(b"mail.example.com", b"example.com", b"example.com").unwrap();
        assert_eq!(rw(&dotted, "joe"), "joe@mail.example.com");
        let plus = Rewriter::new(b"box+", b"dom.example", b"plus.example").unwrap();
        assert_eq!(rw(&plus, "joe"), "joe@box.plus.example");
        assert!(Rewriter::new(b"a (b", b"x", b"y").is_err());
    }
}
