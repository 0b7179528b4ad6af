#![no_main]
//! See rqmail_reliability::targets::dotqmail.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::dotqmail(data));
