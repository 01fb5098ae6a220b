//! berth's benchmarks: `berth-bench`, a zb-style load generator for any OCI registry
//! (client.rs, data.rs, workloads.rs, stats.rs, report.rs), the side-by-side comparison with
//! CNCF Distribution (compare.rs, procs.rs), the pull-through mirror comparison with
//! Distribution's proxy mode (mirror.rs), the search benchmark over a generated catalogue
//! (catalogue.rs, search.rs), the web UI's pages over the same catalogue (ui.rs), both run
//! against a berth they start (daemon.rs) with timed requests (timed.rs), and the machine
//! limits it reports beside the figures (limits.rs), and what HTTPS costs against plain HTTP and
//! Distribution over HTTPS (tls.rs). The criterion micro-benchmarks are in `benches/`.

pub mod catalogue;
pub mod client;
pub mod compare;
pub mod daemon;
pub mod data;
pub mod limits;
pub mod mirror;
pub mod procs;
pub mod report;
pub mod search;
pub mod shared;
pub mod stats;
pub mod timed;
pub mod tls;
pub mod ui;
pub mod workloads;
