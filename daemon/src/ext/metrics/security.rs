//! The security families of the exposition: the trust extension's verdicts and the login
//! backoff's counters (present while those are on).
use std::sync::atomic::Ordering::Relaxed;

use super::expose::{Exposition, Kind};

/// The trust extension's families (present while it verifies anything).
pub(super) fn trust_families(out: &mut Exposition, trust: &crate::ext::trust::Trust) {
    let name = "berth_trust_signatures_verified_total";
    out.family(
        name,
        Kind::Counter,
        "Signature layers judged (on push, sync, trust-store changes and passes), by tool and result.",
    );
    for (tool, result, count) in trust.counts.verified() {
        out.count(name, &[("tool", tool), ("result", result)], count);
    }
    let name = "berth_trust_passes_total";
    out.family(name, Kind::Counter, "Re-verification passes finished.");
    out.count(name, &[], trust.counts.passes.load(Relaxed));
    let name = "berth_trust_store_entries";
    out.family(
        name,
        Kind::Gauge,
        "Uploaded cosign keys and notation certificates, by kind.",
    );
    let loaded = trust.loaded();
    for kind in berth_storage::trust::TrustKind::ALL {
        let count = loaded.materials.iter().filter(|m| m.kind == kind).count();
        out.count(name, &[("kind", kind.as_str())], count as u64);
    }
}

/// The login backoff's families (present with htpasswd).
pub(super) fn auth_families(out: &mut Exposition, auth: &crate::auth::htpasswd::Authenticator) {
    let backoff = &auth.backoff;
    for (name, help, count) in [
        (
            "berth_auth_failed_logins_total",
            "Logins whose password check failed (Basic credentials and the UI's form).",
            backoff.failed.load(Relaxed),
        ),
        (
            "berth_auth_throttled_logins_total",
            "Logins refused with 429 after repeated failures (login backoff).",
            backoff.throttled.load(Relaxed),
        ),
    ] {
        out.family(name, Kind::Counter, help);
        out.count(name, &[], count);
    }
}
