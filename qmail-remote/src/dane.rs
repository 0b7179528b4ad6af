//! DANE for SMTP (RFC 7672): TLSA records, trusted only when DNSSEC-validated, decide
//! whether TLS is mandatory with an MX host and how its certificate is checked.
//!
//! Off unless `control/dane` lists validating resolvers (one address a line, with an
//! optional port: `127.0.0.1`, `::1`, `127.0.0.1:5353`, `[::1]:53`). Then every DNS
//! query of qmail-remote goes to them with the AD and DO bits set, and their AD bit is
//! believed: the trust model of Postfix's `smtp_dns_support_level = dnssec`. qmail-remote
//! does not validate signatures itself; the resolvers must validate, and the path to them
//! must be trusted (a resolver on this host, reached over loopback).
//!
//! For each address to try whose host name is known (an MX exchange, the domain itself
//! when it has no MX records, or a relay of control/smtproutes):
//! * the MX RRset (not for a relay) and the host's address RRset must be validated
//!   (RFC 7672 2.2.1, 2.2.2); otherwise DANE does not apply;
//! * the TLSA RRset of `_PORT._tcp.HOST` is looked up (for a HOST that is an alias, at
//!   the end of its CNAME chain first, RFC 7672 2.2.2): none, or not validated, and DANE
//!   does not apply (today's TLS policy); a lookup that fails (SERVFAIL, which is what a
//!   validating resolver answers for a bogus signature, or no answer) means this host is
//!   not used: result type `dnssec-invalid`, the next MX is tried, and in the end the
//!   delivery is deferred;
//! * validated TLSA records: TLS is mandatory. DANE-EE(3) and DANE-TA(2) records with
//!   selector 0 (full certificate) or 1 (SubjectPublicKeyInfo) and matching type 0
//!   (exact), 1 (SHA-256) or 2 (SHA-512) are usable; PKIX-TA(0), PKIX-EE(1) and anything
//!   else are unusable (RFC 7672 3.1.3). DANE-EE: the server's certificate matches, its
//!   names and dates are not checked (RFC 7672 3.1.1). DANE-TA: a certificate of the
//!   chain the server sent matches, and the server's certificate must chain to it, be
//!   valid now and name the MX host (RFC 7672 3.1.2, 3.2.2). When every record is
//!   unusable, TLS is still mandatory but the certificate is not checked (RFC 7672 2.2).
//!
//! A failure with a host whose TLSA records make TLS mandatory (no STARTTLS, a
//! certificate that matches nothing) means no mail goes to that host: qmail-remote tries
//! the next one, and defers the message if none is left. The reports name the RFC 8460
//! (TLS-RPT) result type: `starttls-not-supported`, `certificate-not-trusted`,
//! `certificate-host-mismatch`, `certificate-expired`, `validation-failure`,
//! `dnssec-invalid`.

use crate::dns::{DnsError, Lookup};
use crate::mx::Target;
use hickory_proto::rr::RecordType;
pub use qmail_tls::spki;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// The certificate usages of RFC 6698 and RFC 7218's names for them.
pub const PKIX_TA: u8 = 0;
pub const PKIX_EE: u8 = 1;
pub const DANE_TA: u8 = 2;
pub const DANE_EE: u8 = 3;

/// The most TLSA records of one RRset that are looked at.
pub const MAX_RECORDS: usize = 64;

/// One TLSA record (RFC 6698 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub mtype: u8,
    pub data: Vec<u8>,
}

/// A TLSA record's data that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTlsa;

impl Tlsa {
    /// Reads a TLSA record's data in wire form: usage, selector, matching type (one byte
    /// each) and the certificate association data (at least one byte).
    pub fn parse(rdata: &[u8]) -> Result<Tlsa, BadTlsa> {
        match rdata {
            [usage, selector, mtype, data @ ..] if !data.is_empty() => Ok(Tlsa {
                usage: *usage,
                selector: *selector,
                mtype: *mtype,
                data: data.to_vec(),
            }),
            _ => Err(BadTlsa),
        }
    }

