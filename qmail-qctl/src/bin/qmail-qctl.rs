//! qmail-qctl: list, show, hold, release, delete and retry queued messages, pause and
//! resume deliveries, while qmail-send runs (qmail-qctl(8)).

fn main() {
    std::process::exit(qmail_qctl::cli::main());
}
