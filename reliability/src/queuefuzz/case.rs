//! The cases: one message (the *bad* one, number [`BAD`]) planted in the queue in a known
//! state with netqmail's file formats, and one thing done to one of its files (or to a
//! lock file, or a stray entry added to a queue directory). Everything here is pure: a
//! case is data, made from a seeded generator, written to and read from case files.

use crate::rng::Rng;
use qmail_queue::fmtqfn;

/// The number of the bad message: far above the inode numbers qmail-queue names the good
/// message after, and above 2^31 (netqmail's programs keep it in an unsigned long).
pub const BAD: u64 = 4_000_000_007;

/// The age in seconds of the planted info/ and channel files: the message was
/// preprocessed an hour ago and its next delivery attempt is due.
pub const BIRTH_AGE: u64 = 3600;

/// The age of abandoned pid/ files: more than qmail-clean's 36 hours.
pub const OLD_AGE: u64 = 40 * 3600;

/// The domain of the local recipients (control/me and control/locals).
pub const LOCAL_DOMAIN: &str = "testhost.example";
/// A remote domain (the fake qmail-remote delivers everything).
pub const REMOTE_DOMAIN: &str = "remote.example";

/// The message qmail-queue stores next to the bad one, and its envelope.
pub const GOOD_TEXT: &str = "Subject: good\n\nThe valid message next to the bad file.\n";
pub const GOOD_SENDER: &str = "good-sender@remote.example";
pub const GOOD_LOCAL: &str = "good-local@testhost.example";
pub const GOOD_REMOTE: &str = "good-remote@remote.example";

const BAD_TEXT: &[u8] = b"Subject: bad\n\nThe message whose files are damaged.\n";
const BAD_SENDER: &[u8] = b"bad-sender@remote.example";
const BAD_LOCAL: &[u8] = b"bad-local@testhost.example";
const BAD_DONE: &[u8] = b"bad-done@testhost.example";
/// The fake qmail-local fails every local part starting with `fail` permanently.
const BAD_FAIL: &[u8] = b"fail-local@testhost.example";
const BAD_REMOTE: &[u8] = b"bad-remote@remote.example";

/// Which queue file a case damages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Todo,
    Intd,
    Mess,
    Info,
    Local,
    Remote,
    Bounce,
    Tcpto,
    Trigger,
    Sendmutex,
    Pid,
    /// An entry that is no message of the queue's: a name that is no message number, a
    /// number in the wrong subdirectory, one beyond 64 bits, a directory.
    Stray,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Todo,
        Kind::Intd,
        Kind::Mess,
        Kind::Info,
        Kind::Local,
        Kind::Remote,
        Kind::Bounce,
        Kind::Tcpto,
        Kind::Trigger,
        Kind::Sendmutex,
        Kind::Pid,
        Kind::Stray,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Todo => "todo",
            Kind::Intd => "intd",
            Kind::Mess => "mess",
            Kind::Info => "info",
            Kind::Local => "local",
            Kind::Remote => "remote",
            Kind::Bounce => "bounce",
            Kind::Tcpto => "tcpto",
            Kind::Trigger => "trigger",
            Kind::Sendmutex => "sendmutex",
            Kind::Pid => "pid",
            Kind::Stray => "stray",
        }
    }

    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// What is at a path of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Dir,
    Fifo,
    Symlink(String),
    /// Nothing: the file is removed.
    Missing,
}

/// One entry written into the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plant {
    /// Relative to the queue directory.
    pub path: String,
    pub node: Node,
    /// Permission bits (default: what netqmail gives such a file).
    pub mode: Option<u32>,
    /// Access and modification time, in seconds before now (default: now).
    pub age: Option<u64>,
}

impl Plant {
    fn file(path: String, data: &[u8]) -> Plant {
        Plant {
            path,
            node: Node::File(data.to_vec()),
            mode: None,
            age: None,
        }
    }

    fn aged(mut self, age: u64) -> Plant {
        self.age = Some(age);
        self
    }
}

