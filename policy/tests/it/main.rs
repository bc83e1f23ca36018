//! The policy crate's integration tests in one test binary.

mod bootstrap;
mod decisions;
mod document;
