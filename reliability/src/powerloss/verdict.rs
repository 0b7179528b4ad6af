//! The checker: the messages (each with an id and a check line that tells a whole copy
//! from a truncated one), qmail-send's log (which deliveries it reported as successful,
//! which as failed), the Maildir, and the verdict of one case.
//!
//! Most messages go to `pl-ID@ME`, delivered into the Maildir; some go to `mb-ID@ME`,
//! appended to the mbox file `mbox` at the top of the Maildir's disk; some go to
//! `bx-ID@ME`, whose `.qmail-bx-default` fails permanently (`|exit 100`), so that
//! qmail-send bounces them to their sender, also delivered into the Maildir: for those
//! the bounce (which quotes the message) is what must arrive.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;

/// The domain of every recipient (the host's `control/me`).
pub use crate::world::ME;

/// How a message was handed to the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Via {
    /// SMTP to qmail-smtpd under tcpserver: accepted at a 250 after DATA.
    Smtp,
    /// qmail-inject: accepted at exit 0.
    Inject,
    /// qmail-queue run directly: accepted at exit 0.
    Queue,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Smtp => "smtp",
            Via::Inject => "inject",
            Via::Queue => "qmail-queue",
        }
    }

    /// What the client saw when the message was accepted.
    pub fn acceptance(self) -> &'static str {
        match self {
            Via::Smtp => "250 after DATA",
            Via::Inject => "qmail-inject exit 0",
            Via::Queue => "qmail-queue exit 0",
        }
    }
}

/// One message sent, and what its client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub id: String,
    pub via: Via,
    /// Sent to a recipient that fails: the bounce must arrive.
    pub bounce: bool,
    /// Sent to the mbox.
    pub mbox: bool,
    pub accepted: bool,
    /// Why not, when not.
    pub detail: String,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// `pl-ID`: the Maildir.
    Maildir,
    /// `mb-ID`: the mbox [`MBOX`].
    Mbox,
    /// `bx-ID`: a recipient that fails; the bounce goes to the Maildir.
    Fails,
}

/// The mbox file, at the top of the Maildir's disk (`.qmail-mb-default` holds
/// `./Maildir/mbox`).
pub const MBOX: &str = "mbox";

/// The local part of the (only) recipient of message `id`.
pub fn local_part(id: &str, dest: Dest) -> String {
    let prefix = match dest {
        Dest::Maildir => "pl",
        Dest::Mbox => "mb",
        Dest::Fails => "bx",
    };
    format!("{prefix}-{id}")
}

/// FNV-1a, 64 bits: the check value of a body.
fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Message `id` to `rcpt` (LF line ends): a header with the id, body lines whose
/// lengths come from `sizes`, and a last line `check ID LINES HASH` covering the body
/// before it.
pub fn message(id: &str, rcpt: &str, sizes: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "From: sender@{ME}\nTo: {rcpt}\nSubject: power loss test {id}\nX-Crash-Id: {id}\n\n"
    )
    .into_bytes();
    let mut body = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        body.extend_from_slice(format!("{id} {i} ").as_bytes());
        body.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, usize::from(n)));
        body.push(b'\n');
    }
    let check = format!("check {id} {} {:016x}\n", sizes.len(), fnv(&body));
    head.extend_from_slice(&body);
    head.extend_from_slice(check.as_bytes());
    head
}

/// What a delivered file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copy {
    /// A message of this test; `whole` when its check line matches its body.
    Ours { id: String, whole: bool },
    /// A bounce (the envelope sender was empty), of message `id` when the copy it quotes
    /// can be read; `whole` when that copy is whole.
    Bounce { id: Option<String>, whole: bool },
    /// Anything else (an empty or cut file whose id cannot be read).
    Unreadable,
}

/// The line before the copy of the message in qmail-send's bounces (qmail-send(8)).
const BOUNCE_COPY: &[u8] = b"--- Below this line is a copy of the message.\n\n";

