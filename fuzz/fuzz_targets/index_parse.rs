//! Index parser: byte 0 selects the Content-Type (index types or none), byte 1 a nesting
//! depth, the rest is the body. Checks the body as is, the body nested that deep inside an
//! unknown field of a valid index, and that the nesting bound is exact.
#![no_main]
use berth_storage::oci::manifest::MAX_NESTING_DEPTH;
use berth_storage::oci::{media_types, parse_manifest};
use libfuzzer_sys::fuzz_target;

const INDEX_CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some(media_types::OCI_INDEX),
    Some(media_types::DOCKER_MANIFEST_LIST),
    Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
];

const VALID_INDEX_START: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"x":"#;

fuzz_target!(|data: &[u8]| {
    let [selector, depth, body @ ..] = data else {
        return;
    };
    let content_type = INDEX_CONTENT_TYPES[usize::from(*selector) % INDEX_CONTENT_TYPES.len()];
    berth_fuzz::check_manifest(body, content_type);

    let depth = usize::from(*depth);
    let mut nested = Vec::with_capacity(VALID_INDEX_START.len() + 2 * depth + body.len() + 1);
    nested.extend_from_slice(VALID_INDEX_START.as_bytes());
    nested.extend(std::iter::repeat_n(b'[', depth));
    nested.extend_from_slice(body);
    nested.extend(std::iter::repeat_n(b']', depth));
    nested.push(b'}');
    berth_fuzz::check_manifest(&nested, content_type);

    // Pure nesting: accepted exactly up to the bound (the index object is one level).
    let mut arrays = Vec::with_capacity(VALID_INDEX_START.len() + 2 * depth + 1);
    arrays.extend_from_slice(VALID_INDEX_START.as_bytes());
    arrays.extend(std::iter::repeat_n(b'[', depth));
    arrays.extend(std::iter::repeat_n(b']', depth));
    if depth == 0 {
        arrays.extend_from_slice(b"null");
    }
    arrays.push(b'}');
    let accepted = parse_manifest(&arrays, content_type).is_ok();
    let within_bound = depth < MAX_NESTING_DEPTH;
    let content_type_agrees = content_type != Some(media_types::DOCKER_MANIFEST_LIST);
    assert_eq!(
        accepted,
        within_bound && content_type_agrees,
        "depth {depth}"
    );
});
