//! qmail-pw2u: build users/assign from a passwd file (qmail-pw2u(8)).
//!
//! Reads `user:password:uid:gid:gecos:home:shell` lines on standard input and prints
//! assignments on standard output, following qmail-getpw's rules (skip uid 0, skip a
//! user whose home is missing or not owned by it, skip names with capitals), changed by
//! the options and by the files include, exclude, mailnames, subusers and append in
//! QMAIL_HOME/users. The output is printed only when complete: a fatal error prints
//! nothing.

use control::Exit;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The longest passwd or subusers line considered; longer lines are skipped.
pub const MAX_LINE: usize = 1024 * 1024;

/// What to do about home directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeStrategy {
    /// -H: do not look.
    Ignore,
    /// -h: a missing home is fatal; skip a user not owning its home.
    Stop,
    /// -o (default): skip a user whose home is missing or not its own.
    Skip,
}

/// The options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-:` normally, `-/:` with -/.
    pub dashcolon: &'static [u8],
    pub home: HomeStrategy,
    /// -U (default): skip names with capital letters; -u allows them.
    pub noupper: bool,
    /// The user-extension break character (-c), none with -C.
    pub brk: Option<u8>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dashcolon: b"-:",
            home: HomeStrategy::Skip,
            noupper: true,
            brk: Some(b'-'),
        }
    }
}

/// Parses the options; `None` for a usage error (a permanent failure).
pub fn parse_options<I>(args: I) -> Option<Options>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    let mut o = Options::default();
    // Operands are ignored, as by netqmail.
    for opt in control::Getopt::new(args, "/ohHuUc:C") {
        match opt {
            Ok(opt) => match (opt.letter, opt.arg) {
                (b'/', _) => o.dashcolon = b"-/:",
                (b'o', _) => o.home = HomeStrategy::Skip,
                (b'h', _) => o.home = HomeStrategy::Stop,
                (b'H', _) => o.home = HomeStrategy::Ignore,
                (b'u', _) => o.noupper = false,
                (b'U', _) => o.noupper = true,
                (b'C', _) => o.brk = None,
                (_, v) => o.brk = v.and_then(|v| v.as_bytes().first().copied()),
            },
            Err(e) => {
                e.complain(&control::env_progname());
                return None;
            }
        }
    }
    Some(o)
}

/// A case-insensitive map where the last entry for a key wins (netqmail's constmap).
#[derive(Debug, Clone, Default)]
pub struct CaseMap {
    map: HashMap<Vec<u8>, Vec<u8>>,
}

impl CaseMap {
    /// Entries `key` (flagcolon false) or `key:value` (flagcolon true; lines without a
    /// colon are left out).
    pub fn new<'a, I: IntoIterator<Item = &'a [u8]>>(lines: I, flagcolon: bool) -> CaseMap {
        let mut map = HashMap::new();
        for l in lines {
            if flagcolon {
                if let Some(i) = l.iter().position(|&c| c == b':') {
                    map.insert(l[..i].to_ascii_lowercase(), l[i + 1..].to_vec());
                }
            } else {
                map.insert(l.to_ascii_lowercase(), Vec::new());
            }
        }
        CaseMap { map }
    }

    /// The value for `key`, ignoring ASCII case.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    fn insert(&mut self, key: &[u8], value: Vec<u8>) {
        self.map.insert(key.to_ascii_lowercase(), value);
    }
}

/// The files of QMAIL_HOME/users that change the rules.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub include: Option<CaseMap>,
    pub exclude: Option<CaseMap>,
    pub mailnames: Option<CaseMap>,
    /// users/subusers, raw.
    pub subusers: Option<Vec<u8>>,
    /// users/append, raw.
    pub append: Option<Vec<u8>>,
}

/// A fatal error, with netqmail's words.
#[derive(Debug)]
pub enum Pw2uError {
    Read,
    Controls,
    NoAlias,
    Home(Vec<u8>),
    SubUser(Vec<u8>),
}

