fn main() {
    std::process::exit(qmail_send::spawn::local::main().code());
}
