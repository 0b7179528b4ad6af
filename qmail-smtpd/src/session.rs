//! The SMTP dialogue as a state machine without I/O: bytes from the client go in
//! ([`Session::feed`]), reply bytes come out ([`Session::take_output`]), and the message
//! goes to a [`Backend`] (qmail-queue in the real program, a recorder in tests).
//!
//! The replies, their order and the state changes are netqmail 1.06's qmail-smtpd. The
//! differences are bounds netqmail does not have: a command line holds at most
//! [`MAX_LINE`] bytes (a longer one is answered with 500 when its LF arrives) and a
//! message has at most [`MAX_RECIPIENTS`] recipients (more get 452).
//!
//! The extensions (none of them active unless configured, so that a plain set-up answers
//! exactly as netqmail):
//!
//! * STARTTLS (RFC 3207): [`Session::feed`] stops consuming input right after the
//!   STARTTLS line; whatever the client sent behind it is discarded by the transport
//!   (CVE-2011-0411), which then does the handshake and calls [`Session::tls_started`]:
//!   the session forgets HELO/EHLO, sender and recipients, and wants a new HELO/EHLO;
//! * SMTP AUTH (RFC 4954) with a checkpassword program, through [`Backend::check_password`];
//! * recipient validation through [`Backend::check_recipient`];
//! * SIZE (RFC 1870) from databytes, enforced at MAIL;
//! * `[IPv6:...]` address literals naming this host, rewritten like `[d.d.d.d]`;
//! * SMTPUTF8 (RFC 6531) with control/smtputf8: see [`crate::utf8`].
//!
//! [`Session::ehlo_keywords`] is the one place the EHLO capabilities are listed.

use crate::addr;
use crate::auth::{self, Credentials, InputError, Mechanism};
use crate::blast::{Blast, Progress};
use crate::checkpw;
use crate::command::{self, Verb};
use crate::config::{Config, REPLY_CONTROLS};
use crate::rcptcheck;
use crate::received::{self, Facts};
use crate::utf8;
use qmail_queue::QueueError;
use qmail_tls::TlsInfo;
use std::io;
use std::time::{Duration, Instant};

