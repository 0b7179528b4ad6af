#![no_main]
//! See rqmail_reliability::targets::remote_reply.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::remote_reply(data));
