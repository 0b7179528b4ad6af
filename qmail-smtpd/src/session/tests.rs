//! The state machine driven directly: no sockets, no processes.

use super::*;
use control::BadMailFrom;
use control::RcptHosts;
use proptest::prelude::*;
use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

/// What a message handed to the fake queue looked like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stored {
    data: Vec<u8>,
    from: Option<Vec<u8>>,
    to: Vec<Vec<u8>>,
    failed: bool,
    closed: bool,
    abandoned: bool,
    /// The SMTP AUTH user the session named when it opened the message.
    auth_user: Option<Vec<u8>>,
}

/// One call of the fake checkpassword: (argv, user, pass, timestamp).
type Checked = (Vec<Vec<u8>>, Vec<u8>, Vec<u8>, Vec<u8>);

#[derive(Clone)]
struct Fake {
    msgs: Rc<RefCell<Vec<Stored>>>,
    open_fails: bool,
    /// The exit code the fake qmail-queue gives for a complete message.
    exit: i32,
    /// What the fake checkpassword program was asked: (argv, user, pass, timestamp).
    checked: Rc<RefCell<Vec<Checked>>>,
    /// Recipients the fake validation does not know.
    unknown: Vec<Vec<u8>>,
    logged: Rc<RefCell<Vec<String>>>,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            msgs: Rc::default(),
            open_fails: false,
            exit: 0,
            checked: Rc::default(),
            unknown: Vec::new(),
            logged: Rc::default(),
        }
    }
    fn stored(&self) -> Vec<Stored> {
        self.msgs.borrow().clone()
    }
}

struct FakeMsg {
    msgs: Rc<RefCell<Vec<Stored>>>,
    i: usize,
    exit: i32,
}

impl FakeMsg {
    fn with<R>(&self, f: impl FnOnce(&mut Stored) -> R) -> R {
        f(&mut self.msgs.borrow_mut()[self.i])
    }
}

impl Message for FakeMsg {
    fn pid(&self) -> u32 {
        4242
    }
    fn put(&mut self, data: &[u8]) {
        self.with(|s| {
            assert!(s.from.is_none(), "put after from");
            if !s.failed {
                s.data.extend_from_slice(data)
            }
        });
    }
    fn fail(&mut self) {
        self.with(|s| s.failed = true);
    }
    fn from(&mut self, sender: &[u8]) {
        self.with(|s| s.from = Some(sender.to_vec()));
    }
    fn to(&mut self, r: &[u8]) {
        self.with(|s| s.to.push(r.to_vec()));
    }
    fn close(self) -> Result<(), QueueError> {
        let failed = self.with(|s| {
            s.closed = true;
            s.failed
        });
        QueueError::from_exit(self.exit, failed)
    }
    fn abandon(self) {
        self.with(|s| s.abandoned = true);
    }
}

impl Backend for Fake {
    type Message = FakeMsg;
    fn open_message(&mut self, auth_user: Option<&[u8]>) -> io::Result<FakeMsg> {
        if self.open_fails {
            return Err(io::Error::other("no fork"));
        }
        let mut v = self.msgs.borrow_mut();
        v.push(Stored {
            auth_user: auth_user.map(<[u8]>::to_vec),
            ..Stored::default()
        });
        Ok(FakeMsg {
            msgs: self.msgs.clone(),
            i: v.len() - 1,
            exit: self.exit,
        })
    }
    fn now(&mut self) -> u64 {
        812_090_814
    }
    /// joe/secret is right; "temp" gives 111; "crash" crashes.
    fn check_password(
        &mut self,
        argv: &[Vec<u8>],
        creds: &Credentials,
        _timeout: std::time::Duration,
    ) -> checkpw::Verdict {
        self.checked.borrow_mut().push((
            argv.to_vec(),
            creds.user.clone(),
            creds.pass.clone(),
            creds.timestamp.clone(),
        ));
        match (&creds.user[..], &creds.pass[..]) {
            (b"joe", b"secret") => checkpw::Verdict::Accepted,
            (b"temp", _) => checkpw::Verdict::TempFail,
            (b"crash", _) => checkpw::Verdict::Crashed,
            _ => checkpw::Verdict::Rejected,
        }
    }
    fn check_recipient(&mut self, rcpt: &[u8]) -> io::Result<rcptcheck::Verdict> {
        if rcpt == b"broken@mx.example" {
            return Err(io::Error::other("unreadable"));
        }
        if rcpt == b"getpwfails@mx.example" {
            return Ok(rcptcheck::Verdict::TempFail(
                "qmail-getpw exited 116".into(),
            ));
        }
        Ok(if self.unknown.iter().any(|u| u == rcpt) {
            rcptcheck::Verdict::Unknown
        } else {
            rcptcheck::Verdict::Accept
        })
    }
    fn log(&mut self, line: &str) {
        self.logged.borrow_mut().push(line.to_string());
    }
}

fn cfg() -> Config {
    let mut c = Config::new(b"mx.example");
    c.ipme = vec![Ipv4Addr::UNSPECIFIED, Ipv4Addr::LOCALHOST];
    c
}

fn session(c: Config) -> (Session<Fake>, Fake) {
    let f = Fake::new();
    (Session::new(c, f.clone()), f)
}

/// Feeds `input` and returns the output as a string.
fn talk(s: &mut Session<Fake>, input: &str) -> String {
    s.feed(input.as_bytes());
    String::from_utf8(s.take_output()).unwrap()
}

const DATE: &str = "26 Sep 1995 04:46:54 -0000";

#[test]
fn greeting_and_a_whole_dialogue() {
    let (mut s, f) = session(cfg());
    assert_eq!(talk(&mut s, ""), "220 mx.example ESMTP\r\n");
    assert_eq!(
        talk(&mut s, "HELO client.example\r\n"),
        "250 mx.example\r\n"
    );
    assert_eq!(talk(&mut s, "MAIL FROM:<a@b.example>\r\n"), "250 ok\r\n");
    assert_eq!(talk(&mut s, "RCPT TO:<c@d.example>\r\n"), "250 ok\r\n");
    assert_eq!(talk(&mut s, "DATA\r\n"), "354 go ahead\r\n");
    assert!(s.in_data());
    assert_eq!(
        talk(&mut s, "Subject: hi\r\n\r\nbody\r\n..dot\r\n.\r\n"),
        "250 ok 812090814 qp 4242\r\n"
    );
    assert_eq!(talk(&mut s, "QUIT\r\n"), "221 mx.example\r\n");
    assert_eq!(s.finished(), Some(Exit::Quit));
    assert_eq!(Exit::Quit.code(), control::Exit::OK);
    let m = &f.stored()[0];
    assert_eq!(
        String::from_utf8(m.data.clone()).unwrap(),
        format!(
            "Received: from unknown (HELO client.example) (unknown)\n  by unknown with SMTP; {DATE}\nSubject: hi\n\nbody\n.dot\n"
        )
    );
    assert_eq!(m.from.as_deref(), Some(&b"a@b.example"[..]));
    assert_eq!(m.to, vec![b"c@d.example".to_vec()]);
    assert!(m.closed && !m.failed);
    assert_eq!(m.auth_user, None);
}

