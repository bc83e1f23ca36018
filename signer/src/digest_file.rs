//! Hashing a file for `kagi sign` and `kagi verify`: the streaming hasher is kagi-verify's, so
//! signing and verifying hash a file with the same code.

pub use kagi_verify::digest_file::digest_file;
