//! End-to-end tests: the built programs driven the way a user drives them. One test
//! binary, one module per program or path (ripgrep's layout).

mod authverify;
mod crash;
mod dane;
mod dkim;
mod docs;
mod fulldisk;
mod hostile;
mod inject;
mod installer;
mod linking;
mod load;
mod local;
mod mailtools;
mod mtasts;
mod pop3;
mod powerloss;
mod privileges;
mod qmgmt;
mod qmqp;
mod queue;
mod queuefuzz;
mod quickstart;
mod rcpt_agreement;
mod relsys;
mod remote;
mod rootmode;
mod rootpath;
mod send;
mod smtpd;
mod smtpd_tls;
mod smtputf8;
mod srs;
mod supervise;
mod tcpenv;
mod tools;
