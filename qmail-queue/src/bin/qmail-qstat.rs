//! qmail-qstat: summarize the state of the mail queue (qmail-qstat(8)).

fn main() {
    std::process::exit(qmail_queue::qstat::main());
}
