//! predate: see predate(8).

fn main() {
    std::process::exit(qmail_inject::predate::main());
}
