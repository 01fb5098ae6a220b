//! Table tests of `parse_manifest` over real documents (image-spec and Docker examples in
//! `testdata/`) and the rejections of reliability-plan rows M3-M6, M11-M13.

use super::*;
use proptest::prelude::*;

const OCI_MANIFEST_JSON: &str = include_str!("testdata/oci-manifest.json");
const OCI_INDEX_JSON: &str = include_str!("testdata/oci-index.json");
const OCI_ARTIFACT_JSON: &str = include_str!("testdata/oci-artifact.json");
const DOCKER_V2S2_JSON: &str = include_str!("testdata/docker-v2s2.json");
const DOCKER_LIST_JSON: &str = include_str!("testdata/docker-manifest-list.json");
const DOCKER_SCHEMA1_JSON: &str = include_str!("testdata/docker-schema1.json");

const DIGEST_A: &str = "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7";

fn parse(body: &str, content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    parse_manifest(body.as_bytes(), content_type)
}

/// `body` with its top-level `key` replaced (or added) by `value`.
fn with_field(body: &str, key: &str, value: Value) -> String {
    let mut document: Value = serde_json::from_str(body).unwrap();
    document[key] = value;
    document.to_string()
}

fn without_field(body: &str, key: &str) -> String {
    let mut document: Value = serde_json::from_str(body).unwrap();
    document.as_object_mut().unwrap().remove(key);
    document.to_string()
}

fn descriptor_json(digest: &str, size: Value) -> Value {
    serde_json::json!({"mediaType": "application/octet-stream", "digest": digest, "size": size})
}

fn assert_invalid(result: Result<ParsedManifest, ManifestError>, case: &str) {
    match result {
        Err(ManifestError::Invalid(_)) => {}
        other => panic!("{case}: expected Invalid, got {other:?}"),
    }
}

#[test]
fn parses_real_documents() {
    let manifest = parse(OCI_MANIFEST_JSON, Some(media_types::OCI_MANIFEST)).unwrap();
    assert_eq!(manifest.kind, ManifestKind::Image);
    assert_eq!(manifest.media_type, media_types::OCI_MANIFEST);
    assert_eq!(
        manifest.config.as_ref().unwrap().digest.to_string(),
        DIGEST_A
    );
    assert_eq!(manifest.layers.len(), 3);
    assert_eq!(manifest.blob_references().count(), 4);
    assert_eq!(manifest.subject.as_ref().unwrap().size, 7682);
    assert_eq!(
        manifest.annotations.as_ref().unwrap()["com.example.key1"],
        "value1"
    );
    assert_eq!(
        manifest.referrer_artifact_type().as_deref(),
        Some(media_types::OCI_CONFIG)
    );

    let index = parse(OCI_INDEX_JSON, Some(media_types::OCI_INDEX)).unwrap();
    assert_eq!(index.kind, ManifestKind::Index);
    assert_eq!(index.manifests.len(), 2);
    assert_eq!(index.blob_references().count(), 0);
    assert_eq!(index.manifests[0].platform.as_ref().unwrap()["os"], "linux");
    assert_eq!(index.referrer_artifact_type(), None);

    let artifact = parse(OCI_ARTIFACT_JSON, None).unwrap();
    assert_eq!(
        artifact.referrer_artifact_type().as_deref(),
        Some("application/vnd.example.sbom.v1")
    );
    assert!(artifact.subject.is_some());

    let docker = parse(DOCKER_V2S2_JSON, Some(media_types::DOCKER_MANIFEST)).unwrap();
    assert_eq!(docker.kind, ManifestKind::Image);
    assert_eq!(docker.layers.len(), 2);

    let list = parse(DOCKER_LIST_JSON, Some(media_types::DOCKER_MANIFEST_LIST)).unwrap();
    assert_eq!(list.kind, ManifestKind::Index);
    assert_eq!(list.media_type, media_types::DOCKER_MANIFEST_LIST);
}

