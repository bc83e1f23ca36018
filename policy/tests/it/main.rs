//! The policy crate's integration tests in one test binary.

mod decisions;
mod document;
