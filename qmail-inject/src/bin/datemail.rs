// rqmail-link: static (README.md, "How the programs are linked")
//! datemail: see datemail(8).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_inject::datemail);
