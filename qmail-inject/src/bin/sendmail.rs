//! sendmail: see sendmail(8).

fn main() {
    std::process::exit(qmail_inject::sendmail::main());
}
