//! The small programs netqmail ships for `|command` lines in .qmail files:
//!
//! * `forward address...`: forward the message (with `$DTLINE`, sender `$NEWSENDER`, or
//!   its SRS form);
//! * `preline command...`: feed the command `$UFLINE`, `$RPLINE`, `$DTLINE` and the
//!   message (for programs that expect mbox-style input);
//! * `condredirect address program...`: forward (sender `$SENDER`, or its SRS form) and
//!   stop (exit 99) when the program exits 0;
//! * `bouncesaying error [program...]`: bounce with `error` (when the program, if any,
//!   exits 0);
//! * `except program...`: turn the program's success into a bounce and its failure into
//!   success.
//!
//! Exit codes and messages are netqmail's; they speak qmail-command(8)'s language
//! (delivered, delivered and stop, bounce, defer).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::{Command, ExitStatus, Stdio};

use control::{Exit, temp_or_perm};
use control::{describe_error as error_str, is_temp};

fn say(line: &[u8]) {
    let mut v = line.to_vec();
    v.push(b'\n');
    let _ = io::stderr().write_all(&v);
}

pub(crate) fn die(code: Exit, prog: &str, text: &[u8]) -> Exit {
    say(&[prog.as_bytes(), b": fatal: ", text].concat());
    code
}

fn die_sys(code: Exit, prog: &str, text: &str, e: &io::Error) -> Exit {
    die(
        code,
        prog,
        &[text.as_bytes(), error_str(e).as_bytes()].concat(),
    )
}

/// The message on descriptor 0, as a file sharing its offset.
fn stdin_file() -> io::Result<File> {
    Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
}

/// Runs `argv` with inherited descriptors. A program that cannot be run counts as having
/// failed temporarily (for a temporary reason) or permanently, as netqmail's child does.
fn run_child(argv: &[OsString]) -> Result<Exit, ()> {
    let status: io::Result<ExitStatus> = Command::new(&argv[0])
        .args(&argv[1..])
        .spawn()
        .and_then(|mut c| c.wait());
    match status {
        Ok(s) => s.code().map(Exit::from_status).ok_or(()),
        Err(e) => Ok(temp_or_perm(is_temp(&e))),
    }
}

/// Hands the message on descriptor 0 to qmail-queue with `dtline` in front.
pub(crate) fn queue(prog: &str, dtline: &[u8], sender: &[u8], recips: &[OsString]) -> Exit {
    let home = control::qmail_home();
    let mut qq = match qmail_queue::QueueClient::open_default(&home) {
        Ok(q) => q,
        Err(e) => return die_sys(Exit::TEMP, prog, "unable to fork: ", &e),
    };
    let qp = qq.pid();
    qq.put(dtline);
    let mut input = match stdin_file() {
        Ok(f) => f,
        Err(e) => return die_sys(Exit::TEMP, prog, "unable to read message: ", &e),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => qq.put(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return die_sys(Exit::TEMP, prog, "unable to read message: ", &e),
        }
    }
    qq.from(sender);
    for r in recips {
        qq.to(r.as_bytes());
    }
    match qq.close() {
        Ok(()) => {
            say(format!("{prog}: qp {qp}").as_bytes());
            Exit::OK
        }
        Err(e) => die(temp_or_perm(!e.permanent), prog, e.text.as_bytes()),
    }
}

pub(crate) fn env_bytes(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(OsStringExt::into_vec)
}

/// forward(1).
pub fn forward_main() -> Exit {
    const P: &str = "forward";
    let Some(sender) = env_bytes("NEWSENDER") else {
        return die(Exit::PERM, P, b"NEWSENDER not set");
    };
    let Some(dtline) = env_bytes("DTLINE") else {
        return die(Exit::PERM, P, b"DTLINE not set");
    };
    let recips: Vec<OsString> = std::env::args_os().skip(1).collect();
    // The message's own sender tells a list owner's NEWSENDER apart (never rewritten).
    let original = env_bytes("SENDER").unwrap_or_else(|| sender.clone());
    match srs_sender(P, &original, &sender, &recips) {
        Ok(s) => queue(P, &dtline, &s, &recips),
        Err(code) => code,
    }
}

/// The sender a forward by `prog` gets: `newsender`, or its SRS form
/// ([`crate::forwarding`]). A control file that cannot be used is a temporary failure.
fn srs_sender(
    prog: &str,
    sender: &[u8],
    newsender: &[u8],
    recips: &[OsString],
) -> Result<Vec<u8>, Exit> {
    let recips: Vec<&[u8]> = recips.iter().map(|r| r.as_bytes()).collect();
    crate::forwarding::forward_sender(sender, newsender, &recips, control::now()).map_err(|e| {
        die(
            Exit::TEMP,
            prog,
            &[b"unable to read SRS configuration: ", e.0.as_bytes()].concat(),
        )
    })
}

