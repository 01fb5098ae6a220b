//! Verification cost per signature, for the four shapes the daemon sees most: cosign legacy
//! and bundle signatures with a P-256 key, notation JWS with an RSA-3072 leaf (PS384, the
//! algorithm notation pairs with RSA-3072) and COSE with a P-256 leaf (ES256), both under a
//! three-certificate chain whose root is in the `ca` trust store.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use berth_trust::{
    verify_cosign_bundle, verify_cosign_legacy, verify_notation, CosignKey, StoreType, Subject,
    TrustStore, TrustedCertificate,
};
use ciborium::Value;
use coset::{
    iana, CoseSign1Builder, HeaderBuilder, RegisteredLabelWithPrivate, TaggedCborSerializable,
};
use criterion::{criterion_group, criterion_main, Criterion};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};

const RSA3072_PKCS8_PEM: &str = include_str!("../testdata/rsa3072.pk8.pem");
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const SIZE: u64 = 1234;
const NOW: i64 = 1_800_000_000;

fn subject() -> Subject<'static> {
    Subject {
        digest: DIGEST,
        media_type: MEDIA_TYPE,
        size: SIZE,
    }
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

fn ecdsa_sign(
    key: &KeyPair,
    algorithm: &'static signature::EcdsaSigningAlgorithm,
    message: &[u8],
) -> Vec<u8> {
    let random = SystemRandom::new();
    EcdsaKeyPair::from_pkcs8(algorithm, &key.serialize_der(), &random)
        .expect("P-256 PKCS#8")
        .sign(&random, message)
        .expect("signs")
        .as_ref()
        .to_vec()
}

fn cosign_store(key: &KeyPair) -> TrustStore {
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(key.subject_public_key_info())
    );
    TrustStore {
        cosign: vec![CosignKey::from_pem(pem.as_bytes()).expect("public key")],
        certificates: Vec::new(),
    }
}

fn cosign_legacy(criterion: &mut Criterion) {
    let key = p256();
    let payload = serde_json::json!({"critical": {"identity": {"docker-reference": "r.example/app"}, "image": {"docker-manifest-digest": DIGEST}, "type": "cosign container image signature"}, "optional": null}).to_string();
    let signature = STANDARD.encode(ecdsa_sign(
        &key,
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        payload.as_bytes(),
    ));
    let store = cosign_store(&key);
    assert!(verify_cosign_legacy(payload.as_bytes(), &signature, &subject(), &store).trusted);
    criterion.bench_function("cosign legacy P-256", |bencher| {
        bencher.iter(|| verify_cosign_legacy(payload.as_bytes(), &signature, &subject(), &store))
    });
}

fn cosign_bundle(criterion: &mut Criterion) {
    let key = p256();
    let statement = serde_json::json!({"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "r.example/app", "digest": {"sha256": &DIGEST[7..]}}], "predicateType": "https://slsa.dev/provenance/v1", "predicate": {"buildDefinition": {"buildType": "x"}}}).to_string();
    let payload_type = "application/vnd.in-toto+json";
    let pae = format!(
        "DSSEv1 {} {payload_type} {} {statement}",
        payload_type.len(),
        statement.len()
    );
    let signature = ecdsa_sign(
        &key,
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pae.as_bytes(),
    );
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "x"}, "tlogEntries": []},
        "dsseEnvelope": {"payload": STANDARD.encode(&statement), "payloadType": payload_type, "signatures": [{"sig": STANDARD.encode(signature), "keyid": ""}]},
    })
    .to_string();
    let store = cosign_store(&key);
    assert!(verify_cosign_bundle(bundle.as_bytes(), &subject(), &store).trusted);
    criterion.bench_function("cosign bundle P-256", |bencher| {
        bencher.iter(|| verify_cosign_bundle(bundle.as_bytes(), &subject(), &store))
    });
}

/// Root CA, intermediate CA and code-signing leaf, leaf first as DER, and the root.
fn chain(root_key: &KeyPair, intermediate_key: &KeyPair, leaf_key: &KeyPair) -> Vec<Vec<u8>> {
    let params = |name: &str, authority: bool| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut distinguished = DistinguishedName::new();
        distinguished.push(DnType::CommonName, name);
        params.distinguished_name = distinguished;
        params.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 86_400).expect("time");
        params.not_after =
            time::OffsetDateTime::from_unix_timestamp(NOW + 86_400 * 365).expect("time");
        if authority {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        } else {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        }
        params
    };
    let root_params = params("root", true);
    let root = root_params.self_signed(root_key).expect("root");
    let intermediate_params = params("intermediate", true);
    let intermediate = intermediate_params
        .signed_by(
            intermediate_key,
            &Issuer::from_params(&root_params, root_key),
        )
        .expect("intermediate");
    let leaf = params("signer", false)
        .signed_by(
            leaf_key,
            &Issuer::from_params(&intermediate_params, intermediate_key),
        )
        .expect("leaf");
    vec![
        leaf.der().to_vec(),
        intermediate.der().to_vec(),
        root.der().to_vec(),
    ]
}

