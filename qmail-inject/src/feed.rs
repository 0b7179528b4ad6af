//! Running a program with some header text put before this program's standard input:
//! what predate (a Date field) and mailsubj (Subject and To fields) do.

use control::Exit;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::Child;

/// Writes `head` and then all of standard input to the child's standard input, which is
/// closed afterwards. A child that stops reading early is its own business: copying just
/// ends. An error is a read error on standard input.
pub fn feed(child: &mut Child, head: &[u8]) -> io::Result<()> {
    let Some(mut pipe) = child.stdin.take() else {
        return Ok(());
    };
    if pipe.write_all(head).is_err() {
        return Ok(());
    }
    let mut input = io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if pipe.write_all(&buf[..n]).is_err() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `prog: fatal: msg` on standard error; exit 111.
pub fn fatal(prog: &str, msg: &str) -> Exit {
    let _ = io::stderr().write_all(format!("{prog}: fatal: {msg}\n").as_bytes());
    Exit::TEMP
}

/// Waits for the child and exits with its code (111 if it was killed).
pub fn child_exit(prog: &str, child: &mut Child) -> Exit {
    match child.wait() {
        Err(e) => fatal(prog, &format!("wait failed: {e}")),
        Ok(st) => match st.code() {
            Some(c) => Exit::from_status(c),
            None => {
                let _ = st.signal();
                fatal(prog, "child crashed")
            }
        },
    }
}
