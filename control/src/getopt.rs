//! netqmail's command-line option rules (sgetopt/subgetopt) for every program that
//! keeps them.
//!
//! An option string such as `"aAhHnNf:"` names the letters; a letter followed by `:`
//! takes an argument, attached (`-fbob`) or in the next word (`-f bob`). Options may be
//! clustered (`-nNa`). A word that is not an option, a lone `-`, or `--` ends the
//! options; `--` itself (and, as in netqmail, any word that starts with `--`) is dropped.
//! An unknown letter and a missing argument are reported as [`GetoptError`]; the
//! complaint netqmail prints for them is [`GetoptError::complaint`], with the program name
//! taken as the last component of argv\[0\] ([`progname`]).

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;

/// One option found on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    /// The option letter.
    pub letter: u8,
    /// Its argument, for letters followed by `:` in the option string.
    pub arg: Option<OsString>,
}

/// What went wrong with one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetoptError {
    /// A letter not in the option string.
    Illegal(u8),
    /// A letter that takes an argument, last on the command line.
    MissingArgument(u8),
}

impl GetoptError {
    /// netqmail's line on stderr, without the newline: `prog: illegal option -- c` or
    /// `prog: option requires an argument -- c`.
    pub fn complaint(&self, prog: &[u8]) -> Vec<u8> {
        let (text, c): (&[u8], u8) = match *self {
            GetoptError::Illegal(c) => (b": illegal option -- ", c),
            GetoptError::MissingArgument(c) => (b": option requires an argument -- ", c),
        };
        [prog, text, &[c]].concat()
    }

    /// Writes [`complaint`](Self::complaint) and a newline to stderr, as netqmail's
    /// getopt does (a failed write is ignored: there is nowhere else to say it).
    pub fn complain(&self, prog: &[u8]) {
        use std::io::Write;
        let mut line = self.complaint(prog);
        line.push(b'\n');
        let _ = std::io::stderr().write_all(&line);
    }
}

impl fmt::Display for GetoptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.complaint(b"")[2..]))
    }
}

impl std::error::Error for GetoptError {}

/// The last component of `argv0` (all of it when it has no `/`): the name getopt
/// puts before its complaints.
pub fn progname(argv0: &[u8]) -> &[u8] {
    match argv0.iter().rposition(|&c| c == b'/') {
        Some(i) => &argv0[i + 1..],
        None => argv0,
    }
}

/// The program's name from this process's argv\[0\], as [`progname`] cuts it.
pub fn env_progname() -> Vec<u8> {
    let a0 = std::env::args_os().next().unwrap_or_default().into_vec();
    progname(&a0).to_vec()
}

/// The parser: an iterator of options over the words after the program name, then
/// [`operands`](Getopt::operands) for what is left.
#[derive(Debug, Clone)]
pub struct Getopt {
    words: Vec<Vec<u8>>,
    opts: Vec<u8>,
    /// The word being read.
    ind: usize,
    /// The position in that word; 0 when between words.
    pos: usize,
    done: bool,
}

