//! Manifest parser with any of several Content-Types (first byte selects it, the rest is the
//! body): media-type confusion rule, shape rules, strict descriptors, nesting bound.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type =
        berth_fuzz::CONTENT_TYPES[usize::from(selector) % berth_fuzz::CONTENT_TYPES.len()];
    berth_fuzz::check_manifest(body, content_type);
});
