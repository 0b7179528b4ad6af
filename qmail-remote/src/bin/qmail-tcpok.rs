// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-tcpok: clear the table of hosts that recently timed out (qmail-tcpok(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_remote::qmail_tcpok);
