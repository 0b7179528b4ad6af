//! qmail-smtpd: receive mail via SMTP (qmail-smtpd(8)).

fn main() {
    std::process::exit(qmail_smtpd::main());
}
