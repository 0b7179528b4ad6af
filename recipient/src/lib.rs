//! Where mail for a recipient goes: the rules that qmail-send, qmail-lspawn, qmail-getpw,
//! qmail-local and qmail-smtpd's recipient validation must agree on, written once.
//!
//! * routing (qmail-send's preprocessing): [`Route`] (control/envnoathost, locals,
//!   percenthack, virtualdomains) and [`rewrite`], which makes an envelope recipient
//!   local or remote; [`strip_vdom_prepend`] names it again in a bounce;
//! * users/assign and users/cdb (qmail-users(5)): [`compile_users_assign`] (qmail-newu),
//!   [`lookup_users_cdb`] (qmail-lspawn) and [`Assignment::parse`], the one reading of
//!   an assignment record, whether it comes from users/cdb or from qmail-getpw;
//! * qmail-getpw's rules: [`getpw`] over [`Accounts`] (the system's, or single-user
//!   mode's);
//! * .qmail files (dot-qmail(5)): the names tried ([`candidates`], [`search_dotqmail`]),
//!   how qmail-local judges its home and the errors it meets, and what the lines say
//!   ([`parse_dotqmail`]);
//! * [`deliverable`]: all of the above traced for one local address, without
//!   delivering: whether qmail-local would find a mailbox for it.

#![forbid(unsafe_code)]

mod dotqmail;
mod getpw;
mod mailbox;
mod route;
mod users;

pub use dotqmail::{
    Candidate, HomeMode, LimitError as DotQmailLimit, Line, MAX_FILE as DOTQMAIL_MAX_FILE,
    MAX_LINE as DOTQMAIL_MAX_LINE, MAX_LINES as DOTQMAIL_MAX_LINES, candidates, classify,
    error_defers as dotqmail_error_defers, home_mode, no_mailbox, owner_names,
    parse as parse_dotqmail, safe_ext, search as search_dotqmail,
};
pub use getpw::{
    ALIAS, Accounts, Found, Pw, SingleUser as SingleUserAccounts, System as SystemAccounts,
    USERLEN, find as getpw, root_mode as getpw_root_mode,
};
pub use mailbox::{deliverable, has_mailbox};
pub use route::{Channel, Route, RouteError, VirtualDomains, rewrite, strip_vdom_prepend};
pub use users::{
    AssignError, Assignment, MAX_LINE as ASSIGN_MAX_LINE, compile as compile_users_assign,
    lookup as lookup_users_cdb, record as users_assign_record,
};