impl fmt::Display for Pw2uError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pw2uError::Read => f.write_str("unable to read input"),
            Pw2uError::Controls => f.write_str("unable to read controls"),
            Pw2uError::NoAlias => f.write_str("unable to find alias user"),
            Pw2uError::Home(h) => write!(f, "unable to stat {}", String::from_utf8_lossy(h)),
            Pw2uError::SubUser(u) => write!(
                f,
                "unable to find {} user for subuser",
                String::from_utf8_lossy(u)
            ),
        }
    }
}

impl std::error::Error for Pw2uError {}

/// Splits off the field before the next `:`; `None` when there is no colon.
fn field(x: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = x.iter().position(|&c| c == b':')?;
    Some((&x[..i], &x[i + 1..]))
}

/// Reads lines of at most [`MAX_LINE`] bytes (longer ones are skipped whole), each with
/// its newline when it had one.
fn for_each_line<R: BufRead>(
    mut r: R,
    mut f: impl FnMut(&[u8]) -> Result<(), Pw2uError>,
) -> Result<(), Pw2uError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = io::Read::take(&mut r, MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .map_err(|_| Pw2uError::Read)?;
        if n == 0 {
            return Ok(());
        }
        if n == MAX_LINE && line.last() != Some(&b'\n') {
            // Too long: skip to the end of the line.
            let mut sink = Vec::new();
            loop {
                sink.clear();
                let k = io::Read::take(&mut r, 64 * 1024)
                    .read_until(b'\n', &mut sink)
                    .map_err(|_| Pw2uError::Read)?;
                if k == 0 || sink.last() == Some(&b'\n') {
                    break;
                }
            }
            continue;
        }
        f(&line)?;
    }
}

/// Converts `passwd` into assignments. `home_owner` gives the owner of a home
/// directory (an error for a missing or unreadable one).
pub fn convert<R: BufRead>(
    passwd: R,
    o: &Options,
    files: &Files,
    home_owner: &dyn Fn(&[u8]) -> io::Result<u32>,
) -> Result<Vec<u8>, Pw2uError> {
    let mut out = Vec::new();
    let mut allusers = CaseMap::default();
    let mut flagalias = false;
    for_each_line(passwd, |line| {
        if line.contains(&0) {
            return Ok(());
        }
        let Some((user, x)) = field(line) else {
            return Ok(());
        };
        let Some((_pw, x)) = field(x) else {
            return Ok(());
        };
        let Some((uidstr, x)) = field(x) else {
            return Ok(());
        };
        let Some((gidstr, x)) = field(x) else {
            return Ok(());
        };
        let Some((_gecos, x)) = field(x) else {
            return Ok(());
        };
        let Some((home, _shell)) = field(x) else {
            return Ok(());
        };
        let uid = control::scan_ulong(uidstr).unwrap_or(0);
        if uid == 0 {
            return Ok(());
        }
        if o.noupper && user.iter().any(u8::is_ascii_uppercase) {
            return Ok(());
        }
        if let Some(inc) = &files.include
            && inc.get(user).is_none()
        {
            return Ok(());
        }
        if let Some(exc) = &files.exclude
            && exc.get(user).is_some()
        {
            return Ok(());
        }
        if o.home != HomeStrategy::Ignore {
            match home_owner(home) {
                Ok(owner) => {
                    if u64::from(owner) != uid {
                        return Ok(());
                    }
                }
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound || o.home == HomeStrategy::Stop {
                        return Err(Pw2uError::Home(home.to_vec()));
                    }
                    return Ok(());
                }
            }
        }
        let uugh = [b":", user, b":", uidstr, b":", gidstr, b":", home, b":"].concat();
        allusers.insert(user, uugh.clone());
        if user == recipient::ALIAS {
            out.extend_from_slice(&[b"+", &uugh[..], o.dashcolon, b":\n"].concat());
            flagalias = true;
        }
        let names: &[u8] = files
            .mailnames
            .as_ref()
            .and_then(|m| m.get(user))
            .unwrap_or(user);
        for name in names.split(|&c| c == b':').filter(|n| !n.is_empty()) {
            out.extend_from_slice(&[b"=", name, &uugh[..], b"::\n"].concat());
            if let Some(b) = o.brk {
                out.extend_from_slice(&[b"+", name, &[b], &uugh[..], o.dashcolon, b":\n"].concat());
            }
        }
        Ok(())
    })?;
    if !flagalias {
        return Err(Pw2uError::NoAlias);
    }
    if let Some(subusers) = &files.subusers {
        for_each_line(&subusers[..], |line| {
            let Some((sub, x)) = field(line) else {
                return Ok(());
            };
            let Some((user, x)) = field(x) else {
                return Ok(());
            };
            let Some(uugh) = allusers.get(user) else {
                return Err(Pw2uError::SubUser(user.to_vec()));
            };
            let Some((pre, _)) = field(x) else {
                return Ok(());
            };
            out.extend_from_slice(&[b"=", sub, uugh, o.dashcolon, pre, b":\n"].concat());
            if let Some(b) = o.brk {
                out.extend_from_slice(&[b"+", sub, &[b], uugh, o.dashcolon, pre, b"-:\n"].concat());
            }
            Ok(())
        })?;
    }
    if let Some(append) = &files.append {
        out.extend_from_slice(append);
    }
    out.extend_from_slice(b".\n");
    Ok(out)
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Pw2uError> {
    match std::fs::read(path) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(_) => Err(Pw2uError::Controls),
    }
}

