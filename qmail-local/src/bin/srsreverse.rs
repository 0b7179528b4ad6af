// rqmail-link: static (README.md, "How the programs are linked")
//! srsreverse: forward a bounce that came back to an SRS address (srsreverse(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::srsreverse);
