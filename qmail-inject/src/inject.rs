//! qmail-inject: complete a message's header and hand it to qmail-queue
//! (qmail-inject(8), qmail-header(5)).
//!
//! The work is split the way the data flows:
//!
//! * [`Config`]: everything decided before the message is read — the environment
//!   (`QMAILINJECT`, user and host names), the control files and the clock;
//! * [`parse_args`]: the options and the recipient arguments;
//! * [`Injector`]: one header field at a time, rewriting addresses, collecting
//!   recipients and remembering what was seen; then the fields to add;
//! * [`run`]: reads standard input, writes the message to qmail-queue (or standard
//!   output with `-n`), then the envelope, and maps the outcome to an exit code.

use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use control::CaseSet;

use crate::rewrite::Rewriter;
use control::rfc822::Field;
use control::rfc822::{self, HeaderBody, Limits};
use control::rfc822::{Kind, Token};

use control::{Exit, ExitError};

/// Header fields are folded at this width.
const LINELEN: usize = 80;

/// A failure with its exit code (permanent or temporary) and message text (printed after
/// `qmail-inject: fatal: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    pub code: Exit,
    pub msg: Vec<u8>,
    /// Printed as it is, without `qmail-inject: fatal: ` (getopt's complaints).
    pub bare: bool,
}

impl Fatal {
    fn perm(msg: impl Into<Vec<u8>>) -> Fatal {
        Fatal {
            code: Exit::PERM,
            msg: msg.into(),
            bare: false,
        }
    }
    fn temp(msg: impl Into<Vec<u8>>) -> Fatal {
        Fatal {
            code: Exit::TEMP,
            msg: msg.into(),
            bare: false,
        }
    }
    /// A complaint about the command line, a permanent failure.
    fn usage(msg: impl Into<Vec<u8>>) -> Fatal {
        Fatal {
            code: Exit::PERM,
            msg: msg.into(),
            bare: true,
        }
    }
    /// netqmail's doordie: a line that does not parse.
    fn unparsable(line: &[u8]) -> Fatal {
        let mut m = b"unable to parse this line:\n".to_vec();
        m.extend_from_slice(line);
        Fatal::perm(m)
    }
    fn read(e: &io::Error) -> Fatal {
        Fatal::temp(format!("read error: {e}"))
    }
    /// The whole line for standard error.
    pub fn line(&self, prog: &str) -> Vec<u8> {
        let mut v = if self.bare {
            Vec::new()
        } else {
            format!("{prog}: fatal: ").into_bytes()
        };
        v.extend_from_slice(&self.msg);
        if v.last() != Some(&b'\n') {
            v.push(b'\n');
        }
        v
    }
}

impl ExitError for Fatal {
    fn exit(&self) -> Exit {
        self.code
    }
}

/// The letters of `QMAILINJECT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `c`: `From: user@host (Name)` instead of `From: "Name" <user@host>`.
    pub name_comment: bool,
    /// `s`: ignore (and delete) an incoming Return-Path.
    pub delete_sender: bool,
    /// `f`: delete an incoming From.
    pub delete_from: bool,
    /// `i`: delete an incoming Message-ID.
    pub delete_messid: bool,
    /// `r`: per-recipient VERP (`-@[]` after the sender).
    pub hack_recip: bool,
    /// `m`: per-message VERP (`-TIME.PID` after the sender's user name).
    pub hack_mess: bool,
}

impl Flags {
    /// Reads the letters; others are ignored.
    pub fn parse(s: &[u8]) -> Flags {
        let mut f = Flags::default();
        for &c in s {
            match c {
                b'c' => f.name_comment = true,
                b's' => f.delete_sender = true,
                b'f' => f.delete_from = true,
                b'i' => f.delete_messid = true,
                b'r' => f.hack_recip = true,
                b'm' => f.hack_mess = true,
                _ => {}
            }
        }
        f
    }
}

