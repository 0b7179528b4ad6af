fn main() {
    std::process::exit(qmail_send::start::main().code());
}
