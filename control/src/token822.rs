//! RFC 822 tokens as netqmail's qmail-inject and qreceipt see them (its token822).
//!
//! A header field is cut into tokens: atoms, quoted strings, domain literals, comments
//! and the specials `< > @ , ; : .`. White space separates tokens and is otherwise
//! dropped. Address lists are then walked from right to left ([`addrlist`]), which is the
//! easy direction for RFC 822: every address is handed to a rewriting callback, and
//! the rewritten field is printed again ([`unparse`]) with netqmail's folding at 80
//! columns.
//!
//! The behaviour, including the odd corners, follows netqmail: nested parentheses inside
//! a comment are dropped from its text, an atom holding a character that cannot appear
//! in an atom becomes a quoted string, a backslash quotes the next character anywhere.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A run of atom characters.
    Atom,
    /// `"..."`, stored without the quotes and backslashes.
    Quote,
    /// `[...]`, stored without the brackets.
    Literal,
    /// `(...)`, stored without the outer parentheses.
    Comment,
    /// `<`
    Left,
    /// `>`
    Right,
    /// `@`
    At,
    /// `,`
    Comma,
    /// `;`
    Semi,
    /// `:`
    Colon,
    /// `.`
    Dot,
}

impl Kind {
    /// True for the kinds that carry text.
    pub fn has_text(self) -> bool {
        matches!(
            self,
            Kind::Atom | Kind::Quote | Kind::Literal | Kind::Comment
        )
    }
}

/// One token. `text` is empty for the specials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub text: Vec<u8>,
}

impl Token {
    /// A special (no text).
    pub fn special(kind: Kind) -> Token {
        Token {
            kind,
            text: Vec::new(),
        }
    }

    /// A token with text.
    pub fn with_text(kind: Kind, text: &[u8]) -> Token {
        Token {
            kind,
            text: text.to_vec(),
        }
    }
}

/// The input could not be cut into tokens or is not an address list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax;

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// True when `c` may continue an atom.
fn atom_ok(c: u8) -> bool {
    !matches!(
        c,
        b' ' | b'\t'
            | b'\r'
            | b'\n'
            | b'('
            | b'['
            | b'"'
            | b'<'
            | b'>'
            | b';'
            | b':'
            | b'@'
            | b','
            | b'.'
    )
}

/// An atom holding a control character, an 8-bit byte, `)`, `]` or a backslash cannot be
/// printed as an atom: it becomes a quoted string.
fn atom_needs_quote(text: &[u8]) -> bool {
    text.iter()
        .any(|&c| !(32..=126).contains(&c) || c == b')' || c == b']' || c == b'\\')
}

/// Reads a delimited token body (quoted string, literal or comment) starting after its
/// opening character at `*i`. `nest` is the opening character when it nests (comments).
/// Leaves `*i` on the closing character.
fn delimited(s: &[u8], i: &mut usize, close: u8, nest: Option<u8>) -> Result<Vec<u8>, Syntax> {
    let mut level = 1usize;
    let mut text = Vec::new();
    loop {
        *i += 1;
        let Some(&c) = s.get(*i) else {
            return Err(Syntax);
        };
        if Some(c) == nest {
            level += 1;
        } else if c == close {
            level -= 1;
            if level == 0 {
                return Ok(text);
            }
        } else if c == b'\\' {
            *i += 1;
            let Some(&e) = s.get(*i) else {
                return Err(Syntax);
            };
            text.push(e);
        } else {
            text.push(c);
        }
    }
}

/// Cuts `s` into tokens (netqmail's token822_parse). Fails on an unbalanced `)` or `]`
/// or an unterminated quoted string, literal or comment.
pub fn parse(s: &[u8]) -> Result<Vec<Token>, Syntax> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let special = match c {
            b'.' => Some(Kind::Dot),
            b',' => Some(Kind::Comma),
            b'@' => Some(Kind::At),
            b'<' => Some(Kind::Left),
            b'>' => Some(Kind::Right),
            b':' => Some(Kind::Colon),
            b';' => Some(Kind::Semi),
            _ => None,
        };
        if let Some(k) = special {
            out.push(Token::special(k));
        } else if is_space(c) {
        } else if c == b')' || c == b']' {
            return Err(Syntax);
        } else if c == b'(' {
            let text = delimited(s, &mut i, b')', Some(b'('))?;
            out.push(Token {
                kind: Kind::Comment,
                text,
            });
        } else if c == b'"' {
            let text = delimited(s, &mut i, b'"', None)?;
            out.push(Token {
                kind: Kind::Quote,
                text,
            });
        } else if c == b'[' {
            let text = delimited(s, &mut i, b']', None)?;
            out.push(Token {
                kind: Kind::Literal,
                text,
            });
        } else {
            // An atom: the first character is taken whatever it is; a backslash quotes
            // the character after it (a lone backslash at the very end is dropped).
            let mut text = Vec::new();
            loop {
                if s[i] == b'\\' {
                    i += 1;
                    if i >= s.len() {
                        break;
                    }
                }
                text.push(s[i]);
                i += 1;
                if i >= s.len() || !atom_ok(s[i]) {
                    break;
                }
            }
            i -= 1;
            let kind = if atom_needs_quote(&text) {
                Kind::Quote
            } else {
                Kind::Atom
            };
            out.push(Token { kind, text });
        }
        i += 1;
    }
    Ok(out)
}