/// The longest command line accepted, in bytes before its LF (CR included). netqmail has
/// no limit; RFC 5321 asks for 512, RFC 4954 allows AUTH lines of 12288.
pub const MAX_LINE: usize = 16384;
/// The most recipients one message may have. netqmail has no limit.
pub const MAX_RECIPIENTS: usize = 10000;
/// Messages with this many Received or Delivered-To lines are refused as looping.
pub const MAX_HOPS: u32 = 100;
/// After this many failed AUTH attempts the session ends.
pub const MAX_AUTH_FAILURES: u32 = 3;

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
    /// rqmail only: control/timeoutsession ran out.
    pub const SESSION_TIMEOUT: &str = "451 session time limit reached (#4.4.2)\r\n";
    pub const NOMEM: &str = "421 out of memory (#4.3.0)\r\n";
    /// rqmail only: a command line longer than [`super::MAX_LINE`].
    pub const LINE_TOO_LONG: &str = "500 command line too long (#5.5.2)\r\n";
    /// rqmail only: more than [`super::MAX_RECIPIENTS`] recipients.
    pub const TOO_MANY_RCPTS: &str = "452 too many recipients (#4.5.3)\r\n";

    // STARTTLS, with the texts of the qmail TLS patch where it has one.
    pub const TLS_READY: &str = "220 ready for tls\r\n";
    pub const TLS_NO_PARAMS: &str = "501 STARTTLS takes no parameters (#5.5.4)\r\n";
    pub const TLS_UNAVAILABLE: &str = "454 TLS not available due to temporary reason (#4.3.0)\r\n";
    /// After STARTTLS, the client must greet again before anything else.
    pub const WANT_EHLO: &str = "503 EHLO first (#5.5.1)\r\n";

    // SMTP AUTH, with the texts of the qmail SMTP AUTH patch.
    pub const AUTH_OK: &str = "235 ok, go ahead (#2.0.0)\r\n";
    pub const AUTH_FAILED: &str = "535 authorization failed (#5.7.0)\r\n";
    pub const AUTH_ALREADY: &str = "503 you're already authenticated (#5.5.0)\r\n";
    pub const AUTH_IN_MAIL: &str = "503 no auth during mail transaction (#5.5.0)\r\n";
    pub const AUTH_MECH: &str = "504 auth type unimplemented (#5.5.1)\r\n";
    pub const AUTH_CANCELLED: &str = "501 auth exchange cancelled (#5.0.0)\r\n";
    pub const AUTH_MALFORMED: &str = "501 malformed auth input (#5.5.4)\r\n";
    pub const AUTH_NEEDS_TLS: &str = "538 auth not available without TLS (#5.3.3)\r\n";
    pub const AUTH_CHILD: &str = "454 oops, problem with child and I can't auth (#4.3.0)\r\n";
    pub const AUTH_NO_CHILD: &str = "454 oops, child won't start and I can't auth (#4.3.0)\r\n";
    /// rqmail: the checkpassword program exited 111.
    pub const AUTH_TEMP: &str = "454 temporary authentication failure (#4.3.0)\r\n";
    /// rqmail: the session ends after [`super::MAX_AUTH_FAILURES`] failures.
    pub const AUTH_TOO_MANY: &str = "421 too many authentication failures (#4.7.0)\r\n";
    /// SMTPAUTH=! and MAIL before AUTH.
    pub const AUTH_REQUIRED: &str = "530 authentication required (#5.7.1)\r\n";
    pub const LOGIN_USER: &str = "334 VXNlcm5hbWU6\r\n";
    pub const LOGIN_PASS: &str = "334 UGFzc3dvcmQ6\r\n";

    /// Recipient validation.
    pub const NO_MAILBOX: &str = "550 sorry, no mailbox here by that name (#5.1.1)\r\n";
    /// Recipient validation could not get qmail-getpw's answer.
    pub const RCPT_TEMP: &str = "451 unable to check recipient (#4.3.0)\r\n";
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

/// Where messages go, what time it is, and the checks that need the outside world.
pub trait Backend {
    type Message: Message;
    /// Starts a message for a client that authenticated as `auth_user` (SMTP AUTH), if
    /// it did; an error is netqmail's "qqt failure".
    fn open_message(&mut self, auth_user: Option<&[u8]>) -> io::Result<Self::Message>;
    /// Seconds since the epoch.
    fn now(&mut self) -> u64;
    /// Runs the checkpassword program `argv` on `creds`, waiting at most `timeout`.
    fn check_password(
        &mut self,
        argv: &[Vec<u8>],
        creds: &Credentials,
        timeout: Duration,
    ) -> checkpw::Verdict {
        let _ = (argv, creds, timeout);
        checkpw::Verdict::NoStart("no checkpassword backend".into())
    }
    /// Recipient validation for a recipient that is not relayed; an error is an
    /// unreadable control file. The default accepts everyone.
    fn check_recipient(&mut self, rcpt: &[u8]) -> io::Result<rcptcheck::Verdict> {
        let _ = rcpt;
        Ok(rcptcheck::Verdict::Accept)
    }
    /// The client said HELO or EHLO with `arg` (the queue program may want to know).
    fn helo(&mut self, arg: &[u8]) {
        let _ = arg;
    }
    /// A line for the administrator's log (descriptor 2).
    fn log(&mut self, line: &str) {
        let _ = line;
    }
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
    pub fn code(self) -> control::Exit {
        match self {
            Exit::Quit => control::Exit::OK,
            Exit::Failure => control::Exit::FAILURE,
        }
    }
}

