// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-remote: send a message via SMTP (qmail-remote(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_remote::qmail_remote);
