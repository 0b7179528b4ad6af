//! MTA-STS (RFC 8461) for qmail-remote: whether a recipient domain asks that mail to it go
//! only over TLS with a WebPKI-valid certificate to the MX hosts it names.
//!
//! Off unless `control/mtasts` says `1`. Then, for a delivery by MX (not routed by
//! smtproutes or qmtproutes, not to an address literal):
//!
//! 1. the TXT record of `_mta-sts.DOMAIN` gives the policy's `id` ([`policy::parse_txt`]);
//! 2. the cache (`QMAIL_HOME/mtasts/DOMAIN`, [`cache`]) is used when it holds an unexpired
//!    policy fetched under the same `id`, or under any `id` when there is no valid TXT
//!    record (RFC 8461 section 5.1: a removed record does not end a cached policy);
//! 3. otherwise, when the TXT record is there, the policy is fetched over HTTPS
//!    ([`fetch`]), parsed ([`policy::parse_policy`]) and cached for its `max_age`; when
//!    that fails, an unexpired cached policy still counts, and without one the domain is
//!    treated as having none (section 5.1), with the reason noted in the report.
//!
//! A policy in `enforce` mode then allows only the MX hosts that match its `mx`
//! patterns ([`Sts::verdict`]); to those, TLS is required and the certificate must verify
//! against the system's roots for the MX host's name ([`crate::tls::Policy::Sts`]). When
//! no MX host is allowed the delivery is deferred. In `testing` mode nothing changes but
//! the report, which says what enforcement would have refused. Reasons use the result
//! types of TLS reporting (RFC 8460 section 4.3).
//!
//! The fetch runs inside qmail-remote (rustls and the resolver are there already, and
//! the cache means one fetch per domain and `max_age`), so qmail-remote's confinement
//! allows writing the cache directory.

pub mod cache;
pub mod fetch;
pub mod policy;

use crate::dns::{DnsError, Resolver, to_name};
use crate::mx::{self, Target};
use crate::report::{Report, safe_text};
use crate::tls;
use hickory_proto::rr::{RData, RecordType};
use policy::Mode;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The control file that turns MTA-STS on.
pub const CONTROL: &str = "mtasts";

/// The longest a policy fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The policy in force for one delivery's domain.
#[derive(Debug, Clone)]
pub struct Sts {
    pub domain: String,
    /// The policy, unless the domain has none in force (or its mode is `none`).
    pub policy: Option<policy::Policy>,
    /// A line for the report: why a policy could not be had.
    pub note: Option<String>,
}

/// What the policy says about one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: no policy, or an address without a name and no policy in force.
    Free,
    /// Enforced: TLS with a certificate valid for the host is required.
    Require,
    /// Enforced, and the host is not in the policy: not to be used.
    Refuse(String),
    /// Testing, and the host is not in the policy: used, and noted.
    Note(String),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// True when control/mtasts turns MTA-STS on (its first line is `1`).
pub fn enabled(c: &control::Controls) -> std::io::Result<bool> {
    Ok(c.int_or(CONTROL, 0)? != 0)
}

/// The TXT records of `name`: each one's strings joined.
fn txt(r: &Resolver, name: &str) -> Result<Vec<Vec<u8>>, DnsError> {
    let n = to_name(name)?;
    let data = r.query(&n, RecordType::TXT)?;
    Ok(data
        .into_iter()
        .filter_map(|d| match d {
            RData::TXT(t) => Some(t.txt_data.concat()),
            _ => None,
        })
        .collect())
}

/// The WebPKI configuration for the policy host: the system's roots, no client
/// certificate.
fn webpki() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = tls::system_roots().map_err(|e| format!("{}: {}", e.file, e.why))?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The policy in force for `domain` (the host argument of qmail-remote), looked up with
/// `resolver` and the cache of `home`; `None` when the name cannot have one.
pub fn lookup(home: &Path, domain: &[u8], resolver: &mut Resolver) -> Option<Sts> {
    let d = std::str::from_utf8(domain).ok()?;
    if mx::literal(domain).is_some() {
        return None;
    }
    let d = tls::file_name_host(d.strip_suffix('.').unwrap_or(d))?;
    let cache = cache::Cache::new(home);
    let t = now();
    let cached = cache.get(&d).filter(|e| e.expires > t);
    let id = match txt(resolver, &format!("_mta-sts.{d}")) {
        Ok(records) => match policy::parse_txt(&records) {
            Ok(id) => Some(id),
            Err(why) => {
                tracing::debug!("MTA-STS: _mta-sts.{d}: {why}");
                None
            }
        },
        Err(e) => {
            tracing::debug!(
                "MTA-STS: _mta-sts.{d}: {}",
                if e == DnsError::Soft {
                    "TXT lookup failed temporarily"
                } else {
                    "no TXT record"
                }
            );
            None
        }
    };
    let sts = |policy: Option<policy::Policy>, source: &'static str, note| {
        tracing::debug!(
            "MTA-STS: {d}: {} (from {source})",
            match &policy {
                Some(p) => format!("mode {}, mx {}", p.mode.as_str(), p.mx.join(" ")),
                None => "no policy".into(),
            }
        );
        Sts {
            domain: d.clone(),
            policy: policy.filter(|p| p.mode != Mode::None),
            note,
        }
    };
    let Some(id) = id else {
        return Some(sts(
            cached.map(|e| e.policy),
            "the cache (no valid TXT record)",
            None,
        ));
    };
    if let Some(e) = &cached
        && e.id == id
    {
        return Some(sts(Some(e.policy.clone()), "the cache", None));
    }
    let got = webpki()
        .map_err(fetch::Failure::fetch)
        .and_then(|cfg| fetch::fetch(resolver, &d, cfg, FETCH_TIMEOUT))
        .and_then(|body| {
            policy::parse_policy(&body).map_err(|why| fetch::Failure {
                result: "sts-policy-invalid",
                why,
            })
        });
    match got {
        Ok(p) => {
            let e = cache::Entry {
                id,
                fetched: t,
                expires: t.saturating_add(p.max_age),
                policy: p.clone(),
            };
            if let Err(err) = cache.put(&d, &e) {
                tracing::debug!("MTA-STS: cannot write the cache for {d}: {err}");
            }
            Some(sts(Some(p), "mta-sts.DOMAIN", None))
        }
        Err(f) => {
            tracing::debug!("MTA-STS: policy of {d}: {}: {}", f.result, f.why);
            let (what, source) = match &cached {
                Some(_) => ("using the cached policy", "the cache (the fetch failed)"),
                None => ("delivering as if it had none", "nowhere"),
            };
            let note = format!(
                "MTA-STS: no fresh policy for {d}: {} ({}); {what}.\n",
                f.result, f.why
            );
            Some(sts(cached.map(|e| e.policy), source, Some(note)))
        }
    }
}

