//! Test material minted in memory: keys (ring, rcgen) and certificates (rcgen), so unit
//! tests need no files. The RSA keys are fixed (ring cannot generate RSA keys) and compiled in.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use time::OffsetDateTime;

use crate::pem;

/// "Now" in the tests: 2027-01-15.
pub(crate) const NOW: i64 = 1_800_000_000;
pub(crate) const DAY: i64 = 86_400;

pub(crate) const RSA2048_PKCS8_PEM: &str = include_str!("../testdata/rsa2048.pk8.pem");
pub(crate) const RSA3072_PKCS8_PEM: &str = include_str!("../testdata/rsa3072.pk8.pem");

/// A P-521 SubjectPublicKeyInfo: ring cannot verify with it.
pub(crate) const P521_SPKI: [u8; 158] = hex_literal(
    "30819b301006072a8648ce3d020106052b810400230381860004008ac37eb84ad97a74a81ca0de332c57b09\
     92bc2819281daa6c683bd80e44c7697bfa2aa028f8a5f8b0b40ae2c3b003475d679b1d02f81b2fea5652d8847\
     27b5715400e3636e96d9ba4dedd385bc229ab486c1bc984c1ad32c62f9a2e8dd30f626692dc2134cc4a5b42db\
     4705892ef09dd1583558e747137916a0c9ac8fa9e72208631a8",
);

const fn hex_literal<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut index = 0;
    let mut position = 0;
    while position < bytes.len() {
        let high = hex_value(bytes[position]);
        let low = hex_value(bytes[position + 1]);
        out[index] = high * 16 + low;
        index += 1;
        position += 2;
    }
    out
}

const fn hex_value(character: u8) -> u8 {
    match character {
        b'0'..=b'9' => character - b'0',
        b'a'..=b'f' => character - b'a' + 10,
        _ => panic!("not lowercase hex"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    P256,
    P384,
    Ed25519,
    Rsa,
}

/// A private key that signs the ways cosign, JWS and COSE do.
pub(crate) struct TestKey {
    pub kind: KeyKind,
    pkcs8: Vec<u8>,
    pub key_pair: KeyPair,
}

pub(crate) fn p256_key() -> TestKey {
    generated(KeyKind::P256, &rcgen::PKCS_ECDSA_P256_SHA256)
}

pub(crate) fn p384_key() -> TestKey {
    generated(KeyKind::P384, &rcgen::PKCS_ECDSA_P384_SHA384)
}

pub(crate) fn ed25519_key() -> TestKey {
    generated(KeyKind::Ed25519, &rcgen::PKCS_ED25519)
}

pub(crate) fn rsa2048_key() -> TestKey {
    rsa_key(RSA2048_PKCS8_PEM)
}

pub(crate) fn rsa3072_key() -> TestKey {
    rsa_key(RSA3072_PKCS8_PEM)
}

fn generated(kind: KeyKind, algorithm: &'static rcgen::SignatureAlgorithm) -> TestKey {
    let key_pair = KeyPair::generate_for(algorithm).expect("rcgen generates the key");
    TestKey {
        kind,
        pkcs8: key_pair.serialize_der(),
        key_pair,
    }
}

fn rsa_key(pkcs8_pem: &str) -> TestKey {
    let key_pair = KeyPair::from_pkcs8_pem_and_sign_algo(pkcs8_pem, &rcgen::PKCS_RSA_SHA256)
        .expect("the compiled-in RSA key parses");
    TestKey {
        kind: KeyKind::Rsa,
        pkcs8: key_pair.serialize_der(),
        key_pair,
    }
}

/// JWS/COSE signature algorithms the tests sign with.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Jose {
    Es256,
    Es384,
    Ps256,
    Ps384,
    Ps512,
}

impl TestKey {
    pub(crate) fn public_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.key_pair)
    }

    pub(crate) fn public_pem(&self) -> String {
        pem::encode_block("PUBLIC KEY", &self.public_der())
    }

    pub(crate) fn private_pem(&self) -> String {
        pem::encode_block("PRIVATE KEY", &self.pkcs8)
    }

    /// Signs the way `cosign sign --key` does for this kind of key.
    pub(crate) fn sign_cosign(&self, message: &[u8]) -> Vec<u8> {
        let random = SystemRandom::new();
        match self.kind {
            KeyKind::P256 => self.ecdsa(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, message),
            KeyKind::P384 => self.ecdsa(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, message),
            KeyKind::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8)
                .expect("Ed25519 PKCS#8")
                .sign(message)
                .as_ref()
                .to_vec(),
            KeyKind::Rsa => self.rsa(&signature::RSA_PKCS1_SHA256, message, &random),
        }
    }

    /// Signs the way a JWS or COSE envelope does.
    pub(crate) fn sign_jose(&self, algorithm: Jose, message: &[u8]) -> Vec<u8> {
        let random = SystemRandom::new();
        match algorithm {
            Jose::Es256 => self.ecdsa(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, message),
            Jose::Es384 => self.ecdsa(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, message),
            Jose::Ps256 => self.rsa(&signature::RSA_PSS_SHA256, message, &random),
            Jose::Ps384 => self.rsa(&signature::RSA_PSS_SHA384, message, &random),
            Jose::Ps512 => self.rsa(&signature::RSA_PSS_SHA512, message, &random),
        }
    }

    fn ecdsa(
        &self,
        algorithm: &'static signature::EcdsaSigningAlgorithm,
        message: &[u8],
    ) -> Vec<u8> {
        let random = SystemRandom::new();
        EcdsaKeyPair::from_pkcs8(algorithm, &self.pkcs8, &random)
            .expect("the algorithm fits the key")
            .sign(&random, message)
            .expect("ECDSA signs")
            .as_ref()
            .to_vec()
    }

    fn rsa(
        &self,
        padding: &'static dyn signature::RsaEncoding,
        message: &[u8],
        random: &SystemRandom,
    ) -> Vec<u8> {
        let key_pair = RsaKeyPair::from_pkcs8(&self.pkcs8).expect("RSA PKCS#8");
        let mut out = vec![0u8; key_pair.public().modulus_len()];
        key_pair
            .sign(padding, random, message, &mut out)
            .expect("RSA signs");
        out
    }
}

