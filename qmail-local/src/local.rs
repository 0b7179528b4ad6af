//! qmail-local: deliver or forward one message as dot-qmail(5) says.
//!
//! Interface (netqmail's, exactly): `qmail-local [-nN] user homedir local dash ext
//! domain sender defaultdelivery` (qmail-lspawn puts `--` in front), the message on a
//! seekable descriptor 0, and the result as an exit code — 0 delivered, 100 permanent
//! failure, 111 temporary failure — with the report on descriptors 1 and 2 (qmail-lspawn
//! joins them): on success `did F+W+P\n` (files, forwards, programs) and `qp N\n` when a
//! forward was queued; on failure one line saying why.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::fail::{Fail, cat, warn};
use crate::headers;
use crate::program::{self, Outcome};
use control::Exit;
use control::PATRN;
use control::{describe_error as error_str, is_temp};
use recipient::{DOTQMAIL_MAX_FILE, DotQmailLimit, HomeMode, Line};

const USAGE: &str =
    "qmail-local: usage: qmail-local [ -nN ] user homedir local dash ext domain sender aliasempty";

/// The command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// False with -n: describe the instructions instead of delivering.
    pub doit: bool,
    pub user: Vec<u8>,
    pub homedir: Vec<u8>,
    pub local: Vec<u8>,
    pub dash: Vec<u8>,
    pub ext: Vec<u8>,
    pub domain: Vec<u8>,
    pub sender: Vec<u8>,
    pub defaultdelivery: Vec<u8>,
}

/// Parses the arguments (without the program name): options end at `--` or at the first
/// operand, as with netqmail's getopt.
pub fn parse_args<I>(args: I) -> Result<Args, Fail>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let usage = || Fail::perm(USAGE);
    let mut g = control::Getopt::new(args, "nN");
    let mut doit = true;
    for o in g.by_ref() {
        match o {
            Ok(o) if o.letter == b'n' => doit = false,
            Ok(_) => doit = true,
            Err(e) => {
                e.complain(&control::env_progname());
                return Err(usage());
            }
        }
    }
    let pos: Vec<Vec<u8>> = g
        .operands()
        .into_iter()
        .map(OsStringExt::into_vec)
        .collect();
    let Ok::<[Vec<u8>; 8], _>(
        [
            user,
            homedir,
            local,
            dash,
            ext,
            domain,
            sender,
            defaultdelivery,
        ],
    ) = pos.try_into()
    else {
        return Err(usage());
    };
    if homedir.first() != Some(&b'/') {
        return Err(usage());
    }
    Ok(Args {
        doit,
        user,
        homedir,
        local,
        dash,
        ext,
        domain,
        sender,
        defaultdelivery,
    })
}

/// The part of `x` after its first `-` (empty when there is none): EXT2 from EXT.
pub fn after_dash(x: &[u8]) -> &[u8] {
    match x.iter().position(|&c| c == b'-') {
        Some(i) => &x[i + 1..],
        None => &x[x.len()..],
    }
}

/// The part of `host[..upto]` before its last `.` (all of it when there is none): HOST2
/// from HOST.
fn before_last_dot(host: &[u8], upto: usize) -> usize {
    host[..upto]
        .iter()
        .rposition(|&c| c == b'.')
        .unwrap_or(upto)
}

/// The message on descriptor 0, rewound before each delivery.
struct Message {
    file: Option<File>,
}

impl Message {
    fn rewound(&mut self) -> Result<&mut File, Fail> {
        if self.file.is_none() {
            let fd = io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|_| Fail::temp("Unable to rewind message. (#4.3.0)"))?;
            self.file = Some(File::from(fd));
        }
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| Fail::temp("Unable to rewind message. (#4.3.0)"))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|_| Fail::temp("Unable to rewind message. (#4.3.0)"))?;
        Ok(f)
    }
}

/// Reads one line of at most `cap` bytes into `buf`, skipping (but counting) the rest.
/// Returns the full length of the line and whether it ended with a newline.
fn read_line_capped<R: io::BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<(usize, bool)> {
    buf.clear();
    let mut total = 0;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok((total, false));
        }
        let (n, done) = match avail.iter().position(|&c| c == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&avail[..n.min(room)]);
        total += n;
        r.consume(n);
        if done {
            return Ok((total, true));
        }
    }
}

