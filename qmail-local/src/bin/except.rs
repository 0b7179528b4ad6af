// rqmail-link: static (README.md, "How the programs are linked")
//! except: reverse the exit code of a delivery program (except(1)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::except);
