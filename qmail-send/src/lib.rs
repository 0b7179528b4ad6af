//! qmail-send (work in progress)
