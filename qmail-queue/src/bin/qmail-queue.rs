// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-queue: queue a mail message for delivery (qmail-queue(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_queue::qmail_queue);
