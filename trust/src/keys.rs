//! Public keys: the cosign keys a user uploads, and the one verification routine every
//! format goes through.
//!
//! Rules: a key is a PKIX SubjectPublicKeyInfo of ECDSA P-256/P-384, Ed25519 or RSA of 2048
//! to 8192 bits (what ring verifies). A cosign key upload is exactly one PEM "PUBLIC KEY"
//! block; private keys, certificates and several blocks are refused, never silently skipped.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::pem;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

/// The smallest and largest RSA modulus, in bits, ring verifies with.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// Why an uploaded key or certificate is refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not PEM")]
    NotPem,
    #[error("PEM text larger than {} KiB", crate::MAX_PEM_BYTES / 1024)]
    TooLarge,
    #[error("expected exactly one PEM block, found {0}")]
    SeveralBlocks(usize),
    #[error("not a public key (the PEM block is labelled {0:?})")]
    NotPublicKey(String),
    #[error("invalid public key: {0}")]
    InvalidKey(String),
    #[error("unsupported key type: {0}")]
    UnsupportedKeyType(String),
    #[error("not an X.509 certificate (the PEM block is labelled {0:?})")]
    NotCertificateBlock(String),
    #[error("not an X.509 certificate: {0}")]
    NotCertificate(String),
    #[error(
        "more than {} certificates in one upload",
        crate::MAX_CHAIN_CERTIFICATES
    )]
    TooManyCertificates,
}

/// The kind and size of a public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa { bits: usize },
}

impl KeyAlgorithm {
    /// A short human name for reasons: `ECDSA P-256`, `RSA-3072`, `Ed25519`.
    pub(crate) fn describe(&self) -> String {
        match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256".to_string(),
            KeyAlgorithm::EcdsaP384 => "ECDSA P-384".to_string(),
            KeyAlgorithm::Ed25519 => "Ed25519".to_string(),
            KeyAlgorithm::Rsa { bits } => format!("RSA-{bits}"),
        }
    }
}

/// How a signature was made; which of these a key accepts depends on its [`KeyAlgorithm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureAlgorithm {
    /// ECDSA with an ASN.1 DER `(r, s)` signature over the SHA-256 of the message (cosign).
    EcdsaSha256Der,
    EcdsaSha384Der,
    /// ECDSA with a fixed-width `r || s` signature (JWS, COSE).
    EcdsaSha256Fixed,
    EcdsaSha384Fixed,
    Ed25519,
    RsaPkcs1Sha256,
    RsaPkcs1Sha384,
    RsaPkcs1Sha512,
    RsaPssSha256,
    RsaPssSha384,
    RsaPssSha512,
}

