//! datemail: sendmail with a local-time Date field, i.e. `predate sendmail ARGS`
//! (netqmail's datemail.sh), both taken from the qmail home's bin/.

use control::Exit;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Replaces itself with `HOME/bin/predate HOME/bin/sendmail ARGS`; a temporary failure
/// if that cannot be done.
pub fn main() -> Exit {
    let bin = control::qmail_home().join("bin");
    let e = Command::new(bin.join("predate"))
        .arg(bin.join("sendmail"))
        .args(std::env::args_os().skip(1))
        .exec();
    let _ = std::io::stderr()
        .write_all(format!("datemail: fatal: unable to run predate: {e}\n").as_bytes());
    Exit::TEMP
}
