// rqmail-link: static (README.md, "How the programs are linked")
//! maildir2mbox: move mail from a maildir to an mbox (maildir2mbox(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::maildir2mbox);
