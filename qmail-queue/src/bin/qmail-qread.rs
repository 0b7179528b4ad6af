//! qmail-qread: list outgoing messages and their recipients (qmail-qread(8)).

fn main() {
    std::process::exit(qmail_queue::qread::main());
}