fn ca_store(chain: &[Vec<u8>]) -> TrustStore {
    TrustStore {
        cosign: Vec::new(),
        certificates: vec![TrustedCertificate::from_der(
            StoreType::Ca,
            chain.last().expect("root"),
        )
        .expect("root")],
    }
}

fn notation_payload() -> String {
    serde_json::json!({"targetArtifact": {"mediaType": MEDIA_TYPE, "digest": DIGEST, "size": SIZE}})
        .to_string()
}

fn notation_jws_rsa(criterion: &mut Criterion) {
    let rsa = || {
        KeyPair::from_pkcs8_pem_and_sign_algo(RSA3072_PKCS8_PEM, &rcgen::PKCS_RSA_SHA256)
            .expect("RSA key")
    };
    let leaf_key = rsa();
    let chain = chain(&rsa(), &rsa(), &leaf_key);
    let protected = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"alg": "PS384", "cty": "application/vnd.cncf.notary.payload.v1+json", "crit": ["io.cncf.notary.signingScheme"], "io.cncf.notary.signingScheme": "notary.x509", "io.cncf.notary.signingTime": "2027-01-15T07:00:00Z"}).to_string(),
    );
    let payload = URL_SAFE_NO_PAD.encode(notation_payload());
    let signer = RsaKeyPair::from_pkcs8(&leaf_key.serialize_der()).expect("RSA PKCS#8");
    let mut signature = vec![0; signer.public().modulus_len()];
    signer
        .sign(
            &signature::RSA_PSS_SHA384,
            &SystemRandom::new(),
            format!("{protected}.{payload}").as_bytes(),
            &mut signature,
        )
        .expect("signs");
    let envelope = serde_json::json!({
        "payload": payload, "protected": protected, "signature": URL_SAFE_NO_PAD.encode(signature),
        "header": {"x5c": chain.iter().map(|der| STANDARD.encode(der)).collect::<Vec<_>>(), "io.cncf.notary.signingAgent": "bench"},
    })
    .to_string();
    let store = ca_store(&chain);
    let verdict = verify_notation(
        "application/jose+json",
        envelope.as_bytes(),
        &subject(),
        &store,
        NOW,
    );
    assert!(verdict.trusted, "{}", verdict.reason);
    criterion.bench_function("notation JWS RSA-3072 PS384, 3 certificates", |bencher| {
        bencher.iter(|| {
            verify_notation(
                "application/jose+json",
                envelope.as_bytes(),
                &subject(),
                &store,
                NOW,
            )
        })
    });
}

fn notation_cose_es256(criterion: &mut Criterion) {
    let leaf_key = p256();
    let chain = chain(&p256(), &p256(), &leaf_key);
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .add_critical_label(RegisteredLabelWithPrivate::Text(
            "io.cncf.notary.signingScheme".into(),
        ))
        .content_type("application/vnd.cncf.notary.payload.v1+json".into())
        .text_value(
            "io.cncf.notary.signingScheme".into(),
            Value::Text("notary.x509".into()),
        )
        .text_value(
            "io.cncf.notary.signingTime".into(),
            Value::Tag(1, Box::new(Value::Integer((NOW - 86_400).into()))),
        )
        .build();
    let unprotected = HeaderBuilder::new()
        .value(
            33,
            Value::Array(chain.iter().map(|der| Value::Bytes(der.clone())).collect()),
        )
        .build();
    let envelope = CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(notation_payload().into_bytes())
        .create_signature(&[], |data| {
            ecdsa_sign(&leaf_key, &signature::ECDSA_P256_SHA256_FIXED_SIGNING, data)
        })
        .build()
        .to_tagged_vec()
        .expect("COSE_Sign1 encodes");
    let store = ca_store(&chain);
    let verdict = verify_notation("application/cose", &envelope, &subject(), &store, NOW);
    assert!(verdict.trusted, "{}", verdict.reason);
    criterion.bench_function("notation COSE ES256, 3 certificates", |bencher| {
        bencher.iter(|| verify_notation("application/cose", &envelope, &subject(), &store, NOW))
    });
}

criterion_group!(
    benches,
    cosign_legacy,
    cosign_bundle,
    notation_jws_rsa,
    notation_cose_es256
);
criterion_main!(benches);