fn need_space(last: Option<Kind>, next: Kind) -> bool {
    let Some(last) = last else {
        return false;
    };
    if matches!(last, Kind::Colon | Kind::Comma) || next == Kind::Left {
        return true;
    }
    let word = |k| matches!(k, Kind::Atom | Kind::Literal | Kind::Quote | Kind::Comment);
    word(last) && word(next)
}

/// Prints tokens as a header field ending in a newline (netqmail's token822_unparse).
///
/// After every comma a line break is placed; a break is kept only when the line it ends
/// would otherwise grow beyond `linelen` bytes (0: never fold). A kept break is a newline
/// and the continuation lines start with two spaces.
pub fn unparse(tokens: &[Token], linelen: usize) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(tokens.len() * 4 + 2);
    let mut line_begin = 0usize;
    let mut last_break: Option<usize> = None;
    let mut last: Option<Kind> = None;

    // A tentative break at the end of `out`; the previous tentative break is removed when
    // the current line still fits.
    let place_break =
        |out: &mut Vec<u8>, line_begin: &mut usize, last_break: &mut Option<usize>| {
            let s = out.len();
            match *last_break {
                Some(e) if linelen == 0 || s - *line_begin <= linelen => {
                    out.drain(e..e + 2);
                    out.extend_from_slice(b"\n ");
                    *last_break = Some(out.len() - 2);
                }
                prev => {
                    if let Some(e) = prev {
                        *line_begin = e + 1;
                    }
                    *last_break = Some(s);
                    out.extend_from_slice(b"\n ");
                }
            }
        };

    for t in tokens {
        if need_space(last, t.kind) {
            out.push(b' ');
        }
        last = Some(t.kind);
        match t.kind {
            Kind::Comma => {
                out.push(b',');
                place_break(&mut out, &mut line_begin, &mut last_break);
            }
            Kind::At => out.push(b'@'),
            Kind::Dot => out.push(b'.'),
            Kind::Left => out.push(b'<'),
            Kind::Right => out.push(b'>'),
            Kind::Semi => out.push(b';'),
            Kind::Colon => out.push(b':'),
            Kind::Atom | Kind::Quote | Kind::Literal | Kind::Comment => {
                let (open, close) = match t.kind {
                    Kind::Quote => (Some(b'"'), Some(b'"')),
                    Kind::Literal => (Some(b'['), Some(b']')),
                    Kind::Comment => (Some(b'('), Some(b')')),
                    _ => (None, None),
                };
                out.extend(open);
                for &c in &t.text {
                    if matches!(c, b'"' | b'[' | b']' | b'(' | b')' | b'\\' | b'\r' | b'\n') {
                        out.push(b'\\');
                    }
                    out.push(c);
                }
                out.extend(close);
            }
        }
    }
    place_break(&mut out, &mut line_begin, &mut last_break);
    out.pop();
    out
}

/// The tokens as an envelope address: specials as themselves, quoted strings without
/// quotes, literals in brackets, comments dropped (netqmail's token822_unquote).
pub fn unquote(tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        match t.kind {
            Kind::Comma => out.push(b','),
            Kind::At => out.push(b'@'),
            Kind::Dot => out.push(b'.'),
            Kind::Left => out.push(b'<'),
            Kind::Right => out.push(b'>'),
            Kind::Semi => out.push(b';'),
            Kind::Colon => out.push(b':'),
            Kind::Atom | Kind::Quote => out.extend_from_slice(&t.text),
            Kind::Literal => {
                out.push(b'[');
                out.extend_from_slice(&t.text);
                out.push(b']');
            }
            Kind::Comment => {}
        }
    }
    out
}

