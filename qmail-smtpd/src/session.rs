//! The SMTP dialogue as a state machine without I/O: bytes from the client go in
//! ([`Session::feed`]), reply bytes come out ([`Session::take_output`]), and the message
//! goes to a [`Backend`] (qmail-queue in the real program, a recorder in tests).
//!
//! The replies, their order and the state changes are netqmail 1.06's qmail-smtpd. The
//! differences are bounds netqmail does not have: a command line holds at most
//! [`MAX_LINE`] bytes (a longer one is answered with 500 when its LF arrives) and a
//! message has at most [`MAX_RECIPIENTS`] recipients (more get 452).
//!
//! Extension points for STARTTLS and AUTH: [`Session::ehlo_keywords`] is the one place the
//! EHLO capabilities are listed, [`Verb`](crate::command::Verb) the one table of commands,
//! [`received::Facts::protocol`] names the protocol, and [`Session::feed`] stops consuming
//! input when the session wants the transport to change (today only when it ends).

use crate::addr;
use crate::blast::{Blast, Progress};
use crate::command::{self, Verb};
use crate::config::{Config, REPLY_CONTROLS};
use crate::received::{self, Facts};
use qmail_queue::QueueError;
use std::io;

/// The longest command line accepted, in bytes before its LF (CR included). netqmail has
/// no limit; RFC 5321 asks for 512, RFC 4954 allows AUTH lines of 12288.
pub const MAX_LINE: usize = 16384;
/// The most recipients one message may have. netqmail has no limit.
pub const MAX_RECIPIENTS: usize = 10000;
/// Messages with this many Received or Delivered-To lines are refused as looping.
pub const MAX_HOPS: u32 = 100;

/// Replies with a fixed text.
pub mod reply {
    pub const OK: &str = "250 ok\r\n";
    pub const FLUSHED: &str = "250 flushed\r\n";
    pub const GO_AHEAD: &str = "354 go ahead\r\n";
    pub const VRFY: &str = "252 send some mail, i'll try my best\r\n";
    pub const HELP: &str = "214 netqmail home page: http://qmail.org/netqmail\r\n";
    pub const UNIMPLEMENTED: &str = "502 unimplemented (#5.5.1)\r\n";
    pub const SYNTAX: &str = "555 syntax error (#5.5.4)\r\n";
    pub const WANT_MAIL: &str = "503 MAIL first (#5.5.1)\r\n";
    pub const WANT_RCPT: &str = "503 RCPT first (#5.5.1)\r\n";
    pub const BADMAILFROM: &str =
        "553 sorry, your envelope sender is in my badmailfrom list (#5.7.1)\r\n";
    pub const NOGATEWAY: &str =
        "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n";
    pub const QQT: &str = "451 qqt failure (#4.3.0)\r\n";
    pub const HOPS: &str = "554 too many hops, this message is looping (#5.4.6)\r\n";
    pub const DATABYTES: &str =
        "552 sorry, that message size exceeds my databytes limit (#5.3.4)\r\n";
    pub const STRAY_NEWLINE: &str = "451 See http://pobox.com/~djb/docs/smtplf.html.\r\n";
    pub const TIMEOUT: &str = "451 timeout (#4.4.2)\r\n";
    pub const NOMEM: &str = "421 out of memory (#4.3.0)\r\n";
    /// rqmail only: a command line longer than [`super::MAX_LINE`].
    pub const LINE_TOO_LONG: &str = "500 command line too long (#5.5.2)\r\n";
    /// rqmail only: more than [`super::MAX_RECIPIENTS`] recipients.
    pub const TOO_MANY_RCPTS: &str = "452 too many recipients (#4.5.3)\r\n";
}

/// One message being handed over (qmail-queue's two descriptors).
pub trait Message {
    /// The process id reported as `qp` (0 when unknown).
    fn pid(&self) -> u32;
    /// Appends message bytes.
    fn put(&mut self, data: &[u8]);
    /// Marks the message as failed: it will not be queued.
    fn fail(&mut self);
    /// Ends the message and gives the envelope sender.
    fn from(&mut self, sender: &[u8]);
    /// Adds an envelope recipient.
    fn to(&mut self, recipient: &[u8]);
    /// Finishes and returns the verdict.
    fn close(self) -> Result<(), QueueError>;
    /// Gives up on the message because the connection ends mid-DATA. The default drops it.
    fn abandon(self)
    where
        Self: Sized,
    {
    }
}

