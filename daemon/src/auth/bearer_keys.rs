//! The keys that verify bearer tokens (`http.auth.bearer.cert`): PEM certificates and
//! `PUBLIC KEY` blocks read with x509-parser, each key's kind (which decides the algorithms it
//! allows) and the IDs a token's `kid` may name it by (libtrust ID, RFC 7638 thumbprint).
//! auth/bearer.rs says which keys are usable and why.

use std::path::Path;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::{FromDer as _, SubjectPublicKeyInfo};
use x509_parser::public_key::PublicKey;

/// Largest `cert` file read (a bundle of keys is a few KiB).
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Most keys in one `cert` file (each one may be tried for a token without `kid`).
pub const MAX_KEYS: usize = 64;

const OID_EC_P256: &str = "1.2.840.10045.3.1.7";
const OID_EC_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// The kind of a verifying key, which decides the algorithms it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// The JWS algorithms a key of this kind verifies.
    pub fn algorithms(self) -> &'static [Algorithm] {
        match self {
            KeyKind::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            KeyKind::P256 => &[Algorithm::ES256],
            KeyKind::P384 => &[Algorithm::ES384],
            KeyKind::Ed25519 => &[Algorithm::EdDSA],
        }
    }
}

/// One verifying key and the IDs a token's `kid` may name it by.
pub(super) struct TokenKey {
    pub(super) kind: KeyKind,
    pub(super) decoding: DecodingKey,
    libtrust_id: String,
    thumbprint: String,
}

/// The keys that verify tokens (the `cert` file).
pub struct TokenKeys {
    pub(super) keys: Vec<TokenKey>,
}

impl TokenKeys {
    /// Reads the `cert` file: PEM certificates and `PUBLIC KEY` blocks. Errors name the file,
    /// never the key.
    pub fn load(path: &Path) -> Result<TokenKeys, String> {
        let name = path.display();
        let size = std::fs::metadata(path)
            .map_err(|error| format!("cannot read {name}: {error}"))?
            .len();
        if size > MAX_KEY_FILE_BYTES {
            return Err(format!(
                "{name} is larger than {MAX_KEY_FILE_BYTES} bytes; it should hold PEM \
                 certificates or public keys"
            ));
        }
        let text = std::fs::read(path).map_err(|error| format!("cannot read {name}: {error}"))?;
        TokenKeys::parse(&text).map_err(|error| format!("{name}: {error}"))
    }

    /// The keys of PEM text (see [`TokenKeys::load`]).
    pub fn parse(pem: &[u8]) -> Result<TokenKeys, String> {
        let mut keys = Vec::new();
        for (index, block) in x509_parser::pem::Pem::iter_from_buffer(pem).enumerate() {
            let number = index + 1;
            let block = block.map_err(|_| format!("PEM block {number} is malformed"))?;
            let key = match block.label.as_str() {
                "CERTIFICATE" => {
                    let (_, certificate) = x509_parser::parse_x509_certificate(&block.contents)
                        .map_err(|_| format!("certificate {number} cannot be parsed"))?;
                    TokenKey::of(certificate.public_key())
                }
                "PUBLIC KEY" => {
                    let (_, spki) = SubjectPublicKeyInfo::from_der(&block.contents)
                        .map_err(|_| format!("public key {number} cannot be parsed"))?;
                    TokenKey::of(&spki)
                }
                other => Err(format!(
                    "PEM block {number} is a {other:?}; only CERTIFICATE and PUBLIC KEY blocks \
                     are read"
                )),
            };
            keys.push(key.map_err(|error| format!("PEM block {number}: {error}"))?);
            if keys.len() > MAX_KEYS {
                return Err(format!("more than {MAX_KEYS} keys"));
            }
        }
        if keys.is_empty() {
            return Err("no PEM certificate or public key found".to_owned());
        }
        Ok(TokenKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Each key's kind, libtrust ID and JWK thumbprint, in file order.
    pub fn describe(&self) -> Vec<(KeyKind, &str, &str)> {
        self.keys
            .iter()
            .map(|key| (key.kind, key.libtrust_id.as_str(), key.thumbprint.as_str()))
            .collect()
    }
}

impl TokenKey {
    fn of(spki: &SubjectPublicKeyInfo<'_>) -> Result<TokenKey, String> {
        let algorithm = spki.algorithm.algorithm.to_id_string();
        let bits: &[u8] = &spki.subject_public_key.data;
        let (kind, decoding, jwk) = match algorithm.as_str() {
            OID_RSA_ENCRYPTION => {
                let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                    return Err("the RSA key cannot be parsed".to_owned());
                };
                if rsa.key_size() < MIN_RSA_BITS {
                    return Err(format!(
                        "the RSA key has {} bits; at least {MIN_RSA_BITS} are needed",
                        rsa.key_size()
                    ));
                }
                let jwk = format!(
                    r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                    base64url(strip_zeros(rsa.exponent)),
                    base64url(strip_zeros(rsa.modulus))
                );
                (KeyKind::Rsa, DecodingKey::from_rsa_der(bits), jwk)
            }
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|parameters| parameters.as_oid().ok())
                    .map(|oid| oid.to_id_string());
                let (kind, crv, coordinate) = match curve.as_deref() {
                    Some(OID_EC_P256) => (KeyKind::P256, "P-256", 32),
                    Some(OID_EC_P384) => (KeyKind::P384, "P-384", 48),
                    _ => return Err("ECDSA keys must be on P-256 or P-384".to_owned()),
                };
                // ring verifies uncompressed points only: 0x04 || x || y.
                if bits.len() != 1 + 2 * coordinate || bits[0] != 4 {
                    return Err("the ECDSA key is not an uncompressed point".to_owned());
                }
                let (x, y) = bits[1..].split_at(coordinate);
                let jwk = format!(
                    r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                    base64url(x),
                    base64url(y)
                );
                (kind, DecodingKey::from_ec_der(bits), jwk)
            }
            OID_ED25519 => {
                if bits.len() != 32 {
                    return Err("the Ed25519 key is not 32 bytes".to_owned());
                }
                let jwk = format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    base64url(bits)
                );
                (KeyKind::Ed25519, DecodingKey::from_ed_der(bits), jwk)
            }
            other => {
                return Err(format!(
                    "key algorithm {other} is not supported (RSA, ECDSA P-256/P-384 or Ed25519)"
                ))
            }
        };
        Ok(TokenKey {
            kind,
            decoding,
            libtrust_id: libtrust_id(spki.raw),
            thumbprint: base64url(&Sha256::digest(jwk.as_bytes())),
        })
    }

    pub(super) fn is_named(&self, kid: &str) -> bool {
        self.libtrust_id == kid || self.thumbprint == kid
    }
}

/// The libtrust key ID of a DER SubjectPublicKeyInfo (what Distribution's token servers put in
/// `kid`): base32 of the first 240 bits of its SHA-256, in groups of 4 joined by `:`.
pub fn libtrust_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = Sha256::digest(spki_der);
    // 30 bytes = 48 base32 digits of 5 bits each, no padding.
    let mut digits = Vec::with_capacity(48);
    for chunk in hash[..30].chunks(5) {
        let value = chunk
            .iter()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
        for shift in (0..8).rev() {
            digits.push(ALPHABET[((value >> (shift * 5)) & 31) as usize]);
        }
    }
    digits
        .chunks(4)
        .map(|group| std::str::from_utf8(group).expect("base32 digits are ASCII"))
        .collect::<Vec<_>>()
        .join(":")
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    &bytes[first..]
}
