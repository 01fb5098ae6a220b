//! Benchmarks live in benches/benches; the load tool comes with issue 3.
