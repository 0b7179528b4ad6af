//! datemail: see datemail(8).

fn main() {
    std::process::exit(qmail_inject::datemail::main());
}