/// What a test certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A CA: keyCertSign, basicConstraints CA.
    Authority,
    /// A code-signing leaf: digitalSignature, EKU codeSigning.
    CodeSigning,
    /// A timestamping leaf: digitalSignature, EKU timeStamping.
    TimeStamping,
    /// A leaf with EKU serverAuth only.
    ServerAuth,
}

/// A certificate with its key and parameters, able to issue further certificates.
pub(crate) struct TestCertificate {
    pub der: Vec<u8>,
    pub key: TestKey,
    params: CertificateParams,
}

impl TestCertificate {
    pub(crate) fn pem(&self) -> String {
        pem::encode_block("CERTIFICATE", &self.der)
    }
}

/// Mints a certificate named `common_name`, valid from `not_before` to `not_after` (unix),
/// self-signed when `issuer` is None.
pub(crate) fn certificate(
    common_name: &str,
    key: TestKey,
    role: Role,
    validity: (i64, i64),
    issuer: Option<&TestCertificate>,
) -> TestCertificate {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "US");
    name.push(DnType::OrganizationName, "Example");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.not_before = OffsetDateTime::from_unix_timestamp(validity.0).expect("valid time");
    params.not_after = OffsetDateTime::from_unix_timestamp(validity.1).expect("valid time");
    match role {
        Role::Authority => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        Role::CodeSigning | Role::TimeStamping | Role::ServerAuth => {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![match role {
                Role::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
                Role::TimeStamping => ExtendedKeyUsagePurpose::TimeStamping,
                _ => ExtendedKeyUsagePurpose::ServerAuth,
            }];
        }
    }
    let certificate = match issuer {
        None => params.self_signed(&key.key_pair),
        Some(issuer) => params.signed_by(
            &key.key_pair,
            &Issuer::from_params(&issuer.params, &issuer.key.key_pair),
        ),
    }
    .expect("rcgen signs the certificate");
    TestCertificate {
        der: certificate.der().to_vec(),
        key,
        params,
    }
}

/// The usual validity: a year either side of [`NOW`].
pub(crate) fn current() -> (i64, i64) {
    (NOW - 365 * DAY, NOW + 365 * DAY)
}

/// What `notation cert generate-test` makes: a self-signed code-signing certificate.
pub(crate) fn self_signed_code_signing(key: &TestKey) -> TestCertificate {
    let copy = TestKey {
        kind: key.kind,
        pkcs8: key.pkcs8.clone(),
        key_pair: KeyPair::from_der_and_sign_algo(
            &rustls_pki_types_pkcs8(&key.pkcs8),
            key.key_pair.algorithm(),
        )
        .expect("the same key"),
    };
    certificate("generate-test", copy, Role::CodeSigning, current(), None)
}

fn rustls_pki_types_pkcs8(pkcs8: &[u8]) -> rustls_pki_types::PrivateKeyDer<'static> {
    rustls_pki_types::PrivateKeyDer::Pkcs8(pkcs8.to_vec().into())
}

/// A root CA, an intermediate CA and a code-signing leaf under them, all currently valid.
pub(crate) struct TestChain {
    pub root: TestCertificate,
    pub intermediate: TestCertificate,
    pub leaf: TestCertificate,
}

impl TestChain {
    /// The chain as an envelope carries it: leaf first, root last.
    pub(crate) fn ders(&self) -> Vec<Vec<u8>> {
        vec![
            self.leaf.der.clone(),
            self.intermediate.der.clone(),
            self.root.der.clone(),
        ]
    }
}

pub(crate) fn chain(leaf_key: TestKey, leaf_validity: (i64, i64)) -> TestChain {
    let root = certificate("root", p256_key(), Role::Authority, current(), None);
    let intermediate = certificate(
        "intermediate",
        p256_key(),
        Role::Authority,
        current(),
        Some(&root),
    );
    let leaf = certificate(
        "signer",
        leaf_key,
        Role::CodeSigning,
        leaf_validity,
        Some(&intermediate),
    );
    TestChain {
        root,
        intermediate,
        leaf,
    }
}
