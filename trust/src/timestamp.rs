//! RFC 3161 timestamp countersignatures of notation signatures (`io.cncf.notary.
//! timestampSignature`): a DER CMS SignedData TimeStampToken whose TSTInfo stamps the hash of
//! the envelope's signature bytes.
//!
//! Rules: exactly one signer; its signed attributes carry the TSTInfo content type and the
//! digest of the TSTInfo; its signature verifies with the signing certificate found in the
//! token by issuer and serial (or subject key identifier); that certificate has the
//! timeStamping EKU and chains, through the token's other certificates, to a `tsa`
//! trust-store certificate at genTime. Hashes are SHA-256/384/512 only.

use cms::cert::x509::Certificate;
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_tsp::TstInfo;

use crate::keys::{PublicKey, SignatureAlgorithm};
use crate::notation::chain::{reaches_any, Purpose};
use crate::{MAX_CHAIN_CERTIFICATES, MAX_ENVELOPE_BYTES};

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_oid(oid: &ObjectIdentifier) -> Result<Hash, String> {
        match *oid {
            ID_SHA256 => Ok(Hash::Sha256),
            ID_SHA384 => Ok(Hash::Sha384),
            ID_SHA512 => Ok(Hash::Sha512),
            other => Err(format!("unsupported hash algorithm {other}")),
        }
    }

    fn digest(&self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(bytes).to_vec(),
            Hash::Sha384 => Sha384::digest(bytes).to_vec(),
            Hash::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

/// Verifies a DER TimeStampToken over `signature` against the `tsa` trust-store certificates
/// and returns its genTime (unix seconds); the error is a short reason.
pub(crate) fn verify(
    token: &[u8],
    signature: &[u8],
    tsa_certificates: &[&[u8]],
) -> Result<i64, String> {
    if token.len() > MAX_ENVELOPE_BYTES {
        return Err("the timestamp token is larger than 4 MiB".into());
    }
    let malformed = |_| "the timestamp token is not a CMS SignedData TimeStampToken".to_string();
    let content_info = ContentInfo::from_der(token).map_err(malformed)?;
    if content_info.content_type != ID_SIGNED_DATA {
        return Err("the timestamp token is not a CMS SignedData TimeStampToken".into());
    }
    let signed_data: SignedData = content_info.content.decode_as().map_err(malformed)?;
    if signed_data.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err("the timestamp token does not hold a TSTInfo".into());
    }
    let content: OctetString = signed_data
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("the timestamp token has no content")?
        .decode_as()
        .map_err(malformed)?;
    let tst_info = TstInfo::from_der(content.as_bytes())
        .map_err(|_| "the timestamp token's TSTInfo is malformed".to_string())?;

    let imprint = &tst_info.message_imprint;
    let imprint_hash = Hash::from_oid(&imprint.hash_algorithm.oid)?;
    if imprint.hashed_message.as_bytes() != imprint_hash.digest(signature).as_slice() {
        return Err("the timestamp does not stamp this signature".into());
    }

    let [signer] = signed_data.signer_infos.0.as_slice() else {
        return Err("the timestamp token does not have exactly one signer".into());
    };
    let parsed: Vec<&Certificate> = signed_data
        .certificates
        .as_ref()
        .map(|set| set.0.as_slice())
        .unwrap_or_default()
        .iter()
        .take(MAX_CHAIN_CERTIFICATES)
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(certificate) => Some(certificate),
            CertificateChoices::Other(_) => None,
        })
        .collect();
    let signer_index = parsed
        .iter()
        .position(|certificate| identifies(&signer.sid, certificate))
        .ok_or("the timestamp token does not carry its signing certificate")?;
    let certificates: Vec<Vec<u8>> = parsed
        .iter()
        .map(|certificate| certificate.to_der().map_err(malformed))
        .collect::<Result<_, _>>()?;
    check_signer(signer, content.as_bytes(), parsed[signer_index])?;

    let gen_time = tst_info
        .gen_time
        .to_unix_duration()
        .as_secs()
        .min(i64::MAX as u64) as i64;
    let mut chain = vec![certificates[signer_index].clone()];
    chain.extend(
        certificates
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != signer_index)
            .map(|(_, der)| der.clone()),
    );
    if !reaches_any(&chain, tsa_certificates, gen_time, Purpose::TimeStamping) {
        return Err(
            "the timestamp's certificate chain does not reach a certificate of the tsa trust store"
                .into(),
        );
    }
    Ok(gen_time)
}

