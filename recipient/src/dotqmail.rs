//! .qmail files (dot-qmail(5)): which file handles an extension, and what its lines say.
//!
//! The rules are functions over bytes, so that they can be tested (and fuzzed) without a
//! file system: [`safe_ext`] and [`candidates`] give the file names tried, in netqmail's
//! order, and [`search`] tries them with a probe of the caller's (qmail-local opens each
//! file, recipient validation only looks at it); [`error_defers`], [`home_mode`] and
//! [`no_mailbox`] say how qmail-local judges what it finds; [`parse`] classifies the
//! delivery instructions.

use control::PATRN;
use control::is_temp;
use std::fmt;
use std::io;

/// The largest .qmail file (or default delivery) read; a bigger one is a temporary
/// failure, never a silent truncation.
pub const MAX_FILE: usize = 16 * 1024 * 1024;
/// The most lines a .qmail file may have.
pub const MAX_LINES: usize = 100_000;
/// The longest line a .qmail file may have (a program line must also fit in one
/// argument of execve, 128 KiB on Linux).
pub const MAX_LINE: usize = 64 * 1024;

/// The extension as used in file names: ASCII letters lowered, and every `.` (and `/`)
/// replaced by `:`, so that an address can never name a file outside the user's
/// .qmail namespace (no `..`, no directory separator).
pub fn safe_ext(ext: &[u8]) -> Vec<u8> {
    ext.iter()
        .map(|&c| match c {
            b'.' | b'/' => b':',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// One .qmail file name to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The file name, relative to the home directory: `.qmail` + dash + ...
    pub name: Vec<u8>,
    /// For a name ending in `default`: where the part of the extension it stands for
    /// begins (the value of `$DEFAULT` is `ext[at..]`).
    pub default_at: Option<usize>,
}

fn qmail_name(dash: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut n = b".qmail".to_vec();
    n.extend_from_slice(dash);
    for p in parts {
        n.extend_from_slice(p);
    }
    n
}

/// The names qmail-local tries for `safeext`, in order: the exact name, then each
/// `-default` going up the dashes. For `foo-bar`: `.qmail-foo-bar`, `.qmail-foo-default`,
/// `.qmail-default`.
///
/// As in netqmail, the exact name also counts as a default when it ends in `default`,
/// and with an empty dash the last name tried is `.qmaildefault`.
pub fn candidates(dash: &[u8], safeext: &[u8]) -> Vec<Candidate> {
    let mut v = Vec::new();
    let exact_default =
        (safeext.len() >= 7 && safeext.ends_with(b"default")).then(|| safeext.len() - 7);
    v.push(Candidate {
        name: qmail_name(dash, &[safeext]),
        default_at: exact_default,
    });
    for i in (0..=safeext.len()).rev() {
        if i == 0 || safeext[i - 1] == b'-' {
            v.push(Candidate {
                name: qmail_name(dash, &[&safeext[..i], b"default"]),
                default_at: Some(i),
            });
        }
    }
    v
}

/// qmail-local's search: tries each of [`candidates`] in order with `probe`, which returns
/// `Ok(Some(_))` for a .qmail file it found, `Ok(None)` to go on, or an error that stops
/// the search (qmail-local then defers the delivery). `Ok(None)` when no name was found.
pub fn search<T, E>(
    dash: &[u8],
    safeext: &[u8],
    mut probe: impl FnMut(&[u8]) -> Result<Option<T>, E>,
) -> Result<Option<(Candidate, T)>, E> {
    for c in candidates(dash, safeext) {
        if let Some(t) = probe(&c.name)? {
            return Ok(Some((c, t)));
        }
    }
    Ok(None)
}

/// Whether a failure to open (or look at) a .qmail file defers the delivery, as in
/// qmail-local: a temporary error or a permission problem. Any other error means that
/// there is no such file.
pub fn error_defers(e: &io::Error) -> bool {
    is_temp(e) || matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

/// What qmail-local makes of its home directory's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeMode {
    Usable,
    /// Writable by others ([`PATRN`]): deliveries are deferred.
    Writable,
    /// Sticky: the user is editing .qmail files; deliveries are deferred.
    Sticky,
}

/// qmail-local's check of the home directory's mode bits.
pub fn home_mode(mode: u32) -> HomeMode {
    if mode & PATRN != 0 {
        HomeMode::Writable
    } else if mode & 0o1000 != 0 {
        HomeMode::Sticky
    } else {
        HomeMode::Usable
    }
}

/// Whether qmail-local bounces for want of a mailbox ("Sorry, no mailbox here by that
/// name"): the address has an extension (a dash) and [`search`] found no .qmail file.
/// Without a dash the user's default delivery applies.
pub fn no_mailbox(dash: &[u8], found: bool) -> bool {
    !found && !dash.is_empty()
}

/// The names whose existence decides the forwarding sender: `.qmail-ext-owner` and
/// `.qmail-ext-owner-default`.
pub fn owner_names(dash: &[u8], safeext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (
        qmail_name(dash, &[safeext, b"-owner"]),
        qmail_name(dash, &[safeext, b"-owner-default"]),
    )
}

/// One delivery instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// An empty line (after trailing blanks are removed); an error as the first line.
    Empty,
    /// `#...`
    Comment,
    /// `+list`: from here on, only forwards are allowed.
    List,
    /// Any other line starting with `+`: ignored.
    Plus,
    /// `/path` or `./path` not ending in `/`: append to an mbox file.
    Mbox(Vec<u8>),
    /// `/path/` or `./path/`: deliver into a maildir.
    Maildir(Vec<u8>),
    /// `|command`: the command (without the bar) for `/bin/sh -c`.
    Program(Vec<u8>),
    /// `&address` or a bare address: the address (without the ampersand).
    Forward(Vec<u8>),
}

impl Line {
    /// The text of the instruction, as qmail-local -n prints it.
    pub fn describe(&self) -> Option<(&'static str, &[u8])> {
        match self {
            Line::Mbox(p) => Some(("mbox ", p)),
            Line::Maildir(p) => Some(("maildir ", p)),
            Line::Program(p) => Some(("program ", p)),
            Line::Forward(p) => Some(("forward ", p)),
            _ => None,
        }
    }
}

/// A .qmail file over the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitError {
    /// More than [`MAX_FILE`] bytes.
    TooBig,
    /// More than [`MAX_LINES`] lines.
    TooManyLines,
    /// A line longer than [`MAX_LINE`] bytes.
    LineTooLong,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitError::TooBig => "Uh-oh: .qmail file is too big. (#4.2.1)",
            LimitError::TooManyLines => "Uh-oh: .qmail file has too many lines. (#4.2.1)",
            LimitError::LineTooLong => "Uh-oh: .qmail file has a line that is too long. (#4.2.1)",
        })
    }
}

