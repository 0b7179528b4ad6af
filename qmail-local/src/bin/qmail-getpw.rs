//! qmail-getpw: give addresses to users (qmail-getpw(8)).

fn main() {
    std::process::exit(qmail_local::getpw::main());
}
