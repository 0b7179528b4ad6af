//! What qmail-qctl prints: for people (default), as JSON lines (`-j`) or as tab-separated
//! values with a header line (`-t`).
//!
//! Addresses and message text come from strangers. For people every byte outside
//! printable ASCII becomes `?` (message text keeps its UTF-8 characters, but never control
//! characters, so nothing can drive the terminal). In JSON every byte outside printable
//! ASCII is written as `\u00XX` (the bytes read as Latin-1, so the original bytes can be
//! recovered); in TSV as `\xXX`, with `\\`, `\t`, `\n` and `\r` for those characters.

use crate::scan::{Message, State};
use qmail_queue::qctl::{CHANNELS, Kind, Reply};
use std::fmt::Write as _;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Human,
    Json,
    Tsv,
}

/// Printable ASCII as is, every other byte `?`.
pub fn human(b: &[u8]) -> String {
    control::printable(b)
}

/// Message text for a terminal: UTF-8 characters kept, control characters other than
/// newline and tab (and invalid bytes) shown as `?`.
pub fn human_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .map(|c| {
            if c == '\n' || c == '\t' || (!c.is_control() && c != '\u{fffd}') {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// A JSON string literal of bytes.
pub fn json_str(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\u{:04x}", c);
            }
        }
    }
    s.push('"');
    s
}

/// A TSV field of bytes.
pub fn tsv_field(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{:02x}", c);
            }
        }
    }
    s
}

/// `45s`, `12m`, `3h05m`, `2d04h`.
pub fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs / 3600 % 24),
    }
}

/// `2024-05-01 12:00:01 UTC`.
pub fn date(secs: u64) -> String {
    let t = control::tm(secs);
    format!(
        "{}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.min, t.sec
    )
}

fn channel_name(c: Option<usize>) -> &'static str {
    c.and_then(|c| CHANNELS.get(c).copied()).unwrap_or("-")
}

/// The TSV header of a listing.
pub const LIST_HEADER: &str =
    "id\tstate\tbirth\tage\tsize\tbouncing\tsender\tchannel\tstatus\trecipient\n";

/// One message of a listing, in `fmt`.
pub fn message(fmt: Format, m: &Message, now: u64) -> String {
    let age_s = now.saturating_sub(m.birth);
    let status = |done: bool| if done { "done" } else { "waiting" };
    match fmt {
        Format::Human => {
            let mut s = format!(
                "#{}  {}  {}  {} bytes  <{}>",
                m.id,
                m.state.name(),
                age(age_s),
                m.size,
                human(&m.sender)
            );
            if m.bouncing {
                s.push_str("  bouncing");
            }
            s.push('\n');
            for r in &m.recipients {
                let _ = writeln!(
                    s,
                    "    {:<6}  {:<7}  {}",
                    channel_name(r.channel),
                    status(r.done),
                    human(&r.addr)
                );
            }
            s
        }
        Format::Json => {
            let mut s = format!(
                "{{\"id\":{},\"state\":\"{}\",\"birth\":{},\"age\":{},\"size\":{},\"bouncing\":{},\"sender\":{},\"recipients\":[",
                m.id,
                m.state.name(),
                m.birth,
                age_s,
                m.size,
                m.bouncing,
                json_str(&m.sender)
            );
            for (i, r) in m.recipients.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let chan = match r.channel {
                    Some(_) => format!("\"{}\"", channel_name(r.channel)),
                    None => "null".to_string(),
                };
                let _ = write!(
                    s,
                    "{{\"channel\":{chan},\"status\":\"{}\",\"address\":{}}}",
                    status(r.done),
                    json_str(&r.addr)
                );
            }
            s.push_str("]}\n");
            s
        }
        Format::Tsv => {
            let head = format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                m.id,
                m.state.name(),
                m.birth,
                age_s,
                m.size,
                u8::from(m.bouncing),
                tsv_field(&m.sender)
            );
            if m.recipients.is_empty() {
                return format!("{head}\t\t\t\n");
            }
            let mut s = String::new();
            for r in &m.recipients {
                let _ = writeln!(
                    s,
                    "{head}\t{}\t{}\t{}",
                    channel_name(r.channel),
                    status(r.done),
                    tsv_field(&r.addr)
                );
            }
            s
        }
    }
}

/// The closing line of a listing for people.
pub fn list_summary(n: usize, held: usize, new: usize) -> String {
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} message{plural} ({held} held, {new} not yet preprocessed)\n")
}

