#![no_main]
//! See rqmail_reliability::targets::tlsa.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::tlsa(data));