#[test]
fn ehlo_lists_the_extensions() {
    let (mut s, _) = session(cfg());
    s.take_output();
    assert_eq!(
        talk(&mut s, "ehlo x\r\n"),
        "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    );
}

#[test]
fn fixed_replies() {
    let (mut s, _) = session(cfg());
    s.take_output();
    assert_eq!(talk(&mut s, "NOOP\r\n"), "250 ok\r\n");
    assert_eq!(talk(&mut s, "noop anything\r\n"), "250 ok\r\n");
    assert_eq!(
        talk(&mut s, "VRFY root\r\n"),
        "252 send some mail, i'll try my best\r\n"
    );
    assert_eq!(
        talk(&mut s, "HELP\r\n"),
        "214 netqmail home page: http://qmail.org/netqmail\r\n"
    );
    assert_eq!(talk(&mut s, "RSET\r\n"), "250 flushed\r\n");
    assert_eq!(talk(&mut s, "EXPN x\r\n"), "502 unimplemented (#5.5.1)\r\n");
    assert_eq!(talk(&mut s, "\r\n"), "502 unimplemented (#5.5.1)\r\n");
    assert_eq!(
        talk(&mut s, "STARTTLS\r\n"),
        "502 unimplemented (#5.5.1)\r\n"
    );
    // a line with only LF is a command line too
    assert_eq!(talk(&mut s, "NOOP\n"), "250 ok\r\n");
    assert_eq!(s.finished(), None);
}

#[test]
fn sequence_errors() {
    let (mut s, _) = session(cfg());
    s.take_output();
    assert_eq!(
        talk(&mut s, "RCPT TO:<a@b>\r\n"),
        "503 MAIL first (#5.5.1)\r\n"
    );
    assert_eq!(talk(&mut s, "DATA\r\n"), "503 MAIL first (#5.5.1)\r\n");
    assert_eq!(talk(&mut s, "MAIL FROM:<>\r\n"), "250 ok\r\n");
    assert_eq!(talk(&mut s, "DATA\r\n"), "503 RCPT first (#5.5.1)\r\n");
    assert_eq!(talk(&mut s, "RSET\r\n"), "250 flushed\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<a@b>\r\n"),
        "503 MAIL first (#5.5.1)\r\n"
    );
    // HELO and EHLO forget the sender too
    talk(&mut s, "MAIL FROM:<>\r\n");
    talk(&mut s, "EHLO x\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<a@b>\r\n"),
        "503 MAIL first (#5.5.1)\r\n"
    );
}

#[test]
fn a_new_mail_forgets_the_recipients() {
    let (mut s, f) = session(cfg());
    talk(
        &mut s,
        "MAIL FROM:<a@x>\r\nRCPT TO:<one@x>\r\nMAIL FROM:<b@x>\r\n",
    );
    assert_eq!(talk(&mut s, "DATA\r\n"), "503 RCPT first (#5.5.1)\r\n");
    talk(&mut s, "RCPT TO:<two@x>\r\nDATA\r\n.\r\n");
    let m = &f.stored()[0];
    assert_eq!(m.from.as_deref(), Some(&b"b@x"[..]));
    assert_eq!(m.to, vec![b"two@x".to_vec()]);
    // after DATA a new MAIL is needed
    assert_eq!(
        talk(&mut s, "RCPT TO:<a@b>\r\n"),
        "503 MAIL first (#5.5.1)\r\n"
    );
}

#[test]
fn syntax_errors_keep_the_state() {
    let (mut s, _) = session(cfg());
    s.take_output();
    let long = format!("<{}>", "a".repeat(900));
    assert_eq!(
        talk(&mut s, &format!("MAIL FROM:{long}\r\n")),
        "555 syntax error (#5.5.4)\r\n"
    );
    assert_eq!(
        talk(&mut s, "RCPT TO:<a@b>\r\n"),
        "503 MAIL first (#5.5.1)\r\n"
    );
    talk(&mut s, "MAIL FROM:<a@b>\r\n");
    assert_eq!(
        talk(&mut s, &format!("RCPT TO:{long}\r\n")),
        "555 syntax error (#5.5.4)\r\n"
    );
    let ok = format!("<{}>", "a".repeat(899));
    assert_eq!(talk(&mut s, &format!("RCPT TO:{ok}\r\n")), "250 ok\r\n");
    // an overlong MAIL keeps the earlier sender and recipients
    assert_eq!(
        talk(&mut s, &format!("MAIL FROM:{long}\r\n")),
        "555 syntax error (#5.5.4)\r\n"
    );
    assert_eq!(talk(&mut s, "DATA\r\n"), "354 go ahead\r\n");
}

#[test]
fn pipelined_commands_in_one_piece() {
    let (mut s, f) = session(cfg());
    let out = talk(
        &mut s,
        "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\nNOOP\r\n",
    );
    assert_eq!(
        out,
        "220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go ahead\r\n250 ok 812090814 qp 4242\r\n221 mx.example\r\n"
    );
    assert_eq!(f.stored()[0].to.len(), 2);
}

#[test]
fn feed_stops_at_quit() {
    let (mut s, _) = session(cfg());
    let input = b"QUIT\r\nNOOP\r\n";
    assert_eq!(s.feed(input), 6);
    assert_eq!(s.feed(b"NOOP\r\n"), 0);
}

#[test]
fn host_addresses_are_listed_when_a_literal_first_needs_them() {
    let mut c = Config::new(b"mx.example");
    c.rcpthosts = RcptHosts::from_entries(Some(["mx.example"]));
    c.ipme_pending = true;
    let (mut s, _) = session(c);
    s.take_output();
    talk(&mut s, "MAIL FROM:<a@b>\r\n");
    assert_eq!(talk(&mut s, "RCPT TO:<u@mx.example>\r\n"), "250 ok\r\n");
    assert!(s.config().ipme_pending, "no literal yet: nothing listed");
    // 127.0.0.1 is this host's (the loopback interface is up): rewritten to localiphost.
    assert_eq!(talk(&mut s, "RCPT TO:<u@[127.0.0.1]>\r\n"), "250 ok\r\n");
    assert!(!s.config().ipme_pending);
    assert!(s.config().ipme.contains(&Ipv4Addr::LOCALHOST));
    assert!(s.config().ipme.contains(&Ipv4Addr::UNSPECIFIED));
    assert_eq!(
        talk(&mut s, "RCPT TO:<u@[192.0.2.1]>\r\n"),
        "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n"
    );
    // Without localiphost no literal is rewritten, and nothing is listed.
    let mut c = Config::new(b"mx.example");
    c.localiphost = None;
    c.ipme_pending = true;
    let (mut s, _) = session(c);
    talk(&mut s, "MAIL FROM:<a@[127.0.0.1]>\r\n");
    assert!(s.config().ipme_pending);
}

