//! SMTP AUTH (RFC 4954) without I/O: the mechanisms, base64, and the decoding of what
//! the client sends, into the three fields a checkpassword program reads on descriptor 3.
//!
//! The conventions are those of the widely deployed qmail SMTP AUTH patch:
//!
//! * PLAIN: one base64 string `authzid NUL authcid NUL password`, either after the
//!   mechanism name or after an empty `334 ` challenge;
//! * LOGIN: the user name and the password, each base64, after `334 VXNlcm5hbWU6`
//!   ("Username:") and `334 UGFzc3dvcmQ6` ("Password:"); the user name may also follow
//!   the mechanism name;
//! * CRAM-MD5: the challenge `<PID.TIME@HOSTNAME>` sent base64; the answer is base64 of
//!   `user SP hex-digest`. The checkpassword program gets the user, the digest as the
//!   password and the challenge as the third field, so only a checkpassword program
//!   that understands that convention can verify it;
//! * a line holding only `*` cancels the exchange.
//!
//! Nothing here panics on any input; every decoder is bounded by its input.

/// The mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    CramMd5,
}

impl Mechanism {
    /// The mechanism named by `word` (case ignored).
    pub fn parse(word: &[u8]) -> Option<Mechanism> {
        [
            (&b"plain"[..], Mechanism::Plain),
            (b"login", Mechanism::Login),
            (b"cram-md5", Mechanism::CramMd5),
        ]
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(word))
        .map(|&(_, m)| m)
    }

    /// The name in logs and in the EHLO line.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
        }
    }
}

/// What the client's input was wrong about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// `*`: the client gave up (501 auth exchange cancelled).
    Cancelled,
    /// Not base64, an empty field, a NUL where none may be (501 malformed auth input).
    Malformed,
}

/// The three fields for the checkpassword program.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: Vec<u8>,
    /// The password, or for CRAM-MD5 the digest.
    pub pass: Vec<u8>,
    /// The third field: for CRAM-MD5 the challenge, otherwise a unique string of the same
    /// form (checkpassword calls it the timestamp).
    pub timestamp: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    /// Never shows the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &String::from_utf8_lossy(&self.user))
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// What goes to descriptor 3: `user NUL pass NUL timestamp NUL`.
    pub fn fd3(&self) -> Vec<u8> {
        let mut v =
            Vec::with_capacity(self.user.len() + self.pass.len() + self.timestamp.len() + 3);
        for f in [&self.user, &self.pass, &self.timestamp] {
            v.extend_from_slice(f);
            v.push(0);
        }
        v
    }
}

