use super::*;
use proptest::prelude::*;

const DAY: u64 = 86_400;
/// 2020-01-01 00:01:00 UTC, the time of postsrsd's test vectors.
const T2020: u64 = 1_577_836_860;
/// 2023-11-14 22:13:20 UTC (timestamp `G3`), the time of the Mail::SRS vectors below.
const T2023: u64 = 1_700_000_000;

fn srs(secret: &str) -> Srs {
    Srs::new(vec![secret.into()], Params::default()).unwrap()
}

fn with(secrets: &[&str], p: Params) -> Srs {
    Srs::new(secrets.iter().map(|s| s.as_bytes().to_vec()).collect(), p).unwrap()
}

fn fwd(s: &Srs, sender: &str, domain: &str, now: u64) -> Option<String> {
    s.forward(sender.as_bytes(), domain.as_bytes(), now)
        .map(|v| String::from_utf8(v).unwrap())
}

fn rev(s: &Srs, addr: &str, now: u64) -> Result<String, ReverseError> {
    s.reverse_address(addr.as_bytes(), now)
        .map(|v| String::from_utf8(v).unwrap())
}

/// postsrsd's published unit-test vectors (tests/unit/test_srs2.c: secret "tops3cr3t",
/// faketime 1577836860), which follow libsrs2.
#[test]
fn postsrsd_vectors() {
    let s = srs("tops3cr3t");
    assert_eq!(
        fwd(&s, "test@otherdomain.com", "example.com", T2020).as_deref(),
        Some("SRS0=vmyz=2W=otherdomain.com=test@example.com")
    );
    assert_eq!(fwd(&s, "test@example.com", "example.com", T2020), None);
    assert_eq!(fwd(&s, "foo", "example.com", T2020), None);
    assert_eq!(
        rev(&s, "SRS0=vmyz=2W=otherdomain.com=test@example.com", T2020).as_deref(),
        Ok("test@otherdomain.com")
    );
    assert_eq!(
        rev(&s, "test@example.com", T2020),
        Err(ReverseError::NotSrs)
    );
}

/// Addresses made by Mail::SRS 0.31 (Debian's libmail-srs-perl, Guarded, its forward()
/// with the timestamp of the stated time), and by Debian's postsrsd 1.10 for the SRS1
/// forms, which agree.
#[test]
fn mail_srs_vectors() {
    let s = srs("tops3cr3t");
    // An SRS0 sender forwarded again becomes SRS1; an SRS1 sender keeps its payload.
    assert_eq!(
        fwd(
            &s,
            "SRS0=vmyz=2W=otherdomain.com=test@example.org",
            "example.com",
            T2020
        )
        .as_deref(),
        Some("SRS1=ve2h=example.org==vmyz=2W=otherdomain.com=test@example.com")
    );
    assert_eq!(
        fwd(
            &s,
            "SRS1=ve2h=example.org==vmyz=2W=otherdomain.com=test@example.com",
            "example.net",
            T2020
        )
        .as_deref(),
        Some("SRS1=ve2h=example.org==vmyz=2W=otherdomain.com=test@example.net")
    );
    // The SRS1 address reverses to the SRS0 address at the first forwarder.
    assert_eq!(
        rev(
            &s,
            "SRS1=ve2h=example.org==vmyz=2W=otherdomain.com=test@example.com",
            T2020 + 400 * DAY
        )
        .as_deref(),
        Ok("SRS0=vmyz=2W=otherdomain.com=test@example.org")
    );
    // Hashes with + (base64's standard alphabet), mixed case (hashed lowercased, kept in
    // the address), a secret with spaces.
    let s = srs("secret with spaces");
    for (sender, want) in [
        (
            "Joe.User@Mixed.Example.ORG",
            "SRS0=R3OE=G3=Mixed.Example.ORG=Joe.User@srs.example.net",
        ),
        ("a@b.c", "SRS0=4bk+=G3=b.c=a@srs.example.net"),
        (
            "x1@host.example",
            "SRS0=D+N9=G3=host.example=x1@srs.example.net",
        ),
        (
            "x2@host.example",
            "SRS0=6Wdk=G3=host.example=x2@srs.example.net",
        ),
        (
            "x5@host.example",
            "SRS0=AQ+f=G3=host.example=x5@srs.example.net",
        ),
    ] {
        assert_eq!(
            fwd(&s, sender, "srs.example.net", T2023).as_deref(),
            Some(want)
        );
        assert_eq!(rev(&s, want, T2023).as_deref(), Ok(sender));
    }
    // The longest hash: all of the HMAC.
    let s = with(
        &["k"],
        Params {
            hash_length: 27,
            hash_min: 27,
            ..Params::default()
        },
    );
    assert_eq!(
        fwd(&s, "joe@example.org", "srs.example.net", T2023).as_deref(),
        Some("SRS0=1CXBnAIxUrLaBjzKByhtD+w36Xc=G3=example.org=joe@srs.example.net")
    );
}

