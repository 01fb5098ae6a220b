//! notation signatures (Notary Project signature specification): JWS and COSE envelopes,
//! judged under zot's fixed trust policy: level strict, verifyTimestamp afterCertExpiry, any
//! trusted identity, trust stores `ca:default`, `signingAuthority:default`, `tsa:default`.
//!
//! Rules, in the order they are checked:
//! 1. The envelope parses, names only critical headers berth understands, and its signature
//!    verifies with the leaf certificate's key using the algorithm that key size dictates.
//! 2. The payload's `targetArtifact` is the manifest being judged (digest, size, media type).
//! 3. The chain (leaf first) is a code-signing chain: leaf with digitalSignature and, if any
//!    EKU, codeSigning, not a CA; then CAs with keyCertSign, each signing the one before; the
//!    last one self-signed.
//! 4. Time: `notary.x509` needs every certificate valid now, or else a valid RFC 3161
//!    timestamp inside their validity; `notary.x509.signingAuthority` needs every certificate
//!    valid at the authentic signing time. A past `io.cncf.notary.expiry` is never trusted.
//! 5. The chain reaches a trust-store certificate of the type the signing scheme needs
//!    (`ca` or `signingAuthority`), checked by rustls-webpki path validation at the time of
//!    rule 4, or the chain contains such a certificate byte for byte (as notation accepts).
//!
//! No revocation checks: berth has no network.

pub(crate) mod chain;
mod cose;
mod jws;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::certificate::{CertificateFacts, StoreType};
use crate::keys::{KeyAlgorithm, SignatureAlgorithm};
use crate::timestamp;
use crate::verdict::{Subject, Tool, TrustStore, Verdict};
use crate::{MAX_CHAIN_CERTIFICATES, MAX_ENVELOPE_BYTES};

pub(crate) const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
pub(crate) const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
pub(crate) const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
pub(crate) const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
pub(crate) const EXPIRY: &str = "io.cncf.notary.expiry";
pub(crate) const TIMESTAMP_SIGNATURE: &str = "io.cncf.notary.timestampSignature";

/// The JWS/COSE algorithms notation signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
}

impl Algorithm {
    pub(crate) fn from_jose_name(name: &str) -> Option<Algorithm> {
        Some(match name {
            "PS256" => Algorithm::Ps256,
            "PS384" => Algorithm::Ps384,
            "PS512" => Algorithm::Ps512,
            "ES256" => Algorithm::Es256,
            "ES384" => Algorithm::Es384,
            "ES512" => Algorithm::Es512,
            _ => return None,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Es512 => "ES512",
        }
    }

    /// The one algorithm notation pairs with a key: RSA-2048/3072/4096 with PS256/384/512,
    /// P-256/P-384 with ES256/ES384. None for keys notation does not sign with.
    fn for_key(key: KeyAlgorithm) -> Option<Algorithm> {
        match key {
            KeyAlgorithm::Rsa { bits: 2048 } => Some(Algorithm::Ps256),
            KeyAlgorithm::Rsa { bits: 3072 } => Some(Algorithm::Ps384),
            KeyAlgorithm::Rsa { bits: 4096 } => Some(Algorithm::Ps512),
            KeyAlgorithm::EcdsaP256 => Some(Algorithm::Es256),
            KeyAlgorithm::EcdsaP384 => Some(Algorithm::Es384),
            _ => None,
        }
    }

    fn signature_algorithm(&self) -> Option<SignatureAlgorithm> {
        match self {
            Algorithm::Ps256 => Some(SignatureAlgorithm::RsaPssSha256),
            Algorithm::Ps384 => Some(SignatureAlgorithm::RsaPssSha384),
            Algorithm::Ps512 => Some(SignatureAlgorithm::RsaPssSha512),
            Algorithm::Es256 => Some(SignatureAlgorithm::EcdsaSha256Fixed),
            Algorithm::Es384 => Some(SignatureAlgorithm::EcdsaSha384Fixed),
            Algorithm::Es512 => None,
        }
    }
}

/// notation's two signing schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SigningScheme {
    X509,
    SigningAuthority,
}

impl SigningScheme {
    pub(crate) fn parse(text: &str) -> Result<SigningScheme, String> {
        match text {
            "notary.x509" => Ok(SigningScheme::X509),
            "notary.x509.signingAuthority" => Ok(SigningScheme::SigningAuthority),
            other => Err(format!("unsupported signing scheme {other:?}")),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            SigningScheme::X509 => "notary.x509",
            SigningScheme::SigningAuthority => "notary.x509.signingAuthority",
        }
    }

