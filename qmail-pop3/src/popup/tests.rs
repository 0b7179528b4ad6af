use super::*;
use crate::command::MAX_LINE;
use proptest::prelude::*;

fn cfg(stls: Stls, plaintext: bool) -> PopupConfig {
    PopupConfig {
        timestamp: b"<42.1700000000@pop.example>".to_vec(),
        stls,
        plaintext_passwords: plaintext,
    }
}

/// Feeds `input` until an event; returns (output, event, bytes used).
fn run(p: &mut Popup, input: &[u8]) -> (String, Option<Event>, usize) {
    let used = p.feed(input);
    let out = String::from_utf8(p.take_output()).unwrap();
    (out, p.event().cloned(), used)
}

fn login(user: &str, pass: &str) -> Option<Event> {
    Some(Event::Login {
        user: user.as_bytes().to_vec(),
        pass: pass.as_bytes().to_vec(),
    })
}

#[test]
fn netqmail_dialogue_when_passwords_are_allowed() {
    let mut p = Popup::new(cfg(Stls::NotConfigured, true));
    p.greet();
    assert_eq!(p.take_output(), b"+OK <42.1700000000@pop.example>\r\n");
    let (out, ev, _) = run(
        &mut p,
        b"PASS x\r\nUSER\r\nuser  joe \r\nnoop\r\nSTAT\r\nPASS\r\nXYZZY\r\nPASS  se cret\r\nNOOP\r\n",
    );
    assert_eq!(
        out,
        "-ERR USER first\r\n-ERR syntax error\r\n+OK \r\n+OK \r\n-ERR authorization first\r\n\
         -ERR syntax error\r\n-ERR authorization first\r\n"
    );
    // leading spaces skipped, trailing ones kept, as netqmail
    assert_eq!(ev, login("joe ", "se cret"));
}

#[test]
fn apop_and_quit() {
    let mut p = Popup::new(cfg(Stls::NotConfigured, true));
    let (out, ev, _) = run(
        &mut p,
        b"APOP\r\nAPOP joe\r\nAPOP joe  c4c9334bac560ecc979e58001b3e22fb\r\n",
    );
    assert_eq!(out, "-ERR syntax error\r\n-ERR syntax error\r\n");
    // one space separates; the rest is the digest, spaces and all
    assert_eq!(ev, login("joe", " c4c9334bac560ecc979e58001b3e22fb"));

    let mut p = Popup::new(cfg(Stls::NotConfigured, true));
    let (out, ev, used) = run(&mut p, b"QUIT\r\nNOOP\r\n");
    assert_eq!((out.as_str(), ev, used), ("+OK \r\n", Some(Event::Quit), 6));
}

#[test]
fn no_password_before_tls() {
    let mut p = Popup::new(cfg(Stls::Offered, false));
    assert!(p.stls_offered() && !p.passwords_allowed());
    let (out, ev, used) = run(
        &mut p,
        b"CAPA\r\nUSER joe\r\nPASS secret\r\nAPOP joe d\r\nSTLS\r\nUSER joe\r\n",
    );
    assert_eq!(
        out,
        "+OK capability list follows\r\nTOP\r\nUIDL\r\nSTLS\r\n.\r\n\
         -ERR STLS first\r\n-ERR STLS first\r\n-ERR STLS first\r\n+OK begin TLS\r\n"
    );
    assert_eq!(ev, Some(Event::StartTls));
    // the input behind STLS is not taken
    assert_eq!(used, 47);
    p.take_event();
    p.tls_started();
    let (out, ev, _) = run(&mut p, b"CAPA\r\nSTLS\r\nUSER joe\r\nPASS secret\r\n");
    assert_eq!(
        out,
        "+OK capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\n.\r\n\
         -ERR TLS already active\r\n+OK \r\n"
    );
    assert_eq!(ev, login("joe", "secret"));
}

#[test]
fn tls_forgets_the_user() {
    let mut p = Popup::new(cfg(Stls::Offered, true));
    let (out, ev, _) = run(&mut p, b"USER eve\r\nSTLS\r\n");
    assert_eq!(out, "+OK \r\n+OK begin TLS\r\n");
    assert_eq!(ev, Some(Event::StartTls));
    p.take_event();
    p.tls_started();
    let (out, ev, _) = run(&mut p, b"PASS x\r\n");
    assert_eq!((out.as_str(), ev), ("-ERR USER first\r\n", None));
}

#[test]
fn stls_without_a_certificate() {
    // not configured: as netqmail, an unknown command
    let mut p = Popup::new(cfg(Stls::NotConfigured, false));
    let (out, _, _) = run(&mut p, b"STLS\r\nCAPA\r\nUSER joe\r\n");
    assert_eq!(
        out,
        "-ERR authorization first\r\n+OK capability list follows\r\nTOP\r\nUIDL\r\n.\r\n\
         -ERR TLS required but not configured\r\n"
    );
    // configured but unusable
    let mut p = Popup::new(cfg(Stls::Broken, true));
    let (out, ev, _) = run(&mut p, b"STLS\r\nCAPA\r\n");
    assert_eq!(
        out,
        "-ERR TLS not available\r\n+OK capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\n.\r\n"
    );
    assert_eq!(ev, None);
}

#[test]
fn lines_and_nuls() {
    let mut p = Popup::new(cfg(Stls::NotConfigured, true));
    // a NUL ends the line: the password is what comes before it
    let (out, ev, _) = run(&mut p, b"USER jo\0e\r\nPASS pw\0rest\n");
    assert_eq!(out, "+OK \r\n");
    assert_eq!(ev, login("jo", "pw"));

    let mut p = Popup::new(cfg(Stls::NotConfigured, true));
    let (out, ev, _) = run(&mut p, &vec![b'a'; MAX_LINE + 1]);
    assert_eq!(
        (out.as_str(), ev),
        ("-ERR line too long\r\n", Some(Event::Quit))
    );
}

proptest! {
    #[test]
    fn any_input_gets_pop3_replies(input in proptest::collection::vec(prop::sample::select(
        b"abc \r\n\0USERPASSAPOPCAPASTLSQUITNOOPuser".to_vec()), 0..300),
                                   stls in prop::sample::select(vec![Stls::NotConfigured, Stls::Broken, Stls::Offered]),
                                   plaintext in any::<bool>()) {
        let mut p = Popup::new(cfg(stls, plaintext));
        let used = p.feed(&input);
        prop_assert!(used <= input.len());
        let out = p.take_output();
        let text = String::from_utf8(out).unwrap();
        for l in text.split_terminator("\r\n") {
            prop_assert!(l.starts_with("+OK") || l.starts_with("-ERR") || ["TOP", "UIDL", "USER", "STLS", "."].contains(&l), "{l:?}");
        }
        match p.event() {
            Some(Event::Login { user, pass }) => {
                prop_assert!(plaintext);
                prop_assert!(!user.contains(&0) && !pass.contains(&0));
            }
            Some(Event::StartTls) => prop_assert_eq!(stls, Stls::Offered),
            Some(Event::Quit) | None => {}
        }
    }
}
