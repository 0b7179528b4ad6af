//! The TLS server's configuration from control files, and what a connection negotiated.
//!
//! Control files, as the qmail TLS patch has them:
//!
//! * `control/servercert.pem`: the private key and the certificate chain, in one PEM file;
//! * `control/clientca.pem` (only for a server that wants client certificates, as
//!   qmail-smtpd does): when it exists, clients are asked for a certificate and a
//!   certificate signed by one of these authorities is noted as verified. As with the
//!   qmail TLS patch, a client with no certificate, or one that does not verify, is
//!   served all the same (the handshake never fails for that reason);
//! * `control/tlsserverciphers` (or `$TLSCIPHERS`): the cipher suites allowed, in the
//!   server's order of preference (which wins over the client's), as OpenSSL or IANA
//!   names separated by colons or on separate lines (read as a list control file:
//!   lines starting with `#` are comments).
//!   Names rustls does not implement, and OpenSSL's keywords (`HIGH`, `!aNULL`, ...), are
//!   ignored; when no name is left, rustls' defaults apply, in rustls' order, which also
//!   wins over the client's.
//!
//! Only TLS 1.2 and 1.3 are spoken.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring::cipher_suite as cs;
use rustls::crypto::{CryptoProvider, ring};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme, SupportedCipherSuite,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The key and certificates.
pub const SERVERCERT: &str = "control/servercert.pem";
/// Authorities for client certificates.
pub const CLIENTCA: &str = "control/clientca.pem";
/// Allowed cipher suites.
pub const CIPHERS: &str = "control/tlsserverciphers";

/// Every suite rustls' ring provider has: (suite, IANA name, OpenSSL name).
fn suites() -> [(SupportedCipherSuite, &'static str, &'static str); 9] {
    [
        (
            cs::TLS13_AES_256_GCM_SHA384,
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_256_GCM_SHA384",
        ),
        (
            cs::TLS13_AES_128_GCM_SHA256,
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_128_GCM_SHA256",
        ),
        (
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        (
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
        (
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
        ),
        (
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
        ),
        (
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            "ECDHE-RSA-CHACHA20-POLY1305",
        ),
    ]
}

/// The suites named in a cipher list (colons, spaces, commas or newlines between names),
/// in the order given, each once. Unknown names are skipped.
pub fn parse_ciphers(list: &[u8]) -> Vec<SupportedCipherSuite> {
    let table = suites();
    let mut out: Vec<SupportedCipherSuite> = Vec::new();
    for word in list.split(|&c| matches!(c, b':' | b' ' | b',' | b'\n' | b'\r' | b'\t')) {
        if word.is_empty() {
            continue;
        }
        if let Some((s, _, _)) = table.iter().find(|(_, iana, ossl)| {
            word.eq_ignore_ascii_case(iana.as_bytes()) || word.eq_ignore_ascii_case(ossl.as_bytes())
        }) && !out.iter().any(|o| o.suite() == s.suite())
        {
            out.push(*s);
        }
    }
    out
}

/// The OpenSSL name of a suite (as the qmail TLS patch writes it in Received).
pub fn openssl_name(s: SupportedCipherSuite) -> &'static str {
    suites()
        .iter()
        .find(|(x, _, _)| x.suite() == s.suite())
        .map_or("unknown", |&(_, _, o)| o)
}

/// What a session records about its TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The cipher suite's OpenSSL name.
    pub cipher: &'static str,
    /// The client presented a certificate that one of the clientca.pem authorities signed.
    pub client_verified: bool,
    /// The subject e-mail address of that verified certificate, when it has one.
    pub client_email: Option<String>,
}

/// Client certificates checked against clientca.pem without ever failing the handshake:
/// the result is only noted. (One connection per process, so one flag is enough.)
#[derive(Debug)]
pub struct NotingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    verified: AtomicBool,
}

impl NotingVerifier {
    /// True once a client certificate has verified.
    pub fn verified(&self) -> bool {
        self.verified.load(Ordering::SeqCst)
    }
}

