//! VERP: the sender each delivery of a VERP message sees. (Recipient rewriting, which
//! qmail-smtpd's recipient validation shares, is the `recipient` crate's.)

fn rpos(s: &[u8], c: u8) -> Option<usize> {
    s.iter().rposition(|&x| x == c)
}

/// The sender a delivery sees: a VERP sender `owner-@host-@[]` becomes
/// `owner-recipbox=reciphost@host` for recipient `recipbox@reciphost`.
pub fn sender_for(sender: &[u8], recip: &[u8]) -> Vec<u8> {
    let i = sender.len();
    if i >= 4 && sender.ends_with(b"-@[]") {
        let j = rpos(&sender[..i - 4], b'@').unwrap_or(i - 4);
        if let Some(k) = rpos(recip, b'@')
            && j + 5 <= i
        {
            let mut v = Vec::with_capacity(i + recip.len());
            v.extend_from_slice(&sender[..j]);
            v.extend_from_slice(&recip[..k]);
            v.push(b'=');
            v.extend_from_slice(&recip[k + 1..]);
            v.push(b'@');
            v.extend_from_slice(&sender[j + 1..i - 4]);
            return v;
        }
    }
    sender.to_vec()
}

#[cfg(test)]
mod tests {
    use super::sender_for;
    use proptest::prelude::*;

    #[test]
    fn verp() {
        assert_eq!(
            sender_for(b"owner-@list.example-@[]", b"joe@far.example"),
            b"owner-joe=far.example@list.example"
        );
        assert_eq!(
            sender_for(b"owner-@list.example-@[]", b"nohost"),
            b"owner-@list.example-@[]"
        );
        assert_eq!(sender_for(b"-@[]", b"a@b"), b"-@[]");
        assert_eq!(sender_for(b"plain@x", b"a@b"), b"plain@x");
        assert_eq!(sender_for(b"", b"a@b"), b"");
    }

    proptest! {
        #[test]
        fn sender_for_total(s in proptest::collection::vec(any::<u8>(), 0..80), r in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = sender_for(&s, &r);
        }
    }
}
