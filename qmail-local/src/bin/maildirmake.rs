// rqmail-link: static (README.md, "How the programs are linked")
//! maildirmake: create a maildir (maildirmake(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::maildirmake);
