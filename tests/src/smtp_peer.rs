//! SMTP peers: a scripted client for dialogues ([`Smtp`]), and the one fake SMTP server
//! ([`SmtpServer`], a Python program with TLS, scripted replies and a transcript of each
//! connection; [`Sink`] is that server answering 250 to everything).

use crate::certs::test_pki;
use crate::home::scratch;
use crate::process::{KillOnDrop, start_python};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A line-oriented SMTP conversation over any stream, for tests that script a dialogue.
pub struct Smtp<S: Read + Write> {
    r: BufReader<S>,
}

impl Smtp<TcpStream> {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> Smtp<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Smtp {
            r: BufReader::new(s),
        }
    }
}

impl<S: Read + Write> Smtp<S> {
    /// Wraps a stream.
    pub fn new(s: S) -> Smtp<S> {
        Smtp {
            r: BufReader::new(s),
        }
    }

    /// Reads one (possibly multi-line) reply; returns its lines without CRLF.
    pub fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.r.read_line(&mut l).expect("read reply");
            assert!(
                n > 0,
                "connection closed while reading a reply; got {lines:?}"
            );
            let l = l.trim_end_matches(['\r', '\n']).to_string();
            let more = l.as_bytes().get(3) == Some(&b'-');
            lines.push(l);
            if !more {
                return lines;
            }
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, data: &[u8]) {
        self.r.get_mut().write_all(data).expect("send");
    }

    /// Sends a command line (CRLF added) and returns the reply.
    pub fn cmd(&mut self, line: &str) -> Vec<String> {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut S {
        self.r.get_mut()
    }
}
/// The fake SMTP server's program (Python); its first lines list the configuration keys.
const SMTP_SERVER: &str = include_str!("smtp_server.py");

/// How long [`SmtpServer::transcripts`] waits for connections to end (a hang guard).
const GUARD: Duration = Duration::from_secs(120);

/// The fake SMTP server: one Python process on its own address, a thread per connection,
/// replies chosen by a JSON configuration (the keys are listed at the top of
/// `smtp_server.py`: greeting, extensions, replies per verb and per recipient, TLS from
/// the start or after STARTTLS, a client-certificate request, delays, a gate, a flood...).
/// Its certificate is mx.tls.test's of [`test_pki`]. Every connection leaves a
/// [`Transcript`]. Killed when dropped.
pub struct SmtpServer {
    _proc: KillOnDrop,
    /// The transcript directory (also readable by everyone, for tests that put files
    /// beside it).
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// One connection as the server saw it.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    /// The command lines, in order, without CR LF.
    pub commands: Vec<String>,
    /// `VERSION CIPHER` once TLS is up.
    pub tls: Option<String>,
    /// The common name of the client's certificate.
    pub client: Option<String>,
    /// With `pipeline_wait`: whether more commands came with MAIL.
    pub pipelined: Option<bool>,
    /// Exceptions the connection ended with.
    pub errors: Vec<String>,
    /// The first message's data (see [`SinkMessage::data`]).
    pub data: Option<String>,
    /// Every message whose data ended, with its envelope as sent.
    pub messages: Vec<SinkMessage>,
}

/// One message the fake SMTP server received.
#[derive(Debug, Clone, Default)]
pub struct SinkMessage {
    /// The MAIL FROM argument as sent (e.g. `<a@b>`).
    pub from: String,
    /// The RCPT TO arguments as sent.
    pub rcpts: Vec<String>,
    /// The data up to the final dot: dot-unstuffed with lines ending in LF, or as it came
    /// with `raw_data`.
    pub data: Vec<u8>,
}

impl SmtpServer {
    /// Starts a server on `bind` (`port` 0: any) with the extra JSON members `cfg` (a
    /// fragment such as `"greeting": "554 no"`, or empty). `None` when the port is taken.
    pub fn try_start(bind: &str, port: u16, cfg: &str) -> Option<SmtpServer> {
        let pki = test_pki();
        let certs = format!(
            r#""cert": "{}", "key": "{}""#,
            pki.join("mx.pem").display(),
            pki.join("mx.key").display(),
        );
        SmtpServer::launch(bind, port, &certs, cfg)
    }

    /// Starts the server with the JSON members `certs` and `cfg`.
    fn launch(bind: &str, port: u16, certs: &str, cfg: &str) -> Option<SmtpServer> {
        let dir = scratch("rqmail-smtp-");
        let mut json = format!(
            r#"{{"bind": "{bind}", "port": {port}, "dir": "{}""#,
            dir.path().display()
        );
        for extra in [certs, cfg] {
            if !extra.trim().is_empty() {
                json.push_str(", ");
                json.push_str(extra);
            }
        }
        json.push('}');
        let cfgfile = dir.path().join("cfg.json");
        fs::write(&cfgfile, json).expect("write cfg");
        let (proc, port) = start_python(dir.path(), "smtp.py", SMTP_SERVER, &[&cfgfile])?;
        Some(SmtpServer {
            _proc: proc,
            dir,
            port,
        })
    }

