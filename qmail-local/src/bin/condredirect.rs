// rqmail-link: static (README.md, "How the programs are linked")
//! condredirect: redirect a message when a program says so (condredirect(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::condredirect);
