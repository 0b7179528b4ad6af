// rqmail-link: static (README.md, "How the programs are linked")
//! forward: forward a message from a .qmail program line (forward(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::forward);
