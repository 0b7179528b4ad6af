use super::*;
use proptest::prelude::*;
use proptest::strategy::Strategy as PStrategy;
use std::collections::HashMap;

/// 26 Sep 1995 04:46:53 UTC.
const T: u64 = 812_090_813;

fn cfg_with(env: &[(&str, &str)], controls: &[(&str, &str)]) -> Config {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("control")).unwrap();
    for (n, v) in controls {
        std::fs::write(home.path().join("control").join(n), v).unwrap();
    }
    let map: HashMap<String, Vec<u8>> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    Config::load(&|k| map.get(k).cloned(), home.path(), T, 4242).unwrap()
}

fn cfg() -> Config {
    cfg_with(&[("USER", "joe")], &[("me", "silverton.berkeley.edu\n")])
}

fn args(cfg: &Config, a: &[&str]) -> Result<Options, Fatal> {
    parse_args(
        b"qmail-inject",
        a.iter().map(OsString::from).collect(),
        &cfg.rewriter,
    )
}

/// qmail-inject -n ARGS on `input`: (output, envelope).
fn inject(cfg: &Config, a: &[&str], input: &[u8]) -> Result<(String, Finished), Fatal> {
    let mut all = vec!["-n"];
    all.extend_from_slice(a);
    let opts = args(cfg, &all)?;
    let (out, fin) = process(cfg, &opts, input, || Ok(Vec::new()))?;
    Ok((String::from_utf8_lossy(&out).into_owned(), fin))
}

fn out(cfg: &Config, a: &[&str], input: &str) -> String {
    inject(cfg, a, input.as_bytes()).unwrap().0
}

fn rcpts(f: &Finished) -> Vec<String> {
    f.recipients
        .iter()
        .map(|r| String::from_utf8(r.clone()).unwrap())
        .collect()
}

#[test]
fn adds_missing_fields_byte_for_byte() {
    let c = cfg();
    assert_eq!(
        out(&c, &[], "Subject: hi\nTo: fred\n\nbody\n"),
        "Return-Path: <joe@silverton.berkeley.edu>\n\
         Date: 26 Sep 1995 04:46:53 -0000\n\
         Message-ID: <19950926044653.4242.qmail@silverton.berkeley.edu>\n\
         From: joe@silverton.berkeley.edu\n\
         Subject: hi\n\
         To: fred@silverton.berkeley.edu\n\
         \n\
         body\n"
    );
    // Fields already there are kept, and nothing is added for them.
    assert_eq!(
        out(
            &c,
            &[],
            "Date: yesterday\nMessage-ID: <x@y>\nFrom: me@x.y\nCc: a@b.c\n\nb"
        ),
        "Return-Path: <joe@silverton.berkeley.edu>\n\
         Date: yesterday\nMessage-ID: <x@y>\nFrom: me@x.y\nCc: a@b.c\n\nb\n"
    );
    // No To or Cc: the empty group.
    let (o, f) = inject(&c, &["r@x.y"], b"Subject: s\n\nb\n").unwrap();
    assert!(
        o.contains("\nCc: recipient list not shown: ;\nSubject: s\n"),
        "{o}"
    );
    assert_eq!(rcpts(&f), ["r@x.y"]);
}

#[test]
fn recipients_from_header_and_bcc_removed() {
    let c = cfg();
    let msg = "To: a, \"B\" <b@x.y>\nCc: c@d.e\nBcc: hidden\nApparently-To: app\nContent-Length: 99\n\nbody\n";
    let (o, f) = inject(&c, &[], msg.as_bytes()).unwrap();
    assert!(!o.contains("Bcc"), "{o}");
    assert!(!o.contains("hidden"), "{o}");
    assert!(!o.contains("Content-Length"), "{o}");
    assert!(
        o.contains("Apparently-To: app@silverton.berkeley.edu\n"),
        "{o}"
    );
    // netqmail walks each field from right to left.
    assert_eq!(
        rcpts(&f),
        [
            "b@x.y",
            "a@silverton.berkeley.edu",
            "c@d.e",
            "hidden@silverton.berkeley.edu",
            "app@silverton.berkeley.edu"
        ]
    );
    // With arguments the header is not used ...
    let (_, f) = inject(&c, &["x@y.z"], msg.as_bytes()).unwrap();
    assert_eq!(rcpts(&f), ["x@y.z"]);
    // ... unless -H; -h ignores the arguments.
    let (_, f) = inject(&c, &["-H", "x@y.z"], msg.as_bytes()).unwrap();
    assert_eq!(rcpts(&f).len(), 6);
    assert_eq!(rcpts(&f)[0], "x@y.z");
    let (_, f) = inject(&c, &["-h", "x@y.z"], msg.as_bytes()).unwrap();
    assert_eq!(rcpts(&f).len(), 5);
    // -a with no arguments: nobody.
    let (_, f) = inject(&c, &["-a"], msg.as_bytes()).unwrap();
    assert!(f.recipients.is_empty());
}

