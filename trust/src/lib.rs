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
pub use notation::verify_notation;
pub use verdict::{Subject, Tool, TrustStore, Verdict};

/// The largest signature envelope, bundle or payload any verifier reads; larger ones are
/// untrusted without being parsed.
pub const MAX_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;

/// The most certificates a notation chain or a timestamp token may carry.
pub const MAX_CHAIN_CERTIFICATES: usize = 10;

/// The largest PEM text `from_pem` accepts (a chain of ten large certificates fits).
pub const MAX_PEM_BYTES: usize = 256 * 1024;
