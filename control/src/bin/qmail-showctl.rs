//! qmail-showctl: explain the qmail configuration (qmail-showctl(8)).

fn main() {
    std::process::exit(control::showctl::main());
}
