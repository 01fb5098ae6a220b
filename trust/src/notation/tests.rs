//! Tests of notation verification: every case runs against both envelope formats, with
//! chains minted by rcgen and envelopes signed by ring.

use std::rc::Rc;

use super::test_envelopes::*;
use super::*;
use crate::testing::{self, Role, DAY, NOW};

type Case = (Box<dyn Fn(&mut Spec)>, TrustStore, String);

const FORMATS: [Format; 2] = [Format::Jws, Format::Cose];

fn verify(format: Format, envelope: &[u8], store: &TrustStore) -> Verdict {
    verify_notation(format.media_type(), envelope, &subject(), store, NOW)
}

fn assert_untrusted(verdict: &Verdict, reason: &str) {
    assert!(!verdict.trusted, "trusted, expected: {reason}");
    assert_eq!(verdict.reason, reason);
    assert_eq!(verdict.author, "");
    assert_eq!(verdict.expires_unix, None);
}

#[test]
fn trusts_a_chain_reaching_the_ca_store() {
    let chain = testing::chain(testing::p256_key(), (NOW - DAY, NOW + 30 * DAY));
    for format in FORMATS {
        let envelope = Spec::new("ES256", chain.ders()).sign(format, &chain.leaf.key);
        for anchor in [&chain.root, &chain.intermediate] {
            let verdict = verify(format, &envelope, &store(&[(anchor, StoreType::Ca)]));
            assert_eq!(
                verdict,
                Verdict::trusted(
                    Tool::Notation,
                    "CN=signer,O=Example,C=US".into(),
                    Some(NOW + 30 * DAY)
                ),
                "{format:?}"
            );
        }
    }
}

#[test]
fn trusts_every_key_notation_signs_with() {
    for (key, algorithm) in [
        (testing::rsa2048_key(), "PS256"),
        (testing::rsa3072_key(), "PS384"),
        (testing::p384_key(), "ES384"),
    ] {
        let chain = testing::chain(key, testing::current());
        for format in FORMATS {
            let envelope = Spec::new(algorithm, chain.ders()).sign(format, &chain.leaf.key);
            let verdict = verify(format, &envelope, &store(&[(&chain.root, StoreType::Ca)]));
            assert!(
                verdict.trusted,
                "{algorithm} {format:?}: {}",
                verdict.reason
            );
        }
    }
}

#[test]
fn trusts_a_generate_test_certificate_uploaded_as_ca() {
    let key = testing::p256_key();
    let certificate = testing::self_signed_code_signing(&key);
    for format in FORMATS {
        let envelope = Spec::new("ES256", vec![certificate.der.clone()]).sign(format, &key);
        let verdict = verify(format, &envelope, &store(&[(&certificate, StoreType::Ca)]));
        assert_eq!(
            verdict,
            Verdict::trusted(
                Tool::Notation,
                "CN=generate-test,O=Example,C=US".into(),
                Some(testing::current().1)
            )
        );
        let verdict = verify(format, &envelope, &TrustStore::default());
        assert_untrusted(
            &verdict,
            "certificate chain does not reach a certificate of the ca trust store",
        );
    }
}

#[test]
fn an_earlier_signature_expiry_bounds_the_verdict() {
    let chain = testing::chain(testing::p256_key(), testing::current());
    for format in FORMATS {
        let mut spec = Spec::new("ES256", chain.ders());
        spec.expiry = Some(NOW + DAY);
        spec.critical.push(EXPIRY.into());
        let verdict = verify(
            format,
            &spec.sign(format, &chain.leaf.key),
            &store(&[(&chain.root, StoreType::Ca)]),
        );
        assert_eq!(verdict.expires_unix, Some(NOW + DAY));
        spec.expiry = Some(NOW - 1);
        let verdict = verify(
            format,
            &spec.sign(format, &chain.leaf.key),
            &store(&[(&chain.root, StoreType::Ca)]),
        );
        assert_untrusted(
            &verdict,
            &format!("signature expired at {}", rfc3339(NOW - 1)),
        );
    }
}

#[test]
fn signing_authority_signatures_need_the_signing_authority_store() {
    let chain = testing::chain(testing::p256_key(), testing::current());
    for format in FORMATS {
        let mut spec = Spec::new("ES256", chain.ders());
        spec.scheme = "notary.x509.signingAuthority";
        spec.signing_time = None;
        spec.authentic_signing_time = Some(NOW - DAY);
        spec.critical.push(AUTHENTIC_SIGNING_TIME.into());
        let envelope = spec.sign(format, &chain.leaf.key);
        let verdict = verify(
            format,
            &envelope,
            &store(&[(&chain.root, StoreType::SigningAuthority)]),
        );
        assert_eq!(
            verdict,
            Verdict::trusted(Tool::Notation, "CN=signer,O=Example,C=US".into(), None)
        );
        assert_untrusted(
            &verify(format, &envelope, &store(&[(&chain.root, StoreType::Ca)])),
            "certificate chain reaches a certificate of the ca trust store, but the notary.x509.signingAuthority signing scheme needs the signingAuthority trust store",
        );
        spec.authentic_signing_time = Some(testing::current().0 - DAY);
        assert_untrusted(
            &verify(format, &spec.sign(format, &chain.leaf.key), &store(&[(&chain.root, StoreType::SigningAuthority)])),
            &format!("certificate CN=signer,O=Example,C=US was not valid at the authentic signing time {}", rfc3339(testing::current().0 - DAY)),
        );
    }
}