fn identifies(identifier: &SignerIdentifier, certificate: &Certificate) -> bool {
    let tbs = &certificate.tbs_certificate;
    match identifier {
        SignerIdentifier::IssuerAndSerialNumber(issuer_and_serial) => {
            issuer_and_serial.issuer == tbs.issuer
                && issuer_and_serial.serial_number == tbs.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(key_identifier) => tbs
            .extensions
            .iter()
            .flatten()
            .filter(|extension| extension.extn_id == ID_SUBJECT_KEY_IDENTIFIER)
            .any(|extension| {
                OctetString::from_der(extension.extn_value.as_bytes())
                    .is_ok_and(|value| value == key_identifier.0)
            }),
    }
}

/// The signed attributes name the TSTInfo and its digest, and the signature over them
/// verifies with the signing certificate's key.
fn check_signer(
    signer: &SignerInfo,
    content: &[u8],
    certificate: &Certificate,
) -> Result<(), String> {
    let digest_hash = Hash::from_oid(&signer.digest_alg.oid)?;
    let attributes = signer
        .signed_attrs
        .as_ref()
        .ok_or("the timestamp token has no signed attributes")?;
    let attribute_value = |oid: ObjectIdentifier| {
        let mut matching = attributes.iter().filter(|attribute| attribute.oid == oid);
        match (matching.next(), matching.next()) {
            (Some(attribute), None) if attribute.values.len() == 1 => {
                attribute.values.get(0).cloned()
            }
            _ => None,
        }
    };
    let content_type: Option<ObjectIdentifier> =
        attribute_value(ID_CONTENT_TYPE).and_then(|value| value.decode_as().ok());
    if content_type != Some(ID_CT_TST_INFO) {
        return Err("the timestamp token's signed content type is not TSTInfo".into());
    }
    let message_digest: Option<OctetString> =
        attribute_value(ID_MESSAGE_DIGEST).and_then(|value| value.decode_as().ok());
    if message_digest.as_ref().map(OctetString::as_bytes)
        != Some(digest_hash.digest(content).as_slice())
    {
        return Err("the timestamp token's signed digest does not match its TSTInfo".into());
    }
    let signed = attributes
        .to_der()
        .map_err(|_| "the timestamp token's signed attributes are malformed".to_string())?;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| "the timestamp signing certificate is malformed".to_string())?;
    let key = PublicKey::from_spki(&spki)
        .map_err(|error| format!("the timestamp signing key is not supported: {error}"))?;
    let key_is_ec = certificate
        .tbs_certificate
        .subject_public_key_info
        .algorithm
        .oid
        == EC_PUBLIC_KEY;
    let algorithm = match (signer.signature_algorithm.oid, digest_hash) {
        (SHA256_WITH_RSA, _) => SignatureAlgorithm::RsaPkcs1Sha256,
        (SHA384_WITH_RSA, _) => SignatureAlgorithm::RsaPkcs1Sha384,
        (SHA512_WITH_RSA, _) => SignatureAlgorithm::RsaPkcs1Sha512,
        (RSA_ENCRYPTION, Hash::Sha256) => SignatureAlgorithm::RsaPkcs1Sha256,
        (RSA_ENCRYPTION, Hash::Sha384) => SignatureAlgorithm::RsaPkcs1Sha384,
        (RSA_ENCRYPTION, Hash::Sha512) => SignatureAlgorithm::RsaPkcs1Sha512,
        (RSA_PSS, Hash::Sha256) => SignatureAlgorithm::RsaPssSha256,
        (RSA_PSS, Hash::Sha384) => SignatureAlgorithm::RsaPssSha384,
        (RSA_PSS, Hash::Sha512) => SignatureAlgorithm::RsaPssSha512,
        (ECDSA_WITH_SHA256, _) if key_is_ec => SignatureAlgorithm::EcdsaSha256Der,
        (ECDSA_WITH_SHA384, _) if key_is_ec => SignatureAlgorithm::EcdsaSha384Der,
        (other, _) => return Err(format!("unsupported timestamp signature algorithm {other}")),
    };
    if !key.verify(algorithm, &signed, signer.signature.as_bytes()) {
        return Err("the timestamp token's signature does not verify".into());
    }
    Ok(())
}

#[cfg(test)]
#[path = "timestamp_tests.rs"]
pub(crate) mod tests;
