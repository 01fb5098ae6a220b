//! The signature verifiers (berth-trust) on any bytes, against a store holding one cosign key
//! and one self-signed code-signing certificate (so parsing reaches the signature checks):
//! the first byte picks the verifier (cosign legacy payload + signature annotation, sigstore
//! bundle, notation JWS, notation COSE, key upload, certificate upload), the rest is its
//! input. Nothing may panic, and a verdict on garbage is never trusted.
#![no_main]
use berth_trust::{
    verify_cosign_bundle, verify_cosign_legacy, verify_notation, CosignKey, StoreType, Subject,
    TrustStore, TrustedCertificate,
};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = include_bytes!("trust/key.pem");
const CERT: &[u8] = include_bytes!("trust/cert.pem");
const DIGEST: &str = "sha256:5b0b7a1c3b8ac1a8f9a0fcd4d4a5ae7d1a8a0e0ad9a3b7c5f6e8d9c0b1a2f3e4";

fn store() -> TrustStore {
    TrustStore {
        cosign: vec![CosignKey::from_pem(KEY).expect("the fuzz key parses")],
        certificates: TrustedCertificate::from_pem(StoreType::Ca, CERT).expect("the fuzz cert parses"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let store = store();
    let subject = Subject {
        digest: DIGEST,
        media_type: "application/vnd.oci.image.manifest.v1+json",
        size: 1234,
    };
    let now = 1_750_000_000;
    let verdict = match selector % 6 {
        0 => {
            // payload and annotation split at the first NUL.
            let split = input.iter().position(|b| *b == 0).unwrap_or(input.len());
            let signature = String::from_utf8_lossy(input.get(split + 1..).unwrap_or_default());
            Some(verify_cosign_legacy(&input[..split], &signature, &subject, &store))
        }
        1 => Some(verify_cosign_bundle(input, &subject, &store)),
        2 => Some(verify_notation("application/jose+json", input, &subject, &store, now)),
        3 => Some(verify_notation("application/cose", input, &subject, &store, now)),
        4 => {
            let _ = CosignKey::from_pem(input);
            None
        }
        _ => {
            let _ = TrustedCertificate::from_pem(StoreType::Ca, input);
            None
        }
    };
    if let Some(verdict) = verdict {
        assert!(!verdict.trusted, "fuzz input trusted: {verdict:?}");
    }
});