/// Bounces a message whose header already has `dtline` (netqmail's bouncexf).
fn check_loop(msg: &mut Message, dtline: &[u8]) -> Result<(), Fail> {
    let f = msg.rewound()?;
    let mut r = io::BufReader::with_capacity(16 * 1024, f);
    let mut line = Vec::new();
    loop {
        let (len, newline) =
            read_line_capped(&mut r, &mut line, dtline.len() + 1).map_err(|e| {
                Fail::temp(cat(&[
                    b"Unable to read message: ",
                    error_str(&e).as_bytes(),
                    b". (#4.3.0)",
                ]))
            })?;
        if !newline || len <= 1 {
            return Ok(());
        }
        if len == dtline.len() && line == dtline {
            return Err(Fail::perm(
                "This message is looping: it already has my Delivered-To line. (#5.4.6)",
            ));
        }
    }
}

/// The home directory checks: not other-writable, not sticky (someone is editing
/// .qmail files).
fn check_home(doit: bool) -> Result<(), Fail> {
    let st = std::fs::metadata(".").map_err(|e| {
        Fail::temp(cat(&[
            b"Unable to stat home directory: ",
            error_str(&e).as_bytes(),
            b". (#4.3.0)",
        ]))
    })?;
    match recipient::home_mode(st.mode()) {
        HomeMode::Usable => {}
        HomeMode::Writable => {
            return Err(Fail::temp("Uh-oh: home directory is writable. (#4.7.0)"));
        }
        HomeMode::Sticky => {
            if doit {
                return Err(Fail::temp(
                    "Home directory is sticky: user is editing his .qmail file. (#4.2.1)",
                ));
            }
            warn(b"Warning: home directory is sticky.");
        }
    }
    Ok(())
}

fn temp_qmail(name: &[u8], e: &io::Error) -> Fail {
    Fail::temp(cat(&[
        b"Unable to open ",
        name,
        b": ",
        error_str(e).as_bytes(),
        b". (#4.3.0)",
    ]))
}

/// Opens `.qmail...` if it is a regular file: `Some((file, executable bit))`. A file
/// that cannot be opened for a temporary reason or for lack of permission is a
/// temporary failure; one that is other-writable too.
fn open_dot_qmail(name: &[u8]) -> Result<Option<(File, bool)>, Fail> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(OsStr::from_bytes(name));
    let f = match f {
        Ok(f) => f,
        Err(e) => {
            if recipient::dotqmail_error_defers(&e) {
                return Err(temp_qmail(name, &e));
            }
            return Ok(None);
        }
    };
    let st = f.metadata().map_err(|e| temp_qmail(name, &e))?;
    if !st.file_type().is_file() {
        return Ok(None);
    }
    if st.mode() & PATRN != 0 {
        return Err(Fail::temp("Uh-oh: .qmail file is writable. (#4.7.0)"));
    }
    Ok(Some((f, st.mode() & 0o100 != 0)))
}

/// True when `name` exists (netqmail's qmeox, for the -owner files).
fn exists(name: &[u8]) -> Result<bool, Fail> {
    match std::fs::metadata(OsStr::from_bytes(name)) {
        Ok(_) => Ok(true),
        Err(e) if is_temp(&e) => Err(temp_qmail(name, &e)),
        Err(_) => Ok(false),
    }
}

/// The counts of the report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub forwards: u64,
    pub programs: u64,
}

/// What a successful run reports: `did F+W+P` and the forward's qp.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub counts: Counts,
    pub qp: Option<u32>,
}

impl Report {
    /// The bytes qmail-local writes on success.
    pub fn text(&self) -> Vec<u8> {
        let c = self.counts;
        let mut s = format!("did {}+{}+{}\n", c.files, c.forwards, c.programs);
        if let Some(qp) = self.qp
            && qp != 0
        {
            s.push_str(&format!("qp {qp}\n"));
        }
        s.into_bytes()
    }
}

