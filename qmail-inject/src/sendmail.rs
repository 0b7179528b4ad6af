//! sendmail: the wrapper that lets programs written for Sendmail's command line inject
//! mail through qmail-inject (netqmail's sendmail.c).
//!
//! [`translate`] turns the command line into an [`Action`]; [`main`] carries it out by
//! switching to the qmail home and replacing itself with `bin/qmail-inject`,
//! `bin/qmail-qread` (`-bp`, or when called as `mailq`) or `bin/qmail-smtpd` (`-bs`).

use control::Exit;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run `bin/qmail-inject` with these arguments, after these environment changes
    /// (in order; `None` removes the variable).
    Inject {
        args: Vec<OsString>,
        env: Vec<(&'static str, Option<OsString>)>,
    },
    /// `-bp` or the name `mailq`: run `bin/qmail-qread`.
    Qread,
    /// `-bs`: run `bin/qmail-smtpd` on standard input and output.
    Smtpd,
    /// Called as `newaliases`: refused.
    NewAliases,
    /// A bad command line; the text is getopt's complaint, if any.
    Usage(Option<String>),
}

/// The program name as getopt sees it: the last component of argv\[0\].
pub fn progname(argv0: &OsStr) -> String {
    String::from_utf8_lossy(control::progname(argv0.as_bytes())).into_owned()
}

