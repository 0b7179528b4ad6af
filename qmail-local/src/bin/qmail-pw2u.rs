//! qmail-pw2u: build address assignments from a passwd file (qmail-pw2u(8)).

fn main() {
    std::process::exit(qmail_local::pw2u::main());
}
