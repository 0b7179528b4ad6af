// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-local: deliver or forward a mail message (qmail-local(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::qmail_local);
