//! notation's JWS envelope (`application/jose+json`): JSON serialization with a protected
//! header, an unprotected header holding the chain (`x5c`) and timestamp, base64url parts.
//!
//! Rules: `alg` is one of PS256/384/512, ES256/384/512; `cty` is notation's payload type;
//! every name in `crit` is one berth understands and is present; `crit` names the signing
//! scheme (and expiry and authentic signing time when present). The signature covers
//! ASCII(protected "." payload) exactly as transmitted.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    check_scheme_times, parse_rfc3339, Algorithm, Envelope, SigningScheme, AUTHENTIC_SIGNING_TIME,
    EXPIRY, PAYLOAD_CONTENT_TYPE, SIGNING_SCHEME, SIGNING_TIME,
};
use crate::encoding;
use crate::MAX_CHAIN_CERTIFICATES;

/// The protected header names berth understands (and so may be critical).
const UNDERSTOOD: [&str; 7] = [
    "alg",
    "cty",
    "crit",
    SIGNING_SCHEME,
    SIGNING_TIME,
    AUTHENTIC_SIGNING_TIME,
    EXPIRY,
];

#[derive(Deserialize)]
struct Serialization {
    payload: String,
    protected: String,
    #[serde(default)]
    header: Unprotected,
    signature: String,
}

#[derive(Deserialize, Default)]
struct Unprotected {
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(rename = "io.cncf.notary.timestampSignature")]
    timestamp_signature: Option<String>,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope, String> {
    let serialization: Serialization = serde_json::from_slice(bytes)
        .map_err(|_| "the envelope is not a JWS JSON serialization".to_string())?;
    let protected_bytes = encoding::decode_url_safe(&serialization.protected)
        .ok_or("the JWS protected header is not base64url")?;
    let protected: Map<String, Value> = serde_json::from_slice(&protected_bytes)
        .map_err(|_| "the JWS protected header is not a JSON object".to_string())?;
    let text = |name: &str| -> Result<Option<&str>, String> {
        match protected.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(format!("the {name} header is not a string")),
        }
    };

    let critical = match protected.get("crit") {
        None => Vec::new(),
        Some(Value::Array(names)) => names
            .iter()
            .map(|name| {
                name.as_str()
                    .map(str::to_string)
                    .ok_or("the crit header is not a list of names")
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("the crit header is not a list of names".into()),
    };
    check_critical(&critical, |name| protected.contains_key(name))?;

    let algorithm_name = text("alg")?.ok_or("the alg header is missing")?;
    let algorithm = Algorithm::from_jose_name(algorithm_name)
        .ok_or_else(|| format!("unsupported signature algorithm {algorithm_name:?}"))?;
    let content_type = text("cty")?.ok_or("the cty header is missing")?;
    if content_type != PAYLOAD_CONTENT_TYPE {
        return Err(format!(
            "the payload content type is {content_type:?}, not {PAYLOAD_CONTENT_TYPE:?}"
        ));
    }
    let signing_scheme = SigningScheme::parse(
        text(SIGNING_SCHEME)?.ok_or("the io.cncf.notary.signingScheme header is missing")?,
    )?;
    let time = |name: &str| -> Result<Option<i64>, String> {
        text(name)?
            .map(|value| parse_rfc3339(name, value))
            .transpose()
    };

    let chain = serialization
        .header
        .x5c
        .iter()
        .take(MAX_CHAIN_CERTIFICATES + 1)
        .map(|certificate| {
            encoding::decode_standard(certificate).ok_or("an x5c certificate is not base64")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let timestamp = serialization
        .header
        .timestamp_signature
        .as_deref()
        .map(|token| encoding::decode_any(token).ok_or("the timestamp signature is not base64"))
        .transpose()?;
    let envelope = Envelope {
        algorithm,
        signing_scheme,
        signing_time_unix: time(SIGNING_TIME)?,
        authentic_signing_time_unix: time(AUTHENTIC_SIGNING_TIME)?,
        expiry_unix: time(EXPIRY)?,
        payload: encoding::decode_url_safe(&serialization.payload)
            .ok_or("the JWS payload is not base64url")?,
        signed_bytes: format!("{}.{}", serialization.protected, serialization.payload).into_bytes(),
        signature: encoding::decode_url_safe(&serialization.signature)
            .ok_or("the JWS signature is not base64url")?,
        chain,
        timestamp,
    };
    check_scheme_times(&envelope)?;
    Ok(envelope)
}

/// notation's `crit` rules shared by both envelope formats: every critical name is understood
/// and present; the signing scheme, and the expiry and authentic signing time when present,
/// are critical.
pub(crate) fn check_critical(
    critical: &[String],
    present: impl Fn(&str) -> bool,
) -> Result<(), String> {
    for name in critical {
        if !UNDERSTOOD.contains(&name.as_str()) {
            return Err(format!("unknown critical header {name}"));
        }
        if !present(name) {
            return Err(format!("critical header {name} is listed but absent"));
        }
    }
    for name in [SIGNING_SCHEME, EXPIRY, AUTHENTIC_SIGNING_TIME] {
        let required = name == SIGNING_SCHEME || present(name);
        if required && !critical.iter().any(|critical| critical == name) {
            return Err(format!("the crit header does not list {name}"));
        }
    }
    Ok(())
}
