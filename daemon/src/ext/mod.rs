//! The extensions, one folder each: sync (pull-through and periodic mirroring), scrub
//! (periodic verification and its report), lint (mandatory annotations) and metrics
//! (Prometheus exposition).

pub mod lint;
pub mod metrics;
pub mod scrub;
pub mod sync;
