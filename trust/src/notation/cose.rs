//! notation's COSE envelope (`application/cose`): a tagged COSE_Sign1 whose protected header
//! holds the algorithm, `crit`, content type and notation's text-labelled headers (times are
//! CBOR tag 1 epoch seconds) and whose unprotected header holds the chain (`x5chain`, label
//! 33) and the timestamp.
//!
//! Rules: as for JWS; the signature is raw r || s for ECDSA and covers the Sig_structure
//! ["Signature1", protected as transmitted, h'', payload]. Detached payloads are refused.

use ciborium::Value;
use coset::{
    iana, CoseSign1, Label, RegisteredLabel, RegisteredLabelWithPrivate, TaggedCborSerializable,
};

use super::jws::check_critical;
use super::{
    check_scheme_times, Algorithm, Envelope, SigningScheme, AUTHENTIC_SIGNING_TIME, EXPIRY,
    PAYLOAD_CONTENT_TYPE, SIGNING_SCHEME, SIGNING_TIME, TIMESTAMP_SIGNATURE,
};
use crate::MAX_CHAIN_CERTIFICATES;

const X5CHAIN: i64 = 33;

pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope, String> {
    let sign1 = CoseSign1::from_tagged_slice(bytes)
        .map_err(|_| "the envelope is not a tagged COSE_Sign1".to_string())?;
    let header = &sign1.protected.header;
    let text_header = |name: &str| {
        header
            .rest
            .iter()
            .find(|(label, _)| *label == Label::Text(name.to_string()))
            .map(|(_, value)| value)
    };

    let critical = header
        .crit
        .iter()
        .map(|label| match label {
            RegisteredLabelWithPrivate::Assigned(iana::HeaderParameter::Alg) => "alg".to_string(),
            RegisteredLabelWithPrivate::Assigned(iana::HeaderParameter::ContentType) => {
                "cty".to_string()
            }
            RegisteredLabelWithPrivate::Assigned(other) => format!("{}", *other as i64),
            RegisteredLabelWithPrivate::PrivateUse(label) => label.to_string(),
            RegisteredLabelWithPrivate::Text(name) => name.clone(),
        })
        .collect::<Vec<_>>();
    check_critical(&critical, |name| match name {
        "alg" => header.alg.is_some(),
        "cty" => header.content_type.is_some(),
        other => text_header(other).is_some(),
    })?;

    let algorithm = match &header.alg {
        Some(RegisteredLabelWithPrivate::Assigned(algorithm)) => match algorithm {
            iana::Algorithm::PS256 => Algorithm::Ps256,
            iana::Algorithm::PS384 => Algorithm::Ps384,
            iana::Algorithm::PS512 => Algorithm::Ps512,
            iana::Algorithm::ES256 => Algorithm::Es256,
            iana::Algorithm::ES384 => Algorithm::Es384,
            iana::Algorithm::ES512 => Algorithm::Es512,
            other => return Err(format!("unsupported signature algorithm {}", *other as i64)),
        },
        Some(_) => return Err("unsupported signature algorithm".into()),
        None => return Err("the alg header is missing".into()),
    };
    match &header.content_type {
        Some(RegisteredLabel::Text(content_type)) if content_type == PAYLOAD_CONTENT_TYPE => {}
        Some(other) => {
            return Err(format!(
                "the payload content type is {other:?}, not {PAYLOAD_CONTENT_TYPE:?}"
            ))
        }
        None => return Err("the content type header is missing".into()),
    }
    let signing_scheme = match text_header(SIGNING_SCHEME) {
        Some(Value::Text(scheme)) => SigningScheme::parse(scheme)?,
        Some(_) => return Err(format!("the {SIGNING_SCHEME} header is not text")),
        None => return Err(format!("the {SIGNING_SCHEME} header is missing")),
    };
    let time = |name: &str| -> Result<Option<i64>, String> {
        match text_header(name) {
            None => Ok(None),
            Some(Value::Tag(1, value)) => match value.as_ref() {
                Value::Integer(seconds) => i64::try_from(*seconds)
                    .map(Some)
                    .map_err(|_| format!("the {name} header is out of range")),
                _ => Err(format!("the {name} header is not integer epoch seconds")),
            },
            Some(_) => Err(format!("the {name} header is not a CBOR tag 1 time")),
        }
    };

    let unprotected = |label: &Label| {
        sign1
            .unprotected
            .rest
            .iter()
            .find(|(found, _)| found == label)
            .map(|(_, value)| value)
    };
    let chain = match unprotected(&Label::Int(X5CHAIN)) {
        None => Vec::new(),
        Some(Value::Bytes(certificate)) => vec![certificate.clone()],
        Some(Value::Array(certificates)) => certificates
            .iter()
            .take(MAX_CHAIN_CERTIFICATES + 1)
            .map(|certificate| match certificate {
                Value::Bytes(der) => Ok(der.clone()),
                _ => Err("an x5chain entry is not a byte string".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err("the x5chain header is not a byte string or an array of them".into())
        }
    };
    let timestamp = match unprotected(&Label::Text(TIMESTAMP_SIGNATURE.to_string())) {
        None => None,
        Some(Value::Bytes(token)) => Some(token.clone()),
        Some(_) => return Err("the timestamp signature is not a byte string".into()),
    };
    let payload = sign1
        .payload
        .clone()
        .ok_or("the COSE payload is detached")?;
    let envelope = Envelope {
        algorithm,
        signing_scheme,
        signing_time_unix: time(SIGNING_TIME)?,
        authentic_signing_time_unix: time(AUTHENTIC_SIGNING_TIME)?,
        expiry_unix: time(EXPIRY)?,
        signed_bytes: sign1.tbs_data(&[]),
        signature: sign1.signature.clone(),
        payload,
        chain,
        timestamp,
    };
    check_scheme_times(&envelope)?;
    Ok(envelope)
}

/// Re-encodes a parsed envelope (tests build envelopes through coset too).
#[cfg(test)]
pub(crate) fn to_tagged(sign1: CoseSign1) -> Vec<u8> {
    sign1.to_tagged_vec().expect("COSE_Sign1 encodes")
}
