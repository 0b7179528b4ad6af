//! qmail-queue through its descriptors.
