//! Benchmarks live here (criterion benches and the load harness arrive with the performance work).