#[test]
fn resent_messages() {
    let c = cfg();
    let msg = "From: orig@a.b\nTo: orig-rcpt@a.b\nDate: old\nMessage-ID: <old@a.b>\nResent-To: new\nResent-Bcc: secret@x.y\n\nb\n";
    let (o, f) = inject(&c, &[], msg.as_bytes()).unwrap();
    assert_eq!(
        o,
        "Return-Path: <joe@silverton.berkeley.edu>\n\
         Resent-Date: 26 Sep 1995 04:46:53 -0000\n\
         Resent-Message-ID: <19950926044653.4242.qmail@silverton.berkeley.edu>\n\
         Resent-From: joe@silverton.berkeley.edu\n\
         From: orig@a.b\nTo: orig-rcpt@a.b\nDate: old\nMessage-ID: <old@a.b>\n\
         Resent-To: new@silverton.berkeley.edu\n\nb\n"
    );
    assert_eq!(rcpts(&f), ["new@silverton.berkeley.edu", "secret@x.y"]);
    let (o, f) = inject(&c, &[], b"Resent-Bcc: s@x.y\n\nb\n").unwrap();
    assert!(
        o.contains("Resent-Cc: recipient list not shown: ;\n"),
        "{o}"
    );
    assert!(!o.contains("\nCc:"), "{o}");
    assert_eq!(rcpts(&f), ["s@x.y"]);
}

#[test]
fn return_path_sets_sender_and_is_removed() {
    let c = cfg();
    let (o, f) = inject(&c, &["r@x.y"], b"Return-Path: <bounce@x.y>\nTo: t\n\nb\n").unwrap();
    assert_eq!(f.sender, b"bounce@x.y");
    assert!(o.starts_with("Return-Path: <bounce@x.y>\nDate:"), "{o}");
    assert_eq!(o.matches("Return-Path").count(), 1);
    let (_, f) = inject(&c, &["r@x.y"], b"Return-Path: <>\n\nb\n").unwrap();
    assert_eq!(f.sender, b"");
    // -f wins over Return-Path; QMAILINJECT=s ignores Return-Path.
    let (_, f) = inject(
        &c,
        &["-f", "s", "r@x.y"],
        b"Return-Path: <bounce@x.y>\n\nb\n",
    )
    .unwrap();
    assert_eq!(f.sender, b"s@silverton.berkeley.edu");
    let cs = cfg_with(
        &[("USER", "joe"), ("QMAILINJECT", "s")],
        &[("me", "h.example\n")],
    );
    let (o, f) = inject(&cs, &["r@x.y"], b"Return-Path: <bounce@x.y>\n\nb\n").unwrap();
    assert_eq!(f.sender, b"joe@h.example");
    assert!(!o.contains("bounce"));
}

#[test]
fn environment_names() {
    let c = cfg_with(
        &[
            ("QMAILUSER", "qu"),
            ("MAILUSER", "mu"),
            ("USER", "u"),
            ("QMAILNAME", "Q. Name"),
            ("NAME", "n"),
            ("QMAILHOST", "qh.example"),
            ("MAILHOST", "mh.example"),
        ],
        &[("me", "me.example\n")],
    );
    let (o, f) = inject(&c, &["r@x.y"], b"\n").unwrap();
    assert!(o.contains("\nFrom: \"Q. Name\" <qu@qh.example>\n"), "{o}");
    assert_eq!(f.sender, b"qu@qh.example");

    let c = cfg_with(
        &[
            ("LOGNAME", "ln"),
            ("MAILNAME", "M N"),
            ("QMAILINJECT", "c"),
            ("QMAILSUSER", "bounces"),
            ("QMAILSHOST", "b.example"),
        ],
        &[("me", "me.example\n")],
    );
    let (o, f) = inject(&c, &["r@x.y"], b"\n").unwrap();
    assert!(o.contains("\nFrom: ln@me.example (M N)\n"), "{o}");
    assert_eq!(f.sender, b"bounces@b.example");

    let c = cfg_with(&[], &[("me", "me.example\n")]);
    let (o, _) = inject(&c, &["r@x.y"], b"\n").unwrap();
    assert!(o.contains("\nFrom: anonymous@me.example\n"), "{o}");
    let c = cfg_with(&[("USER", "a b")], &[("me", "me.example\n")]);
    let (o, f) = inject(&c, &["r@x.y"], b"\n").unwrap();
    assert!(o.contains("\nFrom: \"a b\"@me.example\n"), "{o}");
    assert_eq!(f.sender, b"a b@me.example");
}

