//! `Content-Range` (upload PATCH) and `Range` (blob GET) parsers: grammar differential,
//! start <= end, no overflow, single range only, resolve stays inside the blob.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    berth_fuzz::check_content_range(input);
    let sizes = [0, 1, 2, 10, 100, 4096, u64::MAX - 1, u64::MAX];
    berth_fuzz::check_byte_range(input, &sizes);
});
