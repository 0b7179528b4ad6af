//! preline: prepend the delivery header lines for a program (preline(1)).

fn main() {
    std::process::exit(qmail_local::helpers::preline_main());
}
