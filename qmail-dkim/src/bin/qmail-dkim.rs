// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-dkim: DKIM-sign a message and hand it to qmail-queue (qmail-dkim(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_dkim::qmail_dkim);
