//! The server side of TLS for rqmail's network programs (qmail-smtpd, qmail-popup): one
//! way to load `control/servercert.pem` and the cipher policy, one way to speak TLS over
//! the descriptors a super-server hands over.
//!
//! * [`load`] builds a rustls [`TlsServer`] from the control files (servercert.pem,
//!   tlsserverciphers or `$TLSCIPHERS`, and for servers that want client certificates,
//!   clientca.pem); [`configured`] says whether servercert.pem exists at all;
//! * [`Transport`] is a connection with timeouts: [`FdTransport`] over plain descriptors,
//!   [`TlsTransport`] over another transport after the handshake;
//! * [`TlsInfo`] is what a connection negotiated (version, cipher, a verified client
//!   certificate and its subject address, read by [`subject_email`]).
//!
//! Only TLS 1.2 and 1.3 are spoken; rustls on the ring provider. Each process serves one
//! connection: no session cache, no tickets, no early data.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

mod fd;
mod server;
mod stream;
mod x509;

pub use fd::{FdTransport, READ_BUF, Transport, WRITE_STEP, wait_ready};
pub use server::{
    CIPHERS, CLIENTCA, NotingVerifier, SERVERCERT, TlsError, TlsInfo, TlsServer, configured, load,
    openssl_name, parse_ciphers,
};
pub use stream::TlsTransport;
pub use x509::{MAX_EMAIL, MAX_NAME_TEXT, cert_names, spki, subject_email};

/// A certificate for the unit tests, made with the openssl program.
#[cfg(test)]
mod testcert {
    use std::process::{Command, Stdio};

    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            st.is_ok_and(|s| s.success()),
            "openssl {args:?} failed: is openssl installed? (the README's test command installs it)"
        );
    }

    /// A qmail home whose control/servercert.pem holds an ECDSA key and its certificate
    /// for testhost.example, signed by the authority in ca.pem.
    pub(crate) fn home() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control")).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=test authority"];
        a.extend(ec);
        a.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(d.path(), &a);
        let mut a = vec!["req", "-subj", "/CN=testhost.example", "-keyout", "key.pem"];
        a.extend(ec);
        a.extend(["-out", "req.pem"]);
        openssl(d.path(), &a);
        std::fs::write(
            d.path().join("ext"),
            "subjectAltName=DNS:testhost.example\n",
        )
        .unwrap();
        openssl(
            d.path(),
            &[
                "x509",
                "-req",
                "-in",
                "req.pem",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext",
                "-out",
                "cert.pem",
            ],
        );
        let mut pem = std::fs::read(d.path().join("key.pem")).unwrap();
        pem.extend(std::fs::read(d.path().join("cert.pem")).unwrap());
        std::fs::write(d.path().join(crate::SERVERCERT), pem).unwrap();
        d
    }
}
