//! rqmail-crashtest: see rqmail-crashtest(8) and RELIABILITY.md.

fn main() {
    std::process::exit(rqmail_reliability::main());
}