    fn store_type(&self) -> StoreType {
        match self {
            SigningScheme::X509 => StoreType::Ca,
            SigningScheme::SigningAuthority => StoreType::SigningAuthority,
        }
    }
}

/// What both envelope formats reduce to.
pub(crate) struct Envelope {
    pub algorithm: Algorithm,
    pub signing_scheme: SigningScheme,
    pub signing_time_unix: Option<i64>,
    pub authentic_signing_time_unix: Option<i64>,
    pub expiry_unix: Option<i64>,
    pub payload: Vec<u8>,
    /// The bytes the signature covers (JWS signing input, COSE Sig_structure).
    pub signed_bytes: Vec<u8>,
    pub signature: Vec<u8>,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// A DER RFC 3161 TimeStampToken over `signature`.
    pub timestamp: Option<Vec<u8>>,
}

/// Checks the header fields both formats share once parsed: the scheme's time is present.
pub(crate) fn check_scheme_times(envelope: &Envelope) -> Result<(), String> {
    match envelope.signing_scheme {
        SigningScheme::X509 if envelope.signing_time_unix.is_none() => {
            Err(format!("the {SIGNING_TIME} header is missing"))
        }
        SigningScheme::SigningAuthority if envelope.authentic_signing_time_unix.is_none() => {
            Err(format!("the {AUTHENTIC_SIGNING_TIME} header is missing"))
        }
        _ => Ok(()),
    }
}

