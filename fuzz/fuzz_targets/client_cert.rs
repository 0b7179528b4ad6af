#![no_main]
//! See rqmail_reliability::targets::client_cert.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::client_cert(data));
