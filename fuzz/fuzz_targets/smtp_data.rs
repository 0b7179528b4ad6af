#![no_main]
//! See rqmail_reliability::targets::smtp_data.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::smtp_data(data));