#[test]
fn refuses_signatures_that_do_not_verify_or_do_not_name_the_manifest() {
    let chain = testing::chain(testing::p256_key(), testing::current());
    let trusted = store(&[(&chain.root, StoreType::Ca)]);
    let other = testing::chain(testing::p256_key(), testing::current());
    let other_digest = DIGEST.replace('0', "f");
    let cases: Vec<Case> = vec![
        (Box::new(|_| {}), TrustStore::default(), "certificate chain does not reach a certificate of the ca trust store".into()),
        (Box::new(|_| {}), store(&[(&other.root, StoreType::Ca)]), "certificate chain does not reach a certificate of the ca trust store".into()),
        (Box::new(|_| {}), store(&[(&chain.root, StoreType::SigningAuthority)]), "certificate chain reaches a certificate of the signingAuthority trust store, but the notary.x509 signing scheme needs the ca trust store".into()),
        (Box::new(|_| {}), store(&[(&chain.root, StoreType::Tsa)]), "certificate chain reaches a certificate of the tsa trust store, but the notary.x509 signing scheme needs the ca trust store".into()),
        (Box::new(move |spec: &mut Spec| spec.payload = payload(&other_digest, MEDIA_TYPE, SIZE)), trusted.clone(), format!("the payload names {}, not this manifest", DIGEST.replace('0', "f"))),
        (Box::new(|spec: &mut Spec| spec.payload = payload(DIGEST, MEDIA_TYPE, SIZE + 1)), trusted.clone(), "the payload names a manifest of 1235 bytes, not 1234".into()),
        (Box::new(|spec: &mut Spec| spec.payload = payload(DIGEST, "application/vnd.oci.image.index.v1+json", SIZE)), trusted.clone(), format!("the payload names media type application/vnd.oci.image.index.v1+json, not {MEDIA_TYPE}")),
        (Box::new(|spec: &mut Spec| spec.payload = b"{}".to_vec()), trusted.clone(), "the payload is not a notation payload (targetArtifact)".into()),
        (Box::new(|spec: &mut Spec| spec.critical.push("io.example.x".into())), trusted.clone(), "unknown critical header io.example.x".into()),
        (Box::new(|spec: &mut Spec| spec.critical.push(EXPIRY.into())), trusted.clone(), format!("critical header {EXPIRY} is listed but absent")),
        (Box::new(|spec: &mut Spec| spec.critical.clear()), trusted.clone(), format!("the crit header does not list {SIGNING_SCHEME}")),
        (Box::new(|spec: &mut Spec| spec.expiry = Some(NOW + DAY)), trusted.clone(), format!("the crit header does not list {EXPIRY}")),
        (Box::new(|spec: &mut Spec| spec.signing_time = None), trusted.clone(), format!("the {SIGNING_TIME} header is missing")),
        (Box::new(|spec: &mut Spec| spec.scheme = "notary.other"), trusted.clone(), "unsupported signing scheme \"notary.other\"".into()),
        (Box::new(|spec: &mut Spec| spec.algorithm = "PS256"), trusted.clone(), "the signature algorithm PS256 does not match the signing key (which needs ES256)".into()),
        (Box::new(|spec: &mut Spec| spec.algorithm = "ES384"), trusted.clone(), "the signature algorithm ES384 does not match the signing key (which needs ES256)".into()),
        (Box::new(|spec: &mut Spec| spec.algorithm = "ES512"), trusted.clone(), "the signature algorithm ES512 does not match the signing key (which needs ES256)".into()),
        (Box::new(|spec: &mut Spec| spec.chain.clear()), trusted.clone(), "the envelope carries no certificate chain".into()),
        (Box::new(|spec: &mut Spec| spec.chain.swap(1, 2)), trusted.clone(), "certificate CN=signer,O=Example,C=US is not signed by the next certificate of the chain, CN=root,O=Example,C=US".into()),
        (Box::new(|spec: &mut Spec| { spec.chain.pop(); }), trusted.clone(), "the last certificate of the chain, CN=intermediate,O=Example,C=US, is not self-signed".into()),
        (Box::new(|spec: &mut Spec| spec.chain = vec![spec.chain[0].clone(); MAX_CHAIN_CERTIFICATES + 1]), trusted.clone(), "the certificate chain is longer than 10".into()),
        (Box::new(|spec: &mut Spec| spec.chain[0] = b"junk".to_vec()), trusted.clone(), "certificate 1 of the chain is not an X.509 certificate".into()),
    ];
    for format in FORMATS {
        for (change, store, reason) in &cases {
            let mut spec = Spec::new("ES256", chain.ders());
            change(&mut spec);
            let verdict = verify(format, &spec.sign(format, &chain.leaf.key), store);
            assert_untrusted(&verdict, reason);
        }
        let mut spec = Spec::new("ES256", chain.ders());
        spec.chain[0] = other.leaf.der.clone();
        assert_untrusted(
            &verify(format, &spec.sign(format, &chain.leaf.key), &trusted),
            "the signature does not verify with the signing certificate's key",
        );
    }
}

