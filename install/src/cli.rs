//! Command line of rqmail-install.

use crate::{Plan, install};
use control::ids::Ids;
use std::path::PathBuf;

const USAGE: &str = "usage: rqmail-install [-d destdir] [-b bindir] [-m mandir] [home]";

fn fatal(msg: &str) -> i32 {
    eprintln!("rqmail-install: fatal: {msg}");
    111
}

struct Args {
    home: Option<PathBuf>,
    destdir: PathBuf,
    bindir: Option<PathBuf>,
    mandir: Option<PathBuf>,
}

fn parse() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut destdir = PathBuf::new();
    let mut bindir = None;
    let mut mandir = None;
    let mut home = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('d') => destdir = PathBuf::from(p.value()?),
            Short('b') => bindir = Some(PathBuf::from(p.value()?)),
            Short('m') => mandir = Some(PathBuf::from(p.value()?)),
            Value(v) if home.is_none() => home = Some(PathBuf::from(v)),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Args {
        home,
        destdir,
        bindir,
        mandir,
    })
}

/// Runs the program; returns the exit code.
pub fn main() -> i32 {
    let Args {
        home,
        destdir,
        bindir,
        mandir,
    } = match parse() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("rqmail-install: {e}\n{USAGE}");
            return 100;
        }
    };
    let home = home.unwrap_or_else(control::qmail_home);
    if !home.is_absolute() {
        return fatal("the home directory must be an absolute path");
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let bindir = bindir.unwrap_or_else(|| exe_dir.clone());
    let mandir = mandir.or_else(|| {
        let guess = exe_dir.join("../../man");
        guess.is_dir().then_some(guess)
    });
    let ids = match Ids::for_this_process() {
        Ok(ids) => ids,
        Err(e) => return fatal(&format!("{e} (create the qmail users and groups first)")),
    };
    let plan = Plan {
        home,
        destdir,
        bindir,
        mandir,
        ids,
    };
    match install(&plan) {
        Ok(skipped) => {
            if !skipped.is_empty() {
                eprintln!(
                    "rqmail-install: warning: not built, not installed: {}",
                    skipped.join(" ")
                );
            }
            0
        }
        Err(e) => fatal(&e.to_string()),
    }
}
