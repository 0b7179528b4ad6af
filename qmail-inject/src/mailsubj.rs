//! mailsubj (mailsubj(1)): `mailsubj subject recip ...` sends standard input as the body
//! of a message with
//!
//! ```text
//! Subject: subject
//! To: recip ...
//!
//! ```
//!
//! in front, through `QMAIL_HOME/bin/qmail-inject` (which takes the recipients from the
//! To field), and exits with qmail-inject's code. netqmail's mailsubj is a shell script
//! doing the same with `echo`; this program writes the arguments byte for byte (a shell
//! whose `echo` reads backslash escapes, as Debian's dash does, changes a subject with a
//! backslash in it). With no arguments at all it says how to use it and exits 100 (the
//! script's `shift` fails there); a subject without recipients goes to qmail-inject as
//! the script sends it, with an empty To field. If standard input cannot be read, the
//! message is not sent: qmail-inject is stopped before it sees the end of its input.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use control::Exit;

use crate::feed::{child_exit, fatal, feed};

const P: &str = "mailsubj";

/// The header mailsubj puts before the body.
pub fn header(subject: &[u8], recips: &[OsString]) -> Vec<u8> {
    let mut h = b"Subject: ".to_vec();
    h.extend_from_slice(subject);
    h.extend_from_slice(b"\nTo:");
    for r in recips {
        h.push(b' ');
        h.extend_from_slice(r.as_bytes());
    }
    h.extend_from_slice(b"\n\n");
    h
}

/// mailsubj(1).
pub fn main() -> Exit {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some((subject, recips)) = args.split_first() else {
        let _ = io::stderr().write_all(b"mailsubj: usage: mailsubj subject recip ...\n");
        return Exit::PERM;
    };
    let inject = control::qmail_home().join("bin/qmail-inject");
    let mut child = match Command::new(&inject).stdin(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            return fatal(
                P,
                &format!(
                    "unable to run {}: {}",
                    inject.display(),
                    control::describe_error(&e)
                ),
            );
        }
    };
    if let Err(e) = feed(&mut child, &header(subject.as_bytes(), recips)) {
        // qmail-inject must not take what it has seen for the whole message.
        let _ = child.kill();
        let _ = child.wait();
        return fatal(
            P,
            &format!("unable to read input: {}", control::describe_error(&e)),
        );
    }
    child_exit(P, &mut child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_as_the_script_echoes_it() {
        let r = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            header(b"hello world", &r(&["a@b", "c d <e@f>"])),
            b"Subject: hello world\nTo: a@b c d <e@f>\n\n"
        );
        assert_eq!(header(b"", &r(&[])), b"Subject: \nTo:\n\n");
        assert_eq!(header(b"a\\tb", &r(&["x"])), b"Subject: a\\tb\nTo: x\n\n");
    }
}
