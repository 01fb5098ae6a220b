//! berth-trust: verification of image signatures, pure and synchronous.
//!
//! Owns the trust material a user uploads (cosign public keys, notation trust-store
//! certificates) and the three verifiers the daemon calls on a signature it stores: cosign's
//! legacy `sha256-<hex>.sig` layers, cosign's sigstore bundles, and notation's JWS and COSE
//! envelopes. Rules:
//!
//! - No I/O, no clock, no async: the caller passes the bytes and the current time.
//! - Every input is attacker-controlled: nothing here panics on it, and every size allocated
//!   from it is bounded ([`MAX_ENVELOPE_BYTES`], [`MAX_CHAIN_CERTIFICATES`]).
//! - A failure is never an error value: it is an untrusted [`Verdict`] with a one-sentence
//!   reason a user can act on.
//! - No network: no transparency log, no revocation (OCSP/CRL) checks, as in zot.

mod certificate;
mod cosign;
mod encoding;
mod keys;
mod name;
pub(crate) mod notation;
mod pem;
mod timestamp;
mod verdict;

#[cfg(test)]
mod testing;

pub use certificate::{StoreType, TrustedCertificate, UnknownStoreType};
pub use cosign::{verify_cosign_bundle, verify_cosign_legacy};
pub use keys::{CosignKey, KeyError};
pub use name::go_string as pkix_name_string;
pub use notation::verify_notation;
pub use verdict::{Subject, Tool, TrustStore, Verdict};

/// The largest signature envelope, bundle or payload any verifier reads; larger ones are
/// untrusted without being parsed.
pub const MAX_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;

/// The most certificates a notation chain or a timestamp token may carry.
pub const MAX_CHAIN_CERTIFICATES: usize = 10;

/// The largest PEM text `from_pem` accepts (a chain of ten large certificates fits).
pub const MAX_PEM_BYTES: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    //! Every public entry point on random and mutated bytes: a verdict or an error, no panic.

    use super::*;

    /// xorshift64: deterministic, so a failure reproduces.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, seed: &[u8]) -> Vec<u8> {
            let mut bytes = seed.to_vec();
            match self.next() % 3 {
                0 => bytes = (0..self.next() % 512).map(|_| self.next() as u8).collect(),
                1 => bytes.truncate((self.next() as usize) % (bytes.len() + 1)),
                _ => {
                    for _ in 0..1 + self.next() % 8 {
                        if !bytes.is_empty() {
                            let position = (self.next() as usize) % bytes.len();
                            bytes[position] = self.next() as u8;
                        }
                    }
                }
            }
            bytes
        }
    }

    #[test]
    fn no_entry_point_panics_on_random_input() {
        let key = testing::p256_key();
        let chain = testing::chain(testing::p256_key(), testing::current());
        let store = TrustStore {
            cosign: vec![CosignKey::from_pem(key.public_pem().as_bytes()).expect("key")],
            certificates: vec![
                TrustedCertificate::from_der(StoreType::Ca, &chain.root.der).expect("root")
            ],
        };
        let subject = Subject {
            digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            media_type: "application/vnd.oci.image.manifest.v1+json",
            size: 1234,
        };
        let seeds: Vec<Vec<u8>> = vec![
            key.public_pem().into_bytes(),
            chain.leaf.pem().into_bytes(),
            chain.leaf.der.clone(),
            cosign::tests::legacy_payload(subject.digest),
            cosign::tests::bundle(
                &key,
                "application/vnd.in-toto+json",
                &cosign::tests::statement("00"),
            ),
            notation::test_envelopes::Spec::new("ES256", chain.ders())
                .sign(notation::test_envelopes::Format::Jws, &chain.leaf.key),
            notation::test_envelopes::Spec::new("ES256", chain.ders())
                .sign(notation::test_envelopes::Format::Cose, &chain.leaf.key),
        ];
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let input = random.bytes(&seeds[round % seeds.len()]);
            let text = String::from_utf8_lossy(&input);
            let _ = CosignKey::from_pem(&input);
            let _ = TrustedCertificate::from_pem(StoreType::Ca, &input);
            let _ = TrustedCertificate::from_der(StoreType::Tsa, &input);
            let verdicts = [
                verify_cosign_legacy(&input, &text, &subject, &store),
                verify_cosign_bundle(&input, &subject, &store),
                verify_notation(
                    "application/jose+json",
                    &input,
                    &subject,
                    &store,
                    testing::NOW,
                ),
                verify_notation("application/cose", &input, &subject, &store, testing::NOW),
            ];
            for verdict in verdicts {
                assert_eq!(verdict.trusted, verdict.reason.is_empty(), "{verdict:?}");
            }
            let _ = timestamp::verify(&input, b"signature", &[&chain.root.der]);
        }
    }
}
