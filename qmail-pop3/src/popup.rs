//! qmail-popup's dialogue (the AUTHORIZATION state) as a state machine without I/O:
//! command bytes go in ([`Popup::feed`]), reply bytes come out ([`Popup::take_output`]),
//! and the dialogue stops at an [`Event`]: a user name and password to check, the start
//! of TLS, or the end.
//!
//! The replies are netqmail 1.06's, byte for byte: the greeting carries the APOP
//! timestamp `<pid.time@hostname>`; USER, PASS, APOP, NOOP and QUIT as there; every other
//! command is `-ERR authorization first`. Added, none of which changes those replies:
//!
//! * CAPA (RFC 2449): TOP, UIDL, USER when a password may be sent now, STLS when it is
//!   offered;
//! * STLS (RFC 2595), when control/servercert.pem exists: `+OK begin TLS`, then the
//!   caller discards whatever the client sent behind it, does the handshake and calls
//!   [`Popup::tls_started`], which forgets the user name;
//! * no password before TLS: USER, PASS and APOP are refused (`-ERR STLS first`) until
//!   TLS is on, unless the configuration allows passwords in the clear (FORCETLS=0);
//! * a command line longer than [`MAX_LINE`](crate::command::MAX_LINE) bytes gets
//!   `-ERR line too long` and ends the session.

use crate::command::{self, Line, Lines, Verb};

/// The replies with a fixed text.
pub(crate) mod reply {
    pub(crate) const OK: &[u8] = b"+OK \r\n";
    pub(crate) const SYNTAX: &[u8] = b"-ERR syntax error\r\n";
    pub(crate) const WANT_USER: &[u8] = b"-ERR USER first\r\n";
    pub(crate) const AUTH_FIRST: &[u8] = b"-ERR authorization first\r\n";
    pub(crate) const USAGE: &[u8] = b"-ERR usage: popup hostname subprogram\r\n";
    pub(crate) const PIPE: &[u8] = b"-ERR unable to open pipe\r\n";
    pub(crate) const WRITE_PIPE: &[u8] = b"-ERR unable to write pipe\r\n";
    pub(crate) const FORK: &[u8] = b"-ERR unable to fork\r\n";
    pub(crate) const CRASHED: &[u8] = b"-ERR aack, child crashed\r\n";
    pub(crate) const BAD_AUTH: &[u8] = b"-ERR authorization failed\r\n";
    /// rqmail only: a command line longer than [`crate::command::MAX_LINE`].
    pub(crate) const LINE_TOO_LONG: &[u8] = b"-ERR line too long\r\n";
    /// rqmail only: a password before TLS while STLS is offered.
    pub(crate) const STLS_FIRST: &[u8] = b"-ERR STLS first\r\n";
    /// rqmail only: a password without TLS, which is not configured, and passwords in
    /// the clear are not allowed.
    pub(crate) const TLS_REQUIRED: &[u8] = b"-ERR TLS required but not configured\r\n";
    pub(crate) const TLS_GO: &[u8] = b"+OK begin TLS\r\n";
    pub(crate) const TLS_ACTIVE: &[u8] = b"-ERR TLS already active\r\n";
    pub(crate) const TLS_UNAVAILABLE: &[u8] = b"-ERR TLS not available\r\n";
    /// rqmail only: the worker's ids could not be set up.
    pub(crate) const NO_IDS: &[u8] = b"-ERR unable to switch to the qmaild user\r\n";
}

/// Whether STLS can be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stls {
    /// control/servercert.pem does not exist: STLS is answered as an unknown command.
    NotConfigured,
    /// It exists but TLS cannot be set up from it: STLS gets `-ERR TLS not available`.
    Broken,
    /// STLS is offered.
    Offered,
}

/// What the dialogue is set up with.
#[derive(Debug, Clone)]
pub struct PopupConfig {
    /// The APOP timestamp, `<pid.time@hostname>`.
    pub timestamp: Vec<u8>,
    pub stls: Stls,
    /// FORCETLS=0: USER, PASS and APOP without TLS.
    pub plaintext_passwords: bool,
}

/// Where the dialogue stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// PASS after USER, or APOP: the credentials for checkpassword.
    Login { user: Vec<u8>, pass: Vec<u8> },
    /// STLS was accepted (its reply is in the output).
    StartTls,
    /// QUIT (answered), or a line too long.
    Quit,
}

/// The session.
#[derive(Debug)]
pub struct Popup {
    cfg: PopupConfig,
    tls: bool,
    user: Option<Vec<u8>>,
    lines: Lines,
    out: Vec<u8>,
    event: Option<Event>,
}

