//! rqmail-powerloss: see rqmail-powerloss(8) and RELIABILITY.md.

fn main() {
    std::process::exit(rqmail_reliability::powerloss_main());
}
