//! The Received header field qmail-smtpd puts on top of each message (netqmail's
//! received.c):
//!
//! ```text
//! Received: from REMOTEHOST (HELO HELO) (REMOTEINFO@REMOTEIP)
//!   by LOCAL with SMTP; 26 Sep 1995 04:46:54 -0000
//! ```
//!
//! The `(HELO ...)` part appears only when the HELO/EHLO argument differs (ignoring case)
//! from the remote host name, and `REMOTEINFO@` only when TCPREMOTEINFO is set. Every
//! string that came from outside is filtered: bytes other than letters, digits and
//! `. @ % + / = : -` become `?`, so nothing a client says can start a new header line.

use control::date822;

/// True for the bytes copied as they are into the Received field.
pub fn is_safe(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b".@%+/=:-".contains(&c)
}

/// Appends `s` with every unsafe byte replaced by `?`.
pub fn put_safe(out: &mut Vec<u8>, s: &[u8]) {
    out.extend(s.iter().map(|&c| if is_safe(c) { c } else { b'?' }));
}

/// What the Received field says about the connection.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// "SMTP", or with TLS and AUTH "ESMTPS (...)", "ESMTPA", "ESMTPSA (...)".
    pub protocol: &'a str,
    /// TCPLOCALHOST, else TCPLOCALIP, else "unknown".
    pub local: &'a [u8],
    /// TCPREMOTEIP or "unknown".
    pub remote_ip: &'a [u8],
    /// TCPREMOTEHOST or "unknown".
    pub remote_host: &'a [u8],
    /// TCPREMOTEINFO, when set.
    pub remote_info: Option<&'a [u8]>,
    /// The HELO argument when it differs from the remote host name.
    pub helo: Option<&'a [u8]>,
}

/// The whole field, both lines, ending in LF; `when` is seconds since the epoch.
pub fn received(f: &Facts<'_>, when: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"Received: from ");
    put_safe(&mut out, f.remote_host);
    if let Some(h) = f.helo {
        out.extend_from_slice(b" (HELO ");
        put_safe(&mut out, h);
        out.push(b')');
    }
    out.extend_from_slice(b" (");
    if let Some(i) = f.remote_info {
        put_safe(&mut out, i);
        out.push(b'@');
    }
    put_safe(&mut out, f.remote_ip);
    out.extend_from_slice(b")\n  by ");
    put_safe(&mut out, f.local);
    out.extend_from_slice(b" with ");
    out.extend_from_slice(f.protocol.as_bytes());
    out.extend_from_slice(b"; ");
    out.extend_from_slice(date822(when).as_bytes());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts<'a>() -> Facts<'a> {
        Facts {
            protocol: "SMTP",
            local: b"silverton.berkeley.edu",
            remote_ip: b"192.48.96.5",
            remote_host: b"relay1.uu.net",
            remote_info: Some(b"7"),
            helo: Some(b"uunet.uu.net"),
        }
    }

    #[test]
    fn the_documented_example() {
        assert_eq!(
            String::from_utf8(received(&facts(), 812_090_814)).unwrap(),
            "Received: from relay1.uu.net (HELO uunet.uu.net) (7@192.48.96.5)\n  by silverton.berkeley.edu with SMTP; 26 Sep 1995 04:46:54 -0000\n"
        );
    }

    #[test]
    fn optional_parts_and_filtering() {
        let f = Facts {
            remote_info: None,
            helo: None,
            remote_host: b"unknown",
            remote_ip: b"unknown",
            local: b"unknown",
            ..facts()
        };
        assert_eq!(
            String::from_utf8(received(&f, 0)).unwrap(),
            "Received: from unknown (unknown)\n  by unknown with SMTP; 1 Jan 1970 00:00:00 -0000\n"
        );
        let f = Facts {
            helo: Some(b"evil\r\nX-Injected: yes [1.2.3.4] _x"),
            remote_info: Some(b""),
            ..facts()
        };
        let r = String::from_utf8(received(&f, 0)).unwrap();
        assert!(r.starts_with(
            "Received: from relay1.uu.net (HELO evil??X-Injected:?yes??1.2.3.4???x) (@192.48.96.5)\n"
        ));
        let f = Facts {
            helo: Some(b""),
            ..facts()
        };
        assert!(received(&f, 0).starts_with(b"Received: from relay1.uu.net (HELO ) (7@"));
    }

    proptest! {
        #[test]
        fn exactly_two_lines(host in proptest::collection::vec(any::<u8>(), 0..100), helo in proptest::collection::vec(any::<u8>(), 0..100), when in 0u64..4_000_000_000) {
            let f = Facts { remote_host: &host, helo: Some(&helo), ..facts() };
            let r = received(&f, when);
            prop_assert_eq!(r.iter().filter(|&&c| c == b'\n').count(), 2);
            prop_assert!(r.ends_with(b" -0000\n"));
            prop_assert!(!r.contains(&b'\r'));
            prop_assert!(!r.contains(&0));
        }
    }
}
