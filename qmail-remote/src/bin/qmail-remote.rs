//! qmail-remote: send a message via SMTP (qmail-remote(8)).

fn main() {
    std::process::exit(qmail_remote::remote::main());
}
