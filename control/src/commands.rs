//! A command line split the way netqmail's commands.c splits it, for qmail-smtpd,
//! qmail-popup and qmail-pop3d alike:
//!
//! * one trailing CR is removed (the LF was already removed by the caller);
//! * the line ends at its first NUL byte: netqmail handles it as a C string, so whatever
//!   follows a NUL is never seen (and a NUL never reaches an address or a password);
//! * the command word is everything before the first space (only a space separates; a
//!   tab does not); each program compares it without regard to ASCII case;
//! * the argument is the rest after that space, leading spaces skipped, trailing ones
//!   kept.

/// Splits a command line given without its LF into (word, argument).
pub fn split(line: &[u8]) -> (&[u8], &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = match line.iter().position(|&c| c == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let (word, rest) = match line.iter().position(|&c| c == b' ') {
        Some(sp) => line.split_at(sp),
        None => (line, &line[line.len()..]),
    };
    let skip = rest.iter().take_while(|&&c| c == b' ').count();
    (word, &rest[skip..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn words_arguments_cr_and_nul() {
        assert_eq!(
            split(b"MAIL FROM:<a@b>\r"),
            (&b"MAIL"[..], &b"FROM:<a@b>"[..])
        );
        assert_eq!(split(b"rCpT    TO:<x>  "), (&b"rCpT"[..], &b"TO:<x>  "[..]));
        assert_eq!(split(b"QUIT"), (&b"QUIT"[..], &b""[..]));
        assert_eq!(split(b""), (&b""[..], &b""[..]));
        assert_eq!(split(b"HELO\tx"), (&b"HELO\tx"[..], &b""[..]));
        assert_eq!(split(b" HELO x"), (&b""[..], &b"HELO x"[..]));
        assert_eq!(split(b"HELO host\r\r"), (&b"HELO"[..], &b"host\r"[..]));
        assert_eq!(split(b"USER jo\0e"), (&b"USER"[..], &b"jo"[..]));
        assert_eq!(split(b"QUIT\0 x"), (&b"QUIT"[..], &b""[..]));
        assert_eq!(split(b"USER a\r\0\r"), (&b"USER"[..], &b"a\r"[..]));
    }

    proptest! {
        #[test]
        fn parts_are_clean(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (word, arg) = split(&line);
            prop_assert!(!word.contains(&0) && !arg.contains(&0));
            prop_assert!(!word.contains(&b' '));
            prop_assert!(arg.first() != Some(&b' '));
            prop_assert!(word.len() + arg.len() <= line.len());
        }
    }
}
