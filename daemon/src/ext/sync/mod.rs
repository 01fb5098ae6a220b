//! Sync: pull-through and periodic mirroring (issue 6).

pub mod auth;
pub mod content;
pub mod ondemand;
pub mod periodic;
pub mod registry;
pub mod upstream;
mod upstream_http;
mod upstream_request;
pub mod upstream_stats;
#[cfg(test)]
mod upstream_tests;
