//! Outbound TLS: which hosts get it and how their certificates are checked, with the
//! control files of the widely deployed qmail TLS patch, on rustls (ring provider).
//!
//! For the host name of the MX (or relay) being delivered to, in this order:
//! * `control/notlshosts/HOST` exists: never TLS with it;
//! * `control/tlshosts/HOST.pem` exists: TLS is required, and the server's certificate must
//!   verify against the certificate authorities in that file and match HOST;
//! * `control/tlsverify` lists HOST (exactly, as a `.domain` suffix, or `*` for every
//!   host): TLS is required, and the certificate must verify against the system's trusted
//!   roots (rustls-native-certs; `SSL_CERT_FILE`/`SSL_CERT_DIR` override) and match HOST
//!   (rqmail's option; the patch has none);
//! * `control/tlshosts/exhaustivelist` exists: no TLS;
//! * otherwise STARTTLS is used when the server offers it, and its certificate is not
//!   checked (opportunistic TLS).
//!
//! The patch looks at `notlshosts` only when `tlshosts/HOST.pem` does not exist; rqmail
//! lets `notlshosts` win. A delivery to an address literal has no host name: only
//! opportunistic TLS. `control/clientcert.pem` (certificate chain and private key in one
//! PEM file), when present, is offered to servers that ask for a client certificate.
//! Host names are lower-cased before they are used as file names, and a name that is not
//! made only of letters, digits, `-`, `_` and dots is never looked up.

use crate::mx::Target;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// How TLS is used with one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Never.
    Off,
    /// When offered, without checking the certificate.
    Opportunistic,
    /// Required, checked against this CA file (its name relative to the home, as the
    /// reports show it).
    CaFile(String),
    /// Required, checked against the system's trusted roots.
    Roots,
    /// Required by validated TLSA records, checked with them (see [`crate::dane`]).
    Dane(crate::dane::Dane),
    /// Required by the MTA-STS policy (in enforce mode) of this domain, checked against
    /// the system's trusted roots (crate::mtasts).
    Sts(String),
}

impl Policy {
    pub fn required(&self) -> bool {
        matches!(
            self,
            Policy::CaFile(_) | Policy::Roots | Policy::Dane(_) | Policy::Sts(_)
        )
    }

    /// The policy in words, for the verbose diagnostics.
    pub fn explain(&self) -> String {
        match self {
            Policy::Off => "no TLS (control/notlshosts or control/tlshosts/exhaustivelist)".into(),
            Policy::Opportunistic => "STARTTLS when offered, certificate not checked".into(),
            Policy::CaFile(f) => format!("TLS required, certificate checked with {f}"),
            Policy::Roots => "TLS required, certificate checked with the system's roots".into(),
            Policy::Dane(d) => d.explain(),
            Policy::Sts(d) => format!(
                "TLS required by the MTA-STS policy of {d}, certificate checked with the system's roots"
            ),
        }
    }

    /// The words the reports use for what requires TLS: `control/tlshosts/HOST.pem
    /// exists`.
    pub fn requirement(&self, host: &str) -> String {
        match self {
            Policy::CaFile(f) => format!("{f} exists"),
            Policy::Dane(d) => d.requirement(),
            Policy::Sts(d) => {
                format!("the MTA-STS policy of {d} is enforced (starttls-not-supported)")
            }
            _ => format!("control/tlsverify lists {host}"),
        }
    }
}

/// The host name as it may be used in a control file name, or `None`.
pub fn file_name_host(fqdn: &str) -> Option<String> {
    let h = fqdn.to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.len() <= 253
        && !h.starts_with('.')
        && !h.contains("..")
        && h.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
    ok.then_some(h)
}

/// True when a `control/tlsverify` entry covers `host`.
pub fn listed(entries: &[Vec<u8>], host: &str) -> bool {
    entries.iter().any(|e| {
        let e = e.to_ascii_lowercase();
        e == b"*"
            || e == host.as_bytes()
            || (e.first() == Some(&b'.') && host.as_bytes().ends_with(&e))
    })
}