/// One case: the planted entries, in order (later entries replace earlier ones at the
/// same path), and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub kind: Kind,
    pub mutation: String,
    pub plants: Vec<Plant>,
}

impl Case {
    /// `kind/mutation`, as reports name a case.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind.name(), self.mutation)
    }

    /// Whether a mutation leaves a device in the queue that reads without end: run on a
    /// qmail that copies it (netqmail's bounce injection), it fills the disk.
    pub fn endless(&self) -> bool {
        self.plants
            .iter()
            .any(|p| matches!(&p.node, Node::Symlink(t) if t == "/dev/zero"))
    }
}

/// The state the bad message is in before the damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// mess, intd, todo: queued, not preprocessed.
    New,
    /// mess, info, local, remote (and maybe bounce): preprocessed, deliveries due.
    Preprocessed,
    /// mess, info, bounce: every recipient done, the bounce to be sent.
    Done,
}

fn path(dir: &str, split: bool) -> String {
    fmtqfn(dir, BAD, split)
}

/// The records qmail-queue writes to intd/N and links to todo/N.
fn envelope(with_fail: bool) -> Vec<u8> {
    let mut v = b"u65534\0p4242\0F".to_vec();
    v.extend_from_slice(BAD_SENDER);
    v.push(0);
    let mut rcpts = vec![BAD_LOCAL, BAD_REMOTE];
    if with_fail {
        rcpts.push(BAD_FAIL);
    }
    for r in rcpts {
        v.push(b'T');
        v.extend_from_slice(r);
        v.push(0);
    }
    v
}

fn records(recs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (t, a) in recs {
        v.push(*t);
        v.extend_from_slice(a);
        v.push(0);
    }
    v
}

const BOUNCE_TEXT: &[u8] =
    b"<bad-done@testhost.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n";

/// The valid files of the bad message in `state`.
fn base(state: State, with_fail: bool) -> Vec<Plant> {
    let mess = Plant::file(path("mess", true), BAD_TEXT);
    let info = || Plant::file(path("info", true), &records(&[(b'F', BAD_SENDER)])).aged(BIRTH_AGE);
    match state {
        State::New => vec![
            mess,
            Plant::file(path("intd", false), &envelope(with_fail)),
            Plant::file(path("todo", false), &envelope(with_fail)),
        ],
        State::Preprocessed => {
            let mut local = vec![(b'D', BAD_DONE), (b'T', BAD_LOCAL)];
            if with_fail {
                local.push((b'T', BAD_FAIL));
            }
            vec![
                mess,
                info(),
                Plant::file(path("local", true), &records(&local)).aged(BIRTH_AGE),
                Plant::file(path("remote", true), &records(&[(b'T', BAD_REMOTE)])).aged(BIRTH_AGE),
                Plant::file(path("bounce", false), BOUNCE_TEXT),
            ]
        }
        State::Done => vec![
            mess,
            info(),
            Plant::file(path("bounce", false), BOUNCE_TEXT),
        ],
    }
}

/// netqmail's lock/tcpto with two hosts in it: 127.0.0.2 (two recent timeouts: skipped)
/// and 192.0.2.7 (one old timeout).
fn tcpto_table(now: i64) -> Vec<u8> {
    let mut t = vec![0u8; 1024];
    let rec = |t: &mut [u8], i: usize, ip: [u8; 4], count: u8, when: u32| {
        let r = &mut t[i * 16..(i + 1) * 16];
        r[..4].copy_from_slice(&ip);
        r[4] = count;
        r[8..12].copy_from_slice(&when.to_le_bytes());
    };
    rec(
        &mut t,
        0,
        [127, 0, 0, 2],
        2,
        u32::try_from(now).unwrap_or(0),
    );
    rec(&mut t, 5, [192, 0, 2, 7], 1, 1_600_000_000);
    t
}

