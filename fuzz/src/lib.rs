//! Property checks shared by the fuzz targets. Each `check_*` panics when berth's parser
//! disagrees with the spec grammar (as a `regex`) or breaks one of its documented properties;
//! libFuzzer reports the panic as a crash. See reliability-plan B5 for the list.

use std::path::{Component, Path};
use std::str::FromStr;
use std::sync::LazyLock;

use berth_storage::oci::manifest::MAX_NESTING_DEPTH;
use berth_storage::oci::{
    media_types, parse_manifest, Algorithm, ByteRange, ContentRange, Descriptor, Digest,
    DigestError, ManifestError, ManifestKind, Reference, RepoName, Tag,
};
use regex::Regex;
use serde_json::Value;

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid pattern")
}

static DIGEST_GRAMMAR: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"));
static NAME_GRAMMAR: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
});
static TAG_GRAMMAR: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$"));
static CONTENT_RANGE_GRAMMAR: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^(?:bytes )?([0-9]+)-([0-9]+)(?:/([0-9]+|\*))?$"));
static BYTE_RANGE_GRAMMAR: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^(?i:bytes)=([0-9]*)-([0-9]*)$"));

const DATA_ROOT: &str = "/var/lib/berth";

/// `root.join(relative)` stays below `root`: only normal components are added.
fn assert_stays_below_root(relative: &str) {
    let joined = Path::new(DATA_ROOT).join(relative);
    assert!(
        joined.starts_with(DATA_ROOT),
        "{relative:?} escapes the root"
    );
    let added = joined.strip_prefix(DATA_ROOT).expect("prefix checked");
    assert!(
        added
            .components()
            .all(|c| matches!(c, Component::Normal(_))),
        "{relative:?} adds a non-normal path component"
    );
}

