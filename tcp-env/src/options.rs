//! The command line: netqmail's `-r`, `-R`, `-t timeout`, plus tcpserver's `-h`, `-H` and
//! `-l localname` (rqmail extensions), then the program and its arguments.
//!
//! The parser keeps netqmail's getopt rules: options may be clustered (`-Rt5`), an option's
//! argument may be attached or the next word, `--` (or any word starting with `--`) ends the
//! options, a lone `-` is the program name, and an unknown letter or a missing argument is
//! ignored silently.

use std::ffi::{OsStr, OsString};

/// netqmail's default for `-t`: seconds allowed for the RFC 1413 query.
pub const DEFAULT_TIMEOUT: u64 = 30;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-r` (default) / `-R`: ask the remote host for TCPREMOTEINFO.
    pub remote_info: bool,
    /// `-t`: seconds for the RFC 1413 connection attempt and exchange.
    pub timeout: u64,
    /// `-h` (default) / `-H`: look up TCPREMOTEHOST in DNS.
    pub remote_lookup: bool,
    /// `-l localname`: use this for TCPLOCALHOST instead of looking it up.
    pub local_name: Option<OsString>,
    /// The program and its arguments; empty when none was given.
    pub program: Vec<OsString>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            remote_info: true,
            timeout: DEFAULT_TIMEOUT,
            remote_lookup: true,
            local_name: None,
            program: Vec::new(),
        }
    }
}

/// netqmail's scan_ulong: the leading decimal digits of `s` (0 when there are none),
/// saturating instead of wrapping.
pub fn scan_ulong(s: &OsStr) -> u64 {
    s.as_encoded_bytes()
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u64, |n, &c| {
            n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
        })
}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Options
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut o = Options::default();
    // netqmail's tcp-env uses the inner getopt (subgetopt), which complains about
    // nothing: an unknown letter or a missing argument is skipped.
    let mut g = control::Getopt::new(args, "rRt:hHl:");
    for opt in g.by_ref().flatten() {
        match (opt.letter, opt.arg) {
            (b'r', _) => o.remote_info = true,
            (b'R', _) => o.remote_info = false,
            (b'h', _) => o.remote_lookup = true,
            (b'H', _) => o.remote_lookup = false,
            (b't', Some(v)) => o.timeout = scan_ulong(&v),
            (_, v) => o.local_name = v,
        }
    }
    o.program = g.operands();
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(o: &Options) -> Vec<&str> {
        o.program.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn defaults() {
        let o = parse(["prog", "a"]);
        assert!(o.remote_info && o.remote_lookup);
        assert_eq!(o.timeout, 30);
        assert_eq!(o.local_name, None);
        assert_eq!(words(&o), ["prog", "a"]);
    }

    #[test]
    fn netqmail_letters() {
        let o = parse(["-R", "-t", "7", "prog"]);
        assert!(!o.remote_info);
        assert_eq!(o.timeout, 7);
        let o = parse(["-Rrt12x", "prog"]);
        assert!(o.remote_info);
        assert_eq!(o.timeout, 12);
        let o = parse(["-tabc", "prog"]);
        assert_eq!(o.timeout, 0);
        let o = parse(["-t=5", "prog"]);
        assert_eq!(o.timeout, 0);
    }

    #[test]
    fn extension_letters() {
        let o = parse(["-Hl", "mail.example", "prog"]);
        assert!(!o.remote_lookup);
        assert_eq!(o.local_name.as_deref(), Some(OsStr::new("mail.example")));
        let o = parse(["-H", "-h", "-l0", "prog"]);
        assert!(o.remote_lookup);
        assert_eq!(o.local_name.as_deref(), Some(OsStr::new("0")));
    }

    #[test]
    fn option_arguments_may_look_like_options() {
        let o = parse(["-t", "-R", "prog"]);
        assert!(o.remote_info);
        assert_eq!(o.timeout, 0);
        assert_eq!(words(&o), ["prog"]);
    }

    #[test]
    fn end_of_options() {
        assert_eq!(words(&parse(["--", "-R", "x"])), ["-R", "x"]);
        assert_eq!(words(&parse(["-R", "--whatever", "-h", "x"])), ["-h", "x"]);
        assert_eq!(words(&parse(["--a=b", "x"])), ["x"]);
        assert_eq!(words(&parse(["-", "x"])), ["-", "x"]);
        // Options after the program belong to the program.
        let o = parse(["prog", "-R", "-t", "1"]);
        assert!(o.remote_info);
        assert_eq!(words(&o), ["prog", "-R", "-t", "1"]);
    }

    #[test]
    fn unknown_and_missing() {
        let o = parse(["-x", "-q", "prog"]);
        assert_eq!(words(&o), ["prog"]);
        assert!(parse(["-R"]).program.is_empty());
        assert!(parse(["-t"]).program.is_empty());
        assert!(parse(["-l"]).program.is_empty());
        assert!(parse(Vec::<OsString>::new()).program.is_empty());
    }

    #[test]
    fn scan() {
        assert_eq!(scan_ulong(OsStr::new("")), 0);
        assert_eq!(scan_ulong(OsStr::new("42s")), 42);
        assert_eq!(scan_ulong(OsStr::new("99999999999999999999999")), u64::MAX);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(args in proptest::collection::vec(".{0,6}", 0..6)) {
            let o = parse(args.clone());
            // The program is always a suffix of the arguments.
            let n = o.program.len();
            proptest::prop_assert!(n <= args.len());
            let tail: Vec<OsString> = args[args.len() - n..].iter().map(OsString::from).collect();
            proptest::prop_assert_eq!(o.program, tail);
        }
    }
}
