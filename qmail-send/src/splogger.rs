//! splogger: reads lines on descriptor 0 and sends each to syslog, with a numerical
//! timestamp in front (`seconds.microseconds`), priority alert/warning/info chosen from the
//! line's start, unprintable characters as `?`, and lines folded every 799 characters
//! (continuations marked with `+` after the timestamp).
//!
//! The syslog client is written here (no libc syslog): datagrams in the traditional
//! local format `<PRI>Mmm dd hh:mm:ss TAG: MESSAGE` to /dev/log, or to the socket named by
//! `$SPLOGGER_SOCKET`.

use control::Exit;
use std::io::{BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// syslog severities.
pub const LOG_ALERT: u32 = 1;
pub const LOG_WARNING: u32 = 4;
pub const LOG_INFO: u32 = 6;
/// Longest piece logged at once (netqmail's buffer of 800 with its terminating NUL).
pub const FOLD: usize = 799;

/// The severity for a line, from its first piece.
pub fn priority(line: &[u8]) -> u32 {
    if line.starts_with(b"alert:") {
        LOG_ALERT
    } else if line.starts_with(b"warning:") {
        LOG_WARNING
    } else {
        LOG_INFO
    }
}

/// Splits input into the messages splogger sends: (priority, stamp separator, text),
/// where the separator is `' '` for the first piece of a line and `'+'` for a fold.
#[derive(Debug, Default)]
pub struct Folder {
    buf: Vec<u8>,
    cont: bool,
    prio: u32,
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub priority: u32,
    /// True for a continuation (`+` after the stamp).
    pub cont: bool,
    pub text: Vec<u8>,
    /// True when this piece begins a new line (a new timestamp is taken).
    pub new_stamp: bool,
}

impl Folder {
    fn flush(&mut self, out: &mut Vec<Piece>) {
        if self.buf.is_empty() {
            return;
        }
        let new_stamp = !self.cont;
        if !self.cont {
            self.prio = priority(&self.buf);
        }
        out.push(Piece {
            priority: self.prio,
            cont: self.cont,
            text: std::mem::take(&mut self.buf),
            new_stamp,
        });
        self.cont = true;
    }

    /// Feeds one byte.
    pub fn byte(&mut self, ch: u8, out: &mut Vec<Piece>) {
        if ch == b'\n' {
            self.flush(out);
            self.cont = false;
            return;
        }
        if self.buf.len() == FOLD {
            self.flush(out);
        }
        self.buf
            .push(if (32..=126).contains(&ch) { ch } else { b'?' });
    }
}

fn syslog_header(pri: u32, tag: &[u8], secs: i64) -> Vec<u8> {
    let mut v = format!("<{pri}>").into_bytes();
    if let Some((mon, day, h, m, s)) = crate::sys::local_time(secs) {
        v.extend(
            format!(
                "{} {:>2} {:02}:{:02}:{:02} ",
                MONTHS.get(mon).unwrap_or(&"Jan"),
                day,
                h,
                m,
                s
            )
            .into_bytes(),
        );
    }
    v.extend_from_slice(tag);
    v.extend_from_slice(b": ");
    v
}

/// The connection to syslogd: datagrams, or (when the socket is a stream socket, as
/// some syslog daemons make it) a stream of messages each ending in a 0 byte, as the C
/// library's syslog sends them. syslog is unreliable by design: a message that cannot be
/// sent is lost, and the next one tries again.
struct Syslog {
    path: PathBuf,
    dgram: Option<UnixDatagram>,
    stream: Option<std::os::unix::net::UnixStream>,
}

impl Syslog {
    fn new(path: PathBuf) -> Syslog {
        Syslog {
            path,
            dgram: UnixDatagram::unbound().ok(),
            stream: None,
        }
    }

    fn send(&mut self, msg: &[u8]) {
        use std::io::Write;
        if self.stream.is_none()
            && let Some(d) = &self.dgram
        {
            match d.send_to(msg, &self.path) {
                Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                    self.stream = std::os::unix::net::UnixStream::connect(&self.path).ok();
                }
                _ => return,
            }
        }
        if let Some(s) = &mut self.stream {
            let mut m = msg.to_vec();
            m.push(0);
            if s.write_all(&m).is_err() {
                self.stream = None;
            }
        }
    }
}

/// The splogger program: `splogger [tag [facility]]`.
pub fn main() -> Exit {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let tag = args
        .first()
        .map_or_else(|| b"splogger".to_vec(), |t| t.as_encoded_bytes().to_vec());
    let facility = match args.get(1) {
        Some(f) => control::scan_ulong(f.as_encoded_bytes()).unwrap_or(0),
        None => 2,
    };
    let facility = u32::try_from(facility.min(23)).unwrap_or(2) << 3;
    let path = std::env::var_os("SPLOGGER_SOCKET")
        .map_or_else(|| PathBuf::from("/dev/log"), PathBuf::from);
    let mut out = Syslog::new(path);
    let stdin = std::io::stdin();
    let mut r = BufReader::new(qmail_queue::FdReader::new(stdin.as_fd()));
    let mut folder = Folder::default();
    let mut stamp = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => return Exit::OK,
            Ok(n) => n,
        };
        let mut pieces = Vec::new();
        for &c in &buf[..n] {
            folder.byte(c, &mut pieces);
        }
        for p in pieces {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            if p.new_stamp {
                stamp = format!("{}.{:06}", now.as_secs(), now.subsec_micros());
            }
            let mut msg = syslog_header(
                facility | p.priority,
                &tag,
                i64::try_from(now.as_secs()).unwrap_or(0),
            );
            msg.extend_from_slice(stamp.as_bytes());
            msg.push(if p.cont { b'+' } else { b' ' });
            msg.extend_from_slice(&p.text);
            out.send(&msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(input: &[u8]) -> Vec<Piece> {
        let mut f = Folder::default();
        let mut out = Vec::new();
        for &c in input {
            f.byte(c, &mut out);
        }
        out
    }

    #[test]
    fn lines_and_priorities() {
        let p = pieces(b"new msg 1\n\nwarning: x\talert: y\nalert: z\n");
        assert_eq!(p.len(), 3);
        assert_eq!(
            (p[0].priority, p[0].text.as_slice()),
            (LOG_INFO, &b"new msg 1"[..])
        );
        assert_eq!(
            (p[1].priority, p[1].text.as_slice()),
            (LOG_WARNING, &b"warning: x?alert: y"[..])
        );
        assert_eq!(p[2].priority, LOG_ALERT);
        assert!(p.iter().all(|x| !x.cont && x.new_stamp));
    }

    #[test]
    fn folding() {
        let mut line = b"warning: ".to_vec();
        line.extend(vec![b'a'; 2000]);
        line.push(b'\n');
        let p = pieces(&line);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].text.len(), FOLD);
        assert!(p[1].cont && !p[1].new_stamp && p[1].priority == LOG_WARNING);
        assert_eq!(p.iter().map(|x| x.text.len()).sum::<usize>(), 2009);
    }
}
