#![no_main]
//! See rqmail_reliability::targets::inject_header.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::inject_header(data));
