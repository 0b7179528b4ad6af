#![no_main]
//! See rqmail_reliability::targets::mtasts_policy.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::mtasts_policy(data));