#[test]
fn reverse_accepts_what_others_do_to_an_address() {
    let s = srs("secret with spaces");
    let now = T2023;
    // Case smashed by a remote MTA, in tag, hash and timestamp.
    assert_eq!(
        rev(&s, "srs0=4BK+=g3=b.c=a@SRS.example.net", now).as_deref(),
        Ok("a@b.c")
    );
    // postsrsd 2's URL-safe alphabet.
    assert_eq!(rev(&s, "SRS0=4bk-=G3=b.c=a@x", now).as_deref(), Ok("a@b.c"));
    assert_eq!(
        rev(&s, "SRS0=D-N9=G3=host.example=x1@x", now).as_deref(),
        Ok("x1@host.example")
    );
    // Another initial separator (the hash does not cover it).
    assert_eq!(rev(&s, "SRS0+4bk+=G3=b.c=a@x", now).as_deref(), Ok("a@b.c"));
    assert_eq!(rev(&s, "SRS0-4bk+=G3=b.c=a@x", now).as_deref(), Ok("a@b.c"));
    // A longer hash than ours must still be right in every character.
    let long = with(
        &["k"],
        Params {
            hash_length: 27,
            hash_min: 4,
            ..Params::default()
        },
    );
    let short = with(&["k"], Params::default());
    let a = fwd(&short, "joe@example.org", "s.example", now).unwrap();
    assert_eq!(a, "SRS0=1CXB=G3=example.org=joe@s.example");
    assert_eq!(rev(&long, &a, now).as_deref(), Ok("joe@example.org"));
    assert_eq!(
        rev(&short, "SRS0=1CXBn=G3=example.org=joe@s.example", now).as_deref(),
        Ok("joe@example.org")
    );
    assert_eq!(
        rev(&short, "SRS0=1CXBx=G3=example.org=joe@s.example", now),
        Err(ReverseError::BadHash)
    );
}

#[test]
fn forged_tampered_and_expired_addresses_are_refused() {
    let s = srs("tops3cr3t");
    let good = "SRS0=vmyz=2W=otherdomain.com=test@example.com";
    assert!(rev(&s, good, T2020).is_ok());
    for forged in [
        "SRS0=vmyy=2W=otherdomain.com=test@example.com",
        "SRS0=vmyz=2W=otherdomain.com=evil@example.com",
        "SRS0=vmyz=2W=evil.example=test@example.com",
        "SRS0=vmyz=2X=otherdomain.com=test@example.com",
        "SRS0=vmy+=2W=otherdomain.com=test@example.com",
    ] {
        assert_eq!(
            rev(&s, forged, T2020),
            Err(ReverseError::BadHash),
            "{forged}"
        );
    }
    assert_eq!(
        rev(&srs("other secret"), good, T2020),
        Err(ReverseError::BadHash)
    );
    // Valid for 21 days after the day it was made; not before it was made.
    assert!(rev(&s, good, T2020 + 21 * DAY).is_ok());
    assert_eq!(
        rev(&s, good, T2020 + 22 * DAY),
        Err(ReverseError::Expired { max_age: 21 })
    );
    assert_eq!(
        rev(&s, good, T2020 - DAY),
        Err(ReverseError::Expired { max_age: 21 })
    );
    // After a whole cycle of 1024 days the timestamp comes round again (as in libsrs2).
    assert!(rev(&s, good, T2020 + 1024 * DAY).is_ok());
    let week = with(
        &["tops3cr3t"],
        Params {
            max_age: 7,
            ..Params::default()
        },
    );
    assert!(rev(&week, good, T2020 + 7 * DAY).is_ok());
    assert_eq!(
        rev(&week, good, T2020 + 8 * DAY),
        Err(ReverseError::Expired { max_age: 7 })
    );
    // A forged address is called forged, whatever its date.
    assert_eq!(
        rev(
            &s,
            "SRS0=vmyy=2W=otherdomain.com=test@example.com",
            T2020 + 99 * DAY
        ),
        Err(ReverseError::BadHash)
    );
    assert_eq!(
        rev(&s, "SRS0=vmy=2W=otherdomain.com=test@example.com", T2020),
        Err(ReverseError::HashTooShort)
    );
    assert_eq!(
        rev(&s, "SRS0=vmyz=2!=otherdomain.com=test@example.com", T2020),
        Err(ReverseError::BadTimestamp)
    );
    assert_eq!(
        rev(
            &s,
            "SRS1=xxxx=example.org==vmyz=2W=otherdomain.com=test@x",
            T2020
        ),
        Err(ReverseError::BadHash)
    );
}