/// The byte-level damage done to a record file (NUL-terminated records) or any other
/// file; `records` says whether the file is made of records.
fn mutate_bytes(rng: &mut Rng, data: &[u8], records: bool) -> (String, Vec<u8>) {
    let pick = |rng: &mut Rng, n: usize| usize::try_from(rng.below(n as u64)).unwrap_or(0);
    // Record boundaries: the index just after each NUL, and 0.
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            data.iter()
                .enumerate()
                .filter(|(_, c)| **c == 0)
                .map(|(i, _)| i + 1),
        )
        .filter(|&i| i < data.len())
        .collect();
    let choices: &[&str] = if records {
        &[
            "truncate",
            "empty",
            "no-final-nul",
            "extra-nul",
            "empty-record",
            "unknown-type",
            "unknown-record",
            "huge-record",
            "long-record",
            "garbage",
            "flip",
            "duplicate-record",
            "drop-record",
            "nul-inside",
            "newlines",
            "no-type",
        ]
    } else {
        // Message texts and collected failures: what qmail-send copies into a bounce.
        &[
            "truncate",
            "empty",
            "garbage",
            "flip",
            "huge",
            "appended",
            "nul-bytes",
            "bare-cr",
            "no-final-newline",
            "long-line",
            "dot-lines",
            "8bit",
            "blank-lines",
        ]
    };
    let m = choices[pick(rng, choices.len())];
    let mut v = data.to_vec();
    match m {
        "truncate" => v.truncate(pick(rng, data.len().max(1))),
        "empty" => v.clear(),
        "no-final-nul" if v.last() == Some(&0) => {
            v.pop();
        }
        "extra-nul" => v.push(0),
        "empty-record" => {
            let at = starts.get(pick(rng, starts.len())).copied().unwrap_or(0);
            v.insert(at, 0);
        }
        "unknown-type" => {
            if let Some(&at) = starts.get(pick(rng, starts.len())) {
                let letters = b"XtfdU\x01\xff 7";
                v[at] = letters[pick(rng, letters.len())];
            }
        }
        "unknown-record" => {
            let at = starts.get(pick(rng, starts.len())).copied().unwrap_or(0);
            v.splice(at..at, b"Xunknown record\0".iter().copied());
        }
        "huge-record" | "long-record" => {
            // Over and under rqmail's bound on one record (1 MiB).
            let len = if m == "huge-record" {
                (2 << 20) + pick(rng, 4096)
            } else {
                64 * 1024 + pick(rng, 4096)
            };
            let at = starts.get(pick(rng, starts.len())).copied().unwrap_or(0);
            let mut rec = vec![if rng.below(2) == 0 { b'T' } else { b'F' }];
            rec.extend(std::iter::repeat_n(b'a', len));
            rec.extend_from_slice(b"@testhost.example\0");
            v.splice(at..at, rec);
        }
        "huge" => v.extend(std::iter::repeat_n(b'x', (2 << 20) + pick(rng, 4096))),
        "appended" => v.extend_from_slice(b"\0\0trailing\0garbage"),
        "nul-bytes" => {
            for _ in 0..1 + pick(rng, 8) {
                let at = pick(rng, v.len() + 1);
                v.insert(at, 0);
            }
        }
        "bare-cr" => {
            // Some line ends CR LF, some a CR alone.
            v = v
                .iter()
                .flat_map(|&c| match c {
                    b'\n' if rng.below(2) == 0 => vec![b'\r', b'\n'],
                    b'\n' => vec![b'\r'],
                    c => vec![c],
                })
                .collect();
        }
        "no-final-newline" => {
            while v.last() == Some(&b'\n') {
                v.pop();
            }
            v.extend_from_slice(b"no newline at the end");
        }
        "long-line" => {
            // Longer than any line buffer of 64 KiB, shorter than a record's bound.
            let at = pick(rng, v.len() + 1);
            let line = std::iter::repeat_n(b'L', 200_000 + pick(rng, 4096));
            v.splice(at..at, line);
        }
        "dot-lines" => v.extend_from_slice(b".\n..\n. \n.\r\n.x\n\n.\n"),
        "8bit" => {
            for c in &mut v {
                if rng.below(4) == 0 {
                    *c |= 0x80;
                }
            }
        }
        "blank-lines" => {
            // Paragraphs as in bounce/N: `<addr>:`, the report, an empty line.
            v.extend_from_slice(b"\n\n\n<x@y>:\n\n\nreport\n\n");
        }
        "garbage" => {
            let n = 1 + pick(rng, 4096);
            v = (0..n).map(|_| rng.next_u64() as u8).collect();
        }
        "flip" if !v.is_empty() => {
            for _ in 0..1 + pick(rng, 4) {
                let i = pick(rng, v.len());
                v[i] ^= 1 << pick(rng, 8);
            }
        }
        "duplicate-record" => {
            if let Some(&at) = starts.get(pick(rng, starts.len())) {
                let end = v[at..]
                    .iter()
                    .position(|&c| c == 0)
                    .map_or(v.len(), |p| at + p + 1);
                let rec = v[at..end].to_vec();
                v.splice(at..at, rec);
            }
        }
        "drop-record" => {
            if let Some(&at) = starts.get(pick(rng, starts.len())) {
                let end = v[at..]
                    .iter()
                    .position(|&c| c == 0)
                    .map_or(v.len(), |p| at + p + 1);
                v.drain(at..end);
            }
        }
        "nul-inside" if !v.is_empty() => {
            let i = pick(rng, v.len());
            v[i] = 0;
        }
        "newlines" => {
            for c in &mut v {
                if *c == 0 {
                    *c = b'\n';
                }
            }
        }
        "no-type" => {
            if let Some(&at) = starts.get(pick(rng, starts.len())) {
                v.remove(at);
            }
        }
        _ => {}
    }
    (m.to_string(), v)
}

