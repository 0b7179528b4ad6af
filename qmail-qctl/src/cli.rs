//! The qmail-qctl command line: arguments, the subcommands, the exit code.

use crate::client::{self, Client, ConnectError};
use crate::filter::{Filter, Pattern, parse_age, parse_size};
use crate::offline::{self, Offline};
use crate::output::{self, Format};
use crate::scan::{self, State};
use control::Exit;
use qmail_queue::Queue;
use qmail_queue::qctl::{Kind, Reply, Request, parse_channel, parse_id};
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;

const USAGE: &str = "usage: qmail-qctl [-j | -t] list [FILTER ...]
       qmail-qctl [-j | -t] show [-b] [--raw] ID
       qmail-qctl [-j | -t] hold | release | delete | retry ID ... | FILTER ...
       qmail-qctl [-j | -t] retry -a
       qmail-qctl [-j | -t] pause | resume local | remote
       qmail-qctl [-j | -t] status
FILTER: -s SENDER  -r RECIPIENT  -d DOMAIN  -o AGE  -y AGE  --larger-than SIZE
        --smaller-than SIZE  -H (held)  --not-held  --local  --remote  --bouncing";

/// Exit codes (qmail's conventions).
const OK: Exit = Exit::OK;
const PERMANENT: Exit = Exit::PERM;
const TEMPORARY: Exit = Exit::TEMP;

/// The most bytes of a message `show` prints.
const SHOW_MAX: u64 = 16 << 20;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cmd {
    List,
    Show {
        id: u64,
        whole: bool,
        raw: bool,
    },
    /// hold, release, delete or retry: of these ids, or of the messages the filter selects
    /// (`ids` empty), or every message (`retry -a`).
    Op {
        verb: String,
        ids: Vec<u64>,
        all: bool,
    },
    Channel {
        pause: bool,
        channel: usize,
    },
    Status,
}

#[derive(Debug)]
struct Args {
    fmt: Format,
    cmd: Cmd,
    filter: Filter,
}

