//! cosign
pub fn verify_cosign_bundle() {}
pub fn verify_cosign_legacy() {}
