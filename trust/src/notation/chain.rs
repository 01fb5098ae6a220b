//! Certificate chains of notation signatures: their shape (notation's code-signing chain
//! rules) and whether they reach the trust store (rustls-webpki path validation).

use std::time::Duration;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use webpki::{anchor_from_trusted_cert, EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certificate::{CertificateFacts, StoreType, OID_CODE_SIGNING, OID_TIME_STAMPING};
use crate::verdict::TrustStore;

/// The DER contents of the codeSigning and timeStamping EKU OIDs, as webpki takes them.
const CODE_SIGNING_OID_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
pub(crate) const TIME_STAMPING_OID_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];

/// The signature algorithms certificates may be signed with (everything ring verifies).
const CERTIFICATE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_3072_8192_SHA384,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// What the leaf of a chain is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    CodeSigning,
    TimeStamping,
}

impl Purpose {
    fn oid(&self) -> &'static str {
        match self {
            Purpose::CodeSigning => OID_CODE_SIGNING,
            Purpose::TimeStamping => OID_TIME_STAMPING,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Purpose::CodeSigning => "codeSigning",
            Purpose::TimeStamping => "timeStamping",
        }
    }
}

/// notation's chain rules: the leaf signs (digitalSignature, EKU `purpose` if it has EKUs, not
/// a CA); every other certificate is a CA with keyCertSign; each is signed by the next; the
/// last is self-signed.
pub(crate) fn check_structure(
    ders: &[Vec<u8>],
    facts: &[CertificateFacts],
    purpose: Purpose,
) -> Result<(), String> {
    let leaf = &facts[0];
    if leaf.is_ca {
        return Err(format!("the signing certificate {} is a CA", leaf.subject));
    }
    if leaf.key_usage_digital_signature != Some(true) {
        return Err(format!(
            "the signing certificate {} lacks the digitalSignature key usage",
            leaf.subject
        ));
    }
    match &leaf.extended_key_usages {
        Some(usages) if !usages.iter().any(|oid| oid == purpose.oid()) => {
            return Err(format!(
                "the signing certificate {} lacks the {} extended key usage",
                leaf.subject,
                purpose.name()
            ));
        }
        _ => {}
    }
    for authority in &facts[1..] {
        if !authority.is_ca || authority.key_usage_key_cert_sign != Some(true) {
            return Err(format!(
                "certificate {} is not a CA with the keyCertSign key usage",
                authority.subject
            ));
        }
    }
    let parsed = ders
        .iter()
        .map(|der| X509Certificate::from_der(der).map(|(_, certificate)| certificate))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("the certificate chain is malformed: {error}"))?;
    for (index, certificate) in parsed.iter().enumerate() {
        let issuer = parsed.get(index + 1).unwrap_or(certificate);
        let issuer_facts = facts.get(index + 1).unwrap_or(&facts[index]);
        let signed = facts[index].issuer_der == issuer_facts.subject_der
            && certificate
                .verify_signature(Some(issuer.public_key()))
                .is_ok();
        if !signed {
            return Err(if index + 1 == parsed.len() {
                format!(
                    "the last certificate of the chain, {}, is not self-signed",
                    facts[index].subject
                )
            } else {
                format!(
                    "certificate {} is not signed by the next certificate of the chain, {}",
                    facts[index].subject, issuer_facts.subject
                )
            });
        }
    }
    Ok(())
}

/// Whether the chain reaches a certificate of `store_type` at `at_unix`: a webpki path from
/// the leaf through the chain to a trust anchor of that type, or, for a signing chain (as
/// notation accepts), a chain certificate identical to one of that type.
pub(crate) fn reaches(
    ders: &[Vec<u8>],
    store_type: StoreType,
    store: &TrustStore,
    at_unix: i64,
    purpose: Purpose,
) -> bool {
    let trusted: Vec<&[u8]> = store
        .certificates
        .iter()
        .filter(|certificate| certificate.store() == store_type)
        .map(|certificate| certificate.der())
        .collect();
    reaches_any(ders, &trusted, at_unix, purpose)
}

pub(crate) fn reaches_any(
    ders: &[Vec<u8>],
    trusted: &[&[u8]],
    at_unix: i64,
    purpose: Purpose,
) -> bool {
    if trusted.is_empty() {
        return false;
    }
    // A signing chain was already checked link by link and for time (check_structure and the
    // caller), so containing a trusted certificate suffices, as in notation; a timestamp's
    // certificates are an unordered set and go through webpki only.
    if purpose == Purpose::CodeSigning && ders.iter().any(|der| trusted.contains(&der.as_slice())) {
        return true;
    }
    let trusted_ders: Vec<CertificateDer> = trusted
        .iter()
        .map(|der| CertificateDer::from(*der))
        .collect();
    let anchors: Vec<_> = trusted_ders
        .iter()
        .filter_map(|der| anchor_from_trusted_cert(der).ok())
        .collect();
    let leaf_der = CertificateDer::from(ders[0].as_slice());
    let Ok(leaf) = EndEntityCert::try_from(&leaf_der) else {
        return false;
    };
    let intermediates: Vec<CertificateDer> = ders[1..]
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let time = UnixTime::since_unix_epoch(Duration::from_secs(at_unix.max(0) as u64));
    let usage = match purpose {
        Purpose::CodeSigning => KeyUsage::required_if_present(CODE_SIGNING_OID_DER),
        Purpose::TimeStamping => KeyUsage::required(TIME_STAMPING_OID_DER),
    };
    leaf.verify_for_usage(
        CERTIFICATE_ALGORITHMS,
        &anchors,
        &intermediates,
        time,
        usage,
        None,
        None,
    )
    .is_ok()
}

/// [`reaches`] for a signing chain, with the reason when it does not, naming a certificate
/// uploaded under the wrong store type when that is what the chain reaches.
pub(crate) fn check_trust(
    ders: &[Vec<u8>],
    store_type: StoreType,
    scheme: &str,
    store: &TrustStore,
    at_unix: i64,
) -> Result<(), String> {
    if reaches(ders, store_type, store, at_unix, Purpose::CodeSigning) {
        return Ok(());
    }
    let other_types = [StoreType::Ca, StoreType::SigningAuthority, StoreType::Tsa];
    if let Some(other) = other_types
        .into_iter()
        .filter(|other| *other != store_type)
        .find(|other| reaches(ders, *other, store, at_unix, Purpose::CodeSigning))
    {
        return Err(format!(
            "certificate chain reaches a certificate of the {other} trust store, but the {scheme} signing scheme needs the {store_type} trust store"
        ));
    }
    Err(format!(
        "certificate chain does not reach a certificate of the {store_type} trust store"
    ))
}