/// notation: one layer of an `application/vnd.cncf.notary.signature` referrer;
/// `envelope_media_type` is the layer's media type: `application/jose+json` (JWS) or
/// `application/cose` (COSE_Sign1).
pub fn verify_notation(
    envelope_media_type: &str,
    envelope: &[u8],
    subject: &Subject,
    store: &TrustStore,
    now_unix: i64,
) -> Verdict {
    if envelope.len() > MAX_ENVELOPE_BYTES {
        return Verdict::untrusted(
            Tool::Notation,
            "the signature envelope is larger than 4 MiB",
        );
    }
    let parsed = match envelope_media_type {
        "application/jose+json" => jws::parse(envelope),
        "application/cose" => cose::parse(envelope),
        other => Err(format!(
            "unsupported signature envelope media type {other:?}"
        )),
    };
    match parsed.and_then(|envelope| judge(&envelope, subject, store, now_unix)) {
        Ok(verdict) => verdict,
        Err(reason) => Verdict::untrusted(Tool::Notation, reason),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    target_artifact: TargetArtifact,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetArtifact {
    media_type: String,
    digest: String,
    size: u64,
}

fn judge(
    envelope: &Envelope,
    subject: &Subject,
    store: &TrustStore,
    now: i64,
) -> Result<Verdict, String> {
    if envelope.chain.is_empty() {
        return Err("the envelope carries no certificate chain".into());
    }
    if envelope.chain.len() > MAX_CHAIN_CERTIFICATES {
        return Err(format!(
            "the certificate chain is longer than {MAX_CHAIN_CERTIFICATES}"
        ));
    }
    let facts = envelope
        .chain
        .iter()
        .enumerate()
        .map(|(index, der)| {
            CertificateFacts::parse(der).map_err(|_| {
                format!(
                    "certificate {} of the chain is not an X.509 certificate",
                    index + 1
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = &facts[0];
    let leaf_key = leaf
        .public_key
        .as_ref()
        .map_err(|error| format!("the signing certificate's key is not supported: {error}"))?;
    let Some(expected) = Algorithm::for_key(leaf_key.algorithm) else {
        return Err(format!(
            "notation does not sign with {} keys",
            leaf_key.algorithm.describe()
        ));
    };
    if expected != envelope.algorithm {
        return Err(format!(
            "the signature algorithm {} does not match the signing key (which needs {})",
            envelope.algorithm.name(),
            expected.name()
        ));
    }
    let Some(signature_algorithm) = envelope.algorithm.signature_algorithm() else {
        return Err(format!(
            "{} (ECDSA P-521) signatures are not supported",
            envelope.algorithm.name()
        ));
    };
    if !leaf_key.verify(
        signature_algorithm,
        &envelope.signed_bytes,
        &envelope.signature,
    ) {
        return Err("the signature does not verify with the signing certificate's key".into());
    }
    check_payload(&envelope.payload, subject)?;
    chain::check_structure(&envelope.chain, &facts, chain::Purpose::CodeSigning)?;

    let expiry = envelope.expiry_unix;
    if let Some(expiry) = expiry {
        if expiry <= now {
            return Err(format!("signature expired at {}", rfc3339(expiry)));
        }
    }
    let (verify_at, expires_unix) = match envelope.signing_scheme {
        SigningScheme::X509 => x509_time(envelope, &facts, store, now)?,
        SigningScheme::SigningAuthority => {
            let authentic = envelope.authentic_signing_time_unix.unwrap_or(now);
            if let Some(certificate) = facts
                .iter()
                .find(|certificate| !certificate.is_valid_at(authentic))
            {
                return Err(format!(
                    "certificate {} was not valid at the authentic signing time {}",
                    certificate.subject,
                    rfc3339(authentic)
                ));
            }
            (authentic, expiry)
        }
    };
    chain::check_trust(
        &envelope.chain,
        envelope.signing_scheme.store_type(),
        envelope.signing_scheme.name(),
        store,
        verify_at,
    )?;
    Ok(Verdict::trusted(
        Tool::Notation,
        leaf.subject.clone(),
        expires_unix,
    ))
}

/// afterCertExpiry: returns the time to validate the path at and when the verdict lapses.
fn x509_time(
    envelope: &Envelope,
    facts: &[CertificateFacts],
    store: &TrustStore,
    now: i64,
) -> Result<(i64, Option<i64>), String> {
    if let Some(signing_time) = envelope.signing_time_unix {
        if let Some(certificate) = facts
            .iter()
            .find(|certificate| !certificate.is_valid_at(signing_time))
        {
            return Err(format!(
                "certificate {} was not valid at the signing time {}",
                certificate.subject,
                rfc3339(signing_time)
            ));
        }
    }
    if let Some(certificate) = facts
        .iter()
        .find(|certificate| certificate.not_before_unix > now)
    {
        return Err(format!(
            "certificate {} is not valid before {}",
            certificate.subject,
            rfc3339(certificate.not_before_unix)
        ));
    }
    let earliest_not_after = facts
        .iter()
        .map(|certificate| certificate.not_after_unix)
        .min()
        .unwrap_or(now);
    if earliest_not_after >= now {
        let expires = envelope
            .expiry_unix
            .map_or(earliest_not_after, |expiry| expiry.min(earliest_not_after));
        return Ok((now, Some(expires)));
    }
    let expired_at = rfc3339(earliest_not_after);
    let Some(token) = &envelope.timestamp else {
        return Err(format!(
            "certificate expired at {expired_at}, no valid timestamp"
        ));
    };
    let tsa_certificates: Vec<&[u8]> = store
        .certificates
        .iter()
        .filter(|certificate| certificate.store() == StoreType::Tsa)
        .map(|certificate| certificate.der())
        .collect();
    let generated =
        timestamp::verify(token, &envelope.signature, &tsa_certificates).map_err(|reason| {
            format!("certificate expired at {expired_at}, no valid timestamp ({reason})")
        })?;
    if let Some(certificate) = facts
        .iter()
        .find(|certificate| !certificate.is_valid_at(generated))
    {
        return Err(format!(
            "certificate expired at {expired_at}, no valid timestamp (certificate {} was not valid at the timestamp {})",
            certificate.subject,
            rfc3339(generated)
        ));
    }
    Ok((generated, envelope.expiry_unix))
}

fn check_payload(payload: &[u8], subject: &Subject) -> Result<(), String> {
    let payload: Payload = serde_json::from_slice(payload)
        .map_err(|_| "the payload is not a notation payload (targetArtifact)".to_string())?;
    let target = payload.target_artifact;
    if target.digest != subject.digest {
        return Err(format!(
            "the payload names {}, not this manifest",
            target.digest
        ));
    }
    if target.size != subject.size {
        return Err(format!(
            "the payload names a manifest of {} bytes, not {}",
            target.size, subject.size
        ));
    }
    if target.media_type != subject.media_type {
        return Err(format!(
            "the payload names media type {}, not {}",
            target.media_type, subject.media_type
        ));
    }
    Ok(())
}

/// Formats unix seconds as RFC 3339 for reasons; out-of-range times print as the number.
pub(crate) fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// Parses an RFC 3339 header time.
pub(crate) fn parse_rfc3339(name: &str, text: &str) -> Result<i64, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|time| time.unix_timestamp())
        .map_err(|_| format!("the {name} header is not an RFC 3339 time"))
}

#[cfg(test)]
pub(crate) mod test_envelopes;
#[cfg(test)]
mod tests;
