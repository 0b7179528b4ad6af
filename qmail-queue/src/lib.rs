//! The qmail queue.
//!
//! * `layout`: the directories of INTERNALS with netqmail's split, file names, and the
//!   creation of an empty queue with hier's owners and modes;
//! * `envelope`: the envelope of qmail-queue(8) and envelopes(5);
//! * `enqueue`: what the qmail-queue program does, step by step, with its exit codes;
//! * `client`: how other programs hand a message to qmail-queue (or `$QMAILQUEUE`) and
//!   read its verdict (netqmail's qmail.c);
//! * `durable`, `trigger`, `fdio`: fsync of files and directories, lock/trigger, reading
//!   the descriptors the protocol hands over;
//! * `passwd`: the invoker's name from /etc/passwd (qmail-queue's Received line);
//! * `scan`: the one rule for message numbers in file names, and the walks over the
//!   queue's directories;
//! * `records`: the records of todo/, info/, local/ and remote/ files, read with a bound,
//!   as qmail-send, qmail-qread and qmail-qctl read them;
//! * `qread`, `qstat`: the queue listings of qmail-qread and qmail-qstat;
//! * [`qctl`] (`proto`, `mark`): the requests qmail-qctl makes of a running qmail-send and
//!   their replies, and the mark of a held message (both ends use them).

mod client;
mod durable;
mod enqueue;
mod envelope;
mod fdio;
mod layout;
mod mark;
mod passwd;
mod proto;
mod qread;
mod qstat;
mod records;
mod scan;
mod sys;
mod trigger;

pub use client::{
    CUSTOM_ERROR_EXIT, CUSTOM_ERROR_FD, CUSTOM_ERROR_MAX, QueueClient, QueueError, queue_program,
};
pub use durable::{fsync_dir, fsync_parent};
pub use envelope::{
    Envelope, EnvelopeError, MAX_ADDR, RecordWriter, Records, copy as copy_envelope,
};
pub use fdio::{FdReader, FdWriter};
pub use layout::{
    Entry as HierEntry, HIER, Kind as HierKind, Owner as HierOwner, Queue, SPLIT,
    create as create_queue, fmtqfn,
};
pub use records::{
    BoundedLine, ChannelRecord, TodoRecord, channel_record, complete_records, info_sender,
    read_bounded, todo_record,
};
pub use scan::{Scan, SubdirScan, ids_in, message_id};
pub use sys::arm_death_alarm;
pub use trigger::pull as pull_trigger;

pub use enqueue::{DEATH_SECS, main as qmail_queue};
pub use qread::main as qmail_qread;
/// qmail-qread's lines for one message from its files' bytes (for the fuzz targets).
pub use qread::{recipient_lines as qread_recipients, summary as qread_summary};
pub use qstat::main as qmail_qstat;

/// The requests qmail-qctl makes of a running qmail-send, their replies, and the mark of a
/// held message: both ends use them.
pub mod qctl {
    pub use crate::mark::{HOLD_BIT, is_held, set as set_hold};
    pub use crate::proto::{
        CHANNELS, Kind, MAX_LINE, Reply, Request, parse_channel, parse_id, socket_name,
    };
}
