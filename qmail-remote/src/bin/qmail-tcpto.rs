// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-tcpto: print the table of hosts that recently timed out (qmail-tcpto(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_remote::qmail_tcpto);