    /// Whether an SMTP client may use the record (RFC 7672 3.1): DANE-TA or DANE-EE,
    /// a known selector, a known matching type with a digest of the right length.
    pub fn usable(&self) -> bool {
        matches!(self.usage, DANE_TA | DANE_EE)
            && matches!(self.selector, 0 | 1)
            && match self.mtype {
                0 => true,
                1 => self.data.len() == 32,
                2 => self.data.len() == 64,
                _ => false,
            }
    }

    /// Whether the certificate `cert` (DER) matches the record's selector, matching type
    /// and data. A certificate whose public key cannot be found matches no selector-1
    /// record.
    pub fn matches(&self, cert: &[u8]) -> bool {
        let selected = match self.selector {
            0 => cert,
            1 => match spki(cert) {
                Some(k) => k,
                None => return false,
            },
            _ => return false,
        };
        match self.mtype {
            0 => selected == self.data.as_slice(),
            1 => ring::digest::digest(&ring::digest::SHA256, selected).as_ref() == self.data,
            2 => ring::digest::digest(&ring::digest::SHA512, selected).as_ref() == self.data,
            _ => false,
        }
    }
}

impl std::fmt::Display for Tlsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.mtype)?;
        // Long data (a full certificate) is shortened.
        for b in self.data.iter().take(32) {
            write!(f, "{b:02x}")?;
        }
        if self.data.len() > 32 {
            write!(f, "...")?;
        }
        Ok(())
    }
}

/// The validating resolvers of control/dane's lines; `Err` with the first line that is
/// not an address.
pub fn resolvers(lines: &[Vec<u8>]) -> Result<Vec<SocketAddr>, String> {
    let mut v = Vec::new();
    for l in lines {
        let t = String::from_utf8_lossy(l);
        let t = t.trim();
        let a = t
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| t.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
            .ok_or_else(|| t.to_string())?;
        v.push(a);
    }
    Ok(v)
}

/// What the DNS says about one host, when DANE applies.
#[derive(Debug, Clone)]
pub struct Dane {
    /// The TLSA owner name, `_PORT._tcp.HOST`.
    pub name: String,
    /// The usable records; empty when every record was unusable (TLS without
    /// authentication, but mandatory).
    pub records: Vec<Tlsa>,
    /// The names a DANE-TA certificate may have besides the host's (the end of the
    /// exchange's CNAME chain).
    pub names: Vec<String>,
    /// Why the last certificate check failed: result type and words.
    verdict: Arc<Mutex<Option<(&'static str, String)>>>,
}

impl PartialEq for Dane {
    fn eq(&self, o: &Dane) -> bool {
        self.name == o.name && self.records == o.records
    }
}

impl Eq for Dane {}

impl Dane {
    pub fn new(name: String, records: Vec<Tlsa>) -> Dane {
        Dane {
            name,
            records,
            names: Vec::new(),
            verdict: Arc::default(),
        }
    }

    /// Why the certificate was refused, with its RFC 8460 result type, once the verifier
    /// has refused it.
    pub fn failure(&self) -> Option<String> {
        let v = self.verdict.lock().ok()?;
        v.as_ref()
            .map(|(t, why)| format!("result-type={t} ({why})"))
    }