fn exists(p: &Path) -> io::Result<bool> {
    match std::fs::metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The policy for `target`, from the control files under `home`. An error reading them is
/// a temporary failure.
pub fn policy(home: &Path, target: &Target, verify: &[Vec<u8>]) -> io::Result<Policy> {
    let Some(host) = target.fqdn.as_deref().and_then(file_name_host) else {
        return Ok(Policy::Opportunistic);
    };
    if exists(&home.join("control/notlshosts").join(&host))? {
        return Ok(Policy::Off);
    }
    let pem = format!("control/tlshosts/{host}.pem");
    if exists(&home.join(&pem))? {
        return Ok(Policy::CaFile(pem));
    }
    if listed(verify, &host) {
        return Ok(Policy::Roots);
    }
    if exists(&home.join("control/tlshosts/exhaustivelist"))? {
        return Ok(Policy::Off);
    }
    Ok(Policy::Opportunistic)
}

/// Why a configuration could not be made: the file concerned and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub why: String,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any certificate but still checks the handshake signatures: opportunistic TLS
/// protects against eavesdroppers, not against someone in the middle.
#[derive(Debug)]
struct Unchecked(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Any verifier, with what it saw and decided written at the verbose level: the server
/// certificate's subject and issuer, then the verdict (as Postfix's smtp_tls_loglevel
/// shows them).
#[derive(Debug)]
struct Noted {
    inner: Arc<dyn ServerCertVerifier>,
    checked: bool,
}

impl ServerCertVerifier for Noted {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        tracing::debug!(
            "TLS: server certificate {}, {} intermediate certificates",
            match qmail_tls::cert_names(end_entity) {
                Some((subject, issuer)) => format!("subject {subject}, issuer {issuer}"),
                None => "unreadable".to_string(),
            },
            intermediates.len()
        );
        match (&r, self.checked) {
            (Ok(_), true) => {
                tracing::debug!("TLS: certificate verified for {}", server_name.to_str())
            }
            (Ok(_), false) => tracing::debug!("TLS: certificate not checked (opportunistic TLS)"),
            (Err(e), _) => tracing::debug!("TLS: certificate verification failed: {e}"),
        }
        r
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// The checking verifier for `roots` (rustls' WebPKI one, as `with_root_certificates`
/// makes it).
fn webpki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, LoadError> {
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| LoadError {
        file: "rustls".into(),
        why: e.to_string(),
    })?;
    Ok(v)
}

/// The client certificate and key of control/clientcert.pem, if the file exists.
pub fn client_cert(
    home: &Path,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, LoadError> {
    let name = "control/clientcert.pem";
    let path = home.join(name);
    let err = |why: String| LoadError {
        file: name.to_string(),
        why,
    };
    match exists(&path) {
        Ok(false) => return Ok(None),
        Ok(true) => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&path).map_err(|e| err(e.to_string()))?;
    Ok(Some((certs, key)))
}

fn ca_roots(home: &Path, file: &str) -> Result<RootCertStore, LoadError> {
    let err = |why: String| LoadError {
        file: file.to_string(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(home.join(file))
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(err("no usable certificate in the file".into()));
    }
    Ok(roots)
}

pub(crate) fn system_roots() -> Result<RootCertStore, LoadError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(LoadError {
            file: "the system's trusted roots".into(),
            why: "no usable certificate found".into(),
        });
    }
    Ok(roots)
}

/// The rustls configuration for `policy` (not [`Policy::Off`]).
pub fn config(home: &Path, policy: &Policy) -> Result<Arc<ClientConfig>, LoadError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError {
            file: "rustls".into(),
            why: e.to_string(),
        })?;
    let (inner, checked): (Arc<dyn ServerCertVerifier>, bool) = match policy {
        Policy::CaFile(f) => (webpki(ca_roots(home, f)?, &provider)?, true),
        Policy::Roots | Policy::Sts(_) => (webpki(system_roots()?, &provider)?, true),
        Policy::Dane(d) => (
            Arc::new(crate::dane::Verifier::new(d.clone(), provider.clone())),
            !d.records.is_empty(),
        ),
        Policy::Off | Policy::Opportunistic => (
            Arc::new(Unchecked(provider.signature_verification_algorithms)),
            false,
        ),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Noted { inner, checked }));
    let cfg = match client_cert(home)? {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| LoadError {
                file: "control/clientcert.pem".into(),
                why: e.to_string(),
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// The name to send and check: the host name when it is a valid DNS name, the address
/// otherwise (then no name is sent).
pub fn server_name(target: &Target) -> ServerName<'static> {
    target
        .fqdn
        .as_deref()
        .and_then(|h| ServerName::try_from(h.to_string()).ok())
        .unwrap_or(ServerName::IpAddress(target.ip.into()))
}

/// A line for the reports: protocol, cipher suite and how the certificate was checked.
pub fn describe(conn: &rustls::ClientConnection, policy: &Policy) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let suite = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown cipher");
    let how = match policy {
        Policy::CaFile(f) => format!("certificate verified with {f}"),
        Policy::Roots => "certificate verified with the system's roots".to_string(),
        Policy::Dane(d) => d.how(),
        Policy::Sts(d) => {
            format!("certificate verified with the system's roots (MTA-STS policy of {d})")
        }
        _ => "certificate not verified".to_string(),
    };
    format!("TLS: {version}, {suite}, {how}.\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(fqdn: Option<&str>) -> Target {
        Target {
            ip: "192.0.2.1".parse().unwrap(),
            pref: 0,
            fqdn: fqdn.map(str::to_string),
        }
    }

    #[test]
    fn host_names_for_files() {
        assert_eq!(
            file_name_host("MX.Example.COM").as_deref(),
            Some("mx.example.com")
        );
        assert_eq!(file_name_host("../../etc/passwd"), None);
        assert_eq!(file_name_host("a/b"), None);
        assert_eq!(file_name_host(".hidden"), None);
        assert_eq!(file_name_host("a b"), None);
        assert_eq!(file_name_host(""), None);
    }

    #[test]
    fn tlsverify_entries() {
        let e = vec![b"mx.example".to_vec(), b".corp.example".to_vec()];
        assert!(listed(&e, "mx.example"));
        assert!(listed(&e, "a.corp.example"));
        assert!(!listed(&e, "corp.example"));
        assert!(!listed(&e, "xmx.example"));
        assert!(listed(&[b"*".to_vec()], "anything.example"));
    }

    #[test]
    fn policies_from_files() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        std::fs::create_dir_all(h.join("control/tlshosts")).unwrap();
        std::fs::create_dir_all(h.join("control/notlshosts")).unwrap();
        let p = |f: Option<&str>, v: &[Vec<u8>]| policy(h, &target(f), v).unwrap();
        assert_eq!(p(Some("mx.example"), &[]), Policy::Opportunistic);
        assert_eq!(p(None, &[]), Policy::Opportunistic);
        std::fs::write(h.join("control/tlshosts/mx.example.pem"), "").unwrap();
        assert_eq!(
            p(Some("MX.example"), &[]),
            Policy::CaFile("control/tlshosts/mx.example.pem".into())
        );
        assert_eq!(p(Some("other.example"), &[b"*".to_vec()]), Policy::Roots);
        std::fs::write(h.join("control/notlshosts/mx.example"), "").unwrap();
        assert_eq!(p(Some("mx.example"), &[]), Policy::Off);
        std::fs::write(h.join("control/tlshosts/exhaustivelist"), "").unwrap();
        assert_eq!(p(Some("other.example"), &[]), Policy::Off);
        assert_eq!(p(Some("../x"), &[]), Policy::Opportunistic);
    }

    #[test]
    fn configs() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        assert!(config(h, &Policy::Opportunistic).is_ok());
        let e = config(h, &Policy::CaFile("control/tlshosts/x.pem".into())).unwrap_err();
        assert_eq!(e.file, "control/tlshosts/x.pem");
        std::fs::create_dir_all(h.join("control")).unwrap();
        std::fs::write(h.join("control/clientcert.pem"), "junk").unwrap();
        let e = config(h, &Policy::Opportunistic).unwrap_err();
        assert_eq!(e.file, "control/clientcert.pem");
    }
}
