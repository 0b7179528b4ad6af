//! Private keys and the two signing algorithms of DKIM: `rsa-sha256` (RFC 6376; RSA
//! PKCS #1 v1.5 with SHA-256) and `ed25519-sha256` (RFC 8463; PureEdDSA over the SHA-256
//! hash of the signed data). The cryptography is ring's.
//!
//! Keys are read from PEM files as `openssl genpkey` writes them: PKCS #8 (`BEGIN PRIVATE
//! KEY`, RSA or Ed25519) or PKCS #1 (`BEGIN RSA PRIVATE KEY`). ring signs with RSA keys of
//! 2048 to 8192 bits only; a 1024-bit key (which RFC 8301 still allows) is refused.

use ring::signature::{Ed25519KeyPair, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::fmt;

/// A DKIM signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl Algorithm {
    /// The name used in the `a=` tag.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    /// The key type used in the `k=` tag of the DNS record.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa",
            Algorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The file holds no PEM private key.
    NotPem(String),
    /// A PEM private key of a kind DKIM does not sign with (an EC key, say).
    Unsupported(&'static str),
    /// ring refused the key (bad encoding, an RSA key under 2048 bits, ...).
    Rejected(String),
    /// Signing failed.
    Sign,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotPem(e) => write!(f, "no PEM private key: {e}"),
            KeyError::Unsupported(k) => {
                write!(f, "{k} keys cannot sign DKIM (RSA or Ed25519 only)")
            }
            KeyError::Rejected(e) => write!(f, "key refused: {e}"),
            KeyError::Sign => f.write_str("signing failed"),
        }
    }
}

impl std::error::Error for KeyError {}

enum Inner {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key DKIM can sign with.
pub struct SigningKey {
    inner: Inner,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("bits", &self.bits())
            .finish()
    }
}

impl SigningKey {
    /// Reads a key from the text of a PEM file.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, KeyError> {
        let der =
            PrivateKeyDer::from_pem_slice(pem).map_err(|e| KeyError::NotPem(e.to_string()))?;
        let inner = match &der {
            PrivateKeyDer::Pkcs1(k) => Inner::Rsa(
                RsaKeyPair::from_der(k.secret_pkcs1_der())
                    .map_err(|e| KeyError::Rejected(e.to_string()))?,
            ),
            PrivateKeyDer::Pkcs8(k) => return SigningKey::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(_) => return Err(KeyError::Unsupported("EC (SEC1)")),
            _ => return Err(KeyError::Unsupported("unknown")),
        };
        Ok(SigningKey { inner })
    }

    /// Reads a key from PKCS #8 DER (RSA or Ed25519).
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyError> {
        let inner = match Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            Ok(k) => Inner::Ed25519(k),
            Err(ed) => match RsaKeyPair::from_pkcs8(der) {
                Ok(k) => Inner::Rsa(k),
                Err(rsa) => {
                    // Say why the key of the algorithm it is was refused.
                    let e = if ed.to_string() == "WrongAlgorithm" {
                        rsa
                    } else {
                        ed
                    };
                    if e.to_string() == "WrongAlgorithm" {
                        return Err(KeyError::Unsupported("PKCS #8 non-RSA, non-Ed25519"));
                    }
                    return Err(KeyError::Rejected(e.to_string()));
                }
            },
        };
        Ok(SigningKey { inner })
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Rsa(_) => Algorithm::RsaSha256,
            Inner::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// The key size in bits (the modulus for RSA, 256 for Ed25519).
    pub fn bits(&self) -> usize {
        match &self.inner {
            Inner::Rsa(k) => k.public().modulus_len() * 8,
            Inner::Ed25519(_) => 256,
        }
    }

    /// The public key as the `p=` tag of the DNS record wants it: the DER
    /// SubjectPublicKeyInfo for RSA (what `openssl pkey -pubout` writes), the 32 raw bytes
    /// for Ed25519 (RFC 8463).
    pub fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair as _;
        match &self.inner {
            Inner::Rsa(k) => spki_rsa(k.public_key().as_ref()),
            Inner::Ed25519(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// The TXT record to publish at `SELECTOR._domainkey.DOMAIN` for this key.
    pub fn dns_record(&self) -> String {
        use base64::Engine as _;
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm().key_type(),
            base64::engine::general_purpose::STANDARD.encode(self.public_key())
        )
    }

    /// Signs `data`, the canonicalised header fields followed by the DKIM-Signature
    /// field with an empty `b=` (RFC 6376 section 3.7): RSA over SHA-256 of the data,
    /// Ed25519 over the SHA-256 hash of the data (RFC 8463 section 3).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            Inner::Rsa(k) => {
                let rng = ring::rand::SystemRandom::new();
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, data, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            Inner::Ed25519(k) => {
                let hash = ring::digest::digest(&ring::digest::SHA256, data);
                Ok(k.sign(hash.as_ref()).as_ref().to_vec())
            }
        }
    }
}

/// DER length octets.
fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// The SubjectPublicKeyInfo around a PKCS #1 RSAPublicKey.
fn spki_rsa(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1 (rsaEncryption), NULL }
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x03];
    der_len(pkcs1.len() + 1, &mut bits);
    bits.push(0); // no unused bits
    bits.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(ALG.len() + bits.len(), &mut out);
    out.extend_from_slice(ALG);
    out.extend_from_slice(&bits);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// RFC 8032 section 7.1, test 1: the Ed25519 key of RFC 8463's example, in PKCS #8.
    pub(crate) fn rfc8032_key() -> SigningKey {
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let mut der = hex("302e020100300506032b657004220420");
        der.extend_from_slice(&seed);
        let from_pem = SigningKey::from_pem(pem("PRIVATE KEY", &der).as_bytes()).unwrap();
        let from_der = SigningKey::from_pkcs8(&der).unwrap();
        assert_eq!(from_pem.public_key(), from_der.public_key());
        from_der
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    pub(crate) fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD.encode(der);
        let mut s = format!("-----BEGIN {label}-----\n");
        for c in b.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(c).unwrap());
            s.push('\n');
        }
        s.push_str(&format!("-----END {label}-----\n"));
        s
    }

    #[test]
    fn ed25519_key_and_record() {
        let k = rfc8032_key();
        assert_eq!(k.algorithm(), Algorithm::Ed25519Sha256);
        assert_eq!(k.bits(), 256);
        // RFC 8463 appendix A.2: brisbane._domainkey.football.example.com.
        assert_eq!(
            k.dns_record(),
            "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        );
    }

    #[test]
    fn not_keys() {
        assert!(matches!(
            SigningKey::from_pem(b"hello"),
            Err(KeyError::NotPem(_))
        ));
        let bad = pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00");
        assert!(matches!(
            SigningKey::from_pem(bad.as_bytes()),
            Err(KeyError::Rejected(_) | KeyError::Unsupported(_))
        ));
        let ec = pem("EC PRIVATE KEY", b"\x30\x03\x02\x01\x01");
        assert_eq!(
            SigningKey::from_pem(ec.as_bytes()).unwrap_err(),
            KeyError::Unsupported("EC (SEC1)")
        );
    }

    #[test]
    fn der_lengths() {
        let mut v = Vec::new();
        der_len(5, &mut v);
        der_len(0x80, &mut v);
        der_len(0x1234, &mut v);
        assert_eq!(v, [5, 0x81, 0x80, 0x82, 0x12, 0x34]);
    }
}
