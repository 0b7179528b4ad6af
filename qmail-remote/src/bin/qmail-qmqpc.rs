// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-qmqpc: queue a message via QMQP (qmail-qmqpc(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_remote::qmail_qmqpc);