/// A parsed public key, in the form ring verifies with.
#[derive(Clone, Debug)]
pub(crate) struct PublicKey {
    pub algorithm: KeyAlgorithm,
    /// The uncompressed point (ECDSA), the 32 bytes (Ed25519) or the PKCS#1 RSAPublicKey.
    key: Vec<u8>,
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo, refusing trailing bytes and unsupported keys.
    pub(crate) fn from_spki(der: &[u8]) -> Result<PublicKey, KeyError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|error| KeyError::InvalidKey(error.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyError::InvalidKey("trailing bytes".to_string()));
        }
        PublicKey::from_parsed_spki(&spki)
    }

    pub(crate) fn from_parsed_spki(spki: &SubjectPublicKeyInfo) -> Result<PublicKey, KeyError> {
        let oid = spki.algorithm.algorithm.to_id_string();
        let key = spki.subject_public_key.data.to_vec();
        let algorithm = match oid.as_str() {
            OID_RSA => match spki.parsed() {
                Ok(ParsedKey::RSA(rsa)) => {
                    let bits = rsa.key_size();
                    if !RSA_BITS.contains(&bits) {
                        return Err(KeyError::UnsupportedKeyType(format!("RSA-{bits}")));
                    }
                    KeyAlgorithm::Rsa { bits }
                }
                _ => return Err(KeyError::InvalidKey("malformed RSA key".to_string())),
            },
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|parameters| parameters.as_oid().ok())
                    .map(|curve| curve.to_id_string())
                    .ok_or_else(|| KeyError::InvalidKey("EC key without a named curve".into()))?;
                let (algorithm, point_bytes) = match curve.as_str() {
                    OID_P256 => (KeyAlgorithm::EcdsaP256, 65),
                    OID_P384 => (KeyAlgorithm::EcdsaP384, 97),
                    OID_P521 => return Err(KeyError::UnsupportedKeyType("ECDSA P-521".into())),
                    other => return Err(KeyError::UnsupportedKeyType(format!("EC curve {other}"))),
                };
                if key.len() != point_bytes || key[0] != 4 {
                    return Err(KeyError::InvalidKey("not an uncompressed EC point".into()));
                }
                algorithm
            }
            OID_ED25519 => {
                if key.len() != 32 {
                    return Err(KeyError::InvalidKey("Ed25519 key is not 32 bytes".into()));
                }
                KeyAlgorithm::Ed25519
            }
            other => return Err(KeyError::UnsupportedKeyType(format!("algorithm {other}"))),
        };
        Ok(PublicKey { algorithm, key })
    }

    /// Whether `signature` over `message` verifies under this key with `algorithm`; false
    /// when the algorithm does not fit the key.
    pub(crate) fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        let ring_algorithm: &'static dyn VerificationAlgorithm = match (self.algorithm, algorithm) {
            (KeyAlgorithm::EcdsaP256, SignatureAlgorithm::EcdsaSha256Der) => {
                &signature::ECDSA_P256_SHA256_ASN1
            }
            (KeyAlgorithm::EcdsaP256, SignatureAlgorithm::EcdsaSha384Der) => {
                &signature::ECDSA_P256_SHA384_ASN1
            }
            (KeyAlgorithm::EcdsaP256, SignatureAlgorithm::EcdsaSha256Fixed) => {
                &signature::ECDSA_P256_SHA256_FIXED
            }
            (KeyAlgorithm::EcdsaP384, SignatureAlgorithm::EcdsaSha384Der) => {
                &signature::ECDSA_P384_SHA384_ASN1
            }
            (KeyAlgorithm::EcdsaP384, SignatureAlgorithm::EcdsaSha256Der) => {
                &signature::ECDSA_P384_SHA256_ASN1
            }
            (KeyAlgorithm::EcdsaP384, SignatureAlgorithm::EcdsaSha384Fixed) => {
                &signature::ECDSA_P384_SHA384_FIXED
            }
            (KeyAlgorithm::Ed25519, SignatureAlgorithm::Ed25519) => &signature::ED25519,
            (KeyAlgorithm::Rsa { .. }, SignatureAlgorithm::RsaPkcs1Sha256) => {
                &signature::RSA_PKCS1_2048_8192_SHA256
            }
            (KeyAlgorithm::Rsa { .. }, SignatureAlgorithm::RsaPkcs1Sha384) => {
                &signature::RSA_PKCS1_2048_8192_SHA384
            }
            (KeyAlgorithm::Rsa { .. }, SignatureAlgorithm::RsaPkcs1Sha512) => {
                &signature::RSA_PKCS1_2048_8192_SHA512
            }
            (KeyAlgorithm::Rsa { .. }, SignatureAlgorithm::RsaPssSha256) => {
                &signature::RSA_PSS_2048_8192_SHA256
            }
            (KeyAlgorithm::Rsa { .. }, SignatureAlgorithm::RsaPssSha384) => {
                &signature::RSA_PSS_2048_8192_SHA384
            }
            (KeyAlgorithm::Rsa { .. }, SignatureAlgorithm::RsaPssSha512) => {
                &signature::RSA_PSS_2048_8192_SHA512
            }
            _ => return false,
        };
        UnparsedPublicKey::new(ring_algorithm, &self.key)
            .verify(message, signature)
            .is_ok()
    }

    /// The signature algorithms cosign signs with for this kind of key.
    fn cosign_algorithms(&self) -> &'static [SignatureAlgorithm] {
        match self.algorithm {
            KeyAlgorithm::EcdsaP256 => &[SignatureAlgorithm::EcdsaSha256Der],
            KeyAlgorithm::EcdsaP384 => &[
                SignatureAlgorithm::EcdsaSha384Der,
                SignatureAlgorithm::EcdsaSha256Der,
            ],
            KeyAlgorithm::Ed25519 => &[SignatureAlgorithm::Ed25519],
            KeyAlgorithm::Rsa { .. } => &[
                SignatureAlgorithm::RsaPkcs1Sha256,
                SignatureAlgorithm::RsaPssSha256,
            ],
        }
    }
}

/// An uploaded cosign public key.
#[derive(Clone, Debug)]
pub struct CosignKey {
    key: PublicKey,
    der: Vec<u8>,
    pem: String,
}

impl CosignKey {
    /// A PEM "PUBLIC KEY" (PKIX SubjectPublicKeyInfo) of ECDSA P-256/P-384, Ed25519 or RSA
    /// (2048-8192 bits). Exactly one PEM block; anything else (garbage, private keys,
    /// certificates, several blocks, unsupported curves) is an error.
    pub fn from_pem(pem: &[u8]) -> Result<CosignKey, KeyError> {
        let blocks = pem::parse_blocks(pem)?;
        let [block] = blocks.as_slice() else {
            return Err(KeyError::SeveralBlocks(blocks.len()));
        };
        if block.label != "PUBLIC KEY" {
            return Err(KeyError::NotPublicKey(block.label.clone()));
        }
        let key = PublicKey::from_spki(&block.contents)?;
        Ok(CosignKey {
            key,
            pem: pem::encode_block("PUBLIC KEY", &block.contents),
            der: block.contents.clone(),
        })
    }