impl Getopt {
    /// A parser for `args` (the words after the program name) with the option string
    /// `opts`.
    pub fn new<I>(args: I, opts: &str) -> Getopt
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        Getopt {
            words: args.into_iter().map(|a| a.into().into_vec()).collect(),
            opts: opts.as_bytes().to_vec(),
            ind: 0,
            pos: 0,
            done: false,
        }
    }

    /// Whether `c` is in the option string, and whether it takes an argument. As in
    /// netqmail, a `:` is an option letter only at the start of the string.
    fn lookup(&self, c: u8) -> Option<bool> {
        let mut i = 0;
        while i < self.opts.len() {
            let takes = self.opts.get(i + 1) == Some(&b':');
            if self.opts[i] == c {
                return Some(takes);
            }
            i += if takes { 2 } else { 1 };
        }
        None
    }

    fn step(&mut self) -> Option<Result<Opt, GetoptError>> {
        if self.pos > 0 && self.pos >= self.words.get(self.ind)?.len() {
            self.ind += 1;
            self.pos = 0;
        }
        let word = self.words.get(self.ind)?;
        if self.pos == 0 {
            match (word.first(), word.get(1)) {
                (Some(b'-'), Some(b'-')) => {
                    self.ind += 1;
                    return None;
                }
                (Some(b'-'), Some(_)) => self.pos = 1,
                _ => return None,
            }
        }
        let c = word[self.pos];
        self.pos += 1;
        let Some(takes) = self.lookup(c) else {
            return Some(Err(GetoptError::Illegal(c)));
        };
        if !takes {
            return Some(Ok(Opt {
                letter: c,
                arg: None,
            }));
        }
        let attached = word[self.pos..].to_vec();
        self.ind += 1;
        self.pos = 0;
        let arg = if attached.is_empty() {
            let Some(next) = self.words.get(self.ind) else {
                return Some(Err(GetoptError::MissingArgument(c)));
            };
            let next = next.clone();
            self.ind += 1;
            next
        } else {
            attached
        };
        Some(Ok(Opt {
            letter: c,
            arg: Some(OsString::from_vec(arg)),
        }))
    }

    /// Drops the rest of the word being read, as sendmail's `-E` and `-J` do with the
    /// optional argument glued to the letter; nothing between words.
    pub fn skip_rest_of_word(&mut self) {
        if self.pos > 0 {
            self.pos = self.words.get(self.ind).map_or(0, Vec::len);
        }
    }

    /// The words left after the options (all of them once the iterator has ended; the
    /// rest of the command line, without the word being read, if it stops early).
    pub fn operands(self) -> Vec<OsString> {
        let from = if self.pos > 0 { self.ind + 1 } else { self.ind };
        self.words
            .into_iter()
            .skip(from)
            .map(OsString::from_vec)
            .collect()
    }
}

impl Iterator for Getopt {
    type Item = Result<Opt, GetoptError>;