/// Everything qmail-inject decides before reading the message.
#[derive(Debug, Clone)]
pub struct Config {
    pub flags: Flags,
    /// Host for From (`QMAILHOST`, `MAILHOST`); none: the default host is added later.
    pub mailhost: Option<Vec<u8>>,
    /// Host for the envelope sender (`QMAILSHOST`, else `mailhost`).
    pub mailrhost: Option<Vec<u8>>,
    /// User for From (`QMAILUSER`, `MAILUSER`, `USER`, `LOGNAME`, else `anonymous`).
    pub mailuser: Vec<u8>,
    /// User for the envelope sender (`QMAILSUSER`, else `mailuser`).
    pub mailruser: Vec<u8>,
    /// Personal name (`QMAILNAME`, `MAILNAME`, `NAME`).
    pub fullname: Option<Vec<u8>>,
    /// Mailing lists from `$QMAILMFTFILE`.
    pub mft: Option<CaseSet>,
    pub rewriter: Rewriter,
    /// Host name for Message-IDs.
    pub idhost: Vec<u8>,
    /// Seconds since the epoch when qmail-inject started.
    pub starttime: u64,
    /// This process's id (Message-ID, the `m` VERP).
    pub pid: u32,
    pub limits: Limits,
}

/// Looks up an environment variable as bytes.
pub type EnvFn<'a> = &'a dyn Fn(&str) -> Option<Vec<u8>>;

/// The process environment as an [`EnvFn`].
pub fn process_env(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(OsString::into_vec)
}

fn first_env(env: EnvFn<'_>, names: &[&str]) -> Option<Vec<u8>> {
    names.iter().find_map(|n| env(n))
}

