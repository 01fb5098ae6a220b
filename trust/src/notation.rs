//! notation
pub fn verify_notation() {}
