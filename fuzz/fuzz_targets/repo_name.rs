//! Repository name validator against the distribution-spec regex; names stay below the root.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        berth_fuzz::check_repo_name(input);
    }
});
