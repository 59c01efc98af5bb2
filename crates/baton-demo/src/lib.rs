//! The demo service used by Baton's quickstart, tests and benchmarks, and a load generator.
