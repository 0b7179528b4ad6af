//! Splitting an SMTP command line into its verb and argument, the way netqmail's
//! commands.c does it (with STARTTLS and AUTH added to the table). The rules are
//! `control::split_command`'s: one trailing CR removed; the line ends at its first NUL
//! (so that no NUL can reach an envelope address, where NUL is the record separator);
//! the verb is everything before the first space, compared without regard to ASCII
//! case; the argument is the rest, leading spaces skipped.

/// The commands qmail-smtpd knows. Everything else is [`Verb::Unknown`] (502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Helo,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Vrfy,
    Help,
    Quit,
    /// RFC 3207; answered as [`Verb::Unknown`] unless TLS is offered.
    Starttls,
    /// RFC 4954; answered as [`Verb::Unknown`] unless AUTH is configured.
    Auth,
    Unknown,
}

/// A parsed command line, borrowing from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    pub verb: Verb,
    /// The verb as sent (case kept), for diagnostics.
    pub word: &'a [u8],
    /// The argument: the text after the first space, leading spaces skipped.
    pub arg: &'a [u8],
}

/// The verb named by `word`, compared without regard to ASCII case.
pub fn verb(word: &[u8]) -> Verb {
    const TABLE: [(&[u8], Verb); 12] = [
        (b"rcpt", Verb::Rcpt),
        (b"mail", Verb::Mail),
        (b"data", Verb::Data),
        (b"quit", Verb::Quit),
        (b"helo", Verb::Helo),
        (b"ehlo", Verb::Ehlo),
        (b"rset", Verb::Rset),
        (b"help", Verb::Help),
        (b"noop", Verb::Noop),
        (b"vrfy", Verb::Vrfy),
        (b"starttls", Verb::Starttls),
        (b"auth", Verb::Auth),
    ];
    TABLE
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map_or(Verb::Unknown, |&(_, v)| v)
}

/// Parses one command line given without its terminating LF (split as
/// `control::split_command` does).
pub fn parse(line: &[u8]) -> Command<'_> {
    let (word, arg) = control::split_command(line);
    Command {
        verb: verb(word),
        word,
        arg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn verbs_and_arguments() {
        let c = parse(b"MAIL FROM:<a@b>\r");
        assert_eq!(c.verb, Verb::Mail);
        assert_eq!(c.arg, b"FROM:<a@b>");
        let c = parse(b"rCpT    TO:<x>  ");
        assert_eq!(c.verb, Verb::Rcpt);
        assert_eq!(c.arg, b"TO:<x>  ");
        assert_eq!(parse(b"QUIT").verb, Verb::Quit);
        assert_eq!(parse(b"QUIT").arg, b"");
        assert_eq!(parse(b"").verb, Verb::Unknown);
        assert_eq!(parse(b"\r").verb, Verb::Unknown);
        // a tab is not a separator
        assert_eq!(parse(b"HELO\tx").verb, Verb::Unknown);
        // a leading space gives an empty verb
        assert_eq!(parse(b" HELO x").verb, Verb::Unknown);
        assert_eq!(parse(b"STARTTLS").verb, Verb::Starttls);
        assert_eq!(parse(b"auth PLAIN x").verb, Verb::Auth);
        assert_eq!(parse(b"auth PLAIN x").arg, b"PLAIN x");
        assert_eq!(parse(b"EXPN x").verb, Verb::Unknown);
        assert_eq!(parse(b"HELOX").verb, Verb::Unknown);
    }

    #[test]
    fn only_one_cr_is_stripped() {
        let c = parse(b"HELO host\r\r");
        assert_eq!(c.arg, b"host\r");
        assert_eq!(parse(b"NOOP\r\r").verb, Verb::Unknown);
    }

    #[test]
    fn nul_ends_the_line() {
        let c = parse(b"MAIL FROM:<a\0b>\r");
        assert_eq!(c.verb, Verb::Mail);
        assert_eq!(c.arg, b"FROM:<a");
        assert_eq!(parse(b"QU\0IT").verb, Verb::Unknown);
        assert_eq!(parse(b"QUIT\0 junk").verb, Verb::Quit);
        assert_eq!(parse(b"QUIT\0 junk").arg, b"");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_arg_is_clean(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            let c = parse(&line);
            prop_assert!(!c.arg.contains(&0));
            prop_assert!(!c.word.contains(&0));
            prop_assert!(!c.word.contains(&b' '));
            prop_assert!(c.arg.first() != Some(&b' '));
            prop_assert!(c.word.len() + c.arg.len() <= line.len());
        }

        #[test]
        fn verbs_are_case_insensitive(v in prop::sample::select(vec!["helo", "ehlo", "mail", "rcpt", "data", "rset", "noop", "vrfy", "help", "quit", "starttls", "auth"]),
                                      mask in any::<u16>(), arg in "[ -~]{0,40}") {
            let word: String = v.chars().enumerate().map(|(i, c)| if mask & (1 << i) != 0 { c.to_ascii_uppercase() } else { c }).collect();
            let line = format!("{word} {arg}\r");
            let c = parse(line.as_bytes());
            prop_assert_eq!(c.verb, verb(v.as_bytes()));
            prop_assert!(c.verb != Verb::Unknown);
            prop_assert_eq!(c.arg, arg.trim_start_matches(' ').as_bytes());
        }
    }
}
