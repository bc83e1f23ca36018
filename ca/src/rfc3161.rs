//! The ASN.1 of RFC 3161 lives in kagi-x509, which the verifier shares; re-exported here so the
//! TSA's and the CMS checker's paths stay `kagi_ca::rfc3161::*` and `crate::rfc3161::*`.

pub use kagi_x509::rfc3161::*;
