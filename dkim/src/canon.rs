//! Canonicalisation (RFC 6376 section 3.4): the "simple" and "relaxed" forms of header
//! fields and bodies, computed on the wire form of a qmail message (each LF becomes
//! CR LF; every other byte, a lone CR included, stays as it is).
//!
//! The body is canonicalised as it streams past ([`Body`]), and hashed with SHA-256 by
//! [`BodyHasher`], so that a message of any size needs a fixed amount of memory.

use crate::header::trim_wsp_end;
use std::fmt;

/// A canonicalisation algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    /// `simple`: (almost) nothing changed.
    Simple,
    /// `relaxed`: case of field names, folding and runs of white space ignored.
    Relaxed,
}

impl Canon {
    /// The name used in the `c=` tag.
    pub fn name(self) -> &'static str {
        match self {
            Canon::Simple => "simple",
            Canon::Relaxed => "relaxed",
        }
    }
}

impl fmt::Display for Canon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Appends the canonical form of one header field to `out`, with its final CR LF. `raw`
/// is the field as stored (name, colon, value and continuation lines, without the LF that
/// ends its last line).
pub fn header(canon: Canon, raw: &[u8], out: &mut Vec<u8>) {
    match canon {
        Canon::Simple => {
            for &c in raw {
                if c == b'\n' {
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.push(c);
                }
            }
        }
        Canon::Relaxed => {
            let colon = raw.iter().position(|&c| c == b':').unwrap_or(raw.len());
            let name = trim_wsp_end(&raw[..colon]);
            out.extend(name.iter().map(u8::to_ascii_lowercase));
            out.push(b':');
            let value = raw.get(colon + 1..).unwrap_or_default();
            // Unfold (drop each line break), turn each run of spaces and tabs into one
            // space, and drop the white space at both ends of the value.
            let mut pending_space = false;
            let mut started = false;
            for &c in value {
                if c == b'\n' {
                    continue;
                }
                if is_wsp(c) {
                    pending_space = started;
                    continue;
                }
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                out.push(c);
                started = true;
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Turns every CR that does not end a line into a line end, in qmail's stored form: a CR
/// before an LF is dropped (CR LF becomes LF), a CR alone becomes an LF. RFC 6376 section
/// 5.3 wants bare CRs converted before a message is signed, and the converted message
/// sent: qmail-remote sends each LF as CR LF and any other byte as it is, so a stored
/// CR LF would go out as CR CR LF, which verifiers read differently (OpenDKIM makes a
/// line end of the bare CR, dkimpy does not).
#[derive(Debug, Clone, Default)]
pub struct LineEnds {
    pending_cr: bool,
}

impl LineEnds {
    /// A converter at the start of a message.
    pub fn new() -> LineEnds {
        LineEnds::default()
    }

    /// Converts the next piece, appending to `out`.
    pub fn feed(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        for &c in piece {
            match c {
                b'\r' => {
                    if self.pending_cr {
                        out.push(b'\n');
                    }
                    self.pending_cr = true;
                }
                b'\n' => {
                    out.push(b'\n');
                    self.pending_cr = false;
                }
                _ => {
                    if self.pending_cr {
                        out.push(b'\n');
                        self.pending_cr = false;
                    }
                    out.push(c);
                }
            }
        }
    }

    /// Ends the message: a CR at its very end becomes a line end.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.pending_cr {
            out.push(b'\n');
        }
    }
}

/// A body canonicaliser fed in pieces of any size.
#[derive(Debug, Clone)]
pub struct Body {
    canon: Canon,
    /// Empty lines seen and not yet written: written only if more text follows.
    empty_lines: u64,
    /// Something of the current line has been written (relaxed), or the current line has
    /// any byte (simple).
    line_has_text: bool,
    /// Spaces or tabs seen in the current line and not yet written (relaxed).
    pending_space: bool,
    /// Anything at all has been written.
    wrote: bool,
}

impl Body {
    /// A canonicaliser for a body that starts now.
    pub fn new(canon: Canon) -> Body {
        Body {
            canon,
            empty_lines: 0,
            line_has_text: false,
            pending_space: false,
            wrote: false,
        }
    }

    fn flush_empty_lines(&mut self, out: &mut Vec<u8>) {
        for _ in 0..self.empty_lines {
            out.extend_from_slice(b"\r\n");
        }
        self.empty_lines = 0;
    }

    /// Canonicalises the next piece of the body, appending the result to `out`.
    pub fn feed(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        for &c in piece {
            if c == b'\n' {
                if self.line_has_text {
                    out.extend_from_slice(b"\r\n");
                } else {
                    self.empty_lines += 1;
                }
                self.line_has_text = false;
                self.pending_space = false;
                continue;
            }
            if self.canon == Canon::Relaxed && is_wsp(c) {
                self.pending_space = true;
                continue;
            }
            if !self.line_has_text {
                self.flush_empty_lines(out);
                self.line_has_text = true;
                self.wrote = true;
            }
            if self.pending_space {
                out.push(b' ');
                self.pending_space = false;
            }
            out.push(c);
        }
    }

    /// Ends the body, appending what is still due to `out`: the CR LF of a last line that
    /// had none, or (simple) the CR LF that stands for an empty body. Empty lines at the
    /// end are dropped.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        if self.line_has_text || (self.canon == Canon::Simple && !self.wrote) {
            out.extend_from_slice(b"\r\n");
        }
        self.empty_lines = 0;
    }
}

