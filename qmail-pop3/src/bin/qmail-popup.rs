// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-popup: read a POP username and password (qmail-popup(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_pop3::qmail_popup);
