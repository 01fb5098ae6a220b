use berth_trust::{Subject, TrustStore};
use serde_json::json;

use super::*;

const IMAGE: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
const LAYER: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000aa";

fn manifest(artifact_type: Option<&str>, layers: serde_json::Value, subject: bool) -> Vec<u8> {
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": LAYER, "size": 2},
        "layers": layers,
    });
    if let Some(artifact_type) = artifact_type {
        manifest["artifactType"] = artifact_type.into();
    }
    if subject {
        manifest["subject"] = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": IMAGE, "size": 512});
    }
    serde_json::to_vec(&manifest).unwrap()
}

fn cosign_layer() -> serde_json::Value {
    json!([{
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "digest": LAYER, "size": 10,
        "annotations": {"dev.cosignproject.cosign/signature": "MEUC"},
    }])
}

#[test]
fn signature_manifests_are_told_from_others() {
    let by_tag = plan(&manifest(None, cosign_layer(), false), true).expect("a cosign tag");
    assert_eq!(by_tag.tool, "cosign");
    assert_eq!(by_tag.layers.len(), 1);
    assert_eq!(by_tag.layers[0].signature.as_deref(), Some("MEUC"));
    assert_eq!(by_tag.subject, None);

    let notation = plan(
        &manifest(
            Some("application/vnd.cncf.notary.signature"),
            json!([{"mediaType": "application/jose+json", "digest": LAYER, "size": 10}]),
            true,
        ),
        false,
    )
    .expect("a notation referrer");
    assert_eq!(notation.tool, "notation");
    let subject = notation.subject.expect("its subject");
    assert_eq!((subject.0.to_string().as_str(), subject.2), (IMAGE, 512));

    let bundle = plan(
        &manifest(
            Some("application/vnd.dev.sigstore.bundle.v0.3+json"),
            json!([]),
            true,
        ),
        false,
    )
    .expect("a sigstore bundle");
    assert_eq!(bundle.tool, "cosign");
    assert!(
        bundle.bundle,
        "every layer of a bundle referrer is a bundle"
    );
    assert!(!by_tag.bundle && !notation.bundle);

    // An SBOM referrer, an image, and bytes that are not JSON are not signatures.
    let sbom = manifest(Some("application/spdx+json"), json!([]), true);
    assert_eq!(plan(&sbom, false), None);
    assert_eq!(plan(&manifest(None, cosign_layer(), false), false), None);
    assert_eq!(plan(b"not json", true), None);
}

#[test]
fn what_cannot_be_judged_is_untrusted_with_its_reason() {
    let subject = Subject {
        digest: IMAGE,
        media_type: "application/vnd.oci.image.manifest.v1+json",
        size: 512,
    };
    let store = TrustStore::default();
    let both = Tools {
        cosign: true,
        notation: true,
    };
    let cosign = plan(&manifest(None, cosign_layer(), false), true).unwrap();
    let unread = verdicts(&cosign, vec![Err("gone".into())], &subject, &store, both, 0);
    assert_eq!(unread.len(), 1);
    assert!(
        !unread[0].trusted && unread[0].reason == "gone",
        "{unread:?}"
    );

    let off = Tools {
        cosign: false,
        notation: true,
    };
    let refused = verdicts(&cosign, vec![Ok(b"{}".to_vec())], &subject, &store, off, 0);
    assert!(!refused[0].trusted);
    assert!(
        refused[0].reason.contains("extensions.trust.cosign"),
        "{refused:?}"
    );

    let empty = plan(&manifest(None, json!([]), false), true).unwrap();
    let none = verdicts(&empty, vec![], &subject, &store, both, 0);
    assert_eq!(
        none.len(),
        1,
        "a manifest without layers still gets a verdict"
    );
    assert!(!none[0].trusted);

    let unsigned_layer = plan(
        &manifest(
            None,
            json!([{"mediaType": "application/octet-stream", "digest": LAYER, "size": 1}]),
            false,
        ),
        true,
    )
    .unwrap();
    let unsigned = verdicts(
        &unsigned_layer,
        vec![Ok(vec![0])],
        &subject,
        &store,
        both,
        0,
    );
    assert!(unsigned[0].reason.contains("carries no cosign signature"));

    // A real check with no key uploaded: untrusted, no author.
    let checked = verdicts(&cosign, vec![Ok(b"{}".to_vec())], &subject, &store, both, 0);
    assert!(
        !checked[0].trusted && checked[0].author.is_empty(),
        "{checked:?}"
    );
}
