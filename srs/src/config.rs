//! The SRS control files (qmail-control(5)):
//!
//! * `srsdomain`: the domain of the SRS addresses qmail-local makes; without it (or
//!   with an empty first line) forwards keep their sender and nothing else is read;
//! * `srssecrets`: one secret a line, the first signing, all accepted (rotation);
//! * `srsexclude`: sender domains never rewritten (`example.com`, or `.example.com`
//!   for every host under it, as in rcpthosts);
//! * `srsmaxage` (days, default 21), `srshashlength` (default 4), `srshashmin` (default
//!   the hash length) and `srsseparator` (`=`, `+` or `-`; default `=`).
//!
//! A file that exists but cannot be read, or holds a value out of range, is an error the
//! caller treats as a temporary failure: a forward is never sent with its sender
//! silently left alone because a secret could not be read.

use crate::scheme::{ParamError, Params, Srs};
use control::{Controls, RcptHosts};
use std::fmt;
use std::io;
use std::path::Path;

/// A control file that cannot be used.
#[derive(Debug)]
pub struct ConfigError {
    /// Its name below control/.
    pub file: &'static str,
    pub problem: Problem,
}

/// What is wrong with it.
#[derive(Debug)]
pub enum Problem {
    /// It exists but cannot be read.
    Io(io::Error),
    /// It is needed but does not exist (srssecrets when srsdomain is set).
    Missing,
    /// Its value cannot be used.
    Value(ParamError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "control/{}: ", self.file)?;
        match &self.problem {
            Problem::Io(e) => write!(f, "unable to read: {}", control::describe_error(e)),
            Problem::Missing => write!(f, "does not exist"),
            Problem::Value(v) => write!(f, "{v}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn io_err(file: &'static str) -> impl Fn(io::Error) -> ConfigError {
    move |e| ConfigError {
        file,
        problem: Problem::Io(e),
    }
}

fn value_err(file: &'static str, v: ParamError) -> ConfigError {
    ConfigError {
        file,
        problem: Problem::Value(v),
    }
}

fn int(ctl: &Controls, file: &'static str, def: u64) -> Result<u64, ConfigError> {
    ctl.int_or(file, def).map_err(io_err(file))
}

/// Reads the secrets and parameters: what checking an SRS address needs. `Ok(None)` when
/// control/srssecrets does not exist.
pub fn load(ctl: &Controls) -> Result<Option<Srs>, ConfigError> {
    let Some(secrets) = ctl.lines("srssecrets").map_err(io_err("srssecrets"))? else {
        return Ok(None);
    };
    let def = Params::default();
    let hash_length = int(ctl, "srshashlength", def.hash_length as u64)?;
    let hash_min = int(ctl, "srshashmin", hash_length)?;
    let max_age = int(ctl, "srsmaxage", u64::from(def.max_age))?;
    let separator = match ctl.line("srsseparator").map_err(io_err("srsseparator"))? {
        None => def.separator,
        Some(l) if l.is_empty() => def.separator,
        Some(l) if l.len() == 1 => l[0],
        Some(_) => return Err(value_err("srsseparator", ParamError::Separator)),
    };
    let params = Params {
        hash_length: usize::try_from(hash_length).unwrap_or(usize::MAX),
        hash_min: usize::try_from(hash_min).unwrap_or(usize::MAX),
        max_age: u32::try_from(max_age).unwrap_or(u32::MAX),
        separator,
    };
    Srs::new(secrets, params).map(Some).map_err(|e| {
        let file = match e {
            ParamError::NoSecret | ParamError::EmptySecret => "srssecrets",
            ParamError::HashLength => "srshashlength",
            ParamError::HashMin => "srshashmin",
            ParamError::MaxAge => "srsmaxage",
            ParamError::Separator => "srsseparator",
        };
        value_err(file, e)
    })
}

/// What qmail-local needs to rewrite the sender of a forward: the rewriter, the SRS
/// domain, the excluded sender domains, and the control directory they came from.
#[derive(Debug)]
pub struct Forwarding {
    srs: Srs,
    domain: Vec<u8>,
    exclude: RcptHosts,
    ctl: Controls,
}

impl Forwarding {
    /// Reads the SRS control files of the qmail home `home`. `Ok(None)` when
    /// control/srsdomain does not exist or its first line is empty: SRS is off, and no
    /// other file has been read. With srsdomain set, srssecrets must exist.
    pub fn load(home: &Path) -> Result<Option<Forwarding>, ConfigError> {
        let domain = control::read_line(&home.join("control").join("srsdomain"))
            .map_err(io_err("srsdomain"))?;
        let Some(domain) = domain.filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        let ctl = Controls::open(home).map_err(io_err("me"))?;
        let srs = load(&ctl)?.ok_or(ConfigError {
            file: "srssecrets",
            problem: Problem::Missing,
        })?;
        let exclude = ctl.lines("srsexclude").map_err(io_err("srsexclude"))?;
        Ok(Some(Forwarding {
            srs,
            domain,
            exclude: RcptHosts::from_entries(Some(exclude.unwrap_or_default())),
            ctl,
        }))
    }

    /// The SRS domain.
    pub fn domain(&self) -> &[u8] {
        &self.domain
    }

    /// The rewriter.
    pub fn srs(&self) -> &Srs {
        &self.srs
    }

    /// The control directory (control/me read), for the caller's other files.
    pub fn controls(&self) -> &Controls {
        &self.ctl
    }

    /// Whether `sender`'s domain is listed in srsexclude.
    pub fn excluded(&self, sender: &[u8]) -> bool {
        control::domain_of(sender).is_some() && self.exclude.allowed(sender).unwrap_or(true)
    }

    /// The SRS form of `sender` at `now`, or `None` to leave it alone: an excluded domain,
    /// or a sender [`Srs::forward`] leaves alone.
    pub fn rewrite(&self, sender: &[u8], now: u64) -> Option<Vec<u8>> {
        if self.excluded(sender) {
            return None;
        }
        self.srs.forward(sender, &self.domain, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn home(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("control")).unwrap();
        for (n, v) in files {
            fs::write(d.path().join("control").join(n), v).unwrap();
        }
        d
    }

    fn err(files: &[(&str, &str)]) -> String {
        Forwarding::load(home(files).path())
            .unwrap_err()
            .to_string()
    }

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn off_without_srsdomain() {
        assert!(Forwarding::load(home(&[]).path()).unwrap().is_none());
        // Nothing else is read: a broken srssecrets does not matter.
        let h = home(&[("srsdomain", "\n")]);
        fs::create_dir(h.path().join("control/srssecrets")).unwrap();
        assert!(Forwarding::load(h.path()).unwrap().is_none());
    }

    #[test]
    fn defaults_and_files() {
        let h = home(&[
            ("srsdomain", "srs.example.net\n"),
            ("srssecrets", "# new first\nsecret with spaces  \n\nold\n"),
            ("srsexclude", "example.com\n.hosted.example\n"),
        ]);
        let f = Forwarding::load(h.path()).unwrap().unwrap();
        assert_eq!(f.domain(), b"srs.example.net");
        assert_eq!(f.srs().secrets(), 2);
        assert_eq!(f.srs().params(), Params::default());
        assert_eq!(
            f.rewrite(b"a@b.c", NOW).as_deref(),
            Some(&b"SRS0=4bk+=G3=b.c=a@srs.example.net"[..])
        );
        for excluded in [
            &b"joe@example.com"[..],
            b"joe@EXAMPLE.com",
            b"joe@a.hosted.example",
        ] {
            assert!(f.excluded(excluded));
            assert_eq!(f.rewrite(excluded, NOW), None);
        }
        for not in [
            &b"joe@sub.example.com"[..],
            b"joe@hosted.example",
            b"",
            b"joe",
        ] {
            assert!(!f.excluded(not), "{not:?}");
        }

        std::fs::write(h.path().join("control/srshashlength"), "8\n").unwrap();
        std::fs::write(h.path().join("control/srsmaxage"), "7\n").unwrap();
        std::fs::write(h.path().join("control/srsseparator"), "+\n").unwrap();
        let f = Forwarding::load(h.path()).unwrap().unwrap();
        assert_eq!(
            f.srs().params(),
            Params {
                hash_length: 8,
                hash_min: 8,
                max_age: 7,
                separator: b'+'
            }
        );
        std::fs::write(h.path().join("control/srshashmin"), "4\n").unwrap();
        let f = Forwarding::load(h.path()).unwrap().unwrap();
        assert_eq!(f.srs().params().hash_min, 4);
    }

    #[test]
    fn errors_name_the_file() {
        let d = ("srsdomain", "srs.example\n");
        let k = ("srssecrets", "k\n");
        assert_eq!(err(&[d]), "control/srssecrets: does not exist");
        assert_eq!(
            err(&[d, ("srssecrets", "# only a comment\n")]),
            "control/srssecrets: there is no secret"
        );
        assert_eq!(
            err(&[d, k, ("srshashlength", "3\n")]),
            "control/srshashlength: the hash length must be between 4 and 27"
        );
        assert_eq!(
            err(&[d, k, ("srshashlength", "99999999999999999999999\n")]),
            "control/srshashlength: the hash length must be between 4 and 27"
        );
        assert_eq!(
            err(&[d, k, ("srshashmin", "5\n")]),
            "control/srshashmin: the shortest hash accepted must be between 4 and the hash length"
        );
        assert_eq!(
            err(&[d, k, ("srsmaxage", "0\n")]),
            "control/srsmaxage: the validity must be between 1 and 1000 days"
        );
        assert_eq!(
            err(&[d, k, ("srsseparator", "==\n")]),
            "control/srsseparator: the separator must be one of = + -"
        );
        assert_eq!(
            err(&[d, k, ("srsseparator", ".\n")]),
            "control/srsseparator: the separator must be one of = + -"
        );
        // A value that is not a number keeps the default, as netqmail reads numbers.
        assert!(
            Forwarding::load(home(&[d, k, ("srsmaxage", "soon\n")]).path())
                .unwrap()
                .is_some()
        );
        let h = home(&[d]);
        fs::create_dir(h.path().join("control/srssecrets")).unwrap();
        let e = Forwarding::load(h.path()).unwrap_err().to_string();
        assert!(e.starts_with("control/srssecrets: unable to read: "), "{e}");
    }

    #[test]
    fn checking_needs_only_the_secrets() {
        let h = home(&[("srssecrets", "k\n")]);
        let ctl = Controls::open(h.path()).unwrap();
        let s = load(&ctl).unwrap().unwrap();
        assert_eq!(s.secrets(), 1);
        assert!(
            load(&Controls::open(home(&[]).path()).unwrap())
                .unwrap()
                .is_none()
        );
    }
}
