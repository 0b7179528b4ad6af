//! qmail-inject (work in progress)
