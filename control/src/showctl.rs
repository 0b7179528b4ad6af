//! qmail-showctl: explain the configuration, in netqmail's exact words and layout.
//!
//! First the build-time facts (home, user-extension delimiter, paternalism, concurrency
//! limit, split, the qmail user and group ids), then one paragraph per control file that
//! netqmail knows, in netqmail's order, each preceded by an empty line:
//!
//! * a one-line file: `NAME: TEXTvalue.` or `NAME: (Default.) TEXTdefault.` (the default
//!   being `control/me` for the files that fall back to it);
//! * a number: the same, the number being netqmail's reading of the first line;
//! * a list: `NAME: ` and then one line per entry, or `NAME: (Default.) EXPLANATION`;
//! * `Oops! Trouble reading this file.` when the file exists but cannot be read.
//!
//! Then the state of morercpthosts.cdb against morercpthosts, and finally every other
//! name in control/ with `I have no idea what this file does.` Characters outside
//! printable ASCII in values are shown as `?`.

use std::fs;
use std::io;
use std::path::Path;

use crate::Exit;
use crate::conf::{self, BREAK, PATRN, SPLIT};
use crate::file::{read_line, read_lines};

/// What a control file is, for the report.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// One line; `flagme`: the default is `control/me` when it exists.
    Str {
        flagme: bool,
        def: &'static str,
        pre: &'static str,
    },
    /// A number.
    Int {
        def: u64,
        pre: &'static str,
        post: &'static str,
    },
    /// A list of lines.
    Lst {
        def: &'static str,
        pre: &'static str,
        post: &'static str,
    },
}

/// The control files netqmail's qmail-showctl explains, in its order (rcpthosts,
/// morercpthosts and morercpthosts.cdb are handled between queuelifetime and
/// smtpgreeting).
pub const BEFORE_RCPTHOSTS: &[(&str, Kind)] = &[
    (
        "badmailfrom",
        Kind::Lst {
            def: "Any MAIL FROM is allowed.",
            pre: "",
            post: " not accepted in MAIL FROM.",
        },
    ),
    (
        "bouncefrom",
        Kind::Str {
            flagme: false,
            def: conf::DEFAULT_BOUNCEFROM,
            pre: "Bounce user name is ",
        },
    ),
    (
        "bouncehost",
        Kind::Str {
            flagme: true,
            def: conf::DEFAULT_BOUNCEHOST,
            pre: "Bounce host name is ",
        },
    ),
    (
        "concurrencylocal",
        Kind::Int {
            def: conf::DEFAULT_CONCURRENCYLOCAL,
            pre: "Local concurrency is ",
            post: "",
        },
    ),
    (
        "concurrencyremote",
        Kind::Int {
            def: conf::DEFAULT_CONCURRENCYREMOTE,
            pre: "Remote concurrency is ",
            post: "",
        },
    ),
    (
        "databytes",
        Kind::Int {
            def: 0,
            pre: "SMTP DATA limit is ",
            post: " bytes",
        },
    ),
    (
        "defaultdomain",
        Kind::Str {
            flagme: true,
            def: "defaultdomain",
            pre: "Default domain name is ",
        },
    ),
    (
        "defaulthost",
        Kind::Str {
            flagme: true,
            def: "defaulthost",
            pre: "Default host name is ",
        },
    ),
    (
        "doublebouncehost",
        Kind::Str {
            flagme: true,
            def: conf::DEFAULT_DOUBLEBOUNCEHOST,
            pre: "2B recipient host: ",
        },
    ),
    (
        "doublebounceto",
        Kind::Str {
            flagme: false,
            def: conf::DEFAULT_DOUBLEBOUNCETO,
            pre: "2B recipient user: ",
        },
    ),
    (
        "envnoathost",
        Kind::Str {
            flagme: true,
            def: conf::DEFAULT_ENVNOATHOST,
            pre: "Presumed domain name is ",
        },
    ),
    (
        "helohost",
        Kind::Str {
            flagme: true,
            def: "helohost",
            pre: "SMTP client HELO host name is ",
        },
    ),
    (
        "idhost",
        Kind::Str {
            flagme: true,
            def: "idhost",
            pre: "Message-ID host name is ",
        },
    ),
    (
        "localiphost",
        Kind::Str {
            flagme: true,
            def: "localiphost",
            pre: "Local IP address becomes ",
        },
    ),
    (
        "locals",
        Kind::Lst {
            def: "Messages for me are delivered locally.",
            pre: "Messages for ",
            post: " are delivered locally.",
        },
    ),
    (
        "me",
        Kind::Str {
            flagme: false,
            def: "undefined! Uh-oh",
            pre: "My name is ",
        },
    ),
    (
        "percenthack",
        Kind::Lst {
            def: "The percent hack is not allowed.",
            pre: "The percent hack is allowed for user%host@",
            post: ".",
        },
    ),
    (
        "plusdomain",
        Kind::Str {
            flagme: true,
            def: "plusdomain",
            pre: "Plus domain name is ",
        },
    ),
    (
        "qmqpservers",
        Kind::Lst {
            def: "No QMQP servers.",
            pre: "QMQP server: ",
            post: ".",
        },
    ),
    (
        "queuelifetime",
        Kind::Int {
            def: conf::DEFAULT_QUEUELIFETIME,
            pre: "Message lifetime in the queue is ",
            post: " seconds",
        },
    ),
];