#[test]
fn chooses_the_media_type() {
    // Content-Type parameters are ignored.
    let with_charset = format!("{}; charset=utf-8", media_types::OCI_MANIFEST);
    assert!(parse(OCI_MANIFEST_JSON, Some(&with_charset)).is_ok());
    // Missing body mediaType: the Content-Type decides (OCI allows it to be absent).
    let no_media_type = without_field(OCI_INDEX_JSON, "mediaType");
    let index = parse(&no_media_type, Some(media_types::OCI_INDEX)).unwrap();
    assert_eq!(index.media_type, media_types::OCI_INDEX);
    // Missing Content-Type: the body decides.
    assert_eq!(
        parse(OCI_INDEX_JSON, None).unwrap().kind,
        ManifestKind::Index
    );
    // An empty Content-Type counts as missing.
    assert!(parse(OCI_INDEX_JSON, Some(" ; q=1")).is_ok());
    assert_invalid(parse(&no_media_type, None), "neither body nor header");
    // M6: both present and different.
    assert_invalid(
        parse(OCI_MANIFEST_JSON, Some(media_types::DOCKER_MANIFEST)),
        "M6",
    );
    assert_invalid(parse(OCI_INDEX_JSON, Some(media_types::OCI_MANIFEST)), "M6");
}

#[test]
fn refuses_unsupported_formats() {
    for content_type in [
        Some(media_types::DOCKER_SCHEMA1),
        Some(media_types::DOCKER_SCHEMA1_SIGNED),
    ] {
        assert!(matches!(
            parse(DOCKER_SCHEMA1_JSON, content_type),
            Err(ManifestError::Unsupported(_))
        ));
    }
    let schema1_by_body = with_field(
        DOCKER_SCHEMA1_JSON,
        "mediaType",
        media_types::DOCKER_SCHEMA1.into(),
    );
    assert!(matches!(
        parse(&schema1_by_body, None),
        Err(ManifestError::Unsupported(_))
    ));
    for content_type in [
        "application/json",
        "text/plain",
        "application/vnd.oci.image.config.v1+json",
    ] {
        assert_eq!(
            parse(
                &without_field(OCI_MANIFEST_JSON, "mediaType"),
                Some(content_type)
            ),
            Err(ManifestError::UnsupportedMediaType(content_type.to_owned()))
        );
    }
    let huge = format!("application/{}", "x".repeat(100_000));
    match parse(&without_field(OCI_MANIFEST_JSON, "mediaType"), Some(&huge)) {
        Err(ManifestError::UnsupportedMediaType(shown)) => assert!(shown.len() < 600),
        other => panic!("huge media type: {other:?}"),
    }
    match parse(
        &with_field(OCI_MANIFEST_JSON, "schemaVersion", huge.into()),
        None,
    ) {
        Err(ManifestError::Invalid(message)) => assert!(message.len() < 600, "{message}"),
        other => panic!("huge schemaVersion: {other:?}"),
    }
    // The schema 1 body without any media type is simply not a schema 2 document.
    assert_invalid(parse(DOCKER_SCHEMA1_JSON, None), "schema1 without type");
}

#[test]
fn rejects_type_confusion() {
    let image_with_manifests = with_field(OCI_MANIFEST_JSON, "manifests", serde_json::json!([]));
    assert_invalid(parse(&image_with_manifests, None), "M4 empty manifests");
    let image_with_null_manifests = with_field(OCI_MANIFEST_JSON, "manifests", Value::Null);
    assert_invalid(parse(&image_with_null_manifests, None), "M4 null manifests");
    let docker_with_manifests = with_field(DOCKER_V2S2_JSON, "manifests", serde_json::json!([]));
    assert_invalid(parse(&docker_with_manifests, None), "M4 docker");
    let config = descriptor_json(DIGEST_A, 1.into());
    for key in ["config", "layers"] {
        let value = if key == "config" {
            config.clone()
        } else {
            serde_json::json!([config.clone()])
        };
        assert_invalid(parse(&with_field(OCI_INDEX_JSON, key, value), None), "M5");
        let list = with_field(DOCKER_LIST_JSON, key, serde_json::json!([]));
        assert_invalid(parse(&list, None), "M5 docker");
    }
}

