#![no_main]
//! See rqmail_reliability::targets::smtp_session.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::smtp_session(data));