/// Where an AUTH exchange stands: the next line is the client's answer, not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthStep {
    None,
    Plain,
    LoginUser,
    LoginPass(Vec<u8>),
    Cram(Vec<u8>),
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
    /// MAIL said SMTPUTF8 (with control/smtputf8 on).
    utf8: bool,
    rcptto: Vec<Vec<u8>>,
    data: Option<InData<B::Message>>,
    scratch: Vec<u8>,
    finished: Option<Exit>,
    /// RELAYCLIENT, or the empty string after a successful AUTH.
    relay: Option<Vec<u8>>,
    /// Set once TLS is on (after STARTTLS, or from the start with SMTPS).
    tls: Option<TlsInfo>,
    /// STARTTLS was accepted: the transport must now do the handshake.
    want_tls: bool,
    /// After STARTTLS, MAIL and AUTH wait for a new HELO/EHLO.
    want_helo: bool,
    auth_step: AuthStep,
    /// The authenticated user and the mechanism used.
    auth_user: Option<(Vec<u8>, Mechanism)>,
    auth_failures: u32,
    /// The client certificate's address that control/tlsclients allowed to relay.
    cert_relay: Option<String>,
    /// When the session must end (control/timeoutsession), if ever.
    deadline: Option<Instant>,
}

impl<B: Backend> std::fmt::Debug for Session<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("seenmail", &self.seenmail)
            .field("rcpts", &self.rcptto.len())
            .field("in_data", &self.data.is_some())
            .field("finished", &self.finished)
            .field("tls", &self.tls)
            .field("want_tls", &self.want_tls)
            .finish_non_exhaustive()
    }
}

/// The largest piece of DATA input handled in one step (bounds the scratch buffer).
const DATA_STEP: usize = 64 * 1024;

impl<B: Backend> Session<B> {
    /// Starts a session; the 220 greeting is already in the output.
    pub fn new(cfg: Config, backend: B) -> Session<B> {
        let relay = cfg.relayclient.clone();
        let deadline = (cfg.timeout_session > 0)
            .then(|| Instant::now() + Duration::from_secs(cfg.timeout_session));
        let mut s = Session {
            deadline,
            relay,
            tls: None,
            want_tls: false,
            want_helo: false,
            auth_step: AuthStep::None,
            auth_user: None,
            auth_failures: 0,
            cert_relay: None,
            cfg,
            backend,
            out: Vec::with_capacity(512),
            line: Vec::new(),
            line_too_long: false,
            fakehelo: None,
            seenmail: false,
            flagbarf: false,
            mailfrom: Vec::new(),
            utf8: false,
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

    /// When the whole session must be over (control/timeoutsession), if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
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

    /// The EHLO keywords, in order: the one place capabilities are listed. STARTTLS, when
    /// offered, comes first, so that it is never the last line (some clients only look
    /// for "250-STARTTLS").
    pub fn ehlo_keywords(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.starttls_offered() {
            v.push("STARTTLS".to_string());
        }
        v.push("PIPELINING".to_string());
        v.push("8BITMIME".to_string());
        if self.cfg.smtputf8 {
            v.push(utf8::KEYWORD.to_string());
        }
        if self.cfg.databytes > 0 {
            v.push(format!("SIZE {}", self.cfg.databytes));
        }
        if self.auth_offered() {
            let mut a = "AUTH LOGIN PLAIN".to_string();
            if self.cfg.auth.as_ref().is_some_and(|a| a.cram) {
                a.push_str(" CRAM-MD5");
            }
            v.push(a);
        }
        v
    }

    /// STARTTLS is offered: a usable (or broken, then 454) servercert.pem, no DENY_TLS,
    /// and TLS not on yet.
    pub fn starttls_offered(&self) -> bool {
        self.cfg.tls.offer && self.tls.is_none()
    }

    /// AUTH is listed in the EHLO reply: configured, and inside TLS unless FORCETLS=0.
    pub fn auth_offered(&self) -> bool {
        self.cfg
            .auth
            .as_ref()
            .is_some_and(|a| a.plaintext || self.tls.is_some())
    }

    /// True after STARTTLS was accepted (its 220 is in the output): the caller writes the
    /// output, discards any input it holds, and does the TLS handshake.
    pub fn wants_tls(&self) -> bool {
        self.want_tls
    }

    /// The TLS handshake after STARTTLS succeeded: everything learnt from the client
    /// before it is forgotten (RFC 3207): HELO/EHLO, sender, recipients, authentication.
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.want_tls = false;
        self.want_helo = true;
        self.tls = Some(info);
        self.fakehelo = None;
        self.seenmail = false;
        self.flagbarf = false;
        self.mailfrom.clear();
        self.utf8 = false;
        self.rcptto.clear();
        self.line.clear();
        self.line_too_long = false;
        self.auth_step = AuthStep::None;
        self.auth_user = None;
        self.cert_relay = None;
        self.relay = self.cfg.relayclient.clone();
    }

    /// The connection is TLS from the start (SMTPS); nothing has been said yet.
    pub fn smtps_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
    }

