// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-smtpd: receive mail via SMTP (qmail-smtpd(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_smtpd::main);
