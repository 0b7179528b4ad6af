fn main() {
    std::process::exit(qmail_send::splogger().code());
}
