//! What a case's runs mean: the checks every run must pass, and the comparison of
//! rqmail's run with netqmail's.

use super::case::{BAD, Case, Kind};
use super::side::{Ended, Run, ToolRun};
use std::collections::BTreeSet;

/// The failures of one run: qmail-send died, hung or left the good message undelivered;
/// a helper lost; a log line outside qmail-log(5); a queue reader crashed or hung.
pub fn failures(c: &Case, r: &Run) -> Vec<String> {
    let cannot_start = c.kind == Kind::Sendmutex
        && r.send == Some(Ended::Exit(111))
        && r.log
            .iter()
            .any(|l| l == "alert: cannot start: unable to open mutex");
    let mut v: Vec<String> = r
        .failures
        .iter()
        .filter(|f| !(cannot_start && f.starts_with("qmail-send ended by itself")))
        .cloned()
        .collect();
    if !cannot_start {
        if !r.good_delivered {
            v.push("the good message was not delivered".into());
        }
        match &r.send {
            Some(Ended::Exit(0)) | None => {}
            Some(e) if !v.iter().any(|f| f.starts_with("qmail-send")) => {
                v.push(format!("qmail-send: {}", e.text()));
            }
            Some(_) => {}
        }
        if r.send == Some(Ended::Exit(0))
            && r.log.last().map(String::as_str) != Some("status: exiting")
        {
            v.push("qmail-send's log does not end with \"status: exiting\"".into());
        }
    }
    for l in &r.log {
        if l.starts_with("alert: oh no! lost") {
            v.push(format!("log: {l}"));
        }
        if !rqmail_tests::qmail_log_line(l) {
            v.push(format!("log line outside qmail-log(5): {:?}", cut(l, 200)));
        }
    }
    for t in r.pre.iter().chain(&r.post) {
        if t.ended.broken() {
            let err = String::from_utf8_lossy(&t.err);
            v.push(format!(
                "{}: {} {}",
                t.name,
                t.ended.text(),
                cut(err.trim(), 200)
            ));
        }
        if let Ended::NotRun(e) = &t.ended {
            v.push(format!("{}: {e}", t.name));
        }
    }
    v
}

fn cut(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...({} bytes)", &s[..end], s.len())
}

/// A log line with its numbers made comparable between two systems: message numbers
/// become `G` (the good message), `B` (the bad one) or `M`, delivery numbers `D`, qp
/// `Q`, uid `U`, split subdirectories `*`, and the size of a message other than the bad
/// one `N` (qmail-queue's Received field differs). A delivery's result line names the
/// message of its `starting delivery` line.
pub struct Normalizer {
    good: u64,
    deliveries: std::collections::HashMap<String, String>,
}

impl Normalizer {
    pub fn new(good: u64) -> Normalizer {
        Normalizer {
            good,
            deliveries: std::collections::HashMap::new(),
        }
    }

    fn id(&self, n: &str) -> &'static str {
        match n.parse::<u64>() {
            Ok(i) if i == self.good && n == i.to_string() => "G",
            Ok(i) if i == BAD && n == i.to_string() => "B",
            _ => "M",
        }
    }

    /// The normalized line, or None for a line not compared (status lines).
    pub fn line(&mut self, l: &str) -> Option<String> {
        if l.starts_with("status:") {
            return None;
        }
        if let Some(rest) = l.strip_prefix("starting delivery ")
            && let Some((d, tail)) = rest.split_once(": msg ")
            && let Some((m, to)) = tail.split_once(' ')
        {
            let m = self.id(m).to_string();
            self.deliveries.insert(d.to_string(), m.clone());
            return Some(format!("starting delivery D: msg {m} {to}"));
        }
        if let Some(rest) = l.strip_prefix("delivery ")
            && let Some((d, tail)) = rest.split_once(": ")
            && d.bytes().all(|c| c.is_ascii_digit())
        {
            let m = self.deliveries.get(d).map_or("?", String::as_str);
            return Some(format!("delivery D (msg {m}): {tail}"));
        }
        let mut out = String::with_capacity(l.len());
        let b = l.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_digit() {
                let start = i;
                while i < b.len() && !b[i].is_ascii_digit() {
                    i += 1;
                }
                out.push_str(&l[start..i]);
                continue;
            }
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n = &l[start..i];
            let before = &l[..start];
            let after = &l[i..];
            let piece: String = if before.ends_with("msg ")
                || before.ends_with("#")
                || ["todo/", "intd/", "bounce/", "foop/"]
                    .iter()
                    .any(|p| before.ends_with(p))
            {
                self.id(n).into()
            } else if ["mess/", "info/", "local/", "remote/"]
                .iter()
                .any(|p| before.ends_with(p))
                && after.starts_with('/')
            {
                "*".into()
            } else if ["mess/", "info/", "local/", "remote/"]
                .iter()
                .any(|p| before.contains(p))
                && before.ends_with('/')
            {
                self.id(n).into()
            } else if before.ends_with("qp ") {
                "Q".into()
            } else if before.ends_with("uid ") {
                "U".into()
            } else if before.ends_with("bytes ") && !before.contains(&format!("msg {BAD}")) {
                "N".into()
            } else {
                n.into()
            };
            out.push_str(&piece);
        }
        Some(out)
    }
}