#[test]
fn rejects_bad_structure() {
    let bad_bodies = [
        ("empty", String::new()),
        ("not json", "hello".to_owned()),
        ("array", format!("[{OCI_MANIFEST_JSON}]")),
        (
            "positional array",
            format!("[2, \"{}\"]", media_types::OCI_MANIFEST),
        ),
        (
            "truncated",
            OCI_MANIFEST_JSON[..OCI_MANIFEST_JSON.len() / 2].to_owned(),
        ),
        ("trailing garbage", format!("{OCI_MANIFEST_JSON} x")),
        (
            "two documents",
            format!("{OCI_MANIFEST_JSON}{OCI_MANIFEST_JSON}"),
        ),
        ("number", "2".to_owned()),
        ("null", "null".to_owned()),
        (
            "schemaVersion 1",
            with_field(OCI_MANIFEST_JSON, "schemaVersion", 1.into()),
        ),
        (
            "schemaVersion \"2\"",
            with_field(OCI_MANIFEST_JSON, "schemaVersion", "2".into()),
        ),
        (
            "schemaVersion 2.0",
            with_field(OCI_MANIFEST_JSON, "schemaVersion", 2.0.into()),
        ),
        (
            "no schemaVersion",
            without_field(OCI_MANIFEST_JSON, "schemaVersion"),
        ),
        (
            "mediaType number",
            with_field(OCI_MANIFEST_JSON, "mediaType", 1.into()),
        ),
        ("no config", without_field(OCI_MANIFEST_JSON, "config")),
        (
            "null config",
            with_field(OCI_MANIFEST_JSON, "config", Value::Null),
        ),
        (
            "layers object",
            with_field(OCI_MANIFEST_JSON, "layers", serde_json::json!({})),
        ),
        (
            "layers null",
            with_field(OCI_MANIFEST_JSON, "layers", Value::Null),
        ),
        ("no manifests", without_field(OCI_INDEX_JSON, "manifests")),
        (
            "annotation number",
            with_field(
                OCI_MANIFEST_JSON,
                "annotations",
                serde_json::json!({"a": 1}),
            ),
        ),
        (
            "artifactType bad",
            with_field(OCI_ARTIFACT_JSON, "artifactType", "sbom".into()),
        ),
        (
            "artifactType number",
            with_field(OCI_ARTIFACT_JSON, "artifactType", 3.into()),
        ),
        (
            "subject bad",
            with_field(OCI_MANIFEST_JSON, "subject", serde_json::json!({})),
        ),
        (
            "duplicate config",
            OCI_MANIFEST_JSON.replacen(
                "\"config\"",
                &format!(
                    "\"config\": {},\n\"config\"",
                    descriptor_json(DIGEST_A, 1.into())
                ),
                1,
            ),
        ),
    ];
    for (case, body) in bad_bodies {
        assert_invalid(parse(&body, Some(media_types::OCI_MANIFEST)), case);
    }
    // Found by fuzz/manifest_parse: serde_json does not check UTF-8 inside ignored fields.
    for bad in [b"\xff\xfe".as_slice(), b"\xaa\xaa", b"\xed\xa0\x80"] {
        let mut body = OCI_MANIFEST_JSON
            .trim_end()
            .trim_end_matches('}')
            .as_bytes()
            .to_vec();
        body.extend_from_slice(b",\"unknown\":\"");
        body.extend_from_slice(bad);
        body.extend_from_slice(b"\"}");
        match parse_manifest(&body, None) {
            Err(ManifestError::Invalid(message)) => assert!(message.contains("UTF-8"), "{message}"),
            other => panic!("invalid UTF-8 {bad:?}: {other:?}"),
        }
        let valid = String::from_utf8_lossy(&body).into_owned();
        assert!(
            parse(&valid, None).is_ok(),
            "control: same document, valid UTF-8"
        );
    }
}

