//! The one fact qmail-smtpd reads from a client certificate: the e-mail address in its
//! subject (the `emailAddress` attribute, OID 1.2.840.113549.1.9.1), which the qmail TLS
//! patch compares with control/tlsclients; and, for the verbose diagnostics only, the
//! subject and issuer of a peer's certificate as text ([`cert_names`]); and for
//! qmail-remote's DANE checks, a certificate's public key ([`spki`]).
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

/// The SubjectPublicKeyInfo of an X.509 certificate (DER) as a whole DER element: what a
/// DANE TLSA record with selector 1 designates.
pub fn spki(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    if let Some((VERSION, _, rest)) = element(tbs) {
        tbs = rest;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        tbs = element(tbs)?.2;
    }
    let (tag, _, rest) = element(tbs)?;
    (tag == SEQUENCE).then(|| &tbs[..tbs.len() - rest.len()])
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

/// The longest text [`cert_names`] gives for one name.
pub const MAX_NAME_TEXT: usize = 512;

/// The short names of the attribute types seen in certificates (their OIDs' DER).
const ATTRIBUTES: &[(&[u8], &str)] = &[
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x05], "serialNumber"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x09], "street"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (EMAIL_OID, "emailAddress"),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
        "DC",
    ),
];

/// An OID's dotted text (`2.5.4.42`), or `None` when it is malformed.
fn dotted(oid: &[u8]) -> Option<String> {
    if oid.last()? & 0x80 != 0 {
        return None;
    }
    let mut arcs = Vec::new();
    let mut n: u64 = 0;
    for &b in oid {
        n = n.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(n);
            n = 0;
        }
    }
    let first = arcs[0];
    let top = (first / 40).min(2);
    let mut out = format!("{top}.{}", first - 40 * top);
    for a in &arcs[1..] {
        out.push_str(&format!(".{a}"));
    }
    Some(out)
}

/// An attribute value as text: the string types decoded (BMPString as UTF-16), anything
/// else as `#` and hexadecimal.
fn value_text(tag: u8, v: &[u8]) -> String {
    match tag {
        // UTF8String, PrintableString, T61String, IA5String, VisibleString
        0x0c | 0x13 | 0x14 | 0x16 | 0x1a => String::from_utf8_lossy(v).into_owned(),
        // BMPString
        0x1e => char::decode_utf16(
            v.chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])),
        )
        .map(|c| c.unwrap_or('?'))
        .collect(),
        _ => {
            let mut s = String::from("#");
            for b in v.iter().take(64) {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
    }
}

/// A Name (SEQUENCE OF SET OF AttributeTypeAndValue) as `CN=x, O=y`, in the
/// certificate's order, cut at [`MAX_NAME_TEXT`] characters.
fn name_text(mut rdns: &[u8]) -> Option<String> {
    let mut out = String::new();
    while !rdns.is_empty() {
        let (mut set, rest) = expect(rdns, SET)?;
        rdns = rest;
        while !set.is_empty() {
            let (attr, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(attr, OID)?;
            let (tag, v, _) = element(value)?;
            let key = match ATTRIBUTES.iter().find(|(o, _)| *o == oid) {
                Some((_, k)) => (*k).to_string(),
                None => dotted(oid)?,
            };
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(&key);
            out.push('=');
            out.push_str(&value_text(tag, v));
        }
    }
    if out.chars().count() > MAX_NAME_TEXT {
        out = out.chars().take(MAX_NAME_TEXT).collect();
    }
    Some(out)
}

/// The subject and issuer of a DER certificate as text (`CN=mx.example, O=Example`), or
/// `None` when it is not one. For diagnostics: the text may hold any character the
/// certificate's author chose.
pub fn cert_names(cert: &[u8]) -> Option<(String, String)> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    if let Some((VERSION, _, rest)) = element(tbs) {
        tbs = rest;
    }
    // serialNumber, signature
    for _ in 0..2 {
        tbs = element(tbs)?.2;
    }
    let (issuer, rest) = expect(tbs, SEQUENCE)?;
    let validity_end = element(rest)?.2;
    let (subject, _) = expect(validity_end, SEQUENCE)?;
    Some((name_text(subject)?, name_text(issuer)?))
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

    #[test]
    fn subject_and_issuer() {
        assert_eq!(
            cert_names(&der(WITH_EMAIL)),
            Some((
                "C=DE, O=Example, CN=Client One, emailAddress=Client.One@Example.org".into(),
                "CN=Test CA".into()
            ))
        );
        assert_eq!(
            cert_names(&der(WITHOUT_EMAIL)),
            Some(("CN=No Mail".into(), "CN=No Mail".into()))
        );
        let d = der(WITH_EMAIL);
        for n in 0..d.len() {
            assert_eq!(cert_names(&d[..n]), None, "truncated at {n}");
        }
    }

    #[test]
    fn oids_and_values() {
        assert_eq!(dotted(&[0x55, 0x04, 0x2a]).as_deref(), Some("2.5.4.42"));
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]).as_deref(),
            Some("1.2.840.113549")
        );
        assert_eq!(dotted(&[0x2a, 0x86]), None);
        assert_eq!(dotted(&[]), None);
        assert_eq!(value_text(0x1e, &[0, b'h', 0, b'i']), "hi");
        assert_eq!(value_text(0x1e, &[0xd8, 0x00]), "?");
        assert_eq!(value_text(0x04, &[1, 0xab]), "#01ab");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = subject_email(&data);
            if let Some((s, i)) = cert_names(&data) {
                prop_assert!(s.chars().count() <= MAX_NAME_TEXT);
                prop_assert!(i.chars().count() <= MAX_NAME_TEXT);
            }
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
