//! Header field names netqmail's programs know (its hfield): which known field a line
//! starts, whether it starts a field at all, where its contents begin.

/// A header field qmail-inject, qreceipt, qbiff or maildirwatch treats specially. The
/// order is netqmail's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Sender,
    From,
    ReplyTo,
    To,
    Cc,
    Bcc,
    Date,
    MessageId,
    Subject,
    ResentSender,
    ResentFrom,
    ResentReplyTo,
    ResentTo,
    ResentCc,
    ResentBcc,
    ResentDate,
    ResentMessageId,
    ReturnReceiptTo,
    ErrorsTo,
    ApparentlyTo,
    Received,
    ReturnPath,
    DeliveredTo,
    ContentLength,
    ContentType,
    ContentTransferEncoding,
    NoticeRequestedUponDeliveryTo,
    MailFollowupTo,
}

/// Every known field with its name in lower case.
pub const KNOWN: [(Field, &str); 28] = [
    (Field::Sender, "sender"),
    (Field::From, "from"),
    (Field::ReplyTo, "reply-to"),
    (Field::To, "to"),
    (Field::Cc, "cc"),
    (Field::Bcc, "bcc"),
    (Field::Date, "date"),
    (Field::MessageId, "message-id"),
    (Field::Subject, "subject"),
    (Field::ResentSender, "resent-sender"),
    (Field::ResentFrom, "resent-from"),
    (Field::ResentReplyTo, "resent-reply-to"),
    (Field::ResentTo, "resent-to"),
    (Field::ResentCc, "resent-cc"),
    (Field::ResentBcc, "resent-bcc"),
    (Field::ResentDate, "resent-date"),
    (Field::ResentMessageId, "resent-message-id"),
    (Field::ReturnReceiptTo, "return-receipt-to"),
    (Field::ErrorsTo, "errors-to"),
    (Field::ApparentlyTo, "apparently-to"),
    (Field::Received, "received"),
    (Field::ReturnPath, "return-path"),
    (Field::DeliveredTo, "delivered-to"),
    (Field::ContentLength, "content-length"),
    (Field::ContentType, "content-type"),
    (Field::ContentTransferEncoding, "content-transfer-encoding"),
    (
        Field::NoticeRequestedUponDeliveryTo,
        "notice-requested-upon-delivery-to",
    ),
    (Field::MailFollowupTo, "mail-followup-to"),
];

/// Does the field in `line` have the name `name` (lower case)? Letters match in either
/// case; spaces and tabs may come between the name and the colon.
fn matches(line: &[u8], name: &str) -> bool {
    let name = name.as_bytes();
    if line.len() <= name.len() {
        return false;
    }
    for (&c, &n) in line.iter().zip(name) {
        if c != n && !(n.is_ascii_lowercase() && c == n.to_ascii_uppercase()) {
            return false;
        }
    }
    for &c in &line[name.len()..] {
        match c {
            b':' => return true,
            b' ' | b'\t' => {}
            _ => return false,
        }
    }
    false
}

/// Which known field `line` is, if any.
pub fn known(line: &[u8]) -> Option<Field> {
    KNOWN
        .iter()
        .find(|(_, name)| matches(line, name))
        .map(|&(f, _)| f)
}

/// True when `line` starts with a usable field name: a colon, and before it (spaces and
/// tabs before the colon aside) at least one character, all printable ASCII other than
/// space.
pub fn valid(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&c| c == b':') else {
        return false;
    };
    let mut j = colon;
    while j > 0 && matches!(line[j - 1], b' ' | b'\t') {
        j -= 1;
    }
    j > 0 && line[..j].iter().all(|&c| (33..=126).contains(&c))
}

/// Where the contents of the field in `line` begin (netqmail's hfield_skipname): after
/// the first colon and the spaces, tabs, carriage returns and newlines that follow it;
/// `line.len()` when nothing else follows, or when there is no colon.
pub fn skip_name(line: &[u8]) -> usize {
    let mut i = line
        .iter()
        .position(|&c| c == b':')
        .map_or(line.len(), |i| i + 1);
    while i < line.len() && matches!(line[i], b'\t' | b'\n' | b'\r' | b' ') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(known(b"To: a\n"), Some(Field::To));
        assert_eq!(known(b"TO : a\n"), Some(Field::To));
        assert_eq!(known(b"tO\t: a\n"), Some(Field::To));
        assert_eq!(known(b"Resent-bcc: a\n"), Some(Field::ResentBcc));
        assert_eq!(known(b"Message-Id: a\n"), Some(Field::MessageId));
        assert_eq!(known(b"Toto: a\n"), None);
        assert_eq!(known(b"To"), None);
        assert_eq!(known(b"X-To: a\n"), None);
        assert_eq!(known(b"Content_Length: 3\n"), None);
        assert!(valid(b"X-Foo: bar\n"));
        assert!(valid(b"X-Foo \t: bar\n"));
        assert!(!valid(b": bar\n"));
        assert!(!valid(b"  : bar\n"));
        assert!(!valid(b"X Foo: bar\n"));
        assert!(!valid(b"no colon\n"));
        assert!(!valid("Süß: x\n".as_bytes()));
    }

    #[test]
    fn contents_start() {
        assert_eq!(skip_name(b"Subject: hi\n"), 9);
        assert_eq!(skip_name(b"Subject:\n \t hi\n"), 12);
        assert_eq!(skip_name(b"Subject:\n"), 9);
        assert_eq!(skip_name(b"Subject: \r\n"), 11);
        assert_eq!(skip_name(b"no colon"), 8);
        assert_eq!(skip_name(b"a:b:c"), 2);
        assert_eq!(skip_name(b""), 0);
    }
}
