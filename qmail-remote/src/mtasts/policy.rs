//! The two texts of MTA-STS (RFC 8461): the `_mta-sts` TXT record (section 3.1) and the
//! policy served over HTTPS (section 3.2), and the match of an MX host name against the
//! policy's `mx` patterns (section 4.1). Both texts come from strangers: every length is
//! bounded and anything outside the grammar is an error, never a panic.

/// The longest policy body accepted (RFC 8461 section 3.3 suggests limiting it; 64 KiB).
pub const MAX_POLICY: usize = 64 * 1024;

/// The largest `max_age` allowed (RFC 8461 section 3.2: 31557600 seconds, about a year).
pub const MAX_AGE: u64 = 31_557_600;

/// The most `mx` lines kept from one policy.
pub const MAX_MX: usize = 1000;

/// The `id` of a valid `_mta-sts` TXT record: 1 to 32 letters and digits.
pub fn parse_txt(records: &[Vec<u8>]) -> Result<String, &'static str> {
    let mine: Vec<&Vec<u8>> = records
        .iter()
        .filter(|r| r.starts_with(b"v=STSv1;") || r.as_slice() == b"v=STSv1")
        .collect();
    let [rec] = mine.as_slice() else {
        return Err(if mine.is_empty() {
            "no TXT record starting with v=STSv1"
        } else {
            "more than one TXT record starting with v=STSv1"
        });
    };
    let text = std::str::from_utf8(rec).map_err(|_| "a TXT record that is not text")?;
    let mut id = None;
    for (i, field) in text.split(';').enumerate() {
        let field = field.trim_matches(|c| c == ' ' || c == '\t');
        if field.is_empty() {
            // Only the end may be empty: "v=STSv1; id=x;".
            continue;
        }
        let (k, v) = field.split_once('=').ok_or("a TXT field without '='")?;
        let key_ok = !k.is_empty()
            && k.len() <= 32
            && k.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && k.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
        let value_ok = !v.is_empty() && v.bytes().all(|c| (0x21..=0x7e).contains(&c) && c != b'=');
        if !key_ok || !value_ok {
            return Err("a malformed TXT field");
        }
        match (i, k) {
            (0, "v") => {}
            (0, _) => return Err("a TXT record not starting with v=STSv1"),
            (_, "id") if id.is_none() => {
                if v.len() > 32 || !v.bytes().all(|c| c.is_ascii_alphanumeric()) {
                    return Err("a TXT id that is not 1 to 32 letters and digits");
                }
                id = Some(v.to_string());
            }
            _ => {}
        }
    }
    id.ok_or("a TXT record without id")
}

/// A policy's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A valid policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub max_age: u64,
    /// The `mx` patterns, lower case: `mail.example.com` or `*.example.net`.
    pub mx: Vec<String>,
}

/// True when `s` is a host name as the `mx` patterns use them (after an optional `*.`):
/// labels of letters, digits, `-` and `_`, at most 63 bytes each, 253 in all.
fn host_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// Parses a policy body (RFC 8461 section 3.2): `key: value` lines ending in CRLF or LF.
/// `version: STSv1`, `mode`, `max_age` and (unless the mode is `none`) at least one `mx`
/// are required; other keys are extensions and ignored. When a key other than `mx`
/// appears more than once, its first value counts.
pub fn parse_policy(body: &[u8]) -> Result<Policy, String> {
    if body.len() > MAX_POLICY {
        return Err(format!("policy longer than {MAX_POLICY} bytes"));
    }
    let text = std::str::from_utf8(body).map_err(|_| "policy that is not UTF-8".to_string())?;
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let n = n + 1;
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("line {n} has no ':'"))?;
        let v = v.trim_matches(|c| c == ' ' || c == '\t');
        let key_ok = !k.is_empty()
            && k.len() <= 32
            && k.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
        if !key_ok {
            return Err(format!("line {n} has a malformed key"));
        }
        match k {
            "version" if version.is_none() => {
                if v != "STSv1" {
                    return Err(format!("unknown version {:?}", clip(v)));
                }
                version = Some(());
            }
            "mode" if mode.is_none() => {
                mode = Some(match v {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    _ => return Err(format!("unknown mode {:?}", clip(v))),
                });
            }
            "max_age" if max_age.is_none() => {
                let ok = !v.is_empty() && v.len() <= 10 && v.bytes().all(|c| c.is_ascii_digit());
                let age = v
                    .parse::<u64>()
                    .ok()
                    .filter(|_| ok)
                    .ok_or_else(|| format!("max_age {:?} is not a number", clip(v)))?;
                max_age = Some(age.min(MAX_AGE));
            }
            "mx" => {
                let p = v.to_ascii_lowercase();
                let host = p.strip_prefix("*.").unwrap_or(&p);
                if !host_ok(host) {
                    return Err(format!("mx {:?} is not a host name pattern", clip(v)));
                }
                if mx.len() >= MAX_MX {
                    return Err(format!("more than {MAX_MX} mx lines"));
                }
                mx.push(p);
            }
            _ => {}
        }
    }
    version.ok_or("no version line")?;
    let mode = mode.ok_or("no mode line")?;
    let max_age = max_age.ok_or("no max_age line")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("no mx line".into());
    }
    Ok(Policy { mode, max_age, mx })
}

