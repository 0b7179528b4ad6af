//! Records are read with a limit, so that no input can make a daemon grow without bound:
//! the reader is the queue library's, shared with qmail-qread and qmail-qctl.

pub use qmail_queue::{BoundedLine, read_bounded};