#[test]
fn verp_flags_and_deletions() {
    let c = cfg_with(
        &[("USER", "joe"), ("QMAILINJECT", "rm")],
        &[("me", "h.example\n")],
    );
    let (_, f) = inject(&c, &["r@x.y"], b"\n").unwrap();
    assert_eq!(f.sender, b"joe-812090813.4242-@h.example-@[]");
    let c = cfg_with(
        &[("USER", "joe"), ("QMAILINJECT", "fi")],
        &[("me", "h.example\n")],
    );
    let (o, _) = inject(&c, &["r@x.y"], b"From: x@y.z\nMessage-ID: <a@b>\n\n").unwrap();
    assert!(!o.contains("x@y.z") && !o.contains("<a@b>"), "{o}");
    assert!(o.contains("\nFrom: joe@h.example\n"), "{o}");
    assert!(
        o.contains("\nMessage-ID: <19950926044653.4242.qmail@h.example>\n"),
        "{o}"
    );
}

#[test]
fn control_files_and_overrides() {
    let c = cfg_with(
        &[("USER", "joe")],
        &[
            ("me", "me.example\n"),
            ("defaulthost", "dh\n"),
            ("defaultdomain", "dd.example\n"),
            ("plusdomain", "pd.example\n"),
            ("idhost", "id.example\n"),
        ],
    );
    let (o, f) = inject(&c, &["a", "b@c", "d@e+"], b"\n").unwrap();
    assert_eq!(
        rcpts(&f),
        ["a@dh.dd.example", "b@c.dd.example", "d@e.pd.example"]
    );
    assert!(
        o.contains("Message-ID: <19950926044653.4242.qmail@id.example>"),
        "{o}"
    );
    let c = cfg_with(
        &[
            ("USER", "joe"),
            ("QMAILDEFAULTHOST", "x.example"),
            ("QMAILDEFAULTDOMAIN", "y.example"),
            ("QMAILPLUSDOMAIN", "z.example"),
            ("QMAILIDHOST", "i.example"),
        ],
        &[("me", "me.example\n"), ("defaulthost", "dh\n")],
    );
    let (o, f) = inject(&c, &["a", "b@c", "d@e+"], b"\n").unwrap();
    assert_eq!(rcpts(&f), ["a@x.example", "b@c.y.example", "d@e.z.example"]);
    assert!(o.contains("qmail@i.example>"), "{o}");
    // No me: netqmail's literal defaults.
    let c = cfg_with(&[("USER", "joe")], &[]);
    let (o, f) = inject(&c, &["a"], b"\n").unwrap();
    assert_eq!(rcpts(&f), ["a@defaulthost.defaultdomain"]);
    assert!(o.contains("qmail@idhost>"), "{o}");
}

#[test]
fn unreadable_control_is_temporary() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("control/defaulthost")).unwrap();
    std::fs::write(home.path().join("control/me"), "me.example\n").unwrap();
    let e = Config::load(&|_| None, home.path(), T, 1).unwrap_err();
    assert_eq!(e.code, Exit::TEMP);
    let text = String::from_utf8(e.line("qmail-inject")).unwrap();
    assert!(
        text.starts_with("qmail-inject: fatal: read error: unable to read control/defaulthost: "),
        "{text}"
    );
    // A control value that does not parse is a permanent error, as in netqmail.
    std::fs::remove_dir(home.path().join("control/defaulthost")).unwrap();
    std::fs::write(home.path().join("control/defaulthost"), "a(b\n").unwrap();
    let e = Config::load(&|_| None, home.path(), T, 1).unwrap_err();
    assert_eq!(e.code, Exit::PERM);
    assert_eq!(e.msg, b"unable to parse this line:\n@a(b");
}

