//! The qmail queue.
//!
//! * [`layout`]: the directories of INTERNALS with netqmail's split, file names, and the
//!   creation of an empty queue with hier's owners and modes;
//! * [`envelope`]: the envelope of qmail-queue(8) and envelopes(5);
//! * [`enqueue`]: what the qmail-queue program does, step by step, with its exit codes;
//! * [`client`]: how other programs hand a message to qmail-queue (or `$QMAILQUEUE`) and
//!   read its verdict (netqmail's qmail.c);
//! * [`durable`], [`trigger`], [`fdio`]: fsync of files and directories, lock/trigger,
//!   reading the descriptors the protocol hands over;
//! * [`qread`], [`qstat`]: the queue listings of qmail-qread and qmail-qstat;
//! * [`qctl`], [`mark`]: the requests qmail-qctl makes of a running qmail-send and their
//!   replies, and the mark of a held message (both ends use them).

pub mod client;
pub mod durable;
pub mod enqueue;
pub mod envelope;
pub mod fdio;
pub mod layout;
pub mod mark;
pub mod qctl;
pub mod qread;
pub mod qstat;
pub mod scan;
mod sys;
pub mod trigger;

pub use client::{QueueClient, QueueError};
pub use envelope::Envelope;
pub use layout::Queue;
