//! qmail-send's control files (qmail-send(8), qmail-control(5)) and their defaults.

use control::Controls;

use recipient::Route;
use std::path::Path;
use std::sync::Arc;

/// Everything qmail-send reads from control/.
#[derive(Debug, Clone)]
pub struct Config {
    /// queuelifetime, seconds.
    pub lifetime: u64,
    /// concurrencylocal, concurrencyremote (before the spawns' limits).
    pub concurrency: [u64; 2],
    pub bouncefrom: Vec<u8>,
    pub bouncehost: Vec<u8>,
    /// doublebounceto@doublebouncehost.
    pub doublebounceto: Vec<u8>,
    /// envnoathost, locals, percenthack, virtualdomains.
    pub route: Arc<Route>,
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
        let lifetime = int("queuelifetime", control::DEFAULT_QUEUELIFETIME)?;
        let concurrency = [
            int("concurrencylocal", control::DEFAULT_CONCURRENCYLOCAL)?,
            int("concurrencyremote", control::DEFAULT_CONCURRENCYREMOTE)?,
        ];
        let route = Arc::new(Route::load(&c).map_err(|e| ConfigError(e.file))?);
        if route.locals.is_none() {
            return Err(ConfigError("locals"));
        }
        let bouncefrom = line("bouncefrom", false, control::DEFAULT_BOUNCEFROM)?;
        let bouncehost = line("bouncehost", true, control::DEFAULT_BOUNCEHOST)?;
        let doublebouncehost = line("doublebouncehost", true, control::DEFAULT_DOUBLEBOUNCEHOST)?;
        let mut doublebounceto = line("doublebounceto", false, control::DEFAULT_DOUBLEBOUNCETO)?;
        doublebounceto.push(b'@');
        doublebounceto.extend_from_slice(&doublebouncehost);
        Ok(Config {
            lifetime,
            concurrency,
            bouncefrom,
            bouncehost,
            doublebounceto,
            route,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, ConfigError};

    #[test]
    fn defaults_and_me() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control")).unwrap();
        assert_eq!(Config::load(d.path()).unwrap_err(), ConfigError("locals"));
        std::fs::write(d.path().join("control/me"), "mx.example\n").unwrap();
        let c = Config::load(d.path()).unwrap();
        assert_eq!(c.lifetime, 604_800);
        assert_eq!(c.concurrency, [10, 20]);
        assert_eq!(c.route.envnoathost, b"mx.example");
        assert_eq!(c.bouncefrom, b"MAILER-DAEMON");
        assert_eq!(c.bouncehost, b"mx.example");
        assert_eq!(c.doublebounceto, b"postmaster@mx.example");
        assert!(c.route.locals.as_ref().unwrap().contains(b"MX.example"));
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
        assert_eq!(c.route.vdoms.get(b"a.EXAMPLE"), Some(&b"bob"[..]));
        assert_eq!(c.route.vdoms.get(b"nocolon"), None);
    }
}