    /// `sha256:<hex of the DER SubjectPublicKeyInfo>`.
    pub fn id(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.der)))
    }

    /// The PEM block, normalised (64-column base64, one trailing newline).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// `ecdsa-p256`, `ecdsa-p384`, `ed25519` or `rsa`.
    pub fn algorithm(&self) -> &'static str {
        match self.key.algorithm {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa { .. } => "rsa",
        }
    }

    /// Whether `signature` over `message` verifies the way cosign signs with this key: ECDSA
    /// DER over SHA-256 (P-384 also SHA-384), Ed25519 over the message, RSA PKCS#1 v1.5 or
    /// PSS over SHA-256.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key
            .cosign_algorithms()
            .iter()
            .any(|algorithm| self.key.verify(*algorithm, message, signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn accepts_every_supported_key_type() {
        for (key, algorithm) in [
            (testing::p256_key(), "ecdsa-p256"),
            (testing::p384_key(), "ecdsa-p384"),
            (testing::ed25519_key(), "ed25519"),
            (testing::rsa2048_key(), "rsa"),
        ] {
            let cosign = CosignKey::from_pem(key.public_pem().as_bytes()).expect("supported");
            assert_eq!(cosign.algorithm(), algorithm);
            assert_eq!(cosign.pem(), key.public_pem());
            assert_eq!(
                cosign.id(),
                format!("sha256:{}", hex::encode(Sha256::digest(key.public_der())))
            );
        }
    }

    #[test]
    fn normalises_the_pem() {
        let key = testing::p256_key();
        let messy = format!("\n\n  {}  \n", key.public_pem().replace('\n', "\r\n"));
        let cosign = CosignKey::from_pem(messy.as_bytes()).expect("whitespace is tolerated");
        assert_eq!(cosign.pem(), key.public_pem());
    }

    #[test]
    fn refuses_what_is_not_one_supported_public_key() {
        let key = testing::p256_key();
        let certificate = testing::self_signed_code_signing(&key);
        let p521 = pem::encode_block("PUBLIC KEY", &testing::P521_SPKI);
        let two = format!("{}{}", key.public_pem(), key.public_pem());
        let cases: Vec<(Vec<u8>, KeyError)> = vec![
            (b"garbage".to_vec(), KeyError::NotPem),
            (Vec::new(), KeyError::NotPem),
            (
                key.private_pem().into_bytes(),
                KeyError::NotPublicKey("PRIVATE KEY".into()),
            ),
            (
                certificate.pem().into_bytes(),
                KeyError::NotPublicKey("CERTIFICATE".into()),
            ),
            (two.into_bytes(), KeyError::SeveralBlocks(2)),
            (
                p521.into_bytes(),
                KeyError::UnsupportedKeyType("ECDSA P-521".into()),
            ),
            (vec![b'A'; crate::MAX_PEM_BYTES + 1], KeyError::TooLarge),
        ];
        for (input, expected) in cases {
            assert_eq!(CosignKey::from_pem(&input).unwrap_err(), expected);
        }
        let junk = pem::encode_block("PUBLIC KEY", b"\x30\x03\x02\x01\x01");
        assert!(matches!(
            CosignKey::from_pem(junk.as_bytes()),
            Err(KeyError::InvalidKey(_))
        ));
        assert_eq!(
            KeyError::UnsupportedKeyType("ECDSA P-521".into()).to_string(),
            "unsupported key type: ECDSA P-521"
        );
    }

    #[test]
    fn each_key_verifies_only_its_own_signatures() {
        for key in [
            testing::p256_key(),
            testing::p384_key(),
            testing::ed25519_key(),
            testing::rsa2048_key(),
        ] {
            let cosign = CosignKey::from_pem(key.public_pem().as_bytes()).expect("supported");
            let signature = key.sign_cosign(b"message");
            assert!(
                cosign.verifies(b"message", &signature),
                "{}",
                cosign.algorithm()
            );
            assert!(!cosign.verifies(b"massage", &signature));
            assert!(!cosign.verifies(b"message", b"short"));
        }
        let other = CosignKey::from_pem(testing::p256_key().public_pem().as_bytes()).unwrap();
        assert!(!other.verifies(b"message", &testing::p256_key().sign_cosign(b"message")));
    }
}