/// At most 40 characters of a value, for an error message.
fn clip(v: &str) -> String {
    v.chars().take(40).collect()
}

impl Policy {
    /// True when the MX host `host` matches one of the policy's patterns: exactly, or for
    /// `*.example.net`, a name with one more label on the left (`mx.example.net`, not
    /// `a.b.example.net` nor `example.net`). Case does not matter; a trailing dot on
    /// `host` is ignored.
    pub fn allows(&self, host: &str) -> bool {
        let h = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => h
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
            None => *p == h,
        })
    }

    /// The policy as its body text again (for the cache file).
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "version: STSv1\nmode: {}\nmax_age: {}\n",
            self.mode.as_str(),
            self.max_age
        );
        for m in &self.mx {
            s.push_str("mx: ");
            s.push_str(m);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn txt(r: &[&str]) -> Result<String, &'static str> {
        parse_txt(&r.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>())
    }

    #[test]
    fn txt_records() {
        assert_eq!(
            txt(&["v=STSv1; id=20160831085700Z;"]).unwrap(),
            "20160831085700Z"
        );
        assert_eq!(txt(&["v=STSv1;id=abc"]).unwrap(), "abc");
        assert_eq!(txt(&["v=spf1 -all", "v=STSv1; id=1; ext=x"]).unwrap(), "1");
        assert!(txt(&[]).is_err());
        assert!(txt(&["v=spf1 -all"]).is_err());
        assert!(txt(&["v=STSv1; id=1", "v=STSv1; id=2"]).is_err());
        assert!(txt(&["v=STSv1"]).is_err());
        assert!(txt(&["v=STSv1; id="]).is_err());
        assert!(txt(&["v=STSv1; id=a-b"]).is_err());
        assert!(txt(&["v=STSv1; id=123456789012345678901234567890123"]).is_err());
        assert!(txt(&["v=STSv1; id"]).is_err());
        assert!(txt(&["v=STSv10; id=1"]).is_err());
        assert!(txt(&["v=STSv1; id=1; =x"]).is_err());
    }

    const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

    #[test]
    fn the_rfcs_example() {
        let p = parse_policy(GOOD.as_bytes()).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604800);
        assert_eq!(
            p.mx,
            ["mail.example.com", "*.example.net", "backupmx.example.com"]
        );
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MAIL.Example.COM."));
        assert!(p.allows("mx1.example.net"));
        assert!(!p.allows("example.net"));
        assert!(!p.allows("a.b.example.net"));
        assert!(!p.allows("other.example.com"));
        assert!(!p.allows("xmail.example.com"));
        assert_eq!(parse_policy(p.to_text().as_bytes()).unwrap(), p);
    }

    #[test]
    fn bad_policies() {
        let bad = [
            "mode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n",
            "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\njunk\n",
            "<html>404</html>",
            "",
        ];
        for b in bad {
            assert!(parse_policy(b.as_bytes()).is_err(), "{b:?}");
        }
        assert!(parse_policy(&vec![b'\n'; MAX_POLICY + 1]).is_err());
    }

    #[test]
    fn lenient_where_the_rfc_is() {
        let p = parse_policy(b"version: STSv1\nmode: none\nmax_age: 99999999999\n").unwrap_err();
        assert!(p.contains("max_age"));
        let p = parse_policy(b"version: STSv1\nmode: none\nmax_age: 9999999999\n").unwrap();
        assert_eq!((p.mode, p.max_age), (Mode::None, MAX_AGE));
        let p = parse_policy(b"version:STSv1\nmode:\ttesting  \nmx: A.Example\nmax_age: 0\nfoo: bar\nmode: enforce\n").unwrap();
        assert_eq!(p.mode, Mode::Testing);
        assert_eq!(p.mx, ["a.example"]);
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_policy(&body);
            let _ = parse_txt(&[body]);
        }

        #[test]
        fn lines_of_fields(lines in proptest::collection::vec(
            ("(version|mode|max_age|mx|x-ext)", "[ -~]{0,30}"), 0..12)) {
            let body: String = lines.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
            if let Ok(p) = parse_policy(body.as_bytes()) {
                // Whatever parses survives its own text unchanged.
                prop_assert_eq!(parse_policy(p.to_text().as_bytes()).unwrap(), p.clone());
                prop_assert!(p.max_age <= MAX_AGE);
                for m in &p.mx {
                    let h = m.strip_prefix("*.").unwrap_or(m);
                    let sub = format!("x.{h}");
                    prop_assert!(p.allows(&sub) || p.allows(h));
                }
            }
        }

        #[test]
        fn wildcards_match_one_label(label in "[a-z0-9]{1,10}", extra in "[a-z0-9]{1,10}") {
            let p = parse_policy(b"version: STSv1\nmode: enforce\nmax_age: 1\nmx: *.example.net\n").unwrap();
            let one_label = format!("{label}.example.net");
            prop_assert!(p.allows(&one_label));
            let two_labels = format!("{extra}.{label}.example.net");
            prop_assert!(!p.allows(&two_labels));
        }
    }
}
