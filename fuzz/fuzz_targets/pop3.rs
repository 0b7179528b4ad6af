#![no_main]
//! See rqmail_reliability::targets::pop3.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::pop3(data));