fn bytes(v: OsString) -> Vec<u8> {
    v.into_vec()
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut fmt = Format::Human;
    let mut f = Filter::default();
    let (mut all, mut whole, mut raw) = (false, false, false);
    let mut words: Vec<Vec<u8>> = Vec::new();
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(err)? {
        match arg {
            Short('j') | Long("json") => fmt = Format::Json,
            Short('t') | Long("tsv") => fmt = Format::Tsv,
            Short('a') | Long("all") => all = true,
            Short('b') | Long("body") => whole = true,
            Long("raw") => raw = true,
            Short('s') | Long("sender") => {
                f.sender.push(Pattern::new(&bytes(p.value().map_err(err)?)));
            }
            Short('r') | Long("recipient") => {
                f.recipient
                    .push(Pattern::new(&bytes(p.value().map_err(err)?)));
            }
            Short('d') | Long("domain") => {
                f.domain.push(Pattern::new(&bytes(p.value().map_err(err)?)));
            }
            Short('o') | Long("older-than") | Short('y') | Long("younger-than") => {
                let older = matches!(arg, Short('o') | Long("older-than"));
                let v = p.value().map_err(err)?.string().map_err(err)?;
                let a = parse_age(&v).ok_or_else(|| format!("bad age: {v}"))?;
                if older {
                    f.older = Some(a);
                } else {
                    f.younger = Some(a);
                }
            }
            Long("larger-than") | Long("smaller-than") => {
                let larger = arg == Long("larger-than");
                let v = p.value().map_err(err)?.string().map_err(err)?;
                let n = parse_size(&v).ok_or_else(|| format!("bad size: {v}"))?;
                if larger {
                    f.larger = Some(n);
                } else {
                    f.smaller = Some(n);
                }
            }
            Short('H') | Long("held") => f.held = Some(true),
            Long("not-held") => f.held = Some(false),
            Long("local") => f.channel = Some(0),
            Long("remote") => f.channel = Some(1),
            Long("bouncing") => f.bouncing = true,
            Value(v) => words.push(bytes(v)),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let Some((sub, rest)) = words.split_first() else {
        return Err("no command given".to_string());
    };
    let sub = String::from_utf8_lossy(sub).into_owned();
    let no_filter = |what: &str| {
        if f.is_empty() {
            Ok(())
        } else {
            Err(format!("{what} takes no filter"))
        }
    };
    let ids = || -> Result<Vec<u64>, String> {
        rest.iter()
            .map(|w| {
                parse_id(w).ok_or_else(|| format!("not a message number: {}", output::human(w)))
            })
            .collect()
    };
    if (all && sub != "retry") || ((whole || raw) && sub != "show") {
        return Err(format!("option not valid with {sub}"));
    }
    let cmd = match sub.as_str() {
        "list" if rest.is_empty() => Cmd::List,
        "show" => {
            no_filter("show")?;
            let ids = ids()?;
            let [id] = ids[..] else {
                return Err("show takes one message number".to_string());
            };
            Cmd::Show { id, whole, raw }
        }
        "hold" | "release" | "delete" | "retry" => {
            let ids = ids()?;
            let ways = usize::from(!ids.is_empty()) + usize::from(!f.is_empty()) + usize::from(all);
            if ways != 1 {
                return Err(format!(
                    "{sub} needs message numbers or filters{}, and only one of them",
                    if sub == "retry" { " or -a" } else { "" }
                ));
            }
            Cmd::Op {
                verb: sub.clone(),
                ids,
                all,
            }
        }
        "pause" | "resume" => {
            no_filter(&sub)?;
            let channel = match rest {
                [c] => parse_channel(c),
                _ => None,
            }
            .ok_or_else(|| format!("{sub} takes local or remote"))?;
            Cmd::Channel {
                pause: sub == "pause",
                channel,
            }
        }
        "status" if rest.is_empty() => {
            no_filter("status")?;
            Cmd::Status
        }
        "list" | "status" => return Err(format!("{sub} takes no arguments")),
        _ => {
            return Err(format!(
                "unknown command: {}",
                output::human(sub.as_bytes())
            ));
        }
    };
    Ok(Args {
        fmt,
        cmd,
        filter: f,
    })
}

/// How the requests went: the worst outcome decides the exit code.
#[derive(Debug, Default)]
struct Tally {
    permanent: bool,
    temporary: bool,
}

impl Tally {
    fn code(&self) -> Exit {
        if self.temporary {
            TEMPORARY
        } else if self.permanent {
            PERMANENT
        } else {
            OK
        }
    }
}

fn fatal(msg: &str) -> Exit {
    eprintln!("qmail-qctl: fatal: {msg}");
    TEMPORARY
}

/// Where requests go: the running qmail-send, or the files when it is not running.
enum Channel {
    Online(Client),
    Offline(Offline),
}

fn open_channel(q: &Queue) -> Result<Channel, String> {
    match client::connect(q.root()) {
        Ok(c) => Ok(Channel::Online(c)),
        Err(ConnectError::NotListening) => match offline::lock(q) {
            Ok(Some(o)) => Ok(Channel::Offline(o)),
            Ok(None) => Err("qmail-send is running but takes no requests (netqmail's \
                             qmail-send, or see its log for why it does not listen)"
                .to_string()),
            Err(e) => Err(format!(
                "unable to lock {}: {e}",
                q.root().join("lock/sendmutex").display()
            )),
        },
        Err(ConnectError::Stranger(uid)) => {
            // qmail-send runs as the owner of lock/sendmutex (when this user may see it).
            use std::os::unix::fs::MetadataExt;
            let owner = std::fs::metadata(q.root().join("lock/sendmutex")).map(|m| m.uid());
            Err(match owner {
                Ok(o) if o == uid => {
                    format!("qmail-send runs as uid {uid}: run qmail-qctl as root or as that user")
                }
                Ok(o) => format!(
                    "the request channel is held by a process of uid {uid}, not by \
                     qmail-send (uid {o}): not talking to it"
                ),
                Err(_) => format!(
                    "the request channel is served by uid {uid}, neither root nor this \
                     user: run qmail-qctl as root or as qmail-send's user"
                ),
            })
        }
        Err(ConnectError::Io(e)) => Err(format!("unable to reach qmail-send: {e}")),
    }
}

impl Channel {
    fn request(&mut self, req: &Request, fmt: Format) -> Result<Reply, String> {
        match self {
            Channel::Offline(o) => Ok(o.request(req)),
            Channel::Online(c) => {
                let text = req.line();
                let text = text.trim_end();
                c.request(req, |w| {
                    if fmt == Format::Human {
                        eprintln!(
                            "{text}: waiting for {} deliveries in progress to end...",
                            w.num("deliveries").unwrap_or(0)
                        );
                    }
                })
                .map_err(|e| format!("lost qmail-send during \"{text}\": {e}"))
            }
        }
    }
}

fn write_out(out: &mut impl Write, s: &str) -> Result<(), Exit> {
    out.write_all(s.as_bytes())
        .map_err(|e| fatal(&format!("unable to write output: {e}")))
}

fn list(q: &Queue, args: &Args, out: &mut impl Write) -> Result<Exit, Exit> {
    let ids = scan::ids(q).map_err(|e| fatal(&format!("unable to read the queue: {e}")))?;
    let now = control::now();
    if args.fmt == Format::Tsv {
        write_out(out, output::LIST_HEADER)?;
    }
    let (mut n, mut held, mut new, mut trouble) = (0, 0, 0, false);
    for id in ids {
        match scan::message(q, id) {
            Ok(Some(m)) if args.filter.matches(&m, now) => {
                n += 1;
                held += usize::from(m.state == State::Held);
                new += usize::from(m.state == State::New);
                write_out(out, &output::message(args.fmt, &m, now))?;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("qmail-qctl: warning: trouble with #{id}: {e}");
                trouble = true;
            }
        }
    }
    if args.fmt == Format::Human {
        write_out(out, &output::list_summary(n, held, new))?;
    }
    Ok(if trouble { TEMPORARY } else { OK })
}

fn show(
    q: &Queue,
    args: &Args,
    id: u64,
    whole: bool,
    raw: bool,
    out: &mut impl Write,
) -> Result<Exit, Exit> {
    let trouble = |e: io::Error| fatal(&format!("trouble with #{id}: {e}"));
    let Some(m) = scan::message(q, id).map_err(trouble)? else {
        eprintln!("qmail-qctl: #{id}: no such message in the queue");
        return Ok(PERMANENT);
    };
    if raw {
        let text = scan::message_text(q, id, true, u64::MAX).map_err(trouble)?;
        out.write_all(&text)
            .map_err(|e| fatal(&format!("unable to write output: {e}")))?;
        return Ok(OK);
    }
    let bounce = scan::bounce_text(q, id).map_err(trouble)?;
    let text = scan::message_text(q, id, whole, SHOW_MAX).map_err(trouble)?;
    let now = control::now();
    write_out(
        out,
        &output::show(args.fmt, &m, now, bounce.as_deref(), &text, whole),
    )?;
    Ok(OK)
}

/// Sends `reqs`; `selected` when the messages were chosen by a filter (one that has
/// ended in between is then no failure).
fn requests(
    q: &Queue,
    fmt: Format,
    reqs: &[Request],
    selected: bool,
    out: &mut impl Write,
) -> Result<Exit, Exit> {
    let mut ch = open_channel(q).map_err(|e| fatal(&e))?;
    if fmt == Format::Tsv {
        write_out(out, output::RESULT_HEADER)?;
    }
    let mut tally = Tally::default();
    for req in reqs {
        let r = ch.request(req, fmt).map_err(|e| fatal(&e))?;
        let text = req.line();
        let text = text.trim_end();
        let s = if *req == Request::Status && fmt == Format::Human && r.kind == Kind::Ok {
            output::status_human(&r)
        } else if selected && r.kind == Kind::No && r.word == "not-found" && fmt == Format::Human {
            format!("#{}: no longer in the queue\n", req.id().unwrap_or(0))
        } else {
            output::result(fmt, text, &r)
        };
        write_out(out, &s)?;
        match r.kind {
            Kind::No if selected && r.word == "not-found" => {}
            Kind::No => tally.permanent = true,
            Kind::Later => tally.temporary = true,
            _ => {}
        }
        out.flush()
            .map_err(|e| fatal(&format!("unable to write output: {e}")))?;
    }
    Ok(tally.code())
}

fn op_request(verb: &str, id: u64) -> Request {
    match verb {
        "hold" => Request::Hold(id),
        "release" => Request::Release(id),
        "delete" => Request::Delete(id),
        _ => Request::Retry(id),
    }
}

fn run(args: &Args, out: &mut impl Write) -> Result<Exit, Exit> {
    if let Err(e) = crate::privs::become_queue_user() {
        return Err(fatal(&e));
    }
    let q = Queue::in_home(&control::qmail_home());
    match &args.cmd {
        Cmd::List => list(&q, args, out),
        Cmd::Show { id, whole, raw } => show(&q, args, *id, *whole, *raw, out),
        Cmd::Op { verb, ids, all } => {
            if *all {
                return requests(&q, args.fmt, &[Request::RetryAll], false, out);
            }
            if !ids.is_empty() {
                let reqs: Vec<Request> = ids.iter().map(|&id| op_request(verb, id)).collect();
                return requests(&q, args.fmt, &reqs, false, out);
            }
            let now = control::now();
            let ids =
                scan::ids(&q).map_err(|e| fatal(&format!("unable to read the queue: {e}")))?;
            let mut reqs = Vec::new();
            for id in ids {
                match scan::message(&q, id) {
                    Ok(Some(m)) if args.filter.matches(&m, now) => reqs.push(op_request(verb, id)),
                    Ok(_) => {}
                    Err(e) => eprintln!("qmail-qctl: warning: trouble with #{id}: {e}"),
                }
            }
            if reqs.is_empty() {
                if args.fmt == Format::Human {
                    write_out(out, "no message matches\n")?;
                }
                return Ok(OK);
            }
            requests(&q, args.fmt, &reqs, true, out)
        }
        Cmd::Channel { pause, channel } => {
            let req = if *pause {
                Request::Pause(*channel)
            } else {
                Request::Resume(*channel)
            };
            requests(&q, args.fmt, &[req], false, out)
        }
        Cmd::Status => requests(&q, args.fmt, &[Request::Status], false, out),
    }
}

/// The qmail-qctl program. Returns its exit code.
pub fn main() -> Exit {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("qmail-qctl: {e}\n{USAGE}");
            return PERMANENT;
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let code = run(&args, &mut out).unwrap_or_else(|c| c);
    if out.flush().is_err() && code == OK {
        return fatal("unable to write output");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn command_lines() {
        let a = p(&["list"]).unwrap();
        assert_eq!(a.cmd, Cmd::List);
        assert_eq!(a.fmt, Format::Human);
        let a = p(&["-j", "list", "-s", "*@x", "--older-than", "1h", "--remote"]).unwrap();
        assert_eq!(a.fmt, Format::Json);
        assert_eq!(a.filter.older, Some(3600));
        assert_eq!(a.filter.channel, Some(1));
        assert_eq!(a.filter.sender.len(), 1);
        assert_eq!(
            p(&["-t", "show", "-b", "457"]).unwrap().cmd,
            Cmd::Show {
                id: 457,
                whole: true,
                raw: false
            }
        );
        assert_eq!(
            p(&["hold", "1", "2"]).unwrap().cmd,
            Cmd::Op {
                verb: "hold".into(),
                ids: vec![1, 2],
                all: false
            }
        );
        // Message numbers are read as netqmail reads queue file names: 007 is 7.
        assert_eq!(
            p(&["hold", "007"]).unwrap().cmd,
            Cmd::Op {
                verb: "hold".into(),
                ids: vec![7],
                all: false
            }
        );
        assert!(matches!(
            p(&["delete", "-d", "spam.example"]).unwrap().cmd,
            Cmd::Op { ref ids, all: false, .. } if ids.is_empty()
        ));
        assert!(matches!(
            p(&["retry", "-a"]).unwrap().cmd,
            Cmd::Op { all: true, .. }
        ));
        assert_eq!(
            p(&["pause", "remote"]).unwrap().cmd,
            Cmd::Channel {
                pause: true,
                channel: 1
            }
        );
        assert_eq!(p(&["status"]).unwrap().cmd, Cmd::Status);
        for bad in [
            &[][..],
            &["frob"],
            &["list", "1"],
            &["show"],
            &["show", "1", "2"],
            &["show", "x"],
            &["delete"],
            &["delete", "1", "-s", "x"],
            &["delete", "-a"],
            &["retry", "-a", "1"],
            &["hold", "+1"],
            &["pause"],
            &["pause", "all"],
            &["status", "-s", "x"],
            &["list", "-o", "soon"],
            &["list", "--larger-than", "1m"],
            &["list", "-b"],
            &["list", "-z"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Tally::default().code(), Exit::OK);
        let t = Tally {
            permanent: true,
            temporary: false,
        };
        assert_eq!(t.code(), Exit::PERM);
        let t = Tally {
            permanent: true,
            temporary: true,
        };
        assert_eq!(t.code(), Exit::TEMP);
    }
}
