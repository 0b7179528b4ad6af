//! qmail-newu: prepare address assignments for qmail-lspawn (qmail-newu(8)).

fn main() {
    std::process::exit(qmail_local::newu::main());
}