fn say(kind: &str, text: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(&cat(&[kind.as_bytes(), text, b"\n"]));
    let _ = out.flush();
}

fn env_pair(k: &str, v: &[u8]) -> (OsString, OsString) {
    (OsString::from(k), OsStr::from_bytes(v).to_os_string())
}

/// The forwarding sender (NEWSENDER), from the sender and the -owner files.
fn new_sender(a: &Args, safeext: &[u8]) -> Result<Vec<u8>, Fail> {
    if a.sender.is_empty() || a.sender == b"#@[]" {
        return Ok(a.sender.clone());
    }
    let (owner, owner_default) = recipient::owner_names(&a.dash, safeext);
    if !exists(&owner)? {
        return Ok(a.sender.clone());
    }
    if exists(&owner_default)? {
        Ok(cat(&[&a.local, b"-owner-@", &a.domain, b"-@[]"]))
    } else {
        Ok(cat(&[&a.local, b"-owner@", &a.domain]))
    }
}

/// Forwards the message to `recips` through qmail-queue, with `dtline` in front and
/// `sender` as the envelope sender. Returns qmail-queue's pid.
fn forward(
    msg: &mut Message,
    dtline: &[u8],
    sender: &[u8],
    recips: &[Vec<u8>],
) -> Result<u32, Fail> {
    let f = msg.rewound()?;
    let home = control::qmail_home();
    let mut qq = qmail_queue::QueueClient::open_default(&home).map_err(|e| {
        Fail::temp(cat(&[
            b"Unable to fork: ",
            error_str(&e).as_bytes(),
            b". (#4.3.0)",
        ]))
    })?;
    let qp = qq.pid();
    qq.put(dtline);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => qq.put(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                qq.fail();
                break;
            }
        }
    }
    qq.from(sender);
    for r in recips {
        qq.to(r);
    }
    match qq.close() {
        Ok(()) => Ok(qp),
        Err(e) => Err(Fail {
            code: control::temp_or_perm(!e.permanent),
            text: Some(cat(&[
                b"Unable to forward message: ",
                e.text.as_bytes(),
                b".",
            ])),
        }),
    }
}

/// Reads a .qmail file, bounded.
fn slurp(f: File, name: &[u8]) -> Result<Vec<u8>, Fail> {
    let mut v = Vec::new();
    f.take(DOTQMAIL_MAX_FILE as u64 + 1)
        .read_to_end(&mut v)
        .map_err(|e| {
            Fail::temp(cat(&[
                b"Unable to read ",
                name,
                b": ",
                error_str(&e).as_bytes(),
                b". (#4.3.0)",
            ]))
        })?;
    Ok(v)
}

fn limit_fail(e: DotQmailLimit) -> Fail {
    Fail::temp(e.to_string())
}

