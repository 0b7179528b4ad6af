// rqmail-link: static (README.md, "How the programs are linked")
//! preline: prepend the delivery header lines for a program (preline(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::preline);
