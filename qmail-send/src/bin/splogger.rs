fn main() {
    std::process::exit(qmail_send::splogger::main().code());
}