impl Popup {
    /// A session; nothing is said until [`Popup::greet`].
    pub fn new(cfg: PopupConfig) -> Popup {
        Popup {
            cfg,
            tls: false,
            user: None,
            lines: Lines::default(),
            out: Vec::new(),
            event: None,
        }
    }

    /// The greeting with the APOP timestamp.
    pub fn greet(&mut self) {
        self.out.extend_from_slice(b"+OK ");
        self.out.extend_from_slice(&self.cfg.timestamp);
        self.out.extend_from_slice(b"\r\n");
    }

    /// The reply bytes produced so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Where the dialogue stopped, if it did.
    pub fn event(&self) -> Option<&Event> {
        self.event.as_ref()
    }

    /// Takes the event, letting the dialogue go on (after STLS).
    pub fn take_event(&mut self) -> Option<Event> {
        self.event.take()
    }

    /// TLS is on (after STLS, or from the start): the user name given before is
    /// forgotten, STLS is no longer offered, passwords are accepted.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.user = None;
        self.lines = Lines::default();
    }

    /// True when USER, PASS and APOP are accepted now.
    pub fn passwords_allowed(&self) -> bool {
        self.tls || self.cfg.plaintext_passwords
    }

    /// True when STLS is offered now.
    pub fn stls_offered(&self) -> bool {
        !self.tls && self.cfg.stls == Stls::Offered
    }

    /// The capabilities CAPA lists, in order.
    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut v = vec!["TOP", "UIDL"];
        if self.passwords_allowed() {
            v.push("USER");
        }
        if self.stls_offered() {
            v.push("STLS");
        }
        v
    }

    /// Takes client input; returns how many bytes were used. It stops right after the
    /// line that produced an [`Event`].
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        while used < data.len() && self.event.is_none() {
            let (n, line) = self.lines.take(&data[used..]);
            used += n;
            match line {
                None => {}
                Some(Line::TooLong) => {
                    self.out.extend_from_slice(reply::LINE_TOO_LONG);
                    self.event = Some(Event::Quit);
                }
                Some(Line::Complete(l)) => self.command(&l),
            }
        }
        used
    }

    /// The refusal of a password at this point, if it is refused.
    fn refusal(&self) -> Option<&'static [u8]> {
        match (self.passwords_allowed(), self.cfg.stls) {
            (true, _) => None,
            (false, Stls::Offered) => Some(reply::STLS_FIRST),
            (false, _) => Some(reply::TLS_REQUIRED),
        }
    }

    fn command(&mut self, line: &[u8]) {
        let c = command::parse(line);
        if matches!(c.verb, Verb::User | Verb::Pass | Verb::Apop)
            && let Some(no) = self.refusal()
        {
            self.out.extend_from_slice(no);
            return;
        }
        match c.verb {
            Verb::User if c.arg.is_empty() => self.out.extend_from_slice(reply::SYNTAX),
            Verb::User => {
                self.out.extend_from_slice(reply::OK);
                self.user = Some(c.arg.to_vec());
            }
            Verb::Pass => match &self.user {
                None => self.out.extend_from_slice(reply::WANT_USER),
                Some(_) if c.arg.is_empty() => self.out.extend_from_slice(reply::SYNTAX),
                Some(user) => {
                    self.event = Some(Event::Login {
                        user: user.clone(),
                        pass: c.arg.to_vec(),
                    });
                }
            },
            Verb::Apop => match c.arg.iter().position(|&b| b == b' ') {
                None => self.out.extend_from_slice(reply::SYNTAX),
                Some(sp) => {
                    self.event = Some(Event::Login {
                        user: c.arg[..sp].to_vec(),
                        pass: c.arg[sp + 1..].to_vec(),
                    });
                }
            },
            Verb::Quit => {
                self.out.extend_from_slice(reply::OK);
                self.event = Some(Event::Quit);
            }
            Verb::Noop => self.out.extend_from_slice(reply::OK),
            Verb::Capa => {
                self.out
                    .extend_from_slice(b"+OK capability list follows\r\n");
                for cap in self.capabilities() {
                    self.out.extend_from_slice(cap.as_bytes());
                    self.out.extend_from_slice(b"\r\n");
                }
                self.out.extend_from_slice(b".\r\n");
            }
            Verb::Stls if self.tls => self.out.extend_from_slice(reply::TLS_ACTIVE),
            Verb::Stls => match self.cfg.stls {
                Stls::NotConfigured => self.out.extend_from_slice(reply::AUTH_FIRST),
                Stls::Broken => self.out.extend_from_slice(reply::TLS_UNAVAILABLE),
                Stls::Offered => {
                    self.out.extend_from_slice(reply::TLS_GO);
                    self.event = Some(Event::StartTls);
                }
            },
            _ => self.out.extend_from_slice(reply::AUTH_FIRST),
        }
    }
}

#[cfg(test)]
mod tests;
