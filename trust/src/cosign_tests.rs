//! Tests of the cosign verifiers, with keys minted by ring and rcgen.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;

use super::*;
use crate::testing::{self, TestKey};

pub(crate) const DIGEST: &str =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const OTHER_DIGEST: &str =
    "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn subject() -> Subject<'static> {
    Subject {
        digest: DIGEST,
        media_type: "application/vnd.oci.image.manifest.v1+json",
        size: 1234,
    }
}

fn store_of(keys: &[&TestKey]) -> TrustStore {
    TrustStore {
        cosign: keys
            .iter()
            .map(|key| CosignKey::from_pem(key.public_pem().as_bytes()).expect("public key"))
            .collect(),
        certificates: Vec::new(),
    }
}

pub(crate) fn legacy_payload(digest: &str) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": {"docker-reference": "registry.example/app"},
            "image": {"docker-manifest-digest": digest},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

#[test]
fn legacy_trusts_a_signature_of_every_key_type() {
    for key in [
        testing::p256_key(),
        testing::p384_key(),
        testing::ed25519_key(),
        testing::rsa2048_key(),
    ] {
        let payload = legacy_payload(DIGEST);
        let signature = STANDARD.encode(key.sign_cosign(&payload));
        let store = store_of(&[&testing::p256_key(), &key]);
        let verdict = verify_cosign_legacy(&payload, &signature, &subject(), &store);
        assert_eq!(
            verdict,
            Verdict::trusted(Tool::Cosign, key.public_pem(), None),
            "{:?}",
            key.kind
        );
    }
}

#[test]
fn legacy_accepts_rsa_pss_and_unpadded_base64() {
    let payload = legacy_payload(DIGEST);
    let rsa = testing::rsa2048_key();
    let pss = rsa.sign_jose(testing::Jose::Ps256, &payload);
    let verdict = verify_cosign_legacy(
        &payload,
        &STANDARD_NO_PAD.encode(pss),
        &subject(),
        &store_of(&[&rsa]),
    );
    assert!(verdict.trusted, "{}", verdict.reason);
}

#[test]
fn legacy_refuses_what_does_not_verify() {
    let key = testing::p256_key();
    let payload = legacy_payload(DIGEST);
    let signature = STANDARD.encode(key.sign_cosign(&payload));
    let tampered = String::from_utf8(payload.clone())
        .unwrap()
        .replace("registry.example/app", "registry.example/evil")
        .into_bytes();
    let other_payload = legacy_payload(OTHER_DIGEST);
    let other_signature = STANDARD.encode(key.sign_cosign(&other_payload));
    let wrong_type = String::from_utf8(payload.clone())
        .unwrap()
        .replace(SIMPLE_SIGNING_TYPE, "something else")
        .into_bytes();
    let wrong_type_signature = STANDARD.encode(key.sign_cosign(&wrong_type));
    let huge = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    let store = store_of(&[&key]);
    let empty = TrustStore::default();
    let another = store_of(&[&testing::p256_key()]);
    let names_other = format!("the payload names {OTHER_DIGEST}, not this manifest");
    let cases: Vec<(&[u8], &str, &TrustStore, &str)> = vec![
        (&payload, &signature, &empty, "no cosign key is uploaded"),
        (
            &payload,
            &signature,
            &another,
            "no uploaded key verifies the signature",
        ),
        (
            &tampered,
            &signature,
            &store,
            "no uploaded key verifies the signature",
        ),
        (&other_payload, &other_signature, &store, &names_other),
        (
            &wrong_type,
            &wrong_type_signature,
            &store,
            "the payload type is \"something else\", not \"cosign container image signature\"",
        ),
        (
            &payload,
            "not base64!",
            &store,
            "the signature annotation is not base64",
        ),
        (
            &payload,
            "",
            &store,
            "no uploaded key verifies the signature",
        ),
        (
            b"{",
            &signature,
            &store,
            "the payload is not a cosign simple-signing document",
        ),
        (
            b"",
            &signature,
            &store,
            "the payload is not a cosign simple-signing document",
        ),
        (
            &huge,
            &signature,
            &store,
            "the signature payload is larger than 4 MiB",
        ),
    ];
    for (payload, signature, store, reason) in cases {
        let verdict = verify_cosign_legacy(payload, signature, &subject(), store);
        assert_eq!(verdict, Verdict::untrusted(Tool::Cosign, reason));
    }
}

pub(crate) fn statement(digest_hex: &str) -> Vec<u8> {
    serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "registry.example/app", "digest": {"sha256": digest_hex}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {},
    })
    .to_string()
    .into_bytes()
}

