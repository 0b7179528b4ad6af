//! qmail-send's control files (qmail-send(8), qmail-control(5)) and their defaults.

use control::Controls;
use control::constmap::CaseSet;
use std::collections::HashMap;
use std::path::Path;

/// `control/virtualdomains`: `key:prepend` lines, keys compared without regard to case.
/// A line without a colon is ignored; when a key appears twice the later line wins
/// (netqmail's constmap finds the most recently added entry first).
#[derive(Debug, Clone, Default)]
pub struct VirtualDomains {
    map: HashMap<Vec<u8>, Vec<u8>>,
}

impl VirtualDomains {
    /// Builds the map from the file's lines.
    pub fn new(lines: &[Vec<u8>]) -> VirtualDomains {
        let mut map = HashMap::new();
        for l in lines {
            if let Some(colon) = l.iter().position(|&c| c == b':') {
                map.insert(l[..colon].to_ascii_lowercase(), l[colon + 1..].to_vec());
            }
        }
        VirtualDomains { map }
    }

    /// The prepend string for `key` (maybe empty: an exception).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }
}

/// Everything qmail-send reads from control/.
#[derive(Debug, Clone)]
pub struct Config {
    /// queuelifetime, seconds.
    pub lifetime: u64,
    /// concurrencylocal, concurrencyremote (before the spawns' limits).
    pub concurrency: [u64; 2],
    pub envnoathost: Vec<u8>,
    pub bouncefrom: Vec<u8>,
    pub bouncehost: Vec<u8>,
    /// doublebounceto@doublebouncehost.
    pub doublebounceto: Vec<u8>,
    pub locals: CaseSet,
    pub percenthack: CaseSet,
    pub vdoms: VirtualDomains,
}

/// Which control file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl Config {
    /// Reads the control files of `home`. A missing file takes its default; `locals`
    /// without `me` is an error (qmail-send refuses to run), as is any unreadable file.
    pub fn load(home: &Path) -> Result<Config, ConfigError> {
        let c = Controls::open(home).map_err(|_| ConfigError("me"))?;
        let line = |name: &'static str, flagme: bool, def: &str| -> Result<Vec<u8>, ConfigError> {
            c.line_or(name, flagme, Some(def.as_bytes()))
                .map_err(|_| ConfigError(name))
                .map(Option::unwrap_or_default)
        };
        let int = |name: &'static str, def: u64| c.int_or(name, def).map_err(|_| ConfigError(name));
        let lifetime = int("queuelifetime", 604_800)?;
        let concurrency = [int("concurrencylocal", 10)?, int("concurrencyremote", 20)?];
        let envnoathost = line("envnoathost", true, "envnoathost")?;
        let bouncefrom = line("bouncefrom", false, "MAILER-DAEMON")?;
        let bouncehost = line("bouncehost", true, "bouncehost")?;
        let doublebouncehost = line("doublebouncehost", true, "doublebouncehost")?;
        let mut doublebounceto = line("doublebounceto", false, "postmaster")?;
        doublebounceto.push(b'@');
        doublebounceto.extend_from_slice(&doublebouncehost);
        let locals = match c.lines_or_me("locals") {
            Ok(Some(l)) => CaseSet::new(l),
            _ => return Err(ConfigError("locals")),
        };
        let percenthack = CaseSet::new(
            c.lines("percenthack")
                .map_err(|_| ConfigError("percenthack"))?
                .unwrap_or_default(),
        );
        let vdoms = VirtualDomains::new(
            &c.lines("virtualdomains")
                .map_err(|_| ConfigError("virtualdomains"))?
                .unwrap_or_default(),
        );
        Ok(Config {
            lifetime,
            concurrency,
            envnoathost,
            bouncefrom,
            bouncehost,
            doublebounceto,
            locals,
            percenthack,
            vdoms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_me() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control")).unwrap();
        assert_eq!(Config::load(d.path()).unwrap_err(), ConfigError("locals"));
        std::fs::write(d.path().join("control/me"), "mx.example\n").unwrap();
        let c = Config::load(d.path()).unwrap();
        assert_eq!(c.lifetime, 604_800);
        assert_eq!(c.concurrency, [10, 20]);
        assert_eq!(c.envnoathost, b"mx.example");
        assert_eq!(c.bouncefrom, b"MAILER-DAEMON");
        assert_eq!(c.bouncehost, b"mx.example");
        assert_eq!(c.doublebounceto, b"postmaster@mx.example");
        assert!(c.locals.contains(b"MX.example"));
        std::fs::write(d.path().join("control/doublebounceto"), "dbl\n").unwrap();
        std::fs::write(d.path().join("control/concurrencylocal"), "2000\n").unwrap();
        std::fs::write(
            d.path().join("control/virtualdomains"),
            "a.example:alice\nnocolon\nA.example:bob\n",
        )
        .unwrap();
        let c = Config::load(d.path()).unwrap();
        assert_eq!(c.doublebounceto, b"dbl@mx.example");
        assert_eq!(c.concurrency[0], 2000);
        assert_eq!(c.vdoms.get(b"a.EXAMPLE"), Some(&b"bob"[..]));
        assert_eq!(c.vdoms.get(b"nocolon"), None);
    }
}