/// Digest: accepted iff grammar, length <= 256, registered algorithm and exact lowercase hex.
pub fn check_digest(input: &str) {
    let grammatical = input.len() <= 256 && DIGEST_GRAMMAR.is_match(input);
    let (name, encoded) = input.split_once(':').unwrap_or((input, ""));
    let registered = Algorithm::from_name(name);
    match Digest::from_str(input) {
        Ok(digest) => {
            let algorithm = registered.expect("accepted digest has a registered algorithm");
            assert!(grammatical, "accepted off-grammar digest {input:?}");
            assert_eq!(digest.algorithm(), algorithm);
            assert_eq!(encoded.len(), algorithm.hex_len());
            assert!(encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert_eq!(digest.to_string(), input, "Display does not round-trip");
            assert_eq!(digest.fanout(), &encoded[..2]);
            let path = digest.relative_path();
            assert_eq!(path.matches('/').count(), 2, "{path}");
            assert!(!path.contains(".."), "{path}");
            assert!(path
                .bytes()
                .all(|b| b == b'/' || b.is_ascii_lowercase() || b.is_ascii_digit()));
            assert_stays_below_root(&path);
            let json = serde_json::to_string(&digest).expect("serialize");
            assert_eq!(
                serde_json::from_str::<Digest>(&json).expect("reparse"),
                digest
            );
        }
        Err(DigestError::UnsupportedAlgorithm(reported)) => {
            assert!(grammatical, "off-grammar {input:?} reported as unsupported");
            assert_eq!(reported, name);
            assert!(
                registered.is_none(),
                "registered algorithm reported unsupported"
            );
        }
        Err(DigestError::Malformed) => {
            assert!(
                !grammatical || registered.is_some(),
                "well-formed unregistered {input:?} reported as malformed"
            );
        }
    }
}

/// Hashing any bytes yields a digest that parses back to itself.
pub fn check_hash(selector: u8, bytes: &[u8]) {
    let algorithm = Algorithm::ALL[usize::from(selector) % Algorithm::ALL.len()];
    let digest = Digest::of(algorithm, bytes);
    assert_eq!(digest.to_string().parse::<Digest>().as_ref(), Ok(&digest));
}

/// Repository name: accepted iff the spec regex matches and length <= 255.
pub fn check_repo_name(input: &str) {
    let expected = input.len() <= 255 && NAME_GRAMMAR.is_match(input);
    match RepoName::from_str(input) {
        Ok(name) => {
            assert!(expected, "accepted {input:?}");
            assert_eq!(name.as_str(), input);
            assert_stays_below_root(name.as_str());
            let json = serde_json::to_string(&name).expect("serialize");
            assert_eq!(
                serde_json::from_str::<RepoName>(&json).expect("reparse"),
                name
            );
        }
        Err(error) => assert!(!expected, "rejected {input:?}: {error}"),
    }
}

/// Tag: accepted iff the spec regex matches. Reference: digest iff it contains ':'.
pub fn check_tag_and_reference(input: &str) {
    let tag = Tag::from_str(input);
    assert_eq!(
        tag.is_ok(),
        TAG_GRAMMAR.is_match(input),
        "tag {input:?}: {tag:?}"
    );
    if let Ok(tag) = &tag {
        assert_eq!(tag.to_string(), input);
        assert_stays_below_root(tag.as_str());
    }
    let reference = Reference::from_str(input);
    if input.contains(':') {
        let digest = Digest::from_str(input);
        assert_eq!(
            reference.as_ref().ok().and_then(Reference::as_digest),
            digest.as_ref().ok()
        );
        assert_eq!(reference.is_ok(), digest.is_ok());
    } else {
        assert_eq!(
            reference.as_ref().ok().and_then(Reference::as_tag),
            tag.as_ref().ok()
        );
        assert_eq!(reference.is_ok(), tag.is_ok());
    }
    if let Ok(reference) = reference {
        assert_eq!(reference.to_string(), input);
    }
}

fn decimal(digits: &str) -> Option<u64> {
    // The grammar guarantees digits only; overflow is the only failure.
    digits.parse().ok()
}

/// Content-Range: accepted iff grammar, values fit, start <= end < u64::MAX, end < total.
pub fn check_content_range(input: &str) {
    let trimmed = input.trim_matches([' ', '\t']);
    let expected = CONTENT_RANGE_GRAMMAR
        .captures(trimmed)
        .and_then(|captures| {
            let start = decimal(&captures[1])?;
            let end = decimal(&captures[2])?;
            let total_ok = match captures.get(3).map(|m| m.as_str()) {
                None | Some("*") => true,
                Some(total) => decimal(total).is_some_and(|total| end < total),
            };
            (start <= end && end < u64::MAX && total_ok).then_some((start, end))
        });
    let parsed = ContentRange::from_str(input);
    assert_eq!(
        parsed.as_ref().ok().map(|r| (r.start, r.end_inclusive)),
        expected,
        "content range {input:?}: {parsed:?}"
    );
    if let Ok(range) = parsed {
        assert_eq!(range.len(), range.end_inclusive - range.start + 1);
        assert_eq!(range.to_string().parse::<ContentRange>(), Ok(range));
    }
}

/// Range: single `bytes=` range only; resolve stays inside the blob.
pub fn check_byte_range(input: &str, sizes: &[u64]) {
    let trimmed = input.trim_matches([' ', '\t']);
    let expected = BYTE_RANGE_GRAMMAR.captures(trimmed).and_then(|captures| {
        match (&captures[1], &captures[2]) {
            ("", "") => None,
            ("", length) => decimal(length).map(ByteRange::Suffix),
            (start, "") => decimal(start).map(ByteRange::From),
            (start, end) => {
                let (start, end) = (decimal(start)?, decimal(end)?);
                (start <= end).then_some(ByteRange::FromTo(start, end))
            }
        }
    });
    let parsed = ByteRange::from_str(input);
    assert_eq!(
        parsed.as_ref().ok(),
        expected.as_ref(),
        "range {input:?}: {parsed:?}"
    );
    let Ok(range) = parsed else { return };
    assert_eq!(range.to_string().parse::<ByteRange>(), Ok(range));
    for &size in sizes {
        let resolved = range.resolve(size);
        if let Some((start, end)) = resolved {
            assert!(
                start <= end && end < size,
                "{range:?} of {size} -> {start}..={end}"
            );
        }
        let satisfiable = match range {
            ByteRange::FromTo(start, _) | ByteRange::From(start) => start < size,
            ByteRange::Suffix(length) => length > 0 && size > 0,
        };
        assert_eq!(resolved.is_some(), satisfiable, "{range:?} of {size}");
    }
}

/// Content types the manifest targets choose from with their first input byte.
pub const CONTENT_TYPES: [Option<&str>; 10] = [
    None,
    Some(media_types::OCI_MANIFEST),
    Some(media_types::OCI_INDEX),
    Some(media_types::DOCKER_MANIFEST),
    Some(media_types::DOCKER_MANIFEST_LIST),
    Some(media_types::DOCKER_SCHEMA1),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some("application/vnd.oci.image.index.v1+json ;x=y"),
    Some("application/json"),
    Some(""),
];

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn assert_descriptor_round_trips(descriptor: &Descriptor) {
    let text = descriptor.digest.to_string();
    assert_eq!(text.parse::<Digest>().as_ref(), Ok(&descriptor.digest));
    let json = serde_json::to_string(descriptor).expect("serialize descriptor");
    let reparsed: Descriptor = serde_json::from_str(&json).expect("reparse descriptor");
    assert_eq!(&reparsed, descriptor);
}

fn array_len(document: &Value, key: &str) -> usize {
    document
        .get(key)
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// parse_manifest: the media-type confusion rule, the shape rules and strict descriptors.
pub fn check_manifest(body: &[u8], content_type: Option<&str>) {
    let result = parse_manifest(body, content_type);
    let essence = content_type
        .map(|ct| ct.split(';').next().unwrap_or_default().trim())
        .filter(|essence| !essence.is_empty());
    if essence.is_some_and(|e| e == media_types::DOCKER_SCHEMA1) {
        assert!(
            matches!(result, Err(ManifestError::Unsupported(_))),
            "{result:?}"
        );
    }
    let Ok(manifest) = result else { return };
    let document: Value = match serde_json::from_slice(body) {
        Ok(document) => document,
        // Valid JSON grammar that serde_json's Value cannot hold (1e400 in an unknown field,
        // which the manifest parser skips without converting): nothing more to compare.
        Err(error) if error.to_string().starts_with("number out of range") => return,
        Err(error) => panic!("accepted body is not JSON: {error}"),
    };
    let object = document.as_object().expect("accepted body is an object");
    assert!(
        depth(&document) <= MAX_NESTING_DEPTH,
        "accepted nesting {}",
        depth(&document)
    );
    assert_eq!(object.get("schemaVersion").and_then(Value::as_u64), Some(2));
    let body_media_type = object.get("mediaType").map(|v| v.as_str().expect("string"));
    for declared in [body_media_type, essence].into_iter().flatten() {
        assert!(
            declared.eq_ignore_ascii_case(&manifest.media_type),
            "declared {declared:?} but parsed as {:?}",
            manifest.media_type
        );
    }
    match manifest.kind {
        ManifestKind::Image => {
            assert!(matches!(
                manifest.media_type.as_str(),
                media_types::OCI_MANIFEST | media_types::DOCKER_MANIFEST
            ));
            assert!(
                !object.contains_key("manifests"),
                "image manifest with manifests"
            );
            assert!(manifest.config.is_some() && manifest.manifests.is_empty());
            assert_eq!(manifest.layers.len(), array_len(&document, "layers"));
        }
        ManifestKind::Index => {
            assert!(matches!(
                manifest.media_type.as_str(),
                media_types::OCI_INDEX | media_types::DOCKER_MANIFEST_LIST
            ));
            assert!(!object.contains_key("config") && !object.contains_key("layers"));
            assert!(manifest.config.is_none() && manifest.layers.is_empty());
            assert_eq!(manifest.manifests.len(), array_len(&document, "manifests"));
        }
    }
    let all = manifest
        .blob_references()
        .chain(&manifest.manifests)
        .chain(&manifest.subject);
    for descriptor in all {
        assert_descriptor_round_trips(descriptor);
    }
    if let Some(artifact_type) = manifest.referrer_artifact_type() {
        assert!(!artifact_type.is_empty());
    }
}
