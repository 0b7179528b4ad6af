//! Command line of rqmail-install.

use crate::check::{self, Options};
use crate::{Plan, accounts, install};
use control::Ids;
use control::{Exit, ExitError};
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: rqmail-install [-U] [-M] [-d destdir] [-b bindir] [-m mandir] [home]\n       rqmail-install -c [-M] [-d destdir] [home]";

#[derive(Debug, Default)]
struct Args {
    check: bool,
    create_users: bool,
    mini: bool,
    home: Option<PathBuf>,
    destdir: PathBuf,
    bindir: Option<PathBuf>,
    mandir: Option<PathBuf>,
}

fn parse() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut a = Args::default();
    while let Some(arg) = p.next()? {
        match arg {
            Short('c') => a.check = true,
            Short('U') => a.create_users = true,
            Short('M') => a.mini = true,
            Short('d') => a.destdir = PathBuf::from(p.value()?),
            Short('b') => a.bindir = Some(PathBuf::from(p.value()?)),
            Short('m') => a.mandir = Some(PathBuf::from(p.value()?)),
            Value(v) if a.home.is_none() => a.home = Some(PathBuf::from(v)),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(a)
}

/// What went wrong, and the exit code it means.
enum Outcome {
    Usage(String),
    Fatal(String),
    Deviations(usize),
}

impl ExitError for Outcome {
    fn exit(&self) -> Exit {
        match self {
            Outcome::Usage(_) => Exit::PERM,
            Outcome::Fatal(_) => Exit::TEMP,
            Outcome::Deviations(_) => Exit::FAILURE,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Usage(m) => write!(f, "rqmail-install: {m}\n{USAGE}"),
            Outcome::Fatal(m) => write!(f, "rqmail-install: fatal: {m}"),
            Outcome::Deviations(n) => {
                let s = if *n == 1 { "" } else { "s" };
                write!(f, "rqmail-install: {n} deviation{s} found")
            }
        }
    }
}

/// The ids files get: single-user mode unless root; as root, netqmail's ids from the
/// staging root's own account files when it has them, else from the system.
fn ids_for(destdir: &Path) -> Result<Ids, Outcome> {
    if !control::root_mode() {
        return Ok(Ids::single_user());
    }
    match accounts::staged_etc(destdir) {
        Some(etc) => accounts::ids_from_files(&etc).map_err(|e| {
            Outcome::Fatal(format!("{e} (create the qmail users first, e.g. with -U)"))
        }),
        None => Ids::lookup().map_err(|e| {
            Outcome::Fatal(format!("{e} (create the qmail users first, e.g. with -U)"))
        }),
    }
}

fn run(a: Args) -> Result<(), Outcome> {
    let home = a.home.clone().unwrap_or_else(control::qmail_home);
    if !home.is_absolute() {
        return Err(Outcome::Fatal(
            "the home directory must be an absolute path".into(),
        ));
    }
    if a.check {
        if a.create_users || a.bindir.is_some() || a.mandir.is_some() {
            return Err(Outcome::Usage(
                "-c checks and changes nothing: it takes no -U, -b or -m".into(),
            ));
        }
        let ids = ids_for(&a.destdir)?;
        let plan = Plan {
            home,
            destdir: a.destdir,
            bindir: PathBuf::new(),
            mandir: None,
            ids: ids.clone(),
        };
        let root = plan.target("");
        let opts = Options::new(root.clone(), ids);
        let findings = if a.mini {
            check::check_mini(&opts)
        } else {
            check::check(&opts)
        };
        for f in &findings {
            println!("{f}");
        }
        return if findings.is_empty() {
            eprintln!("rqmail-install: {}: no deviations", root.display());
            Ok(())
        } else {
            Err(Outcome::Deviations(findings.len()))
        };
    }
    if a.create_users {
        if !control::root_mode() {
            return Err(Outcome::Usage(
                "-U creates the qmail users and groups and needs root".into(),
            ));
        }
        let prefix = (!a.destdir.as_os_str().is_empty()).then_some(a.destdir.as_path());
        if let Some(p) = prefix
            && accounts::staged_etc(p).is_none()
        {
            return Err(Outcome::Fatal(format!(
                "{}/etc/passwd does not exist: with -d, -U adds the qmail users to the staging \
                 root's own account files",
                p.display()
            )));
        }
        let made =
            accounts::create_missing(&home, prefix).map_err(|e| Outcome::Fatal(e.to_string()))?;
        for name in made {
            eprintln!("rqmail-install: created {name}");
        }
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let bindir = a.bindir.unwrap_or_else(|| exe_dir.clone());
    let mandir = a.mandir.or_else(|| {
        let guess = exe_dir.join("../../man");
        guess.is_dir().then_some(guess)
    });
    let ids = ids_for(&a.destdir)?;
    let plan = Plan {
        home,
        destdir: a.destdir,
        bindir,
        mandir,
        ids,
    };
    let skipped = if a.mini {
        crate::install_mini(&plan)
    } else {
        install(&plan)
    }
    .map_err(|e| Outcome::Fatal(e.to_string()))?;
    if !skipped.is_empty() {
        eprintln!(
            "rqmail-install: warning: not built, not installed: {}",
            skipped.join(" ")
        );
    }
    Ok(())
}

/// Runs the program; returns the exit code: 0 done (or, with -c, no deviation), 1 with -c
/// when deviations were found, 100 for a usage error, 111 when a step failed.
pub fn main() -> Exit {
    match parse()
        .map_err(|e| Outcome::Usage(e.to_string()))
        .and_then(run)
    {
        Ok(()) => Exit::OK,
        Err(e) => {
            eprintln!("{e}");
            e.exit()
        }
    }
}