/// Where messages go and what time it is.
pub trait Backend {
    type Message: Message;
    /// Starts a message; an error is netqmail's "qqt failure".
    fn open_message(&mut self) -> io::Result<Self::Message>;
    /// Seconds since the epoch.
    fn now(&mut self) -> u64;
}

impl Message for qmail_queue::QueueClient {
    fn pid(&self) -> u32 {
        qmail_queue::QueueClient::pid(self)
    }
    fn put(&mut self, data: &[u8]) {
        qmail_queue::QueueClient::put(self, data);
    }
    fn fail(&mut self) {
        qmail_queue::QueueClient::fail(self);
    }
    fn from(&mut self, sender: &[u8]) {
        qmail_queue::QueueClient::from(self, sender);
    }
    fn to(&mut self, recipient: &[u8]) {
        qmail_queue::QueueClient::to(self, recipient);
    }
    fn close(self) -> Result<(), QueueError> {
        qmail_queue::QueueClient::close(self)
    }
    /// Leaves qmail-queue to find the end of its input when this process exits, as
    /// netqmail does, instead of waiting for it (a stuck QMAILQUEUE program must not keep
    /// the connection's process alive).
    fn abandon(self) {
        std::mem::forget(self);
    }
}

/// How a session ended: the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// After QUIT.
    Quit,
    /// End of input, timeout, a fatal error or a reply that could not be written.
    Failure,
}

impl Exit {
    /// The exit code: 0 after QUIT, 1 otherwise (as netqmail).
    pub fn code(self) -> i32 {
        match self {
            Exit::Quit => 0,
            Exit::Failure => 1,
        }
    }
}

struct InData<M> {
    msg: M,
    blast: Blast,
    qp: u32,
    failed: bool,
}

/// One SMTP session.
pub struct Session<B: Backend> {
    cfg: Config,
    backend: B,
    out: Vec<u8>,
    line: Vec<u8>,
    line_too_long: bool,
    /// The HELO argument when it differs from the remote host name (netqmail's fakehelo).
    fakehelo: Option<Vec<u8>>,
    seenmail: bool,
    /// The sender is in badmailfrom: every RCPT gets 553.
    flagbarf: bool,
    mailfrom: Vec<u8>,
    rcptto: Vec<Vec<u8>>,
    data: Option<InData<B::Message>>,
    scratch: Vec<u8>,
    finished: Option<Exit>,
}

impl<B: Backend> std::fmt::Debug for Session<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("seenmail", &self.seenmail)
            .field("rcpts", &self.rcptto.len())
            .field("in_data", &self.data.is_some())
            .field("finished", &self.finished)
            .finish()
    }
}

/// The largest piece of DATA input handled in one step (bounds the scratch buffer).
const DATA_STEP: usize = 64 * 1024;

impl<B: Backend> Session<B> {
    /// Starts a session; the 220 greeting is already in the output.
    pub fn new(cfg: Config, backend: B) -> Session<B> {
        let mut s = Session {
            cfg,
            backend,
            out: Vec::with_capacity(512),
            line: Vec::new(),
            line_too_long: false,
            fakehelo: None,
            seenmail: false,
            flagbarf: false,
            mailfrom: Vec::new(),
            rcptto: Vec::new(),
            data: None,
            scratch: Vec::new(),
            finished: None,
        };
        s.greet("220 ");
        s.out.extend_from_slice(b" ESMTP\r\n");
        s
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Seconds to wait for each read or write.
    pub fn timeout(&self) -> u64 {
        self.cfg.timeout
    }

    /// `Some` once the session is over; the output may still hold a last reply.
    pub fn finished(&self) -> Option<Exit> {
        self.finished
    }

    /// True while the client is sending message data.
    pub fn in_data(&self) -> bool {
        self.data.is_some()
    }

    /// Bytes of replies waiting to be written.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Takes the replies produced so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The EHLO keywords, in order: the one place capabilities are listed.
    pub fn ehlo_keywords(&self) -> Vec<&'static str> {
        vec!["PIPELINING", "8BITMIME"]
    }

