#![no_main]
//! See rqmail_reliability::targets::netstring.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::netstring(data));
