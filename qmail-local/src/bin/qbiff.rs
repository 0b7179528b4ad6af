// rqmail-link: static (README.md, "How the programs are linked")
//! qbiff: announce new mail the moment it arrives (qbiff(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::qbiff);
