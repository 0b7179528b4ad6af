// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-newmrh: compile control/morercpthosts into morercpthosts.cdb (qmail-newmrh(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(control::qmail_newmrh);
