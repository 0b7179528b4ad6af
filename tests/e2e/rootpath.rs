//! The whole path in root mode, for a real system user the test creates: SMTP through
//! tcpserver as qmaild, the setuid qmail-queue, qmail-send with the qmail ids, qmail-lspawn
//! asking qmail-getpw (no users/cdb), qmail-local as the user delivering to an mbox, a
//! program, a Maildir and a forward, and a bounce for a failing program back to the sender.

use crate::relsys::{maildir_messages, queue_empty, wait_until};
use crate::rootmode::{install_root_home, lock_root_home, smtpd_as_qmaild, start_root_system};
use rqmail_tests::{Smtp, ensure_qmail_users, is_root, tool, user_ids};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

pub(crate) const USER: &str = "rqmuser";
pub(crate) const UHOME: &str = "/var/tmp/rqmail-rqmuser";

/// Creates the system user (once) and gives it a fresh home with its .qmail files.
pub(crate) fn make_user() -> (u32, u32) {
    if nix::unistd::User::from_name(USER).ok().flatten().is_none() {
        let st = Command::new(tool("useradd"))
            .args(["-M", "-U", "-d", UHOME, "-s", "/usr/sbin/nologin", USER])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {USER}");
    }
    let (uid, gid) = user_ids(USER);
    let _ = fs::remove_dir_all(UHOME);
    let h = Path::new(UHOME);
    for d in ["", "Maildir", "Fwd", "Bounces"] {
        let p = h.join(d);
        fs::create_dir_all(&p).expect("mkdir");
        if !d.is_empty() {
            for sub in ["tmp", "new", "cur"] {
                fs::create_dir(p.join(sub)).expect("mkdir");
                std::os::unix::fs::chown(p.join(sub), Some(uid), Some(gid)).expect("chown");
            }
        }
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for (name, text) in [
        (
            ".qmail",
            "# everything a .qmail file can do\n./Mailbox\n|env > \"$HOME/prog.env\"\n./Maildir/\n&rqmuser-fwd@roothost.example\n",
        ),
        (".qmail-fwd", "./Fwd/\n"),
        (
            ".qmail-fail",
            "|echo the program refuses this message; exit 100\n",
        ),
        (".qmail-bounces", "./Bounces/\n"),
    ] {
        let p = h.join(name);
        fs::write(&p, text).expect("dot-qmail");
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    (uid, gid)
}

#[test]
fn root_mode_smtp_to_mbox_program_maildir_forward_and_bounce_for_a_real_user() {
    if !is_root() {
        eprintln!(
            "root_mode_smtp_to_mbox_program_maildir_forward_and_bounce_for_a_real_user: needs root"
        );
        return;
    }
    let _g = lock_root_home();
    ensure_qmail_users();
    let home = install_root_home();
    let (uid, _gid) = make_user();
    for (name, text) in [
        ("rcpthosts", "roothost.example\n"),
        ("locals", "roothost.example\n"),
    ] {
        fs::write(home.join("control").join(name), text).expect("control");
    }
    let top = tempfile::tempdir().expect("tmp");
    let sys = start_root_system(&home, top.path());

    let (_server, port) = smtpd_as_qmaild(&home, &[]);
    let mut s = Smtp::connect(port);
    assert!(s.reply()[0].starts_with("220 "));
    assert!(s.cmd("HELO client.example")[0].starts_with("250 "));
    assert!(s.cmd("MAIL FROM:<rqmuser-bounces@roothost.example>")[0].starts_with("250 "));
    assert!(s.cmd("RCPT TO:<rqmuser@roothost.example>")[0].starts_with("250 "));
    assert!(s.cmd("RCPT TO:<rqmuser-fail@roothost.example>")[0].starts_with("250 "));
    assert!(s.cmd("DATA")[0].starts_with("354 "));
    let r = s.cmd("Subject: the whole path\r\n\r\nFrom the start\r\nbody\r\n.");
    assert!(r[0].starts_with("250 ok "), "{r:?}");
    s.cmd("QUIT");

    let h = Path::new(UHOME);
    wait_until("the forward and the bounce", || {
        maildir_messages(&h.join("Fwd")).len() == 1
            && maildir_messages(&h.join("Bounces")).len() == 1
    });
    wait_until("an empty queue", || queue_empty(&home));
    let log = sys.lines();
    assert_eq!(sys.terminate(), Some(0));

    // mbox: a From_ line with the envelope sender, >From quoting, owned by the user.
    let mbox = fs::read_to_string(h.join("Mailbox")).expect("Mailbox");
    assert!(
        mbox.starts_with("From rqmuser-bounces@roothost.example "),
        "{mbox}"
    );
    assert!(
        mbox.contains("Return-Path: <rqmuser-bounces@roothost.example>\n"),
        "{mbox}"
    );
    assert!(
        mbox.contains("Delivered-To: rqmuser@roothost.example\n"),
        "{mbox}"
    );
    assert!(mbox.contains("\n>From the start\nbody\n"), "{mbox}");
    assert_eq!(fs::metadata(h.join("Mailbox")).expect("m").uid(), uid);

    // The program ran as the user with qmail-command(8)'s environment.
    let env = fs::read_to_string(h.join("prog.env")).expect("prog.env");
    for want in [
        "USER=rqmuser\n",
        "RECIPIENT=rqmuser@roothost.example\n",
        "SENDER=rqmuser-bounces@roothost.example\n",
        "HOST=roothost.example\n",
        "LOCAL=rqmuser\n",
        &format!("HOME={UHOME}\n"),
    ] {
        assert!(env.contains(want), "{want:?} missing from {env}");
    }
    assert_eq!(fs::metadata(h.join("prog.env")).expect("env").uid(), uid);

    // Maildir and the forward (which went back through qmail-queue and qmail-send).
    let md = maildir_messages(&h.join("Maildir"));
    assert_eq!(md.len(), 1);
    assert!(
        String::from_utf8_lossy(&md[0])
            .contains("Subject: the whole path\n\nFrom the start\nbody\n")
    );
    let fwd = String::from_utf8_lossy(&maildir_messages(&h.join("Fwd"))[0]).into_owned();
    assert!(
        fwd.contains("Delivered-To: rqmuser-fwd@roothost.example\n"),
        "{fwd}"
    );
    assert!(
        fwd.contains("Delivered-To: rqmuser@roothost.example\n"),
        "{fwd}"
    );

    // The failing program's 100 became a bounce to the envelope sender, in QSBMF.
    let bounce = String::from_utf8_lossy(&maildir_messages(&h.join("Bounces"))[0]).into_owned();
    assert!(
        bounce.contains("Hi. This is the qmail-send program at roothost.example."),
        "{bounce}"
    );
    assert!(
        bounce.contains("<rqmuser-fail@roothost.example>:\nthe program refuses this message\n"),
        "{bounce}"
    );
    assert!(bounce.contains("Return-Path: <>\n"), "{bounce}");
    assert!(log.iter().any(|l| l.starts_with("bounce msg ")), "{log:#?}");
}
