//! qmail-local (work in progress)
