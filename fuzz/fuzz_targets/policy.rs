//! libFuzzer entry point; the body lives in `ward_fuzz::policy` so the corpus
//! replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ward_fuzz::policy(data));