#[test]
fn rcpthosts_and_relayclient() {
    let mut c = cfg();
    c.rcpthosts = RcptHosts::from_entries(Some(["mx.example", ".hosted.example"]));
    let (mut s, _) = session(c);
    s.take_output();
    talk(&mut s, "MAIL FROM:<a@b>\r\n");
    assert_eq!(talk(&mut s, "RCPT TO:<u@mx.example>\r\n"), "250 ok\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<u@x.hosted.example>\r\n"),
        "250 ok\r\n"
    );
    assert_eq!(talk(&mut s, "RCPT TO:<postmaster>\r\n"), "250 ok\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<u@elsewhere.example>\r\n"),
        "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n"
    );
    // the local-IP literal is rewritten before rcpthosts is consulted
    assert_eq!(talk(&mut s, "RCPT TO:<u@[127.0.0.1]>\r\n"), "250 ok\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<u@[192.0.2.1]>\r\n"),
        "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n"
    );

    let mut c = cfg();
    c.rcpthosts = RcptHosts::from_entries(Some(["mx.example"]));
    c.relayclient = Some(b"+relayed".to_vec());
    let (mut s, f) = session(c);
    talk(&mut s, "MAIL FROM:<a@b>\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<u@elsewhere.example>\r\n"),
        "250 ok\r\n"
    );
    talk(&mut s, "DATA\r\n.\r\n");
    assert_eq!(
        f.stored()[0].to,
        vec![b"u@elsewhere.example+relayed".to_vec()]
    );
}

#[test]
fn badmailfrom_refuses_at_rcpt() {
    let mut c = cfg();
    c.badmailfrom = BadMailFrom::from_entries(["spam@bad.example", "@worse.example"]);
    let (mut s, _) = session(c);
    s.take_output();
    assert_eq!(
        talk(&mut s, "MAIL FROM:<SPAM@bad.example>\r\n"),
        "250 ok\r\n"
    );
    let bmf = "553 sorry, your envelope sender is in my badmailfrom list (#5.7.1)\r\n";
    assert_eq!(talk(&mut s, "RCPT TO:<a@b>\r\n"), bmf);
    // the syntax check comes first
    assert_eq!(
        talk(&mut s, &format!("RCPT TO:<{}>\r\n", "x".repeat(1000))),
        "555 syntax error (#5.5.4)\r\n"
    );
    assert_eq!(talk(&mut s, "DATA\r\n"), "503 RCPT first (#5.5.1)\r\n");
    talk(&mut s, "MAIL FROM:<x@worse.example>\r\n");
    assert_eq!(talk(&mut s, "RCPT TO:<a@b>\r\n"), bmf);
    talk(&mut s, "MAIL FROM:<x@good.example>\r\n");
    assert_eq!(talk(&mut s, "RCPT TO:<a@b>\r\n"), "250 ok\r\n");
}