/// The damage that replaces a file by something else.
const NODE_MUTATIONS: &[&str] = &[
    "directory",
    "fifo",
    "dangling-symlink",
    "dev-null",
    "dev-zero",
    "missing",
    "unreadable",
];

fn node_mutation(m: &str, p: &mut Plant) {
    match m {
        "directory" => p.node = Node::Dir,
        "fifo" => p.node = Node::Fifo,
        "dangling-symlink" => p.node = Node::Symlink("/nonexistent/qfuzz".into()),
        "dev-null" => p.node = Node::Symlink("/dev/null".into()),
        "dev-zero" => p.node = Node::Symlink("/dev/zero".into()),
        "missing" => p.node = Node::Missing,
        "unreadable" => p.mode = Some(0),
        _ => {}
    }
}

/// Damages the plant at `path` in `plants`: a node mutation or (for files) bytes.
fn damage(rng: &mut Rng, plants: &mut [Plant], path: &str, records: bool) -> String {
    let Some(p) = plants.iter_mut().find(|p| p.path == path) else {
        return "none".into();
    };
    // One case in three replaces the file, the others change its bytes.
    if rng.below(3) == 0 {
        let m =
            NODE_MUTATIONS[usize::try_from(rng.below(NODE_MUTATIONS.len() as u64)).unwrap_or(0)];
        node_mutation(m, p);
        return m.to_string();
    }
    let Node::File(data) = &p.node else {
        return "none".into();
    };
    let (m, v) = mutate_bytes(rng, data, records);
    p.node = Node::File(v);
    m
}

