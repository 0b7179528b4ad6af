//! The checker: the messages (each with an id and a check line that tells a whole copy
//! from a truncated one), qmail-send's log (which deliveries it reported as successful),
//! the Maildir, and the verdict of one case.

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
    pub accepted: bool,
    /// Why not, when not.
    pub detail: String,
}

/// The local part of the (only) recipient of message `id`.
pub fn local_part(id: &str) -> String {
    format!("pl-{id}")
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

/// Message `id` (LF line ends): a header with the id, `lines` body lines whose lengths
/// come from `sizes`, and a last line `check ID LINES HASH` covering the body before it.
pub fn message(id: &str, sizes: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "From: sender@{ME}\nTo: {}@{ME}\nSubject: power loss test {id}\nX-Crash-Id: {id}\n\n",
        local_part(id)
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

/// What a delivered file holds: the id, and whether the copy is whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copy {
    /// A message of this test; `whole` when its check line matches its body.
    Ours { id: String, whole: bool },
    /// A bounce (the envelope sender was empty).
    Bounce,
    /// Anything else (an empty or cut file whose id cannot be read).
    Unreadable,
}

/// Reads a delivered file (with the lines qmail-local and qmail-queue prepend).
pub fn read_copy(m: &[u8]) -> Copy {
    if m.starts_with(b"Return-Path: <>\n") || m.starts_with(b"Return-Path: <#@[]>\n") {
        return Copy::Bounce;
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

/// The Maildir's contents (new/ and cur/).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailbox {
    /// Whole copies by id.
    pub whole: HashMap<String, usize>,
    /// Cut copies by id.
    pub cut: HashMap<String, usize>,
    pub bounces: usize,
    /// Files whose id could not be read.
    pub unreadable: Vec<String>,
    /// Files left in tmp/.
    pub tmp: usize,
}

/// Reads a Maildir once.
pub fn scan(maildir: &Path) -> Mailbox {
    Scanner::default().scan(maildir)
}

/// Reads a Maildir again and again (while qmail-send delivers): a whole copy in new/
/// never changes, so it is read once; anything else is read again each time.
#[derive(Debug, Default)]
pub struct Scanner {
    whole: HashMap<String, String>,
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
                if let Some(id) = self.whole.get(&name) {
                    *b.whole.entry(id.clone()).or_default() += 1;
                    continue;
                }
                let Ok(m) = fs::read(e.path()) else {
                    b.unreadable.push(name);
                    continue;
                };
                match read_copy(&m) {
                    Copy::Ours { id, whole: true } => {
                        *b.whole.entry(id.clone()).or_default() += 1;
                        self.whole.insert(name, id);
                    }
                    Copy::Ours { id, whole: false } => *b.cut.entry(id).or_default() += 1,
                    Copy::Bounce => b.bounces += 1,
                    Copy::Unreadable => b.unreadable.push(name),
                }
            }
        }
        b.tmp = fs::read_dir(maildir.join("tmp")).map_or(0, Iterator::count);
        b
    }
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

/// The id in a local recipient `pl-ID@crash.example` (qmail-send logs local
/// recipients as `local ADDRESS`).
fn id_of_recipient(r: &str) -> Option<String> {
    let at = r.rfind('@')?;
    let local = &r[..at];
    let start = local.rfind("pl-")? + 3;
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

/// A message lost by the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub id: String,
    /// How it was sent.
    pub via: Option<Via>,
    /// Its client saw it accepted.
    pub accepted: bool,
    /// qmail-send logged its delivery as successful before the power went.
    pub delivered: bool,
    /// Cut copies found (no whole one).
    pub cut: usize,
}

