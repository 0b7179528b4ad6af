//! The senders: SMTP clients talking to qmail-smtpd through tcpserver, and qmail-inject
//! runs. Each message has a unique id and is recorded with what the client saw.

use crate::Config;
use crate::rng::Rng;
use crate::world::{ME, REMOTE, World};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Smtp,
    Inject,
}

/// One message and what its sender saw.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub via: Via,
    /// The local recipient (local part), if any.
    pub local: Option<String>,
    /// The remote recipient, if any.
    pub remote: Option<String>,
    /// The client saw it accepted (250 after DATA, or qmail-inject's exit 0).
    pub accepted: bool,
    /// Why not, when not.
    pub detail: String,
}

/// Sends messages from several threads until `cfg.count` were sent or `cfg.duration`
/// passed; returns every message sent.
pub fn send_all(w: &World, cfg: &Config) -> Vec<Sent> {
    let ledger = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + cfg.duration;
    let mut rng = Rng::new(cfg.seed);
    let run = format!("{:x}", cfg.seed & 0xffff_ffff);
    let mut threads = Vec::new();
    let n = cfg.smtp_clients + cfg.inject_clients;
    for t in 0..n {
        let via = if t < cfg.smtp_clients {
            Via::Smtp
        } else {
            Via::Inject
        };
        let (ledger, next) = (ledger.clone(), next.clone());
        let mut rng = rng.fork(t as u64);
        let (port, home, count, run) = (w.smtp_port, w.home.clone(), cfg.count, run.clone());
        threads.push(std::thread::spawn(move || {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count || Instant::now() >= deadline {
                    return;
                }
                let id = format!("{run}-{i}");
                let kind = rng.below(3);
                let local = (kind != 1).then(|| format!("u{}", rng.below(50)));
                let remote = (kind != 0).then(|| format!("r{}@{REMOTE}", rng.below(50)));
                let body = body(&mut rng, &id);
                let mut rcpts = Vec::new();
                if let Some(l) = &local {
                    rcpts.push(format!("{l}@{ME}"));
                }
                if let Some(r) = &remote {
                    rcpts.push(r.clone());
                }
                let result = match via {
                    Via::Smtp => smtp(port, &rcpts, &body),
                    Via::Inject => inject(&home, &rcpts, &body),
                };
                let (accepted, detail) = match result {
                    Ok(()) => (true, String::new()),
                    Err(e) => (false, e),
                };
                ledger.lock().unwrap_or_else(|e| e.into_inner()).push(Sent {
                    id,
                    via,
                    local,
                    remote,
                    accepted,
                    detail,
                });
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    let mut v = std::mem::take(&mut *ledger.lock().unwrap_or_else(|e| e.into_inner()));
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// A message (LF line ends) with the id in a header and a body of random size.
fn body(rng: &mut Rng, id: &str) -> Vec<u8> {
    let mut m =
        format!("From: sender@{ME}\nSubject: crash test {id}\nX-Crash-Id: {id}\n\n").into_bytes();
    let lines = 1 + rng.below(300);
    for i in 0..lines {
        m.extend_from_slice(format!("{id} line {i} ").as_bytes());
        m.extend(std::iter::repeat_n(b'z', rng.below(70) as usize));
        m.push(b'\n');
        if rng.below(40) == 0 {
            m.extend_from_slice(b".a line with a leading dot\n");
        }
    }
    m
}

fn reply(r: &mut BufReader<TcpStream>) -> Result<String, String> {
    loop {
        let mut l = String::new();
        match r.read_line(&mut l) {
            Ok(0) => return Err("connection closed".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if l.as_bytes().get(3) != Some(&b'-') {
            return Ok(l.trim_end().to_string());
        }
    }
}

fn expect(r: &mut BufReader<TcpStream>, code: &str) -> Result<(), String> {
    let l = reply(r)?;
    if l.starts_with(code) { Ok(()) } else { Err(l) }
}

/// One SMTP session for one message; Ok when the final dot got a 250.
pub(crate) fn smtp(port: u16, rcpts: &[String], msg: &[u8]) -> Result<(), String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut say = |t: &[u8]| w.write_all(t).map_err(|e| format!("write: {e}"));
    expect(&mut r, "220")?;
    say(b"HELO crashtest.example\r\n")?;
    expect(&mut r, "250")?;
    say(format!("MAIL FROM:<sender@{ME}>\r\n").as_bytes())?;
    expect(&mut r, "250")?;
    for rc in rcpts {
        say(format!("RCPT TO:<{rc}>\r\n").as_bytes())?;
        expect(&mut r, "250")?;
    }
    say(b"DATA\r\n")?;
    expect(&mut r, "354")?;
    let mut data = Vec::with_capacity(msg.len() + msg.len() / 30);
    for line in msg.split_inclusive(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.first() == Some(&b'.') {
            data.push(b'.');
        }
        data.extend_from_slice(line);
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    say(&data)?;
    expect(&mut r, "250")?;
    let _ = say(b"QUIT\r\n");
    let _ = reply(&mut r);
    Ok(())
}

/// One qmail-inject run; Ok when it exited 0.
fn inject(home: &std::path::Path, rcpts: &[String], msg: &[u8]) -> Result<(), String> {
    let mut c = Command::new(home.join("bin/qmail-inject"));
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAIL_HOME", home)
        .current_dir(home)
        .arg("-f")
        .arg(format!("sender@{ME}"))
        .args(rcpts)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("qmail-inject: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    let msg = msg.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&msg);
    });
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if st.success() {
        Ok(())
    } else {
        Err(format!("qmail-inject {st}: {}", err.trim()))
    }
}
