// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-qmtpd: receive mail via QMTP (qmail-qmtpd(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_smtpd::qmail_qmtpd);
