//! condredirect: redirect a message when a program says so (condredirect(1)).

fn main() {
    std::process::exit(qmail_local::helpers::condredirect_main());
}
