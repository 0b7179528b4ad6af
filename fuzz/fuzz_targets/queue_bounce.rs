#![no_main]
//! See rqmail_reliability::targets::queue_bounce.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::queue_bounce(data));
