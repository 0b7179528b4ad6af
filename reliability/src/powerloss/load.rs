//! The senders of a case: SMTP clients (qmail-smtpd under tcpserver), qmail-inject and
//! qmail-queue run directly, each sending one message after another until told to stop.
//! Every message has one local recipient: `pl-ID@ME`, delivered into the Maildir, or
//! (one in eight) `bx-ID@ME`, which fails, so that the message is bounced to its sender,
//! whose bounce is delivered into the Maildir, or (one in `-x` of the others, 8 unless
//! told) `mb-ID@ME`, appended to the mbox. A POP3 reader (qmail-pop3d, `-p`) meanwhile
//! opens the Maildir again and again and quits, so that the messages in new/ are renamed
//! to cur/ as a mail reader's are.

use super::system::System;
use super::verdict::{Dest, ME, Sent, Via, local_part, message};
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
    /// One message in this many of those not bounced goes to the mbox (0: none).
    pub mbox_one_in: u64,
    /// POP3 readers (each a qmail-pop3d session after another: QUIT renames every
    /// message of new/ to cur/).
    pub pop3: usize,
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
        let n_mbox = n.mbox_one_in;
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
                    // No draw when no mbox is wanted: the cases of a seed stay those
                    // of the runs made before the mbox recipient existed.
                    let dest = if bounce {
                        Dest::Fails
                    } else if n_mbox > 0 && rng.below(n_mbox) == 0 {
                        Dest::Mbox
                    } else {
                        Dest::Maildir
                    };
                    let rcpt = format!("{}@{ME}", local_part(&id, dest));
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
                        mbox: dest == Dest::Mbox,
                        accepted,
                        detail,
                    });
                }
            }));
        }
        for t in 0..n.pop3 {
            let (stop, sys) = (stop.clone(), sys.clone());
            // A generator of its own: the messages of a seed do not depend on -p.
            let mut rng = Rng::new(seed ^ (case as u64).wrapping_mul(0x7033) ^ t as u64);
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(50 + rng.below(250)));
                    let _ = pop3_quit(&sys);
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

/// One POP3 session that only quits: qmail-pop3d renames each message of new/ to
/// cur/NAME:2, (netqmail's and rqmail's QUIT). Killed with the mail system when the
/// power goes.
fn pop3_quit(sys: &System) -> Result<(), String> {
    let child = sys
        .pop3d_cmd()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("qmail-pop3d: {e}"))?;
    finish_child(child, b"QUIT\r\n", "qmail-pop3d")
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