/// The case of a kind, its damage chosen by `rng`. `now` is used for tcpto's times.
pub fn generate(kind: Kind, rng: &mut Rng, now: i64) -> Case {
    let with_fail = rng.below(3) == 0;
    let pick_state = |rng: &mut Rng| match rng.below(3) {
        0 => State::New,
        1 => State::Preprocessed,
        _ => State::Done,
    };
    let (plants, mutation) = match kind {
        Kind::Todo | Kind::Intd => {
            let mut p = base(State::New, with_fail);
            let target = path(if kind == Kind::Todo { "todo" } else { "intd" }, false);
            let m = damage(rng, &mut p, &target, true);
            (p, m)
        }
        Kind::Mess => {
            let mut p = base(pick_state(rng), with_fail);
            let m = damage(rng, &mut p, &path("mess", true), false);
            (p, m)
        }
        Kind::Info => {
            let state = if rng.below(2) == 0 {
                State::Preprocessed
            } else {
                State::Done
            };
            let mut p = base(state, with_fail);
            let m = damage(rng, &mut p, &path("info", true), true);
            (p, m)
        }
        Kind::Local | Kind::Remote => {
            let mut p = base(State::Preprocessed, with_fail);
            let target = path(kind.name(), true);
            let m = damage(rng, &mut p, &target, true);
            (p, m)
        }
        Kind::Bounce => {
            let state = if rng.below(2) == 0 {
                State::Preprocessed
            } else {
                State::Done
            };
            let mut p = base(state, with_fail);
            let m = damage(rng, &mut p, &path("bounce", false), false);
            (p, m)
        }
        Kind::Tcpto => {
            let mut p = vec![Plant::file("lock/tcpto".into(), &tcpto_table(now))];
            p[0].mode = Some(0o644);
            let m = damage(rng, &mut p, "lock/tcpto", false);
            (p, m)
        }
        Kind::Trigger | Kind::Sendmutex => {
            let name = format!("lock/{}", kind.name());
            let mut p = Plant::file(name, b"");
            let m = if rng.below(4) == 0 {
                p.node = Node::File(b"garbage\0in a lock file\n".to_vec());
                "regular-file".to_string()
            } else {
                let m = NODE_MUTATIONS
                    [usize::try_from(rng.below(NODE_MUTATIONS.len() as u64)).unwrap_or(0)];
                if kind == Kind::Trigger && m == "fifo" {
                    // A FIFO is what it should be: make it one nobody may read instead.
                    p.node = Node::Fifo;
                    p.mode = Some(0);
                    "unreadable-fifo".to_string()
                } else {
                    if kind == Kind::Trigger && m == "unreadable" {
                        p.node = Node::Fifo;
                    }
                    node_mutation(m, &mut p);
                    m.to_string()
                }
            };
            (vec![p], m)
        }
        Kind::Pid => {
            let names = ["1234.1700000000.1", "garbage", "4242.1.1"];
            let name = names[usize::try_from(rng.below(names.len() as u64)).unwrap_or(0)];
            let mut p = Plant::file(format!("pid/{name}"), b"half a message").aged(OLD_AGE);
            let kinds = [
                "file",
                "directory",
                "fifo",
                "dangling-symlink",
                "unreadable",
            ];
            let m = kinds[usize::try_from(rng.below(kinds.len() as u64)).unwrap_or(0)];
            node_mutation(m, &mut p);
            (vec![p], format!("old-{m}"))
        }
        Kind::Stray => stray(rng),
    };
    Case {
        kind,
        mutation,
        plants,
    }
}

/// A stray entry in one of the queue's directories (and no bad message).
fn stray(rng: &mut Rng) -> (Vec<Plant>, String) {
    let dirs = [
        "todo", "intd", "info", "local", "remote", "mess", "bounce", "pid",
    ];
    let dir = dirs[usize::try_from(rng.below(dirs.len() as u64)).unwrap_or(0)];
    let split = matches!(dir, "info" | "local" | "remote" | "mess");
    let good_sub = BAD % qmail_queue::SPLIT;
    let wrong_sub = (good_sub + 1) % qmail_queue::SPLIT;
    let names: [(&str, String); 6] = [
        ("letters", "abc".into()),
        ("leading-zeros", format!("00{BAD}")),
        ("suffix", format!("{BAD}.tmp")),
        ("beyond-64-bits", "18446744073709551617".into()),
        ("wrong-split", BAD.to_string()),
        ("space", format!("{BAD} ")),
    ];
    let (what, name) = &names[usize::try_from(rng.below(names.len() as u64)).unwrap_or(0)];
    let p = if split {
        let sub = if *what == "wrong-split" {
            wrong_sub
        } else {
            good_sub
        };
        format!("{dir}/{sub}/{name}")
    } else {
        format!("{dir}/{name}")
    };
    let kinds = ["file", "empty", "directory", "fifo"];
    let k = kinds[usize::try_from(rng.below(kinds.len() as u64)).unwrap_or(0)];
    let node = match k {
        "file" => Node::File(envelope(false)),
        "empty" => Node::File(Vec::new()),
        "directory" => Node::Dir,
        _ => Node::Fifo,
    };
    let mut plants = vec![Plant {
        path: p,
        node,
        mode: None,
        age: Some(OLD_AGE),
    }];
    // A number in todo/ or in the wrong subdirectory stands for a message: give it its
    // message file, so that what is read is the stray entry and not a missing message.
    if matches!(*what, "leading-zeros" | "wrong-split") && dir != "mess" {
        plants.insert(0, Plant::file(path("mess", true), BAD_TEXT));
    }
    (plants, format!("{dir}-{what}-{k}"))
}