/// Reads a delivered file (with the lines qmail-local and qmail-queue prepend).
pub fn read_copy(m: &[u8]) -> Copy {
    if m.starts_with(b"Return-Path: <>\n") || m.starts_with(b"Return-Path: <#@[]>\n") {
        let quoted = m
            .windows(BOUNCE_COPY.len())
            .position(|w| w == BOUNCE_COPY)
            .map(|i| read_copy(&m[i + BOUNCE_COPY.len()..]));
        return match quoted {
            Some(Copy::Ours { id, whole }) => Copy::Bounce {
                id: Some(id),
                whole,
            },
            _ => Copy::Bounce {
                id: None,
                whole: false,
            },
        };
    }
    let head_end = m.windows(2).position(|w| w == b"\n\n").unwrap_or(m.len());
    let head = String::from_utf8_lossy(&m[..head_end]);
    let Some(id) = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Crash-Id: "))
        .map(|s| s.trim().to_string())
    else {
        return Copy::Unreadable;
    };
    let body = m.get(head_end + 2..).unwrap_or_default();
    let whole = (|| {
        let text = body.strip_suffix(b"\n")?;
        let start = text.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
        let last = std::str::from_utf8(&text[start..]).ok()?;
        let before = &body[..start];
        let want = format!(
            "check {id} {} {:016x}",
            before.iter().filter(|&&c| c == b'\n').count(),
            fnv(before)
        );
        Some(last == want)
    })()
    .unwrap_or(false);
    Copy::Ours { id, whole }
}

/// The Maildir's contents (new/ and cur/) and the mbox's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailbox {
    /// Whole copies by id.
    pub whole: HashMap<String, usize>,
    /// Cut copies by id.
    pub cut: HashMap<String, usize>,
    /// Whole bounces by the id of the message they quote.
    pub bounced: HashMap<String, usize>,
    /// Bounces whose quoted message is cut or cannot be read, by id ("" when none).
    pub bounce_cut: HashMap<String, usize>,
    /// Files whose id could not be read.
    pub unreadable: Vec<String>,
    /// Files left in tmp/.
    pub tmp: usize,
}

/// Reads a Maildir once.
#[cfg(test)]
pub fn scan(maildir: &Path) -> Mailbox {
    Scanner::default().scan(maildir)
}

/// Reads a Maildir again and again (while qmail-send delivers): a whole copy in new/
/// never changes, so it is read once; anything else is read again each time.
#[derive(Debug, Default)]
pub struct Scanner {
    /// File name -> (a bounce?, id) of the whole copies seen.
    whole: HashMap<String, (bool, String)>,
}

impl Scanner {
    pub fn scan(&mut self, maildir: &Path) -> Mailbox {
        let mut b = Mailbox::default();
        for sub in ["new", "cur"] {
            let Ok(rd) = fs::read_dir(maildir.join(sub)) else {
                continue;
            };
            for e in rd.flatten() {
                let name = format!("{sub}/{}", e.file_name().to_string_lossy());
                if let Some((bounce, id)) = self.whole.get(&name) {
                    let m = if *bounce {
                        &mut b.bounced
                    } else {
                        &mut b.whole
                    };
                    *m.entry(id.clone()).or_default() += 1;
                    continue;
                }
                let Ok(m) = fs::read(e.path()) else {
                    b.unreadable.push(name);
                    continue;
                };
                match read_copy(&m) {
                    Copy::Ours { id, whole: true } => {
                        *b.whole.entry(id.clone()).or_default() += 1;
                        self.whole.insert(name, (false, id));
                    }
                    Copy::Ours { id, whole: false } => *b.cut.entry(id).or_default() += 1,
                    Copy::Bounce {
                        id: Some(id),
                        whole: true,
                    } => {
                        *b.bounced.entry(id.clone()).or_default() += 1;
                        self.whole.insert(name, (true, id));
                    }
                    Copy::Bounce { id, .. } => {
                        *b.bounce_cut.entry(id.unwrap_or_default()).or_default() += 1;
                    }
                    Copy::Unreadable => b.unreadable.push(name),
                }
            }
        }
        b.tmp = fs::read_dir(maildir.join("tmp")).map_or(0, Iterator::count);
        if let Ok(m) = fs::read(maildir.join(MBOX)) {
            for (i, copy) in mbox_messages(&m).into_iter().enumerate() {
                match read_copy(copy) {
                    Copy::Ours { id, whole: true } => *b.whole.entry(id).or_default() += 1,
                    Copy::Ours { id, whole: false } => *b.cut.entry(id).or_default() += 1,
                    // No bounce goes to the mbox.
                    Copy::Bounce { .. } | Copy::Unreadable => {
                        b.unreadable.push(format!("{MBOX} message {}", i + 1));
                    }
                }
            }
        }
        b
    }
}

