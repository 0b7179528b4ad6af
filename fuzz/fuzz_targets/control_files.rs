#![no_main]
//! See rqmail_reliability::targets::control_files.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::control_files(data));