#[test]
fn secrets_rotate() {
    let old = srs("old secret");
    let a = fwd(&old, "joe@example.org", "s.example", T2023).unwrap();
    let rotated = with(&["new secret", "old secret"], Params::default());
    assert_eq!(rev(&rotated, &a, T2023).as_deref(), Ok("joe@example.org"));
    // New addresses are signed with the first secret only.
    let b = fwd(&rotated, "joe@example.org", "s.example", T2023).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        rev(&srs("new secret"), &b, T2023).as_deref(),
        Ok("joe@example.org")
    );
    assert_eq!(rev(&old, &b, T2023), Err(ReverseError::BadHash));
    assert!(!format!("{rotated:?}").contains("new secret"));
    assert!(format!("{rotated:?}").contains("secrets: 2"));
}

#[test]
fn senders_left_alone() {
    let s = srs("k");
    for sender in [
        "",
        "#@[]",
        "list-owner-@example.org-@[]",
        "nodomain",
        "@example.org",
        "joe@",
        "a@b@example.org",
        "joe@bad=domain",
        "joe@S.Example",
    ] {
        assert_eq!(fwd(&s, sender, "s.example", T2023), None, "{sender:?}");
    }
    // The separator of the addresses made.
    let plus = with(
        &["k"],
        Params {
            separator: b'-',
            ..Params::default()
        },
    );
    let a = fwd(&plus, "joe@example.org", "s.example", T2023).unwrap();
    assert!(a.starts_with("SRS0-"), "{a}");
    assert_eq!(rev(&plus, &a, T2023).as_deref(), Ok("joe@example.org"));
    // An SRS1 sender without its fields is wrapped as a plain address.
    let a = fwd(&s, "SRS1=abcd@x.example", "s.example", T2023).unwrap();
    assert!(a.starts_with("SRS0="), "{a}");
    assert_eq!(rev(&s, &a, T2023).as_deref(), Ok("SRS1=abcd@x.example"));
}

