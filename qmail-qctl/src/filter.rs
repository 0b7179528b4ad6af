//! Selecting messages: address patterns, ages, sizes, states.
//!
//! Conditions of different kinds must all hold; several conditions of one kind (two
//! `--sender` patterns, say) are alternatives. Recipient, domain and channel conditions
//! look at the recipients still waiting for delivery.

use crate::scan::{Message, State};

/// A shell-style pattern on an address: `*` any bytes, `?` one byte, everything else
/// itself; ASCII letters match either case. A pattern without `*` or `?` is an exact
/// (case-insensitive) match; the empty pattern matches only the empty address (the
/// sender of a bounce).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<u8>);

impl Pattern {
    pub fn new(p: &[u8]) -> Pattern {
        Pattern(p.to_ascii_lowercase())
    }

    /// Whether `s` matches (linear in the common cases, at worst len(p) * len(s)).
    pub fn matches(&self, s: &[u8]) -> bool {
        let p = &self.0;
        let (mut pi, mut si) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
            } else if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si].to_ascii_lowercase()) {
                pi += 1;
                si += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

/// The conditions a message must meet.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub sender: Vec<Pattern>,
    pub recipient: Vec<Pattern>,
    pub domain: Vec<Pattern>,
    /// Older than this many seconds.
    pub older: Option<u64>,
    /// Younger than this many seconds.
    pub younger: Option<u64>,
    /// More bytes than this.
    pub larger: Option<u64>,
    /// Fewer bytes than this.
    pub smaller: Option<u64>,
    /// Only held (`Some(true)`) or only not held messages.
    pub held: Option<bool>,
    /// Waiting recipients on this channel (0 local, 1 remote).
    pub channel: Option<usize>,
    /// Only messages collecting a bounce.
    pub bouncing: bool,
}

fn any_of(pats: &[Pattern], s: &[u8]) -> bool {
    pats.iter().any(|p| p.matches(s))
}

impl Filter {
    /// Whether no condition is set (every message matches).
    pub fn is_empty(&self) -> bool {
        self.sender.is_empty()
            && self.recipient.is_empty()
            && self.domain.is_empty()
            && self.older.is_none()
            && self.younger.is_none()
            && self.larger.is_none()
            && self.smaller.is_none()
            && self.held.is_none()
            && self.channel.is_none()
            && !self.bouncing
    }

    /// Whether message `m` meets every condition, at time `now`.
    pub fn matches(&self, m: &Message, now: u64) -> bool {
        let age = now.saturating_sub(m.birth);
        if !self.sender.is_empty() && !any_of(&self.sender, &m.sender) {
            return false;
        }
        if !self.recipient.is_empty() && !m.waiting().any(|r| any_of(&self.recipient, &r.addr)) {
            return false;
        }
        if !self.domain.is_empty()
            && !m
                .waiting()
                .any(|r| control::domain_of(&r.addr).is_some_and(|d| any_of(&self.domain, d)))
        {
            return false;
        }
        if let Some(c) = self.channel
            && !m.waiting().any(|r| r.channel == Some(c))
        {
            return false;
        }
        if self.older.is_some_and(|o| age <= o) || self.younger.is_some_and(|y| age >= y) {
            return false;
        }
        if self.larger.is_some_and(|l| m.size <= l) || self.smaller.is_some_and(|s| m.size >= s) {
            return false;
        }
        if let Some(h) = self.held
            && h != (m.state == State::Held)
        {
            return false;
        }
        !self.bouncing || m.bouncing
    }
}

/// An age: a number of seconds, or numbers each followed by `s`, `m`, `h`, `d` or `w`
/// (`90m`, `1h30m`, `2d`).
pub fn parse_age(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse().ok();
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
    }
    num.is_empty().then_some(total)
}

