//! qmail-tcpok: clear the table of hosts that recently timed out (qmail-tcpok(8)).

fn main() {
    std::process::exit(qmail_remote::tcpto::tcpok_main());
}
