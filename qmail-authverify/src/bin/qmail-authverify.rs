// rqmail-link: static (README.md, "How the programs are linked")
//! qmail-authverify: check SPF, DKIM and DMARC of a received message, record the results
//! and hand it to qmail-queue (qmail-authverify(8)).
#![cfg_attr(not(test), no_main)]

control::program_main!(qmail_authverify::qmail_authverify);