impl ClientCertVerifier for NotingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .is_ok()
        {
            self.verified.store(true, Ordering::SeqCst);
        }
        Ok(ClientCertVerified::assertion())
    }

    // The signature proving the client holds the key of a certificate that verified is
    // checked as usual, and a bad one ends the handshake. A certificate that did not
    // verify is ignored for everything (see TlsInfo::of), so its signature is not asked
    // about: webpki refuses some such certificates outright (a self-signed one marked as
    // an authority, for one), which would otherwise end the handshake.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.verified() {
            return Ok(HandshakeSignatureValid::assertion());
        }
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.verified() {
            return Ok(HandshakeSignatureValid::assertion());
        }
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A loaded server configuration.
#[derive(Debug, Clone)]
pub struct TlsServer {
    pub config: Arc<ServerConfig>,
    /// Present when clientca.pem exists.
    pub verifier: Option<Arc<NotingVerifier>>,
}

impl TlsInfo {
    /// What a connection negotiated.
    pub fn of(conn: &ServerConnection, verifier: Option<&NotingVerifier>) -> TlsInfo {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        let client_verified = verifier.is_some_and(NotingVerifier::verified);
        let client_email = conn
            .peer_certificates()
            .and_then(<[_]>::first)
            .filter(|_| client_verified)
            .and_then(|c| crate::x509::subject_email(c));
        TlsInfo {
            version,
            cipher: conn
                .negotiated_cipher_suite()
                .map_or("unknown", openssl_name),
            client_verified,
            client_email,
        }
    }
}

/// Why TLS cannot be offered although servercert.pem exists.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn unreadable(name: &str) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |e| TlsError(format!("unable to read {name}: {e}"))
}

/// A PEM file below the home; `Ok(None)` when it does not exist.
fn read_pem(home: &Path, name: &str) -> Result<Option<Vec<u8>>, TlsError> {
    control::read_bytes(&home.join(name)).map_err(unreadable(name))
}

/// True when `control/servercert.pem` exists (then STARTTLS is offered).
pub fn configured(home: &Path) -> bool {
    std::fs::symlink_metadata(home.join(SERVERCERT)).is_ok()
}