#[test]
fn rejects_bad_descriptors() {
    let hex64 = "a".repeat(64);
    let cases = [
        ("M11 negative size", descriptor_json(DIGEST_A, (-1).into())),
        ("fractional size", descriptor_json(DIGEST_A, 1.5.into())),
        ("float size", descriptor_json(DIGEST_A, 1.0.into())),
        ("string size", descriptor_json(DIGEST_A, "1".into())),
        (
            "huge size",
            descriptor_json(DIGEST_A, serde_json::json!(18446744073709551616.0)),
        ),
        (
            "M11 malformed digest",
            descriptor_json("sha256:xyz", 1.into()),
        ),
        (
            "traversal digest",
            descriptor_json("sha256:../../etc/passwd", 1.into()),
        ),
        (
            "M11 unknown algorithm",
            descriptor_json(&format!("md5:{hex64}"), 1.into()),
        ),
        (
            "uppercase digest",
            descriptor_json(&format!("sha256:{}", "A".repeat(64)), 1.into()),
        ),
        (
            "no digest",
            serde_json::json!({"mediaType": "a/b", "size": 1}),
        ),
        (
            "no size",
            serde_json::json!({"mediaType": "a/b", "digest": DIGEST_A}),
        ),
        (
            "no mediaType",
            serde_json::json!({"digest": DIGEST_A, "size": 1}),
        ),
        (
            "empty mediaType",
            serde_json::json!({"mediaType": "", "digest": DIGEST_A, "size": 1}),
        ),
        (
            "bad mediaType",
            serde_json::json!({"mediaType": "a b/c", "digest": DIGEST_A, "size": 1}),
        ),
        ("array descriptor", serde_json::json!(["a/b", DIGEST_A, 1])),
        ("null descriptor", Value::Null),
    ];
    for (case, descriptor) in cases {
        let as_config = with_field(OCI_MANIFEST_JSON, "config", descriptor.clone());
        assert_invalid(parse(&as_config, None), case);
        let as_layer = with_field(OCI_MANIFEST_JSON, "layers", serde_json::json!([descriptor]));
        assert_invalid(parse(&as_layer, None), case);
        let as_child = with_field(OCI_INDEX_JSON, "manifests", serde_json::json!([descriptor]));
        assert_invalid(parse(&as_child, None), case);
    }
}

#[test]
fn accepts_unknown_fields_and_media_types() {
    // M13: unknown fields anywhere, unknown layer and config media types, artifacts without
    // layers, empty artifactType.
    let mut document: Value = serde_json::from_str(OCI_MANIFEST_JSON).unwrap();
    document["futureField"] = serde_json::json!({"nested": [1, 2, {"x": null}]});
    document["config"]["mediaType"] = "application/vnd.example.unknown+json".into();
    document["config"]["extra"] = true.into();
    document["layers"][0]["mediaType"] = "application/x-made-up".into();
    let manifest = parse(&document.to_string(), None).unwrap();
    assert_eq!(manifest.layers[0].media_type, "application/x-made-up");

    // Found by fuzz/index_parse: a number beyond f64 in an unknown field is valid JSON
    // grammar; it is skipped, never converted, so it is accepted.
    let huge_number = format!(
        "{},\"x\":1e407}}",
        OCI_INDEX_JSON.trim_end().trim_end_matches('}')
    );
    assert!(parse(&huge_number, None).is_ok());

    let no_layers = without_field(OCI_ARTIFACT_JSON, "layers");
    assert!(parse(&no_layers, None).unwrap().layers.is_empty());
    let empty_artifact_type = with_field(OCI_ARTIFACT_JSON, "artifactType", "".into());
    let parsed = parse(&empty_artifact_type, None).unwrap();
    assert_eq!(parsed.artifact_type, None);
    assert_eq!(
        parsed.referrer_artifact_type().as_deref(),
        Some(media_types::OCI_EMPTY)
    );
    let empty_index = with_field(OCI_INDEX_JSON, "manifests", serde_json::json!([]));
    assert!(parse(&empty_index, None).unwrap().manifests.is_empty());
    let sha512_child = descriptor_json(&format!("sha512:{}", "0".repeat(128)), 0.into());
    let index = with_field(
        OCI_INDEX_JSON,
        "manifests",
        serde_json::json!([sha512_child]),
    );
    assert!(parse(&index, None).is_ok());
}

