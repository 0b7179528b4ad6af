fn main() {
    std::process::exit(qmail_send::qmail_send().code());
}
