//! Digest parser: spec grammar differential, Display round trip, safe storage path; plus
//! hashing arbitrary bytes always yields a parseable digest.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&selector, rest)) = data.split_first() {
        berth_fuzz::check_hash(selector, rest);
    }
    if let Ok(input) = std::str::from_utf8(data) {
        berth_fuzz::check_digest(input);
    }
});
