// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-qctl: list, show, hold, release, delete and retry queued messages, pause and
//! resume deliveries, while qmail-send runs (qmail-qctl(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_qctl::qmail_qctl);
