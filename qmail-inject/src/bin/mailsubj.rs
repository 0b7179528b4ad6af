// rqmail-link: static (README.md, "How the programs are linked")
//! mailsubj: send a mail message with a subject line (mailsubj(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_inject::mailsubj);