/// The messages of an mbox as qmail-local appends them (mbox(5)): each starts with a
/// `From ` line (every `From ` line of a message is quoted with `>`) and ends with a
/// blank line, which is taken off; the `From ` line is left out.
pub fn mbox_messages(m: &[u8]) -> Vec<&[u8]> {
    let mut starts: Vec<usize> = Vec::new();
    if m.starts_with(b"From ") {
        starts.push(0);
    }
    starts.extend(
        m.windows(6)
            .enumerate()
            .filter(|(_, w)| *w == b"\nFrom ")
            .map(|(i, _)| i + 1),
    );
    let mut v = Vec::new();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(m.len());
        let text = &m[start..end];
        let Some(nl) = text.iter().position(|&c| c == b'\n') else {
            v.push(&text[text.len()..]);
            continue;
        };
        let body = &text[nl + 1..];
        v.push(body.strip_suffix(b"\n").unwrap_or(body));
    }
    v
}

/// What qmail-send's log says (qmail-log(5): `starting delivery D: msg N to local R`,
/// then `delivery D: success: ...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFacts {
    /// Ids whose delivery was reported successful.
    pub success: BTreeSet<String>,
    /// Ids with a failure (a bounce follows).
    pub failure: BTreeSet<String>,
    pub deferrals: usize,
}

/// The id in a local recipient `pl-ID@crash.example` or `bx-ID@crash.example`
/// (qmail-send logs local recipients as `local ADDRESS`).
fn id_of_recipient(r: &str) -> Option<String> {
    let at = r.rfind('@')?;
    let local = &r[..at];
    let start = local
        .rfind("pl-")
        .max(local.rfind("bx-"))
        .max(local.rfind("mb-"))?
        + 3;
    let id = &local[start..];
    (!id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric())).then(|| id.to_string())
}

/// Reads the log. Delivery numbers are reused once a delivery ends, so lines are
/// matched in order.
pub fn parse_log(text: &str) -> LogFacts {
    let mut f = LogFacts::default();
    let mut running: HashMap<String, Option<String>> = HashMap::new();
    for line in text.lines() {
        // A line may start with a timestamp (splogger, multilog): find the words.
        if let Some(i) = line.find("starting delivery ") {
            let rest = &line[i + "starting delivery ".len()..];
            let Some((num, rest)) = rest.split_once(": msg ") else {
                continue;
            };
            let id = rest
                .split_once(" to local ")
                .and_then(|(_, r)| id_of_recipient(r.trim()));
            running.insert(num.to_string(), id);
        } else if let Some(i) = line.find("delivery ") {
            let rest = &line[i + "delivery ".len()..];
            let Some((num, outcome)) = rest.split_once(": ") else {
                continue;
            };
            let Some(id) = running.remove(num) else {
                continue;
            };
            if outcome.starts_with("success") {
                if let Some(id) = id {
                    f.success.insert(id);
                }
            } else if outcome.starts_with("failure") {
                if let Some(id) = id {
                    f.failure.insert(id);
                }
            } else if outcome.starts_with("deferral") {
                f.deferrals += 1;
            }
        }
    }
    f
}

/// What must be in the Maildir for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A whole copy.
    Delivery,
    /// A bounce quoting a whole copy.
    Bounce,
}

