// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-smtpd-server: qmail-smtpd's sessions forked from one listening process, without
//! an exec per connection (qmail-smtpd-server(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_smtpd::qmail_smtpd_server);
