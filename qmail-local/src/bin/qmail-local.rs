//! qmail-local: deliver or forward a mail message (qmail-local(8)).

fn main() {
    std::process::exit(qmail_local::local::main());
}