/// Does everything after argument parsing; the working directory becomes the home.
pub fn deliver(a: &Args) -> Result<Report, Fail> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    if a.doit && (nix::unistd::getuid().is_root() || nix::unistd::geteuid().is_root()) {
        return Err(Fail::temp(
            "Not allowed to perform deliveries as root. (#4.3.0)",
        ));
    }
    std::env::set_current_dir(Path::new(OsStr::from_bytes(&a.homedir))).map_err(|e| {
        Fail::temp(cat(&[
            b"Unable to switch to ",
            &a.homedir,
            b": ",
            error_str(&e).as_bytes(),
            b". (#4.3.0)",
        ]))
    })?;
    check_home(a.doit)?;

    let mut env: Vec<(OsString, OsString)> = vec![
        env_pair("HOST", &a.domain),
        env_pair("HOME", &a.homedir),
        env_pair("USER", &a.user),
        env_pair("LOCAL", &a.local),
        env_pair("RECIPIENT", &headers::recipient(&a.local, &a.domain)),
    ];
    let dtline = headers::dtline(&a.local, &a.domain);
    env.push(env_pair("DTLINE", &dtline));

    let mut msg = Message { file: None };
    if a.doit {
        check_loop(&mut msg, &dtline)?;
    }

    env.push(env_pair("SENDER", &a.sender));
    let rpline = headers::rpline(&a.sender);
    env.push(env_pair("RPLINE", &rpline));
    let ufline = headers::ufline(&a.sender, control::now());
    env.push(env_pair("UFLINE", &ufline));

    let ext2 = after_dash(&a.ext);
    let ext3 = after_dash(ext2);
    let ext4 = after_dash(ext3);
    env.push(env_pair("EXT", &a.ext));
    env.push(env_pair("EXT2", ext2));
    env.push(env_pair("EXT3", ext3));
    env.push(env_pair("EXT4", ext4));

    let safeext = recipient::safe_ext(&a.ext);

    let h = &a.domain;
    let i2 = before_last_dot(h, h.len());
    let i3 = before_last_dot(h, i2);
    let i4 = before_last_dot(h, i3);
    env.push(env_pair("HOST2", &h[..i2]));
    env.push(env_pair("HOST3", &h[..i3]));
    env.push(env_pair("HOST4", &h[..i4]));

    let found =
        recipient::search_dotqmail(&a.dash, &safeext, open_dot_qmail)?.map(|(c, (f, x))| {
            if let Some(at) = c.default_at
                && at <= a.ext.len()
            {
                env.push(env_pair("DEFAULT", &a.ext[at..]));
            }
            (f, x, c.name)
        });
    if recipient::no_mailbox(&a.dash, found.is_some()) {
        return Err(Fail::perm("Sorry, no mailbox here by that name. (#5.1.1)"));
    }

    let ueo = new_sender(a, &safeext)?;
    env.push(env_pair("NEWSENDER", &ueo));

    let mut forwardonly = false;
    let mut cmds = Vec::new();
    if let Some((f, x, name)) = found {
        forwardonly = x;
        cmds = slurp(f, &name)?;
        if cmds.len() > DOTQMAIL_MAX_FILE {
            return Err(limit_fail(DotQmailLimit::TooBig));
        }
    }
    if cmds.is_empty() {
        cmds = a.defaultdelivery.clone();
        forwardonly = false;
    }
    let lines = recipient::parse_dotqmail(&cmds).map_err(limit_fail)?;

    // The forwards' sender (SRS), decided before any delivery so that a control file
    // that cannot be read defers the message before anything is delivered.
    let forwards: Vec<&[u8]> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Forward(addr) => Some(addr.as_slice()),
            _ => None,
        })
        .collect();
    let fwd_sender = if a.doit && !forwards.is_empty() {
        crate::forwarding::forward_sender(&a.sender, &ueo, &forwards, control::now()).map_err(
            |e| {
                Fail::temp(cat(&[
                    b"Unable to read SRS configuration: ",
                    e.0.as_bytes(),
                    b". (#4.3.0)",
                ]))
            },
        )?
    } else {
        ueo.clone()
    };

    let mut report = Report::default();
    let mut recips: Vec<Vec<u8>> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let mut stop = false;
        match line {
            Line::Empty => {
                if n == 0 {
                    return Err(Fail::temp(
                        "Uh-oh: first line of .qmail file is blank. (#4.2.1)",
                    ));
                }
            }
            Line::Comment | Line::Plus => {}
            Line::List => forwardonly = true,
            Line::Mbox(path) | Line::Maildir(path) => {
                report.counts.files += 1;
                if forwardonly {
                    return Err(Fail::temp(
                        "Uh-oh: .qmail has file delivery but has x bit set. (#4.7.0)",
                    ));
                }
                let maildir = matches!(line, Line::Maildir(_));
                if !a.doit {
                    say(if maildir { "maildir " } else { "mbox " }, path);
                } else if maildir {
                    crate::maildir::deliver(path, msg.rewound()?, &rpline, &dtline)?;
                } else {
                    crate::mbox::deliver(path, msg.rewound()?, &ufline, &rpline, &dtline)?;
                }
            }
            Line::Program(command) => {
                report.counts.programs += 1;
                if forwardonly {
                    return Err(Fail::temp(
                        "Uh-oh: .qmail has prog delivery but has x bit set. (#4.7.0)",
                    ));
                }
                if !a.doit {
                    say("program ", command);
                } else {
                    msg.rewound()?;
                    match program::run(command, &env)? {
                        Outcome::Delivered => {}
                        Outcome::DeliveredStop => stop = true,
                        Outcome::Bounce => return Err(Fail::silent(Exit::PERM)),
                        Outcome::Defer => return Err(Fail::silent(Exit::TEMP)),
                    }
                }
            }
            Line::Forward(addr) => {
                report.counts.forwards += 1;
                if a.doit {
                    recips.push(addr.clone());
                } else {
                    say("forward ", addr);
                }
            }
        }
        if stop {
            break;
        }
    }

    if a.doit && !recips.is_empty() {
        report.qp = Some(forward(&mut msg, &dtline, &fwd_sender, &recips)?);
    }
    Ok(report)
}