    /// The policy in words, for the verbose diagnostics.
    pub fn explain(&self) -> String {
        if self.records.is_empty() {
            format!(
                "TLS required by the DANE TLSA records of {} (none usable: certificate not checked)",
                self.name
            )
        } else {
            format!(
                "TLS required, certificate checked with the DANE TLSA records of {}: {}",
                self.name,
                self.records
                    .iter()
                    .map(Tlsa::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }

    /// What requires TLS, for the reports of a server without STARTTLS.
    pub fn requirement(&self) -> String {
        format!(
            "DANE TLSA records for {} exist (result-type=starttls-not-supported)",
            self.name
        )
    }

    /// How the certificate was checked, for the report of a delivery.
    pub fn how(&self) -> String {
        if self.records.is_empty() {
            format!(
                "certificate not verified (TLSA records of {} unusable)",
                self.name
            )
        } else {
            format!(
                "certificate verified with the DANE TLSA records of {}",
                self.name
            )
        }
    }

    fn refuse(&self, result: &'static str, why: String) -> rustls::Error {
        tracing::debug!("DANE: {}: result-type={result}: {why}", self.name);
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some((result, why.clone()));
        }
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    }
}

/// The outcome of [`decide`] for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// DANE does not apply (why, for the verbose diagnostics): today's TLS policy.
    None(String),
    /// Validated TLSA records: TLS mandatory, checked with them.
    Use(Dane),
    /// The host may not be used (the report's line for it).
    Skip(String),
}

/// Whether DANE applies to `target`, reached on `port`; `mx_domain` is the domain whose
/// MX records were looked up (`None` for a relay of control/smtproutes).
pub fn decide(
    dns: &mut dyn Lookup,
    target: &Target,
    port: u16,
    mx_domain: Option<&str>,
) -> Decision {
    let Some(host) = target.fqdn.as_deref() else {
        return Decision::None("an address literal has no TLSA records".into());
    };
    if let Some(d) = mx_domain
        && !dns.secure(d, RecordType::MX)
    {
        return Decision::None(format!("the MX records of {d} are not DNSSEC-validated"));
    }
    let rtype = match target.ip {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::AAAA,
    };
    if !dns.secure(host, rtype) {
        return Decision::None(format!(
            "the {rtype} records of {host} are not DNSSEC-validated"
        ));
    }
    // An exchange that is an alias: the TLSA records of the name at the end of its
    // (validated) CNAME chain first, then those of the name itself (RFC 7672 2.2.2).
    let mut bases = Vec::new();
    bases.extend(dns.expanded(host, rtype));
    bases.push(host.to_string());
    let mut decision = Decision::None(String::new());
    for base in &bases {
        decision = tlsa_at(dns, target, port, base, &bases);
        if !matches!(&decision, Decision::None(why) if why.starts_with("no TLSA")) {
            break;
        }
    }
    decision
}

/// The decision for the TLSA records of `_PORT._tcp.BASE`; `names` are the names the
/// certificate may have for DANE-TA.
fn tlsa_at(
    dns: &mut dyn Lookup,
    target: &Target,
    port: u16,
    base: &str,
    names: &[String],
) -> Decision {
    let name = format!("_{port}._tcp.{base}");
    match dns.tlsa(&name) {
        Err(DnsError::Hard) => Decision::None(format!("no TLSA records at {name}")),
        Err(DnsError::Soft) => Decision::Skip(format!(
            "DANE TLSA lookup for {name} failed (result-type=dnssec-invalid): SERVFAIL, \
             a bogus DNSSEC answer or no answer; not connecting to {}.\n",
            target.ip
        )),
        Ok((_, false)) => Decision::None(format!("the TLSA records of {name} are not validated")),
        Ok((raw, true)) => {
            let records: Vec<Tlsa> = raw
                .iter()
                .take(MAX_RECORDS)
                .filter_map(|r| Tlsa::parse(r).ok())
                .filter(Tlsa::usable)
                .collect();
            let mut d = Dane::new(name, records);
            d.names = names.to_vec();
            Decision::Use(d)
        }
    }
}

/// The result type for a failed PKIX check of a DANE-TA chain.
fn classify(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => "certificate-expired",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "certificate-host-mismatch"
            }
            CertificateError::UnknownIssuer => "certificate-not-trusted",
            _ => "validation-failure",
        },
        _ => "validation-failure",
    }
}

/// The certificate check of DANE (see the module documentation).
#[derive(Debug)]
pub struct Verifier {
    dane: Dane,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    pub fn new(dane: Dane, provider: Arc<CryptoProvider>) -> Verifier {
        Verifier { dane, provider }
    }

