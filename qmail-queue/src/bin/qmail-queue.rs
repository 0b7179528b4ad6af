//! qmail-queue: queue a mail message for delivery (qmail-queue(8)).

fn main() {
    std::process::exit(qmail_queue::enqueue::main());
}
