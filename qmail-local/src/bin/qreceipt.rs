// rqmail-link: static (README.md, "How the programs are linked")
//! qreceipt: respond to delivery notice requests (qreceipt(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::qreceipt);