/// Builds the server configuration from the control files of `home`; `ciphers_env` is
/// `$TLSCIPHERS`; with `client_certs`, clients are asked for a certificate when
/// clientca.pem exists. `Ok(None)` when servercert.pem does not exist.
pub fn load(
    home: &Path,
    ciphers_env: Option<&[u8]>,
    client_certs: bool,
) -> Result<Option<TlsServer>, TlsError> {
    let Some(pem) = read_pem(home, SERVERCERT)? else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("bad certificate in {SERVERCERT}: {e:?}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!("no certificate in {SERVERCERT}")));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| TlsError(format!("no usable private key in {SERVERCERT}: {e:?}")))?;

    let list = match ciphers_env {
        Some(l) => Some(l.to_vec()),
        None => control::read_lines(&home.join(CIPHERS))
            .map_err(unreadable(CIPHERS))?
            .map(|lines| lines.join(&b':')),
    };
    let mut provider = ring::default_provider();
    if let Some(l) = list {
        let chosen = parse_ciphers(&l);
        if !chosen.is_empty() {
            provider.cipher_suites = chosen;
        }
    }
    let provider: Arc<CryptoProvider> = Arc::new(provider);

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(format!("bad TLS settings: {e}")))?;
    let mut verifier = None;
    let clientca = match client_certs {
        true => read_pem(home, CLIENTCA)?,
        false => None,
    };
    let builder = match clientca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca) {
                let c = c.map_err(|e| TlsError(format!("bad certificate in {CLIENTCA}: {e:?}")))?;
                roots
                    .add(c)
                    .map_err(|e| TlsError(format!("bad certificate in {CLIENTCA}: {e}")))?;
            }
            let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError(format!("unusable {CLIENTCA}: {e}")))?;
            let v = Arc::new(NotingVerifier {
                inner,
                verified: AtomicBool::new(false),
            });
            verifier = Some(v.clone());
            builder.with_client_cert_verifier(v)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("unusable key or certificate in {SERVERCERT}: {e}")))?;
    // One connection per process: nothing to resume, no tickets, no early data.
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.max_early_data_size = 0;
    // The server's order of preference wins, the configured list's or rustls' own
    // (AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305; ECDSA before RSA in TLS 1.2).
    cfg.ignore_client_order = true;
    Ok(Some(TlsServer {
        config: Arc::new(cfg),
        verifier,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_lists() {
        let names = |l: &[u8]| {
            parse_ciphers(l)
                .iter()
                .map(|s| openssl_name(*s))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(b"ECDHE-RSA-AES256-GCM-SHA384:HIGH:!aNULL:TLS_AES_128_GCM_SHA256"),
            ["ECDHE-RSA-AES256-GCM-SHA384", "TLS_AES_128_GCM_SHA256"]
        );
        assert_eq!(
            names(b"tls_ecdhe_rsa_with_aes_128_gcm_sha256\necdhe-rsa-aes128-gcm-sha256\n"),
            ["ECDHE-RSA-AES128-GCM-SHA256"]
        );
        assert!(names(b"DEFAULT:RC4-SHA:DES-CBC3-SHA").is_empty());
        assert!(names(b"").is_empty());
        for (s, iana, ossl) in suites() {
            assert_eq!(openssl_name(s), ossl);
            assert_eq!(parse_ciphers(iana.as_bytes()).len(), 1);
        }
    }

    #[test]
    fn missing_and_broken_certificates() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control")).unwrap();
        assert!(!configured(d.path()));
        assert!(load(d.path(), None, true).unwrap().is_none());
        std::fs::write(d.path().join(SERVERCERT), "not a pem\n").unwrap();
        assert!(configured(d.path()));
        let e = load(d.path(), None, true).unwrap_err();
        assert!(e.to_string().contains("servercert.pem"), "{e}");
    }

    #[test]
    fn cipher_file_is_a_list_file_and_clientca_is_optional() {
        let d = crate::testcert::home();
        let w = |name: &str, text: &str| std::fs::write(d.path().join(name), text).unwrap();
        w(
            CIPHERS,
            "# ECDHE-ECDSA-AES256-GCM-SHA384 is commented out\n\nECDHE-ECDSA-AES128-GCM-SHA256  \nTLS_AES_128_GCM_SHA256\n",
        );
        let s = load(d.path(), None, true).unwrap().unwrap();
        let names: Vec<_> = s
            .config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|c| openssl_name(*c))
            .collect();
        assert_eq!(
            names,
            ["ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256"]
        );
        assert!(s.config.ignore_client_order);
        let dflt = load(d.path(), Some(b"HIGH:!aNULL"), true).unwrap().unwrap();
        assert!(
            dflt.config.ignore_client_order,
            "rustls' order is the server's too"
        );
        // $TLSCIPHERS wins over the file
        let s = load(d.path(), Some(b"TLS_AES_256_GCM_SHA384"), true)
            .unwrap()
            .unwrap();
        assert_eq!(s.config.crypto_provider().cipher_suites.len(), 1);

        // clientca.pem is read only by servers that ask for client certificates
        w(CLIENTCA, "not a certificate\n");
        assert!(
            load(d.path(), None, false)
                .unwrap()
                .unwrap()
                .verifier
                .is_none()
        );
        assert!(load(d.path(), None, true).is_err());
        std::fs::remove_file(d.path().join(CLIENTCA)).unwrap();

        // an unreadable cipher list is an error, never the defaults
        std::fs::remove_file(d.path().join(CIPHERS)).unwrap();
        std::fs::create_dir(d.path().join(CIPHERS)).unwrap();
        let e = load(d.path(), None, false).unwrap_err();
        assert!(e.to_string().contains("tlsserverciphers"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn cipher_parsing_never_panics(l in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let v = parse_ciphers(&l);
            proptest::prop_assert!(v.len() <= suites().len());
        }
    }
}
