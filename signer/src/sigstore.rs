//! Sigstore bundles (v0.3) made by kagi, and the trust root that verifies them: kagi plays
//! Fulcio (a short-lived certificate bound to the caller's identity, with an SCT), Rekor v1 (a
//! hashedrekord 0.0.1 entry in kagi's transparency log, its signed entry timestamp, an
//! inclusion proof and a signed checkpoint) and the timestamp authority, in one process, with
//! every key in hsm-core.
//!
//! The JSON follows the protobuf-specs JSON mapping (camelCase, 64-bit integers as strings,
//! bytes as base64). It is written with serde_json rather than the `sigstore` crate: the
//! shapes are small and fixed, and that crate would bring an HTTP and TUF stack into the
//! service's build. Sigstore's own client (sigstore-python) checks the result in the tests.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kagi_ca::fulcio::{self, IdentityRequest};
use kagi_ca::CaError;
use kagi_hsm_core::{
    Algorithm, DigestAlg, Hsm, HsmError, QuotaCharge, Session, SignRequest, Signed,
};
use serde_json::{json, Value};

use kagi_ca::service::Pki;

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const TRUSTED_ROOT_MEDIA_TYPE: &str =
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1";
pub const CLIENT_TRUST_CONFIG_MEDIA_TYPE: &str =
    "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json";
pub const SIGNING_CONFIG_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.signingconfig.v0.2+json";

/// A Sigstore signature: the bundle, the use it consumed, and whom its certificate names.
pub struct SigstoreSigned {
    pub bundle: Value,
    pub signed: Signed,
    pub identity_uri: String,
    pub issuer: String,
}

/// The identity a pipeline's Sigstore certificates name: a URI under kagi's public URL, so it
/// cannot collide with an identity another issuer vouches for.
pub fn identity_uri(public_url: &str, session: &Session) -> String {
    format!(
        "{}/identities/{}/{}",
        public_url.trim_end_matches('/'),
        session.partition(),
        session.name()
    )
}

/// The hashedrekord 0.0.1 body Rekor v1 would log for this signature, in kagi-tlog's RFC 8785
/// canonical form.
pub fn hashedrekord_body(digest: &[u8], signature: &[u8], cert_pem: &str) -> Vec<u8> {
    kagi_tlog::HashedRekord {
        digest_sha256: digest.to_vec(),
        signature: signature.to_vec(),
        certificate_pem: cert_pem.to_string(),
    }
    .canonical_bytes()
}

fn internal(e: impl std::fmt::Display) -> CaError {
    CaError::Internal(e.to_string())
}

/// The Sigstore side of the CA service: bundles, and the trust material clients verify them
/// with.
pub struct Sigstore<'a>(pub &'a Pki);

