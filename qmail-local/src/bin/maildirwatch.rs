// rqmail-link: static (README.md, "How the programs are linked")
//! maildirwatch: look for new mail in a maildir (maildirwatch(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::maildirwatch);