/// Walks the address list in `tokens` (a whole header field: its first two tokens are
/// the field name and the colon, which are kept as they are) and calls `rewrite` on each
/// address, in source order of tokens but visiting addresses from last to first. Returns
/// the field with every address replaced by what `rewrite` left. Words separated only by
/// white space are taken as separate addresses and get a comma between them.
///
/// An address `<>` is handed to `rewrite` even though it is empty. Fails on a group
/// that is not closed or opened, and on `>` without `<`.
pub fn addrlist(
    tokens: &[Token],
    rewrite: &mut dyn FnMut(&mut Vec<Token>),
) -> Result<Vec<Token>, Syntax> {
    // `out` and `addr` are built right to left (reversed), as netqmail does.
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len() + 8);
    let mut addr: Vec<Token> = Vec::new();
    let begin = 2.min(tokens.len());

    // Hands the reversed address to the callback in reading order and appends the
    // result (reversed again) to `out`.
    let got =
        |out: &mut Vec<Token>, addr: &mut Vec<Token>, rewrite: &mut dyn FnMut(&mut Vec<Token>)| {
            addr.reverse();
            rewrite(addr);
            out.extend(addr.drain(..).rev());
        };
    let flush =
        |out: &mut Vec<Token>, addr: &mut Vec<Token>, rewrite: &mut dyn FnMut(&mut Vec<Token>)| {
            if !addr.is_empty() {
                got(out, addr, rewrite);
            }
        };
    let flush_comma =
        |out: &mut Vec<Token>, addr: &mut Vec<Token>, rewrite: &mut dyn FnMut(&mut Vec<Token>)| {
            if !addr.is_empty() {
                got(out, addr, rewrite);
                out.push(Token::special(Kind::Comma));
            }
        };

    let mut in_group = false;
    let mut word_ok = true;
    // `t` is one past the token being looked at; tokens[begin..t] remain.
    let mut t = tokens.len();
    while t > begin {
        let tok = &tokens[t - 1];
        match tok.kind {
            Kind::Semi => {
                flush_comma(&mut out, &mut addr, rewrite);
                if in_group {
                    return Err(Syntax);
                }
                in_group = true;
                word_ok = true;
                out.push(tok.clone());
                t -= 1;
            }
            Kind::Colon => {
                flush(&mut out, &mut addr, rewrite);
                if !in_group {
                    return Err(Syntax);
                }
                in_group = false;
                // The group's name, up to and including the comma before it, unchanged.
                while t > begin && tokens[t - 1].kind != Kind::Comma {
                    out.push(tokens[t - 1].clone());
                    t -= 1;
                }
                if t > begin {
                    out.push(tokens[t - 1].clone());
                    t -= 1;
                }
                word_ok = true;
            }
            Kind::Right => {
                flush_comma(&mut out, &mut addr, rewrite);
                out.push(tok.clone());
                t -= 1;
                while t > begin && tokens[t - 1].kind != Kind::Left {
                    addr.push(tokens[t - 1].clone());
                    t -= 1;
                }
                got(&mut out, &mut addr, rewrite);
                if t <= begin {
                    return Err(Syntax);
                }
                out.push(tokens[t - 1].clone());
                t -= 1;
                // The phrase before `<`.
                while t > begin
                    && matches!(
                        tokens[t - 1].kind,
                        Kind::Comment | Kind::Atom | Kind::Quote | Kind::At | Kind::Dot
                    )
                {
                    out.push(tokens[t - 1].clone());
                    t -= 1;
                }
                word_ok = false;
            }
            Kind::Atom | Kind::Quote | Kind::Literal => {
                if !word_ok {
                    flush_comma(&mut out, &mut addr, rewrite);
                }
                word_ok = false;
                addr.push(tok.clone());
                t -= 1;
            }
            Kind::Comment => {
                // Lexically a space: it does not separate words.
                out.push(tok.clone());
                t -= 1;
            }
            Kind::Comma => {
                flush(&mut out, &mut addr, rewrite);
                word_ok = true;
                out.push(tok.clone());
                t -= 1;
            }
            Kind::At | Kind::Dot | Kind::Left => {
                word_ok = true;
                addr.push(tok.clone());
                t -= 1;
            }
        }
    }
    flush(&mut out, &mut addr, rewrite);
    out.extend(tokens[..begin].iter().rev().cloned());
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(s: &str, f: &mut dyn FnMut(&mut Vec<Token>)) -> String {
        let t = parse(s.as_bytes()).unwrap();
        let r = addrlist(&t, f).unwrap();
        String::from_utf8(unparse(&r, 80)).unwrap()
    }

    #[test]
    fn tokens() {
        let t = parse(b"To: \"A \\\"B\" (c (d) e) <x.y@[1.2]>,").unwrap();
        let kinds: Vec<Kind> = t.iter().map(|t| t.kind).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            [
                Atom, Colon, Quote, Comment, Left, Atom, Dot, Atom, At, Literal, Right, Comma
            ]
        );
        assert_eq!(t[2].text, b"A \"B");
        assert_eq!(t[3].text, b"c d e");
        assert_eq!(t[9].text, b"1.2");
        assert!(parse(b")").is_err());
        assert!(parse(b"a ]").is_err());
        // A closing parenthesis inside an atom is taken into it (and quotes it).
        assert_eq!(
            parse(b"a)").unwrap(),
            [Token::with_text(Kind::Quote, b"a)")]
        );
        assert!(parse(b"\"abc").is_err());
        assert!(parse(b"(abc").is_err());
        assert!(parse(b"[abc").is_err());
        assert!(parse(b"\"ab\\").is_err());
        // An atom with an 8-bit byte or a backslash-quoted special is a quoted string.
        let t = parse("jörg a\\,b".as_bytes()).unwrap();
        assert_eq!(t[0].kind, Kind::Quote);
        assert_eq!(t[1].kind, Kind::Atom);
        assert_eq!(t[1].text, b"a,b");
        // A lone trailing backslash gives an empty atom.
        let t = parse(b"\\").unwrap();
        assert_eq!(t, [Token::with_text(Kind::Atom, b"")]);
    }

    #[test]
    fn unparse_spacing_and_quoting() {
        let t = parse(b"To:a@b(c),\"d e\"<f@g>").unwrap();
        assert_eq!(unparse(&t, 80), b"To: a@b (c), \"d e\" <f@g>\n");
        let t = vec![Token::with_text(Kind::Quote, b"a\"b[c]\\")];
        assert_eq!(unparse(&t, 80), b"\"a\\\"b\\[c\\]\\\\\"\n");
        assert_eq!(unparse(&[], 80), b"\n");
    }

    #[test]
    fn folding_at_80() {
        let addrs: Vec<String> = (0..8).map(|i| format!("user{i}@host{i}.example")).collect();
        let s = format!("To: {}", addrs.join(","));
        let out = field(&s, &mut |_| {});
        assert_eq!(
            out,
            "To: user0@host0.example, user1@host1.example, user2@host2.example,\n  \
             user3@host3.example, user4@host4.example, user5@host5.example,\n  \
             user6@host6.example, user7@host7.example\n"
        );
        for line in out.lines() {
            assert!(line.len() <= 80, "{line}");
        }
    }

    #[test]
    fn address_list_walk() {
        let mut seen = Vec::new();
        let out = field(
            "To: a, \"B C\" <b@x>, grp: c@d, e;, f (F), <>, djb fred",
            &mut |a| seen.push(String::from_utf8(unquote(a)).unwrap()),
        );
        assert_eq!(
            out,
            "To: a, \"B C\" <b@x>, grp: c@d, e;, f (F), <>, djb, fred\n"
        );
        seen.reverse();
        assert_eq!(seen, ["a", "b@x", "c@d", "e", "f", "", "djb", "fred"]);

        let mut n = 0;
        let t = parse(b"To: x;, y;").unwrap();
        assert_eq!(addrlist(&t, &mut |_| n += 1), Err(Syntax));
        // netqmail does not notice a group that is never opened.
        let t = parse(b"To: a;").unwrap();
        assert!(addrlist(&t, &mut |_| n += 1).is_ok());
        let t = parse(b"To: a:b").unwrap();
        assert_eq!(addrlist(&t, &mut |_| n += 1), Err(Syntax));
        let t = parse(b"To: a>").unwrap();
        assert_eq!(addrlist(&t, &mut |_| n += 1), Err(Syntax));
    }

    #[test]
    fn rewrite_replaces_addresses() {
        let out = field("Cc: x (com), y <z>", &mut |a| {
            if !a.is_empty() {
                a.push(Token::special(Kind::At));
                a.push(Token::with_text(Kind::Atom, b"h"));
            }
        });
        assert_eq!(out, "Cc: x@h (com), y <z@h>\n");
    }

    #[test]
    fn unquote_drops_comments_and_quotes() {
        let t = parse(b"\"joe smith\"(c)@[1.2.3.4]").unwrap();
        assert_eq!(unquote(&t), b"joe smith@[1.2.3.4]");
    }
}
