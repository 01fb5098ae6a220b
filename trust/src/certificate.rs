//! X.509 certificates: the notation trust-store certificates a user uploads, and the facts
//! the verifiers read from any certificate (names, validity, key usages, public key).
//!
//! Rules: an upload is one or more PEM "CERTIFICATE" blocks and nothing else, each a complete
//! X.509 certificate with no trailing bytes. A certificate belongs to exactly one store type;
//! which one a signature needs is decided by its signing scheme, never by the certificate.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::keys::{KeyError, PublicKey};
use crate::name;
use crate::pem;
use crate::MAX_CHAIN_CERTIFICATES;

/// The notation trust-store types (zot's fixed policy names each `default`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreType {
    Ca,
    SigningAuthority,
    Tsa,
}

impl StoreType {
    pub fn as_str(&self) -> &'static str {
        match self {
            StoreType::Ca => "ca",
            StoreType::SigningAuthority => "signingAuthority",
            StoreType::Tsa => "tsa",
        }
    }
}

impl fmt::Display for StoreType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The store type name is not one of `ca`, `signingAuthority`, `tsa`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown trust store type {0:?} (expected ca, signingAuthority or tsa)")]
pub struct UnknownStoreType(pub String);

impl FromStr for StoreType {
    type Err = UnknownStoreType;

    fn from_str(text: &str) -> Result<StoreType, UnknownStoreType> {
        match text {
            "ca" => Ok(StoreType::Ca),
            "signingAuthority" => Ok(StoreType::SigningAuthority),
            "tsa" => Ok(StoreType::Tsa),
            other => Err(UnknownStoreType(other.to_string())),
        }
    }
}

/// What the verifiers need to know about one certificate.
#[derive(Clone, Debug)]
pub(crate) struct CertificateFacts {
    pub subject: String,
    pub issuer: String,
    /// The raw DER subject and issuer names, to pair certificates in a chain.
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub is_ca: bool,
    /// None when the certificate has no keyUsage extension.
    pub key_usage_digital_signature: Option<bool>,
    pub key_usage_key_cert_sign: Option<bool>,
    /// The extended key usage OIDs; None when the extension is absent.
    pub extended_key_usages: Option<Vec<String>>,
    pub public_key: Result<PublicKey, KeyError>,
}

pub(crate) const OID_CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";
pub(crate) const OID_TIME_STAMPING: &str = "1.3.6.1.5.5.7.3.8";

