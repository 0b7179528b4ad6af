//! qmail-inject: see qmail-inject(8).

fn main() {
    std::process::exit(qmail_inject::inject::main());
}