    /// The TLS facts, once TLS is on.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The authenticated user, after a successful AUTH.
    pub fn auth_user(&self) -> Option<&[u8]> {
        self.auth_user.as_ref().map(|(u, _)| u.as_slice())
    }

    /// The protocol named in the Received field.
    pub fn protocol(&self) -> String {
        let mut p = match (&self.tls, self.auth_user.is_some()) {
            (None, false) => "SMTP".to_string(),
            (None, true) => "ESMTPA".to_string(),
            (Some(t), false) => format!("ESMTPS ({} {} encrypted)", t.version, t.cipher),
            (Some(t), true) => format!(
                "ESMTPSA ({} {} encrypted, authenticated)",
                t.version, t.cipher
            ),
        };
        // As the qmail TLS patch: a continuation line naming the certificate that
        // allowed relaying (printable ASCII only: see qmail_tls::subject_email).
        if let Some(email) = &self.cert_relay {
            p.push_str("\n  (cert ");
            p.push_str(email);
            p.push(')');
        }
        p
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

    /// The session's deadline (control/timeoutsession) passed: a last 451 and the end,
    /// whatever the client was in the middle of (a message being received is not queued).
    pub fn deadline_reached(&mut self) {
        if self.finished.is_none() {
            self.say(reply::SESSION_TIMEOUT);
            let secs = self.cfg.timeout_session;
            self.backend
                .log(&format!("session time limit of {secs} seconds reached"));
            self.finish(Exit::Failure);
        }
    }

    /// Consumes client bytes; returns how many were used. All are used unless the session
    /// finished or accepted STARTTLS; the rest must then be discarded.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() && self.finished.is_none() && !self.want_tls {
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

    /// Before a MAIL or RCPT whose address may be a literal to replace with
    /// control/localiphost: this host's addresses, listed now if they are not yet
    /// ([`Config::list_ipme`]). False (after the 421 reply that ends the session, as
    /// netqmail's at its start) when they cannot be listed.
    fn ipme_listed(&mut self, arg: &[u8]) -> bool {
        if self.cfg.localiphost.is_none() || !arg.contains(&b'[') {
            return true;
        }
        match self.cfg.list_ipme() {
            Ok(()) => true,
            Err(e) => {
                self.backend
                    .log(&format!("unable to list this host's addresses: {e}"));
                self.say(crate::config::REPLY_IPME);
                self.finish(Exit::Failure);
                false
            }
        }
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
            // An overlong answer also ends an AUTH exchange.
            self.auth_step = AuthStep::None;
            self.say(reply::LINE_TOO_LONG);
            return;
        }
        let line = std::mem::take(&mut self.line);
        if self.auth_step != AuthStep::None {
            self.auth_answer(&line);
            self.line = line;
            self.line.clear();
            return;
        }
        let c = command::parse(&line);
        match c.verb {
            Verb::Helo => self.helo(c.arg),
            Verb::Ehlo => self.ehlo(c.arg),
            Verb::Mail | Verb::Rcpt if !self.ipme_listed(c.arg) => {}
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
            Verb::Starttls => self.starttls(c.arg),
            Verb::Auth => self.auth(c.arg),
            Verb::Unknown => self.say(reply::UNIMPLEMENTED),
        }
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
    }

