// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-pw2u: build address assignments from a passwd file (qmail-pw2u(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::qmail_pw2u);