    /// Starts a server on `bind` with the extra JSON members `cfg`.
    pub fn start(bind: &str, cfg: &str) -> SmtpServer {
        SmtpServer::try_start(bind, 0, cfg).expect("start the SMTP server")
    }

    /// The connections so far, waiting until `n` of them have ended.
    pub fn transcripts(&self, n: usize) -> Vec<Transcript> {
        let deadline = Instant::now() + GUARD;
        loop {
            let done = (1..=n).all(|i| self.dir.path().join(format!("conn-{i}.log")).exists());
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not see {n} connections"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (1..).map_while(|i| self.transcript(i, "log")).collect()
    }

    /// The only connection.
    pub fn one(&self) -> Transcript {
        let mut v = self.transcripts(1);
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    /// True when no connection came.
    pub fn untouched(&self) -> bool {
        !self.dir.path().join("conn-1.tmp").exists() && !self.dir.path().join("conn-1.log").exists()
    }

    /// Every message received so far, connection by connection, including those of
    /// connections still open.
    pub fn messages(&self) -> Vec<SinkMessage> {
        (1..)
            .map_while(|i| {
                // conn-N.tmp becomes conn-N.log when the connection ends: look again.
                self.transcript(i, "log")
                    .or_else(|| self.transcript(i, "tmp"))
                    .or_else(|| self.transcript(i, "log"))
            })
            .flat_map(|t| t.messages)
            .collect()
    }

    /// Connection `n`'s transcript from `conn-n.EXT`; None when there is no such file.
    fn transcript(&self, n: usize, ext: &str) -> Option<Transcript> {
        let mut text = fs::read_to_string(self.dir.path().join(format!("conn-{n}.{ext}"))).ok()?;
        // A connection still open may be writing its last line.
        text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
        let mut t = Transcript::default();
        let mut cur = SinkMessage::default();
        for l in text.lines() {
            if let Some(c) = l.strip_prefix("> ") {
                let upper = c.to_ascii_uppercase();
                if upper.starts_with("MAIL FROM:") {
                    cur = SinkMessage {
                        from: c[10..].trim().to_string(),
                        ..SinkMessage::default()
                    };
                } else if upper.starts_with("RCPT TO:") {
                    cur.rcpts.push(c[8..].trim().to_string());
                }
                t.commands.push(c.to_string());
            } else if let Some(x) = l.strip_prefix("tls ") {
                t.tls = Some(x.to_string());
            } else if let Some(x) = l.strip_prefix("client ") {
                t.client = Some(x.to_string());
            } else if let Some(x) = l.strip_prefix("pipelined ") {
                t.pipelined = Some(x == "True");
            } else if let Some(x) = l.strip_prefix("error ") {
                t.errors.push(x.to_string());
            } else if let Some(k) = l.strip_prefix("message ") {
                let data = self.dir.path().join(format!("conn-{n}-{k}.data"));
                cur.data = fs::read(data).unwrap_or_default();
                t.messages.push(cur.clone());
            }
        }
        t.data = t
            .messages
            .first()
            .map(|m| String::from_utf8_lossy(&m.data).into_owned());
        Some(t)
    }
}

/// The fake SMTP server standing in for a remote MX that takes everything: 250 to every
/// command (EHLO offers PIPELINING), every message kept. With a gate, each connection's
/// greeting waits until the gate file exists (so that a test can look at a client while
/// it waits). Stops when dropped.
pub struct Sink {
    pub port: u16,
    server: SmtpServer,
}

impl Sink {
    /// Starts the sink on 127.0.0.1; `gate` holds the greetings back until that file
    /// exists.
    pub fn start(gate: Option<PathBuf>) -> Sink {
        let gate = gate.map_or(String::new(), |g| format!(r#", "gate": "{}""#, g.display()));
        // No STARTTLS offered, so no certificate needed (nor the test PKI made).
        let cfg = format!(
            r#""greeting": "220 sink.example ESMTP", "name": "sink.example",
            "extensions": ["PIPELINING"], "data": "354 go", "unknown": "250 ok"{gate}"#
        );
        let server = SmtpServer::launch("127.0.0.1", 0, "", &cfg).expect("start the SMTP server");
        Sink {
            port: server.port,
            server,
        }
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<SinkMessage> {
        self.server.messages()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One message through `c`: MAIL, RCPT for each of `rcpts`, DATA with `body` (CR LF
    /// line ends, already dot-stuffed); returns the final reply's first line.
    fn send(c: &mut Smtp<TcpStream>, from: &str, rcpts: &[&str], body: &str) -> String {
        assert_eq!(c.cmd(&format!("MAIL FROM:{from}")), ["250 ok"]);
        for r in rcpts {
            assert_eq!(c.cmd(&format!("RCPT TO:{r}")), ["250 ok"]);
        }
        assert_eq!(c.cmd("DATA")[0][..3], *"354");
        c.send(body.as_bytes());
        c.cmd(".").remove(0)
    }

    #[test]
    fn sink_takes_every_message_of_every_connection() {
        let sink = Sink::start(None);
        let mut c = Smtp::connect(sink.port);
        assert_eq!(c.reply(), ["220 sink.example ESMTP"]);
        assert_eq!(
            c.cmd("EHLO client.example"),
            ["250-sink.example", "250 PIPELINING"]
        );
        let body = "Subject: one\r\n\r\n..leading dot\r\nlast\r\n";
        assert_eq!(
            send(
                &mut c,
                "<a@b.example>",
                &["<c@d.example>", "<e@f.example>"],
                body
            ),
            "250 ok queued"
        );
        assert_eq!(c.cmd("RSET"), ["250 ok"]);
        assert_eq!(c.cmd("NOOP"), ["250 ok"]);
        assert_eq!(
            send(&mut c, "<>", &["<g@h.example>"], "x\r\n"),
            "250 ok queued"
        );
        // A second connection, still open while the messages are read.
        let mut c2 = Smtp::connect(sink.port);
        c2.reply();
        assert_eq!(c2.cmd("HELO client.example"), ["250 sink.example"]);
        send(&mut c2, "<i@j.example>", &["<k@l.example>"], "y\r\n");
        let m = sink.messages();
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0].from, "<a@b.example>");
        assert_eq!(m[0].rcpts, ["<c@d.example>", "<e@f.example>"]);
        assert_eq!(m[0].data, b"Subject: one\n\n.leading dot\nlast\n");
        assert_eq!(
            (m[1].from.as_str(), m[1].data.as_slice()),
            ("<>", &b"x\n"[..])
        );
        assert_eq!(m[1].rcpts, ["<g@h.example>"]);
        assert_eq!(m[2].from, "<i@j.example>");
        assert_eq!(c.cmd("QUIT"), ["221 bye"]);
        assert_eq!(c2.cmd("QUIT"), ["221 bye"]);
    }

    #[test]
    fn scripted_replies_raw_data_and_transcripts() {
        let s = SmtpServer::start(
            "127.0.0.1",
            r#""greeting": ["220-first line", "220 scripted.example"], "name": "mx.example",
            "extensions": ["8BITMIME"], "rcpt": {"no@where.example": "550 no such user"},
            "raw_data": true, "final": "451 try later""#,
        );
        let mut c = Smtp::connect(s.port);
        assert_eq!(c.reply(), ["220-first line", "220 scripted.example"]);
        assert_eq!(
            c.cmd("EHLO client.example"),
            ["250-mx.example", "250 8BITMIME"]
        );
        assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), ["250 ok"]);
        assert_eq!(c.cmd("RCPT TO:<no@where.example>"), ["550 no such user"]);
        assert_eq!(c.cmd("RCPT TO:<yes@where.example>"), ["250 ok"]);
        assert_eq!(c.cmd("VRFY x"), ["502 unimplemented"]);
        assert_eq!(c.cmd("DATA"), ["354 go ahead"]);
        c.send(b"..dot\r\nbare LF\n");
        assert_eq!(c.cmd("."), ["451 try later"]);
        assert_eq!(c.cmd("QUIT"), ["221 bye"]);
        let t = s.one();
        assert_eq!(
            t.commands,
            [
                "EHLO client.example",
                "MAIL FROM:<a@b.example>",
                "RCPT TO:<no@where.example>",
                "RCPT TO:<yes@where.example>",
                "VRFY x",
                "DATA",
                "QUIT"
            ]
        );
        assert_eq!(t.messages.len(), 1);
        assert_eq!(t.messages[0].data, b"..dot\r\nbare LF\n");
        assert_eq!(t.data.as_deref(), Some("..dot\r\nbare LF\n"));
        assert!(t.errors.is_empty() && t.tls.is_none(), "{t:?}");
        assert!(!s.untouched());
    }

    #[test]
    fn the_gate_holds_the_greeting_until_it_exists() {
        let dir = scratch("rqmail-gate-");
        let gate = dir.path().join("gate");
        let sink = Sink::start(Some(gate.clone()));
        let conn = TcpStream::connect(("127.0.0.1", sink.port)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut c = Smtp::new(conn);
        let mut b = [0u8; 1];
        assert!(
            c.get_mut().read(&mut b).is_err(),
            "a greeting came before the gate existed"
        );
        fs::write(&gate, "").expect("gate");
        c.get_mut()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        assert_eq!(c.reply(), ["220 sink.example ESMTP"]);
        assert!(sink.messages().is_empty());
    }
}