    /// The input ended (EOF or a read error): the session ends without a reply.
    pub fn eof(&mut self) {
        self.finish(Exit::Failure);
    }

    /// Nothing arrived within the timeout.
    pub fn timed_out(&mut self) {
        if self.finished.is_none() {
            self.say(reply::TIMEOUT);
            self.finish(Exit::Failure);
        }
    }

    /// Consumes client bytes; returns how many were used. All are used unless the session
    /// finished, after which the rest must be discarded.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() && self.finished.is_none() {
            if self.data.is_some() {
                let end = input.len().min(i + DATA_STEP);
                i += self.feed_data(&input[i..end]);
                continue;
            }
            let rest = &input[i..];
            match rest.iter().position(|&c| c == b'\n') {
                Some(lf) => {
                    self.push_line(&rest[..lf]);
                    i += lf + 1;
                    self.line_done();
                }
                None => {
                    self.push_line(rest);
                    i = input.len();
                }
            }
        }
        i
    }

    fn finish(&mut self, e: Exit) {
        if self.finished.is_none() {
            self.finished = Some(e);
        }
    }

    fn say(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    fn greet(&mut self, code: &str) {
        self.out.extend_from_slice(code.as_bytes());
        self.out.extend_from_slice(&self.cfg.greeting);
    }

    fn die_nomem(&mut self) {
        self.say(reply::NOMEM);
        self.finish(Exit::Failure);
    }

    fn die_control(&mut self) {
        self.say(REPLY_CONTROLS);
        self.finish(Exit::Failure);
    }

    fn push_line(&mut self, bytes: &[u8]) {
        if self.line_too_long {
            return;
        }
        if self.line.len() + bytes.len() > MAX_LINE {
            self.line_too_long = true;
            self.line = Vec::new();
            return;
        }
        if self.line.try_reserve(bytes.len()).is_err() {
            self.die_nomem();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn line_done(&mut self) {
        if self.finished.is_some() {
            return;
        }
        if self.line_too_long {
            self.line_too_long = false;
            self.say(reply::LINE_TOO_LONG);
            return;
        }
        let line = std::mem::take(&mut self.line);
        let c = command::parse(&line);
        match c.verb {
            Verb::Helo => self.helo(c.arg),
            Verb::Ehlo => self.ehlo(c.arg),
            Verb::Mail => self.mail(c.arg),
            Verb::Rcpt => self.rcpt(c.arg),
            Verb::Data => self.data_cmd(),
            Verb::Rset => {
                self.seenmail = false;
                self.say(reply::FLUSHED);
            }
            Verb::Noop => self.say(reply::OK),
            Verb::Vrfy => self.say(reply::VRFY),
            Verb::Help => self.say(reply::HELP),
            Verb::Quit => {
                self.greet("221 ");
                self.say("\r\n");
                self.finish(Exit::Quit);
            }
            Verb::Unknown => self.say(reply::UNIMPLEMENTED),
        }
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
    }

    /// Remembers the HELO argument when it is not the remote host name.
    fn dohelo(&mut self, arg: &[u8]) {
        self.fakehelo = if arg.eq_ignore_ascii_case(&self.cfg.remote.host) {
            None
        } else {
            Some(arg.to_vec())
        };
    }

    fn helo(&mut self, arg: &[u8]) {
        self.greet("250 ");
        self.say("\r\n");
        self.seenmail = false;
        self.dohelo(arg);
    }

    fn ehlo(&mut self, arg: &[u8]) {
        let kw = self.ehlo_keywords();
        self.greet(if kw.is_empty() { "250 " } else { "250-" });
        self.say("\r\n");
        for (i, k) in kw.iter().enumerate() {
            self.say(if i + 1 == kw.len() { "250 " } else { "250-" });
            self.say(k);
            self.say("\r\n");
        }
        self.seenmail = false;
        self.dohelo(arg);
    }

    fn addrparse(&self, arg: &[u8]) -> Option<Vec<u8>> {
        addr::parse(arg, self.cfg.localiphost.as_deref(), |ip| {
            self.cfg.is_me(ip)
        })
    }

    fn mail(&mut self, arg: &[u8]) {
        let Some(a) = self.addrparse(arg) else {
            self.say(reply::SYNTAX);
            return;
        };
        self.flagbarf = self.cfg.badmailfrom.matches(&a);
        self.seenmail = true;
        self.rcptto.clear();
        self.mailfrom = a;
        self.say(reply::OK);
    }

    fn rcpt(&mut self, arg: &[u8]) {
        if !self.seenmail {
            self.say(reply::WANT_MAIL);
            return;
        }
        let Some(mut a) = self.addrparse(arg) else {
            self.say(reply::SYNTAX);
            return;
        };
        if self.flagbarf {
            self.say(reply::BADMAILFROM);
            return;
        }
        if let Some(rc) = &self.cfg.relayclient {
            a.extend_from_slice(rc);
        } else {
            match self.cfg.rcpthosts.allowed(&a) {
                Ok(true) => {}
                Ok(false) => {
                    self.say(reply::NOGATEWAY);
                    return;
                }
                Err(_) => {
                    self.die_control();
                    return;
                }
            }
        }
        if self.rcptto.len() >= MAX_RECIPIENTS {
            self.say(reply::TOO_MANY_RCPTS);
            return;
        }
        if self.rcptto.try_reserve(1).is_err() {
            self.die_nomem();
            return;
        }
        self.rcptto.push(a);
        self.say(reply::OK);
    }

    fn data_cmd(&mut self) {
        if !self.seenmail {
            self.say(reply::WANT_MAIL);
            return;
        }
        if self.rcptto.is_empty() {
            self.say(reply::WANT_RCPT);
            return;
        }
        self.seenmail = false;
        let mut msg = match self.backend.open_message() {
            Ok(m) => m,
            Err(_) => {
                self.say(reply::QQT);
                return;
            }
        };
        let qp = msg.pid();
        self.say(reply::GO_AHEAD);
        let r = &self.cfg.remote;
        let facts = Facts {
            protocol: "SMTP",
            local: &r.local,
            remote_ip: &r.ip,
            remote_host: &r.host,
            remote_info: r.info.as_deref(),
            helo: self.fakehelo.as_deref(),
        };
        let now = self.backend.now();
        msg.put(&received::received(&facts, now));
        self.data = Some(InData {
            msg,
            blast: Blast::new(self.cfg.databytes),
            qp,
            failed: false,
        });
    }

    fn feed_data(&mut self, input: &[u8]) -> usize {
        let Some(d) = self.data.as_mut() else {
            return 0;
        };
        self.scratch.clear();
        let (used, progress) = d.blast.feed(input, &mut self.scratch);
        d.msg.put(&self.scratch);
        if d.blast.overflowed() && !d.failed {
            d.msg.fail();
            d.failed = true;
        }
        match progress {
            Progress::More => {}
            Progress::End => self.data_done(),
            Progress::StrayNewline => {
                self.say(reply::STRAY_NEWLINE);
                self.finish(Exit::Failure);
            }
        }
        if self.scratch.capacity() > DATA_STEP * 2 {
            self.scratch = Vec::new();
        }
        used
    }

    fn data_done(&mut self) {
        let Some(mut d) = self.data.take() else {
            return;
        };
        let hops = d.blast.hops() >= MAX_HOPS;
        if hops {
            d.msg.fail();
        }
        d.msg.from(&self.mailfrom);
        for r in &self.rcptto {
            d.msg.to(r);
        }
        match d.msg.close() {
            Ok(()) => {
                let when = self.backend.now();
                let s = format!("250 ok {when} qp {}\r\n", d.qp);
                self.say(&s);
            }
            Err(_) if hops => self.say(reply::HOPS),
            Err(_) if self.cfg.databytes > 0 && d.blast.overflowed() => self.say(reply::DATABYTES),
            Err(e) => {
                let s = format!("{} {}\r\n", if e.permanent { "554" } else { "451" }, e.text);
                self.say(&s);
            }
        }
    }
}

impl<B: Backend> Drop for Session<B> {
    fn drop(&mut self) {
        if let Some(d) = self.data.take() {
            d.msg.abandon();
        }
    }
}

#[cfg(test)]
mod tests;