/// Reads the files of `home`/users.
pub fn read_files(home: &Path) -> Result<Files, Pw2uError> {
    let users = home.join("users");
    let list = |name: &str, flagcolon: bool| -> Result<Option<CaseMap>, Pw2uError> {
        let lines = control::read_lines(&users.join(name)).map_err(|_| Pw2uError::Controls)?;
        Ok(lines.map(|l| CaseMap::new(l.iter().map(Vec::as_slice), flagcolon)))
    };
    Ok(Files {
        include: list("include", false)?,
        exclude: list("exclude", false)?,
        mailnames: list("mailnames", true)?,
        subusers: read_optional(&users.join("subusers"))?,
        append: read_optional(&users.join("append"))?,
    })
}

fn die(msg: &str) -> Exit {
    let _ = io::stderr().write_all(format!("qmail-pw2u: fatal: {msg}\n").as_bytes());
    Exit::TEMP
}

/// The whole program.
pub fn main() -> Exit {
    let Some(o) = parse_options(std::env::args_os().skip(1)) else {
        return Exit::PERM;
    };
    let home = control::qmail_home();
    if std::env::set_current_dir(&home).is_err() {
        return die("unable to chdir");
    }
    let files = match read_files(Path::new(".")) {
        Ok(f) => f,
        Err(e) => return die(&e.to_string()),
    };
    let owner = |h: &[u8]| std::fs::metadata(std::ffi::OsStr::from_bytes(h)).map(|m| m.uid());
    let stdin = io::stdin();
    match convert(stdin.lock(), &o, &files, &owner) {
        Ok(out) => {
            let mut w = io::stdout().lock();
            if w.write_all(&out).and_then(|()| w.flush()).is_err() {
                return die("unable to write output");
            }
            Exit::OK
        }
        Err(e) => die(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owners(h: &[u8]) -> io::Result<u32> {
        match h {
            b"/home/joe" => Ok(507),
            b"/var/qmail/alias" => Ok(7790),
            b"/home/bob" => Ok(1),
            b"/broken" => Err(io::Error::from_raw_os_error(libc::EIO)),
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
alias:*:7790:2108::/var/qmail/alias:/bin/true\n\
joe:x:507:100:Joe:/home/joe:/bin/sh\n\
bob:x:508:100::/home/bob:/bin/sh\n\
nohome:x:509:100::/nonexistent:/bin/sh\n\
Caps:x:510:100::/home/joe:/bin/sh\n\
short:x:511:100\n";

    fn run(o: &Options, f: &Files, input: &[u8]) -> String {
        String::from_utf8(convert(input, o, f, &owners).unwrap()).unwrap()
    }

    #[test]
    fn default_rules() {
        assert_eq!(
            run(&Options::default(), &Files::default(), PASSWD),
            "+:alias:7790:2108:/var/qmail/alias:-::\n\
=alias:alias:7790:2108:/var/qmail/alias:::\n\
+alias-:alias:7790:2108:/var/qmail/alias:-::\n\
=joe:joe:507:100:/home/joe:::\n\
+joe-:joe:507:100:/home/joe:-::\n\
.\n"
        );
    }

    #[test]
    fn options_change_the_rules() {
        let o = parse_options(["-H", "-u", "-C", "-/"]).unwrap();
        let out = run(&o, &Files::default(), PASSWD);
        assert!(out.contains("=bob:bob:508:100:/home/bob:::\n"));
        assert!(out.contains("=nohome:nohome:509"));
        assert!(out.contains("=Caps:Caps:510"));
        assert!(out.starts_with("+:alias:7790:2108:/var/qmail/alias:-/::\n"));
        assert!(!out.contains("+joe"));
        let o = parse_options(["-c", "+"]).unwrap();
        assert!(run(&o, &Files::default(), PASSWD).contains("+joe+:joe:507:100:/home/joe:-::\n"));
        let o = parse_options(["-h"]).unwrap();
        assert!(matches!(
            convert(PASSWD, &o, &Files::default(), &owners),
            Err(Pw2uError::Home(h)) if h == b"/nonexistent"
        ));
        assert!(parse_options(["-x"]).is_none());
        assert!(matches!(
            convert(
                &b"joe:x:507:100::/home/joe:\n"[..],
                &Options::default(),
                &Files::default(),
                &owners
            ),
            Err(Pw2uError::NoAlias)
        ));
        assert!(matches!(
            convert(
                &b"b:x:5:1::/broken:\n"[..],
                &Options::default(),
                &Files::default(),
                &owners
            ),
            Err(Pw2uError::Home(_))
        ));
    }

    #[test]
    fn users_files() {
        let files = Files {
            include: None,
            exclude: Some(CaseMap::new([&b"ALIAS"[..]], false)),
            mailnames: Some(CaseMap::new([&b"joe:joe.shmoe:js"[..], b"nobody:x"], true)),
            subusers: Some(b"list:JOE:lists:\nbad\n".to_vec()),
            append: Some(b"=extra:joe:507:100:/home/joe:::\n".to_vec()),
        };
        // Excluding alias leaves no alias: fatal.
        assert!(matches!(
            convert(PASSWD, &Options::default(), &files, &owners),
            Err(Pw2uError::NoAlias)
        ));
        let files = Files {
            exclude: None,
            include: Some(CaseMap::new([&b"alias"[..], b"JOE"], false)),
            ..files
        };
        assert_eq!(
            run(&Options::default(), &files, PASSWD),
            "+:alias:7790:2108:/var/qmail/alias:-::\n\
=alias:alias:7790:2108:/var/qmail/alias:::\n\
+alias-:alias:7790:2108:/var/qmail/alias:-::\n\
=joe.shmoe:joe:507:100:/home/joe:::\n\
+joe.shmoe-:joe:507:100:/home/joe:-::\n\
=js:joe:507:100:/home/joe:::\n\
+js-:joe:507:100:/home/joe:-::\n\
=list:joe:507:100:/home/joe:-:lists:\n\
+list-:joe:507:100:/home/joe:-:lists-:\n\
=extra:joe:507:100:/home/joe:::\n\
.\n"
        );
        let files = Files {
            subusers: Some(b"x:nosuch:p:\n".to_vec()),
            ..Files::default()
        };
        assert!(matches!(
            convert(PASSWD, &Options::default(), &files, &owners),
            Err(Pw2uError::SubUser(u)) if u == b"nosuch"
        ));
    }

    proptest! {
        #[test]
        fn output_always_compiles(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut passwd = b"alias:*:7790:2108::/var/qmail/alias:/bin/true\n".to_vec();
            passwd.extend_from_slice(&input);
            let o = Options { home: HomeStrategy::Ignore, noupper: false, ..Options::default() };
            if let Ok(out) = convert(&passwd[..], &o, &Files::default(), &owners) {
                // Every line qmail-pw2u prints is one qmail-newu accepts, unless a field
                // itself held a newline-free but colon-free oddity; it must never panic.
                let _ = recipient::compile_users_assign(&out[..], |_, _| Ok(()));
                prop_assert!(out.ends_with(b".\n"));
            }
        }
    }
}
