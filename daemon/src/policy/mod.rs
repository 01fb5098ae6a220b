//! Storage policies berth applies to every repository (not zot extensions): garbage
//! collection and its retention rules, per-namespace quotas, and immutable tags. Each one is
//! compiled from its `storage.*` section at start; the periodic GC pass is started by the
//! composition root (serve.rs), the others are asked by the API before a commit.

pub mod cors;
pub mod gc;
pub mod quota;
pub mod ratelimit;
pub mod retention;
pub mod tag_policy;
