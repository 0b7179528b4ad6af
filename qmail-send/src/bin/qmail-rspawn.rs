fn main() {
    std::process::exit(qmail_send::spawn::remote::main().code());
}
