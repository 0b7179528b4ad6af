#![no_main]
//! See rqmail_reliability::targets::dkim_message.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::dkim_message(data));