#[test]
fn options() {
    let c = cfg();
    let o = args(&c, &["-n", "-f", "x", "a", "-n"]).unwrap();
    assert!(!o.queue);
    assert_eq!(o.sender.as_deref(), Some(&b"x@silverton.berkeley.edu"[..]));
    assert_eq!(o.strategy, super::Strategy::Args);
    assert_eq!(o.recipients.len(), 2);
    assert_eq!(o.recipients[1], b"-n@silverton.berkeley.edu");
    let o = args(&c, &["-nNfs@t.u"]).unwrap();
    assert!(o.queue);
    assert_eq!(o.sender.as_deref(), Some(&b"s@t.u"[..]));
    assert_eq!(o.strategy, super::Strategy::Header);
    let o = args(&c, &["-f", ""]).unwrap();
    assert_eq!(o.sender.as_deref(), Some(&b""[..]));
    let e = args(&c, &["-x"]).unwrap_err();
    assert_eq!((e.code, e.bare), (Exit::PERM, true));
    assert_eq!(
        e.line("qmail-inject"),
        b"qmail-inject: illegal option -- x\n"
    );
    let e = args(&c, &["-f"]).unwrap_err();
    assert_eq!(
        e.line("qmail-inject"),
        b"qmail-inject: option requires an argument -- f\n"
    );
    let e = args(&c, &["a@(b"]).unwrap_err();
    assert_eq!(e.code, Exit::PERM);
    assert_eq!(e.msg, b"unable to parse address: a@(b");
    let o = args(&c, &["--", "-a"]).unwrap();
    assert_eq!(o.recipients, [b"-a@silverton.berkeley.edu".to_vec()]);
}

#[test]
fn mail_followup_to() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lists");
    std::fs::write(&f, "# lists\nList@X.Y\n").unwrap();
    let c = cfg_with(
        &[("USER", "joe"), ("QMAILMFTFILE", f.to_str().unwrap())],
        &[("me", "h.example\n")],
    );
    let o = out(&c, &[], "To: list@x.y, \"a b\"@c.d\nCc: e\n\n");
    assert!(
        o.contains("\nMail-Followup-To: e@h.example,\n  list@x.y,\n  \"a b\"@c.d\nTo:"),
        "{o}"
    );
    let o = out(&c, &[], "To: other@x.y\n\n");
    assert!(!o.contains("Mail-Followup-To"), "{o}");
    let o = out(&c, &[], "To: list@x.y\nMail-Followup-To: me@x.y\n\n");
    assert_eq!(o.matches("Mail-Followup-To").count(), 1, "{o}");
}

#[test]
fn header_errors_are_permanent() {
    let c = cfg();
    let e = inject(&c, &[], b"To: (open\n\n").unwrap_err();
    assert_eq!(e.code, Exit::PERM);
    assert_eq!(
        e.line("qmail-inject"),
        b"qmail-inject: fatal: unable to parse this line:\nTo: (open\n"
    );
    let mut c = cfg();
    c.limits.recipients = 3;
    let e = inject(&c, &[], b"To: a, b\nCc: c, d\n\n").unwrap_err();
    assert_eq!(e.msg, b"too many recipients");
    assert!(inject(&c, &[], b"To: a, b\nCc: c\n\n").is_ok());
    // The header as written counts too: completed addresses are longer.
    c.limits.recipients = 100;
    c.limits.header = 60;
    let e = inject(&c, &[], b"From: a, b, c, d, e, f, g\n\n").unwrap_err();
    assert_eq!(e.msg, b"message header longer than 60 bytes");
    c.limits.field = 20;
    let e = inject(&c, &[], b"Subject: 0123456789012345678\n\n").unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_slice()),
        (Exit::PERM, &b"header field longer than 20 bytes"[..])
    );
}

#[test]
fn nul_ends_an_envelope_address() {
    let c = cfg();
    let (_, f) = inject(&c, &[], b"To: a\0b@c.d\n\n").unwrap();
    assert_eq!(rcpts(&f), ["a"]);
}

