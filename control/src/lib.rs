//! The library every rqmail program stands on.
//!
//! * [`home`]: where QMAIL_HOME is, and whether this process may trust its environment;
//! * [`file`]: control files read with netqmail's rules (first line, whole file, integers,
//!   the `me` fallback), where a missing file means the documented default and a file that
//!   exists but cannot be read is a temporary failure;
//! * [`constmap`], [`rcpthosts`], [`badmailfrom`], [`cdb`]: the lookups built on them;
//! * [`conf`]: qmail's build-time facts (split, break, paternalism, the spawn limit) and
//!   the control-file defaults several programs share;
//! * [`ids`]: the qmail users and groups, or single-user mode;
//! * [`datetime`]: the RFC 822 dates qmail writes;
//! * [`address`]: small helpers on envelope addresses;
//! * [`errstr`]: netqmail's texts for system errors;
//! * [`exit`]: the exit codes, one type for every program;
//! * [`showctl`], [`newmrh`]: the programs qmail-showctl and qmail-newmrh.

pub mod address;
pub mod badmailfrom;
pub mod cdb;
pub mod conf;
pub mod constmap;
pub mod datetime;
pub mod errstr;
pub mod exit;
pub mod file;
pub mod home;
pub mod ids;
pub mod newmrh;
pub mod program;
pub mod rcpthosts;
pub mod showctl;
mod sys;

pub use exit::{Exit, ExitError};
pub use file::Controls;
pub use home::qmail_home;
