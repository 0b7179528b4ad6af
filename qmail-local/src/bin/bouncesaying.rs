//! bouncesaying: bounce a message with a given text (bouncesaying(1)).

fn main() {
    std::process::exit(qmail_local::helpers::bouncesaying_main());
}