/// The differences between rqmail's run (`a`) and netqmail's (`b`) of one case, one
/// line each: `AREA: + only in rqmail` / `AREA: - only in netqmail`.
pub fn differences(a: &Run, b: &Run) -> Vec<String> {
    let mut v = Vec::new();
    let set = |r: &Run| -> BTreeSet<String> {
        let mut n = Normalizer::new(r.good.unwrap_or(0));
        r.log.iter().filter_map(|l| n.line(l)).collect()
    };
    diff_sets(&mut v, "log", &set(a), &set(b));
    let deliveries = |r: &Run| -> BTreeSet<String> {
        r.delivered
            .iter()
            .filter(|l| !l.contains("good-"))
            .cloned()
            .collect()
    };
    diff_sets(&mut v, "deliveries", &deliveries(a), &deliveries(b));
    let bounces = |r: &Run| r.bounces.iter().cloned().collect::<BTreeSet<_>>();
    diff_sets(&mut v, "bounce texts", &bounces(a), &bounces(b));
    let queue = |r: &Run| r.queue_after.iter().cloned().collect::<BTreeSet<_>>();
    diff_sets(&mut v, "queue after", &queue(a), &queue(b));
    let outcome = |r: &Run| -> String {
        format!(
            "good message {}, qmail-send {}",
            if r.good_delivered {
                "delivered"
            } else {
                "NOT delivered"
            },
            r.send.as_ref().map_or("-".into(), Ended::text)
        )
    };
    if outcome(a) != outcome(b) {
        v.push(format!(
            "outcome: rqmail {}; netqmail {}",
            outcome(a),
            outcome(b)
        ));
    }
    for (phase, ta, tb) in [("before", &a.pre, &b.pre), ("after", &a.post, &b.post)] {
        for x in ta {
            // qmail-qctl is rqmail's own; after the run, qmail-qread and qmail-qstat see
            // whatever timing left, so only qmail-clean, qmail-remote and qmail-tcpto are
            // compared there.
            if phase == "after" && matches!(x.name.as_str(), "qmail-qread" | "qmail-qstat") {
                continue;
            }
            let Some(y) = tb.iter().find(|y| y.name == x.name) else {
                continue;
            };
            let (sa, sb) = (tool_text(x, a.good), tool_text(y, b.good));
            if sa != sb {
                v.push(format!(
                    "{} {phase}: rqmail {:?}; netqmail {:?}",
                    x.name,
                    cut(&sa, 300),
                    cut(&sb, 300)
                ));
            }
        }
    }
    v
}

fn diff_sets(v: &mut Vec<String>, area: &str, a: &BTreeSet<String>, b: &BTreeSet<String>) {
    for l in a.difference(b) {
        v.push(format!("{area}: + {}", cut(l, 300)));
    }
    for l in b.difference(a) {
        v.push(format!("{area}: - {}", cut(l, 300)));
    }
}

/// A queue reader's output and exit code, with message numbers, times and qmail-qstat's
/// counts of other messages made comparable.
fn tool_text(t: &ToolRun, good: Option<u64>) -> String {
    let mut n = Normalizer::new(good.unwrap_or(0));
    let out = String::from_utf8_lossy(&t.out);
    let mut s: Vec<String> = out
        .lines()
        .map(|l| {
            // qmail-qread's date: the two systems planted the files a moment apart.
            let l = match l.split_once(" GMT  #") {
                Some((_, rest)) => format!("DATE GMT  #{rest}"),
                None => l.to_string(),
            };
            let l = n.line(&l).unwrap_or_default();
            match l.split_once(" timed out ") {
                Some((ip, rest)) => match rest.split_once(" seconds ago") {
                    Some((_, tail)) => format!("{ip} timed out N seconds ago{tail}"),
                    None => l,
                },
                None => l,
            }
        })
        .collect();
    s.push(format!("({})", t.ended.text()));
    s.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_normalized() {
        let mut n = Normalizer::new(1234);
        let b = BAD;
        let lines = [
            format!("new msg {b}"),
            format!("info msg {b}: bytes 50 from <x@y> qp 4242 uid 65534"),
            "info msg 1234: bytes 321 from <g@y> qp 77 uid 0".to_string(),
            format!("starting delivery 7: msg {b} to local a@b"),
            "starting delivery 8: msg 1234 to remote r@s".to_string(),
            "delivery 7: success: did_0+0+1/".to_string(),
            "delivery 8: failure: no/".to_string(),
            format!("warning: unknown record type in todo/{b}"),
            format!("warning: trouble opening local/18/{b}; will try again later"),
            "warning: unable to stat mess/15/1234".to_string(),
            "bounce msg 1234 qp 99".to_string(),
            "end msg 555".to_string(),
            "status: local 0/10 remote 0/20".to_string(),
        ];
        let got: Vec<Option<String>> = lines.iter().map(|l| n.line(l)).collect();
        let want = [
            Some("new msg B"),
            Some("info msg B: bytes 50 from <x@y> qp Q uid U"),
            Some("info msg G: bytes N from <g@y> qp Q uid U"),
            Some("starting delivery D: msg B to local a@b"),
            Some("starting delivery D: msg G to remote r@s"),
            Some("delivery D (msg B): success: did_0+0+1/"),
            Some("delivery D (msg G): failure: no/"),
            Some("warning: unknown record type in todo/B"),
            Some("warning: trouble opening local/*/B; will try again later"),
            Some("warning: unable to stat mess/*/G"),
            Some("bounce msg G qp Q"),
            Some("end msg M"),
            None,
        ];
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.as_deref(), w);
        }
    }
}
