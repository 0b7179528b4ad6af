//! The one fact qmail-smtpd reads from a client certificate: the e-mail address in its
//! subject (the `emailAddress` attribute, OID 1.2.840.113549.1.9.1), which the qmail TLS
//! patch compares with control/tlsclients.
//!
//! A small DER reader, enough to walk Certificate → TBSCertificate → subject: every length
//! is checked against what is left, nesting is fixed (no recursion), and anything that is
//! not what X.509 says is "no address". The certificate has been verified against
//! clientca.pem before this is asked, but the parser trusts nothing all the same.

/// The DER encoding of the emailAddress attribute type's OID.
const EMAIL_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
const IA5STRING: u8 = 0x16;
const UTF8STRING: u8 = 0x0c;
const PRINTABLESTRING: u8 = 0x13;

/// The longest address taken (a longer one is no address).
pub const MAX_EMAIL: usize = 1024;

/// One DER element: (tag, contents, the rest after it).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers do not occur in what is read here
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None; // indefinite or absurd lengths
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if len > rest.len() {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((tag, contents, after))
}

/// The contents of the element at the start of `input`, which must have tag `tag`, and
/// the rest.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, c, rest) = element(input)?;
    (t == tag).then_some((c, rest))
}

/// The subject's first emailAddress, when the certificate has one that is printable
/// ASCII (no spaces, no control characters) and at most [`MAX_EMAIL`] bytes.
pub fn subject_email(cert: &[u8]) -> Option<String> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    // [0] EXPLICIT version, absent in version 1 certificates.
    if let Some((VERSION, _, rest)) = element(tbs) {
        tbs = rest;
    }
    // serialNumber, signature, issuer, validity: skipped whatever they hold.
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (mut rdns, _) = expect(tbs, SEQUENCE)?;
    while !rdns.is_empty() {
        let (mut set, rest) = expect(rdns, SET)?;
        rdns = rest;
        while !set.is_empty() {
            let (attr, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(attr, OID)?;
            if oid != EMAIL_OID {
                continue;
            }
            let (tag, text, _) = element(value)?;
            if !matches!(tag, IA5STRING | UTF8STRING | PRINTABLESTRING)
                || text.is_empty()
                || text.len() > MAX_EMAIL
                || !text.iter().all(|&c| (0x21..=0x7e).contains(&c))
            {
                return None;
            }
            return String::from_utf8(text.to_vec()).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    /// Version 1, signed by a test CA, subject
    /// /C=DE/O=Example/CN=Client One/emailAddress=Client.One@Example.org.
    const WITH_EMAIL: &str = "-----BEGIN CERTIFICATE-----
MIIBZzCCAQ4CFAZkENpXUexFtNKyL+jf+GQzwOgIMAoGCCqGSM49BAMCMBIxEDAOBgNVBAMMB1Rl
c3QgQ0EwHhcNMjYxMTI1MjMyMTIxWhcNMzYxMTIyMjMyMTIxWjBbMQswCQYDVQQGEwJERTEQMA4G
A1UECgwHRXhhbXBsZTETMBEGA1UEAwwKQ2xpZW50IE9uZTElMCMGCSqGSIb3DQEJARYWQ2xpZW50
Lk9uZUBFeGFtcGxlLm9yZzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABC0tpyCxRmQ3vM1m4aIZ
o4THsWMp6FDKl+Qjkoa1U9OSeDWiNFugqz2S/BtoQ6r+10J4aaFrYkGV36/FPeft27MwCgYIKoZI
zj0EAwIDRwAwRAIgRMnJpK+gPMjy9sbt4xw6Wx4CUjxMs7JJ7AFNjjLlU/wCICBfuJdNgSd3MEDc
cWIPNPVU/pd1NOdzAg4vgHuqzN7f
-----END CERTIFICATE-----
";

    /// Version 3, subject /CN=No Mail, the address only in subjectAltName (which the
    /// qmail TLS patch does not look at either).
    const WITHOUT_EMAIL: &str = "-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUEXSR+uE5WuTZs3RFfcOjHjutOK8wCgYIKoZIzj0EAwIwEjEQMA4GA1UE
AwwHTm8gTWFpbDAeFw0yNjExMjUyMzIxMjNaFw0yNjExMjcyMzIxMjNaMBIxEDAOBgNVBAMMB05v
IE1haWwwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASNisYFuGwce3m//EH3d1kiGXnKhZYeHvuS
X6EZdcRQ9DihFtaWaT9SUekKEUyNePnZED8T/wessTIEbb7mRD1Mo28wbTAdBgNVHQ4EFgQUyYFE
in3GO5cD8pcNh8GudErIPy0wHwYDVR0jBBgwFoAUyYFEin3GO5cD8pcNh8GudErIPy0wDwYDVR0T
AQH/BAUwAwEB/zAaBgNVHREEEzARgQ9hbHRAZXhhbXBsZS5vcmcwCgYIKoZIzj0EAwIDSAAwRQIh
ANCQhMa+IkpfNz4xtCMKjSRBJhCGwqH2R6NYux7vKXwZAiAfgJiPMq6n5NRasd3Pc3v/Azf9kVWa
ikuKPYxvxsVGUA==
-----END CERTIFICATE-----
";

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .to_vec()
    }

    #[test]
    fn reads_the_subject_email() {
        assert_eq!(
            subject_email(&der(WITH_EMAIL)).as_deref(),
            Some("Client.One@Example.org")
        );
        assert_eq!(subject_email(&der(WITHOUT_EMAIL)), None);
    }

    #[test]
    fn every_truncation_and_corruption_is_no_address() {
        let d = der(WITH_EMAIL);
        for n in 0..d.len() {
            assert_eq!(subject_email(&d[..n]), None, "truncated at {n}");
        }
        // The address with a control character in it.
        let mut bad = d.clone();
        let at = bad
            .windows(10)
            .position(|w| w == b"Client.One")
            .expect("address");
        bad[at] = 0x07;
        assert_eq!(subject_email(&bad), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = subject_email(&data);
        }

        #[test]
        fn mutated_certificates_give_printable_addresses_or_none(
            flips in proptest::collection::vec((0usize..363, any::<u8>()), 1..8)
        ) {
            let mut d = der(WITH_EMAIL);
            for (i, b) in flips {
                let i = i % d.len();
                d[i] = b;
            }
            if let Some(e) = subject_email(&d) {
                prop_assert!(e.len() <= MAX_EMAIL);
                prop_assert!(e.bytes().all(|c| (0x21..=0x7e).contains(&c)));
            }
        }
    }
}
