//! Tag validator against the spec regex, and the tag-or-digest rule of references.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        berth_fuzz::check_tag_and_reference(input);
    }
});
