//! The library every rqmail program stands on (the ground floor, with `recipient`
//! and `qmail-tls`).
//!
//! * `home`: where QMAIL_HOME is, and whether this process may trust its environment;
//! * `file`: control files read with netqmail's rules (first line, whole file, integers,
//!   the `me` fallback), where a missing file means the documented default and a file that
//!   exists but cannot be read is a temporary failure;
//! * `constmap`, `rcpthosts`, `badmailfrom`, `cdb`: the lookups built on them;
//! * `conf`: qmail's build-time facts (split, break, paternalism, the spawn limit) and
//!   the control-file defaults several programs share;
//! * `ids`: the qmail users and groups, or single-user mode, and the one table of the
//!   qmail accounts;
//! * `datetime`: the RFC 822 dates qmail writes;
//! * `address`: small helpers on envelope addresses;
//! * [`idna`]: internationalized domain names (U-labels and A-labels) for SMTPUTF8;
//! * `netstring`: the framing of QMQP and QMTP, bounded (one namespace,
//!   [`netstring`]);
//! * [`rfc822`] (`hfield`, `headerbody`, `token822`): message headers as netqmail reads
//!   them, for qmail-inject and the programs .qmail files run (qreceipt, qbiff);
//! * `maildir`: reading a Maildir as netqmail's maildir.c does (qmail-pop3d,
//!   maildir2mbox, maildirwatch);
//! * `errstr`: netqmail's texts for system errors;
//! * `open`: opening queue files without ever waiting on a FIFO (netqmail's open_read
//!   and open_write), devices refused;
//! * `exit`: the exit codes, one type for every program;
//! * `getopt`: netqmail's option rules (sgetopt), [`Getopt`], for every program's
//!   command line;
//! * `commands`, `checkpassword`: netqmail's command-line splitting and the
//!   checkpassword interface, shared by the network servers;
//! * `program`: how the short-lived programs start ([`program_main!`]), and whether
//!   descriptor 2 is a place for diagnostics ([`stderr_is_private`],
//!   [`stderr_is_not_output`]);
//! * [`diag`]: the diagnostics subscriber every program installs (`tracing` events as
//!   the lines the programs always wrote, and the verbose levels of control/loglevel);
//! * [`confine`]: no_new_privs, the capability bounding set, Landlock and seccomp, applied
//!   by each program after start-up with what its role needs;
//! * `sys`: the calls into libc without a safe wrapper, among them [`fork`] and
//!   [`set_environment`], which refuse to run in a process with more than one thread;
//! * `showctl`, `newmrh`: the programs qmail-showctl and qmail-newmrh.

mod address;
mod badmailfrom;
mod cdb;
mod checkpassword;
mod commands;
mod conf;
pub mod confine;
mod constmap;
mod datetime;
mod diag;
mod errstr;
mod exit;
mod file;
mod getopt;
mod headerbody;
mod hfield;
mod home;
pub mod idna;
mod ids;
mod maildir;
mod newmrh;
mod open;
mod program;
mod rcpthosts;
mod showctl;
mod sys;
mod token822;

pub use address::{domain as domain_of, printable, quote, quote_needed, quote2, split_at_last_at};
pub use badmailfrom::BadMailFrom;
pub use cdb::{Cdb, write_atomic as write_cdb};
pub use checkpassword::spawn as spawn_checkpassword;
pub use commands::split as split_command;
pub use conf::{
    BREAK, DEFAULT_BOUNCEFROM, DEFAULT_BOUNCEHOST, DEFAULT_CONCURRENCYLOCAL,
    DEFAULT_CONCURRENCYREMOTE, DEFAULT_DOUBLEBOUNCEHOST, DEFAULT_DOUBLEBOUNCETO,
    DEFAULT_ENVNOATHOST, DEFAULT_QUEUELIFETIME, PATRN, SPAWN_CEILING, SPLIT, spawn_limit,
};
pub use constmap::CaseSet;
pub use datetime::{Tm, date822, now, tm};
pub use errstr::{
    describe as describe_error, errno_str, errno_temp, error_str, error_temp, is_temp,
};
pub use exit::{Exit, ExitError, temp_or_perm};
pub use file::{
    Controls, MAX_CONTROL_FILE, parse_lines, read_bytes, read_int, read_line, read_lines,
    scan_ulong,
};
pub use getopt::{Getopt, GetoptError, Opt, env_progname, progname};
pub use home::{DEFAULT_HOME, home_from, privileged_exec, qmail_home};
pub use ids::{
    ACCOUNTS, GROUP_NAMES, IdError, Ids, USER_NAMES, prepare_lookups, root_mode, uid_of,
};
pub use maildir::{
    Entry as MaildirEntry, ScanError as MaildirScanError, TMP_AGE as MAILDIR_TMP_AGE,
    clean_tmp as clean_maildir_tmp, scan as scan_maildir,
};
pub use open::{nonblocking as open_nonblocking, open_read, open_write, reject_device};
pub use program::{
    start as program_start, stderr_is_not_output, stderr_is_private, stdin_fd, stdout_fd,
};
pub use rcpthosts::RcptHosts;
/// fork(2) and environment changes, for a process that has checked it is single-threaded,
/// and signal dispositions back to the default.
pub use sys::{default_signals, fork, set_environment};

/// Message headers as netqmail reads them: fields and body (its headerbody, with bounds),
/// the known field names (hfield), RFC 822 tokens and address lists (token822).
pub mod rfc822 {
    pub use crate::headerbody::{Error as HeaderError, HeaderBody, Limits};
    pub use crate::hfield::{
        Field, known as known_field, skip_name as skip_field_name, valid as valid_field,
    };
    pub use crate::token822::{
        Kind, Syntax, Token, addrlist, parse as parse_tokens, unparse as unparse_tokens,
        unquote as unquote_tokens,
    };
}

/// Diagnostics through `tracing`: the subscriber, its levels and where they are set.
pub mod diagnostics {
    pub use crate::diag::{
        Diagnostics, LOGLEVEL_ENV, LOGLEVEL_FILE, MAX_LINE, choose_level, init, level_from_lines,
        parse_level,
    };
    pub use tracing::level_filters::LevelFilter;
}

pub use newmrh::main as qmail_newmrh;
pub use showctl::main as qmail_showctl;

/// Netstrings (`12:hello world!,`), the framing of QMQP and QMTP: the writer, a parser of
/// one netstring in a buffer, and a bounded streaming reader, in one namespace.
pub mod netstring;
