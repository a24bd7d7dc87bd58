//! Input generators for the benchmarks.