#[test]
fn parsing() {
    assert_eq!(tag(b"SRS0=x"), Some(0));
    assert_eq!(tag(b"srs1-x"), Some(1));
    assert_eq!(tag(b"SRS0"), None);
    assert_eq!(tag(b"SRS2=x"), None);
    assert_eq!(tag(b"SRS0.x"), None);
    assert_eq!(
        parse(b"SRS0=h=TT=host=us=er"),
        Ok(Parsed::Srs0 {
            hash: b"h",
            stamp: b"TT",
            host: b"host",
            user: b"us=er"
        })
    );
    assert_eq!(
        parse(b"SRS1+h=first==x=y"),
        Ok(Parsed::Srs1 {
            hash: b"h",
            host: b"first",
            rest: b"=x=y"
        })
    );
    for (bad, err) in [
        (&b"joe"[..], ReverseError::NotSrs),
        (b"SRS0=", ReverseError::Malformed("timestamp")),
        (b"SRS0=h", ReverseError::Malformed("timestamp")),
        (b"SRS0=h=TT", ReverseError::Malformed("host")),
        (b"SRS0=h=TT=host", ReverseError::Malformed("user")),
        (b"SRS0==TT=host=u", ReverseError::Malformed("hash")),
        (b"SRS0=h==host=u", ReverseError::Malformed("timestamp")),
        (b"SRS0=h=TT==u", ReverseError::Malformed("host")),
        (b"SRS0=h=TT=host=", ReverseError::Malformed("user")),
        (b"SRS1=h", ReverseError::Malformed("host")),
        (b"SRS1=h=host", ReverseError::Malformed("user")),
        (b"SRS1==host=u", ReverseError::Malformed("hash")),
        (b"SRS1=h==u", ReverseError::Malformed("host")),
    ] {
        assert_eq!(parse(bad), Err(err), "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(
        in_extension(b"srs-SRS0=h=TT=a=b"),
        Some(&b"SRS0=h=TT=a=b"[..])
    );
    assert_eq!(in_extension(b"SRS0-h=TT=a=b"), Some(&b"SRS0-h=TT=a=b"[..]));
    assert_eq!(
        in_extension(b"bounces-x-srs1=h=a==b"),
        Some(&b"srs1=h=a==b"[..])
    );
    assert_eq!(in_extension(b"xSRS0=h=TT=a=b"), None);
    assert_eq!(in_extension(b"srs-"), None);
    assert_eq!(in_extension(b""), None);
}

#[test]
fn parameters() {
    let p = Params::default;
    assert_eq!(Srs::new(vec![], p()).unwrap_err(), ParamError::NoSecret);
    assert_eq!(
        Srs::new(vec![b"a".to_vec(), vec![]], p()).unwrap_err(),
        ParamError::EmptySecret
    );
    let k = || vec![b"k".to_vec()];
    for (params, err) in [
        (
            Params {
                hash_length: 3,
                hash_min: 3,
                ..p()
            },
            ParamError::HashLength,
        ),
        (
            Params {
                hash_length: 28,
                ..p()
            },
            ParamError::HashLength,
        ),
        (Params { hash_min: 3, ..p() }, ParamError::HashMin),
        (Params { hash_min: 5, ..p() }, ParamError::HashMin),
        (Params { max_age: 0, ..p() }, ParamError::MaxAge),
        (
            Params {
                max_age: 1001,
                ..p()
            },
            ParamError::MaxAge,
        ),
        (
            Params {
                separator: b'.',
                ..p()
            },
            ParamError::Separator,
        ),
    ] {
        assert_eq!(Srs::new(k(), params).unwrap_err(), err);
    }
}

fn local_part() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"aZ09.-_+=@!#SRS01".to_vec()), 1..40)
}

fn domain() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"abcXYZ09.-".to_vec()), 1..30)
}

proptest! {
    /// Every rewritten sender reverses to itself for the validity, and not after.
    #[test]
    fn forward_then_reverse(user in local_part(), host in domain(), day in 0u64..30_000, secret in prop::collection::vec(any::<u8>(), 1..80)) {
        let s = Srs::new(vec![secret], Params::default()).unwrap();
        let mut sender = user.clone();
        sender.push(b'@');
        sender.extend_from_slice(&host);
        let now = day * DAY + 3600;
        if let Some(a) = s.forward(&sender, b"srs.example", now) {
            prop_assert!(a.ends_with(b"@srs.example"));
            prop_assert!(tag(&a).is_some());
            let back = s.reverse_address(&a, now + 21 * DAY).unwrap();
            match tag(&user) {
                // SRS1 undoes one hop: the SRS0 address at the first forwarder.
                Some(0) => prop_assert_eq!(&back, &sender),
                // An SRS1 sender with its fields keeps its payload; one without is
                // wrapped whole.
                Some(_) => prop_assert!(back == sender || back.starts_with(b"SRS0")),
                _ => {
                    prop_assert_eq!(&back, &sender);
                    prop_assert_eq!(
                        s.reverse_address(&a, now + 22 * DAY),
                        Err(ReverseError::Expired { max_age: 21 })
                    );
                }
            }
        }
    }

    /// The parser never panics and what it finds is part of its input.
    #[test]
    fn parse_any(local in prop::collection::vec(any::<u8>(), 0..200)) {
        let s = Srs::new(vec![b"k".to_vec()], Params::default()).unwrap();
        if let Ok(p) = parse(&local) {
            prop_assert!(tag(&local).is_some());
            let total = match p {
                Parsed::Srs0 { hash, stamp, host, user } => hash.len() + stamp.len() + host.len() + user.len() + 3,
                Parsed::Srs1 { hash, host, rest } => hash.len() + host.len() + rest.len() + 2,
            };
            prop_assert_eq!(total + 5, local.len());
        }
        // Random bytes almost never reverse; when they do, the result is made of the input.
        if let Ok(a) = s.reverse(&local, T2023) {
            prop_assert!(a.len() < local.len() + 5);
        }
        if let Some(x) = in_extension(&local) {
            prop_assert!(tag(x).is_some());
            prop_assert!(local.ends_with(x));
        }
    }
}