    /// DANE-TA: `anchor` matched a record; the chain must lead from `end_entity` to it.
    fn chain(
        &self,
        anchor: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let first = v.verify_server_cert(end_entity, intermediates, server_name, &[], now);
        let Err(e) = first else {
            return Ok(());
        };
        if classify(&e) != "certificate-host-mismatch" {
            return Err(e);
        }
        // The other reference identifiers: the end of the exchange's CNAME chain.
        for n in &self.dane.names {
            let Ok(other) = ServerName::try_from(n.as_str()) else {
                continue;
            };
            if v.verify_server_cert(end_entity, intermediates, &other, &[], now)
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(e)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let records = &self.dane.records;
        if records.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        if let Some(r) = records
            .iter()
            .find(|r| r.usage == DANE_EE && r.matches(end_entity))
        {
            tracing::debug!("DANE: the server's certificate matches {r}");
            return Ok(ServerCertVerified::assertion());
        }
        let mut failed = None;
        for r in records.iter().filter(|r| r.usage == DANE_TA) {
            for c in intermediates.iter().filter(|c| r.matches(c)) {
                match self.chain(c, end_entity, intermediates, server_name, now) {
                    Ok(()) => {
                        tracing::debug!(
                            "DANE: the server's chain leads to a certificate that matches {r}"
                        );
                        return Ok(ServerCertVerified::assertion());
                    }
                    Err(e) => failed = Some(e),
                }
            }
        }
        Err(match failed {
            Some(e) => self.dane.refuse(
                classify(&e),
                format!(
                    "a certificate of the chain matches a DANE-TA record, but: {}",
                    e.to_string().replace(['\r', '\n'], " ")
                ),
            ),
            None => self.dane.refuse(
                "certificate-not-trusted",
                format!(
                    "no TLSA record of {} matches the server's certificate chain",
                    self.dane.name
                ),
            ),
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    use proptest::prelude::*;

    /// A small certificate made by hand: SEQUENCE { tbs SEQUENCE { [0] version, serial,
    /// signature, issuer, validity, subject, spki }, sigalg, sig }.
    fn cert(with_version: bool, spki_body: &[u8]) -> (Vec<u8>, Vec<u8>) {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            if body.len() < 128 {
                v.push(body.len() as u8);
            } else {
                v.push(0x82);
                v.extend_from_slice(&(body.len() as u16).to_be_bytes());
            }
            v.extend_from_slice(body);
            v
        }
        let spki = tlv(SEQUENCE, spki_body);
        let mut tbs = Vec::new();
        if with_version {
            tbs.extend(tlv(VERSION, &tlv(0x02, &[2])));
        }
        tbs.extend(tlv(0x02, &[1, 2, 3]));
        for _ in 0..4 {
            tbs.extend(tlv(SEQUENCE, b"\x05\x00"));
        }
        tbs.extend(&spki);
        let mut body = tlv(SEQUENCE, &tbs);
        body.extend(tlv(SEQUENCE, b"\x05\x00"));
        body.extend(tlv(0x03, &[0; 200]));
        (tlv(SEQUENCE, &body), spki)
    }

    fn sha256(d: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, d)
            .as_ref()
            .to_vec()
    }

    fn sha512(d: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA512, d)
            .as_ref()
            .to_vec()
    }

    fn rec(usage: u8, selector: u8, mtype: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            mtype,
            data,
        }
    }

    #[test]
    fn parsing() {
        assert_eq!(Tlsa::parse(&[3, 1, 1, 0xab]), Ok(rec(3, 1, 1, vec![0xab])));
        assert_eq!(Tlsa::parse(&[]), Err(BadTlsa));
        assert_eq!(Tlsa::parse(&[3, 1, 1]), Err(BadTlsa));
    }