// ------------------------------------------------------------------ case files

/// Encodes bytes compactly: `hex:...` pieces and `rep:HH*N` runs, joined by `+`.
fn encode(data: &[u8]) -> String {
    if data.is_empty() {
        return "hex:".into();
    }
    let mut parts = Vec::new();
    let mut hex = String::new();
    let mut i = 0;
    while i < data.len() {
        let run = data[i..].iter().take_while(|&&c| c == data[i]).count();
        if run >= 16 {
            if !hex.is_empty() {
                parts.push(format!("hex:{hex}"));
                hex.clear();
            }
            parts.push(format!("rep:{:02x}*{run}", data[i]));
            i += run;
        } else {
            hex.push_str(&format!("{:02x}", data[i]));
            i += 1;
        }
    }
    if !hex.is_empty() {
        parts.push(format!("hex:{hex}"));
    }
    parts.join("+")
}

fn decode(s: &str) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    for part in s.split('+') {
        if let Some(h) = part.strip_prefix("hex:") {
            if h.len() % 2 != 0 {
                return None;
            }
            for i in (0..h.len()).step_by(2) {
                v.push(u8::from_str_radix(h.get(i..i + 2)?, 16).ok()?);
            }
        } else if let Some(r) = part.strip_prefix("rep:") {
            let (b, n) = r.split_once('*')?;
            let b = u8::from_str_radix(b, 16).ok()?;
            let n: usize = n.parse().ok()?;
            if n > 64 << 20 {
                return None;
            }
            v.extend(std::iter::repeat_n(b, n));
        } else {
            return None;
        }
    }
    Some(v)
}

/// A path or link target in a case file: `%XX` for `%`, spaces and anything but printable
/// ASCII.
fn escape(s: &str) -> String {
    let mut o = String::new();
    for &c in s.as_bytes() {
        if c.is_ascii_graphic() && c != b'%' {
            o.push(char::from(c));
        } else {
            o.push_str(&format!("%{c:02X}"));
        }
    }
    o
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut v = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            v.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            v.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(v).ok()
}

/// The case as a text file (rqmail-queuefuzz -r reads it back): a comment line naming
/// it, then one line per planted entry, `TYPE PATH MODE AGE [DATA]`.
pub fn to_text(c: &Case) -> String {
    let mut s = format!("# rqmail-queuefuzz case {}\n", c.label());
    s.push_str(&format!(
        "kind {}\nmutation {}\n",
        c.kind.name(),
        c.mutation
    ));
    for p in &c.plants {
        let mode = match p.mode {
            None => "-".to_string(),
            Some(m) => format!("{m:o}"),
        };
        let time = p.age.map_or_else(|| "-".to_string(), |t| t.to_string());
        let path = escape(&p.path);
        let line = match &p.node {
            Node::File(d) => format!("file {path} {mode} {time} {}", encode(d)),
            Node::Dir => format!("dir {path} {mode} {time}"),
            Node::Fifo => format!("fifo {path} {mode} {time}"),
            Node::Symlink(t) => format!("symlink {path} {mode} {time} {}", escape(t)),
            Node::Missing => format!("missing {path} {mode} {time}"),
        };
        s.push_str(&line);
        s.push('\n');
    }
    s
}

