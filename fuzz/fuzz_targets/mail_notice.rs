#![no_main]
//! See rqmail_reliability::targets::mail_notice.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rqmail_reliability::targets::mail_notice(data));
