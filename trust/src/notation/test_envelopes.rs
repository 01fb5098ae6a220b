//! Envelope builders for the notation tests: a [`Spec`] of what an envelope says, signed into
//! a JWS or a COSE envelope by a test key.

use std::rc::Rc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ciborium::Value;
use coset::{iana, CoseSign1Builder, HeaderBuilder, RegisteredLabelWithPrivate};

use super::*;
use crate::certificate::TrustedCertificate;
use crate::testing::{Jose, KeyKind, TestCertificate, TestKey, DAY, NOW};

/// Makes a timestamp token from the signature bytes it stamps.
pub(crate) type MakeToken = Rc<dyn Fn(&[u8]) -> Vec<u8>>;

pub(crate) const DIGEST: &str =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub(crate) const MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const SIZE: u64 = 1234;

pub(crate) fn subject() -> Subject<'static> {
    Subject {
        digest: DIGEST,
        media_type: MEDIA_TYPE,
        size: SIZE,
    }
}

pub(crate) fn payload(digest: &str, media_type: &str, size: u64) -> Vec<u8> {
    serde_json::json!({"targetArtifact": {"mediaType": media_type, "digest": digest, "size": size, "annotations": {"a": "b"}}})
        .to_string()
        .into_bytes()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Jws,
    Cose,
}

impl Format {
    pub(crate) fn media_type(&self) -> &'static str {
        match self {
            Format::Jws => "application/jose+json",
            Format::Cose => "application/cose",
        }
    }
}

/// Everything an envelope says; `Spec::new` fills in a valid notary.x509 signature.
#[derive(Clone)]
pub(crate) struct Spec {
    pub algorithm: &'static str,
    pub scheme: &'static str,
    pub signing_time: Option<i64>,
    pub authentic_signing_time: Option<i64>,
    pub expiry: Option<i64>,
    pub critical: Vec<String>,
    pub extra_headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    /// Makes the timestamp token from the signature bytes.
    pub timestamp: Option<MakeToken>,
}

impl Spec {
    pub(crate) fn new(algorithm: &'static str, chain: Vec<Vec<u8>>) -> Spec {
        Spec {
            algorithm,
            scheme: "notary.x509",
            signing_time: Some(NOW - DAY),
            authentic_signing_time: None,
            expiry: None,
            critical: vec![SIGNING_SCHEME.to_string()],
            extra_headers: Vec::new(),
            payload: payload(DIGEST, MEDIA_TYPE, SIZE),
            chain,
            timestamp: None,
        }
    }

    /// How `key` signs: its own kind decides, so a header naming another algorithm still
    /// carries a real signature.
    fn jose(&self, key: &TestKey) -> Jose {
        match (key.kind, self.algorithm) {
            (KeyKind::P384, _) => Jose::Es384,
            (KeyKind::Rsa, "PS384") => Jose::Ps384,
            (KeyKind::Rsa, "PS512") => Jose::Ps512,
            (KeyKind::Rsa, _) => Jose::Ps256,
            _ => Jose::Es256,
        }
    }

    /// The envelope in `format`, signed by `key`.
    pub(crate) fn sign(&self, format: Format, key: &TestKey) -> Vec<u8> {
        match format {
            Format::Jws => self.jws(key),
            Format::Cose => self.cose(key),
        }
    }

    fn jws(&self, key: &TestKey) -> Vec<u8> {
        let mut protected = serde_json::json!({
            "alg": self.algorithm,
            "cty": PAYLOAD_CONTENT_TYPE,
            "crit": self.critical,
            SIGNING_SCHEME: self.scheme,
        });
        for (name, time) in [
            (SIGNING_TIME, self.signing_time),
            (AUTHENTIC_SIGNING_TIME, self.authentic_signing_time),
            (EXPIRY, self.expiry),
        ] {
            if let Some(time) = time {
                protected[name] = rfc3339(time).into();
            }
        }
        for (name, value) in &self.extra_headers {
            protected[name] = value.clone().into();
        }
        let protected = URL_SAFE_NO_PAD.encode(protected.to_string());
        let payload = URL_SAFE_NO_PAD.encode(&self.payload);
        let signature = key.sign_jose(self.jose(key), format!("{protected}.{payload}").as_bytes());
        let mut header = serde_json::json!({
            "x5c": self.chain.iter().map(|der| STANDARD.encode(der)).collect::<Vec<_>>(),
            "io.cncf.notary.signingAgent": "berth-tests",
        });
        if let Some(make_token) = &self.timestamp {
            header[TIMESTAMP_SIGNATURE] = STANDARD.encode(make_token(&signature)).into();
        }
        serde_json::json!({
            "payload": payload,
            "protected": protected,
            "header": header,
            "signature": URL_SAFE_NO_PAD.encode(signature),
        })
        .to_string()
        .into_bytes()
    }

    fn cose(&self, key: &TestKey) -> Vec<u8> {
        let algorithm = match self.algorithm {
            "PS256" => iana::Algorithm::PS256,
            "PS384" => iana::Algorithm::PS384,
            "PS512" => iana::Algorithm::PS512,
            "ES384" => iana::Algorithm::ES384,
            "ES512" => iana::Algorithm::ES512,
            "ES256" => iana::Algorithm::ES256,
            _ => iana::Algorithm::EdDSA,
        };
        let mut protected = HeaderBuilder::new()
            .algorithm(algorithm)
            .content_type(PAYLOAD_CONTENT_TYPE.to_string())
            .text_value(
                SIGNING_SCHEME.to_string(),
                Value::Text(self.scheme.to_string()),
            );
        for name in &self.critical {
            protected =
                protected.add_critical_label(RegisteredLabelWithPrivate::Text(name.clone()));
        }
        for (name, time) in [
            (SIGNING_TIME, self.signing_time),
            (AUTHENTIC_SIGNING_TIME, self.authentic_signing_time),
            (EXPIRY, self.expiry),
        ] {
            if let Some(time) = time {
                protected = protected.text_value(
                    name.to_string(),
                    Value::Tag(1, Box::new(Value::Integer(time.into()))),
                );
            }
        }
        for (name, value) in &self.extra_headers {
            protected = protected.text_value(name.clone(), Value::Text(value.clone()));
        }
        let chain = Value::Array(
            self.chain
                .iter()
                .map(|der| Value::Bytes(der.clone()))
                .collect(),
        );
        let unprotected = HeaderBuilder::new().value(33, chain).text_value(
            "io.cncf.notary.signingAgent".to_string(),
            Value::Text("berth-tests".into()),
        );
        let jose = self.jose(key);
        let sign1 = CoseSign1Builder::new()
            .protected(protected.build())
            .unprotected(unprotected.build())
            .payload(self.payload.clone())
            .create_signature(&[], |data| key.sign_jose(jose, data))
            .build();
        let mut sign1 = sign1;
        if let Some(make_token) = &self.timestamp {
            let token = make_token(&sign1.signature);
            sign1.unprotected.rest.push((
                coset::Label::Text(TIMESTAMP_SIGNATURE.to_string()),
                Value::Bytes(token),
            ));
        }
        super::cose::to_tagged(sign1)
    }
}

pub(crate) fn store(certificates: &[(&TestCertificate, StoreType)]) -> TrustStore {
    TrustStore {
        cosign: Vec::new(),
        certificates: certificates
            .iter()
            .map(|(certificate, store)| {
                TrustedCertificate::from_der(*store, &certificate.der).expect("certificate")
            })
            .collect(),
    }
}
