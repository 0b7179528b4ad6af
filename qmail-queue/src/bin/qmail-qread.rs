// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-qread: list outgoing messages and their recipients (qmail-qread(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_queue::qmail_qread);