impl Config {
    /// Builds the configuration from the environment and the control files of `home`
    /// (netqmail's order: `QMAILINJECT`, user and host names, `$QMAILMFTFILE`, then
    /// `control/me`, `defaultdomain`, `defaulthost`, `plusdomain`, `idhost`, each
    /// overridden by its `QMAIL...` variable).
    pub fn load(env: EnvFn<'_>, home: &Path, starttime: u64, pid: u32) -> Result<Config, Fatal> {
        let flags = Flags::parse(&env("QMAILINJECT").unwrap_or_default());
        let mailhost = first_env(env, &["QMAILHOST", "MAILHOST"]);
        let mailrhost = env("QMAILSHOST").or_else(|| mailhost.clone());
        let mailuser = first_env(env, &["QMAILUSER", "MAILUSER", "USER", "LOGNAME"])
            .unwrap_or_else(|| b"anonymous".to_vec());
        let mailruser = env("QMAILSUSER").unwrap_or_else(|| mailuser.clone());
        let fullname = first_env(env, &["QMAILNAME", "MAILNAME", "NAME"]);

        let mft = match env("QMAILMFTFILE") {
            None => None,
            Some(path) => {
                let path = Path::new(std::ffi::OsStr::from_bytes(&path));
                match control::read_lines(path) {
                    Ok(None) => None,
                    Ok(Some(lines)) => Some(CaseSet::new(lines)),
                    Err(e) => {
                        return Err(Fatal::temp(format!(
                            "read error: unable to read {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
        };

        let unreadable = |name: &str, e: io::Error| {
            Fatal::temp(format!("read error: unable to read control/{name}: {e}"))
        };
        let controls = control::Controls::open(home).map_err(|e| unreadable("me", e))?;
        let get = |name: &str, var: &str| -> Result<Vec<u8>, Fatal> {
            let v = controls
                .line_or(name, true, Some(name.as_bytes()))
                .map_err(|e| unreadable(name, e))?
                .unwrap_or_else(|| name.as_bytes().to_vec());
            Ok(env(var).unwrap_or(v))
        };
        let defaultdomain = get("defaultdomain", "QMAILDEFAULTDOMAIN")?;
        let defaulthost = get("defaulthost", "QMAILDEFAULTHOST")?;
        let plusdomain = get("plusdomain", "QMAILPLUSDOMAIN")?;
        let idhost = get("idhost", "QMAILIDHOST")?;
        let rewriter = Rewriter::new(&defaulthost, &defaultdomain, &plusdomain)
            .map_err(|line| Fatal::unparsable(&line))?;

        Ok(Config {
            flags,
            mailhost,
            mailrhost,
            mailuser,
            mailruser,
            fullname,
            mft,
            rewriter,
            idhost,
            starttime,
            pid,
            limits: Limits::default(),
        })
    }
}

/// Where recipients come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `-A`: the arguments, or the header when there are none.
    Default,
    /// `-a`: the arguments only.
    Args,
    /// `-h`: the header only.
    Header,
    /// `-H`: both.
    Both,
}

/// The command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub strategy: Strategy,
    /// False with `-n`: print instead of queueing.
    pub queue: bool,
    /// `-f`, already completed.
    pub sender: Option<Vec<u8>>,
    /// Recipient arguments, completed (used unless the strategy is `-h`).
    pub recipients: Vec<Vec<u8>>,
}

/// A C string's worth of `s`: qmail passes envelope addresses as NUL-terminated
/// strings, so anything from a NUL on is not part of the address.
fn cstr(s: &[u8]) -> &[u8] {
    s.iter().position(|&c| c == 0).map_or(s, |i| &s[..i])
}

/// Parses the command line (`aAhHnNf:`, netqmail's getopt rules) and completes `-f` and
/// the recipient arguments; `prog` names the program in getopt's complaints.
pub fn parse_args(prog: &[u8], args: Vec<OsString>, rw: &Rewriter) -> Result<Options, Fatal> {
    let mut strategy = Strategy::Default;
    let mut queue = true;
    let mut sender = None;
    let mut g = control::Getopt::new(args, "aAhHnNf:");
    for opt in g.by_ref() {
        let opt = opt.map_err(|e| Fatal::usage(e.complaint(prog)))?;
        match (opt.letter, opt.arg) {
            (b'a', _) => strategy = Strategy::Args,
            (b'A', _) => strategy = Strategy::Default,
            (b'h', _) => strategy = Strategy::Header,
            (b'H', _) => strategy = Strategy::Both,
            (b'n', _) => queue = false,
            (b'N', _) => queue = true,
            (_, v) => sender = Some(complete_sender(v.unwrap_or_default().as_bytes(), rw)?),
        }
    }
    let rest = g.operands();
    if strategy == Strategy::Default {
        strategy = if rest.is_empty() {
            Strategy::Header
        } else {
            Strategy::Args
        };
    }
    let mut recipients = Vec::new();
    if strategy != Strategy::Header {
        for r in &rest {
            recipients.push(complete_recipient(r.as_bytes(), rw)?);
        }
    }
    Ok(Options {
        strategy,
        queue,
        sender,
        recipients,
    })
}

/// `-f`: quoted, cut into tokens and completed.
pub fn complete_sender(arg: &[u8], rw: &Rewriter) -> Result<Vec<u8>, Fatal> {
    let q = control::quote2(cstr(arg));
    let mut t = rfc822::parse_tokens(&q).map_err(|_| Fatal::unparsable(&q))?;
    rw.rewrite(&mut t);
    Ok(rfc822::unquote_tokens(&t))
}

/// A recipient argument: quoted, cut into tokens and completed.
pub fn complete_recipient(arg: &[u8], rw: &Rewriter) -> Result<Vec<u8>, Fatal> {
    let arg = cstr(arg);
    let q = control::quote2(arg);
    let mut t = rfc822::parse_tokens(&q).map_err(|_| {
        let mut m = b"unable to parse address: ".to_vec();
        m.extend_from_slice(arg);
        Fatal::perm(m)
    })?;
    rw.rewrite(&mut t);
    Ok(rfc822::unquote_tokens(&t))
}

/// The header being processed.
#[derive(Debug)]
pub struct Injector<'a> {
    cfg: &'a Config,
    /// The envelope sender once known (`-f`, Return-Path, or the default).
    sender: Option<Vec<u8>>,
    seen: Vec<Field>,
    saved: Vec<Vec<u8>>,
    /// Bytes in `saved` (completed addresses can make a field longer than it came in).
    saved_bytes: usize,
    /// To, Cc, Bcc, Apparently-To.
    hr: Vec<Vec<u8>>,
    /// To and Cc (for Mail-Followup-To).
    tocc: Vec<Vec<u8>>,
    /// Resent-To, Resent-Cc, Resent-Bcc.
    hrr: Vec<Vec<u8>>,
    /// Recipient arguments.
    recips: Vec<Vec<u8>>,
    strategy: Strategy,
    resent: bool,
}

/// What the header became: the bytes to write before the body, and the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Added fields followed by the kept ones.
    pub header: Vec<u8>,
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
}

fn too_many() -> Fatal {
    Fatal::perm("too many recipients")
}

impl<'a> Injector<'a> {
    /// Starts with the options already parsed.
    pub fn new(cfg: &'a Config, opts: &Options) -> Result<Injector<'a>, Fatal> {
        if opts.recipients.len() > cfg.limits.recipients {
            return Err(too_many());
        }
        Ok(Injector {
            cfg,
            sender: opts.sender.clone(),
            seen: Vec::new(),
            saved: Vec::new(),
            saved_bytes: 0,
            hr: Vec::new(),
            tocc: Vec::new(),
            hrr: Vec::new(),
            recips: opts.recipients.clone(),
            strategy: opts.strategy,
            resent: false,
        })
    }

    fn seen(&self, f: Field) -> bool {
        self.seen.contains(&f)
    }

    fn count(&self) -> usize {
        self.hr.len() + self.hrr.len() + self.recips.len()
    }

    /// Processes one header field (with its newline).
    pub fn field(&mut self, h: Vec<u8>) -> Result<(), Fatal> {
        let kind = rfc822::known_field(&h);
        let flags = self.cfg.flags;
        match kind {
            Some(Field::From) if flags.delete_from => return Ok(()),
            Some(Field::MessageId) if flags.delete_messid => return Ok(()),
            Some(Field::ReturnPath) if flags.delete_sender => return Ok(()),
            Some(k) => {
                if !self.seen.contains(&k) {
                    self.seen.push(k);
                }
            }
            None => {
                if !rfc822::valid_field(&h) {
                    let mut m = b"invalid header field: ".to_vec();
                    m.extend_from_slice(&h);
                    return Err(Fatal::perm(m));
                }
            }
        }

        #[derive(Clone, Copy, PartialEq)]
        enum Rw {
            ToCc,
            Hr,
            Hrr,
            Return,
            Sender,
        }
        let rw = match kind {
            Some(Field::To | Field::Cc) => Some(Rw::ToCc),
            Some(Field::Bcc | Field::ApparentlyTo) => Some(Rw::Hr),
            Some(Field::ResentTo | Field::ResentCc | Field::ResentBcc) => Some(Rw::Hrr),
            Some(Field::ReturnPath) => Some(Rw::Return),
            Some(
                Field::Sender
                | Field::From
                | Field::ReplyTo
                | Field::ReturnReceiptTo
                | Field::ErrorsTo
                | Field::ResentSender
                | Field::ResentFrom
                | Field::ResentReplyTo,
            ) => Some(Rw::Sender),
            _ => None,
        };

        let mut h = h;
        if let Some(rw) = rw {
            let tokens = rfc822::parse_tokens(&h).map_err(|_| Fatal::unparsable(&h))?;
            let limit = self.cfg.limits.recipients;
            let rewriter = &self.cfg.rewriter;
            let hack_recip = flags.hack_recip;
            let mut over = false;
            let mut total = self.count();
            let (hr, tocc, hrr, sender) = (
                &mut self.hr,
                &mut self.tocc,
                &mut self.hrr,
                &mut self.sender,
            );
            let out = rfc822::addrlist(&tokens, &mut |addr: &mut Vec<Token>| {
                rewriter.rewrite(addr);
                let flat = || rfc822::unquote_tokens(addr);
                match rw {
                    Rw::ToCc => {
                        hr.push(flat());
                        tocc.push(flat());
                        total += 1;
                    }
                    Rw::Hr => {
                        hr.push(flat());
                        total += 1;
                    }
                    Rw::Hrr => {
                        hrr.push(flat());
                        total += 1;
                    }
                    Rw::Return => {
                        if sender.is_none() {
                            let mut s = flat();
                            if hack_recip {
                                s.extend_from_slice(b"-@[]");
                            }
                            *sender = Some(s);
                        }
                    }
                    Rw::Sender => {}
                }
                if total > limit {
                    over = true;
                    hr.clear();
                    tocc.clear();
                    hrr.clear();
                }
            })
            .map_err(|_| Fatal::unparsable(&h))?;
            if over {
                return Err(too_many());
            }
            h = rfc822::unparse_tokens(&out, LINELEN);
        }

        match kind {
            Some(Field::Bcc | Field::ResentBcc | Field::ReturnPath | Field::ContentLength) => {}
            _ => {
                self.saved_bytes += h.len();
                if self.saved_bytes > self.cfg.limits.header {
                    return Err(header_error(
                        rfc822::HeaderError::HeaderTooLong,
                        &self.cfg.limits,
                    ));
                }
                self.saved.push(h);
            }
        }
        Ok(())
    }

    /// The From field qmail-inject adds (netqmail's defaultfrommake).
    fn default_from(&self) -> Result<Vec<u8>, Fatal> {
        let cfg = self.cfg;
        let mut t = vec![
            Token::with_text(Kind::Atom, b"From"),
            Token::special(Kind::Colon),
        ];
        let name = cfg.fullname.as_deref();
        let angle = name.is_some() && !cfg.flags.name_comment;
        if let (Some(n), true) = (name, angle) {
            t.push(Token::with_text(Kind::Quote, n));
            t.push(Token::special(Kind::Left));
        }
        let user_kind = if control::quote_needed(&cfg.mailuser) {
            Kind::Quote
        } else {
            Kind::Atom
        };
        t.push(Token::with_text(user_kind, &cfg.mailuser));
        if let Some(h) = &cfg.mailhost {
            t.push(Token::special(Kind::At));
            t.push(Token::with_text(Kind::Atom, h));
        }
        if angle {
            t.push(Token::special(Kind::Right));
        }
        if let (Some(n), true) = (name, cfg.flags.name_comment) {
            t.push(Token::with_text(Kind::Comment, n));
        }
        let text = rfc822::unparse_tokens(&t, LINELEN);
        let t = rfc822::parse_tokens(&text).map_err(|_| Fatal::unparsable(&text))?;
        let out = rfc822::addrlist(&t, &mut |a| cfg.rewriter.rewrite(a))
            .map_err(|_| Fatal::unparsable(&text))?;
        Ok(rfc822::unparse_tokens(&out, LINELEN))
    }

    /// The envelope sender when neither `-f` nor Return-Path gave one (netqmail's
    /// dodefaultreturnpath).
    fn default_return_path(&mut self) -> Result<(), Fatal> {
        let cfg = self.cfg;
        let mut user = cfg.mailruser.clone();
        if cfg.flags.hack_mess {
            user.extend_from_slice(format!("-{}.{}", cfg.starttime, cfg.pid).as_bytes());
        }
        if cfg.flags.hack_recip {
            user.push(b'-');
        }
        let mut t = vec![
            Token::with_text(Kind::Atom, b"Return-Path"),
            Token::special(Kind::Colon),
            Token::with_text(Kind::Quote, &user),
        ];
        if let Some(h) = &cfg.mailrhost {
            t.push(Token::special(Kind::At));
            t.push(Token::with_text(Kind::Atom, h));
        }
        let text = rfc822::unparse_tokens(&t, LINELEN);
        let t = rfc822::parse_tokens(&text).map_err(|_| Fatal::unparsable(&text))?;
        let sender = &mut self.sender;
        rfc822::addrlist(&t, &mut |a| {
            cfg.rewriter.rewrite(a);
            if sender.is_none() {
                let mut s = rfc822::unquote_tokens(a);
                if cfg.flags.hack_recip {
                    s.extend_from_slice(b"-@[]");
                }
                *sender = Some(s);
            }
        })
        .map_err(|_| Fatal::unparsable(&text))?;
        Ok(())
    }

    fn date_field(&self) -> Vec<u8> {
        format!("Date: {}\n", control::date822(self.cfg.starttime)).into_bytes()
    }

    fn msgid_field(&self) -> Vec<u8> {
        let t = control::tm(self.cfg.starttime);
        let mut v = format!(
            "Message-ID: <{}{:02}{:02}{:02}{:02}{:02}.{}.qmail@",
            t.year, t.month, t.day, t.hour, t.min, t.sec, self.cfg.pid
        )
        .into_bytes();
        v.extend_from_slice(&self.cfg.idhost);
        v.extend_from_slice(b">\n");
        v
    }

    fn mail_followup_to(&self) -> Option<Vec<u8>> {
        let lists = self.cfg.mft.as_ref()?;
        if self.seen(Field::MailFollowupTo) {
            return None;
        }
        if !self.tocc.iter().any(|a| lists.contains(a)) {
            return None;
        }
        let mut v = b"Mail-Followup-To: ".to_vec();
        for (i, a) in self.tocc.iter().rev().enumerate() {
            if i > 0 {
                v.extend_from_slice(b",\n  ");
            }
            v.extend_from_slice(&control::quote2(cstr(a)));
        }
        v.push(b'\n');
        Some(v)
    }

    /// The header is complete: decides the sender and the fields to add. With `print`
    /// (`-n`) a Return-Path field showing the sender comes first.
    pub fn finish(mut self, print: bool) -> Result<Finished, Fatal> {
        use Field::*;
        self.resent = [
            ResentSender,
            ResentFrom,
            ResentReplyTo,
            ResentTo,
            ResentCc,
            ResentBcc,
            ResentDate,
            ResentMessageId,
        ]
        .iter()
        .any(|&f| self.seen(f));
        if self.sender.is_none() {
            self.default_return_path()?;
        }
        let sender = self.sender.clone().unwrap_or_default();
        let mut h = Vec::new();
        if print {
            h.extend_from_slice(b"Return-Path: <");
            h.extend_from_slice(&control::quote2(cstr(&sender)));
            h.extend_from_slice(b">\n");
        }
        if self.resent {
            if !self.seen(ResentDate) {
                h.extend_from_slice(b"Resent-");
                h.extend_from_slice(&self.date_field());
            }
            if !self.seen(ResentMessageId) {
                h.extend_from_slice(b"Resent-");
                h.extend_from_slice(&self.msgid_field());
            }
            if !self.seen(ResentFrom) {
                h.extend_from_slice(b"Resent-");
                h.extend_from_slice(&self.default_from()?);
            }
            if !self.seen(ResentTo) && !self.seen(ResentCc) {
                h.extend_from_slice(b"Resent-Cc: recipient list not shown: ;\n");
            }
        } else {
            if !self.seen(Date) {
                h.extend_from_slice(&self.date_field());
            }
            if !self.seen(MessageId) {
                h.extend_from_slice(&self.msgid_field());
            }
            if !self.seen(From) {
                h.extend_from_slice(&self.default_from()?);
            }
            if !self.seen(To) && !self.seen(Cc) {
                h.extend_from_slice(b"Cc: recipient list not shown: ;\n");
            }
            if let Some(m) = self.mail_followup_to() {
                h.extend_from_slice(&m);
            }
        }
        for s in &self.saved {
            h.extend_from_slice(s);
        }

        let mut recipients = std::mem::take(&mut self.recips);
        if self.strategy != Strategy::Args {
            if self.resent {
                recipients.append(&mut self.hrr);
            } else {
                recipients.append(&mut self.hr);
            }
        }
        Ok(Finished {
            header: h,
            sender: cstr(&sender).to_vec(),
            recipients: recipients.iter().map(|r| cstr(r).to_vec()).collect(),
        })
    }
}

/// Where the message goes.
pub trait Sink {
    /// Appends message bytes.
    fn put(&mut self, data: &[u8]) -> io::Result<()>;
}

impl Sink for qmail_queue::QueueClient {
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        qmail_queue::QueueClient::put(self, data);
        Ok(())
    }
}

impl<W: Write> Sink for io::BufWriter<W> {
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_all(data)
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.extend_from_slice(data);
        Ok(())
    }
}

fn write_error(e: &io::Error) -> Fatal {
    Fatal::temp(format!("unable to write output: {e}"))
}

fn header_error(e: rfc822::HeaderError, limits: &Limits) -> Fatal {
    match e {
        rfc822::HeaderError::Read(e) => Fatal::read(&e),
        rfc822::HeaderError::Write(e) => write_error(&e),
        rfc822::HeaderError::FieldTooLong => {
            Fatal::perm(format!("header field longer than {} bytes", limits.field))
        }
        rfc822::HeaderError::HeaderTooLong => Fatal::perm(format!(
            "message header longer than {} bytes",
            limits.header
        )),
    }
}

/// Reads the message from `input`, opens the sink with `open` once the header is
/// complete, writes the message to it, and returns the sink with the envelope.
pub fn process<R: BufRead, S: Sink>(
    cfg: &Config,
    opts: &Options,
    input: R,
    open: impl FnOnce() -> Result<S, Fatal>,
) -> Result<(S, Finished), Fatal> {
    let mut inj = Injector::new(cfg, opts)?;
    let mut hb = HeaderBody::new(input, cfg.limits);
    while let Some(f) = hb.next_field().map_err(|e| header_error(e, &cfg.limits))? {
        inj.field(f)?;
    }
    let fin = inj.finish(!opts.queue)?;
    let mut sink = open()?;
    sink.put(&fin.header).map_err(|e| write_error(&e))?;
    hb.copy_body(&mut |b| sink.put(b))
        .map_err(|e| header_error(e, &cfg.limits))?;
    Ok((sink, fin))
}

/// Runs qmail-inject with the arguments after the program name; returns the exit code
/// after printing any error.
pub fn main() -> Exit {
    // Writes to a closed pipe must fail, not kill the process: Rust already ignores
    // SIGPIPE, as netqmail's sig_pipeignore does.
    match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => Exit::OK,
        Err(f) => {
            let _ = io::stderr().write_all(&f.line("qmail-inject"));
            f.exit()
        }
    }
}

