//! The command-line arguments of `kagi verify` and `kagi log`, shared by `kagi` and
//! `kagi-verify` so both take the same flags and print the same help.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signed file.
    pub file: PathBuf,
    /// The signature ('kagi sign -o' output).
    #[arg(short = 's', long)]
    pub signature: PathBuf,
    /// raw, cms or sigstore (default: cms for a CMS SignedData, sigstore for a Sigstore
    /// bundle, else raw).
    #[arg(long)]
    pub format: Option<String>,
    /// sigstore (required, or --cert-identity-regexp): the identity (URI subjectAltName) the
    /// bundle's certificate must name, as 'kagi sign --format sigstore' printed it.
    #[arg(long)]
    pub cert_identity: Option<String>,
    /// sigstore: a regular expression the whole identity must match, instead of
    /// --cert-identity.
    #[arg(long, conflicts_with = "cert_identity")]
    pub cert_identity_regexp: Option<String>,
    /// sigstore (required): the issuer the bundle's certificate must name (kagi's public URL).
    #[arg(long)]
    pub cert_oidc_issuer: Option<String>,
    /// sigstore: kagi's Sigstore trusted root or client trust config (JSON), for the
    /// intermediate CA certificates (default: ask the service). Trust still ends at --ca-file.
    #[arg(long)]
    pub trust_root: Option<PathBuf>,
    /// raw: the signer's public key (PEM, from 'kagi key public NAME').
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// raw: the digest the signature was made with (default sha256).
    #[arg(long)]
    pub digest: Option<String>,
    /// raw RSA: pkcs1 (default) or pss.
    #[arg(long)]
    pub padding: Option<String>,
    /// cms and sigstore: kagi's code-signing root CA certificate (PEM), the only trust anchor
    /// (default: ./kagi-data/ca-root.pem, which a development 'kagi serve' writes; never the
    /// TLS CA). Get it with 'kagi ca show root -o root.pem' or from the public listener's
    /// /ca/root.crt, and check its fingerprint with the operator.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// cms and sigstore: a CRL (DER or PEM) to check revocation with instead of asking the
    /// CA's OCSP responder or CRL URL; repeat for each CA of the chain.
    #[arg(long = "crl")]
    pub crls: Vec<PathBuf>,
    /// cms and sigstore: do not check revocation (no OCSP, no CRL); the report says so.
    #[arg(long, conflicts_with = "crls")]
    pub offline: bool,
    /// The transparency log's verifier key to pin (default: ask the service).
    #[arg(long)]
    pub log_key: Option<String>,
    /// Fail when there is no log proof beside the signature.
    #[arg(long)]
    pub require_log: bool,
    #[command(flatten)]
    pub witnesses: WitnessArgs,
}

/// The witnesses whose cosignatures a checkpoint must carry before it is relied on.
#[derive(Debug, Clone, Default, Args)]
pub struct WitnessArgs {
    /// A witness the log's checkpoint must be cosigned by: its cosignature verifier key
    /// (NAME+HASH+BASE64, from the witness's operator); repeat for each witness. Without it,
    /// cosignatures are not checked, and a rolled-back or forked log is not detected here.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witness: Vec<String>,
    /// How many of the --witness keys must have cosigned the checkpoint (default: all).
    #[arg(long, value_name = "K", requires = "witness")]
    pub witness_quorum: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Fetch the newest signed checkpoint, check its signature, and save it.
    Checkpoint {
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// The log's verifier key to pin (default: ask the service, trust on first use).
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        witnesses: WitnessArgs,
    },
    /// Check the log: the newest checkpoint's signature; with an older saved checkpoint, that
    /// the log only grew since (RFC 9162 consistency proof); and, with an auditor token, the
    /// service's full recomputation of every entry.
    Verify {
        /// A checkpoint saved earlier with 'kagi log checkpoint -o FILE'.
        since: Option<PathBuf>,
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        witnesses: WitnessArgs,
    },
    /// Show entry N and check its inclusion proof against the newest checkpoint. Entries are
    /// private unless the service makes them public: this needs an auditor's token, or that of
    /// the identity the entry names.
    Entry {
        index: i64,
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        witnesses: WitnessArgs,
    },
}
