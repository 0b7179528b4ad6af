//! Diagnostics: the lines a program writes that are not qmail-log(5) lines (qmail-smtpd's
//! server-side notes, qmail-remote's TLS and DNS details, warnings), carried as `tracing`
//! events and written by [`Diagnostics`], a subscriber small enough for programs that
//! start once per message or connection.
//!
//! At the default level (`info`) a program writes exactly the lines it always wrote:
//! `PROGRAM: MESSAGE` with CR and LF replaced by spaces. The verbose levels add lines of
//! the form `PROGRAM: debug: pid PID: MESSAGE` (or `trace:`), where every byte of the
//! message outside printable ASCII becomes `?` (they may quote what a stranger sent).
//! Events of crates other than rqmail's (hickory-proto's) appear only at `trace`.
//! Spans are not kept: a span's fields are not repeated in its events.
//!
//! The level, one of `off`, `error`, `warn`, `info`, `debug`, `trace`:
//! * the environment variable `QMAIL_LOGLEVEL`, unless the process runs with setuid or
//!   setgid privilege (the same rule as `QMAIL_HOME`);
//! * else `control/loglevel`: lines `LEVEL` (every program) and `PROGRAM:LEVEL` (one
//!   program, which wins); the last line of each kind counts;
//! * else `info`.
//!
//! A word that is not a level is warned about and ignored.

use crate::file::read_lines;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// The environment variable that sets the level (see the module documentation).
pub const LOGLEVEL_ENV: &str = "QMAIL_LOGLEVEL";

/// The control file that sets the level, relative to the qmail home.
pub const LOGLEVEL_FILE: &str = "control/loglevel";

/// The longest diagnostic line written; a longer message is cut (far longer than any line
/// the programs wrote before they used `tracing`, so the default lines are unchanged).
pub const MAX_LINE: usize = 16000;