/// qmail-inject with the process's environment, standard input and output.
pub fn run(args: Vec<OsString>) -> Result<(), Fatal> {
    let home = control::qmail_home();
    let starttime = control::now();
    let cfg = Config::load(&process_env, &home, starttime, std::process::id())?;
    std::env::set_current_dir(&home).map_err(|e| {
        Fatal::temp(format!(
            "unable to switch to qmail home directory {}: {e}",
            home.display()
        ))
    })?;
    let opts = parse_args(&control::env_progname(), args, &cfg.rewriter)?;
    let stdin = io::stdin().lock();
    if !opts.queue {
        let (mut out, _) = process(&cfg, &opts, stdin, || {
            Ok(io::BufWriter::new(io::stdout().lock()))
        })?;
        return out.flush().map_err(|e| write_error(&e));
    }
    let (mut qq, fin) = process(&cfg, &opts, stdin, || {
        qmail_queue::QueueClient::open_default(&home)
            .map_err(|_| Fatal::temp("unable to run qmail-queue"))
    })?;
    qq.from(&fin.sender);
    for r in &fin.recipients {
        qq.to(r);
    }
    qq.close().map_err(|e| {
        if e.permanent {
            Fatal::perm(e.text.into_owned())
        } else {
            Fatal::temp(e.text.into_owned())
        }
    })
}

#[cfg(test)]
mod tests;