fn arb_env() -> impl PStrategy<Value = Vec<(&'static str, &'static str)>> {
    prop::sample::subsequence(
        vec![
            ("QMAILINJECT", "c"),
            ("QMAILNAME", "Some One"),
            ("QMAILHOST", "h.example"),
            ("QMAILUSER", "u.v"),
            ("QMAILDEFAULTHOST", "dh+"),
        ],
        0..3,
    )
}

/// Address lists as people write them.
fn arb_list() -> impl PStrategy<Value = String> {
    let word = "[a-z][a-z0-9+-]{0,6}";
    let addr = prop_oneof![
        word.prop_map(|w| w),
        (word, word).prop_map(|(a, b)| format!("{a}@{b}")),
        (word, word, word).prop_map(|(a, b, c)| format!("{a}@{b}.{c}")),
        (word, word).prop_map(|(a, b)| format!("\"{a} {b}\"@{b}.example")),
        (word, word).prop_map(|(a, b)| format!("{a}@[10.0.0.{}]", b.len())),
    ];
    let mailbox = prop_oneof![
        addr.clone(),
        (addr.clone(), word).prop_map(|(a, c)| format!("{a} ({c})")),
        (word, addr.clone()).prop_map(|(n, a)| format!("\"{n}\" <{a}>")),
        (word, addr.clone()).prop_map(|(n, a)| format!("{n} <@route.example:{a}>")),
        Just("<>".to_string()),
    ];
    let item = prop_oneof![
        4 => mailbox.clone(),
        1 => (word, prop::collection::vec(mailbox.clone(), 0..3))
            .prop_map(|(g, m)| format!("{g}: {};", m.join(", "))),
    ];
    prop::collection::vec(item, 1..8).prop_map(|v| v.join(", "))
}

proptest! {
    #[test]
    fn parser_never_panics(s in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(t) = rfc822::parse_tokens(&s) {
            let _ = rfc822::unparse_tokens(&t, LINELEN);
            let _ = rfc822::unquote_tokens(&t);
            let _ = rfc822::addrlist(&t, &mut |a| {
                let r = Rewriter::new(b"h", b"d.example", b"p.example").unwrap();
                r.rewrite(a);
            });
        }
    }

    #[test]
    fn inject_never_panics(s in prop::collection::vec(any::<u8>(), 0..400), env in arb_env(), verp in any::<bool>()) {
        let mut env = env;
        if verp {
            env.push(("QMAILINJECT", "rmsfi"));
        }
        let c = cfg_with(&env, &[("me", "me.example\n")]);
        if let Ok((o, f)) = inject(&c, &[], &s) {
            prop_assert!(o.ends_with('\n') || o.is_empty());
            for r in &f.recipients {
                prop_assert!(!r.contains(&0));
            }
        }
    }

    #[test]
    fn header_text_never_panics(s in "([A-Za-z-]{1,12}:[ -~\t]{0,40}\n( [ -~]{0,20}\n)?){0,5}(\n[ -~]{0,20})?") {
        let c = cfg();
        let _ = inject(&c, &[], s.as_bytes());
    }

    /// Feeding qmail-inject's output back in changes nothing: every address is already
    /// complete, every field already present, and the sender comes back from
    /// Return-Path.
    #[test]
    fn rewriting_is_idempotent(to in arb_list(), cc in arb_list(), from in arb_list(), env in arb_env()) {
        let c = cfg_with(&env, &[("me", "me.example\n")]);
        let msg = format!("From: {from}\nTo: {to}\nCc: {cc}\nSubject: x\n\nbody\n");
        let (once, f1) = inject(&c, &[], msg.as_bytes()).unwrap();
        let (twice, f2) = inject(&c, &[], once.as_bytes()).unwrap();
        prop_assert_eq!(&once, &twice);
        prop_assert_eq!(f1.sender, f2.sender);
        prop_assert_eq!(f1.recipients, f2.recipients);
        for line in once.lines() {
            prop_assert!(line.len() <= LINELEN || !line.contains(", "), "{}", line);
        }
    }

    #[test]
    fn arguments_complete_like_the_header(a in "[a-z]{1,5}(@[a-z]{1,5}(\\.[a-z]{1,3})?\\+?)?") {
        let c = cfg();
        let (_, f) = inject(&c, &[&a], b"\n").unwrap();
        let (_, g) = inject(&c, &[], format!("To: {a}\n\n").as_bytes()).unwrap();
        prop_assert_eq!(f.recipients, g.recipients);
    }
}
