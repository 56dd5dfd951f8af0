//! Benchmarks of llamette (see issue 3); not yet written.