impl Sigstore<'_> {
    /// Sign a SHA-256 digest with key `label` for the caller in `session` and wrap it as a
    /// Sigstore bundle: a certificate for the key naming the caller (from CA `ca_name`), the
    /// signature, and its hashedrekord log entry with promise, proof and checkpoint.
    /// `timestamp`: also an RFC 3161 timestamp of the signature from CA `ca_name`'s TSA.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &self,
        hsm: &Hsm,
        session: &Session,
        label: &str,
        req: &SignRequest,
        quotas: &[QuotaCharge],
        detail: Value,
        ca_name: &str,
        timestamp: bool,
    ) -> Result<SigstoreSigned, CaError> {
        if req.digest_alg.is_some_and(|d| d != DigestAlg::Sha256) {
            return Err(CaError::BadRequest(
                "Sigstore bundles sign SHA-256 digests: send digest_alg \"sha256\"".into(),
            ));
        }
        if req.digest.len() != DigestAlg::Sha256.output_len() {
            return Err(HsmError::DigestLength {
                alg: DigestAlg::Sha256.as_str(),
                got: req.digest.len(),
                want: DigestAlg::Sha256.output_len(),
            }
            .into());
        }
        let info = hsm.key_info(session, label)?;
        // Refuse a key that cannot sign before a certificate is issued for it (the signature
        // itself still decides, atomically, if another request used the last use meanwhile).
        if let Some(limit) = info.usage_limit.filter(|l| info.usage_count >= *l) {
            return Err(HsmError::UsageLimitReached {
                label: label.to_string(),
                limit,
            }
            .into());
        }
        if !info.active {
            return Err(HsmError::KeyNotActive {
                label: label.to_string(),
                reason: "it is not active now (state or validity window)".into(),
            }
            .into());
        }
        if !matches!(info.algorithm, Algorithm::EcP256 | Algorithm::EcP384) {
            return Err(CaError::BadRequest(format!(
                "Sigstore clients verify ECDSA signatures over SHA-256 only: key '{label}' is {}; sign with an ec-p256 or ec-p384 key, or use format \"cms\"",
                info.algorithm.as_str()
            )));
        }
        let spki = {
            use der::Decode;
            x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(&info.public_key_der)?
        };
        let identity_uri = identity_uri(&self.0.urls.base, session);
        let issuer = self.0.urls.base.trim_end_matches('/').to_string();
        let ca = self.0.authority(hsm, ca_name)?;
        let ct = self.0.ct_signer(hsm, ca_name)?;
        let cert = fulcio::issue_identity_certificate(
            &ca,
            &ct,
            ca.signer.session(),
            &IdentityRequest {
                identity_uri: &identity_uri,
                issuer: &issuer,
                spki: &spki,
                lifetime_secs: fulcio::DEFAULT_LIFETIME_SECS,
            },
            &[],
        )?;
        let cert_pem = kagi_ca::x509::pem("CERTIFICATE", &cert.der)?;
        let req = SignRequest {
            digest_alg: Some(DigestAlg::Sha256),
            digest: req.digest.clone(),
            padding: req.padding,
        };
        let mut detail = detail;
        if let Some(d) = detail.as_object_mut() {
            d.insert("certificate_serial".into(), json!(cert.record.serial));
            d.insert("identity_uri".into(), json!(identity_uri));
        }
        let digest = req.digest.clone();
        let mut entry = |sig: &[u8]| -> kagi_hsm_core::Result<Vec<u8>> {
            Ok(hashedrekord_body(&digest, sig, &cert_pem))
        };
        let signed = hsm.sign_op(
            session,
            kagi_hsm_core::SignOp {
                quotas,
                audit: detail,
                staging: kagi_hsm_core::Staging::LogEntry(&mut entry),
                ..kagi_hsm_core::SignOp::digest(label, &req)
            },
        )?;
        let index = signed
            .tlog_index
            .ok_or_else(|| internal("the signature has no transparency-log entry"))?;
        let tlog_entry = self.rekor_entry(hsm, index)?;
        let mut material = json!({
            "certificate": {"rawBytes": B64.encode(&cert.der)},
            "tlogEntries": [tlog_entry],
        });
        if timestamp {
            let imprint = kagi_ca::hsm_key::digest(DigestAlg::Sha256, &signed.signature);
            let treq = kagi_ca::tsa::ParsedRequest::for_imprint(DigestAlg::Sha256, imprint)?;
            let resp = self.0.timestamp_token(hsm, ca_name, &treq)?;
            material["timestampVerificationData"] =
                json!({"rfc3161Timestamps": [{"signedTimestamp": B64.encode(resp)}]});
        }
        let bundle = json!({
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": material,
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode(&req.digest)},
                "signature": B64.encode(&signed.signature),
            },
        });
        Ok(SigstoreSigned {
            bundle,
            signed,
            identity_uri,
            issuer,
        })
    }

    /// Log entry `index` as a Rekor v1 TransparencyLogEntry: body, integration time, signed
    /// entry timestamp, and an inclusion proof in the newest checkpoint (signed for Rekor
    /// clients too).
    fn rekor_entry(&self, hsm: &Hsm, index: i64) -> Result<Value, CaError> {
        let promise = hsm.tlog_inclusion_promise(index)?;
        let checkpoint = hsm
            .tlog_checkpoint_for_rekor(None)?
            .ok_or_else(|| internal("the transparency log has no checkpoint"))?;
        let proof = hsm.tlog_inclusion_proof(index, checkpoint.size)?;
        let (_, _, root) = kagi_tlog::unverified_text(&checkpoint.note)
            .and_then(kagi_tlog::parse_checkpoint_body)
            .map_err(|e| internal(format!("the log's own checkpoint does not parse: {e}")))?;
        if !promise
            .body
            .starts_with(br#"{"apiVersion":"0.0.1","kind":"hashedrekord""#)
        {
            return Err(CaError::Conflict(format!(
                "transparency log entry {index} is not a Sigstore hashedrekord entry"
            )));
        }
        Ok(json!({
            "logIndex": index.to_string(),
            "logId": {"keyId": B64.encode(hsm.tlog_log_id()?)},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
            "integratedTime": promise.integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": B64.encode(&promise.signature)},
            "inclusionProof": {
                "logIndex": index.to_string(),
                "rootHash": B64.encode(root),
                "treeSize": checkpoint.size.to_string(),
                "hashes": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
                "checkpoint": {"envelope": checkpoint.note},
            },
            "canonicalizedBody": B64.encode(&promise.body),
        }))
    }

    /// The Sigstore trusted root of this kagi: CA `ca_name` and its chain as the certificate
    /// authority, the transparency log's key under `tlogs`, the CT signer's under `ctlogs`,
    /// and the TSA's certificate chain.
    pub fn trusted_root(&self, hsm: &Hsm, ca_name: &str) -> Result<Value, CaError> {
        let base = self.0.urls.base.trim_end_matches('/').to_string();
        let ca = self.0.authority(hsm, ca_name)?;
        let chain = self.0.chain(hsm, ca_name)?;
        let start = rfc3339(ca.not_before())?;
        let ct = self.0.ct_signer(hsm, ca_name)?;
        let tsa = self.0.tsa(hsm, ca_name)?;
        let mut tsa_chain = vec![tsa.cert_der.clone()];
        tsa_chain.extend(tsa.chain.iter().cloned());
        let certs = |c: &[Vec<u8>]| -> Vec<Value> {
            c.iter()
                .map(|d| json!({"rawBytes": B64.encode(d)}))
                .collect()
        };
        let log = |spki: &[u8], details: &str, id: &[u8]| {
            json!({
                "baseUrl": base,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": B64.encode(spki), "keyDetails": details, "validFor": {"start": start}},
                "logId": {"keyId": B64.encode(id)},
            })
        };
        Ok(json!({
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [log(&hsm.tlog_public_key_spki()?, "PKIX_ED25519", &hsm.tlog_log_id()?)],
            "certificateAuthorities": [{
                "subject": {"organization": "kagi", "commonName": ca_name},
                "uri": base,
                "certChain": {"certificates": certs(&chain)},
                "validFor": {"start": start},
            }],
            "ctlogs": [log(ct.signer.spki_der(), "PKIX_ECDSA_P256_SHA_256", &ct.log_id)],
            "timestampAuthorities": [{
                "subject": {"organization": "kagi", "commonName": format!("{ca_name} time-stamping")},
                "uri": format!("{base}/tsa"),
                "certChain": {"certificates": certs(&tsa_chain)},
                "validFor": {"start": start},
            }],
        }))
    }

    /// What `sigstore --trust-config` reads: the trusted root and where this kagi's services
    /// are (kagi signs through its own API; the URLs tell Sigstore clients which instance
    /// this is).
    pub fn client_trust_config(&self, hsm: &Hsm, ca_name: &str) -> Result<Value, CaError> {
        let base = self.0.urls.base.trim_end_matches('/').to_string();
        let ca = self.0.authority(hsm, ca_name)?;
        let start = rfc3339(ca.not_before())?;
        let service = |url: String| json!([{"url": url, "majorApiVersion": 1, "validFor": {"start": start}, "operator": "kagi"}]);
        Ok(json!({
            "mediaType": CLIENT_TRUST_CONFIG_MEDIA_TYPE,
            "trustedRoot": self.trusted_root(hsm, ca_name)?,
            "signingConfig": {
                "mediaType": SIGNING_CONFIG_MEDIA_TYPE,
                "caUrls": service(base.clone()),
                "oidcUrls": service(base.clone()),
                "rekorTlogUrls": service(base.clone()),
                "rekorTlogConfig": {"selector": "ANY"},
                "tsaUrls": service(format!("{base}/tsa")),
                "tsaConfig": {"selector": "ANY"},
            },
        }))
    }
}

fn rfc3339(unix: i64) -> Result<String, CaError> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).map_err(internal)?;
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashedrekord_body_is_canonical_json() {
        let body = hashedrekord_body(&[0xab; 32], b"sig", "PEM\n");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["spec"]["data"]["hash"]["value"], "ab".repeat(32));
        assert_eq!(v["spec"]["signature"]["content"], B64.encode(b"sig"));
        // serde_json (sorted maps) re-serializes canonical JSON byte for byte.
        assert_eq!(serde_json::to_vec(&v).unwrap(), body);
    }
}
