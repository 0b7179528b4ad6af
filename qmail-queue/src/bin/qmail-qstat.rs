// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-qstat: summarize the state of the mail queue (qmail-qstat(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_queue::qmail_qstat);
