// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-inject: see qmail-inject(8).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_inject::qmail_inject);