/// The SHA-256 hash of a canonicalised body (the `bh=` tag), fed in pieces.
#[derive(Clone)]
pub struct BodyHasher {
    body: Body,
    ctx: ring::digest::Context,
    buf: Vec<u8>,
    length: u64,
}

impl fmt::Debug for BodyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyHasher")
            .field("body", &self.body)
            .field("length", &self.length)
            .finish()
    }
}

impl BodyHasher {
    /// A hasher for a body canonicalised with `canon`.
    pub fn new(canon: Canon) -> BodyHasher {
        BodyHasher {
            body: Body::new(canon),
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            buf: Vec::new(),
            length: 0,
        }
    }

    /// Hashes the next piece of the body.
    pub fn feed(&mut self, piece: &[u8]) {
        self.buf.clear();
        self.body.feed(piece, &mut self.buf);
        self.ctx.update(&self.buf);
        self.length += self.buf.len() as u64;
    }

    /// Ends the body: its hash and the length of its canonical form.
    pub fn finish(mut self) -> ([u8; 32], u64) {
        self.buf.clear();
        self.body.finish(&mut self.buf);
        self.ctx.update(&self.buf);
        self.length += self.buf.len() as u64;
        let d = self.ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        (out, self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hdr(c: Canon, raw: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        header(c, raw, &mut v);
        v
    }

    fn body(c: Canon, b: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut canon = Body::new(c);
        canon.feed(b, &mut v);
        canon.finish(&mut v);
        v
    }

    /// The example of RFC 6376 section 3.4.5, in qmail's LF form.
    const RFC_HEADER: [&[u8]; 2] = [b"A: X", b"B : Y\t\n\tZ  "];
    const RFC_BODY: &[u8] = b" C \nD \t E\n\n\n";

    #[test]
    fn rfc6376_example_relaxed() {
        assert_eq!(hdr(Canon::Relaxed, RFC_HEADER[0]), b"a:X\r\n");
        assert_eq!(hdr(Canon::Relaxed, RFC_HEADER[1]), b"b:Y Z\r\n");
        assert_eq!(body(Canon::Relaxed, RFC_BODY), b" C\r\nD E\r\n");
    }

    #[test]
    fn rfc6376_example_simple() {
        assert_eq!(hdr(Canon::Simple, RFC_HEADER[0]), b"A: X\r\n");
        assert_eq!(hdr(Canon::Simple, RFC_HEADER[1]), b"B : Y\t\r\n\tZ  \r\n");
        assert_eq!(body(Canon::Simple, RFC_BODY), b" C \r\nD \t E\r\n");
    }

    #[test]
    fn empty_bodies() {
        assert_eq!(body(Canon::Relaxed, b""), b"");
        assert_eq!(body(Canon::Relaxed, b"\n\n \n\t\n"), b"");
        assert_eq!(body(Canon::Simple, b""), b"\r\n");
        assert_eq!(body(Canon::Simple, b"\n\n"), b"\r\n");
        // A line of white space is not empty for simple.
        assert_eq!(body(Canon::Simple, b"\n \n\n"), b"\r\n \r\n");
    }

    #[test]
    fn last_line_without_newline() {
        assert_eq!(body(Canon::Relaxed, b"a\nb  "), b"a\r\nb\r\n");
        assert_eq!(body(Canon::Simple, b"a\nb  "), b"a\r\nb  \r\n");
    }

    #[test]
    fn empty_lines_inside_are_kept() {
        assert_eq!(
            body(Canon::Relaxed, b"a\n\n \nb\n\n"),
            b"a\r\n\r\n\r\nb\r\n"
        );
        assert_eq!(
            body(Canon::Simple, b"a\n\n \nb\n\n"),
            b"a\r\n\r\n \r\nb\r\n"
        );
    }

    #[test]
    fn a_lone_cr_is_an_ordinary_byte() {
        // A CR LF in the queue goes out as CR CR LF: the CR belongs to the line.
        assert_eq!(body(Canon::Relaxed, b"a \r\n\r\n"), b"a \r\r\n\r\r\n");
        assert_eq!(hdr(Canon::Relaxed, b"X: a\r"), b"x:a\r\r\n");
    }

    fn line_ends(b: &[u8], piece: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut l = LineEnds::new();
        for p in b.chunks(piece.max(1)) {
            l.feed(p, &mut out);
        }
        l.finish(&mut out);
        out
    }

    #[test]
    fn bare_crs_become_line_ends() {
        for piece in 1..6 {
            assert_eq!(line_ends(b"a\r\nb\r\n", piece), b"a\nb\n");
            assert_eq!(line_ends(b"lone\rCR\n", piece), b"lone\nCR\n");
            assert_eq!(line_ends(b"x\r\r\ny\r", piece), b"x\n\ny\n");
            assert_eq!(line_ends(b"\r\r", piece), b"\n\n");
            assert_eq!(line_ends(b"plain\n\n", piece), b"plain\n\n");
        }
    }

    #[test]
    fn header_value_edges() {
        assert_eq!(hdr(Canon::Relaxed, b"X:"), b"x:\r\n");
        assert_eq!(hdr(Canon::Relaxed, b"X:   "), b"x:\r\n");
        assert_eq!(hdr(Canon::Relaxed, b"X:\n  a\n\tb"), b"x:a b\r\n");
        assert_eq!(hdr(Canon::Relaxed, b"MiXeD-Case\t :v"), b"mixed-case:v\r\n");
    }

    #[test]
    fn body_hash_of_the_empty_body() {
        // SHA-256 of the empty string and of CR LF (RFC 6376 section 3.4.3 and 3.4.4).
        let (h, n) = BodyHasher::new(Canon::Relaxed).finish();
        assert_eq!(n, 0);
        assert_eq!(
            base64_std(&h),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        let (h, n) = BodyHasher::new(Canon::Simple).finish();
        assert_eq!(n, 2);
        assert_eq!(
            base64_std(&h),
            "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY="
        );
    }

    fn base64_std(b: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// The relaxed body rules written the slow way: line by line.
    fn relaxed_by_lines(b: &[u8]) -> Vec<u8> {
        let mut lines: Vec<Vec<u8>> = b
            .split(|&c| c == b'\n')
            .map(|l| {
                let mut out = Vec::new();
                let mut space = false;
                for &c in l {
                    if c == b' ' || c == b'\t' {
                        space = true;
                    } else {
                        if space {
                            out.push(b' ');
                        }
                        space = false;
                        out.push(c);
                    }
                }
                out
            })
            .collect();
        while lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(&l);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn wire(bytes: impl Fn() -> BoxedStrategy<u8>) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(bytes(), 0..300)
    }

    fn mail_byte() -> BoxedStrategy<u8> {
        prop_oneof![
            Just(b'\n'),
            Just(b' '),
            Just(b'\t'),
            Just(b'\r'),
            Just(b':'),
            Just(b'a'),
            any::<u8>()
        ]
        .boxed()
    }

    proptest! {
        #[test]
        fn line_ends_leave_no_cr_and_keep_everything_else(b in wire(mail_byte), piece in 1usize..20) {
            let out = line_ends(&b, piece);
            prop_assert!(!out.contains(&b'\r'));
            let no_cr: Vec<u8> = b.iter().copied().filter(|&c| c != b'\r' && c != b'\n').collect();
            let out_no_lf: Vec<u8> = out.iter().copied().filter(|&c| c != b'\n').collect();
            prop_assert_eq!(no_cr, out_no_lf);
            // Already converted text is left alone.
            prop_assert_eq!(line_ends(&out, piece), out.clone());
        }

        #[test]
        fn relaxed_body_matches_the_line_rules(b in wire(mail_byte)) {
            prop_assert_eq!(body(Canon::Relaxed, &b), relaxed_by_lines(&b));
        }

        #[test]
        fn pieces_do_not_matter(b in wire(mail_byte), piece in 1usize..40) {
            for c in [Canon::Simple, Canon::Relaxed] {
                let mut v = Vec::new();
                let mut canon = Body::new(c);
                for p in b.chunks(piece) {
                    canon.feed(p, &mut v);
                }
                canon.finish(&mut v);
                prop_assert_eq!(&v, &body(c, &b));
                let mut h = BodyHasher::new(c);
                for p in b.chunks(piece) {
                    h.feed(p);
                }
                let (digest, len) = h.finish();
                prop_assert_eq!(len, v.len() as u64);
                let expect = ring::digest::digest(&ring::digest::SHA256, &v);
                prop_assert_eq!(digest.as_slice(), expect.as_ref());
            }
        }

        #[test]
        fn canonical_bodies_are_stable(b in wire(mail_byte)) {
            // Canonical output, read back as a qmail body (CR LF -> LF), canonicalises to
            // itself: the forms are fixed points.
            for c in [Canon::Simple, Canon::Relaxed] {
                let once = body(c, &b);
                let mut as_queue = Vec::new();
                let mut i = 0;
                while i < once.len() {
                    if once[i] == b'\r' && once.get(i + 1) == Some(&b'\n') {
                        as_queue.push(b'\n');
                        i += 2;
                    } else {
                        as_queue.push(once[i]);
                        i += 1;
                    }
                }
                prop_assert_eq!(body(c, &as_queue), once.clone());
                // Every line of the output ends in CR LF, and (relaxed) has no white
                // space before it.
                prop_assert!(once.is_empty() || once.ends_with(b"\r\n"));
                if c == Canon::Relaxed {
                    prop_assert!(!once.windows(3).any(|w| (w[0] == b' ' || w[0] == b'\t') && w[1..] == *b"\r\n"));
                    prop_assert!(!once.windows(2).any(|w| w == b"  " || w.contains(&b'\t')));
                    prop_assert!(!once.ends_with(b"\r\n\r\n"));
                }
            }
        }

        #[test]
        fn relaxed_headers_have_one_line(raw in wire(mail_byte)) {
            // A field as Header::parse makes it: a name without line breaks first.
            let raw = [&b"X-Name:"[..], &raw].concat();
            let out = hdr(Canon::Relaxed, &raw);
            prop_assert!(out.ends_with(b"\r\n"));
            let inner = &out[..out.len() - 2];
            prop_assert!(!inner.contains(&b'\n'));
            prop_assert!(!inner.contains(&b'\t'));
            prop_assert!(!inner.windows(2).any(|w| w == b"  "));
            prop_assert!(!inner.ends_with(b" "));
            // Idempotent: the output (without CR LF) canonicalises to itself.
            prop_assert_eq!(hdr(Canon::Relaxed, inner), out.clone());
        }
    }
}