/// A cosign v3 bundle of `payload`, signed by `key` the DSSE way.
pub(crate) fn bundle(key: &TestKey, payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let signature = key.sign_cosign(&pre_authentication_encoding(payload_type, payload));
    serde_json::json!({
        "mediaType": BUNDLE_MEDIA_TYPES[0],
        "verificationMaterial": {"publicKey": {"hint": "abc"}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": STANDARD.encode(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": STANDARD.encode(signature), "keyid": ""}],
        },
    })
    .to_string()
    .into_bytes()
}

fn digest_hex(digest: &str) -> &str {
    digest.split_once(':').expect("algorithm:hex").1
}

#[test]
fn bundle_trusts_a_dsse_statement_naming_the_manifest() {
    for key in [
        testing::p256_key(),
        testing::ed25519_key(),
        testing::rsa2048_key(),
    ] {
        let document = bundle(&key, IN_TOTO_PAYLOAD_TYPE, &statement(digest_hex(DIGEST)));
        let verdict = verify_cosign_bundle(&document, &subject(), &store_of(&[&key]));
        assert_eq!(
            verdict,
            Verdict::trusted(Tool::Cosign, key.public_pem(), None)
        );
    }
    let key = testing::p256_key();
    let upper = bundle(
        &key,
        IN_TOTO_PAYLOAD_TYPE,
        &statement(&digest_hex(DIGEST).to_uppercase()),
    );
    assert!(verify_cosign_bundle(&upper, &subject(), &store_of(&[&key])).trusted);
}

#[test]
fn pae_matches_the_dsse_specification() {
    assert_eq!(
        pre_authentication_encoding("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
}

#[test]
fn bundle_refuses_what_does_not_verify() {
    let key = testing::p256_key();
    let store = store_of(&[&key]);
    let good = bundle(&key, IN_TOTO_PAYLOAD_TYPE, &statement(digest_hex(DIGEST)));
    let mut tampered: serde_json::Value = serde_json::from_slice(&good).unwrap();
    tampered["dsseEnvelope"]["payload"] = STANDARD
        .encode(
            String::from_utf8(statement(digest_hex(DIGEST)))
                .unwrap()
                .replace("provenance", "evil"),
        )
        .into();
    let tampered = tampered.to_string().into_bytes();
    let mut keyless: serde_json::Value = serde_json::from_slice(&good).unwrap();
    keyless["verificationMaterial"] = serde_json::json!({"certificate": {"rawBytes": "AAAA"}});
    let keyless = keyless.to_string().into_bytes();
    let mut old: serde_json::Value = serde_json::from_slice(&good).unwrap();
    old["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.1".into();
    let old = old.to_string().into_bytes();
    let message = serde_json::json!({
        "mediaType": BUNDLE_MEDIA_TYPES[0],
        "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": "AAAA"}, "signature": "AAAA"},
    })
    .to_string()
    .into_bytes();
    let empty = TrustStore::default();
    let another = store_of(&[&testing::p256_key()]);
    let cases: Vec<(Vec<u8>, &TrustStore, String)> = vec![
        (good.clone(), &empty, "no cosign key is uploaded".into()),
        (good.clone(), &another, "no uploaded key verifies the signature".into()),
        (tampered, &store, "no uploaded key verifies the signature".into()),
        (keyless, &another, "no uploaded key verifies the signature (keyless certificate signatures are not trusted, only uploaded keys)".into()),
        (bundle(&key, IN_TOTO_PAYLOAD_TYPE, &statement(digest_hex(OTHER_DIGEST))), &store, format!("the statement names {OTHER_DIGEST}, not this manifest")),
        (bundle(&key, "application/json", &statement(digest_hex(DIGEST))), &store, "the DSSE payload type is \"application/json\", not \"application/vnd.in-toto+json\"".into()),
        (bundle(&key, IN_TOTO_PAYLOAD_TYPE, b"[]"), &store, "the DSSE payload is not an in-toto statement".into()),
        (message, &store, "the bundle holds a message signature, not a DSSE envelope of an in-toto statement".into()),
        (old, &store, "unsupported bundle media type \"application/vnd.dev.sigstore.bundle+json;version=0.1\"".into()),
        (b"\xff\x00garbage".to_vec(), &store, "the bundle is not sigstore bundle JSON".into()),
        (good[..good.len() / 2].to_vec(), &store, "the bundle is not sigstore bundle JSON".into()),
        (vec![b' '; MAX_ENVELOPE_BYTES + 1], &store, "the bundle is larger than 4 MiB".into()),
    ];
    for (document, store, reason) in cases {
        let verdict = verify_cosign_bundle(&document, &subject(), store);
        assert_eq!(verdict, Verdict::untrusted(Tool::Cosign, reason));
    }
}