impl Sts {
    /// What the policy says about `target`.
    pub fn verdict(&self, target: &Target) -> Verdict {
        let Some(p) = &self.policy else {
            return Verdict::Free;
        };
        let host = target.fqdn.as_deref().unwrap_or("");
        if p.allows(host) {
            return match p.mode {
                Mode::Enforce => Verdict::Require,
                _ => Verdict::Free,
            };
        }
        let why = format!(
            "MX host {host} is not in the MTA-STS policy of {} (validation-failure)",
            self.domain
        );
        match p.mode {
            Mode::Enforce => Verdict::Refuse(why),
            _ => Verdict::Note(why),
        }
    }

    /// The TLS policy for an MX host the policy requires TLS of: the WebPKI check, unless
    /// the administrator named a certificate authority for the host (control/tlshosts).
    pub fn tls_policy(&self, configured: tls::Policy) -> tls::Policy {
        match configured {
            p @ tls::Policy::CaFile(_) => p,
            _ => tls::Policy::Sts(self.domain.clone()),
        }
    }

    /// The delivery's report with what MTA-STS has to say added.
    pub fn annotate(&self, mut r: Report, notes: &[String]) -> Report {
        for n in self.note.iter().chain(notes) {
            r.text.extend(safe_text(n.trim_end().as_bytes()));
            r.text.push(b'\n');
        }
        r
    }

    /// The report when the policy allows none of the MX hosts (a temporary failure).
    pub fn refused(&self, why: &str) -> Report {
        self.annotate(
            Report::temp(&format!(
                "Sorry, the MTA-STS policy of {} allows none of its MX hosts: {why}. (#4.7.5)\n",
                self.domain
            )),
            &[],
        )
    }
}

/// The TLS-RPT result type (RFC 8460 section 4.3.2) for a certificate rustls refused, from
/// rustls's words.
pub fn certificate_result(why: &str) -> &'static str {
    let w = why.to_ascii_lowercase();
    if w.contains("notvalidforname") || w.contains("not valid for name") {
        "certificate-host-mismatch"
    } else if w.contains("expired") || w.contains("notvalidyet") || w.contains("not valid yet") {
        "certificate-expired"
    } else {
        "certificate-not-trusted"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError as C;

    #[test]
    fn certificate_results_from_rustls_words() {
        let r = |e: C| certificate_result(&rustls::Error::InvalidCertificate(e).to_string());
        assert_eq!(r(C::NotValidForName), "certificate-host-mismatch");
        assert_eq!(
            r(C::NotValidForNameContext {
                expected: rustls::pki_types::ServerName::try_from("a.example").unwrap(),
                presented: vec!["b.example".into()],
            }),
            "certificate-host-mismatch"
        );
        assert_eq!(r(C::Expired), "certificate-expired");
        assert_eq!(r(C::NotValidYet), "certificate-expired");
        assert_eq!(r(C::UnknownIssuer), "certificate-not-trusted");
        assert_eq!(r(C::BadSignature), "certificate-not-trusted");
    }

    fn target(h: &str) -> Target {
        Target {
            ip: "192.0.2.1".parse().unwrap(),
            pref: 10,
            fqdn: Some(h.into()),
        }
    }

    #[test]
    fn verdicts() {
        let p = |mode| Sts {
            domain: "example.com".into(),
            policy: Some(policy::Policy {
                mode,
                max_age: 1,
                mx: vec!["*.example.com".into()],
            }),
            note: None,
        };
        assert_eq!(
            p(Mode::Enforce).verdict(&target("mx.example.com")),
            Verdict::Require
        );
        assert!(
            matches!(p(Mode::Enforce).verdict(&target("mx.evil.test")), Verdict::Refuse(w) if w.contains("validation-failure"))
        );
        assert_eq!(
            p(Mode::Testing).verdict(&target("mx.example.com")),
            Verdict::Free
        );
        assert!(matches!(
            p(Mode::Testing).verdict(&target("mx.evil.test")),
            Verdict::Note(_)
        ));
        let none = Sts {
            policy: None,
            ..p(Mode::Enforce)
        };
        assert_eq!(none.verdict(&target("mx.evil.test")), Verdict::Free);
        assert_eq!(
            p(Mode::Enforce).tls_policy(tls::Policy::Off),
            tls::Policy::Sts("example.com".into())
        );
        let ca = tls::Policy::CaFile("control/tlshosts/x.pem".into());
        assert_eq!(p(Mode::Enforce).tls_policy(ca.clone()), ca);
    }
}