#[test]
fn deep_nesting_fails_fast_without_stack_overflow() {
    // M3: 100 000 nested `[` or `{` as the document, and inside otherwise valid documents
    // (unknown field, annotations, platform), both unterminated and properly closed.
    let depth = 100_000;
    let open = "[".repeat(depth);
    let closed = format!("{open}{}", "]".repeat(depth));
    let valid_index = |key: &str, value: &str| {
        let index = without_field(OCI_INDEX_JSON, key);
        format!("{},\"{key}\":{value}}}", index.trim_end_matches('}'))
    };
    let child_with_platform =
        format!(r#"[{{"mediaType":"a/b","digest":"{DIGEST_A}","size":1,"platform":{closed}}}]"#);
    let limit = "nested deeper than";
    for (case, body, expected) in [
        ("open arrays", open.clone(), limit),
        ("closed arrays", closed.clone(), limit),
        ("open objects", "{\"a\":".repeat(depth), limit),
        ("unknown field", valid_index("x", &closed), limit),
        ("unterminated unknown field", valid_index("x", &open), limit),
        (
            "annotations",
            valid_index("annotations", &format!("{{\"a\":{closed}}}")),
            limit,
        ),
        (
            "platform",
            valid_index("manifests", &child_with_platform),
            limit,
        ),
    ] {
        match parse(&body, Some(media_types::OCI_INDEX)) {
            Err(ManifestError::Invalid(message)) => {
                assert!(message.contains(expected), "{case}: {message}")
            }
            other => panic!("{case}: expected Invalid, got {other:?}"),
        }
    }
    // The boundary is exact, brackets inside strings do not count, and the scan happens
    // before serde_json's own recursion limit (128) could be the one to answer.
    let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    assert!(parse(&valid_index("x", &nested(MAX_NESTING_DEPTH - 1)), None).is_ok());
    assert_invalid(
        parse(&valid_index("x", &nested(MAX_NESTING_DEPTH)), None),
        "limit",
    );
    let brackets_in_string = format!("\"\\\"{}\"", "[".repeat(1000));
    assert!(parse(&valid_index("x", &brackets_in_string), None).is_ok());
}

#[test]
fn lone_surrogate_escapes_are_refused_even_in_unknown_fields() {
    // Found by fuzz target index_parse: serde_json skips an unknown field without decoding
    // its `\u` escapes, so a lone surrogate there was stored, and any client that decodes
    // the whole manifest (serde_json::Value, browsers) then fails on it.
    let with_x = |value: &str| {
        let index = without_field(OCI_INDEX_JSON, "x");
        format!("{},\"x\":{value}}}", index.trim_end_matches('}'))
    };
    for (case, value) in [
        ("lone low", r#""\udfff""#),
        ("lone high at end", r#""a\ud800""#),
        ("high then text", r#""\ud800a""#),
        ("high then non-u escape", r#""\ud800\n""#),
        ("two highs", r#""\ud800\ud800""#),
        ("low then high", r#""\udc00\ud800""#),
        ("in a key", r#"{"\udc00":1}"#),
        ("nested", r#"[{"k":["\uDFFF"]}]"#),
    ] {
        assert_invalid(parse(&with_x(value), Some(media_types::OCI_INDEX)), case);
    }
    for (case, value) in [
        ("pair", r#""\ud83d\ude00""#),
        ("pair upper case", r#""\uD83D\uDE00""#),
        ("escaped backslash before u", r#""\\udfff""#),
        ("plain escapes", r#""\"\\\/\b\f\n\r\t\u0041""#),
    ] {
        let body = with_x(value);
        assert!(
            parse(&body, Some(media_types::OCI_INDEX)).is_ok(),
            "{case}: {body}"
        );
        serde_json::from_str::<Value>(&body).expect(case);
    }
}

#[test]
fn descriptors_serialize_in_camel_case_without_nones() {
    let manifest = parse(OCI_ARTIFACT_JSON, None).unwrap();
    let config = manifest.config.unwrap();
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "mediaType": media_types::OCI_EMPTY,
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
        })
    );
    assert_eq!(serde_json::from_value::<Descriptor>(json).unwrap(), config);
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_manifest(&body, Some(media_types::OCI_MANIFEST));
        let _ = parse_manifest(&body, None);
    }

    #[test]
    fn descriptor_round_trips(
        size in any::<u64>(),
        hex in "[0-9a-f]{64}",
        media_type in "[a-z][a-z0-9.+-]{0,20}/[a-z][a-z0-9.+-]{0,20}",
        annotations in proptest::option::of(proptest::collection::btree_map("\\PC{0,8}", "\\PC{0,8}", 0..4)),
    ) {
        let descriptor = Descriptor {
            media_type,
            digest: format!("sha256:{hex}").parse().unwrap(),
            size,
            artifact_type: None,
            annotations,
            urls: None,
            platform: None,
        };
        let json = serde_json::to_string(&descriptor).unwrap();
        prop_assert_eq!(serde_json::from_str::<Descriptor>(&json).unwrap(), descriptor);
    }
}
