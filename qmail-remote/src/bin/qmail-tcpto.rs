//! qmail-tcpto: print the table of hosts that recently timed out (qmail-tcpto(8)).

fn main() {
    std::process::exit(qmail_remote::tcpto::tcpto_main());
}