/// A level word: `off`, `error`, `warn`, `info`, `debug` or `trace` (in any case).
pub fn parse_level(word: &[u8]) -> Option<LevelFilter> {
    let w = word.trim_ascii().to_ascii_lowercase();
    Some(match w.as_slice() {
        b"off" => LevelFilter::OFF,
        b"error" => LevelFilter::ERROR,
        b"warn" => LevelFilter::WARN,
        b"info" => LevelFilter::INFO,
        b"debug" => LevelFilter::DEBUG,
        b"trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

/// The level control/loglevel's `lines` give `program`, and the lines that are not
/// understood. `None` when no line concerns the program.
pub fn level_from_lines(lines: &[Vec<u8>], program: &str) -> (Option<LevelFilter>, Vec<String>) {
    let mut all = None;
    let mut mine = None;
    let mut bad = Vec::new();
    for l in lines {
        let (who, word) = match l.iter().rposition(|&c| c == b':') {
            Some(i) => (Some(&l[..i]), &l[i + 1..]),
            None => (None, l.as_slice()),
        };
        let Some(level) = parse_level(word) else {
            bad.push(String::from_utf8_lossy(l).into_owned());
            continue;
        };
        match who {
            None => all = Some(level),
            Some(w) if w.trim_ascii() == program.as_bytes() => mine = Some(level),
            Some(_) => {}
        }
    }
    (mine.or(all), bad)
}

/// The level for `program` whose home is `home`, from the environment value `env` (when
/// the process may trust its environment) or control/loglevel, and the warnings to give
/// about them.
pub fn choose_level(program: &str, home: &Path, env: Option<&[u8]>) -> (LevelFilter, Vec<String>) {
    let mut warnings = Vec::new();
    if let Some(v) = env {
        match parse_level(v) {
            Some(l) => return (l, warnings),
            None => warnings.push(format!(
                "{LOGLEVEL_ENV} is not a level: {}",
                String::from_utf8_lossy(v)
            )),
        }
    }
    match read_lines(&home.join(LOGLEVEL_FILE)) {
        Ok(None) => (LevelFilter::INFO, warnings),
        Ok(Some(lines)) => {
            let (level, bad) = level_from_lines(&lines, program);
            warnings.extend(
                bad.into_iter()
                    .map(|b| format!("{LOGLEVEL_FILE}: not a level: {b}")),
            );
            (level.unwrap_or(LevelFilter::INFO), warnings)
        }
        Err(e) => {
            warnings.push(format!("unable to read {LOGLEVEL_FILE}: {e}"));
            (LevelFilter::INFO, warnings)
        }
    }
}

/// Where the lines go.
enum Out {
    Stderr,
    Memory(Arc<Mutex<Vec<u8>>>),
}

/// The subscriber: one line per event, written with one write(2).
pub struct Diagnostics {
    program: &'static str,
    max: LevelFilter,
    pid: u32,
    out: Out,
}

impl fmt::Debug for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Diagnostics")
            .field("program", &self.program)
            .field("max", &self.max)
            .finish()
    }
}

/// True for the events of rqmail's own crates (their targets are module paths).
fn own(target: &str) -> bool {
    [
        "qmail_",
        "control",
        "recipient",
        "dkim",
        "tcp_env",
        "install",
        "reliability",
    ]
    .iter()
    .any(|p| target.starts_with(p))
}

/// Collects an event's message and its other fields (` name=value`).
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl Diagnostics {
    /// Lines of `program` up to `max`, on descriptor 2.
    pub fn stderr(program: &'static str, max: LevelFilter) -> Diagnostics {
        Diagnostics {
            program,
            max,
            pid: std::process::id(),
            out: Out::Stderr,
        }
    }

    /// Lines of `program` up to `max`, collected in `buf` (for tests).
    pub fn memory(program: &'static str, max: LevelFilter, buf: Arc<Mutex<Vec<u8>>>) -> Self {
        Diagnostics {
            program,
            max,
            pid: std::process::id(),
            out: Out::Memory(buf),
        }
    }

    /// The line for an event at `level` with `message` and `fields`, newline included.
    pub fn format(&self, level: Level, message: &str, fields: &str) -> Vec<u8> {
        let mut line = Vec::with_capacity(self.program.len() + message.len() + 32);
        line.extend_from_slice(self.program.as_bytes());
        line.extend_from_slice(b": ");
        let verbose = level > Level::INFO;
        if verbose {
            let word = if level == Level::DEBUG {
                "debug"
            } else {
                "trace"
            };
            line.extend_from_slice(format!("{word}: pid {}: ", self.pid).as_bytes());
        }
        let room = MAX_LINE.saturating_sub(line.len());
        for &c in message
            .as_bytes()
            .iter()
            .chain(fields.as_bytes())
            .take(room)
        {
            line.push(match c {
                b'\r' | b'\n' => b' ',
                c if verbose && !(0x20..0x7f).contains(&c) => b'?',
                c => c,
            });
        }
        line.push(b'\n');
        line
    }
}

impl Subscriber for Diagnostics {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event()
            && *meta.level() <= self.max
            && (self.max == LevelFilter::TRACE || own(meta.target()))
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut l = Line {
            message: String::new(),
            fields: String::new(),
        };
        event.record(&mut l);
        let line = self.format(*event.metadata().level(), &l.message, &l.fields);
        match &self.out {
            Out::Stderr => {
                let _ = std::io::stderr().lock().write_all(&line);
            }
            Out::Memory(buf) => {
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(&line);
                }
            }
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Installs the subscriber of `program` (qmail home `home`) for the whole process, when
/// `usable` says descriptor 2 is a place for diagnostics (see
/// [`stderr_is_private`](crate::stderr_is_private) and
/// [`stderr_is_not_output`](crate::stderr_is_not_output)). Otherwise, or at level `off`,
/// nothing is installed and every event is skipped at its call site. Returns the level.
pub fn init(program: &'static str, home: &Path, usable: bool) -> LevelFilter {
    if !usable {
        return LevelFilter::OFF;
    }
    use std::os::unix::ffi::OsStrExt;
    let env = if crate::privileged_exec() {
        None
    } else {
        std::env::var_os(LOGLEVEL_ENV)
    };
    let (level, warnings) = choose_level(program, home, env.as_ref().map(|v| v.as_bytes()));
    if level == LevelFilter::OFF {
        return level;
    }
    if tracing::subscriber::set_global_default(Diagnostics::stderr(program, level)).is_err() {
        return LevelFilter::OFF;
    }
    for w in warnings {
        tracing::warn!("{w}");
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn capture(program: &'static str, max: LevelFilter, f: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::with_default(Diagnostics::memory(program, max, buf.clone()), f);
        let out = buf.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn default_level_lines_are_the_old_lines() {
        let out = capture("qmail-smtpd", LevelFilter::INFO, || {
            tracing::warn!("STARTTLS: TLS handshake failed: {}", "bad\r\nthing");
            tracing::error!("unable to start qmail-queue: {}", "No such file");
            tracing::info!("tab\tand \u{7} bell stay");
            tracing::debug!("not at info");
            tracing::trace!("nor this");
        });
        assert_eq!(
            out,
            "qmail-smtpd: STARTTLS: TLS handshake failed: bad  thing\n\
             qmail-smtpd: unable to start qmail-queue: No such file\n\
             qmail-smtpd: tab\tand \u{7} bell stay\n"
        );
    }

    #[test]
    fn verbose_lines_say_level_and_pid_and_hide_control_bytes() {
        let pid = std::process::id();
        let out = capture("qmail-remote", LevelFilter::DEBUG, || {
            tracing::debug!(host = "mx.example", "DNS: MX of {}", "ex\u{1b}[2Jample");
            tracing::trace!("not at debug");
            tracing::info!("info still plain");
        });
        assert_eq!(
            out,
            format!(
                "qmail-remote: debug: pid {pid}: DNS: MX of ex?[2Jample host=mx.example\n\
                 qmail-remote: info still plain\n"
            )
        );
        let out = capture("qmail-remote", LevelFilter::TRACE, || {
            tracing::trace!(n = 3, "three");
        });
        assert_eq!(out, format!("qmail-remote: trace: pid {pid}: three n=3\n"));
    }

    #[test]
    fn foreign_events_only_at_trace() {
        let out = capture("qmail-remote", LevelFilter::DEBUG, || {
            tracing::debug!(target: "hickory_proto::op", "foreign");
            tracing::debug!(target: "qmail_remote::dns", "own");
        });
        assert!(
            out.ends_with(": own\n") && !out.contains("foreign"),
            "{out}"
        );
        let out = capture("qmail-remote", LevelFilter::TRACE, || {
            tracing::debug!(target: "hickory_proto::op", "foreign");
        });
        assert!(out.ends_with(": foreign\n"), "{out}");
    }

    #[test]
    fn off_and_error_levels() {
        let out = capture("x", LevelFilter::OFF, || tracing::error!("no"));
        assert_eq!(out, "");
        let out = capture("x", LevelFilter::ERROR, || {
            tracing::error!("yes");
            tracing::warn!("no");
        });
        assert_eq!(out, "x: yes\n");
    }

    #[test]
    fn long_messages_are_cut() {
        let out = capture("x", LevelFilter::INFO, || {
            tracing::info!("{}", "a".repeat(20000))
        });
        assert_eq!(out.len(), MAX_LINE + 1);
        assert!(out.ends_with("a\n"));
    }

    #[test]
    fn level_words() {
        assert_eq!(parse_level(b"Debug"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level(b" trace "), Some(LevelFilter::TRACE));
        assert_eq!(parse_level(b"off"), Some(LevelFilter::OFF));
        assert_eq!(parse_level(b"verbose"), None);
        assert_eq!(parse_level(b""), None);
    }

    #[test]
    fn control_file_lines() {
        let l = |s: &str| s.lines().map(|l| l.as_bytes().to_vec()).collect::<Vec<_>>();
        let lines = l("warn\nqmail-remote:debug\nqmail-smtpd: trace\nloud\n");
        let (lvl, bad) = level_from_lines(&lines, "qmail-remote");
        assert_eq!(lvl, Some(LevelFilter::DEBUG));
        assert_eq!(bad, vec!["loud".to_string()]);
        assert_eq!(
            level_from_lines(&lines, "qmail-smtpd").0,
            Some(LevelFilter::TRACE)
        );
        assert_eq!(
            level_from_lines(&lines, "qmail-send").0,
            Some(LevelFilter::WARN)
        );
        assert_eq!(level_from_lines(&l("qmail-remote:debug"), "x").0, None);
    }

    #[test]
    fn environment_then_file_then_info() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        assert_eq!(choose_level("p", h, None), (LevelFilter::INFO, vec![]));
        std::fs::create_dir(h.join("control")).unwrap();
        std::fs::write(h.join(LOGLEVEL_FILE), "p:debug\n# comment\nbogus\n").unwrap();
        let (lvl, w) = choose_level("p", h, None);
        assert_eq!(lvl, LevelFilter::DEBUG);
        assert_eq!(w, vec!["control/loglevel: not a level: bogus".to_string()]);
        assert_eq!(choose_level("p", h, Some(b"trace")).0, LevelFilter::TRACE);
        let (lvl, w) = choose_level("p", h, Some(b"loud"));
        assert_eq!(lvl, LevelFilter::DEBUG);
        assert_eq!(w[0], "QMAIL_LOGLEVEL is not a level: loud");
        std::fs::remove_file(h.join(LOGLEVEL_FILE)).unwrap();
        std::fs::create_dir(h.join(LOGLEVEL_FILE)).unwrap();
        let (lvl, w) = choose_level("p", h, None);
        assert_eq!(lvl, LevelFilter::INFO);
        assert!(
            w[0].starts_with("unable to read control/loglevel: "),
            "{w:?}"
        );
    }

    proptest! {
        /// Whatever the message, one line, no more than MAX_LINE bytes before its newline,
        /// and at a verbose level only printable ASCII.
        #[test]
        fn one_bounded_line(msg in ".{0,17000}", verbose in any::<bool>()) {
            let d = Diagnostics::memory("p", LevelFilter::TRACE, Arc::default());
            let level = if verbose { Level::DEBUG } else { Level::WARN };
            let line = d.format(level, &msg, "");
            prop_assert!(line.len() <= MAX_LINE + 1);
            prop_assert_eq!(line.last(), Some(&b'\n'));
            prop_assert!(!line[..line.len() - 1].iter().any(|&c| c == b'\n' || c == b'\r'));
            if verbose {
                prop_assert!(line[..line.len() - 1].iter().all(|&c| (0x20..0x7f).contains(&c)));
            }
        }

        #[test]
        fn any_control_file_is_read_without_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let lines = crate::parse_lines(&data);
            let _ = level_from_lines(&lines, "qmail-remote");
        }
    }
}