/// `show`: the message, its collected failures and its text.
pub fn show(
    fmt: Format,
    m: &Message,
    now: u64,
    bounce: Option<&[u8]>,
    text: &[u8],
    whole: bool,
) -> String {
    match fmt {
        Format::Human => {
            let mut s = format!("message #{}\n", m.id);
            let what = match m.state {
                State::New => "new (not yet preprocessed by qmail-send)",
                State::Queued => "queued",
                State::Held => "held (not delivered until released)",
            };
            let _ = writeln!(s, "state:     {what}");
            let since = if m.state == State::New {
                "queued:   "
            } else {
                "preprocessed:"
            };
            let _ = writeln!(
                s,
                "{since} {} ({} ago)",
                date(m.birth),
                age(now.saturating_sub(m.birth))
            );
            let _ = writeln!(s, "size:      {} bytes", m.size);
            let _ = writeln!(s, "sender:    <{}>", human(&m.sender));
            let _ = writeln!(s, "recipients:");
            for r in &m.recipients {
                let _ = writeln!(
                    s,
                    "    {:<6}  {:<7}  {}",
                    channel_name(r.channel),
                    if r.done { "done" } else { "waiting" },
                    human(&r.addr)
                );
            }
            if let Some(b) = bounce {
                let _ = writeln!(s, "failures so far (a bounce will be sent):");
                for l in human_text(b).lines() {
                    let _ = writeln!(s, "    {l}");
                }
            }
            let _ = writeln!(s, "--- {}", if whole { "message" } else { "header" });
            s.push_str(&human_text(text));
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        Format::Json => {
            let mut s = message(Format::Json, m, now);
            s.truncate(s.len() - 2); // "}\n"
            let _ = writeln!(
                s,
                ",\"bounce\":{},\"{}\":{}}}",
                bounce.map_or("null".to_string(), json_str),
                if whole { "message" } else { "header" },
                json_str(text)
            );
            s
        }
        Format::Tsv => {
            let mut s = LIST_HEADER.to_string();
            s.push_str(&message(Format::Tsv, m, now));
            s
        }
    }
}

/// The TSV header of request results.
pub const RESULT_HEADER: &str = "request\tresult\toutcome\tfields\n";

fn counts(r: &Reply) -> String {
    let (k, d, z) = (
        r.num("success").unwrap_or(0),
        r.num("failure").unwrap_or(0),
        r.num("deferral").unwrap_or(0),
    );
    let n = k + d + z;
    if n == 0 {
        return String::new();
    }
    let mut parts = Vec::new();
    for (v, one, many) in [
        (k, "success", "successes"),
        (d, "failure", "failures"),
        (z, "deferral", "deferrals"),
    ] {
        if v > 0 {
            parts.push(format!("{v} {}", if v == 1 { one } else { many }));
        }
    }
    let were = if n == 1 {
        "1 delivery that was already running has"
    } else {
        "deliveries that were already running have"
    };
    let n_s = if n == 1 {
        String::new()
    } else {
        format!("{n} ")
    };
    format!("; {n_s}{were} ended: {}", parts.join(", "))
}

/// A sentence for people about the final reply `r` to request `req` (`hold 457`).
pub fn sentence(req: &str, r: &Reply) -> String {
    let id = r.num("id").map_or(String::new(), |n| format!("#{n}"));
    let yes = |k: &str| r.num(k) == Some(1);
    let chan = r.get("channel").unwrap_or("");
    let mut s = match (r.kind, r.word.as_str()) {
        (Kind::Ok, "held") if yes("already") => format!("{id}: was held already"),
        (Kind::Ok, "held") => format!("{id}: held"),
        (Kind::Ok, "released") if yes("already") => format!("{id}: was not held"),
        (Kind::Ok, "released") => format!("{id}: released, delivery resumes now"),
        (Kind::Ok, "deleted") if yes("offline") => format!(
            "{id}: deleted (its recipients are gone; qmail-send removes the rest when it starts)"
        ),
        (Kind::Ok, "deleted") => format!("{id}: deleted"),
        (Kind::Ok, "retrying") if r.get("id").is_none() => format!(
            "every waiting message is due now ({} waiting)",
            r.num("waiting").unwrap_or(0)
        ),
        (Kind::Ok, "retrying") if r.num("busy").unwrap_or(0) > 0 => {
            format!("{id}: being delivered right now")
        }
        (Kind::Ok, "retrying") => format!("{id}: due now"),
        (Kind::Ok, "paused") if yes("already") => format!("{chan} deliveries: were paused already"),
        (Kind::Ok, "paused") => format!("{chan} deliveries: paused"),
        (Kind::Ok, "resumed") if yes("already") => format!("{chan} deliveries: were not paused"),
        (Kind::Ok, "resumed") => format!("{chan} deliveries: resumed"),
        (Kind::No, "not-found") => format!("{id}: no such message in the queue"),
        (Kind::No, "held") => format!("{id}: is held; release it first"),
        (Kind::No, "deleting") => format!("{id}: is being deleted"),
        (Kind::No, "forbidden") => {
            format!("{req}: refused: only root and qmail-send's user may send requests")
        }
        (Kind::No, "bad-request") => format!("{req}: qmail-send did not understand the request"),
        (Kind::No, "not-running") => format!("{req}: qmail-send is not running"),
        (Kind::Later, "exiting") if yes("applied") => {
            format!("{req}: applied, but qmail-send exited before the deliveries in progress ended")
        }
        (Kind::Later, "exiting") => format!("{req}: qmail-send is exiting; try again"),
        (Kind::Later, "busy") => format!("{req}: qmail-send has too many connections; try again"),
        (Kind::Later, "trouble") => {
            format!("{req}: qmail-send had trouble with the queue (see its log); try again")
        }
        (Kind::Later, "not-preprocessed") => format!(
            "{id}: not preprocessed yet, which needs a running qmail-send; try again once it runs"
        ),
        (_, w) => format!("{req}: {w}"),
    };
    if r.kind == Kind::Ok {
        s.push_str(&counts(r));
        if yes("finished") && r.word == "held" {
            s.push_str("; the message has ended (its last recipients were dealt with)");
        }
    }
    s.push('\n');
    s
}

/// The final reply `r` to request `req`, in `fmt`.
pub fn result(fmt: Format, req: &str, r: &Reply) -> String {
    let kind = match r.kind {
        Kind::Ok => "ok",
        Kind::No => "no",
        Kind::Later => "later",
        Kind::Wait => "wait",
    };
    match fmt {
        Format::Human => sentence(req, r),
        Format::Json => {
            let mut s = format!(
                "{{\"request\":{},\"result\":\"{kind}\",\"outcome\":\"{}\"",
                json_str(req.as_bytes()),
                r.word
            );
            for (k, v) in &r.fields {
                if v.bytes().all(|c| c.is_ascii_digit()) {
                    let _ = write!(s, ",\"{k}\":{v}");
                } else {
                    let _ = write!(s, ",\"{k}\":{}", json_str(v.as_bytes()));
                }
            }
            s.push_str("}\n");
            s
        }
        Format::Tsv => {
            let fields: Vec<String> = r.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "{}\t{kind}\t{}\t{}\n",
                tsv_field(req.as_bytes()),
                r.word,
                fields.join(" ")
            )
        }
    }
}

