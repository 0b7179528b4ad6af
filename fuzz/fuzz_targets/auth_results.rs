#![no_main]
//! See rqmail_reliability::targets::auth_results.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::auth_results(data));