/// Reads a case file; the error names the line.
pub fn from_text(text: &str) -> Result<Case, String> {
    let mut kind = None;
    let mut mutation = String::from("replayed");
    let mut plants = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = || format!("line {}: cannot read {line:?}", n + 1);
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let w: Vec<&str> = line.split(' ').collect();
        match w.as_slice() {
            ["kind", k] => kind = Some(Kind::from_name(k).ok_or_else(bad)?),
            ["mutation", m] => mutation = (*m).to_string(),
            [t, path, mode, time, rest @ ..] => {
                let path = unescape(path).ok_or_else(bad)?;
                if path.split('/').any(|c| c == ".." || c == ".") || path.starts_with('/') {
                    return Err(bad());
                }
                let mode = match *mode {
                    "-" => None,
                    m => Some(u32::from_str_radix(m, 8).map_err(|_| bad())?),
                };
                let time = match *time {
                    "-" => None,
                    t => Some(t.parse().map_err(|_| bad())?),
                };
                let node = match (*t, rest) {
                    ("file", [d]) => Node::File(decode(d).ok_or_else(bad)?),
                    ("dir", []) => Node::Dir,
                    ("fifo", []) => Node::Fifo,
                    ("symlink", [target]) => Node::Symlink(unescape(target).ok_or_else(bad)?),
                    ("missing", []) => Node::Missing,
                    _ => return Err(bad()),
                };
                plants.push(Plant {
                    path,
                    node,
                    mode,
                    age: time,
                });
            }
            _ => return Err(bad()),
        }
    }
    Ok(Case {
        kind: kind.ok_or("no kind line")?,
        mutation,
        plants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_have_netqmails_formats() {
        let p = base(State::New, false);
        assert_eq!(p[1].path, "intd/4000000007");
        assert_eq!(p[2].path, "todo/4000000007");
        assert_eq!(
            p[2].node,
            Node::File(
                b"u65534\0p4242\0Fbad-sender@remote.example\0Tbad-local@testhost.example\0\
Tbad-remote@remote.example\0"
                    .to_vec()
            )
        );
        let p = base(State::Preprocessed, true);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "mess/18/4000000007",
                "info/18/4000000007",
                "local/18/4000000007",
                "remote/18/4000000007",
                "bounce/4000000007"
            ]
        );
        assert_eq!(
            p[2].node,
            Node::File(
                b"Dbad-done@testhost.example\0Tbad-local@testhost.example\0\
Tfail-local@testhost.example\0"
                    .to_vec()
            )
        );
        let t = tcpto_table(1_700_000_100);
        assert_eq!(
            &t[..12],
            &[127, 0, 0, 2, 2, 0, 0, 0, 0x64, 0xf1, 0x53, 0x65]
        );
    }

    #[test]
    fn same_seed_same_cases_and_every_kind_damaged() {
        for kind in Kind::ALL {
            let a = generate(kind, &mut Rng::new(7), 1_700_000_000);
            let b = generate(kind, &mut Rng::new(7), 1_700_000_000);
            assert_eq!(a, b);
            assert!(!a.plants.is_empty(), "{kind:?}");
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        let mut rng = Rng::new(99);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3000 {
            let c = generate(Kind::Todo, &mut rng, 0);
            seen.insert(c.mutation);
        }
        // Every byte-level and node-level mutation of a record file comes up.
        assert!(seen.len() >= 16 + NODE_MUTATIONS.len() - 1, "{seen:?}");
    }

    #[test]
    fn case_files_round_trip() {
        let mut rng = Rng::new(3);
        for i in 0..400 {
            let kind = Kind::ALL[i % Kind::ALL.len()];
            let c = generate(kind, &mut rng, 1_700_000_000);
            let text = to_text(&c);
            assert_eq!(from_text(&text).expect("reads back"), c, "{text}");
        }
        assert_eq!(
            decode("hex:00ff+rep:61*3"),
            Some(vec![0, 0xff, b'a', b'a', b'a'])
        );
        assert_eq!(encode(&[]), "hex:");
        assert_eq!(decode("hex:"), Some(Vec::new()));
        assert!(from_text("kind todo\nfile ../x - - hex:").is_err());
        assert!(from_text("kind nope\n").is_err());
        assert!(decode("rep:61*999999999999").is_none());
    }
}
