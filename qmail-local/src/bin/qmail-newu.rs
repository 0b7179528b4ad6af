// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-newu: prepare address assignments for qmail-lspawn (qmail-newu(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::qmail_newu);