    /// Remembers the HELO argument when it is not the remote host name.
    fn dohelo(&mut self, arg: &[u8]) {
        self.backend.helo(arg);
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
        self.want_helo = false;
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
        self.want_helo = false;
        self.dohelo(arg);
    }

    fn addrparse(&self, arg: &[u8]) -> Option<Vec<u8>> {
        addr::parse_any(arg, self.cfg.localiphost.as_deref(), |ip| {
            self.cfg.is_me_any(ip)
        })
    }

    fn mail(&mut self, arg: &[u8]) {
        if self.want_helo {
            self.say(reply::WANT_EHLO);
            return;
        }
        if self.auth_user.is_none() && self.cfg.auth.as_ref().is_some_and(|a| a.required) {
            self.say(reply::AUTH_REQUIRED);
            return;
        }
        let Some(a) = self.addrparse(arg) else {
            self.say(reply::SYNTAX);
            return;
        };
        let params = addr::extract_rest(arg).1;
        if self.cfg.databytes > 0
            && addr::size_param(params).is_some_and(|n| n > self.cfg.databytes)
        {
            self.say(reply::DATABYTES);
            return;
        }
        let utf8 = self.cfg.smtputf8 && utf8::param(params);
        if let Some(r) = self
            .cfg
            .smtputf8
            .then(|| utf8::refusal(&a, utf8, true))
            .flatten()
        {
            self.say(r);
            return;
        }
        self.utf8 = utf8;
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
        if let Some(r) = self
            .cfg
            .smtputf8
            .then(|| utf8::refusal(&a, self.utf8, false))
            .flatten()
        {
            self.say(r);
            return;
        }
        if self.flagbarf {
            self.say(reply::BADMAILFROM);
            return;
        }
        if self.relay.is_none() {
            let allowed = if self.cfg.smtputf8 {
                utf8::rcpthosts_allowed(&self.cfg.rcpthosts, &a)
            } else {
                self.cfg.rcpthosts.allowed(&a)
            };
            match allowed {
                Ok(true) => {}
                Ok(false) if self.relay_by_certificate() => {}
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
        if let Some(rc) = &self.relay {
            a.extend_from_slice(rc);
        } else {
            match self.backend.check_recipient(&a) {
                Ok(rcptcheck::Verdict::Accept) => {}
                Ok(rcptcheck::Verdict::Unknown) => {
                    self.say(reply::NO_MAILBOX);
                    return;
                }
                Ok(rcptcheck::Verdict::TempFail(why)) => {
                    self.backend.log(&format!("recipient check: {why}"));
                    self.say(reply::RCPT_TEMP);
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

    /// control/tlsclients, as the qmail TLS patch has it: a client whose certificate
    /// verified against clientca.pem and whose subject e-mail address is listed may relay
    /// from now on, as with RELAYCLIENT set to the empty string. Asked only when a
    /// recipient would otherwise be refused; the address is then named in the Received
    /// field.
    fn relay_by_certificate(&mut self) -> bool {
        let Some(email) = self.tls.as_ref().and_then(|t| t.client_email.clone()) else {
            return false;
        };
        if !self.cfg.tls.client_may_relay(&email) {
            return false;
        }
        self.relay = Some(Vec::new());
        self.cert_relay = Some(email);
        true
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
        let auth_user = self.auth_user.as_ref().map(|(u, _)| u.as_slice());
        let mut msg = match self.backend.open_message(auth_user) {
            Ok(m) => m,
            Err(_) => {
                self.say(reply::QQT);
                return;
            }
        };
        let qp = msg.pid();
        self.say(reply::GO_AHEAD);
        let mut protocol = self.protocol();
        if self.utf8 {
            protocol = utf8::protocol(&protocol);
        }
        let r = &self.cfg.remote;
        let facts = Facts {
            protocol: &protocol,
            local: &r.local,
            remote_ip: &r.ip,
            remote_host: &r.host,
            remote_info: match &self.auth_user {
                Some((u, _)) => Some(u.as_slice()),
                None => r.info.as_deref(),
            },
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

    fn starttls(&mut self, arg: &[u8]) {
        if !self.starttls_offered() {
            self.say(reply::UNIMPLEMENTED);
            return;
        }
        if !arg.is_empty() {
            self.say(reply::TLS_NO_PARAMS);
            return;
        }
        if let Some(Err(e)) = self.cfg.tls.server() {
            let e = format!("TLS not available: {e}");
            self.backend.log(&e);
            self.say(reply::TLS_UNAVAILABLE);
            return;
        }
        self.say(reply::TLS_READY);
        self.want_tls = true;
    }

    fn auth(&mut self, arg: &[u8]) {
        let Some(cram_ok) = self.cfg.auth.as_ref().map(|a| a.cram) else {
            // Not configured: as netqmail, an unknown command.
            self.say(reply::UNIMPLEMENTED);
            return;
        };
        if self.auth_user.is_some() {
            self.say(reply::AUTH_ALREADY);
            return;
        }
        if self.seenmail {
            self.say(reply::AUTH_IN_MAIL);
            return;
        }
        if !self.auth_offered() {
            self.say(reply::AUTH_NEEDS_TLS);
            return;
        }
        if self.want_helo {
            self.say(reply::WANT_EHLO);
            return;
        }
        let (word, initial) = match arg.iter().position(|&c| c == b' ') {
            Some(sp) => {
                let rest = &arg[sp..];
                let skip = rest.iter().take_while(|&&c| c == b' ').count();
                (&arg[..sp], Some(&rest[skip..]).filter(|r| !r.is_empty()))
            }
            None => (arg, None),
        };
        let mech = match Mechanism::parse(word) {
            Some(Mechanism::CramMd5) if !cram_ok => None,
            m => m,
        };
        match (mech, initial) {
            (None, _) => self.say(reply::AUTH_MECH),
            (Some(Mechanism::Plain), None) => {
                self.say("334 \r\n");
                self.auth_step = AuthStep::Plain;
            }
            (Some(Mechanism::Plain), Some(i)) => self.auth_plain(i),
            (Some(Mechanism::Login), None) => {
                self.say(reply::LOGIN_USER);
                self.auth_step = AuthStep::LoginUser;
            }
            (Some(Mechanism::Login), Some(i)) => self.auth_login_user(i),
            (Some(Mechanism::CramMd5), None) => {
                let ch = self.challenge();
                self.say(&format!("334 {}\r\n", auth::b64encode(&ch)));
                self.auth_step = AuthStep::Cram(ch);
            }
            // CRAM-MD5 has no initial response.
            (Some(Mechanism::CramMd5), Some(_)) => self.say(reply::AUTH_MALFORMED),
        }
    }

    fn challenge(&mut self) -> Vec<u8> {
        let now = self.backend.now();
        let host = self
            .cfg
            .auth
            .as_ref()
            .map(|a| a.hostname.clone())
            .unwrap_or_default();
        auth::challenge(std::process::id(), now, &host)
    }

    fn auth_input_error(&mut self, e: InputError) {
        self.auth_step = AuthStep::None;
        self.say(match e {
            InputError::Cancelled => reply::AUTH_CANCELLED,
            InputError::Malformed => reply::AUTH_MALFORMED,
        });
    }

    /// A line of the exchange (after a 334).
    fn auth_answer(&mut self, raw: &[u8]) {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let step = std::mem::replace(&mut self.auth_step, AuthStep::None);
        match step {
            AuthStep::None => {}
            AuthStep::Plain => self.auth_plain(line),
            AuthStep::LoginUser => self.auth_login_user(line),
            AuthStep::LoginPass(user) => {
                match auth::decode_line(line).and_then(|d| auth::login_field(&d)) {
                    Err(e) => self.auth_input_error(e),
                    Ok(pass) => {
                        let timestamp = self.challenge();
                        self.authenticate(
                            Mechanism::Login,
                            Credentials {
                                user,
                                pass,
                                timestamp,
                            },
                        );
                    }
                }
            }
            AuthStep::Cram(challenge) => {
                match auth::decode_line(line).and_then(|d| auth::split_cram(&d)) {
                    Err(e) => self.auth_input_error(e),
                    Ok((user, digest)) => self.authenticate(
                        Mechanism::CramMd5,
                        Credentials {
                            user,
                            pass: digest,
                            timestamp: challenge,
                        },
                    ),
                }
            }
        }
    }

    fn auth_plain(&mut self, b64: &[u8]) {
        let decoded = match auth::decode_line(b64) {
            Ok(d) => d,
            Err(e) => return self.auth_input_error(e),
        };
        match auth::split_plain(&decoded) {
            Err(e) => self.auth_input_error(e),
            Ok(None) => self.auth_failed(Mechanism::Plain, b"(authorization identity)"),
            Ok(Some((user, pass))) => {
                let timestamp = self.challenge();
                self.authenticate(
                    Mechanism::Plain,
                    Credentials {
                        user,
                        pass,
                        timestamp,
                    },
                );
            }
        }
    }

    fn auth_login_user(&mut self, b64: &[u8]) {
        match auth::decode_line(b64).and_then(|d| auth::login_field(&d)) {
            Err(e) => self.auth_input_error(e),
            Ok(user) => {
                self.say(reply::LOGIN_PASS);
                self.auth_step = AuthStep::LoginPass(user);
            }
        }
    }

    fn printable_user(user: &[u8]) -> String {
        user.iter()
            .take(100)
            .map(|&c| {
                if c.is_ascii_graphic() && c != b'<' && c != b'>' {
                    c as char
                } else {
                    '?'
                }
            })
            .collect()
    }

    fn auth_failed(&mut self, mech: Mechanism, user: &[u8]) {
        self.auth_failures += 1;
        let line = format!(
            "auth: auth-failed type={} user=<{}> remote={}",
            mech.name().to_ascii_lowercase(),
            Self::printable_user(user),
            String::from_utf8_lossy(&self.cfg.remote.ip),
        );
        self.backend.log(&line);
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.say(reply::AUTH_TOO_MANY);
            self.finish(Exit::Failure);
        } else {
            self.say(reply::AUTH_FAILED);
        }
    }

    fn authenticate(&mut self, mech: Mechanism, creds: Credentials) {
        let Some(program) = self.cfg.auth.as_ref().map(|a| a.program.clone()) else {
            return;
        };
        let timeout = Duration::from_secs(self.cfg.timeout);
        match self.backend.check_password(&program, &creds, timeout) {
            checkpw::Verdict::Accepted => {
                let line = format!(
                    "auth: auth-success type={} user=<{}> remote={}",
                    mech.name().to_ascii_lowercase(),
                    Self::printable_user(&creds.user),
                    String::from_utf8_lossy(&self.cfg.remote.ip),
                );
                self.backend.log(&line);
                if self.relay.is_none() {
                    self.relay = Some(Vec::new());
                }
                self.auth_user = Some((creds.user.clone(), mech));
                self.say(reply::AUTH_OK);
            }
            checkpw::Verdict::Rejected => self.auth_failed(mech, &creds.user),
            checkpw::Verdict::TempFail => self.say(reply::AUTH_TEMP),
            checkpw::Verdict::Crashed => {
                self.backend.log("auth: checkpassword crashed or timed out");
                self.say(reply::AUTH_CHILD);
            }
            checkpw::Verdict::NoStart(e) => {
                self.backend.log(&format!("auth: {e}"));
                self.say(reply::AUTH_NO_CHILD);
            }
        }
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
            Err(e) => self.say(&e.smtp_reply()),
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
