//! Tests of timestamp verification, with TimeStampTokens assembled from cms/der types and
//! signed by ring.

use cms::cert::x509::attr::Attribute;
use cms::cert::x509::spki::AlgorithmIdentifierOwned;
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::CmsVersion;
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignerInfos};
use der::asn1::{Any, GeneralizedTime, Int, SetOfVec};
use x509_tsp::{MessageImprint, TspVersion};

use super::*;
use crate::testing::{self, Role, TestCertificate, DAY, NOW};

/// What a test token stamps and how it may be broken.
pub(crate) struct TokenSpec<'a> {
    pub tsa: &'a TestCertificate,
    pub intermediates: Vec<&'a TestCertificate>,
    pub stamped: Vec<u8>,
    pub gen_time: i64,
    /// Replaces the signed messageDigest attribute.
    pub message_digest: Option<Vec<u8>>,
}

impl TokenSpec<'_> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let sha256 = || AlgorithmIdentifierOwned {
            oid: ID_SHA256,
            parameters: None,
        };
        let tst_info = TstInfo {
            version: TspVersion::V1,
            policy: ObjectIdentifier::new_unwrap("1.2.3.4.1"),
            message_imprint: MessageImprint {
                hash_algorithm: sha256(),
                hashed_message: OctetString::new(Sha256::digest(&self.stamped).to_vec())
                    .expect("octets"),
            },
            serial_number: Int::new(&[1]).expect("serial"),
            gen_time: GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(
                self.gen_time as u64,
            ))
            .expect("time"),
            accuracy: None,
            ordering: false,
            nonce: None,
            tsa: None,
            extensions: None,
        }
        .to_der()
        .expect("TSTInfo encodes");
        let digest = self
            .message_digest
            .clone()
            .unwrap_or_else(|| Sha256::digest(&tst_info).to_vec());
        let attribute = |oid, value: Any| Attribute {
            oid,
            values: SetOfVec::try_from(vec![value]).expect("one value"),
        };
        let signed_attributes = SetOfVec::try_from(vec![
            attribute(
                ID_CONTENT_TYPE,
                Any::encode_from(&ID_CT_TST_INFO).expect("oid"),
            ),
            attribute(
                ID_MESSAGE_DIGEST,
                Any::encode_from(&OctetString::new(digest).expect("octets")).expect("digest"),
            ),
        ])
        .expect("attributes");
        let signature = self
            .tsa
            .key
            .sign_cosign(&signed_attributes.to_der().expect("attributes encode"));
        let tsa_certificate = Certificate::from_der(&self.tsa.der).expect("TSA certificate");
        let signer = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tsa_certificate.tbs_certificate.issuer.clone(),
                serial_number: tsa_certificate.tbs_certificate.serial_number.clone(),
            }),
            digest_alg: sha256(),
            signed_attrs: Some(signed_attributes),
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA256,
                parameters: None,
            },
            signature: OctetString::new(signature).expect("signature"),
            unsigned_attrs: None,
        };
        let mut certificates = vec![CertificateChoices::Certificate(tsa_certificate)];
        for intermediate in &self.intermediates {
            certificates.push(CertificateChoices::Certificate(
                Certificate::from_der(&intermediate.der).expect("certificate"),
            ));
        }
        let signed_data = SignedData {
            version: CmsVersion::V3,
            digest_algorithms: SetOfVec::try_from(vec![sha256()]).expect("algorithms"),
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_CT_TST_INFO,
                econtent: Some(
                    Any::encode_from(&OctetString::new(tst_info).expect("octets"))
                        .expect("content"),
                ),
            },
            certificates: Some(CertificateSet(
                SetOfVec::try_from(certificates).expect("certificates"),
            )),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).expect("signer")),
        };
        ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(&signed_data).expect("signed data"),
        }
        .to_der()
        .expect("token encodes")
    }
}

/// A TSA root and a timeStamping leaf under it, valid for years around [`NOW`].
pub(crate) fn tsa_chain() -> (TestCertificate, TestCertificate) {
    let validity = (NOW - 3650 * DAY, NOW + 3650 * DAY);
    let root = testing::certificate(
        "tsa-root",
        testing::p256_key(),
        Role::Authority,
        validity,
        None,
    );
    let leaf = testing::certificate(
        "tsa",
        testing::p256_key(),
        Role::TimeStamping,
        validity,
        Some(&root),
    );
    (root, leaf)
}

#[test]
fn accepts_a_token_over_the_signature_from_a_trusted_tsa() {
    let (root, leaf) = tsa_chain();
    let spec = TokenSpec {
        tsa: &leaf,
        intermediates: vec![&root],
        stamped: b"signature".to_vec(),
        gen_time: NOW - DAY,
        message_digest: None,
    };
    assert_eq!(
        verify(&spec.encode(), b"signature", &[&root.der]),
        Ok(NOW - DAY)
    );
    let without_root = TokenSpec {
        intermediates: Vec::new(),
        ..spec
    };
    assert_eq!(
        verify(&without_root.encode(), b"signature", &[&root.der]),
        Ok(NOW - DAY)
    );
}

#[test]
fn refuses_tokens_that_do_not_verify() {
    let (root, leaf) = tsa_chain();
    let (other_root, _) = tsa_chain();
    let code_signer = testing::certificate(
        "not-a-tsa",
        testing::p256_key(),
        Role::CodeSigning,
        testing::current(),
        Some(&root),
    );
    let base = || TokenSpec {
        tsa: &leaf,
        intermediates: vec![&root],
        stamped: b"signature".to_vec(),
        gen_time: NOW,
        message_digest: None,
    };
    let untrusted_tsa =
        "the timestamp's certificate chain does not reach a certificate of the tsa trust store";
    let cases: Vec<(TokenSpec, &[u8], &str)> = vec![
        (base(), &other_root.der, untrusted_tsa),
        (
            TokenSpec {
                stamped: b"another".to_vec(),
                ..base()
            },
            &root.der,
            "the timestamp does not stamp this signature",
        ),
        (
            TokenSpec {
                message_digest: Some(vec![0; 32]),
                ..base()
            },
            &root.der,
            "the timestamp token's signed digest does not match its TSTInfo",
        ),
        (
            TokenSpec {
                tsa: &code_signer,
                ..base()
            },
            &root.der,
            untrusted_tsa,
        ),
        (
            TokenSpec {
                gen_time: NOW + 3651 * DAY,
                ..base()
            },
            &root.der,
            untrusted_tsa,
        ),
    ];
    for (spec, trusted, reason) in cases {
        assert_eq!(
            verify(&spec.encode(), b"signature", &[trusted]),
            Err(reason.to_string())
        );
    }
    assert_eq!(
        verify(&base().encode(), b"signature", &[]),
        Err(untrusted_tsa.to_string())
    );
    let token = base().encode();
    for length in (0..token.len()).step_by(5) {
        assert!(verify(&token[..length], b"signature", &[&root.der]).is_err());
    }
    assert_eq!(
        verify(b"\x30\x03\x06\x01\x00", b"signature", &[&root.der]),
        Err("the timestamp token is not a CMS SignedData TimeStampToken".to_string())
    );
}