/// Translates a sendmail command line (without argv\[0\]); `prog` is the name it was
/// called by.
pub fn translate(prog: &str, args: Vec<OsString>) -> Action {
    let mut header = false;
    let mut sender: Option<OsString> = None;
    let mut env: Vec<(&'static str, Option<OsString>)> = Vec::new();
    let mut g = control::Getopt::new(args, "vimte:f:p:o:B:F:EJxb:");
    while let Some(opt) = g.next() {
        let opt = match opt {
            Ok(o) => o,
            Err(e) => {
                let line = e.complaint(prog.as_bytes());
                return Action::Usage(Some(String::from_utf8_lossy(&line).into_owned()));
            }
        };
        match (opt.letter, opt.arg) {
            // Accepted and ignored, as netqmail does (with -e, -p, -o and -B's argument).
            (b't', _) => header = true,
            (b'f', v) => sender = v,
            (b'F', v) => env.push(("MAILNAME", v)),
            // Sony NEWS-OS: an optional argument glued to the letter.
            (b'E' | b'J', _) => g.skip_rest_of_word(),
            (b'b', v) => match v.unwrap_or_default().as_bytes().first() {
                Some(b'm') => {}
                Some(b'p') => return Action::Qread,
                Some(b's') => return Action::Smtpd,
                _ => return Action::Usage(None),
            },
            _ => {}
        }
    }
    let rest = g.operands();
    if prog == "mailq" {
        return Action::Qread;
    }
    if prog == "newaliases" {
        return Action::NewAliases;
    }

    let mut args: Vec<OsString> = vec![if header { "-H" } else { "-a" }.into()];
    if let Some(s) = sender {
        args.push("-f".into());
        args.push(s.clone());
        // The sender also names the From field: user and host from it, no
        // personal name (this drops a -F given before, as netqmail does).
        for v in ["QMAILNAME", "MAILNAME", "NAME", "QMAILHOST", "MAILHOST"] {
            env.push((v, None));
        }
        let b = s.as_bytes();
        match b.iter().rposition(|&c| c == b'@') {
            None => env.push(("QMAILUSER", Some(s.clone()))),
            Some(at) => {
                env.push(("QMAILHOST", Some(OsString::from_vec(b[at + 1..].to_vec()))));
                env.push(("QMAILUSER", Some(OsString::from_vec(b[..at].to_vec()))));
            }
        }
    }
    args.push("--".into());
    args.extend(rest);
    Action::Inject { args, env }
}

/// The environment `-bs` gives qmail-smtpd when it is not already set up (no `PROTO`):
/// a relaying client on the loopback with no size limit.
pub const SMTPD_ENV: [(&str, &str); 8] = [
    ("RELAYCLIENT", ""),
    ("DATABYTES", "0"),
    ("PROTO", "TCP"),
    ("TCPLOCALIP", "127.0.0.1"),
    ("TCPLOCALHOST", "localhost"),
    ("TCPREMOTEIP", "127.0.0.1"),
    ("TCPREMOTEHOST", "localhost"),
    ("TCPREMOTEINFO", "sendmail-bs"),
];

fn fatal(msg: &str, code: Exit) -> Exit {
    let _ = std::io::stderr().write_all(format!("sendmail: fatal: {msg}\n").as_bytes());
    code
}

/// Runs the wrapper; returns an exit code only when it could not exec.
pub fn main() -> Exit {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    let prog = progname(&argv0);
    let home = control::qmail_home();
    if std::env::set_current_dir(&home).is_err() {
        return fatal("unable to switch to qmail home directory", Exit::TEMP);
    }
    match translate(&prog, argv.collect()) {
        Action::Usage(complaint) => {
            let mut err = std::io::stderr();
            if let Some(c) = complaint {
                let _ = writeln!(err, "{c}");
            }
            let _ = writeln!(
                err,
                "sendmail: usage: sendmail [ -t ] [ -f sender ] [ -F name ] [ -bp ] [ -bs ] [ recipient ... ]"
            );
            Exit::PERM
        }
        Action::NewAliases => fatal("please use fastforward/newaliases instead", Exit::PERM),
        Action::Qread => {
            let e = Command::new("bin/qmail-qread")
                .arg0("bin/qmail-qread")
                .exec();
            let _ = e;
            fatal("unable to run qmail-qread", Exit::TEMP)
        }
        Action::Smtpd => {
            let mut c = Command::new("bin/qmail-smtpd");
            c.arg0("bin/qmail-smtpd");
            if std::env::var_os("PROTO").is_none() {
                c.envs(SMTPD_ENV);
            }
            let _ = c.exec();
            fatal("unable to run qmail-smtpd", Exit::TEMP)
        }
        Action::Inject { args, env } => {
            let mut c = Command::new("bin/qmail-inject");
            c.arg0("bin/qmail-inject").args(args);
            for (k, v) in env {
                match v {
                    Some(v) => c.env(k, v),
                    None => c.env_remove(k),
                };
            }
            let _ = c.exec();
            fatal("unable to run qmail-inject", Exit::TEMP)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(args: &[&str]) -> Action {
        translate("sendmail", args.iter().map(OsString::from).collect())
    }

    fn inject_args(a: Action) -> Vec<String> {
        match a {
            Action::Inject { args, .. } => {
                args.into_iter().map(|s| s.into_string().unwrap()).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_and_t() {
        assert_eq!(inject_args(tr(&["a@b", "c"])), ["-a", "--", "a@b", "c"]);
        assert_eq!(inject_args(tr(&["-t"])), ["-H", "--"]);
        assert_eq!(
            inject_args(tr(&["-ti", "-oi", "-odb", "-oem", "x"])),
            ["-H", "--", "x"]
        );
        assert_eq!(inject_args(tr(&["-i", "--", "-x"])), ["-a", "--", "-x"]);
        assert_eq!(
            inject_args(tr(&[
                "-v",
                "-m",
                "-x",
                "-B8BITMIME",
                "-p",
                "smtp:x",
                "-e",
                "q",
                "r"
            ])),
            ["-a", "--", "r"]
        );
        // Options stop at the first argument.
        assert_eq!(inject_args(tr(&["r", "-t"])), ["-a", "--", "r", "-t"]);
        assert_eq!(inject_args(tr(&["-", "r"])), ["-a", "--", "-", "r"]);
        assert_eq!(inject_args(tr(&["-Efoo", "-J", "r"])), ["-a", "--", "r"]);
        assert_eq!(inject_args(tr(&["-bm", "r"])), ["-a", "--", "r"]);
        assert_eq!(inject_args(tr(&["--long=x", "-t"])), ["-a", "--", "-t"]);
    }

    #[test]
    fn sender_sets_environment() {
        let a = tr(&["-F", "Joe", "-fjoe@example.com", "r"]);
        let Action::Inject { args, env } = a else {
            panic!()
        };
        assert_eq!(args, ["-a", "-f", "joe@example.com", "--", "r"]);
        let env: Vec<(&str, Option<String>)> = env
            .into_iter()
            .map(|(k, v)| (k, v.map(|v| v.into_string().unwrap())))
            .collect();
        assert_eq!(
            env,
            [
                ("MAILNAME", Some("Joe".into())),
                ("QMAILNAME", None),
                ("MAILNAME", None),
                ("NAME", None),
                ("QMAILHOST", None),
                ("MAILHOST", None),
                ("QMAILHOST", Some("example.com".into())),
                ("QMAILUSER", Some("joe".into())),
            ]
        );
        let Action::Inject { env, .. } = tr(&["-f", "joe", "r"]) else {
            panic!()
        };
        assert_eq!(
            env.last().unwrap(),
            &("QMAILUSER", Some(OsString::from("joe")))
        );
        let Action::Inject { env, args } = tr(&["-F", "Joe Q", "r"]) else {
            panic!()
        };
        assert_eq!(env, [("MAILNAME", Some(OsString::from("Joe Q")))]);
        assert_eq!(args, ["-a", "--", "r"]);
    }

    #[test]
    fn modes_and_errors() {
        assert_eq!(tr(&["-bp"]), Action::Qread);
        assert_eq!(tr(&["-b", "s"]), Action::Smtpd);
        assert_eq!(tr(&["-bs", "-x"]), Action::Smtpd);
        assert_eq!(tr(&["-bx"]), Action::Usage(None));
        assert_eq!(tr(&["-b", ""]), Action::Usage(None));
        assert_eq!(
            tr(&["-y"]),
            Action::Usage(Some("sendmail: illegal option -- y".into()))
        );
        assert_eq!(
            tr(&["-f"]),
            Action::Usage(Some("sendmail: option requires an argument -- f".into()))
        );
        assert_eq!(translate("mailq", vec![]), Action::Qread);
        assert_eq!(translate("newaliases", vec![]), Action::NewAliases);
        assert_eq!(progname(OsStr::new("/usr/lib/sendmail")), "sendmail");
    }
}