#[test]
fn judges_certificate_validity_now() {
    let expired = testing::chain(testing::p256_key(), (NOW - 30 * DAY, NOW - DAY));
    let future = testing::chain(testing::p256_key(), (NOW + DAY, NOW + 30 * DAY));
    for format in FORMATS {
        let mut spec = Spec::new("ES256", expired.ders());
        spec.signing_time = Some(NOW - 2 * DAY);
        let verdict = verify(
            format,
            &spec.sign(format, &expired.leaf.key),
            &store(&[(&expired.root, StoreType::Ca)]),
        );
        assert_untrusted(
            &verdict,
            &format!(
                "certificate expired at {}, no valid timestamp",
                rfc3339(NOW - DAY)
            ),
        );

        let mut spec = Spec::new("ES256", future.ders());
        spec.signing_time = Some(NOW + 2 * DAY);
        let verdict = verify(
            format,
            &spec.sign(format, &future.leaf.key),
            &store(&[(&future.root, StoreType::Ca)]),
        );
        assert_untrusted(
            &verdict,
            &format!(
                "certificate CN=signer,O=Example,C=US is not valid before {}",
                rfc3339(NOW + DAY)
            ),
        );

        let spec = Spec::new("ES256", future.ders());
        let verdict = verify(
            format,
            &spec.sign(format, &future.leaf.key),
            &store(&[(&future.root, StoreType::Ca)]),
        );
        assert_untrusted(
            &verdict,
            &format!(
                "certificate CN=signer,O=Example,C=US was not valid at the signing time {}",
                rfc3339(NOW - DAY)
            ),
        );
    }
}

#[test]
fn refuses_leaves_that_are_not_for_code_signing() {
    let root = testing::certificate(
        "root",
        testing::p256_key(),
        Role::Authority,
        testing::current(),
        None,
    );
    let server = testing::certificate(
        "server",
        testing::p256_key(),
        Role::ServerAuth,
        testing::current(),
        Some(&root),
    );
    let authority = testing::certificate(
        "sub-ca",
        testing::p256_key(),
        Role::Authority,
        testing::current(),
        Some(&root),
    );
    let edwards = testing::certificate(
        "edwards",
        testing::ed25519_key(),
        Role::CodeSigning,
        testing::current(),
        Some(&root),
    );
    let chain_key = testing::p256_key();
    let trusted = store(&[(&root, StoreType::Ca)]);
    for format in FORMATS {
        let spec = Spec::new("ES256", vec![server.der.clone(), root.der.clone()]);
        assert_untrusted(
            &verify(format, &spec.sign(format, &server.key), &trusted),
            "the signing certificate CN=server,O=Example,C=US lacks the codeSigning extended key usage",
        );
        let spec = Spec::new("ES256", vec![authority.der.clone(), root.der.clone()]);
        assert_untrusted(
            &verify(format, &spec.sign(format, &authority.key), &trusted),
            "the signing certificate CN=sub-ca,O=Example,C=US is a CA",
        );
        let spec = Spec::new("ES256", vec![edwards.der.clone(), root.der.clone()]);
        assert_untrusted(
            &verify(format, &spec.sign(format, &chain_key), &trusted),
            "notation does not sign with Ed25519 keys",
        );
        let spec = Spec::new("ES256", vec![root.der.clone()]);
        assert_untrusted(
            &verify(format, &spec.sign(format, &root.key), &trusted),
            "the signing certificate CN=root,O=Example,C=US is a CA",
        );
    }
}