impl Drop for Credentials {
    /// Overwrites the password before the memory is given back.
    fn drop(&mut self) {
        self.pass.fill(0);
        // Keeps the stores from being optimised away.
        std::hint::black_box(&self.pass);
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 (RFC 4648, with padding).
pub fn b64encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes base64. Padding may be left out; anything else that is not part of the
/// alphabet (spaces included), a misplaced `=`, or a length that cannot be base64 is an
/// error.
pub fn b64decode(s: &[u8]) -> Result<Vec<u8>, InputError> {
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return Err(InputError::Malformed);
    }
    let body = &s[..s.len() - pad];
    if pad > 0 && !s.len().is_multiple_of(4) {
        return Err(InputError::Malformed);
    }
    if body.len() % 4 == 1 {
        return Err(InputError::Malformed);
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for chunk in body.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= b64value(c).ok_or(InputError::Malformed)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Ok(out)
}

/// One line of the exchange (without CR LF): `*` cancels, an empty line is malformed,
/// anything else must be base64.
pub fn decode_line(line: &[u8]) -> Result<Vec<u8>, InputError> {
    match line {
        b"*" => Err(InputError::Cancelled),
        b"" => Err(InputError::Malformed),
        _ => b64decode(line),
    }
}

/// A field that will be written NUL-terminated: not empty, no NUL.
fn field(v: &[u8]) -> Result<Vec<u8>, InputError> {
    if v.is_empty() || v.contains(&0) {
        return Err(InputError::Malformed);
    }
    Ok(v.to_vec())
}

/// A user name and a password.
pub type UserPass = (Vec<u8>, Vec<u8>);

/// PLAIN: splits the decoded response `authzid NUL authcid NUL password`. The
/// authorization identity, when given, must be the user itself (rqmail does not let one
/// user act for another): anything else is returned as `Ok(None)`, a failed
/// authentication.
pub fn split_plain(decoded: &[u8]) -> Result<Option<UserPass>, InputError> {
    let mut parts = decoded.split(|&c| c == 0);
    let (Some(authzid), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(InputError::Malformed);
    };
    let user = field(user)?;
    let pass = field(pass)?;
    if !authzid.is_empty() && authzid != user.as_slice() {
        return Ok(None);
    }
    Ok(Some((user, pass)))
}

/// LOGIN: a decoded user name or password.
pub fn login_field(decoded: &[u8]) -> Result<Vec<u8>, InputError> {
    field(decoded)
}

/// CRAM-MD5: splits the decoded answer `user SP digest` at its last space (spaces after
/// it skipped).
pub fn split_cram(decoded: &[u8]) -> Result<UserPass, InputError> {
    let sp = decoded
        .iter()
        .rposition(|&c| c == b' ')
        .ok_or(InputError::Malformed)?;
    let user = &decoded[..sp];
    let user = &user[..user.len() - user.iter().rev().take_while(|&&c| c == b' ').count()];
    let digest = &decoded[sp + 1..];
    Ok((field(user)?, field(digest)?))
}

/// The challenge (and PLAIN/LOGIN timestamp) `<PID.TIME@HOSTNAME>`.
pub fn challenge(pid: u32, now: u64, hostname: &[u8]) -> Vec<u8> {
    let mut v = format!("<{pid}.{now}@").into_bytes();
    v.extend(
        hostname
            .iter()
            .filter(|&&c| c != 0 && c != b'\r' && c != b'\n'),
    );
    v.push(b'>');
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base64_known_values() {
        assert_eq!(b64encode(b""), "");
        assert_eq!(b64encode(b"f"), "Zg==");
        assert_eq!(b64encode(b"fo"), "Zm8=");
        assert_eq!(b64encode(b"foo"), "Zm9v");
        assert_eq!(b64encode(b"Username:"), "VXNlcm5hbWU6");
        assert_eq!(b64encode(b"Password:"), "UGFzc3dvcmQ6");
        assert_eq!(b64decode(b"Zm9vYg==").unwrap(), b"foob");
        assert_eq!(b64decode(b"Zm9vYg").unwrap(), b"foob");
        assert_eq!(b64decode(b"AGpvZQBzZWNyZXQ=").unwrap(), b"\0joe\0secret");
        for bad in [
            &b"Zm9v YQ=="[..],
            b"Zm9vY",
            b"Zg===",
            b"Z=g=",
            b"Zm9\0",
            b"=",
            b"Zm9vYQ=x",
        ] {
            assert_eq!(b64decode(bad), Err(InputError::Malformed), "{bad:?}");
        }
        assert_eq!(decode_line(b"*"), Err(InputError::Cancelled));
        assert_eq!(decode_line(b""), Err(InputError::Malformed));
    }

    #[test]
    fn plain_split() {
        let ok = |s: &[u8]| split_plain(s).unwrap().unwrap();
        assert_eq!(ok(b"\0joe\0secret"), (b"joe".to_vec(), b"secret".to_vec()));
        assert_eq!(
            ok(b"joe\0joe\0secret"),
            (b"joe".to_vec(), b"secret".to_vec())
        );
        assert_eq!(split_plain(b"admin\0joe\0secret").unwrap(), None);
        for bad in [
            &b"\0joe"[..],
            b"joe\0secret",
            b"\0\0secret",
            b"\0joe\0",
            b"\0joe\0se\0cret",
            b"",
        ] {
            assert_eq!(split_plain(bad), Err(InputError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn cram_split_and_challenge() {
        assert_eq!(
            split_cram(b"joe 3dbc88f0624776a737b39093f6eb6427").unwrap(),
            (
                b"joe".to_vec(),
                b"3dbc88f0624776a737b39093f6eb6427".to_vec()
            )
        );
        assert_eq!(
            split_cram(b"a b  c").unwrap(),
            (b"a b".to_vec(), b"c".to_vec())
        );
        assert_eq!(split_cram(b"joe"), Err(InputError::Malformed));
        assert_eq!(split_cram(b"joe "), Err(InputError::Malformed));
        assert_eq!(split_cram(b" digest"), Err(InputError::Malformed));
        assert_eq!(challenge(42, 1000, b"mx.example"), b"<42.1000@mx.example>");
        assert_eq!(challenge(1, 2, b"a\r\nb"), b"<1.2@ab>");
    }

    #[test]
    fn fd3_layout_and_debug_hides_password() {
        let c = Credentials {
            user: b"joe".to_vec(),
            pass: b"secret".to_vec(),
            timestamp: b"<1.2@h>".to_vec(),
        };
        assert_eq!(c.fd3(), b"joe\0secret\0<1.2@h>\0");
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn mechanisms() {
        assert_eq!(Mechanism::parse(b"Plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse(b"LOGIN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse(b"cram-MD5"), Some(Mechanism::CramMd5));
        assert_eq!(Mechanism::parse(b"digest-md5"), None);
        assert_eq!(Mechanism::parse(b""), None);
    }

    proptest! {
        #[test]
        fn base64_round_trips(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let e = b64encode(&data);
            prop_assert_eq!(e.len() % 4, 0);
            prop_assert_eq!(b64decode(e.as_bytes()).unwrap(), data.clone());
            let unpadded = e.trim_end_matches('=');
            prop_assert_eq!(b64decode(unpadded.as_bytes()).unwrap(), data);
        }

        #[test]
        fn decoders_never_panic(s in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(d) = b64decode(&s) {
                prop_assert!(d.len() <= s.len());
            }
            let _ = decode_line(&s);
            if let Ok(Some((u, p))) = split_plain(&s) {
                prop_assert!(!u.is_empty() && !p.is_empty() && !u.contains(&0) && !p.contains(&0));
            }
            if let Ok((u, d)) = split_cram(&s) {
                prop_assert!(!u.is_empty() && !d.is_empty() && !u.contains(&0) && !d.contains(&0));
                prop_assert!(!d.contains(&b' '));
            }
            let _ = login_field(&s);
        }

        #[test]
        fn plain_of_any_fields(authz in "[a-z]{0,5}", user in "[ -~]{1,20}", pass in "[ -~]{1,20}") {
            let raw = format!("{authz}\0{user}\0{pass}");
            let enc = b64encode(raw.as_bytes());
            let dec = decode_line(enc.as_bytes()).unwrap();
            let got = split_plain(&dec).unwrap();
            if authz.is_empty() || authz == user {
                prop_assert_eq!(got, Some((user.into_bytes(), pass.into_bytes())));
            } else {
                prop_assert_eq!(got, None);
            }
        }
    }
}