/// Every message whose acceptance was reported, and every message whose delivery
/// qmail-send logged as a success (or as a failure: a bounce follows) before the crash,
/// with what must arrive for it.
pub fn expected(ledger: &[Sent], before: &LogFacts) -> BTreeMap<String, Want> {
    let mut m = BTreeMap::new();
    for s in ledger.iter().filter(|s| s.accepted) {
        let w = if s.bounce {
            Want::Bounce
        } else {
            Want::Delivery
        };
        m.insert(s.id.clone(), w);
    }
    for id in &before.success {
        m.insert(id.clone(), Want::Delivery);
    }
    for id in &before.failure {
        m.insert(id.clone(), Want::Bounce);
    }
    m
}

/// Whether what must arrive for `id` has.
pub fn arrived(mailbox: &Mailbox, id: &str, want: Want) -> bool {
    match want {
        Want::Delivery => mailbox.whole.contains_key(id),
        Want::Bounce => mailbox.bounced.contains_key(id),
    }
}

/// A message lost by the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub id: String,
    pub want: Want,
    /// How it was sent.
    pub via: Option<Via>,
    /// Its client saw it accepted.
    pub accepted: bool,
    /// qmail-send logged its delivery as a success (or a failure) before the power went.
    pub logged: bool,
    /// Cut copies found (no whole one).
    pub cut: usize,
    /// Sent to the mbox.
    pub mbox: bool,
}

impl Loss {
    pub fn text(&self) -> String {
        let mut why = Vec::new();
        if self.accepted
            && let Some(v) = self.via
        {
            why.push(format!("accepted ({})", v.acceptance()));
        }
        if self.logged {
            why.push(match self.want {
                Want::Delivery => "delivery logged as success before the crash".to_string(),
                Want::Bounce => "delivery logged as failure before the crash".to_string(),
            });
        }
        let what = match self.want {
            Want::Delivery => "",
            Want::Bounce => "bounce ",
        };
        let box_ = if self.mbox { "mbox" } else { "Maildir" };
        let found = if self.cut > 0 {
            format!(
                "{} cut {what}cop{} in the {box_}",
                self.cut,
                if self.cut == 1 { "y" } else { "ies" }
            )
        } else {
            format!("no {what}copy in the {box_}")
        };
        format!("{}: {}, {found}", self.id, why.join(", "))
    }
}

/// The outcome of one case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub sent: usize,
    /// Accepted messages by path.
    pub accepted: BTreeMap<Via, usize>,
    /// Deliveries logged as successful, and as failed, before the crash.
    pub delivered_before: usize,
    pub failed_before: usize,
    pub lost: Vec<Loss>,
    /// Delivered although the client did not see them accepted (allowed).
    pub unacknowledged: usize,
    /// Messages delivered (or bounced) more than once (allowed: qmail delivers at least
    /// once).
    pub duplicates: usize,
    /// Bounces that came as expected.
    pub bounced: usize,
    /// Bounces of messages that should have been delivered, or of nothing known.
    pub stray_bounces: usize,
    pub unreadable: usize,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost.is_empty() && self.stray_bounces == 0 && self.unreadable == 0
    }
}

