//! RFC 3161 timestamp countersignatures of notation signatures.

/// Verifies a DER TimeStampToken over `signature` against the `tsa` trust-store certificates
/// and returns its genTime (unix seconds).
pub(crate) fn verify(
    _token: &[u8],
    _signature: &[u8],
    _tsa_certificates: &[&[u8]],
) -> Result<i64, String> {
    Err("timestamp countersignatures are not verified".into())
}