/// condredirect(1).
pub fn condredirect_main() -> Exit {
    const P: &str = "condredirect";
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.len() < 2 {
        say(b"condredirect: usage: condredirect newaddress program [ arg ... ]");
        return Exit::PERM;
    }
    match run_child(&args[1..]) {
        Err(()) => return die(Exit::TEMP, P, b"child crashed"),
        Ok(Exit::OK) => {}
        Ok(Exit::TEMP) => return die(Exit::TEMP, P, b"temporary child error"),
        Ok(_) => return Exit::OK,
    }
    if let Err(e) = stdin_file().and_then(|mut f| f.seek(SeekFrom::Start(0))) {
        return die_sys(Exit::TEMP, P, "unable to rewind: ", &e);
    }
    let Some(sender) = env_bytes("SENDER") else {
        return die(Exit::PERM, P, b"SENDER not set");
    };
    let Some(dtline) = env_bytes("DTLINE") else {
        return die(Exit::PERM, P, b"DTLINE not set");
    };
    let sender = match srs_sender(P, &sender, &sender, &args[..1]) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match queue(P, &dtline, &sender, &args[..1]) {
        Exit::OK => Exit::DELIVERED_STOP,
        n => n,
    }
}

/// bouncesaying(1).
pub fn bouncesaying_main() -> Exit {
    const P: &str = "bouncesaying";
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(error) = args.first() else {
        say(b"bouncesaying: usage: bouncesaying error [ program [ arg ... ] ]");
        return Exit::PERM;
    };
    if args.len() > 1 {
        match run_child(&args[1..]) {
            Err(()) => return die(Exit::TEMP, P, b"child crashed"),
            Ok(Exit::OK) => {}
            Ok(Exit::TEMP) => return die(Exit::TEMP, P, b"temporary child error"),
            Ok(_) => return Exit::OK,
        }
    }
    say(error.as_bytes());
    Exit::PERM
}

/// except(1).
pub fn except_main() -> Exit {
    const P: &str = "except";
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        say(b"except: usage: except program [ arg ... ]");
        return Exit::PERM;
    }
    match run_child(&args) {
        Err(()) => die(Exit::TEMP, P, b"child crashed"),
        Ok(Exit::OK) => Exit::PERM,
        Ok(Exit::TEMP) => die(Exit::TEMP, P, b"temporary child error"),
        Ok(_) => Exit::OK,
    }
}

/// preline(1).
pub fn preline_main() -> Exit {
    const P: &str = "preline";
    let usage = || {
        say(b"preline: usage: preline cmd [ arg ... ]");
        Exit::PERM
    };
    let (Some(ufline), Some(rpline), Some(dtline)) = (
        env_bytes("UFLINE"),
        env_bytes("RPLINE"),
        env_bytes("DTLINE"),
    ) else {
        return usage();
    };
    let (mut uf, mut rp, mut dt) = (true, true, true);
    let mut g = control::Getopt::new(std::env::args_os().skip(1), "frdFRD");
    for o in g.by_ref() {
        match o.map(|o| o.letter) {
            Ok(b'f') => uf = false,
            Ok(b'r') => rp = false,
            Ok(b'd') => dt = false,
            Ok(b'F') => uf = true,
            Ok(b'R') => rp = true,
            Ok(_) => dt = true,
            Err(e) => {
                e.complain(&control::env_progname());
                return usage();
            }
        }
    }
    let argv: Vec<OsString> = g.operands();
    if argv.is_empty() {
        return usage();
    }
    let mut child = match Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let code = temp_or_perm(is_temp(&e));
            return die(
                code,
                P,
                &[
                    b"unable to run ",
                    argv[0].as_bytes(),
                    b": ",
                    error_str(&e).as_bytes(),
                ]
                .concat(),
            );
        }
    };
    let copied = (|| -> io::Result<()> {
        let pipe = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EPIPE))?;
        let mut w = io::BufWriter::with_capacity(64 * 1024, pipe);
        if uf {
            w.write_all(&ufline)?;
        }
        if rp {
            w.write_all(&rpline)?;
        }
        if dt {
            w.write_all(&dtline)?;
        }
        let mut input = stdin_file()?;
        io::copy(&mut input, &mut w)?;
        w.flush()
    })();
    if let Err(e) = copied {
        let _ = child.wait();
        return die_sys(Exit::TEMP, P, "unable to copy input: ", &e);
    }
    match child.wait() {
        Ok(s) => match s.code() {
            Some(c) => Exit::from_status(c),
            None => die(Exit::TEMP, P, b"child crashed"),
        },
        Err(e) => die_sys(Exit::TEMP, P, "wait failed: ", &e),
    }
}
