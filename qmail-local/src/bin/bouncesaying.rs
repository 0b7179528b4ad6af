// rqmail-link: static (README.md, "How the programs are linked")
//! bouncesaying: bounce a message with a given text (bouncesaying(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::bouncesaying);