/// The files explained after morercpthosts.cdb.
pub const AFTER_RCPTHOSTS: &[(&str, Kind)] = &[
    (
        "smtpgreeting",
        Kind::Str {
            flagme: true,
            def: "smtpgreeting",
            pre: "SMTP greeting: 220 ",
        },
    ),
    (
        "smtproutes",
        Kind::Lst {
            def: "No artificial SMTP routes.",
            pre: "SMTP route: ",
            post: "",
        },
    ),
    (
        "timeoutconnect",
        Kind::Int {
            def: 60,
            pre: "SMTP client connection timeout is ",
            post: " seconds",
        },
    ),
    (
        "timeoutremote",
        Kind::Int {
            def: 1200,
            pre: "SMTP client data timeout is ",
            post: " seconds",
        },
    ),
    (
        "timeoutsmtpd",
        Kind::Int {
            def: 1200,
            pre: "SMTP server data timeout is ",
            post: " seconds",
        },
    ),
    (
        "virtualdomains",
        Kind::Lst {
            def: "No virtual domains.",
            pre: "Virtual domain: ",
            post: "",
        },
    ),
];

/// How an rqmail (or TLS/AUTH patch) control file is shown.
#[derive(Debug, Clone, Copy)]
pub enum Extra {
    /// The file's existence only (certificates and keys are never printed).
    Exists(&'static str),
    /// The text, then the first line of the file, then a full stop.
    Line(&'static str),
    /// A directory: the text, then the names in it.
    Dir(&'static str),
    /// A list: the text, then each line of the file on a line of its own.
    Lines(&'static str),
    /// A list of secrets: the text and how many there are, never the lines themselves.
    Secrets(&'static str),
}

/// Control files netqmail does not have. They are explained only when they exist, after
/// netqmail's files, so that a netqmail configuration shows exactly as netqmail shows it.
pub const EXTRAS: &[(&str, Extra)] = &[
    (
        "checklocalrcpt",
        Extra::Line("qmail-smtpd checks local recipients at RCPT time (0 is off): "),
    ),
    (
        "clientca.pem",
        Extra::Exists("qmail-smtpd asks for client certificates signed by these CAs."),
    ),
    (
        "clientcert.pem",
        Extra::Exists("qmail-remote presents this TLS client certificate."),
    ),
    (
        "dane",
        Extra::Lines(
            "qmail-remote applies DANE (RFC 7672), asking these validating resolvers and trusting their AD bit:",
        ),
    ),
    (
        "defaultdelivery",
        Extra::Line("The supervision scripts start qmail-start with the default delivery "),
    ),
    (
        "dkim",
        Extra::Dir("qmail-dkim's private keys (named by dkimkeys):"),
    ),
    (
        "dkimkeys",
        Extra::Lines(
            "qmail-dkim signs mail from these author domains (pattern:selector:keyfile[:signing-domain]):",
        ),
    ),
    (
        "mtasts",
        Extra::Line("qmail-remote honours MTA-STS policies when this is 1 (cached in mtasts/): "),
    ),
    (
        "notlshosts",
        Extra::Dir("qmail-remote never uses TLS with:"),
    ),
    (
        "qmtproutes",
        Extra::Lines("qmail-remote delivers by QMTP (port 209 unless given) on these routes:"),
    ),
    (
        "servercert.pem",
        Extra::Exists(
            "qmail-smtpd offers STARTTLS (and SMTPS where set) with this certificate and key.",
        ),
    ),
    (
        "srsdomain",
        Extra::Line(
            "qmail-local rewrites the sender of mail it forwards to remote addresses into an SRS address (srsreverse(8)) at ",
        ),
    ),
    (
        "srsexclude",
        Extra::Lines("qmail-local never rewrites senders at these domains into SRS addresses:"),
    ),
    (
        "srshashlength",
        Extra::Line("SRS hashes made are this long: "),
    ),
    (
        "srshashmin",
        Extra::Line("srsreverse accepts SRS hashes at least this long: "),
    ),
    (
        "srsmaxage",
        Extra::Line("srsreverse accepts SRS0 addresses for this many days: "),
    ),
    (
        "srssecrets",
        Extra::Secrets(
            "The first secret signs SRS addresses, srsreverse accepts them all; never shown:",
        ),
    ),
    (
        "srsseparator",
        Extra::Line("SRS addresses made have this character after SRS0 or SRS1: "),
    ),
    (
        "timeoutsession",
        Extra::Line("qmail-smtpd ends each session after this many seconds (0 is no limit): "),
    ),
    (
        "tlshosts",
        Extra::Dir(
            "qmail-remote requires TLS with a certificate signed by the CA in HOST.pem for:",
        ),
    ),
    (
        "tlsclients",
        Extra::Lines(
            "qmail-smtpd lets TLS clients relay whose certificate (signed by a CA in clientca.pem) has one of these subject addresses:",
        ),
    ),
    (
        "tlsserverciphers",
        Extra::Line("qmail-smtpd's TLS cipher suites: "),
    ),
    (
        "tlsverify",
        Extra::Exists(
            "qmail-remote verifies every server's certificate against the system's roots.",
        ),
    ),
    (
        "validrcptto.cdb",
        Extra::Exists("qmail-smtpd accepts only the recipients listed here for its local domains."),
    ),
];

fn explain_extra(out: &mut Vec<u8>, dir: &Path, name: &str, how: Extra) {
    let path = dir.join(name);
    let Ok(meta) = fs::metadata(&path) else {
        return;
    };
    out.push(b'\n');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    match how {
        Extra::Exists(text) => out.extend_from_slice(text.as_bytes()),
        Extra::Line(text) => match read_line(&path) {
            Ok(Some(line)) => {
                out.extend_from_slice(text.as_bytes());
                safeput(out, &line);
                out.push(b'.');
            }
            _ => out.extend_from_slice(b"Oops! Trouble reading this file."),
        },
        Extra::Dir(text) => {
            out.extend_from_slice(text.as_bytes());
            let entries = if meta.is_dir() {
                fs::read_dir(&path).ok()
            } else {
                None
            };
            match entries {
                Some(rd) => {
                    let mut names: Vec<Vec<u8>> = rd
                        .filter_map(Result::ok)
                        .map(|e| e.file_name().into_encoded_bytes())
                        .collect();
                    names.sort();
                    for n in names {
                        out.push(b' ');
                        safeput(out, &n);
                    }
                }
                None => out.extend_from_slice(b" Oops! Trouble reading this directory."),
            }
        }
        Extra::Lines(text) => {
            out.extend_from_slice(text.as_bytes());
            match crate::file::read_lines(&path) {
                Ok(Some(lines)) => {
                    for l in lines {
                        out.push(b'\n');
                        safeput(out, &l);
                    }
                }
                _ => out.extend_from_slice(b" Oops! Trouble reading this file."),
            }
        }
        Extra::Secrets(text) => {
            out.extend_from_slice(text.as_bytes());
            match crate::file::read_lines(&path) {
                Ok(Some(lines)) => {
                    let n = lines.len();
                    let s = if n == 1 { "" } else { "s" };
                    out.extend_from_slice(format!(" {n} secret{s}.").as_bytes());
                }
                _ => out.extend_from_slice(b" Oops! Trouble reading this file."),
            }
        }
    }
    out.push(b'\n');
}

/// Every name qmail-showctl knows, so that only others get "no idea".
pub fn known(name: &str) -> bool {
    ["rcpthosts", "morercpthosts", "morercpthosts.cdb"].contains(&name)
        || EXTRAS.iter().any(|(n, _)| *n == name)
        || BEFORE_RCPTHOSTS
            .iter()
            .chain(AFTER_RCPTHOSTS)
            .any(|(n, _)| *n == name)
}

/// netqmail's filter for values: bytes outside 32..=126 become `?`.
fn safeput(out: &mut Vec<u8>, s: &[u8]) {
    out.extend(
        s.iter()
            .map(|&c| if (32..=126).contains(&c) { c } else { b'?' }),
    );
}

/// netqmail's reading of a number file: the leading digits, wrapping like C's unsigned
/// long, then stored in an int (the low 32 bits, two's complement) and shown as 0 when
/// negative. `None` when the line does not start with a digit.
pub fn showctl_int(line: &[u8]) -> Option<u32> {
    let digits = line.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let u = line[..digits].iter().fold(0u64, |n, &c| {
        n.wrapping_mul(10).wrapping_add(u64::from(c - b'0'))
    });
    // The int keeps the low 32 bits; a negative int is shown as 0.
    let i = (u & 0xffff_ffff) as u32;
    Some(if i > i32::MAX as u32 { 0 } else { i })
}

/// The paragraph of one control file in directory `dir`; returns whether a list file
/// existed (1), was missing (0) or could not be read (-1), as netqmail's do_lst does.
fn explain(out: &mut Vec<u8>, dir: &Path, name: &str, kind: Kind, me: Option<&[u8]>) -> i32 {
    out.extend_from_slice(format!("\n{name}: ").as_bytes());
    let path = dir.join(name);
    match kind {
        Kind::Str { flagme, def, pre } => match read_line(&path) {
            Ok(v) => {
                let value = match &v {
                    Some(v) => v.as_slice(),
                    None => {
                        out.extend_from_slice(b"(Default.) ");
                        match me {
                            Some(me) if flagme => me,
                            _ => def.as_bytes(),
                        }
                    }
                };
                out.extend_from_slice(pre.as_bytes());
                safeput(out, value);
                out.extend_from_slice(b".\n");
                1
            }
            Err(_) => {
                out.extend_from_slice(b"Oops! Trouble reading this file.\n");
                -1
            }
        },
        Kind::Int { def, pre, post } => match read_line(&path) {
            Ok(v) => {
                match v.as_deref().and_then(showctl_int) {
                    Some(i) => {
                        out.extend_from_slice(format!("{pre}{i}{post}.\n").as_bytes());
                    }
                    None => {
                        out.extend_from_slice(format!("(Default.) {pre}{def}{post}.\n").as_bytes())
                    }
                }
                1
            }
            Err(_) => {
                out.extend_from_slice(b"Oops! Trouble reading this file.\n");
                -1
            }
        },
        Kind::Lst { def, pre, post } => match read_lines(&path) {
            Ok(None) => {
                out.extend_from_slice(format!("(Default.) {def}\n").as_bytes());
                0
            }
            Ok(Some(lines)) => {
                out.push(b'\n');
                // netqmail keeps each line NUL-terminated and prints the pieces between
                // NULs, so a NUL inside a line splits it, and a line starting with one is
                // dropped.
                for line in lines.iter().filter(|l| l.first() != Some(&0)) {
                    for piece in line.split(|&c| c == 0) {
                        out.extend_from_slice(pre.as_bytes());
                        safeput(out, piece);
                        out.extend_from_slice(post.as_bytes());
                        out.push(b'\n');
                    }
                }
                1
            }
            Err(_) => {
                out.extend_from_slice(b"Oops! Trouble reading this file.\n");
                -1
            }
        },
    }
}

/// The morercpthosts.cdb paragraph.
fn explain_cdb(out: &mut Vec<u8>, dir: &Path) {
    out.extend_from_slice(b"\nmorercpthosts.cdb: ");
    let text = match (
        fs::metadata(dir.join("morercpthosts")),
        fs::metadata(dir.join("morercpthosts.cdb")),
    ) {
        (Err(_), Err(_)) => "(Default.) No effect.",
        (Err(_), Ok(_)) => "Oops! morercpthosts.cdb exists but morercpthosts doesn't.",
        (Ok(_), Err(_)) => "Oops! morercpthosts exists but morercpthosts.cdb doesn't.",
        (Ok(src), Ok(cdb)) => {
            use std::os::unix::fs::MetadataExt;
            if src.mtime() > cdb.mtime() {
                "Oops! morercpthosts.cdb is older than morercpthosts."
            } else {
                "Modified recently enough; hopefully up to date."
            }
        }
    };
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

/// The build-time facts at the top of the report.
#[derive(Debug, Clone)]
pub struct Header {
    /// The qmail home, as shown.
    pub home: String,
    /// The concurrency limit of the spawns.
    pub spawn_limit: u32,
    /// `a, d, l, o, p, q, r, s` or an explanation of the missing user.
    pub user_ids: String,
    /// `n, q` or an explanation of the missing group.
    pub group_ids: String,
}

impl Header {
    /// The facts of this installation and process.
    pub fn current(home: &Path) -> Header {
        Header {
            home: home.display().to_string(),
            spawn_limit: spawn_limit(),
            user_ids: user_ids(),
            group_ids: group_ids(),
        }
    }

    /// The header lines.
    pub fn render(&self) -> String {
        format!(
            "qmail home directory: {}.\nuser-ext delimiter: {}.\npaternalism (in decimal): {PATRN}.\nsilent concurrency limit: {}.\nsubdirectory split: {SPLIT}.\nuser ids: {}.\ngroup ids: {}.\n",
            self.home,
            char::from(BREAK),
            self.spawn_limit,
            self.user_ids,
            self.group_ids
        )
    }
}

/// The most deliveries rqmail's qmail-lspawn and qmail-rspawn run at once with this
/// process's descriptor limit ([`conf::spawn_limit`]). The spawns raise their soft limit
/// to the hard one, so the hard limit counts.
pub fn spawn_limit() -> u32 {
    let nofile = match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => soft.max(hard),
        Err(_) => 1024,
    };
    conf::spawn_limit(nofile)
}

/// The qmail user ids in netqmail's order (alias, qmaild, qmaill, root, qmailp, qmailq,
/// qmailr, qmails), or which one is missing.
pub fn user_ids() -> String {
    let mut ids = Vec::new();
    for name in crate::ids::USER_NAMES {
        match crate::ids::uid_of(name) {
            Some(u) => ids.push(u.as_raw().to_string()),
            None => return format!("Oops! unable to find user {name}"),
        }
    }
    ids.join(", ")
}

/// The qmail group ids in netqmail's order (nofiles, qmail), or which one is missing.
pub fn group_ids() -> String {
    let mut ids = Vec::new();
    for name in crate::ids::GROUP_NAMES {
        crate::ids::prepare_lookups();
        match nix::unistd::Group::from_name(name).ok().flatten() {
            Some(g) => ids.push(g.gid.as_raw().to_string()),
            None => return format!("Oops! unable to find group {name}"),
        }
    }
    ids.join(", ")
}

/// The report for the control directory `dir` (after the header); returns it with the
/// exit code.
pub fn report(dir: &Path) -> (Vec<u8>, Exit) {
    let mut out = Vec::new();
    let mut names: Vec<Vec<u8>> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().into_encoded_bytes())
            .collect(),
        Err(_) => {
            out.extend_from_slice(b"Oops! Unable to open current directory.\n");
            return (out, Exit::TEMP);
        }
    };
    names.sort();
    let me = match read_line(&dir.join("me")) {
        Ok(me) => me,
        Err(_) => {
            out.extend_from_slice(b"Oops! Trouble reading control/me.");
            return (out, Exit::TEMP);
        }
    };
    for (name, kind) in BEFORE_RCPTHOSTS {
        explain(&mut out, dir, name, *kind, me.as_deref());
    }
    let rcpthosts = Kind::Lst {
        def: "SMTP clients may send messages to any recipient.",
        pre: "SMTP clients may send messages to recipients at ",
        post: ".",
    };
    let more = if explain(&mut out, dir, "rcpthosts", rcpthosts, None) != 0 {
        Kind::Lst {
            def: "No effect.",
            pre: "SMTP clients may send messages to recipients at ",
            post: ".",
        }
    } else {
        Kind::Lst {
            def: "No rcpthosts; morercpthosts is irrelevant.",
            pre: "No rcpthosts; doesn't matter that morercpthosts has ",
            post: ".",
        }
    };
    explain(&mut out, dir, "morercpthosts", more, None);
    explain_cdb(&mut out, dir);
    for (name, kind) in AFTER_RCPTHOSTS {
        explain(&mut out, dir, name, *kind, me.as_deref());
    }
    for (name, how) in EXTRAS {
        explain_extra(&mut out, dir, name, *how);
    }
    for name in names {
        let shown = String::from_utf8_lossy(&name);
        if known(&shown) {
            continue;
        }
        out.push(b'\n');
        out.extend_from_slice(&name);
        out.extend_from_slice(b": I have no idea what this file does.\n");
    }
    (out, Exit::OK)
}

/// The program: prints the header, enters QMAIL_HOME/control as netqmail does, and
/// explains it.
pub fn main() -> Exit {
    use std::io::Write;
    let home = crate::qmail_home();
    let mut out = Header::current(&home).render().into_bytes();
    let code = if std::env::set_current_dir(&home).is_err() {
        out.extend_from_slice(format!("Oops! Unable to chdir to {}.\n", home.display()).as_bytes());
        Exit::TEMP
    } else if std::env::set_current_dir("control").is_err() {
        out.extend_from_slice(b"Oops! Unable to chdir to control.\n");
        Exit::TEMP
    } else {
        let (text, code) = report(Path::new("."));
        out.extend_from_slice(&text);
        code
    };
    let mut stdout = io::stdout().lock();
    if stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return Exit::TEMP;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_as_netqmail_reads_them() {
        assert_eq!(showctl_int(b"25"), Some(25));
        assert_eq!(showctl_int(b"25 x"), Some(25));
        assert_eq!(showctl_int(b""), None);
        assert_eq!(showctl_int(b"x1"), None);
        assert_eq!(showctl_int(b"-5"), None);
        assert_eq!(showctl_int(b"2147483647"), Some(2_147_483_647));
        assert_eq!(showctl_int(b"2147483648"), Some(0));
        assert_eq!(showctl_int(b"4294967297"), Some(1));
        assert_eq!(showctl_int(b"99999999999"), Some(1_215_752_191));
    }

    #[test]
    fn rqmail_files_are_explained_only_when_present_and_keys_never_shown() {
        let d = tempfile::tempdir().unwrap();
        let (plain, _) = report(d.path());
        assert!(!String::from_utf8_lossy(&plain).contains("servercert.pem"));
        fs::write(
            d.path().join("servercert.pem"),
            "-----BEGIN PRIVATE KEY-----\nSECRET\n",
        )
        .unwrap();
        fs::write(d.path().join("checklocalrcpt"), "1\n").unwrap();
        fs::write(d.path().join("timeoutsession"), "600\n").unwrap();
        fs::create_dir(d.path().join("tlshosts")).unwrap();
        fs::write(d.path().join("tlshosts/mx.example.pem"), "x").unwrap();
        fs::write(
            d.path().join("tlsclients"),
            "a@example.org\n# comment\nB@Example.Org\n",
        )
        .unwrap();
        fs::create_dir(d.path().join("dkim")).unwrap();
        fs::write(d.path().join("dkim/ex.key"), "secret").unwrap();
        fs::write(
            d.path().join("dkimkeys"),
            "example.com:s1:control/dkim/ex.key\n",
        )
        .unwrap();
        fs::write(d.path().join("srsdomain"), "srs.example.com\n").unwrap();
        fs::write(d.path().join("srssecrets"), "SECRET-1\nSECRET-2\n").unwrap();
        fs::write(d.path().join("srsmaxage"), "7\n").unwrap();
        fs::write(d.path().join("dane"), "127.0.0.1\n").unwrap();
        let (out, code) = report(d.path());
        let out = String::from_utf8(out).unwrap();
        assert_eq!(code, Exit::OK);
        assert!(!out.contains("SECRET"), "{out}");
        assert!(
            out.contains("\nservercert.pem: qmail-smtpd offers STARTTLS"),
            "{out}"
        );
        assert!(out.contains("\ntimeoutsession: qmail-smtpd ends each session after this many seconds (0 is no limit): 600.\n"), "{out}");
        assert!(out.contains("\nchecklocalrcpt: qmail-smtpd checks local recipients at RCPT time (0 is off): 1.\n"), "{out}");
        assert!(out.contains("\ntlsclients: qmail-smtpd lets TLS clients relay whose certificate (signed by a CA in clientca.pem) has one of these subject addresses:\na@example.org\nB@Example.Org\n"), "{out}");
        assert!(out.contains("\ntlshosts: qmail-remote requires TLS with a certificate signed by the CA in HOST.pem for: mx.example.pem\n"), "{out}");
        assert!(out.contains("\ndkimkeys: qmail-dkim signs mail from these author domains (pattern:selector:keyfile[:signing-domain]):\nexample.com:s1:control/dkim/ex.key\n"), "{out}");
        assert!(
            out.contains("\ndkim: qmail-dkim's private keys (named by dkimkeys): ex.key\n"),
            "{out}"
        );
        assert!(out.contains("\nsrsdomain: qmail-local rewrites the sender of mail it forwards to remote addresses into an SRS address (srsreverse(8)) at srs.example.com.\n"), "{out}");
        assert!(out.contains("\nsrssecrets: The first secret signs SRS addresses, srsreverse accepts them all; never shown: 2 secrets.\n"), "{out}");
        assert!(
            out.contains("\nsrsmaxage: srsreverse accepts SRS0 addresses for this many days: 7.\n"),
            "{out}"
        );
        assert!(out.contains("\ndane: qmail-remote applies DANE (RFC 7672), asking these validating resolvers and trusting their AD bit:\n127.0.0.1\n"), "{out}");
        assert!(!out.contains("SECRET-"), "{out}");
        assert!(!out.contains("secret\n"), "{out}");
        assert!(!out.contains("I have no idea"), "{out}");
    }

    #[test]
    fn every_name_is_known_once() {
        let mut all: Vec<&str> = BEFORE_RCPTHOSTS
            .iter()
            .chain(AFTER_RCPTHOSTS)
            .map(|(n, _)| *n)
            .collect();
        all.extend(["rcpthosts", "morercpthosts", "morercpthosts.cdb"]);
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(n, 29);
        assert!(all.iter().all(|n| known(n)));
        assert!(!known("morercpthosts.tmp"));
    }

    #[test]
    fn header_layout() {
        let h = Header {
            home: "/var/qmail".into(),
            spawn_limit: 120,
            user_ids: "1, 2, 3, 0, 4, 5, 6, 7".into(),
            group_ids: "8, 9".into(),
        };
        assert_eq!(
            h.render(),
            "qmail home directory: /var/qmail.\nuser-ext delimiter: -.\npaternalism (in decimal): 2.\nsilent concurrency limit: 120.\nsubdirectory split: 23.\nuser ids: 1, 2, 3, 0, 4, 5, 6, 7.\ngroup ids: 8, 9.\n"
        );
    }

    proptest! {
        #[test]
        fn list_output_is_printable(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let d = tempfile::tempdir().unwrap();
            fs::write(d.path().join("smtproutes"), &data).unwrap();
            let (out, code) = report(d.path());
            prop_assert_eq!(code, Exit::OK);
            prop_assert!(out.iter().all(|&c| (32..=126).contains(&c) || c == b'\n'));
        }
    }
}