impl Loss {
    pub fn text(&self) -> String {
        let mut why = Vec::new();
        if self.accepted
            && let Some(v) = self.via
        {
            why.push(format!("accepted ({})", v.acceptance()));
        }
        if self.delivered {
            why.push("delivery logged as success before the crash".to_string());
        }
        let found = if self.cut > 0 {
            format!(
                "{} cut cop{} in the Maildir",
                self.cut,
                if self.cut == 1 { "y" } else { "ies" }
            )
        } else {
            "not in the Maildir".to_string()
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
    /// Successful deliveries logged before the crash.
    pub delivered_before: usize,
    pub lost: Vec<Loss>,
    /// Delivered although the client did not see them accepted (allowed).
    pub unacknowledged: usize,
    /// Messages delivered more than once (allowed: qmail delivers at least once).
    pub duplicates: usize,
    pub bounces: usize,
    pub unreadable: usize,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost.is_empty() && self.bounces == 0 && self.unreadable == 0
    }
}

/// Every message whose acceptance was reported, and every message whose delivery
/// qmail-send logged as successful before the crash, must have a whole copy in the
/// Maildir.
pub fn judge(ledger: &[Sent], before: &LogFacts, mailbox: &Mailbox) -> Verdict {
    let mut v = Verdict {
        sent: ledger.len(),
        delivered_before: before.success.len(),
        bounces: mailbox.bounces,
        unreadable: mailbox.unreadable.len(),
        ..Verdict::default()
    };
    let by_id: HashMap<&str, &Sent> = ledger.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut must: BTreeSet<&str> = BTreeSet::new();
    for s in ledger.iter().filter(|s| s.accepted) {
        *v.accepted.entry(s.via).or_default() += 1;
        must.insert(&s.id);
    }
    must.extend(before.success.iter().map(String::as_str));
    for id in must {
        if mailbox.whole.contains_key(id) {
            continue;
        }
        let sent = by_id.get(id);
        v.lost.push(Loss {
            id: id.to_string(),
            via: sent.map(|s| s.via),
            accepted: sent.is_some_and(|s| s.accepted),
            delivered: before.success.contains(id),
            cut: mailbox.cut.get(id).copied().unwrap_or(0),
        });
    }
    v.unacknowledged = ledger
        .iter()
        .filter(|s| !s.accepted && mailbox.whole.contains_key(&s.id))
        .count();
    v.duplicates = mailbox.whole.values().filter(|&&n| n > 1).count();
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

    #[test]
    fn whole_copies_pass_and_cut_ones_do_not() {
        let m = message("c1m2", &[0, 10, 200, 3]);
        assert_eq!(
            read_copy(&delivered(&m)),
            Copy::Ours {
                id: "c1m2".into(),
                whole: true
            }
        );
        // Every shorter copy is cut, whatever the length.
        let d = delivered(&m);
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
        assert_eq!(
            read_copy(b"Return-Path: <>\nX-Crash-Id: c1m2\n\nbounce\n"),
            Copy::Bounce
        );
        // An empty body is whole too.
        assert!(matches!(
            read_copy(&delivered(&message("x", &[]))),
            Copy::Ours { whole: true, .. }
        ));
    }

    #[test]
    fn scan_counts_new_and_cur() {
        let t = tempfile::tempdir().unwrap();
        for d in ["new", "cur", "tmp"] {
            fs::create_dir(t.path().join(d)).unwrap();
        }
        let m = delivered(&message("a1", &[5; 10]));
        fs::write(t.path().join("new/1"), &m).unwrap();
        fs::write(t.path().join("cur/2"), &m).unwrap();
        fs::write(t.path().join("new/3"), &m[..m.len() - 3]).unwrap();
        fs::write(t.path().join("new/4"), b"").unwrap();
        fs::write(t.path().join("tmp/5"), b"").unwrap();
        let b = scan(t.path());
        assert_eq!(b.whole.get("a1"), Some(&2));
        assert_eq!(b.cut.get("a1"), Some(&1));
        assert_eq!(b.unreadable, ["new/4"]);
        assert_eq!(b.tmp, 1);
        // A rescan reads again what was not whole: a file completed since counts.
        let mut sc = Scanner::default();
        assert_eq!(sc.scan(t.path()), b);
        fs::write(t.path().join("new/3"), &m).unwrap();
        fs::remove_file(t.path().join("cur/2")).unwrap();
        let b2 = sc.scan(t.path());
        assert_eq!(b2.whole.get("a1"), Some(&2));
        assert_eq!(b2.cut.get("a1"), None);
    }

    #[test]
    fn log_lines_are_matched_by_delivery_number() {
        let log = "\
@400000 status: local 0/10 remote 0/20
starting delivery 1: msg 100 to local pl-c1m1@crash.example
starting delivery 2: msg 101 to local pl-c1m2@crash.example
delivery 2: deferral: Unable_to_open_Maildir/
delivery 1: success: did_0+0+1/
starting delivery 1: msg 102 to local pl-c1m3@crash.example
delivery 1: failure: no_such_user/
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
    }

    #[test]
    fn judge_finds_accepted_and_delivered_messages_missing() {
        let s = |id: &str, via, accepted| Sent {
            id: id.into(),
            via,
            accepted,
            detail: String::new(),
        };
        let ledger = vec![
            s("a", Via::Smtp, true),
            s("b", Via::Queue, true),
            s("c", Via::Inject, false),
            s("d", Via::Inject, false),
            s("e", Via::Smtp, true),
        ];
        let mut before = LogFacts::default();
        before.success.insert("d".into());
        before.success.insert("e".into());
        let mut mb = Mailbox::default();
        mb.whole.insert("a".into(), 2);
        mb.whole.insert("c".into(), 1);
        mb.cut.insert("b".into(), 1);
        let v = judge(&ledger, &before, &mb);
        assert_eq!(v.sent, 5);
        assert_eq!(v.accepted.get(&Via::Smtp), Some(&2));
        assert_eq!(v.accepted.get(&Via::Queue), Some(&1));
        assert_eq!(v.accepted.get(&Via::Inject), None);
        assert_eq!(v.delivered_before, 2);
        assert_eq!(v.unacknowledged, 1);
        assert_eq!(v.duplicates, 1);
        let lost: Vec<String> = v.lost.iter().map(Loss::text).collect();
        assert_eq!(
            lost,
            [
                "b: accepted (qmail-queue exit 0), 1 cut copy in the Maildir",
                "d: delivery logged as success before the crash, not in the Maildir",
                "e: accepted (250 after DATA), delivery logged as success before the crash, not in the Maildir",
            ]
        );
        assert!(!v.ok());
        mb.whole.insert("b".into(), 1);
        mb.whole.insert("d".into(), 1);
        mb.whole.insert("e".into(), 1);
        assert!(judge(&ledger, &before, &mb).ok());
        mb.bounces = 1;
        assert!(!judge(&ledger, &before, &mb).ok());
    }
}