impl std::error::Error for LimitError {}

/// Classifies one line (without its newline) as netqmail does: trailing spaces and tabs
/// are removed; the instruction is the text up to the first NUL (a C string), while the
/// maildir/mbox choice looks at the last byte of the whole line.
pub fn classify(raw: &[u8]) -> Line {
    let mut k = raw.len();
    while k > 0 && matches!(raw[k - 1], b' ' | b'\t') {
        k -= 1;
    }
    let full = &raw[..k];
    let text = match full.iter().position(|&c| c == 0) {
        Some(n) => &full[..n],
        None => full,
    };
    match text.first() {
        None => Line::Empty,
        Some(b'#') => Line::Comment,
        Some(b'.') | Some(b'/') => {
            if full.last() == Some(&b'/') {
                Line::Maildir(text.to_vec())
            } else {
                Line::Mbox(text.to_vec())
            }
        }
        Some(b'|') => Line::Program(text[1..].to_vec()),
        Some(b'+') => {
            if &text[1..] == b"list" {
                Line::List
            } else {
                Line::Plus
            }
        }
        Some(b'&') => Line::Forward(text[1..].to_vec()),
        Some(_) => Line::Forward(text.to_vec()),
    }
}

/// Splits a .qmail file (or the default delivery) into instructions. A missing final
/// newline is supplied.
pub fn parse(cmds: &[u8]) -> Result<Vec<Line>, LimitError> {
    if cmds.len() > MAX_FILE {
        return Err(LimitError::TooBig);
    }
    let body = cmds.strip_suffix(b"\n").unwrap_or(cmds);
    let mut out = Vec::new();
    for raw in body.split(|&c| c == b'\n') {
        if out.len() >= MAX_LINES {
            return Err(LimitError::TooManyLines);
        }
        if raw.len() > MAX_LINE {
            return Err(LimitError::LineTooLong);
        }
        out.push(classify(raw));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(dash: &str, ext: &str) -> Vec<String> {
        candidates(dash.as_bytes(), &safe_ext(ext.as_bytes()))
            .into_iter()
            .map(|c| String::from_utf8(c.name).unwrap())
            .collect()
    }

    #[test]
    fn lookup_order_matches_netqmail() {
        assert_eq!(names("", ""), [".qmail", ".qmaildefault"]);
        assert_eq!(names("-", ""), [".qmail-", ".qmail-default"]);
        assert_eq!(names("-", "a"), [".qmail-a", ".qmail-default"]);
        assert_eq!(
            names("-", "a-"),
            [".qmail-a-", ".qmail-a-default", ".qmail-default"]
        );
        assert_eq!(
            names("-", "a-b"),
            [".qmail-a-b", ".qmail-a-default", ".qmail-default"]
        );
        assert_eq!(
            names("-", "a-b-c"),
            [
                ".qmail-a-b-c",
                ".qmail-a-b-default",
                ".qmail-a-default",
                ".qmail-default"
            ]
        );
        assert_eq!(names("-/", "a"), [".qmail-/a", ".qmail-/default"]);
    }

    #[test]
    fn default_positions() {
        let c = candidates(b"-", &safe_ext(b"Foo-Bar"));
        assert_eq!(c[0].default_at, None);
        assert_eq!(c[1].default_at, Some(4));
        assert_eq!(c[2].default_at, Some(0));
        let c = candidates(b"-", b"x-default");
        assert_eq!(c[0].default_at, Some(2));
    }

    #[test]
    fn search_stops_at_the_first_file_or_error() {
        let names = [b".qmail-a-default".to_vec()];
        let r: Result<_, ()> = search(b"-", b"a-b", |n| {
            Ok(names.contains(&n.to_vec()).then_some(7))
        });
        let (c, t) = r.unwrap().unwrap();
        assert_eq!(
            (c.name, c.default_at, t),
            (b".qmail-a-default".to_vec(), Some(2), 7)
        );
        let mut tried = 0;
        let r: Result<Option<(Candidate, ())>, &str> = search(b"-", b"a-b", |_| {
            tried += 1;
            Err("deferred")
        });
        assert_eq!((r.unwrap_err(), tried), ("deferred", 1));
        let r: Result<Option<(Candidate, ())>, ()> = search(b"-", b"x", |_| Ok(None));
        assert!(r.unwrap().is_none());
        assert!(no_mailbox(b"-", false));
        assert!(!no_mailbox(b"-", true));
        assert!(!no_mailbox(b"", false));
        assert_eq!(home_mode(0o40755), HomeMode::Usable);
        assert_eq!(home_mode(0o40757), HomeMode::Writable);
        assert_eq!(home_mode(0o41755), HomeMode::Sticky);
        assert!(error_defers(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(!error_defers(&io::Error::from_raw_os_error(libc::ENOENT)));
    }

    #[test]
    fn dots_and_slashes_are_folded() {
        assert_eq!(safe_ext(b"Joe.Smith/../x"), b"joe:smith::::x");
        assert_eq!(names("-", "..")[0], ".qmail-::");
    }

    #[test]
    fn classification() {
        assert_eq!(classify(b""), Line::Empty);
        assert_eq!(classify(b" \t"), Line::Empty);
        assert_eq!(classify(b"# hi"), Line::Comment);
        assert_eq!(classify(b"./Mailbox  "), Line::Mbox(b"./Mailbox".to_vec()));
        assert_eq!(
            classify(b"./Maildir/\t"),
            Line::Maildir(b"./Maildir/".to_vec())
        );
        assert_eq!(classify(b"/var/m/x/"), Line::Maildir(b"/var/m/x/".to_vec()));
        assert_eq!(classify(b"|cat > x "), Line::Program(b"cat > x".to_vec()));
        assert_eq!(
            classify(b"&a@b.example"),
            Line::Forward(b"a@b.example".to_vec())
        );
        assert_eq!(
            classify(b"a@b.example"),
            Line::Forward(b"a@b.example".to_vec())
        );
        assert_eq!(classify(b" a@b"), Line::Forward(b" a@b".to_vec()));
        assert_eq!(classify(b"+list"), Line::List);
        assert_eq!(classify(b"+list "), Line::List);
        assert_eq!(classify(b"+other"), Line::Plus);
        assert_eq!(classify(b"|prog\0rest"), Line::Program(b"prog".to_vec()));
        assert_eq!(classify(b"\0abc"), Line::Empty);
        assert_eq!(classify(b"./m\0x/"), Line::Maildir(b"./m".to_vec()));
    }

    #[test]
    fn parsing_whole_files() {
        assert_eq!(
            parse(b"# c\n\n./Maildir/\n&x@y").unwrap(),
            vec![
                Line::Comment,
                Line::Empty,
                Line::Maildir(b"./Maildir/".to_vec()),
                Line::Forward(b"x@y".to_vec())
            ]
        );
        assert_eq!(parse(b"").unwrap(), vec![Line::Empty]);
        assert_eq!(parse(b"\n").unwrap(), vec![Line::Empty]);
        assert_eq!(
            parse(b"a\n\n").unwrap(),
            vec![Line::Forward(b"a".to_vec()), Line::Empty]
        );
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(parse(&long), Err(LimitError::LineTooLong));
        let many = b"#\n".repeat(MAX_LINES + 1);
        assert_eq!(parse(&many), Err(LimitError::TooManyLines));
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Ok(lines) = parse(&data) {
                prop_assert!(!lines.is_empty());
                for l in lines {
                    if let Some((_, text)) = l.describe() {
                        prop_assert!(!text.contains(&b'\n'));
                        prop_assert!(!text.contains(&0));
                    }
                }
            }
        }

        #[test]
        fn candidate_names_stay_in_the_home(ext in proptest::collection::vec(any::<u8>(), 0..60)) {
            let safe = safe_ext(&ext);
            prop_assert_eq!(safe.len(), ext.len());
            for c in candidates(b"-", &safe) {
                prop_assert!(c.name.starts_with(b".qmail-"));
                prop_assert!(!c.name.contains(&b'/'));
                prop_assert!(!c.name[1..].contains(&b'.'));
                if let Some(at) = c.default_at {
                    prop_assert!(at <= ext.len());
                    prop_assert!(c.name.ends_with(b"default"));
                }
            }
            let c = candidates(b"-", &safe);
            prop_assert_eq!(c.len(), 2 + safe.iter().filter(|&&b| b == b'-').count());
        }
    }
}