impl CertificateFacts {
    /// Parses one DER certificate; trailing bytes or a malformed extension are refused.
    pub(crate) fn parse(der: &[u8]) -> Result<CertificateFacts, KeyError> {
        let (rest, certificate) = X509Certificate::from_der(der)
            .map_err(|error| KeyError::NotCertificate(error.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyError::NotCertificate("trailing bytes".to_string()));
        }
        let invalid =
            |error: x509_parser::error::X509Error| KeyError::NotCertificate(error.to_string());
        let key_usage = certificate.key_usage().map_err(invalid)?;
        let extended_key_usages = certificate
            .extended_key_usage()
            .map_err(invalid)?
            .map(|eku| {
                let eku = eku.value;
                let mut oids: Vec<String> =
                    eku.other.iter().map(|oid| oid.to_id_string()).collect();
                for (present, oid) in [
                    (eku.any, "2.5.29.37.0"),
                    (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
                    (eku.client_auth, "1.3.6.1.5.5.7.3.2"),
                    (eku.code_signing, OID_CODE_SIGNING),
                    (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
                    (eku.time_stamping, OID_TIME_STAMPING),
                    (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
                ] {
                    if present {
                        oids.push(oid.to_string());
                    }
                }
                oids
            });
        let is_ca = certificate
            .basic_constraints()
            .map_err(invalid)?
            .is_some_and(|constraints| constraints.value.ca);
        Ok(CertificateFacts {
            subject: name::go_string(certificate.subject()),
            issuer: name::go_string(certificate.issuer()),
            subject_der: certificate.subject().as_raw().to_vec(),
            issuer_der: certificate.issuer().as_raw().to_vec(),
            not_before_unix: certificate.validity().not_before.timestamp(),
            not_after_unix: certificate.validity().not_after.timestamp(),
            is_ca,
            key_usage_digital_signature: key_usage
                .as_ref()
                .map(|usage| usage.value.digital_signature()),
            key_usage_key_cert_sign: key_usage.as_ref().map(|usage| usage.value.key_cert_sign()),
            extended_key_usages,
            public_key: PublicKey::from_parsed_spki(certificate.public_key()),
        })
    }

    pub(crate) fn is_valid_at(&self, unix: i64) -> bool {
        self.not_before_unix <= unix && unix <= self.not_after_unix
    }
}

/// An uploaded notation trust-store certificate.
#[derive(Clone, Debug)]
pub struct TrustedCertificate {
    store: StoreType,
    der: Vec<u8>,
    facts: CertificateFacts,
}

impl TrustedCertificate {
    /// One or more PEM "CERTIFICATE" blocks (nothing else allowed), each a parseable X.509
    /// certificate.
    pub fn from_pem(store: StoreType, pem: &[u8]) -> Result<Vec<TrustedCertificate>, KeyError> {
        let blocks = pem::parse_blocks(pem)?;
        if blocks.len() > MAX_CHAIN_CERTIFICATES {
            return Err(KeyError::TooManyCertificates);
        }
        blocks
            .iter()
            .map(|block| {
                if block.label != "CERTIFICATE" {
                    return Err(KeyError::NotCertificateBlock(block.label.clone()));
                }
                TrustedCertificate::from_der(store, &block.contents)
            })
            .collect()
    }

    /// Rebuilds one from stored DER (the daemon stores `der()`).
    pub fn from_der(store: StoreType, der: &[u8]) -> Result<TrustedCertificate, KeyError> {
        Ok(TrustedCertificate {
            store,
            der: der.to_vec(),
            facts: CertificateFacts::parse(der)?,
        })
    }

    pub fn store(&self) -> StoreType {
        self.store
    }

    /// `sha256:<hex of the DER>`.
    pub fn id(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.der)))
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub fn pem(&self) -> String {
        pem::encode_block("CERTIFICATE", &self.der)
    }

    /// The subject as Go's `pkix.Name.String()` prints it, e.g. `CN=signer,O=Example,C=US`.
    pub fn subject(&self) -> String {
        self.facts.subject.clone()
    }

    /// The issuer, formatted as [`TrustedCertificate::subject`].
    pub fn issuer(&self) -> String {
        self.facts.issuer.clone()
    }

    pub fn not_before_unix(&self) -> i64 {
        self.facts.not_before_unix
    }

    pub fn not_after_unix(&self) -> i64 {
        self.facts.not_after_unix
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Role};

    #[test]
    fn store_types_round_trip_through_their_names() {
        for store in [StoreType::Ca, StoreType::SigningAuthority, StoreType::Tsa] {
            assert_eq!(store.to_string().parse::<StoreType>(), Ok(store));
        }
        assert!("CA".parse::<StoreType>().is_err());
    }

    #[test]
    fn reads_a_chain_upload() {
        let chain = testing::chain(testing::p256_key(), testing::current());
        let upload = format!("{}{}", chain.intermediate.pem(), chain.root.pem());
        let certificates = TrustedCertificate::from_pem(StoreType::Ca, upload.as_bytes())
            .expect("two certificates");
        assert_eq!(certificates.len(), 2);
        let intermediate = &certificates[0];
        assert_eq!(intermediate.store(), StoreType::Ca);
        assert_eq!(intermediate.subject(), "CN=intermediate,O=Example,C=US");
        assert_eq!(intermediate.issuer(), "CN=root,O=Example,C=US");
        assert_eq!(intermediate.not_before_unix(), testing::current().0);
        assert_eq!(intermediate.not_after_unix(), testing::current().1);
        assert_eq!(intermediate.der(), chain.intermediate.der.as_slice());
        assert_eq!(intermediate.pem(), chain.intermediate.pem());
        assert_eq!(
            intermediate.id(),
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest(&chain.intermediate.der))
            )
        );
        let again =
            TrustedCertificate::from_der(StoreType::Tsa, intermediate.der()).expect("stored DER");
        assert_eq!(again.subject(), intermediate.subject());
        assert_eq!(again.store(), StoreType::Tsa);
    }

    #[test]
    fn refuses_what_is_not_only_certificates() {
        let key = testing::p256_key();
        let certificate = testing::certificate(
            "leaf",
            testing::p256_key(),
            Role::CodeSigning,
            testing::current(),
            None,
        );
        let mixed = format!("{}{}", certificate.pem(), key.public_pem());
        assert_eq!(
            TrustedCertificate::from_pem(StoreType::Ca, mixed.as_bytes()).unwrap_err(),
            KeyError::NotCertificateBlock("PUBLIC KEY".into())
        );
        assert_eq!(
            TrustedCertificate::from_pem(StoreType::Ca, b"nope").unwrap_err(),
            KeyError::NotPem
        );
        let bogus = pem::encode_block("CERTIFICATE", b"\x30\x03\x02\x01\x01");
        assert!(matches!(
            TrustedCertificate::from_pem(StoreType::Ca, bogus.as_bytes()),
            Err(KeyError::NotCertificate(_))
        ));
        let mut trailing = certificate.der.clone();
        trailing.push(0);
        assert!(TrustedCertificate::from_der(StoreType::Ca, &trailing).is_err());
        let many = certificate.pem().repeat(MAX_CHAIN_CERTIFICATES + 1);
        assert_eq!(
            TrustedCertificate::from_pem(StoreType::Ca, many.as_bytes()).unwrap_err(),
            KeyError::TooManyCertificates
        );
    }

    #[test]
    fn reads_key_usages() {
        let chain = testing::chain(testing::p256_key(), testing::current());
        let leaf = CertificateFacts::parse(&chain.leaf.der).expect("leaf");
        assert!(!leaf.is_ca);
        assert_eq!(leaf.key_usage_digital_signature, Some(true));
        assert_eq!(
            leaf.extended_key_usages,
            Some(vec![OID_CODE_SIGNING.to_string()])
        );
        let root = CertificateFacts::parse(&chain.root.der).expect("root");
        assert!(root.is_ca);
        assert_eq!(root.key_usage_key_cert_sign, Some(true));
        assert!(root.is_valid_at(testing::NOW));
        assert!(!root.is_valid_at(testing::current().1 + 1));
    }
}