/// The whole program: arguments, delivery, report, exit code.
pub fn main() -> Exit {
    let result = parse_args(std::env::args_os().skip(1)).and_then(|a| deliver(&a));
    match result {
        Ok(report) => {
            let mut out = io::stdout().lock();
            let _ = out.write_all(&report.text());
            let _ = out.flush();
            Exit::OK
        }
        Err(f) => f.report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, Fail> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments_as_qmail_lspawn_gives_them() {
        let a = args(&[
            "--",
            "joe",
            "/home/joe",
            "joe-x",
            "-",
            "x",
            "a.example",
            "s@b",
            "./Mailbox\n",
        ])
        .unwrap();
        assert!(a.doit);
        assert_eq!(a.ext, b"x");
        assert_eq!(a.defaultdelivery, b"./Mailbox\n");
        let a = args(&["-n", "joe", "/h", "joe", "", "", "a", "", ""]).unwrap();
        assert!(!a.doit);
        assert_eq!(a.dash, b"");
        // Options stop at the first operand: a later "-n" is an operand.
        let a = args(&["joe", "/h", "-n", "-", "-N", "a", "", "x"]).unwrap();
        assert!(a.doit);
        assert_eq!(a.local, b"-n");
        assert_eq!(a.ext, b"-N");
        for bad in [
            &["joe"][..],
            &["joe", "h", "l", "", "", "d", "", "x"],
            &["-x", "joe", "/h", "l", "", "", "d", "", "x"],
            &["joe", "/h", "l", "", "", "d", "", "x", "extra"],
        ] {
            assert_eq!(args(bad).unwrap_err().code, Exit::PERM);
        }
    }

    #[test]
    fn ext_and_host_parts() {
        assert_eq!(after_dash(b"a-b-c"), b"b-c");
        assert_eq!(after_dash(b"abc"), b"");
        let h = b"mail.a.b.example";
        let i2 = before_last_dot(h, h.len());
        assert_eq!(&h[..i2], b"mail.a.b");
        let i3 = before_last_dot(h, i2);
        assert_eq!(&h[..i3], b"mail.a");
        assert_eq!(&h[..before_last_dot(h, i3)], b"mail");
        assert_eq!(before_last_dot(b"localhost", 9), 9);
    }

    #[test]
    fn report_text() {
        let r = Report {
            counts: Counts {
                files: 1,
                forwards: 2,
                programs: 3,
            },
            qp: Some(77),
        };
        assert_eq!(r.text(), b"did 1+2+3\nqp 77\n");
        assert_eq!(Report::default().text(), b"did 0+0+0\n");
    }

    #[test]
    fn capped_lines() {
        let data = b"short\nthis line is long\n\nend";
        let mut r = io::BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_capped(&mut r, &mut buf, 8).unwrap(), (6, true));
        assert_eq!(buf, b"short\n");
        assert_eq!(read_line_capped(&mut r, &mut buf, 8).unwrap(), (18, true));
        assert_eq!(buf, b"this lin");
        assert_eq!(read_line_capped(&mut r, &mut buf, 8).unwrap(), (1, true));
        assert_eq!(read_line_capped(&mut r, &mut buf, 8).unwrap(), (3, false));
        assert_eq!(read_line_capped(&mut r, &mut buf, 8).unwrap(), (0, false));
    }
}
