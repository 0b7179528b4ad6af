//! qmail-getpw: give addresses to users (qmail-getpw(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_local::qmail_getpw);
