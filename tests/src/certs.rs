//! Test certificates made with openssl: ECDSA P-256 keys, PEM files in a directory.

use crate::home::Home;
use crate::programs::tool;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new(tool("openssl"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl {args:?} failed");
}

/// A self-signed certificate with `subject` (openssl marks it an authority):
/// `dir/name.key` and `dir/name.pem`, returned as (key, certificate).
pub fn authority(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let mut a = vec!["req", "-x509"];
    a.extend(EC);
    a.extend([
        "-keyout", &key, "-out", &pem, "-days", "30", "-subj", subject,
    ]);
    openssl(dir, &a);
    (dir.join(key), dir.join(pem))
}

/// A version 3 certificate with `subject` and the openssl `extensions` (lines of an
/// extension file), signed by `ca` = (key, certificate): `dir/name.key` and
/// `dir/name.pem`, returned as (key, certificate).
pub fn signed(
    dir: &Path,
    name: &str,
    subject: &str,
    ca: &(PathBuf, PathBuf),
    extensions: &str,
) -> (PathBuf, PathBuf) {
    let (key, csr, pem, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    fs::write(dir.join(&ext), extensions).expect("extension file");
    let mut a = vec!["req"];
    a.extend(EC);
    a.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &a);
    let (ca_key, ca_pem) = (ca.0.to_string_lossy(), ca.1.to_string_lossy());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "30",
            "-extfile",
            &ext,
        ],
    );
    (dir.join(key), dir.join(pem))
}

/// The test PKI, made once per test process in the target directory's tmp/: a CA (`ca`),
/// server certificates for mx.tls.test (`mx`) and other.test (`other`) signed by it, a
/// client certificate (`client`; `clientcert.pem` holds it and its key), and a second,
/// unrelated CA (`ca2`). Every file is readable by everyone. Returns the directory.
pub fn test_pki() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // The target directory's tmp/ under cargo (CARGO_TARGET_TMPDIR), else the
        // system's temporary directory.
        let tmp = crate::programs::bin_dir()
            .parent()
            .map(|target| target.join("tmp"))
            .filter(|t| t.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let d = tmp.join(format!("rqmail-test-pki-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir test pki");
        let ca = authority(&d, "ca", "/CN=rqmail test CA");
        authority(&d, "ca2", "/CN=another test CA");
        for (name, cn, usage) in [
            ("mx", "mx.tls.test", "serverAuth"),
            ("other", "other.test", "serverAuth"),
            ("client", "client.rqmail.test", "clientAuth"),
        ] {
            signed(
                &d,
                name,
                &format!("/CN={cn}"),
                &ca,
                &format!(
                    "basicConstraints=CA:FALSE\nsubjectAltName=DNS:{cn}\nextendedKeyUsage={usage}\n"
                ),
            );
        }
        let mut both = fs::read(d.join("client.pem")).expect("client.pem");
        both.extend(fs::read(d.join("client.key")).expect("client.key"));
        fs::write(d.join("clientcert.pem"), both).expect("clientcert.pem");
        for e in fs::read_dir(&d).expect("test pki").flatten() {
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o644));
        }
        d
    })
}

/// The kind of key of a test certificate.
#[derive(Clone, Copy)]
pub enum Key {
    /// ECDSA P-256 (quick to make).
    Ec,
    Rsa,
}

/// Makes a self-signed certificate for testhost.example, 127.0.0.1 and ::1 in `dir`;
/// returns (key path, certificate path).
pub fn self_signed(dir: &Path, name: &str, key: Key, subject: &str) -> (PathBuf, PathBuf) {
    let k = dir.join(format!("{name}.key"));
    let c = dir.join(format!("{name}.crt"));
    let mut cmd = Command::new(tool("openssl"));
    cmd.args(["req", "-x509", "-nodes", "-days", "2", "-newkey"]);
    match key {
        Key::Ec => cmd.args(["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]),
        Key::Rsa => cmd.arg("rsa:2048"),
    };
    cmd.arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .args(["-subj", subject])
        .args([
            "-addext",
            "subjectAltName=DNS:testhost.example,IP:127.0.0.1,IP:::1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    assert!(cmd.status().expect("openssl").success(), "openssl req");
    (k, c)
}

/// A home whose control/servercert.pem holds a key and its certificate (in that order,
/// as the qmail TLS patch has it). Returns the home and the certificate, which clients
/// use as their trust anchor.
pub fn tls_home(key: Key) -> (Home, PathBuf) {
    let home = Home::new();
    let (k, c) = self_signed(home.path(), "server", key, "/CN=testhost.example");
    let mut pem = fs::read(&k).expect("key");
    pem.extend(fs::read(&c).expect("cert"));
    fs::write(home.path().join("control/servercert.pem"), pem).expect("servercert");
    (home, c)
}
