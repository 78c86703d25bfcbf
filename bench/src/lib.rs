//! Benchmarks of kfn: see docs/benchmarks.md and `scripts/bench`.
