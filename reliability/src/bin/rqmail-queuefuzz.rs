//! rqmail-queuefuzz: see rqmail-queuefuzz(8) and RELIABILITY.md.

fn main() {
    std::process::exit(rqmail_reliability::queuefuzz::main());
}
