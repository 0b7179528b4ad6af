// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-qmqpd: receive mail via QMQP (qmail-qmqpd(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_smtpd::qmail_qmqpd);
