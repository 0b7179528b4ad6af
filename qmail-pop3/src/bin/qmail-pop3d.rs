// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-pop3d: distribute mail via POP (qmail-pop3d(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_pop3::qmail_pop3d);
