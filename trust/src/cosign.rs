//! cosign signatures: the legacy `sha256-<hex>.sig` layers (a simple-signing payload and its
//! signature annotation) and sigstore bundles v0.3 holding a DSSE envelope.
//!
//! Rules: a signature is trusted only when an uploaded key verifies it AND the signed claim
//! names the very manifest being judged. Keyless (certificate) signatures and transparency-log
//! entries are not checked: berth has no network and trusts uploaded keys only, as zot does.

use serde::Deserialize;

use crate::encoding;
use crate::keys::CosignKey;
use crate::verdict::{Subject, Tool, TrustStore, Verdict};
use crate::MAX_ENVELOPE_BYTES;

const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const BUNDLE_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
];

#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// cosign legacy: one layer of a `sha256-<hex>.sig` manifest: `payload` is the layer blob
/// (simple-signing JSON), `signature_b64` the layer's `dev.cosignproject.cosign/signature`
/// annotation.
pub fn verify_cosign_legacy(
    payload: &[u8],
    signature_b64: &str,
    subject: &Subject,
    store: &TrustStore,
) -> Verdict {
    let untrusted = |reason: String| Verdict::untrusted(Tool::Cosign, reason);
    if payload.len() > MAX_ENVELOPE_BYTES {
        return untrusted("the signature payload is larger than 4 MiB".into());
    }
    let Some(signature) = encoding::decode_standard(signature_b64) else {
        return untrusted("the signature annotation is not base64".into());
    };
    let claim: SimpleSigning = match serde_json::from_slice(payload) {
        Ok(claim) => claim,
        Err(_) => return untrusted("the payload is not a cosign simple-signing document".into()),
    };
    if claim.critical.kind != SIMPLE_SIGNING_TYPE {
        return untrusted(format!(
            "the payload type is {:?}, not {SIMPLE_SIGNING_TYPE:?}",
            claim.critical.kind
        ));
    }
    let named = &claim.critical.image.docker_manifest_digest;
    if named != subject.digest {
        return untrusted(format!("the payload names {named}, not this manifest"));
    }
    judge_with_keys(store, payload, &signature, "")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    #[serde(default)]
    verification_material: Option<serde_json::Value>,
    dsse_envelope: Option<DsseEnvelope>,
    message_signature: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DsseEnvelope {
    payload: String,
    payload_type: String,
    signatures: Vec<DsseSignature>,
}

#[derive(Deserialize)]
struct DsseSignature {
    sig: String,
}

#[derive(Deserialize)]
struct Statement {
    subject: Vec<StatementSubject>,
}

#[derive(Deserialize)]
struct StatementSubject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// cosign sigstore bundle v0.3 (`application/vnd.dev.sigstore.bundle.v0.3+json` layer blob of
/// a referrer): a DSSE envelope of an in-toto statement, signed with an uploaded key.
pub fn verify_cosign_bundle(bundle: &[u8], subject: &Subject, store: &TrustStore) -> Verdict {
    let untrusted = |reason: String| Verdict::untrusted(Tool::Cosign, reason);
    if bundle.len() > MAX_ENVELOPE_BYTES {
        return untrusted("the bundle is larger than 4 MiB".into());
    }
    let bundle: Bundle = match serde_json::from_slice(bundle) {
        Ok(bundle) => bundle,
        Err(_) => return untrusted("the bundle is not sigstore bundle JSON".into()),
    };
    if !BUNDLE_MEDIA_TYPES.contains(&bundle.media_type.as_str()) {
        return untrusted(format!(
            "unsupported bundle media type {:?}",
            bundle.media_type
        ));
    }
    let Some(envelope) = bundle.dsse_envelope else {
        if bundle.message_signature.is_some() {
            return untrusted(
                "the bundle holds a message signature, not a DSSE envelope of an in-toto statement"
                    .into(),
            );
        }
        return untrusted("the bundle holds no DSSE envelope".into());
    };
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return untrusted(format!(
            "the DSSE payload type is {:?}, not {IN_TOTO_PAYLOAD_TYPE:?}",
            envelope.payload_type
        ));
    }
    let Some(payload) = encoding::decode_any(&envelope.payload) else {
        return untrusted("the DSSE payload is not base64".into());
    };
    let statement: Statement = match serde_json::from_slice(&payload) {
        Ok(statement) => statement,
        Err(_) => return untrusted("the DSSE payload is not an in-toto statement".into()),
    };
    let Some((algorithm, hex)) = subject.digest.split_once(':') else {
        return untrusted("the manifest digest is malformed".into());
    };
    let names_subject = statement.subject.iter().any(|entry| {
        entry
            .digest
            .get(algorithm)
            .is_some_and(|named| named.eq_ignore_ascii_case(hex))
    });
    if !names_subject {
        let named: Vec<String> = statement
            .subject
            .iter()
            .flat_map(|entry| {
                entry
                    .digest
                    .iter()
                    .map(|(key, value)| format!("{key}:{value}"))
            })
            .take(3)
            .collect();
        return untrusted(format!(
            "the statement names {}, not this manifest",
            if named.is_empty() {
                "no digest".to_string()
            } else {
                named.join(", ")
            }
        ));
    }
    let message = pre_authentication_encoding(&envelope.payload_type, &payload);
    let keyless = bundle
        .verification_material
        .as_ref()
        .is_some_and(|material| {
            material.get("certificate").is_some() || material.get("x509CertificateChain").is_some()
        });
    let hint = if keyless {
        " (keyless certificate signatures are not trusted, only uploaded keys)"
    } else {
        ""
    };
    let mut last = untrusted("the DSSE envelope has no signature".into());
    for signature in envelope
        .signatures
        .iter()
        .take(crate::MAX_CHAIN_CERTIFICATES)
    {
        let Some(signature) = encoding::decode_any(&signature.sig) else {
            last = untrusted("a DSSE signature is not base64".into());
            continue;
        };
        let verdict = judge_with_keys(store, &message, &signature, hint);
        if verdict.trusted {
            return verdict;
        }
        last = verdict;
    }
    last
}

/// DSSE's PAE: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
fn pre_authentication_encoding(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    message.extend_from_slice(payload);
    message
}

fn judge_with_keys(store: &TrustStore, message: &[u8], signature: &[u8], hint: &str) -> Verdict {
    if store.cosign.is_empty() {
        return Verdict::untrusted(Tool::Cosign, format!("no cosign key is uploaded{hint}"));
    }
    match store
        .cosign
        .iter()
        .find(|key: &&CosignKey| key.verifies(message, signature))
    {
        Some(key) => Verdict::trusted(Tool::Cosign, key.pem().to_string(), None),
        None => Verdict::untrusted(
            Tool::Cosign,
            format!("no uploaded key verifies the signature{hint}"),
        ),
    }
}

#[cfg(test)]
#[path = "cosign_tests.rs"]
pub(crate) mod tests;
