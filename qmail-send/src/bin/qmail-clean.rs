// rqmail-link: static (README.md, "How the programs are linked")
fn main() {
    std::process::exit(qmail_send::qmail_clean().code());
}
