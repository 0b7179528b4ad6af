//! forward: forward a message from a .qmail program line (forward(1)).

fn main() {
    std::process::exit(qmail_local::helpers::forward_main());
}
