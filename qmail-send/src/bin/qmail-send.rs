fn main() {
    std::process::exit(qmail_send::send::main().code());
}
