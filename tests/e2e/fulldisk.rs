//! Full file systems under the whole mail system (root only: they mount small tmpfs):
//! the queue's file system full while qmail-smtpd takes a message (451, nothing
//! half-queued that qmail-send could see), and a full Maildir file system under
//! qmail-send (a deferral, never a bounce; delivered once there is room again).
//!
//! qmail-queue alone on a full queue (exit 53) is queue::full_filesystem_exits_53_and_leaves_nothing;
//! qmail-local alone on a full Maildir/mbox is local::full_disk_defers_and_leaves_no_partial_mail.

use crate::relsys::{
    System, chown_tree, mail_home, maildir_messages, queue_empty, user_cmd, wait_until, walk,
};
use rqmail_tests::home::Tmpfs;
use rqmail_tests::{is_root, run_with_input};
use std::fs;
use std::path::Path;

/// One SMTP session on pipes (as the single-user runner) sending one message of `body`;
/// returns the reply to the final dot.
fn smtp_send(home: &Path, body: &[u8]) -> String {
    let mut input =
        b"HELO c\r\nMAIL FROM:<a@far.example>\r\nRCPT TO:<joe@testhost.example>\r\nDATA\r\n"
            .to_vec();
    input.extend_from_slice(body);
    input.extend_from_slice(b".\r\nQUIT\r\n");
    let (code, out, _) = run_with_input(user_cmd(home, &home.join("bin/qmail-smtpd")), &input);
    assert_eq!(code, 0);
    let text = String::from_utf8(out).expect("ascii");
    text.lines().nth(5).unwrap_or_default().to_string()
}

fn big_body(kib: usize) -> Vec<u8> {
    let mut b = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..kib * 16 {
        b.extend_from_slice(&[b'y'; 62]);
        b.extend_from_slice(b"\r\n");
    }
    b
}

#[test]
fn full_queue_filesystem_gives_451_and_qmail_send_sees_nothing() {
    if !is_root() {
        eprintln!("full_queue_filesystem_gives_451_and_qmail_send_sees_nothing: needs root");
        return;
    }
    let h = mail_home();
    let _m = Tmpfs::mount_on(&h.queue(), "size=256k,mode=0755");
    qmail_queue::create_queue(&h.queue(), &control::Ids::single_user()).expect("queue");
    chown_tree(&h.queue());
    let sys = System::start(h.path());

    // A message larger than the file system: qmail-queue runs out of room mid-message.
    let reply = smtp_send(h.path(), &big_body(1024));
    assert_eq!(reply, "451 qq write error or disk full (#4.3.0)");
    // The file system filled up before the message even started.
    let filler = h.queue().join("filler");
    let _ = fs::write(&filler, vec![0u8; 512 * 1024]);
    let reply = smtp_send(h.path(), b"Subject: small\r\n\r\nsmall\r\n");
    assert_eq!(reply, "451 qq write error or disk full (#4.3.0)");
    let mut left = Vec::new();
    for sub in ["pid", "mess", "intd", "todo", "info", "local", "remote"] {
        walk(&h.queue().join(sub), &mut left);
    }
    assert!(left.is_empty(), "half-queued files left: {left:?}");

    // Room again: the next message goes through, and it is the only one qmail-send saw.
    fs::remove_file(&filler).expect("rm filler");
    let reply = smtp_send(h.path(), b"Subject: small\r\n\r\nsmall\r\n");
    assert!(reply.starts_with("250 ok "), "{reply}");
    let md = h.path().join("alias/Maildir");
    wait_until("the small message delivered", || {
        !maildir_messages(&md).is_empty() && queue_empty(h.path())
    });
    let log = sys.lines();
    assert_eq!(sys.terminate(), Some(0));
    assert_eq!(
        log.iter().filter(|l| l.starts_with("new msg ")).count(),
        1,
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.starts_with("warning:") || l.starts_with("alert:")),
        "{log:#?}"
    );
    let mails = maildir_messages(&md);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].ends_with(b"Subject: small\n\nsmall\n"));
}

#[test]
fn full_maildir_filesystem_defers_then_delivers_once_there_is_room() {
    if !is_root() {
        eprintln!("full_maildir_filesystem_defers_then_delivers_once_there_is_room: needs root");
        return;
    }
    let h = mail_home();
    let md = h.path().join("alias/Maildir");
    let m = Tmpfs::mount_on(&md, "size=64k,mode=0755");
    for d in ["tmp", "new", "cur"] {
        fs::create_dir(md.join(d)).expect("maildir");
    }
    chown_tree(&md);
    let sys = System::start(h.path());
    let reply = smtp_send(h.path(), &big_body(256));
    assert!(reply.starts_with("250 ok "), "{reply}");
    wait_until("a deferral", || {
        sys.lines().iter().any(|l| l.contains(": deferral: "))
    });
    assert!(maildir_messages(&md).is_empty());
    assert_eq!(
        fs::read_dir(md.join("tmp")).expect("tmp").count(),
        0,
        "a partial file was left in tmp/"
    );
    assert!(!queue_empty(h.path()), "the message must stay queued");

    // Room again; ALRM makes qmail-send retry now instead of at the next retry time.
    m.remount("size=4m");
    let pid = sys.pid();
    wait_until("the delivery after the disk got room", || {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGALRM);
        std::thread::sleep(std::time::Duration::from_millis(200));
        !maildir_messages(&md).is_empty() && queue_empty(h.path())
    });
    let log = sys.lines();
    assert_eq!(sys.terminate(), Some(0));
    assert!(
        !log.iter()
            .any(|l| l.contains(": failure: ") || l.starts_with("bounce msg ")),
        "a full disk must never bounce: {log:#?}"
    );
    let mails = maildir_messages(&md);
    assert_eq!(mails.len(), 1, "delivered exactly once");
    let body = String::from_utf8_lossy(&mails[0]);
    assert!(body.contains("Subject: big\n\n"), "{body}");
    assert_eq!(
        body.matches(&"y".repeat(62)).count(),
        256 * 16,
        "the whole message arrived"
    );
    assert_eq!(fs::read_dir(md.join("tmp")).expect("tmp").count(), 0);
}