    /// The next option, or `None` at the end of the options (and from then on).
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.step();
        if r.is_none() {
            self.done = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options as text: `a`, `f=arg`, `?c` (illegal), `:c` (missing argument), then
    /// `| operands`.
    fn run(args: &[&str], opts: &str) -> String {
        let mut g = Getopt::new(args.iter().copied(), opts);
        let mut out = Vec::new();
        for r in g.by_ref() {
            out.push(match r {
                Ok(Opt { letter, arg: None }) => (letter as char).to_string(),
                Ok(Opt {
                    letter,
                    arg: Some(a),
                }) => format!("{}={}", letter as char, a.to_string_lossy()),
                Err(GetoptError::Illegal(c)) => format!("?{}", c as char),
                Err(GetoptError::MissingArgument(c)) => format!(":{}", c as char),
            });
        }
        let ops: Vec<String> = g
            .operands()
            .iter()
            .map(|o| o.to_string_lossy().into_owned())
            .collect();
        format!("{} | {}", out.join(" "), ops.join(" "))
    }

    #[test]
    fn clusters_and_arguments() {
        assert_eq!(run(&["-nNa", "x"], "aAhHnNf:"), "n N a | x");
        assert_eq!(run(&["-fbob", "x"], "nf:"), "f=bob | x");
        assert_eq!(run(&["-f", "bob", "x"], "nf:"), "f=bob | x");
        assert_eq!(run(&["-nfbob", "-n"], "nf:"), "n f=bob n | ");
        assert_eq!(run(&["-f", "-n"], "nf:"), "f=-n | ");
        assert_eq!(run(&["-f="], "f:"), "f== | ");
        assert_eq!(run(&["-f", ""], "f:"), "f= | ");
    }

    #[test]
    fn end_of_options() {
        assert_eq!(run(&["-n", "--", "-a"], "an"), "n | -a");
        assert_eq!(run(&["-n", "--foo", "-a"], "an"), "n | -a");
        assert_eq!(run(&["-n", "-", "-a"], "an"), "n | - -a");
        assert_eq!(run(&["x", "-a"], "an"), " | x -a");
        assert_eq!(run(&["", "-a"], "an"), " |  -a");
        assert_eq!(run(&[], "an"), " | ");
    }

    #[test]
    fn problems() {
        assert_eq!(run(&["-nxa", "y"], "an"), "n ?x a | y");
        assert_eq!(run(&["-f"], "f:"), ":f | ");
        assert_eq!(run(&["-nf"], "nf:"), "n :f | ");
        assert_eq!(run(&["-:"], "f:"), "?: | ");
        assert_eq!(run(&["-:"], ":f"), ": | ");
        let e = GetoptError::Illegal(b'c');
        assert_eq!(e.complaint(b"prog"), b"prog: illegal option -- c");
        let e = GetoptError::MissingArgument(b'f');
        assert_eq!(e.complaint(b"p"), b"p: option requires an argument -- f");
        assert_eq!(e.to_string(), "option requires an argument -- f");
        assert_eq!(progname(b"/var/qmail/bin/qmail-local"), b"qmail-local");
        assert_eq!(progname(b"x/"), b"");
        assert_eq!(progname(b"x"), b"x");
    }

    #[test]
    fn stops_early() {
        let mut g = Getopt::new(["-ab", "c"], "ab");
        assert_eq!(g.next().map(|r| r.map(|o| o.letter)), Some(Ok(b'a')));
        assert_eq!(g.operands(), ["c"]);
    }

    #[test]
    fn rest_of_word() {
        let mut g = Getopt::new(["-Efoo", "-t", "x"], "Et");
        assert_eq!(
            g.next(),
            Some(Ok(Opt {
                letter: b'E',
                arg: None
            }))
        );
        g.skip_rest_of_word();
        assert_eq!(
            g.next(),
            Some(Ok(Opt {
                letter: b't',
                arg: None
            }))
        );
        g.skip_rest_of_word();
        assert_eq!(g.next(), None);
        assert_eq!(g.operands(), ["x"]);
    }

    /// The reference: subgetopt's steps written out over one flat cursor.
    fn model(args: &[Vec<u8>], opts: &[u8]) -> (Vec<Result<Opt, GetoptError>>, Vec<Vec<u8>>) {
        let mut out = Vec::new();
        let (mut ind, mut pos) = (0usize, 0usize);
        loop {
            if pos > 0 && pos == args.get(ind).map_or(0, Vec::len) {
                ind += 1;
                pos = 0;
            }
            let Some(w) = args.get(ind) else { break };
            if pos == 0 {
                if w.len() < 2 || w[0] != b'-' {
                    break;
                }
                if w[1] == b'-' {
                    ind += 1;
                    break;
                }
                pos = 1;
            }
            let c = w[pos];
            pos += 1;
            // Which letters exist: each char, skipping a ':' that follows a letter.
            let mut known = None;
            let mut k = 0;
            while k < opts.len() {
                let arg = opts.get(k + 1) == Some(&b':');
                if opts[k] == c && known.is_none() {
                    known = Some(arg);
                }
                k += 1 + usize::from(arg);
            }
            match known {
                None => out.push(Err(GetoptError::Illegal(c))),
                Some(false) => out.push(Ok(Opt {
                    letter: c,
                    arg: None,
                })),
                Some(true) => {
                    let rest = w[pos..].to_vec();
                    ind += 1;
                    pos = 0;
                    if !rest.is_empty() {
                        out.push(Ok(Opt {
                            letter: c,
                            arg: Some(OsString::from_vec(rest)),
                        }));
                    } else if let Some(n) = args.get(ind) {
                        out.push(Ok(Opt {
                            letter: c,
                            arg: Some(OsString::from_vec(n.clone())),
                        }));
                        ind += 1;
                    } else {
                        out.push(Err(GetoptError::MissingArgument(c)));
                        break;
                    }
                }
            }
        }
        (out, args[ind.min(args.len())..].to_vec())
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn word() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(
                    prop_oneof![Just(b'-'), Just(b'a'), Just(b'f'), Just(b':'), any::<u8>()],
                    0..6
                ),
                Just(b"-".to_vec()),
                Just(b"--".to_vec()),
            ]
        }

        proptest! {
            #[test]
            fn agrees_with_the_model(
                args in proptest::collection::vec(word(), 0..6),
                opts in prop_oneof![Just("af:"), Just(":af:b"), Just("f:f"), Just("")],
            ) {
                let mut g = Getopt::new(args.iter().cloned().map(OsString::from_vec), opts);
                let got: Vec<_> = g.by_ref().collect();
                let rest: Vec<Vec<u8>> = g.operands().into_iter().map(OsString::into_vec).collect();
                let (want, want_rest) = model(&args, opts.as_bytes());
                prop_assert_eq!(got, want);
                prop_assert_eq!(rest, want_rest);
            }
        }
    }
}
