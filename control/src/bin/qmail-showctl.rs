// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-showctl: explain the qmail configuration (qmail-showctl(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(control::qmail_showctl);
