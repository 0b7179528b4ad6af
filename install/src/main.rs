//! rqmail-install: lay out a qmail home (see rqmail-install(8)).

fn main() {
    std::process::exit(install::rqmail_install().code());
}
