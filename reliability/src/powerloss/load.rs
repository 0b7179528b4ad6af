//! The senders of a case: SMTP clients (qmail-smtpd under tcpserver), qmail-inject and
//! qmail-queue run directly, each sending one message after another until told to stop.
//! Every message has one local recipient: `pl-ID@ME`, delivered into the Maildir, or
//! (one in eight) `bx-ID@ME`, which fails, so that the message is bounced to its sender,
//! whose bounce is delivered into the Maildir.

use super::system::System;
use super::verdict::{ME, Sent, Via, local_part, message};
use crate::rng::Rng;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How many senders of each kind run at once.
#[derive(Debug, Clone, Copy)]
pub struct Senders {
    pub smtp: usize,
    pub inject: usize,
    pub queue: usize,
}

/// The running senders.
pub struct Load {
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Vec<Sent>>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load").finish()
    }
}

/// One message in this many goes to a recipient that fails, to be bounced.
const BOUNCE_ONE_IN: u64 = 8;

/// Body line lengths: mostly short messages, some of several LazyFS pages.
fn sizes(rng: &mut Rng) -> Vec<u8> {
    let lines = if rng.below(10) == 0 {
        100 + rng.below(300)
    } else {
        1 + rng.below(40)
    };
    (0..lines).map(|_| rng.below(100) as u8).collect()
}

impl Load {
    /// Starts the senders of case `case`; message ids are `c{case}m{n}`.
    /// At most `max` messages are sent.
    pub fn start(
        sys: &Arc<System>,
        port: u16,
        case: usize,
        seed: u64,
        n: Senders,
        max: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let mut rng = Rng::new(seed ^ (case as u64).wrapping_mul(0x9E37_79B9));
        let kinds = std::iter::repeat_n(Via::Smtp, n.smtp)
            .chain(std::iter::repeat_n(Via::Inject, n.inject))
            .chain(std::iter::repeat_n(Via::Queue, n.queue));
        let mut threads = Vec::new();
        for (t, via) in kinds.enumerate() {
            let (stop, ledger, next, sys) =
                (stop.clone(), ledger.clone(), next.clone(), sys.clone());
            let mut rng = rng.fork(t as u64);
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= max {
                        break;
                    }
                    let id = format!("c{case}m{n}");
                    let bounce = rng.below(BOUNCE_ONE_IN) == 0;
                    let rcpt = format!("{}@{ME}", local_part(&id, bounce));
                    let msg = message(&id, &rcpt, &sizes(&mut rng));
                    let r = match via {
                        Via::Smtp => crate::clients::smtp(port, std::slice::from_ref(&rcpt), &msg),
                        Via::Inject => inject(&sys, &rcpt, &msg),
                        Via::Queue => queue(&sys, &rcpt, &msg),
                    };
                    let (accepted, detail) = match r {
                        Ok(()) => (true, String::new()),
                        Err(e) => (false, e),
                    };
                    ledger.lock().unwrap_or_else(|e| e.into_inner()).push(Sent {
                        id,
                        via,
                        bounce,
                        accepted,
                        detail,
                    });
                }
            }));
        }
        Load {
            stop,
            ledger,
            threads,
        }
    }

    /// Asks the senders to stop after the message each is sending.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for the senders; returns every message sent, ordered by id.
    pub fn finish(self) -> Vec<Sent> {
        self.signal_stop();
        for t in self.threads {
            let _ = t.join();
        }
        let mut v = std::mem::take(&mut *self.ledger.lock().unwrap_or_else(|e| e.into_inner()));
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

fn finish_child(mut child: std::process::Child, msg: &[u8], what: &str) -> Result<(), String> {
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
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
        Err(format!("{what} {st}: {}", err.trim()))
    }
}

/// One qmail-inject run; accepted at exit 0.
fn inject(sys: &System, rcpt: &str, msg: &[u8]) -> Result<(), String> {
    let child = sys
        .client_cmd("qmail-inject")
        .arg("-f")
        .arg(format!("sender@{ME}"))
        .arg(rcpt)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("qmail-inject: {e}"))?;
    finish_child(child, msg, "qmail-inject")
}

/// One qmail-queue run, the message on descriptor 0 and the envelope on 1; accepted at
/// exit 0.
fn queue(sys: &System, rcpt: &str, msg: &[u8]) -> Result<(), String> {
    let (env_r, env_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let child = sys
        .client_cmd("qmail-queue")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(env_r))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("qmail-queue: {e}"))?;
    // The envelope is small enough for the pipe's buffer: write it whole now.
    let mut w = std::fs::File::from(env_w);
    let _ = w.write_all(format!("Fsender@{ME}\0T{rcpt}\0\0").as_bytes());
    drop(w);
    finish_child(child, msg, "qmail-queue")
}