/// The verdict: what [`expected`] wants must have arrived.
pub fn judge(ledger: &[Sent], before: &LogFacts, mailbox: &Mailbox) -> Verdict {
    let mut v = Verdict {
        sent: ledger.len(),
        delivered_before: before.success.len(),
        failed_before: before.failure.len(),
        unreadable: mailbox.unreadable.len(),
        ..Verdict::default()
    };
    let by_id: HashMap<&str, &Sent> = ledger.iter().map(|s| (s.id.as_str(), s)).collect();
    for s in ledger.iter().filter(|s| s.accepted) {
        *v.accepted.entry(s.via).or_default() += 1;
    }
    for (id, want) in expected(ledger, before) {
        if arrived(mailbox, &id, want) {
            continue;
        }
        let sent = by_id.get(id.as_str());
        let cut = match want {
            Want::Delivery => mailbox.cut.get(&id),
            Want::Bounce => mailbox.bounce_cut.get(&id),
        };
        v.lost.push(Loss {
            want,
            via: sent.map(|s| s.via),
            accepted: sent.is_some_and(|s| s.accepted),
            logged: before.success.contains(&id) || before.failure.contains(&id),
            cut: cut.copied().unwrap_or(0),
            mbox: sent.is_some_and(|s| s.mbox),
            id,
        });
    }
    for s in ledger {
        let got = if s.bounce {
            mailbox.bounced.contains_key(&s.id)
        } else {
            mailbox.whole.contains_key(&s.id)
        };
        if got && !s.accepted {
            v.unacknowledged += 1;
        }
        if s.bounce && got {
            v.bounced += 1;
        }
    }
    v.stray_bounces = mailbox
        .bounced
        .keys()
        .filter(|id| !by_id.get(id.as_str()).is_some_and(|s| s.bounce))
        .count()
        + mailbox
            .bounce_cut
            .iter()
            .filter(|(id, _)| !by_id.get(id.as_str()).is_some_and(|s| s.bounce))
            .map(|(_, n)| n)
            .sum::<usize>()
        + mailbox
            .whole
            .keys()
            .filter(|id| by_id.get(id.as_str()).is_some_and(|s| s.bounce))
            .count();
    v.duplicates = mailbox
        .whole
        .values()
        .chain(mailbox.bounced.values())
        .filter(|&&n| n > 1)
        .count();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(m: &[u8]) -> Vec<u8> {
        // What qmail-local writes: Return-Path, Delivered-To, qmail-queue's Received.
        let mut d = b"Return-Path: <sender@crash.example>\nDelivered-To: x\nReceived: (qmail 1 invoked by uid 65534); 1 Jan 2026 00:00:00 -0000\n".to_vec();
        d.extend_from_slice(m);
        d
    }

    /// A bounce of `m` as qmail-send writes it, delivered.
    fn bounce(m: &[u8]) -> Vec<u8> {
        let mut d = b"Return-Path: <>\nDelivered-To: pl-sender\nReceived: (qmail 2 invoked for bounce); 1 Jan 2026 00:00:01 -0000\nFrom: MAILER-DAEMON@crash.example\nSubject: failure notice\n\nHi. This is the qmail-send program at crash.example.\n\n<bx-x@crash.example>:\nProgram exited 100.\n\n--- Below this line is a copy of the message.\n\n".to_vec();
        d.extend_from_slice(&delivered(m));
        d
    }

    fn m(id: &str, sizes: &[u8]) -> Vec<u8> {
        message(
            id,
            &format!("{}@{ME}", local_part(id, Dest::Maildir)),
            sizes,
        )
    }

    #[test]
    fn whole_copies_pass_and_cut_ones_do_not() {
        let msg = m("c1m2", &[0, 10, 200, 3]);
        assert_eq!(
            read_copy(&delivered(&msg)),
            Copy::Ours {
                id: "c1m2".into(),
                whole: true
            }
        );
        // Every shorter copy is cut, whatever the length.
        let d = delivered(&msg);
        let head = d.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        for n in head..d.len() {
            assert_eq!(
                read_copy(&d[..n]),
                Copy::Ours {
                    id: "c1m2".into(),
                    whole: false
                },
                "{n}"
            );
        }
        // So is one with a block of zeros (a lost page).
        let mut z = d.clone();
        for b in &mut z[head + 5..head + 20] {
            *b = 0;
        }
        assert!(matches!(read_copy(&z), Copy::Ours { whole: false, .. }));
        assert_eq!(read_copy(b""), Copy::Unreadable);
        assert_eq!(read_copy(&d[..20]), Copy::Unreadable);
        // An empty body is whole too.
        assert!(matches!(
            read_copy(&delivered(&m("x", &[]))),
            Copy::Ours { whole: true, .. }
        ));
    }

    #[test]
    fn bounces_are_known_by_the_message_they_quote() {
        let msg = message("c1m3", "bx-c1m3@crash.example", &[20; 30]);
        assert_eq!(
            read_copy(&bounce(&msg)),
            Copy::Bounce {
                id: Some("c1m3".into()),
                whole: true
            }
        );
        let b = bounce(&msg);
        assert_eq!(
            read_copy(&b[..b.len() - 10]),
            Copy::Bounce {
                id: Some("c1m3".into()),
                whole: false
            }
        );
        assert_eq!(
            read_copy(b"Return-Path: <>\nX-Crash-Id: c1m2\n\nno copy\n"),
            Copy::Bounce {
                id: None,
                whole: false
            }
        );
        assert!(matches!(read_copy(&b[..60]), Copy::Bounce { id: None, .. }));
    }

    #[test]
    fn scan_counts_new_and_cur() {
        let t = tempfile::tempdir().unwrap();
        for d in ["new", "cur", "tmp"] {
            fs::create_dir(t.path().join(d)).unwrap();
        }
        let msg = delivered(&m("a1", &[5; 10]));
        fs::write(t.path().join("new/1"), &msg).unwrap();
        fs::write(t.path().join("cur/2"), &msg).unwrap();
        fs::write(t.path().join("new/3"), &msg[..msg.len() - 3]).unwrap();
        fs::write(t.path().join("new/4"), b"").unwrap();
        fs::write(t.path().join("tmp/5"), b"").unwrap();
        let b = bounce(&message("b1", "bx-b1@crash.example", &[1, 2]));
        fs::write(t.path().join("new/6"), &b).unwrap();
        fs::write(t.path().join("new/7"), &b[..b.len() - 2]).unwrap();
        let mb = scan(t.path());
        assert_eq!(mb.whole.get("a1"), Some(&2));
        assert_eq!(mb.cut.get("a1"), Some(&1));
        assert_eq!(mb.bounced.get("b1"), Some(&1));
        assert_eq!(mb.bounce_cut.get("b1"), Some(&1));
        assert_eq!(mb.unreadable, ["new/4"]);
        assert_eq!(mb.tmp, 1);
        // A rescan reads again what was not whole: a file completed since counts.
        let mut sc = Scanner::default();
        assert_eq!(sc.scan(t.path()), mb);
        fs::write(t.path().join("new/3"), &msg).unwrap();
        fs::write(t.path().join("new/7"), &b).unwrap();
        fs::remove_file(t.path().join("cur/2")).unwrap();
        let mb2 = sc.scan(t.path());
        assert_eq!(mb2.whole.get("a1"), Some(&2));
        assert_eq!(mb2.cut.get("a1"), None);
        assert_eq!(mb2.bounced.get("b1"), Some(&2));
    }

    #[test]
    fn mbox_copies_count_as_deliveries() {
        // As qmail-local appends them: From_ line, its lines, the message, a blank line.
        let mbox_copy = |m: &[u8]| {
            let mut d = b"From sender@crash.example Thu Jan  1 00:00:00 2026\n".to_vec();
            d.extend_from_slice(&delivered(m));
            d.push(b'\n');
            d
        };
        let a = mbox_copy(&message("c1m1", "mb-c1m1@crash.example", &[5; 10]));
        let b = mbox_copy(&message("c1m2", "mb-c1m2@crash.example", &[60; 3]));
        let mut all = a.clone();
        all.extend_from_slice(&b);
        all.extend_from_slice(&a);
        assert_eq!(mbox_messages(&all).len(), 3);
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join(MBOX), &all).unwrap();
        let mb = scan(t.path());
        assert_eq!(mb.whole.get("c1m1"), Some(&2));
        assert_eq!(mb.whole.get("c1m2"), Some(&1));
        assert!(mb.cut.is_empty() && mb.unreadable.is_empty());
        // The last message cut short, at any length past its header: cut, not whole.
        let head = all.len() - a.len() + a.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        for n in head..all.len() - 1 {
            fs::write(t.path().join(MBOX), &all[..n]).unwrap();
            let mb = scan(t.path());
            assert_eq!(mb.whole.get("c1m1"), Some(&1), "{n}");
            assert_eq!(mb.cut.get("c1m1"), Some(&1), "{n}");
        }
        // A From_ line alone is unreadable; an empty mbox holds nothing.
        fs::write(t.path().join(MBOX), b"From x\n").unwrap();
        assert_eq!(scan(t.path()).unreadable, ["mbox message 1"]);
        fs::write(t.path().join(MBOX), b"").unwrap();
        assert_eq!(scan(t.path()), Mailbox::default());
    }

    #[test]
    fn log_lines_are_matched_by_delivery_number() {
        let log = "\
@400000 status: local 0/10 remote 0/20
starting delivery 1: msg 100 to local pl-c1m1@crash.example
starting delivery 2: msg 101 to local pl-c1m2@crash.example
delivery 2: deferral: Unable_to_open_Maildir/
delivery 1: success: did_0+0+1/
starting delivery 1: msg 102 to local bx-c1m3@crash.example
delivery 1: failure: Program_exited_100/
starting delivery 3: msg 103 to remote x@y.example
delivery 3: success: remote
starting delivery 2: msg 101 to local crash.example-pl-c1m2@crash.example
delivery 2: success: did_0+0+1/
delivery 9: success: unknown_delivery
starting delivery 4: msg 104 to local pl-c1m4@crash.example
";
        let f = parse_log(log);
        assert_eq!(f.success.iter().collect::<Vec<_>>(), ["c1m1", "c1m2"]);
        assert_eq!(f.failure.iter().collect::<Vec<_>>(), ["c1m3"]);
        assert_eq!(f.deferrals, 1);
        assert_eq!(id_of_recipient("pl-@x"), None);
        assert_eq!(id_of_recipient("pl-a/b@x"), None);
        assert_eq!(id_of_recipient("bx-ab@x"), Some("ab".into()));
    }

    #[test]
    fn judge_finds_accepted_and_logged_messages_missing() {
        let s = |id: &str, via, bounce, accepted| Sent {
            id: id.into(),
            via,
            bounce,
            mbox: false,
            accepted,
            detail: String::new(),
        };
        let ledger = vec![
            s("a", Via::Smtp, false, true),
            s("b", Via::Queue, false, true),
            s("c", Via::Inject, false, false),
            s("d", Via::Inject, false, false),
            s("e", Via::Smtp, false, true),
            s("f", Via::Queue, true, true),
            s("g", Via::Smtp, true, false),
            s("h", Via::Smtp, true, true),
        ];
        let mut before = LogFacts::default();
        before.success.insert("d".into());
        before.success.insert("e".into());
        before.failure.insert("g".into());
        let mut mb = Mailbox::default();
        mb.whole.insert("a".into(), 2);
        mb.whole.insert("c".into(), 1);
        mb.cut.insert("b".into(), 1);
        mb.bounced.insert("h".into(), 1);
        mb.bounce_cut.insert("f".into(), 1);
        let v = judge(&ledger, &before, &mb);
        assert_eq!(v.sent, 8);
        assert_eq!(v.accepted.get(&Via::Smtp), Some(&3));
        assert_eq!(v.accepted.get(&Via::Queue), Some(&2));
        assert_eq!(v.accepted.get(&Via::Inject), None);
        assert_eq!(v.delivered_before, 2);
        assert_eq!(v.failed_before, 1);
        assert_eq!(v.unacknowledged, 1);
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.bounced, 1);
        assert_eq!(v.stray_bounces, 0);
        let lost: Vec<String> = v.lost.iter().map(Loss::text).collect();
        assert_eq!(
            lost,
            [
                "b: accepted (qmail-queue exit 0), 1 cut copy in the Maildir",
                "d: delivery logged as success before the crash, no copy in the Maildir",
                "e: accepted (250 after DATA), delivery logged as success before the crash, no copy in the Maildir",
                "f: accepted (qmail-queue exit 0), 1 cut bounce copy in the Maildir",
                "g: delivery logged as failure before the crash, no bounce copy in the Maildir",
            ]
        );
        assert!(!v.ok());
        for id in ["b", "d", "e"] {
            mb.whole.insert(id.into(), 1);
        }
        for id in ["f", "g"] {
            mb.bounced.insert(id.into(), 1);
        }
        assert!(judge(&ledger, &before, &mb).ok());
        // A bounce of a message that should have been delivered is wrong.
        mb.bounced.insert("a".into(), 1);
        let v = judge(&ledger, &before, &mb);
        assert_eq!(v.stray_bounces, 1);
        assert!(!v.ok());
    }
}