/// The status reply for people.
pub fn status_human(r: &Reply) -> String {
    let mut s = String::new();
    if r.word == "not-running" {
        s.push_str("qmail-send is not running\n");
    }
    for c in CHANNELS {
        let (Some(used), Some(limit)) = (r.num(&format!("{c}-used")), r.num(&format!("{c}-limit")))
        else {
            continue;
        };
        let state = if r.num(&format!("{c}-paused")) == Some(1) {
            "paused"
        } else {
            "running"
        };
        let _ = writeln!(
            s,
            "{c:<7} {state}, {used} of {limit} deliveries in progress"
        );
    }
    if let Some(h) = r.num("held") {
        let _ = writeln!(s, "held messages: {h}");
    }
    if r.num("exiting") == Some(1) {
        s.push_str("qmail-send is exiting\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Recipient;

    fn msg() -> Message {
        Message {
            id: 457,
            state: State::Held,
            birth: 1_000_000,
            size: 1234,
            sender: b"joe@example.org".to_vec(),
            recipients: vec![
                Recipient {
                    channel: Some(0),
                    done: false,
                    addr: b"ann@example.com".to_vec(),
                },
                Recipient {
                    channel: Some(1),
                    done: true,
                    addr: b"b\tad\x1b[2J\xc3\xa9\"\\@x".to_vec(),
                },
            ],
            bouncing: true,
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(human(b"a\x1b[0m\xff"), "a?[0m?");
        assert_eq!(
            human_text("é\x1b[2J\r\n\tx\u{85}".as_bytes()),
            "é?[2J?\n\tx?"
        );
        assert_eq!(json_str(b"a\"\\\n\xc3"), "\"a\\\"\\\\\\u000a\\u00c3\"");
        assert_eq!(tsv_field(b"a\\\t\n\r\x01\xff"), "a\\\\\\t\\n\\r\\x01\\xff");
    }

    #[test]
    fn ages_and_dates() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(60), "1m");
        assert_eq!(age(3599), "59m");
        assert_eq!(age(3600 * 3 + 300), "3h05m");
        assert_eq!(age(86_400 * 2 + 3600 * 4 + 5), "2d04h");
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(811_831_614), "1995-09-23 04:46:54 UTC");
    }

    #[test]
    fn listing_formats() {
        let m = msg();
        let now = 1_000_000 + 7380;
        assert_eq!(
            message(Format::Human, &m, now),
            "#457  held  2h03m  1234 bytes  <joe@example.org>  bouncing\n    \
             local   waiting  ann@example.com\n    remote  done     b?ad?[2J??\"\\@x\n"
        );
        assert_eq!(
            message(Format::Json, &m, now),
            "{\"id\":457,\"state\":\"held\",\"birth\":1000000,\"age\":7380,\"size\":1234,\
             \"bouncing\":true,\"sender\":\"joe@example.org\",\"recipients\":[\
             {\"channel\":\"local\",\"status\":\"waiting\",\"address\":\"ann@example.com\"},\
             {\"channel\":\"remote\",\"status\":\"done\",\"address\":\
             \"b\\u0009ad\\u001b[2J\\u00c3\\u00a9\\\"\\\\@x\"}]}\n"
        );
        assert_eq!(
            message(Format::Tsv, &m, now),
            "457\theld\t1000000\t7380\t1234\t1\tjoe@example.org\tlocal\twaiting\tann@example.com\n\
             457\theld\t1000000\t7380\t1234\t1\tjoe@example.org\tremote\tdone\t\
             b\\tad\\x1b[2J\\xc3\\xa9\"\\\\@x\n"
        );
        let mut bare = m.clone();
        bare.recipients.clear();
        bare.state = State::New;
        assert_eq!(
            message(Format::Tsv, &bare, now),
            "457\tnew\t1000000\t7380\t1234\t1\tjoe@example.org\t\t\t\n"
        );
        assert_eq!(LIST_HEADER.matches('\t').count(), 9);
        assert_eq!(
            list_summary(1, 1, 0),
            "1 message (1 held, 0 not yet preprocessed)\n"
        );
    }

    #[test]
    fn results() {
        let r = Reply::parse(b"ok held id=457 already=0 finished=0 success=1 failure=0 deferral=1")
            .unwrap();
        assert_eq!(
            result(Format::Human, "hold 457", &r),
            "#457: held; 2 deliveries that were already running have ended: 1 success, 1 deferral\n"
        );
        assert_eq!(
            result(Format::Json, "hold 457", &r),
            "{\"request\":\"hold 457\",\"result\":\"ok\",\"outcome\":\"held\",\"id\":457,\
             \"already\":0,\"finished\":0,\"success\":1,\"failure\":0,\"deferral\":1}\n"
        );
        assert_eq!(
            result(Format::Tsv, "hold 457", &r),
            "hold 457\tok\theld\tid=457 already=0 finished=0 success=1 failure=0 deferral=1\n"
        );
        let r = Reply::parse(b"ok deleted id=9 finished=1 success=0 failure=1 deferral=0").unwrap();
        assert_eq!(
            sentence("delete 9", &r),
            "#9: deleted; 1 delivery that was already running has ended: 1 failure\n"
        );
        let r = Reply::parse(b"no not-found id=9").unwrap();
        assert_eq!(
            sentence("delete 9", &r),
            "#9: no such message in the queue\n"
        );
        let r = Reply::parse(
            b"ok status local-used=1 local-limit=10 local-paused=0 remote-used=0 remote-limit=20 remote-paused=1 held=2 exiting=0",
        )
        .unwrap();
        assert_eq!(
            status_human(&r),
            "local   running, 1 of 10 deliveries in progress\n\
             remote  paused, 0 of 20 deliveries in progress\nheld messages: 2\n"
        );
    }
}