/// A size: a number of bytes, optionally followed by `k`, `M` or `G` (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Recipient;
    use proptest::prelude::*;

    #[test]
    fn patterns() {
        let m = |p: &str, s: &str| Pattern::new(p.as_bytes()).matches(s.as_bytes());
        assert!(m("joe@example.org", "Joe@Example.ORG"));
        assert!(!m("joe@example.org", "joe@example.org.uk"));
        assert!(m("*@example.org", "a@example.org"));
        assert!(m("*@example.org", "@example.org"));
        assert!(!m("*@example.org", "a@example.org.uk"));
        assert!(m("*@*.example.org", "x@mx.example.org"));
        assert!(!m("*@*.example.org", "x@example.org"));
        assert!(m("j?e@*", "joe@x"));
        assert!(!m("j?e@*", "je@x"));
        assert!(m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
        assert!(m("**", "abc"));
    }

    fn msg() -> Message {
        Message {
            id: 1,
            state: State::Queued,
            birth: 1000,
            size: 500,
            sender: b"s@spam.example".to_vec(),
            recipients: vec![
                Recipient {
                    channel: Some(0),
                    done: true,
                    addr: b"done@local.example".to_vec(),
                },
                Recipient {
                    channel: Some(1),
                    done: false,
                    addr: b"bob@Far.Example".to_vec(),
                },
            ],
            bouncing: false,
        }
    }

    #[test]
    fn filters() {
        let m = msg();
        let now = 1000 + 3600;
        let f = |f: Filter| f.matches(&m, now);
        assert!(f(Filter::default()));
        assert!(Filter::default().is_empty());
        let p = |s: &str| vec![Pattern::new(s.as_bytes())];
        assert!(f(Filter {
            sender: p("*@spam.example"),
            ..Default::default()
        }));
        assert!(!f(Filter {
            sender: p(""),
            ..Default::default()
        }));
        // Recipients that are done do not count.
        assert!(!f(Filter {
            recipient: p("done@*"),
            ..Default::default()
        }));
        assert!(f(Filter {
            recipient: vec![Pattern::new(b"x@y"), Pattern::new(b"bob@*")],
            ..Default::default()
        }));
        assert!(f(Filter {
            domain: p("far.example"),
            ..Default::default()
        }));
        assert!(!f(Filter {
            domain: p("local.example"),
            ..Default::default()
        }));
        assert!(f(Filter {
            channel: Some(1),
            ..Default::default()
        }));
        assert!(!f(Filter {
            channel: Some(0),
            ..Default::default()
        }));
        assert!(f(Filter {
            older: Some(3599),
            younger: Some(3601),
            larger: Some(499),
            smaller: Some(501),
            held: Some(false),
            ..Default::default()
        }));
        assert!(!f(Filter {
            older: Some(3600),
            ..Default::default()
        }));
        assert!(!f(Filter {
            larger: Some(500),
            ..Default::default()
        }));
        assert!(!f(Filter {
            held: Some(true),
            ..Default::default()
        }));
        assert!(!f(Filter {
            bouncing: true,
            ..Default::default()
        }));
    }

    #[test]
    fn ages_and_sizes() {
        assert_eq!(parse_age("90"), Some(90));
        assert_eq!(parse_age("90m"), Some(5400));
        assert_eq!(parse_age("1h30m"), Some(5400));
        assert_eq!(parse_age("2d"), Some(172_800));
        assert_eq!(parse_age("1w1s"), Some(604_801));
        for bad in ["", "h", "1x", "1h30", "-1", "99999999999999999999d"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("10k"), Some(10_240));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        for bad in ["", "k", "1.5M", "1m", "-3", "99999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn pattern_matcher_never_panics_and_stars_match_everything(
            p in proptest::collection::vec(any::<u8>(), 0..40),
            s in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let _ = Pattern::new(&p).matches(&s);
            prop_assert!(Pattern::new(b"*").matches(&s));
            // A pattern without wildcards matches exactly itself.
            if !s.contains(&b'*') && !s.contains(&b'?') {
                prop_assert!(Pattern::new(&s).matches(&s));
            }
        }

        #[test]
        fn age_and_size_parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_age(&s);
            let _ = parse_size(&s);
        }
    }
}