#[test]
fn never_panics_on_garbage_truncated_or_huge_input() {
    let chain = testing::chain(testing::p256_key(), testing::current());
    let trusted = store(&[(&chain.root, StoreType::Ca)]);
    for format in FORMATS {
        let envelope = Spec::new("ES256", chain.ders()).sign(format, &chain.leaf.key);
        assert!(verify(format, &envelope, &trusted).trusted);
        for length in (0..envelope.len()).step_by(7) {
            assert!(!verify(format, &envelope[..length], &trusted).trusted);
        }
        for position in (0..envelope.len()).step_by(13) {
            let mut flipped = envelope.clone();
            flipped[position] ^= 0x5a;
            let verdict = verify(format, &flipped, &trusted);
            assert!(!verdict.trusted || verdict.reason.is_empty());
        }
        for garbage in [
            &b""[..],
            b"\x00",
            b"{}",
            b"[]",
            b"\xd2\x84",
            b"null",
            &[0xff; 64],
        ] {
            let verdict = verify(format, garbage, &trusted);
            assert!(!verdict.trusted);
            assert!(!verdict.reason.is_empty());
        }
        let huge = vec![b'{'; MAX_ENVELOPE_BYTES + 1];
        assert_untrusted(
            &verify(format, &huge, &trusted),
            "the signature envelope is larger than 4 MiB",
        );
    }
    assert_untrusted(
        &verify_notation("application/octet-stream", b"x", &subject(), &trusted, NOW),
        "unsupported signature envelope media type \"application/octet-stream\"",
    );
    // A CBOR array header claiming 2^32 elements must not allocate them.
    let claim = [0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x9b, 0, 0, 0, 1, 0, 0, 0, 0];
    assert!(!verify(Format::Cose, &claim, &trusted).trusted);
}

#[test]
fn an_expired_chain_is_trusted_with_a_valid_timestamp() {
    use crate::timestamp::tests::{tsa_chain, TokenSpec};
    let (tsa_root, tsa_leaf) = tsa_chain();
    let (tsa_root, tsa_leaf) = (Rc::new(tsa_root), Rc::new(tsa_leaf));
    let expired = testing::chain(testing::p256_key(), (NOW - 30 * DAY, NOW - DAY));
    let signed_at = NOW - 2 * DAY;
    let token = |gen_time: i64| -> MakeToken {
        let (root, leaf) = (tsa_root.clone(), tsa_leaf.clone());
        Rc::new(move |signature: &[u8]| {
            TokenSpec {
                tsa: &leaf,
                intermediates: vec![root.as_ref()],
                stamped: signature.to_vec(),
                gen_time,
                message_digest: None,
            }
            .encode()
        })
    };
    let trusted = store(&[(&expired.root, StoreType::Ca), (&tsa_root, StoreType::Tsa)]);
    for format in FORMATS {
        let mut spec = Spec::new("ES256", expired.ders());
        spec.signing_time = Some(signed_at);
        spec.timestamp = Some(token(signed_at));
        let envelope = spec.sign(format, &expired.leaf.key);
        assert_eq!(
            verify(format, &envelope, &trusted),
            Verdict::trusted(Tool::Notation, "CN=signer,O=Example,C=US".into(), None),
            "{format:?}"
        );
        let expired_at = rfc3339(NOW - DAY);
        assert_untrusted(
            &verify(format, &envelope, &store(&[(&expired.root, StoreType::Ca), (&tsa_root, StoreType::Ca)])),
            &format!("certificate expired at {expired_at}, no valid timestamp (the timestamp's certificate chain does not reach a certificate of the tsa trust store)"),
        );
        spec.timestamp = Some(token(NOW));
        assert_untrusted(
            &verify(format, &spec.sign(format, &expired.leaf.key), &trusted),
            &format!("certificate expired at {expired_at}, no valid timestamp (certificate CN=signer,O=Example,C=US was not valid at the timestamp {})", rfc3339(NOW)),
        );
        spec.timestamp = Some(Rc::new(|_: &[u8]| b"junk".to_vec()));
        assert_untrusted(
            &verify(format, &spec.sign(format, &expired.leaf.key), &trusted),
            &format!("certificate expired at {expired_at}, no valid timestamp (the timestamp token is not a CMS SignedData TimeStampToken)"),
        );
    }
}

#[test]
fn cose_accepts_a_single_certificate_x5chain() {
    use coset::{CoseSign1, Label, TaggedCborSerializable};
    let key = testing::p256_key();
    let certificate = testing::self_signed_code_signing(&key);
    let envelope = Spec::new("ES256", vec![certificate.der.clone()]).sign(Format::Cose, &key);
    let mut sign1 = CoseSign1::from_tagged_slice(&envelope).expect("COSE_Sign1");
    for (label, value) in sign1.unprotected.rest.iter_mut() {
        if *label == Label::Int(33) {
            *value = ciborium::Value::Bytes(certificate.der.clone());
        }
    }
    let envelope = sign1.to_tagged_vec().expect("encodes");
    let verdict = verify(
        Format::Cose,
        &envelope,
        &store(&[(&certificate, StoreType::Ca)]),
    );
    assert!(verdict.trusted, "{}", verdict.reason);
}