    #[test]
    fn usability() {
        assert!(rec(3, 1, 1, vec![0; 32]).usable());
        assert!(rec(2, 0, 2, vec![0; 64]).usable());
        assert!(rec(3, 0, 0, vec![1]).usable());
        // PKIX-TA and PKIX-EE: unusable for SMTP (RFC 7672 3.1.3).
        assert!(!rec(0, 1, 1, vec![0; 32]).usable());
        assert!(!rec(1, 1, 1, vec![0; 32]).usable());
        assert!(!rec(4, 1, 1, vec![0; 32]).usable());
        assert!(!rec(3, 2, 1, vec![0; 32]).usable());
        assert!(!rec(3, 1, 3, vec![0; 32]).usable());
        // A digest of the wrong length.
        assert!(!rec(3, 1, 1, vec![0; 31]).usable());
        assert!(!rec(3, 1, 2, vec![0; 32]).usable());
    }

    #[test]
    fn selectors_and_matching_types() {
        for with_version in [true, false] {
            let (c, spki_der) = cert(with_version, &[7; 150]);
            assert_eq!(spki(&c), Some(spki_der.as_slice()));
            for (sel, selected) in [(0, c.clone()), (1, spki_der.clone())] {
                assert!(rec(3, sel, 0, selected.clone()).matches(&c));
                assert!(rec(3, sel, 1, sha256(&selected)).matches(&c));
                assert!(rec(3, sel, 2, sha512(&selected)).matches(&c));
                let mut wrong = sha256(&selected);
                wrong[0] ^= 1;
                assert!(!rec(3, sel, 1, wrong).matches(&c));
                assert!(!rec(3, sel, 9, sha256(&selected)).matches(&c));
            }
            assert!(!rec(3, 2, 0, c.clone()).matches(&c));
        }
        // Not a certificate: no public key, so no selector-1 match.
        assert_eq!(spki(b"\x30\x03\x02\x01\x01"), None);
        assert!(!rec(3, 1, 0, vec![]).matches(b"junk"));
    }

    #[test]
    fn long_lengths() {
        // Elements longer than 127 bytes (two length bytes), as in real certificates.
        let (c, k) = cert(true, &[1; 300]);
        assert_eq!(spki(&c), Some(k.as_slice()));
    }

    #[test]
    fn resolver_lines() {
        assert_eq!(
            resolvers(&[
                b"127.0.0.1".to_vec(),
                b"[::1]:5353".to_vec(),
                b" ::1 ".to_vec()
            ]),
            Ok(vec![
                "127.0.0.1:53".parse().unwrap(),
                "[::1]:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ])
        );
        assert_eq!(
            resolvers(&[b"ns.example".to_vec()]),
            Err("ns.example".into())
        );
        assert_eq!(resolvers(&[]), Ok(vec![]));
    }

    #[test]
    fn texts() {
        let d = Dane::new(
            "_25._tcp.mx.example".into(),
            vec![rec(3, 1, 1, vec![0xab; 32])],
        );
        assert_eq!(d.failure(), None);
        let _ = d.refuse("certificate-not-trusted", "no match".into());
        assert_eq!(
            d.failure().as_deref(),
            Some("result-type=certificate-not-trusted (no match)")
        );
        assert!(d.explain().ends_with(&format!("3 1 1 {}", "ab".repeat(32))));
        assert_eq!(
            rec(3, 0, 0, vec![0; 40]).to_string(),
            format!("3 0 0 {}...", "00".repeat(32))
        );
    }

    proptest! {
        #[test]
        fn parse_and_match_never_panic(rdata in proptest::collection::vec(any::<u8>(), 0..200),
                                       c in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(t) = Tlsa::parse(&rdata) {
                prop_assert_eq!(t.data.len() + 3, rdata.len());
                let _ = t.usable();
                let _ = t.matches(&c);
                let _ = t.to_string();
            }
            if let Some(k) = spki(&c) {
                prop_assert!(k.len() <= c.len());
            }
        }

        #[test]
        fn digests_match_only_their_data(body in proptest::collection::vec(any::<u8>(), 1..200), flip in 0usize..32) {
            let (c, k) = cert(true, &body);
            prop_assert_eq!(spki(&c), Some(k.as_slice()));
            let mut d = sha256(&k);
            prop_assert!(rec(3, 1, 1, d.clone()).matches(&c));
            d[flip] ^= 0x80;
            prop_assert!(!rec(3, 1, 1, d).matches(&c));
        }
    }
}
