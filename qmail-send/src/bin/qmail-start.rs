fn main() {
    std::process::exit(qmail_send::qmail_start().code());
}
