//! The README's quick-start: scripts/quickstart starts a mail system that accepts a
//! message from Python's smtplib on 127.0.0.1 and delivers it into its Maildir.

use rqmail_tests::{bin_dir, free_port, python};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/quickstart")
}

struct Stop<'a>(&'a Path, u16);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .env("RQMAIL_DIR", self.0)
            .env("RQMAIL_PORT", self.1.to_string())
            .status();
    }
}

#[test]
fn quickstart_delivers_an_smtplib_message_into_its_maildir() {
    let tmp = tempfile::Builder::new()
        .prefix("rqmail-qs-")
        .tempdir()
        .expect("tmp");
    let dir = tmp.path().join("home");
    let port = free_port();
    let out = Command::new(script())
        .env("RQMAIL_DIR", &dir)
        .env("RQMAIL_PORT", port.to_string())
        .env("RQMAIL_BIN", bin_dir())
        .output()
        .expect("run quickstart");
    let _stop = Stop(&dir, port);
    assert!(
        out.status.success(),
        "quickstart failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("rqmail is running"));

    let client = format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port}, timeout=30)\n\
         r = s.sendmail('sender@example.com', ['someone@localhost'], \
         'Subject: quick-start\\r\\n\\r\\nhello through the quick-start\\r\\n')\n\
         assert r == {{}}, r\n\
         s.quit()\n"
    );
    let st = Command::new(python())
        .arg("-c")
        .arg(&client)
        .status()
        .expect("python");
    assert!(st.success(), "smtplib could not send");

    let new = dir.join("Maildir/new");
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let files: Vec<_> = fs::read_dir(&new)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if let Some(f) = files.first() {
            break fs::read_to_string(f).expect("read mail");
        }
        assert!(
            Instant::now() < deadline,
            "nothing delivered into {}",
            new.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(delivered.contains("Delivered-To: "), "{delivered}");
    assert!(
        delivered.contains("Subject: quick-start\n\nhello through the quick-start\n"),
        "{delivered}"
    );
    assert!(
        delivered.starts_with("Return-Path: <sender@example.com>\n"),
        "{delivered}"
    );

    // The injection command the quick-start prints works too (as the user it runs as).
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("inject:"))
        .expect("an inject: line")
        .trim()
        .to_string();
    let st = Command::new("sh")
        .arg("-c")
        .arg(line.replace("echo hello", "printf 'Subject: injected\\n\\nhi\\n'"))
        .status()
        .expect("sh");
    assert!(
        st.success(),
        "the printed qmail-inject command failed: {line}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = fs::read_dir(&new)
            .map(|rd| {
                rd.flatten().any(|e| {
                    fs::read_to_string(e.path()).is_ok_and(|m| m.contains("Subject: injected"))
                })
            })
            .unwrap_or(false);
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the injected message was not delivered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
