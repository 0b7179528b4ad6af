//! maildirmake: create a maildir (maildirmake(1)).

fn main() {
    std::process::exit(qmail_local::maildirmake::main());
}