#[test]
fn databytes_limit() {
    let mut c = cfg();
    c.databytes = 10;
    let (mut s, f) = session(c);
    talk(&mut s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    s.take_output();
    assert_eq!(
        talk(&mut s, "123456789\r\n.\r\n"),
        "250 ok 812090814 qp 4242\r\n"
    );
    talk(&mut s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    s.take_output();
    assert_eq!(
        talk(&mut s, "1234567890\r\n.\r\n"),
        "552 sorry, that message size exceeds my databytes limit (#5.3.4)\r\n"
    );
    assert!(f.stored()[1].failed);
    assert_eq!(s.finished(), None);
}

#[test]
fn too_many_hops() {
    let (mut s, f) = session(cfg());
    talk(&mut s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    s.take_output();
    let mut msg = "Delivered-To: x\r\n".repeat(99);
    msg.push_str("\r\n.\r\n");
    assert_eq!(talk(&mut s, &msg), "250 ok 812090814 qp 4242\r\n");
    talk(&mut s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    s.take_output();
    let mut msg = "Received: x\r\n".repeat(100);
    msg.push_str("\r\n.\r\n");
    assert_eq!(
        talk(&mut s, &msg),
        "554 too many hops, this message is looping (#5.4.6)\r\n"
    );
    assert!(f.stored()[1].failed);
}

#[test]
fn queue_failures() {
    for (code, reply) in [
        (53, "451 qq write error or disk full (#4.3.0)\r\n"),
        (
            31,
            "554 mail server permanently rejected message (#5.3.0)\r\n",
        ),
        (11, "554 envelope address too long for qq (#5.1.3)\r\n"),
        (120, "451 unable to exec qq (#4.3.0)\r\n"),
        (99, "451 qq temporary problem (#4.3.0)\r\n"),
    ] {
        let f = Fake {
            exit: code,
            ..Fake::new()
        };
        let mut s = Session::new(cfg(), f);
        talk(&mut s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
        s.take_output();
        assert_eq!(talk(&mut s, "x\r\n.\r\n"), reply);
    }
    let f = Fake {
        open_fails: true,
        ..Fake::new()
    };
    let mut s = Session::new(cfg(), f);
    s.take_output();
    talk(&mut s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    assert_eq!(talk(&mut s, "DATA\r\n"), "451 qqt failure (#4.3.0)\r\n");
    // as in netqmail, the sender is forgotten and what follows is read as commands
    assert_eq!(talk(&mut s, "x\r\n"), "502 unimplemented (#5.5.1)\r\n");
    assert_eq!(talk(&mut s, "DATA\r\n"), "503 MAIL first (#5.5.1)\r\n");
}

#[test]
fn bare_lf_in_data_ends_the_session() {
    let (mut s, f) = session(cfg());
    talk(&mut s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    s.take_output();
    let used = s.feed(b"line one\nQUIT\r\n");
    assert_eq!(used, 9);
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "451 See http://pobox.com/~djb/docs/smtplf.html.\r\n"
    );
    assert_eq!(s.finished(), Some(Exit::Failure));
    drop(s);
    let m = &f.stored()[0];
    assert!(m.abandoned && !m.closed);
}

#[test]
fn bare_lf_in_commands_is_fine() {
    let (mut s, _) = session(cfg());
    s.take_output();
    assert_eq!(
        talk(&mut s, "MAIL FROM:<a@b>\nRCPT TO:<c@d>\n"),
        "250 ok\r\n250 ok\r\n"
    );
}

#[test]
fn timeout_and_eof() {
    let (mut s, _) = session(cfg());
    s.take_output();
    s.timed_out();
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "451 timeout (#4.4.2)\r\n"
    );
    assert_eq!(s.finished(), Some(Exit::Failure));
    let (mut s, f) = session(cfg());
    talk(
        &mut s,
        "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial",
    );
    s.take_output();
    s.eof();
    assert!(s.take_output().is_empty());
    assert_eq!(s.finished(), Some(Exit::Failure));
    drop(s);
    assert!(f.stored()[0].abandoned);
}

#[test]
fn overlong_lines_get_500_and_the_session_goes_on() {
    let (mut s, _) = session(cfg());
    s.take_output();
    let long = "X".repeat(MAX_LINE + 1);
    for piece in long.as_bytes().chunks(1000) {
        s.feed(piece);
    }
    assert!(s.take_output().is_empty());
    assert_eq!(
        talk(&mut s, "\r\nNOOP\r\n"),
        "500 command line too long (#5.5.2)\r\n250 ok\r\n"
    );
    // exactly MAX_LINE bytes is still a command line
    let max = format!("NOOP {}\r", "x".repeat(MAX_LINE - 6));
    assert_eq!(max.len(), MAX_LINE);
    assert_eq!(talk(&mut s, &format!("{max}\n")), "250 ok\r\n");
}

#[test]
fn recipient_limit() {
    let (mut s, f) = session(cfg());
    talk(&mut s, "MAIL FROM:<a@b>\r\n");
    let many = "RCPT TO:<r@x>\r\n".repeat(MAX_RECIPIENTS);
    s.feed(many.as_bytes());
    s.take_output();
    assert_eq!(
        talk(&mut s, "RCPT TO:<one-more@x>\r\n"),
        "452 too many recipients (#4.5.3)\r\n"
    );
    talk(&mut s, "DATA\r\n.\r\n");
    assert_eq!(f.stored()[0].to.len(), MAX_RECIPIENTS);
}

#[test]
fn received_header_facts() {
    let mut c = cfg();
    c.remote = crate::config::Remote {
        ip: b"192.0.2.7".to_vec(),
        host: b"Client.Example".to_vec(),
        info: Some(b"ident user".to_vec()),
        local: b"mx.example".to_vec(),
    };
    let (mut s, f) = session(c);
    // HELO equal to the remote host (ignoring case): no "(HELO ...)"
    talk(
        &mut s,
        "HELO client.example\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n.\r\n",
    );
    // a different HELO is shown, filtered
    talk(
        &mut s,
        "HELO [192.0.2.7] x_y\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n.\r\n",
    );
    // an empty HELO is shown as empty
    talk(
        &mut s,
        "HELO\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n.\r\n",
    );
    let m = f.stored();
    let first_line = |i: usize| {
        let d = String::from_utf8(m[i].data.clone()).unwrap();
        d.lines().next().unwrap().to_string()
    };
    assert_eq!(
        first_line(0),
        "Received: from Client.Example (ident?user@192.0.2.7)"
    );
    assert_eq!(
        first_line(1),
        "Received: from Client.Example (HELO ?192.0.2.7??x?y) (ident?user@192.0.2.7)"
    );
    assert_eq!(
        first_line(2),
        "Received: from Client.Example (HELO ) (ident?user@192.0.2.7)"
    );
    assert!(
        String::from_utf8(m[0].data.clone())
            .unwrap()
            .contains("\n  by mx.example with SMTP; ")
    );
}

#[test]
fn nul_truncates_the_command_line() {
    let (mut s, f) = session(cfg());
    s.take_output();
    assert_eq!(talk(&mut s, "MAIL FROM:<a\0@evil>\r\n"), "250 ok\r\n");
    talk(&mut s, "RCPT TO:<b\0c>\r\nDATA\r\n.\r\n");
    let m = &f.stored()[0];
    assert_eq!(m.from.as_deref(), Some(&b"a"[..]));
    assert_eq!(m.to, vec![b"b".to_vec()]);
}

#[test]
fn message_body_is_streamed_in_pieces() {
    let (mut s, f) = session(cfg());
    talk(&mut s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    let body: String = (0..5000).map(|i| format!("line {i}\r\n")).collect();
    s.feed(body.as_bytes());
    s.feed(b".\r\n");
    let m = &f.stored()[0];
    let want = body.replace("\r\n", "\n");
    assert!(m.data.ends_with(want.as_bytes()));
}

/// A reply stream is a series of lines `DDD-text` ... `DDD text`, each ending in CR LF,
/// with no CR or LF inside, and each multi-line reply using one code.
fn well_formed(out: &[u8]) -> Result<(), String> {
    let s = std::str::from_utf8(out).map_err(|e| e.to_string())?;
    if !s.is_empty() && !s.ends_with("\r\n") {
        return Err(format!("unterminated: {s:?}"));
    }
    let mut code: Option<&str> = None;
    for line in s.split_terminator("\r\n") {
        let b = line.as_bytes();
        if b.len() < 4 || !b[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&b[0]) {
            return Err(format!("bad line {line:?}"));
        }
        if line.contains(['\r', '\n']) {
            return Err(format!("CR or LF inside {line:?}"));
        }
        if let Some(c) = code
            && c != &line[..3]
        {
            return Err(format!("code changed inside a reply: {line:?}"));
        }
        code = match b[3] {
            b'-' => Some(&line[..3]),
            b' ' => None,
            _ => return Err(format!("bad separator in {line:?}")),
        };
    }
    if code.is_some() {
        return Err("multi-line reply not finished".into());
    }
    Ok(())
}

fn smtp_words() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"HELO x\r\n".to_vec()),
        Just(b"EHLO x\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b>\r\n".to_vec()),
        Just(b"MAIL FROM:<>\r\n".to_vec()),
        Just(b"RCPT TO:<c@d>\r\n".to_vec()),
        Just(b"RCPT TO:<c@[127.0.0.1]>\r\n".to_vec()),
        Just(b"DATA\r\n".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        Just(b"NOOP\r\n".to_vec()),
        Just(b"VRFY x\r\n".to_vec()),
        Just(b"HELP\r\n".to_vec()),
        Just(b".\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"Received: x\r\n".to_vec()),
        Just(b"..\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"QUIT\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn run_chunked(
    input: &[u8],
    chunks: &[usize],
    databytes: u64,
) -> (Vec<u8>, Vec<Stored>, Option<Exit>) {
    let mut c = cfg();
    c.databytes = databytes;
    c.rcpthosts = RcptHosts::from_entries(Some(["d", "mx.example"]));
    let (mut s, f) = session(c);
    let mut out = s.take_output();
    let mut i = 0;
    let mut k = 0;
    while i < input.len() && s.finished().is_none() {
        let n = chunks.get(k).copied().unwrap_or(input.len()).max(1);
        k += 1;
        let end = input.len().min(i + n);
        let used = s.feed(&input[i..end]);
        assert!(used <= end - i);
        assert!(used == end - i || s.finished().is_some());
        i += used;
        out.extend(s.take_output());
    }
    let fin = s.finished();
    drop(s);
    (out, f.stored(), fin)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn replies_are_well_formed(input in smtp_words(), databytes in prop::sample::select(vec![0u64, 5, 50])) {
        let (out, _, _) = run_chunked(&input, &[], databytes);
        if let Err(e) = well_formed(&out) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn chunking_does_not_matter(input in smtp_words(), chunks in proptest::collection::vec(1usize..20, 0..200)) {
        let whole = run_chunked(&input, &[], 0);
        let pieces = run_chunked(&input, &chunks, 0);
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let (out, stored, _) = run_chunked(&input, &[7, 100, 3], 20);
        prop_assert!(well_formed(&out).is_ok());
        for m in stored {
            if let Some(f) = &m.from {
                prop_assert!(!f.contains(&0) && f.len() <= addr::MAX_ADDR);
            }
            for t in &m.to {
                prop_assert!(!t.contains(&0) && t.len() <= addr::MAX_ADDR);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// STARTTLS, AUTH, SIZE, recipient validation

fn tls13() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3",
        cipher: "TLS_AES_128_GCM_SHA256",
        client_verified: false,
        client_email: None,
    }
}

fn tls_cfg() -> Config {
    let mut c = cfg();
    c.tls.offer = true;
    c
}

fn auth_cfg(plaintext: bool) -> Config {
    let mut c = tls_cfg();
    c.auth = Some(crate::config::AuthConfig {
        hostname: b"mx.example".to_vec(),
        program: vec![b"/bin/checkpassword".to_vec(), b"/bin/true".to_vec()],
        required: false,
        cram: true,
        plaintext,
    });
    c.rcpthosts = RcptHosts::from_entries(Some(["mx.example"]));
    c
}

#[test]
fn starttls_stops_input_and_forgets_everything() {
    let (mut s, f) = session(tls_cfg());
    s.take_output();
    assert_eq!(
        talk(&mut s, "EHLO first\r\n"),
        "250-mx.example\r\n250-STARTTLS\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    );
    let input = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n";
    let used = s.feed(input);
    assert_eq!(
        &input[..used],
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nSTARTTLS\r\n"
    );
    assert!(s.wants_tls());
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "250 ok\r\n250 ok\r\n220 ready for tls\r\n"
    );
    // nothing more is taken until the transport has switched
    assert_eq!(s.feed(b"NOOP\r\n"), 0);
    s.tls_started(tls13());
    assert!(!s.wants_tls());
    assert_eq!(talk(&mut s, "DATA\r\n"), "503 MAIL first (#5.5.1)\r\n");
    assert_eq!(
        talk(&mut s, "MAIL FROM:<a@b>\r\n"),
        "503 EHLO first (#5.5.1)\r\n"
    );
    assert_eq!(
        talk(&mut s, "EHLO second\r\n"),
        "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    );
    assert_eq!(
        talk(&mut s, "STARTTLS\r\n"),
        "502 unimplemented (#5.5.1)\r\n"
    );
    talk(&mut s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    assert_eq!(talk(&mut s, "x\r\n.\r\n"), "250 ok 812090814 qp 4242\r\n");
    let m = String::from_utf8(f.stored()[0].data.clone()).unwrap();
    assert!(
        m.starts_with(
            "Received: from unknown (HELO second) (unknown)\n  by unknown with ESMTPS (TLSv1.3 TLS_AES_128_GCM_SHA256 encrypted); "
        ),
        "{m}"
    );
    // HELO satisfies the new greeting too
    let (mut s, _) = session(tls_cfg());
    s.feed(b"STARTTLS\n");
    s.tls_started(tls13());
    s.take_output();
    assert_eq!(
        talk(&mut s, "HELO x\r\nMAIL FROM:<a@b>\r\n"),
        "250 mx.example\r\n250 ok\r\n"
    );
}

#[test]
fn smtps_sessions_need_no_new_helo() {
    let (mut s, _) = session(tls_cfg());
    s.smtps_started(tls13());
    assert_eq!(s.tls(), Some(&tls13()));
    s.take_output();
    assert_eq!(
        talk(&mut s, "EHLO x\r\nMAIL FROM:<a@b>\r\n"),
        "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n250 ok\r\n"
    );
    assert_eq!(
        s.protocol(),
        "ESMTPS (TLSv1.3 TLS_AES_128_GCM_SHA256 encrypted)"
    );
}

#[test]
fn auth_mechanisms_and_relaying() {
    let (mut s, f) = session(auth_cfg(true));
    s.take_output();
    assert_eq!(
        talk(&mut s, "EHLO x\r\n"),
        "250-mx.example\r\n250-STARTTLS\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 AUTH LOGIN PLAIN CRAM-MD5\r\n"
    );
    // not yet: relaying refused
    talk(&mut s, "MAIL FROM:<a@b>\r\n");
    assert!(talk(&mut s, "RCPT TO:<far@remote>\r\n").starts_with("553 "));
    talk(&mut s, "RSET\r\n");
    // LOGIN in two steps, the second with a wrong password
    assert_eq!(talk(&mut s, "AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(talk(&mut s, "am9l\r\n"), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(
        talk(&mut s, "d3Jvbmc=\r\n"),
        "535 authorization failed (#5.7.0)\r\n"
    );
    // CRAM-MD5: the digest as the password, the challenge as the timestamp
    let out = talk(&mut s, "AUTH CRAM-MD5\r\n");
    let ch = auth::b64decode(out.trim_end().strip_prefix("334 ").unwrap().as_bytes()).unwrap();
    let ch = String::from_utf8(ch).unwrap();
    assert!(
        ch.starts_with('<') && ch.ends_with(".812090814@mx.example>"),
        "{ch}"
    );
    let answer = auth::b64encode(b"joe 0123456789abcdef0123456789abcdef");
    assert_eq!(
        talk(&mut s, &format!("{answer}\r\n")),
        "535 authorization failed (#5.7.0)\r\n"
    );
    {
        let c = f.checked.borrow();
        assert_eq!(c[1].1, b"joe");
        assert_eq!(c[1].2, b"0123456789abcdef0123456789abcdef");
        assert_eq!(c[1].3, ch.as_bytes());
        assert_eq!(
            c[1].0,
            vec![b"/bin/checkpassword".to_vec(), b"/bin/true".to_vec()]
        );
    }
    // PLAIN with the initial response
    assert_eq!(
        talk(&mut s, "AUTH PLAIN AGpvZQBzZWNyZXQ=\r\n"),
        "235 ok, go ahead (#2.0.0)\r\n"
    );
    assert_eq!(s.auth_user(), Some(&b"joe"[..]));
    talk(&mut s, "MAIL FROM:<joe@b>\r\n");
    assert_eq!(talk(&mut s, "RCPT TO:<far@remote>\r\n"), "250 ok\r\n");
    talk(&mut s, "DATA\r\n");
    talk(&mut s, "x\r\n.\r\n");
    let m = String::from_utf8(f.stored()[0].data.clone()).unwrap();
    assert!(
        m.starts_with("Received: from unknown (HELO x) (joe@unknown)\n  by unknown with ESMTPA; "),
        "{m}"
    );
    // RELAYCLIENT's suffix is not appended for an authenticated client
    assert_eq!(f.stored()[0].to, vec![b"far@remote".to_vec()]);
    // The queue program is told who authenticated (SMTPAUTHUSER).
    assert_eq!(f.stored()[0].auth_user.as_deref(), Some(&b"joe"[..]));
    let logged = f.logged.borrow().join("\n");
    assert!(
        logged.contains("auth-failed type=login user=<joe> remote=unknown"),
        "{logged}"
    );
    assert!(
        logged.contains("auth-failed type=cram-md5 user=<joe>"),
        "{logged}"
    );
    assert!(
        logged.contains("auth-success type=plain user=<joe>"),
        "{logged}"
    );
}

#[test]
fn third_auth_failure_ends_the_session() {
    let (mut s, _) = session(auth_cfg(true));
    s.take_output();
    let bad = "AUTH PLAIN AGpvZQB3cm9uZw==\r\n";
    assert_eq!(talk(&mut s, bad), "535 authorization failed (#5.7.0)\r\n");
    // temporary failures and crashes do not count
    assert_eq!(
        talk(&mut s, "AUTH PLAIN AHRlbXAAeA==\r\n"),
        "454 temporary authentication failure (#4.3.0)\r\n"
    );
    assert_eq!(
        talk(&mut s, "AUTH PLAIN AGNyYXNoAHg=\r\n"),
        "454 oops, problem with child and I can't auth (#4.3.0)\r\n"
    );
    assert_eq!(talk(&mut s, bad), "535 authorization failed (#5.7.0)\r\n");
    assert_eq!(
        talk(&mut s, bad),
        "421 too many authentication failures (#4.7.0)\r\n"
    );
    assert_eq!(s.finished(), Some(Exit::Failure));
}

#[test]
fn starttls_forgets_an_earlier_auth() {
    let (mut s, _) = session(auth_cfg(true));
    s.take_output();
    talk(&mut s, "AUTH PLAIN AGpvZQBzZWNyZXQ=\r\nSTARTTLS\r\n");
    s.tls_started(tls13());
    assert_eq!(s.auth_user(), None);
    talk(&mut s, "EHLO x\r\nMAIL FROM:<a@b>\r\n");
    assert!(talk(&mut s, "RCPT TO:<far@remote>\r\n").starts_with("553 "));
    assert_eq!(
        s.protocol(),
        "ESMTPS (TLSv1.3 TLS_AES_128_GCM_SHA256 encrypted)"
    );
    talk(&mut s, "RSET\r\nAUTH PLAIN AGpvZQBzZWNyZXQ=\r\n");
    assert_eq!(
        s.protocol(),
        "ESMTPSA (TLSv1.3 TLS_AES_128_GCM_SHA256 encrypted, authenticated)"
    );
}

#[test]
fn auth_without_tls_and_an_overlong_answer() {
    let (mut s, _) = session(auth_cfg(false));
    s.take_output();
    assert!(!talk(&mut s, "EHLO x\r\n").contains("AUTH"));
    assert_eq!(
        talk(&mut s, "AUTH PLAIN\r\n"),
        "538 auth not available without TLS (#5.3.3)\r\n"
    );
    let (mut s, _) = session(auth_cfg(true));
    s.take_output();
    assert_eq!(talk(&mut s, "AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(
        talk(&mut s, &format!("{}\r\n", "A".repeat(MAX_LINE + 10))),
        "500 command line too long (#5.5.2)\r\n"
    );
    // the exchange is over: the next line is a command again
    assert_eq!(talk(&mut s, "NOOP\r\n"), "250 ok\r\n");
}

#[test]
fn size_parameter_at_mail() {
    let mut c = cfg();
    c.databytes = 100;
    let (mut s, _) = session(c);
    s.take_output();
    assert!(talk(&mut s, "EHLO x\r\n").ends_with("250 SIZE 100\r\n"));
    assert_eq!(
        talk(&mut s, "MAIL FROM:<a@b> SIZE=101\r\n"),
        "552 sorry, that message size exceeds my databytes limit (#5.3.4)\r\n"
    );
    assert_eq!(
        talk(&mut s, "RCPT TO:<c@d>\r\n"),
        "503 MAIL first (#5.5.1)\r\n"
    );
    assert_eq!(talk(&mut s, "MAIL FROM:<a@b> size=100\r\n"), "250 ok\r\n");
    assert_eq!(talk(&mut s, "MAIL FROM:<a@b> SIZE=junk\r\n"), "250 ok\r\n");
}

#[test]
fn recipient_validation_answers() {
    let f = Fake {
        unknown: vec![b"nobody@mx.example".to_vec()],
        ..Fake::new()
    };
    let mut c = cfg();
    c.rcpthosts = RcptHosts::from_entries(Some(["mx.example"]));
    let mut s = Session::new(c, f.clone());
    s.take_output();
    talk(&mut s, "MAIL FROM:<a@b>\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<nobody@mx.example>\r\n"),
        "550 sorry, no mailbox here by that name (#5.1.1)\r\n"
    );
    assert_eq!(talk(&mut s, "RCPT TO:<joe@mx.example>\r\n"), "250 ok\r\n");
    // qmail-getpw gave no answer: a temporary error for this recipient, the session goes on
    assert_eq!(
        talk(&mut s, "RCPT TO:<getpwfails@mx.example>\r\n"),
        "451 unable to check recipient (#4.3.0)\r\n"
    );
    assert!(
        f.logged
            .borrow()
            .iter()
            .any(|l| l == "recipient check: qmail-getpw exited 116")
    );
    assert_eq!(talk(&mut s, "RCPT TO:<joe@mx.example>\r\n"), "250 ok\r\n");
    // rcpthosts comes first
    assert!(talk(&mut s, "RCPT TO:<x@elsewhere>\r\n").starts_with("553 "));
    assert_eq!(
        talk(&mut s, "RCPT TO:<broken@mx.example>\r\n"),
        "421 unable to read controls (#4.3.0)\r\n"
    );
    assert_eq!(s.finished(), Some(Exit::Failure));
    // relayed recipients are not validated
    let mut c = cfg();
    c.relayclient = Some(Vec::new());
    let mut s = Session::new(c, f);
    s.take_output();
    talk(&mut s, "MAIL FROM:<a@b>\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<nobody@mx.example>\r\n"),
        "250 ok\r\n"
    );
}

fn secure_words() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"EHLO x\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b> SIZE=10\r\n".to_vec()),
        Just(b"RCPT TO:<c@mx.example>\r\n".to_vec()),
        Just(b"RCPT TO:<far@remote>\r\n".to_vec()),
        Just(b"DATA\r\n".to_vec()),
        Just(b".\r\n".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        Just(b"STARTTLS\r\n".to_vec()),
        Just(b"STARTTLS\n".to_vec()),
        Just(b"AUTH PLAIN\r\n".to_vec()),
        Just(b"AUTH LOGIN\r\n".to_vec()),
        Just(b"AUTH CRAM-MD5\r\n".to_vec()),
        Just(b"AUTH PLAIN AGpvZQBzZWNyZXQ=\r\n".to_vec()),
        Just(b"AGpvZQBzZWNyZXQ=\r\n".to_vec()),
        Just(b"am9l\r\n".to_vec()),
        Just(b"*\r\n".to_vec()),
        Just(b"QUIT\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..30),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// Feeds `input` in `chunks` as the transport does: after STARTTLS the rest of the chunk
/// is dropped and TLS starts. Returns the output and the number of TLS starts.
fn run_secure(input: &[u8], chunks: &[usize]) -> (Vec<u8>, usize) {
    let (mut s, _) = session(auth_cfg(false));
    let mut out = s.take_output();
    let (mut i, mut k, mut starts) = (0, 0, 0);
    while i < input.len() && s.finished().is_none() {
        let n = chunks.get(k).copied().unwrap_or(input.len()).max(1);
        k += 1;
        let end = input.len().min(i + n);
        let used = s.feed(&input[i..end]);
        out.extend(s.take_output());
        if s.wants_tls() {
            // what was consumed ends with the STARTTLS line
            let got = &input[..i + used];
            assert_eq!(got.last(), Some(&b'\n'));
            let start = got[..got.len() - 1]
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |p| p + 1);
            let c = command::parse(&got[start..got.len() - 1]);
            assert_eq!((c.verb, c.arg), (Verb::Starttls, &b""[..]));
            starts += 1;
            s.tls_started(tls13());
            i = end;
        } else {
            assert!(used == end - i || s.finished().is_some());
            i += used;
        }
    }
    (out, starts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn secure_sessions_stay_well_formed(input in secure_words(), chunks in proptest::collection::vec(1usize..30, 0..100)) {
        let (out, starts) = run_secure(&input, &chunks);
        prop_assert!(well_formed(&out).is_ok(), "{:?}", String::from_utf8_lossy(&out));
        prop_assert!(starts <= 1);
    }
}

#[test]
fn tlsclients_lets_a_listed_certificate_relay() {
    let setup = |email: Option<&str>, listed: &[&str]| {
        let mut c = tls_cfg();
        c.rcpthosts = RcptHosts::from_entries(Some(["mx.example"]));
        c.tls.clients = listed.iter().map(|l| l.as_bytes().to_vec()).collect();
        let (mut s, f) = session(c);
        s.take_output();
        talk(&mut s, "STARTTLS\r\n");
        s.tls_started(TlsInfo {
            client_verified: email.is_some(),
            client_email: email.map(str::to_string),
            ..tls13()
        });
        talk(&mut s, "EHLO c\r\n");
        talk(&mut s, "MAIL FROM:<a@b>\r\n");
        (s, f)
    };
    let refused = "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n";

    // Listed (case does not matter): relaying allowed, and named in Received.
    let (mut s, f) = setup(Some("Client.One@Example.org"), &["client.one@example.org"]);
    assert_eq!(talk(&mut s, "RCPT TO:<u@mx.example>\r\n"), "250 ok\r\n");
    assert!(!s.protocol().contains("cert"), "not needed yet");
    assert_eq!(talk(&mut s, "RCPT TO:<u@far.example>\r\n"), "250 ok\r\n");
    talk(&mut s, "DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n");
    let m = &f.stored()[0];
    assert_eq!(
        m.to,
        vec![b"u@mx.example".to_vec(), b"u@far.example".to_vec()]
    );
    let text = String::from_utf8_lossy(&m.data).to_string();
    assert!(
        text.contains("encrypted)\n  (cert Client.One@Example.org); "),
        "{text}"
    );

    // Not listed, no address in the certificate, no certificate, no tlsclients.
    for (email, listed) in [
        (Some("other@example.org"), &["client.one@example.org"][..]),
        (None, &["client.one@example.org"][..]),
        (Some("client.one@example.org"), &[][..]),
    ] {
        let (mut s, _) = setup(email, listed);
        assert_eq!(talk(&mut s, "RCPT TO:<u@far.example>\r\n"), refused);
        assert!(!s.protocol().contains("cert"));
    }

    // Without TLS there is no certificate, whatever tlsclients lists.
    let mut c = cfg();
    c.rcpthosts = RcptHosts::from_entries(Some(["mx.example"]));
    c.tls.clients = vec![b"client.one@example.org".to_vec()];
    let (mut s, _) = session(c);
    talk(&mut s, "MAIL FROM:<a@b>\r\n");
    assert_eq!(talk(&mut s, "RCPT TO:<u@far.example>\r\n"), refused);
}

// ---------------------------------------------------------------------------------------
// SMTPUTF8 (control/smtputf8)

fn utf8_cfg() -> Config {
    let mut c = cfg();
    c.smtputf8 = true;
    c
}

#[test]
fn smtputf8_off_is_netqmail() {
    let (mut s, f) = session(cfg());
    s.take_output();
    assert!(!talk(&mut s, "EHLO x\r\n").contains("SMTPUTF8"));
    // Every parameter ignored, 8-bit addresses taken byte for byte, the Received field
    // says SMTP.
    assert_eq!(talk(&mut s, "MAIL FROM:<grå@b.example>\r\n"), "250 ok\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<u\u{fc}@d.example>\r\n"),
        "250 ok\r\n"
    );
    assert_eq!(
        talk(&mut s, "MAIL FROM:<a@b.example> SMTPUTF8\r\n"),
        "250 ok\r\n"
    );
    talk(&mut s, "RCPT TO:<\u{fc}@d.example>\r\nDATA\r\n.\r\n");
    let m = &f.stored()[0];
    assert!(String::from_utf8_lossy(&m.data).contains(" with SMTP; "));
    let mut c = cfg();
    c.rcpthosts = RcptHosts::from_entries(Some(["xn--bcher-kva.example"]));
    let (mut s, _) = session(c);
    talk(&mut s, "MAIL FROM:<a@b>\r\n");
    assert!(talk(&mut s, "RCPT TO:<u@bücher.example>\r\n").starts_with("553 sorry, that domain"));
}

#[test]
fn smtputf8_advertised_and_used() {
    let (mut s, f) = session(utf8_cfg());
    s.take_output();
    assert_eq!(
        talk(&mut s, "EHLO x\r\n"),
        "250-mx.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
    );
    assert_eq!(
        talk(
            &mut s,
            "MAIL FROM:<grå@b.example> BODY=8BITMIME SMTPUTF8\r\n"
        ),
        "250 ok\r\n"
    );
    assert_eq!(
        talk(&mut s, "RCPT TO:<δοκιμή@παράδειγμα.example>\r\n"),
        "250 ok\r\n"
    );
    assert_eq!(talk(&mut s, "RCPT TO:<plain@d.example>\r\n"), "250 ok\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<gr\u{e5}\u{fffd}@d.example>\r\n"),
        "250 ok\r\n"
    );
    s.feed(b"RCPT TO:<gr\xe5@d.example>\r\n");
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        utf8::BAD_RECIPIENT
    );
    talk(&mut s, "DATA\r\nSubject: Grüße\r\n\r\nx\r\n.\r\n");
    let m = &f.stored()[0];
    assert_eq!(m.from.as_deref(), Some("grå@b.example".as_bytes()));
    assert_eq!(m.to.len(), 3);
    assert_eq!(m.to[0], "δοκιμή@παράδειγμα.example".as_bytes());
    assert_eq!(
        String::from_utf8(m.data.clone()).unwrap(),
        format!(
            "Received: from unknown (HELO x) (unknown)\n  by unknown with UTF8SMTP; {DATE}\nSubject: Grüße\n\nx\n"
        )
    );
    // The next transaction without the parameter: ASCII only, and the Received field says
    // SMTP again.
    assert_eq!(talk(&mut s, "MAIL FROM:<a@b.example>\r\n"), "250 ok\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<ü@d.example>\r\n"),
        utf8::NEEDS_SMTPUTF8
    );
    assert_eq!(
        talk(&mut s, "RCPT TO:<u@bücher.example>\r\n"),
        utf8::NEEDS_SMTPUTF8
    );
    assert_eq!(talk(&mut s, "RCPT TO:<u@d.example>\r\n"), "250 ok\r\n");
    talk(&mut s, "DATA\r\n.\r\n");
    assert!(String::from_utf8_lossy(&f.stored()[1].data).contains(" with SMTP; "));
    // MAIL: without the parameter, or not UTF-8.
    assert_eq!(
        talk(&mut s, "MAIL FROM:<grå@b.example>\r\n"),
        utf8::NEEDS_SMTPUTF8
    );
    assert_eq!(talk(&mut s, "RCPT TO:<u@d.example>\r\n"), reply::WANT_MAIL);
    s.feed(b"MAIL FROM:<gr\xe5@b.example> SMTPUTF8\r\n");
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        utf8::BAD_SENDER
    );
    // RSET forgets the parameter.
    assert_eq!(talk(&mut s, "MAIL FROM:<> smtputf8\r\n"), "250 ok\r\n");
    assert_eq!(talk(&mut s, "RCPT TO:<ü@d.example>\r\n"), "250 ok\r\n");
    talk(&mut s, "RSET\r\n");
    assert_eq!(talk(&mut s, "MAIL FROM:<>\r\n"), "250 ok\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<ü@d.example>\r\n"),
        utf8::NEEDS_SMTPUTF8
    );
}

#[test]
fn smtputf8_with_tls_and_auth_names_its_protocol() {
    let mut c = utf8_cfg();
    c.tls = tls_cfg().tls;
    let (mut s, f) = session(c);
    s.take_output();
    talk(&mut s, "EHLO x\r\nSTARTTLS\r\n");
    s.tls_started(tls13());
    assert!(talk(&mut s, "EHLO x\r\n").contains("250 SMTPUTF8\r\n"));
    talk(
        &mut s,
        "MAIL FROM:<ä@b> SMTPUTF8\r\nRCPT TO:<ö@d>\r\nDATA\r\n.\r\n",
    );
    let d = String::from_utf8(f.stored()[0].data.clone()).unwrap();
    assert!(
        d.contains(" with UTF8SMTPS (TLSv1.3 TLS_AES_128_GCM_SHA256 encrypted); "),
        "{d}"
    );
}

#[test]
fn rcpthosts_match_either_form_of_a_domain() {
    let mut c = utf8_cfg();
    c.rcpthosts = RcptHosts::from_entries(Some(["xn--bcher-kva.example", ".städte.example"]));
    let (mut s, _) = session(c);
    s.take_output();
    talk(&mut s, "MAIL FROM:<a@b> SMTPUTF8\r\n");
    assert_eq!(talk(&mut s, "RCPT TO:<u@bücher.example>\r\n"), "250 ok\r\n");
    assert_eq!(talk(&mut s, "RCPT TO:<u@BÜCHER.example>\r\n"), "250 ok\r\n");
    assert_eq!(
        talk(&mut s, "RCPT TO:<u@xn--bcher-kva.example>\r\n"),
        "250 ok\r\n"
    );
    assert_eq!(
        talk(&mut s, "RCPT TO:<u@a.städte.example>\r\n"),
        "250 ok\r\n"
    );
    assert_eq!(
        talk(&mut s, "RCPT TO:<u@a.xn--stdte-hra.example>\r\n"),
        "250 ok\r\n"
    );
    assert_eq!(
        talk(&mut s, "RCPT TO:<u@bucher.example>\r\n"),
        reply::NOGATEWAY
    );
}

fn utf8_words() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"EHLO x\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b>\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b> SMTPUTF8\r\n".to_vec()),
        Just("MAIL FROM:<å@b> SMTPUTF8\r\n".as_bytes().to_vec()),
        Just("MAIL FROM:<å@b>\r\n".as_bytes().to_vec()),
        Just(b"MAIL FROM:<\xe5@b> SMTPUTF8\r\n".to_vec()),
        Just(b"RCPT TO:<c@d>\r\n".to_vec()),
        Just("RCPT TO:<ü@d>\r\n".as_bytes().to_vec()),
        Just("RCPT TO:<c@bücher.example>\r\n".as_bytes().to_vec()),
        Just(b"RCPT TO:<c@xn--bcher-kva.example>\r\n".to_vec()),
        Just(b"RCPT TO:<\xfc@d>\r\n".to_vec()),
        Just(b"DATA\r\n".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        Just(b".\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..20),
    ];
    proptest::collection::vec(piece, 0..30).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn smtputf8_envelopes_are_utf8_and_marked(input in utf8_words()) {
        let mut c = utf8_cfg();
        c.rcpthosts = RcptHosts::from_entries(Some(["d", "bücher.example"]));
        let (mut s, f) = session(c);
        s.feed(&input);
        prop_assert!(well_formed(&s.take_output()).is_ok());
        drop(s);
        for m in f.stored().iter().filter(|m| m.closed) {
            let from = m.from.clone().unwrap_or_default();
            let non_ascii = m.to.iter().chain([&from]).any(|a| a.iter().any(|&c| c >= 128));
            let data = String::from_utf8_lossy(&m.data);
            let marked = data.starts_with("Received: from unknown ") && data.contains("\n  by unknown with UTF8SMTP; ");
            // A non-ASCII address only in a transaction that said SMTPUTF8, and then UTF-8.
            prop_assert!(!non_ascii || marked);
            for a in m.to.iter().chain([&from]) {
                prop_assert!(std::str::from_utf8(a).is_ok());
            }
        }
    }
}
