fn main() {
    std::process::exit(qmail_send::clean::main().code());
}
