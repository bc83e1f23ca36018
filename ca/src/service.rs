//! The certificate authority as the service runs it: loaded CAs, profiles, the public URLs
//! certificates point to, CRLs kept fresh, OCSP answers signed by a delegated responder per CA,
//! and the development instance's own hierarchy.

use crate::hsm_key::HsmSigner;
use crate::ocsp::{self, OcspResponseStatus, SingleStatus, Status};
use crate::{Authority, CaError, CaSpec, IssueOptions, Issued, Profile, Profiles, PublicUrls};
use kagi_hsm_core::{Algorithm, Gated, Hsm, HsmError, QuotaCharge, Session};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use x509_cert::name::Name;

/// The profile of signing keys' certificates (CMS, timestamps of code signatures).
pub const SIGNING_PROFILE: &str = "code-signing";

/// The development instance's hierarchy: a root, and intermediates for devices, code signing
/// and kagi's own services (its TLS certificate).
pub const DEV_ROOT: &str = "root";
pub const DEV_DEVICES: &str = "devices";
pub const DEV_CODE_SIGNING: &str = "code-signing";
pub const DEV_SERVICES: &str = "services";

/// A CRL is regenerated when this much of its lifetime is gone (and on every revocation).
const CRL_REFRESH_SECS: i64 = 86_400;
/// Responder certificates are renewed this long before they expire.
const RESPONDER_RENEW_SECS: i64 = 7 * 86_400;
/// How long an OCSP answer is good for (nextUpdate).
const OCSP_VALIDITY_SECS: i64 = 3_600;
/// A signed OCSP answer is served again until this much of its validity is gone, then signed
/// anew (RFC 5019 §6.2: pre-produced responses), so a flood of requests signs nothing new and
/// a client that caches until nextUpdate always gets at least half an hour.
const OCSP_REUSE_SECS: i64 = OCSP_VALIDITY_SECS / 2;
/// Answers kept at most; each is a few hundred bytes. Past it, stale ones go first.
const OCSP_CACHE_MAX: usize = 100_000;

/// A signed OCSP answer kept for reuse, for one CertID in one status.
struct CachedOcsp {
    der: Vec<u8>,
    this_update: i64,
    /// The responder certificate that signed it: a renewed responder signs afresh.
    responder: Vec<u8>,
}

/// What a cached answer is for: CA, the CertID as the client sent it (echoed in the answer),
/// and the status it states. The status is read from the store on every request, so a
/// revocation, made by this process or another, is a different key and never meets an answer
/// signed before it.
type OcspKey = (String, Vec<u8>, String);

/// A signing key's certificate and the CA certificates above it, issuing CA first.
pub struct KeyCertificate {
    pub record: kagi_hsm_core::records::ca::CertificateRecord,
    pub chain: Vec<Vec<u8>>,
}

/// kagi's TSA policy unless the service is given another (`Pki::with_tsa_policy`).
pub const TSA_POLICY: const_oid::ObjectIdentifier = crate::tsa::DEFAULT_POLICY;

/// The services that sign with a key of kagi's own, certified by a CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Service {
    /// The delegated OCSP responder: key `ca.<CA>.ocsp`, profile `ocsp-signing`.
    Ocsp,
    /// The time-stamping authority: key `ca.<CA>.tsa`, profile `timestamping`.
    Tsa,
}

impl Service {
    fn suffix(self) -> &'static str {
        match self {
            Service::Ocsp => "ocsp",
            Service::Tsa => "tsa",
        }
    }

    fn profile(self) -> &'static str {
        match self {
            Service::Ocsp => "ocsp-signing",
            Service::Tsa => "timestamping",
        }
    }

    fn subject(self, ca_name: &str) -> String {
        match self {
            Service::Ocsp => format!("CN=kagi OCSP responder for {ca_name},O=kagi"),
            Service::Tsa => format!("CN=kagi Time-Stamping Authority {ca_name},O=kagi"),
        }
    }
}

/// A service's key, its certificate, and the chain above it (issuing CA first).
pub struct ServiceKey {
    signer: HsmSigner,
    pub cert_der: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    not_after: i64,
}

/// A profile as `GET /profiles` shows it: built in, or set by an officer (who, when, and the
/// audit record that holds it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProfileEntry {
    #[serde(flatten)]
    pub spec: crate::profile::ProfileSpec,
    pub builtin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<i64>,
}

/// What setting a profile did.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    pub entry: ProfileEntry,
    /// It replaced a custom profile of the same name.
    pub replaced: bool,
}

/// A custom profile compiled, with the audit record it was compiled from.
struct CompiledCustom {
    audit_seq: i64,
    profile: Arc<Profile>,
}

pub struct Pki {
    /// The built-in profiles (`profiles/builtin.toml`): the defaults every partition has.
    pub builtin: Profiles,
    builtin_arcs: HashMap<String, Arc<Profile>>,
    /// Custom profiles compiled, by (partition, name); a newer audit record recompiles.
    custom: Mutex<HashMap<(String, String), CompiledCustom>>,
    pub urls: PublicUrls,
    /// Loaded CAs by name, with the certificate they were loaded from.
    authorities: Mutex<HashMap<String, Arc<Authority>>>,
    /// OCSP responders and TSAs by CA name.
    services: Mutex<HashMap<(String, Service), Arc<ServiceKey>>>,
    /// CT signers (Sigstore SCTs) by CA name.
    pub(crate) cts: Mutex<HashMap<String, Arc<crate::sct::CtSigner>>>,
    /// Held while a service key's certificate is made or renewed.
    service_making: Mutex<()>,
    /// Signed OCSP answers for reuse.
    ocsp_cache: Mutex<HashMap<OcspKey, CachedOcsp>>,
    /// The policy time-stamp tokens name when the request asks for none.
    tsa_policy: const_oid::ObjectIdentifier,
    /// Held while an answer is signed, so a burst of requests for one CertID signs it once.
    ocsp_signing: Mutex<()>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pki {
    /// CA `ca_name`'s CT signer (key `ca.<ca>.ct`, ECDSA P-256), made on first use.
    pub fn ct_signer(
        &self,
        hsm: &Hsm,
        ca_name: &str,
    ) -> Result<Arc<crate::sct::CtSigner>, CaError> {
        if let Some(ct) = lock(&self.cts).get(ca_name) {
            return Ok(ct.clone());
        }
        let ca = self.authority(hsm, ca_name)?;
        let signer = ca_service_signer(hsm, &ca, "ct", Algorithm::EcP256)?
            .with_audit(serde_json::json!({"purpose": "ct_sct", "ca": ca_name}));
        let ct = Arc::new(crate::sct::CtSigner::new(signer)?);
        lock(&self.cts).insert(ca_name.to_string(), ct.clone());
        Ok(ct)
    }

    pub fn new(public_url: &str) -> Result<Pki, CaError> {
        let builtin = Profiles::builtin()?;
        let builtin_arcs = builtin
            .iter()
            .map(|p| (p.name().to_string(), Arc::new(p.clone())))
            .collect();
        Ok(Pki {
            builtin,
            builtin_arcs,
            custom: Mutex::new(HashMap::new()),
            urls: PublicUrls::new(public_url),
            authorities: Mutex::new(HashMap::new()),
            services: Mutex::new(HashMap::new()),
            cts: Mutex::new(HashMap::new()),
            service_making: Mutex::new(()),
            ocsp_cache: Mutex::new(HashMap::new()),
            ocsp_signing: Mutex::new(()),
            tsa_policy: TSA_POLICY,
        })
    }

    /// The TSA names `policy` in its tokens (an organisation's own arc) instead of [`TSA_POLICY`].
    pub fn with_tsa_policy(mut self, policy: const_oid::ObjectIdentifier) -> Pki {
        self.tsa_policy = policy;
        self
    }

    /// CA `name`, loaded with the service's own session. The stored row is read (and its MAC
    /// checked) on every call, so a revocation made by another process applies at once.
    pub fn authority(&self, hsm: &Hsm, name: &str) -> Result<Arc<Authority>, CaError> {
        let record = hsm.ca(name)?;
        if let Some(a) = lock(&self.authorities).get(name) {
            if a.record.cert_der == record.cert_der && a.record.revoked_at == record.revoked_at {
                return Ok(a.clone());
            }
        }
        let session = hsm.service_session(&record.partition);
        let a = Arc::new(Authority::load(hsm, &session, name)?);
        lock(&self.authorities).insert(name.to_string(), a.clone());
        Ok(a)
    }

    /// Issue through CA `ca` for the caller in `session`.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &self,
        hsm: &Hsm,
        session: &Session,
        ca_name: &str,
        profile: &str,
        csr: &[u8],
        opts: &IssueOptions,
        quotas: &[QuotaCharge],
        audit: serde_json::Value,
    ) -> Result<Issued, CaError> {
        let der = crate::csr::decode_csr_bytes(csr)?;
        let csr = crate::csr::parse(&der)?;
        self.issue_parsed(hsm, session, ca_name, profile, &csr, opts, quotas, audit)
    }

    /// [`Pki::issue`] for a CSR the caller already parsed and verified (to show it to the
    /// policy first).
    #[allow(clippy::too_many_arguments)]
    pub fn issue_parsed(
        &self,
        hsm: &Hsm,
        session: &Session,
        ca_name: &str,
        profile: &str,
        csr: &crate::csr::Csr,
        opts: &IssueOptions,
        quotas: &[QuotaCharge],
        audit: serde_json::Value,
    ) -> Result<Issued, CaError> {
        let profile = self.profile(hsm, session.partition(), profile)?;
        let ca = self.authority(hsm, ca_name)?;
        if ca.record.partition != session.partition() {
            return Err(CaError::BadRequest(format!(
                "CA '{ca_name}' lives in partition '{}': use a credential of that partition",
                ca.record.partition
            )));
        }
        crate::issue::issue_parsed(&ca, session, &profile, csr, opts, &self.urls, quotas, audit)
    }

    /// Profile `name` as issuance in `partition` uses it: a built-in one, else the partition's
    /// custom profile as the newest verified audit record states it (never a table row).
    pub fn profile(&self, hsm: &Hsm, partition: &str, name: &str) -> Result<Arc<Profile>, CaError> {
        if let Some(p) = self.builtin_arcs.get(name) {
            return Ok(p.clone());
        }
        let stored = hsm
            .stored_profiles(partition)?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| CaError::UnknownProfile(name.chars().take(64).collect()))?;
        let key = (partition.to_string(), name.to_string());
        if let Some(c) = lock(&self.custom).get(&key) {
            if c.audit_seq == stored.audit_seq {
                return Ok(c.profile.clone());
            }
        }
        let profile = Arc::new(compile_stored(&stored)?);
        lock(&self.custom).insert(
            key,
            CompiledCustom {
                audit_seq: stored.audit_seq,
                profile: profile.clone(),
            },
        );
        Ok(profile)
    }

    /// The built-in profiles, then `partition`'s custom ones.
    pub fn list_profiles(&self, hsm: &Hsm, partition: &str) -> Result<Vec<ProfileEntry>, CaError> {
        let mut out: Vec<ProfileEntry> = self
            .builtin
            .iter()
            .map(|p| ProfileEntry {
                spec: p.spec.clone(),
                builtin: true,
                set_by: None,
                set_at: None,
                audit_seq: None,
            })
            .collect();
        for stored in hsm.stored_profiles(partition)? {
            out.push(custom_entry(&stored)?);
        }
        Ok(out)
    }

    /// Set a custom profile in the caller's partition (add it, or replace the one of that
    /// name): checked and compiled first, then gated by the quorum like a CA's creation, then
    /// one audit record holding the whole spec. Officers only; built-in names are refused.
    pub fn set_profile(
        &self,
        hsm: &Hsm,
        session: &Session,
        spec: crate::profile::ProfileSpec,
        approval: Option<&str>,
    ) -> Result<Gated<ProfileSet>, CaError> {
        session
            .require(
                kagi_hsm_core::Role::Officer,
                "add or change certificate profiles",
            )
            .map_err(CaError::Hsm)?;
        let name = spec.name.clone();
        if self.builtin.contains(&name) {
            return Err(CaError::Conflict(format!(
                "'{name}' is a built-in profile and cannot be changed: give your profile another name"
            )));
        }
        Profile::compile(spec.clone())?;
        let json = serde_json::to_value(&spec)
            .map_err(|e| CaError::Internal(format!("profile spec as JSON: {e}")))?;
        let replaced = hsm
            .stored_profiles(session.partition())?
            .iter()
            .any(|p| p.name == name);
        let summary = format!(
            "{} certificate profile '{name}': {}",
            if replaced { "replace" } else { "add" },
            json
        );
        let grant = match hsm.authorize_profile_change(session, &name, &json, &summary, approval)? {
            Gated::Pending(p) => return Ok(Gated::Pending(p)),
            Gated::Done(g) => g,
        };
        let stored = hsm.store_profile(session, &name, &json, &grant)?;
        Ok(Gated::Done(ProfileSet {
            entry: custom_entry(&stored)?,
            replaced,
        }))
    }

    /// The chain above a CA's certificates, nearest first: the CA itself, then its parents.
    pub fn chain(&self, hsm: &Hsm, ca_name: &str) -> Result<Vec<Vec<u8>>, CaError> {
        let mut out = Vec::new();
        let mut next = Some(ca_name.to_string());
        while let Some(name) = next {
            if out.len() > 8 {
                break;
            }
            let rec = hsm.ca(&name)?;
            out.push(rec.cert_der);
            next = rec.parent;
        }
        Ok(out)
    }

    /// The CA's current CRL, made fresh when it is missing or getting old.
    pub fn crl(&self, hsm: &Hsm, ca_name: &str) -> Result<Vec<u8>, CaError> {
        let now = crate::x509::unix_now();
        if let Some(c) = hsm.crl(ca_name)? {
            if now - c.this_update < CRL_REFRESH_SECS && now < c.next_update {
                return Ok(c.der);
            }
        }
        Ok(self.regenerate_crl(hsm, ca_name)?.der)
    }

    pub fn regenerate_crl(
        &self,
        hsm: &Hsm,
        ca_name: &str,
    ) -> Result<kagi_hsm_core::records::ca::CrlRecord, CaError> {
        let ca = self.authority(hsm, ca_name)?;
        let mut last = None;
        // Two regenerations racing pick the same number; the loser retries with the next.
        for _ in 0..3 {
            match crate::crl::generate(&ca, crate::x509::unix_now()) {
                Ok(c) => return Ok(c),
                Err(CaError::Hsm(HsmError::Conflict(m))) => last = Some(m),
                Err(e) => return Err(e),
            }
        }
        Err(CaError::Conflict(last.unwrap_or_default()))
    }

    /// Regenerate every CA's CRL that is due; run periodically.
    pub fn refresh_crls(&self, hsm: &Hsm) {
        let cas = match hsm.list_cas() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("CRL refresh: cannot list CAs: {e}");
                return;
            }
        };
        for c in cas.iter().filter(|c| c.revoked_at.is_none()) {
            if let Err(e) = self.crl(hsm, &c.name) {
                log::warn!("CRL refresh of CA '{}' failed: {e}", c.name);
            }
        }
    }

    /// The delegated OCSP responder of a CA: key `ca.<ca>.ocsp` in hsm-core, certificate of
    /// profile `ocsp-signing` from the CA itself, renewed before it expires.
    /// CA `ca_name`'s key for `which`, made on first use and renewed before its certificate
    /// expires.
    fn service(
        &self,
        hsm: &Hsm,
        ca_name: &str,
        which: Service,
    ) -> Result<Arc<ServiceKey>, CaError> {
        let now = crate::x509::unix_now();
        let id = (ca_name.to_string(), which);
        let current = || {
            lock(&self.services)
                .get(&id)
                .filter(|k| k.not_after - now > RESPONDER_RENEW_SECS)
                .cloned()
        };
        if let Some(k) = current() {
            return Ok(k);
        }
        // One maker at a time: concurrent first requests would each certify a key of their own.
        let _making = lock(&self.service_making);
        if let Some(k) = current() {
            return Ok(k);
        }
        let ca = self.authority(hsm, ca_name)?;
        let (signer, cert_der, not_after) = self.service_key_certificate(
            hsm,
            &ca,
            which.suffix(),
            which.profile(),
            &which.subject(ca_name),
        )?;
        let k = Arc::new(ServiceKey {
            signer,
            cert_der,
            chain: self.chain(hsm, ca_name)?,
            not_after,
        });
        lock(&self.services).insert(id, k.clone());
        Ok(k)
    }

    /// Answer an OCSP request (DER). Every failure becomes an OCSP error response, never an
    /// HTTP error: that is what OCSP clients understand.
    ///
    /// Anyone may ask, so an answer costs no signature unless its status changed or its reuse
    /// time ran out (RFC 5019): one CertID per request (RFC 5019 §2.1.1), answers cached per
    /// CertID and status, a request's nonce not echoed (RFC 5019 §2.2.1 allows a responder to
    /// ignore it), and a serial this CA never issued answered `unauthorized`, unsigned
    /// (RFC 5019 §2.2.3), since random serials would otherwise each cost a signature.
    pub fn ocsp(&self, hsm: &Hsm, request: &[u8]) -> Vec<u8> {
        let parsed = match ocsp::parse_request(request) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("malformed OCSP request: {e}");
                return ocsp::error_response(OcspResponseStatus::MalformedRequest);
            }
        };
        match self.ocsp_answer(hsm, &parsed) {
            Ok(r) => r,
            Err(e) => {
                match e.kind() {
                    kagi_hsm_core::ErrorKind::BadInput | kagi_hsm_core::ErrorKind::NotFound => {
                        log::debug!("OCSP: {e}")
                    }
                    _ => log::warn!("OCSP: {e}"),
                }
                ocsp::error_response(match e.kind() {
                    kagi_hsm_core::ErrorKind::Unavailable => OcspResponseStatus::TryLater,
                    kagi_hsm_core::ErrorKind::NotFound => OcspResponseStatus::Unauthorized,
                    kagi_hsm_core::ErrorKind::BadInput => OcspResponseStatus::MalformedRequest,
                    _ => OcspResponseStatus::InternalError,
                })
            }
        }
    }

    fn ocsp_answer(&self, hsm: &Hsm, req: &ocsp::ParsedRequest) -> Result<Vec<u8>, CaError> {
        let rc = match req.certs.as_slice() {
            [one] => one,
            _ => {
                return Err(CaError::BadRequest(
                    "kagi answers one CertID per OCSP request (RFC 5019 §2.1.1)".into(),
                ))
            }
        };
        let cas = hsm.list_cas()?;
        let ca_rec = cas
            .iter()
            .find(|c| ocsp::names_issuer(rc, &c.cert_der).unwrap_or(false))
            .ok_or_else(|| {
                CaError::Hsm(HsmError::NotFound("the CA this OCSP request names".into()))
            })?;
        let ca = self.authority(hsm, &ca_rec.name)?;
        let status = match hsm.certificate(&hex::encode(&rc.serial))? {
            Some(c) if c.ca_name == ca.record.name => match c.revoked_at {
                Some(at) => Status::Revoked {
                    at_unix: at,
                    reason: c.revocation_reason.filter(|r| *r != 0),
                },
                None => Status::Good,
            },
            _ => {
                return Err(CaError::Hsm(HsmError::NotFound(format!(
                    "a certificate of CA '{}' with the serial this OCSP request names",
                    ca.name()
                ))))
            }
        };
        let responder = self.service(hsm, ca.name(), Service::Ocsp)?;
        let key: OcspKey = (
            ca.name().to_string(),
            der::Encode::to_der(&rc.cert_id)?,
            format!("{status:?}"),
        );
        let reusable = |cache: &HashMap<OcspKey, CachedOcsp>, now: i64| {
            cache
                .get(&key)
                .filter(|c| {
                    c.responder == responder.cert_der
                        && (c.this_update..c.this_update + OCSP_REUSE_SECS).contains(&now)
                })
                .map(|c| c.der.clone())
        };
        if let Some(der) = reusable(&lock(&self.ocsp_cache), crate::x509::unix_now()) {
            return Ok(der);
        }
        let _signing = lock(&self.ocsp_signing);
        // Another request may have signed it while this one waited.
        let now = crate::x509::unix_now();
        if let Some(der) = reusable(&lock(&self.ocsp_cache), now) {
            return Ok(der);
        }
        let statuses = [SingleStatus {
            cert_id: rc.cert_id.clone(),
            status,
            this_update_unix: now,
            next_update_unix: Some(now + OCSP_VALIDITY_SECS),
        }];
        let signer = responder.signer.clone().with_audit(serde_json::json!({
            "purpose": "sign_ocsp_response", "ca": ca.name(), "count": 1,
            "serial": hex::encode(&rc.serial),
        }));
        let der = ocsp::build_response(&statuses, &responder.cert_der, None, now, |tbs| {
            let alg = signer.signature_algorithm_identifier_owned()?;
            let sig = signer.sign_tbs(tbs)?;
            Ok::<_, CaError>((alg, sig))
        })
        .map_err(|e| match e {
            ocsp::BuildError::Sign(e) => e,
            ocsp::BuildError::Response(e) => CaError::Internal(e.to_string()),
        })?;
        let mut cache = lock(&self.ocsp_cache);
        if cache.len() >= OCSP_CACHE_MAX {
            cache.retain(|_, c| now - c.this_update < OCSP_REUSE_SECS);
            if cache.len() >= OCSP_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            key,
            CachedOcsp {
                der: der.clone(),
                this_update: now,
                responder: responder.cert_der.clone(),
            },
        );
        Ok(der)
    }

    /// Certify a signing key of the caller's partition (an ordinary key, in the HSM): profile
    /// `code-signing`, from CA `ca_name`. kagi holds the key, so no CSR is needed.
    pub fn certify_key(
        &self,
        hsm: &Hsm,
        session: &Session,
        ca_name: &str,
        label: &str,
        subject: Option<&str>,
        validity: Option<crate::Days>,
    ) -> Result<Issued, CaError> {
        session
            .require(kagi_hsm_core::Role::Officer, "certify keys")
            .map_err(CaError::Hsm)?;
        if label.starts_with(kagi_hsm_core::records::ca::CA_KEY_NAMESPACE) {
            return Err(CaError::BadRequest(format!(
                "'{label}' is a CA key: it has its CA certificate ('kagi ca show')"
            )));
        }
        let info = hsm.key_info(session, label)?;
        // A certificate for a key that will never sign again would only vouch for a key that is
        // retired or in someone else's hands.
        match info.lifecycle {
            kagi_hsm_core::Lifecycle::Compromised => {
                return Err(CaError::Hsm(HsmError::KeyCompromised(info.label)))
            }
            kagi_hsm_core::Lifecycle::Deactivated => {
                return Err(CaError::Hsm(HsmError::KeyDeactivated(info.label)))
            }
            _ => {}
        }
        let subject = subject
            .map(str::to_string)
            .unwrap_or_else(|| format!("CN={label},O=kagi"));
        let name = Name::from_str(&subject).map_err(|e| {
            CaError::BadRequest(format!(
                "subject '{subject}' is not an RFC 4514 name ({e}); write it like 'CN=release signing,O=Example'"
            ))
        })?;
        self.issue_for_key(hsm, session, ca_name, label, &info, name, validity)
    }

    /// After `kagi key rotate`: when the old version (public key `old_spki_der`) has a current
    /// code-signing certificate, certify the new version of `label` from the same CA with the
    /// same subject (the profile's default validity). The old certificate stays valid: its key
    /// was retired, not compromised, and still verifies what it signed. `None` when the old
    /// version had no current certificate.
    pub fn recertify_rotated(
        &self,
        hsm: &Hsm,
        session: &Session,
        label: &str,
        old_spki_der: &[u8],
    ) -> Result<Option<Issued>, CaError> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, old_spki_der);
        let hash: [u8; 32] = digest
            .as_ref()
            .try_into()
            .map_err(|_| CaError::Internal("SHA-256 is not 32 bytes".into()))?;
        let Some(old) = hsm.certificate_for_key(&hash, SIGNING_PROFILE)? else {
            return Ok(None);
        };
        let subject = {
            use der::Decode;
            x509_cert::Certificate::from_der(&old.der)?
                .tbs_certificate()
                .subject()
                .clone()
        };
        let info = hsm.key_info(session, label)?;
        self.issue_for_key(hsm, session, &old.ca_name, label, &info, subject, None)
            .map(Some)
    }

    /// Issue a code-signing certificate for stored key `info` (already checked by the caller).
    #[allow(clippy::too_many_arguments)]
    fn issue_for_key(
        &self,
        hsm: &Hsm,
        session: &Session,
        ca_name: &str,
        label: &str,
        info: &kagi_hsm_core::KeyInfo,
        name: Name,
        validity: Option<crate::Days>,
    ) -> Result<Issued, CaError> {
        let spki = {
            use der::Decode;
            x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(&info.public_key_der)?
        };
        let csr = crate::csr::Csr::for_own_key(name, spki)?;
        let ca = self.authority(hsm, ca_name)?;
        crate::issue::issue_parsed(
            &ca,
            session,
            self.builtin.get(SIGNING_PROFILE)?,
            &csr,
            &IssueOptions {
                validity,
                ..IssueOptions::default()
            },
            &self.urls,
            &[],
            serde_json::json!({"for": "signing key", "key": label, "version": info.version}),
        )
    }

    /// A signing key's current certificate and the chain above it (issuing CA first).
    pub fn key_certificate(
        &self,
        hsm: &Hsm,
        session: &Session,
        label: &str,
    ) -> Result<Option<KeyCertificate>, CaError> {
        let hash = key_spki_sha256(hsm, session, label)?;
        match hsm.certificate_for_key(&hash, SIGNING_PROFILE)? {
            None => Ok(None),
            Some(record) => {
                let chain = self.chain(hsm, &record.ca_name)?;
                Ok(Some(KeyCertificate { record, chain }))
            }
        }
    }

    /// Why key `label` has no current code-signing certificate: its last one was revoked (when,
    /// why) or expired, or it never had one; and that `kagi key certify` issues a new one.
    fn why_no_certificate(
        &self,
        hsm: &Hsm,
        session: &Session,
        label: &str,
    ) -> Result<String, CaError> {
        let hash = key_spki_sha256(hsm, session, label)?;
        let when = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .ok()
                .and_then(|d| {
                    d.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| t.to_string())
        };
        let certify = format!("'kagi key certify {label}' issues a new one");
        let newest = hsm.newest_certificate_for_key(&hash, SIGNING_PROFILE)?;
        Ok(match newest {
            Some(r) => match r.revoked_at {
                Some(at) => format!(
                    "the code-signing certificate of key '{label}' (serial {}) was revoked at {} (reason {}), so a CMS signature cannot carry it: {certify}",
                    r.serial,
                    when(at),
                    crate::crl::reason_name(r.revocation_reason.unwrap_or(0)),
                ),
                None => format!(
                    "the code-signing certificate of key '{label}' (serial {}) expired at {}, so a CMS signature cannot carry it: {certify}",
                    r.serial,
                    when(r.not_after),
                ),
            },
            None => format!(
                "key '{label}' has no code-signing certificate, which a CMS signature carries: run 'kagi key certify {label}' first"
            ),
        })
    }

    /// The TSA of CA `ca_name`, made on first use and renewed before its certificate expires.
    pub fn tsa(&self, hsm: &Hsm, ca_name: &str) -> Result<Arc<ServiceKey>, CaError> {
        self.service(hsm, ca_name, Service::Tsa)
    }

    /// Answer an RFC 3161 request (DER) with a TimeStampResp: granted, or a rejection that says
    /// why. The token is signed in hsm-core by CA `ca_name`'s TSA key (a counted, audited use).
    ///
    /// `requested_by` (the caller's identity, or `None` on an open TSA) goes into the audit
    /// record of the TSA key's use.
    pub fn timestamp(
        &self,
        hsm: &Hsm,
        ca_name: &str,
        request: &[u8],
        requested_by: Option<&str>,
    ) -> Vec<u8> {
        let req = match crate::tsa::parse_request(request) {
            Ok(r) => r,
            Err(e) => {
                log::debug!("bad time-stamp request: {e}");
                return crate::tsa::rejection(e.fail_bit(), &e.to_string());
            }
        };
        match self.timestamp_token_for(hsm, ca_name, &req, requested_by) {
            Ok(resp) => resp,
            Err(e) => {
                log::warn!("time-stamping failed: {e}");
                crate::tsa::rejection(
                    crate::tsa::fail::SYSTEM_FAILURE,
                    "the time-stamping authority is unavailable; retry later",
                )
            }
        }
    }

    pub fn timestamp_token(
        &self,
        hsm: &Hsm,
        ca_name: &str,
        req: &crate::tsa::ParsedRequest,
    ) -> Result<Vec<u8>, CaError> {
        self.timestamp_token_for(hsm, ca_name, req, None)
    }

    fn timestamp_token_for(
        &self,
        hsm: &Hsm,
        ca_name: &str,
        req: &crate::tsa::ParsedRequest,
        requested_by: Option<&str>,
    ) -> Result<Vec<u8>, CaError> {
        let tsa = self.tsa(hsm, ca_name)?;
        let signer = tsa.signer.clone().with_audit(serde_json::json!({
            "purpose": "timestamp", "imprint": hex::encode(&req.hashed_message),
            "requested_by": requested_by,
        }));
        let (digest, signature_algorithm) =
            crate::hsm_key::signature_algorithm(signer.algorithm())?;
        let serial = crate::serial::random_serial()
            .map_err(|_| CaError::Internal("no randomness for a serial".into()))?;
        let sign = |attrs: &[u8]| signer.sign_tbs(attrs);
        crate::tsa::granted_response(
            req,
            &serial,
            crate::x509::unix_now(),
            self.tsa_policy,
            &crate::cms_sign::CmsSigner {
                cert_der: &tsa.cert_der,
                chain: &tsa.chain,
                digest,
                signature_algorithm,
                sign: &sign,
            },
        )
    }

    /// A key of kagi's own (`ca.<ca>.<suffix>`) with a certificate of `profile` from `ca`,
    /// made on first use and reissued when it is near expiry.
    fn service_key_certificate(
        &self,
        hsm: &Hsm,
        ca: &Authority,
        suffix: &str,
        profile: &str,
        subject: &str,
    ) -> Result<(HsmSigner, Vec<u8>, i64), CaError> {
        let now = crate::x509::unix_now();
        let session = ca.signer.session().clone();
        let signer = ca_service_signer(hsm, ca, suffix, ca.signer.algorithm())?;
        let existing = hsm
            .latest_certificate(ca.name(), profile, &session.actor(), None)?
            .filter(|c| c.not_after - now > RESPONDER_RENEW_SECS)
            .filter(|c| spki_of(&c.der).as_deref() == Some(signer.spki_der()));
        match existing {
            Some(c) => Ok((signer, c.der, c.not_after)),
            None => {
                let subject = Name::from_str(subject)
                    .map_err(|e| CaError::Internal(format!("service subject: {e}")))?;
                let csr = crate::csr::Csr::for_own_key(subject, signer.spki()?)?;
                let issued = crate::issue::issue_parsed(
                    ca,
                    &session,
                    self.builtin.get(profile)?,
                    &csr,
                    &IssueOptions::default(),
                    &self.urls,
                    &[],
                    serde_json::json!({"for": suffix}),
                )?;
                Ok((signer, issued.der, issued.record.not_after))
            }
        }
    }

    /// A detached CMS SignedData (RFC 5652) over a digest the client computed, signed by key
    /// `label` in hsm-core (counted, quota-charged and audited like any signature), with the
    /// key's certificate chain, and optionally an RFC 3161 timestamp of the signature.
    #[allow(clippy::too_many_arguments)]
    pub fn cms_sign(
        &self,
        hsm: &Hsm,
        session: &Session,
        label: &str,
        req: &kagi_hsm_core::SignRequest,
        quotas: &[QuotaCharge],
        detail: serde_json::Value,
        timestamp_ca: Option<&str>,
    ) -> Result<(Vec<u8>, kagi_hsm_core::Signed), CaError> {
        let Some(kc) = self.key_certificate(hsm, session, label)? else {
            return Err(CaError::Conflict(
                self.why_no_certificate(hsm, session, label)?,
            ));
        };
        let digest = req.digest_alg.unwrap_or(kagi_hsm_core::DigestAlg::Sha256);
        let signature_algorithm = cms_signature_algorithm(&kc.record.der, digest)?;
        let signed: std::cell::RefCell<Option<kagi_hsm_core::Signed>> =
            std::cell::RefCell::new(None);
        let sign = |attrs: &[u8]| -> Result<Vec<u8>, CaError> {
            let d = crate::hsm_key::digest(digest, attrs);
            let request = kagi_hsm_core::SignRequest {
                digest_alg: Some(digest),
                digest: d,
                padding: kagi_hsm_core::RsaPadding::Pkcs1v15,
            };
            let s = hsm.sign_op(
                session,
                kagi_hsm_core::SignOp {
                    quotas,
                    audit: detail.clone(),
                    ..kagi_hsm_core::SignOp::digest(label, &request)
                },
            )?;
            let sig = s.signature.clone();
            *signed.borrow_mut() = Some(s);
            Ok(sig)
        };
        let mut cms = crate::cms_sign::detached_signed_data(
            &req.digest,
            crate::x509::unix_now(),
            &crate::cms_sign::CmsSigner {
                cert_der: &kc.record.der,
                chain: &kc.chain,
                digest,
                signature_algorithm,
                sign: &sign,
            },
        )?;
        if let Some(tsa_ca) = timestamp_ca {
            let value = crate::cms_sign::signature_value(&cms)?;
            let imprint = crate::hsm_key::digest(kagi_hsm_core::DigestAlg::Sha256, &value);
            let treq =
                crate::tsa::ParsedRequest::for_imprint(kagi_hsm_core::DigestAlg::Sha256, imprint)?;
            let token = crate::tsa::token_of(&self.timestamp_token(hsm, tsa_ca, &treq)?)?;
            cms = crate::cms_sign::add_timestamp_token(&cms, &token)?;
        }
        let signed = signed
            .into_inner()
            .ok_or_else(|| CaError::Internal("the CMS signer was not called".into()))?;
        Ok((cms, signed))
    }

    /// Forget cached CAs (after a revocation in this process).
    pub fn forget(&self, name: &str) {
        lock(&self.authorities).remove(name);
        lock(&self.services).retain(|(ca, _), _| ca != name);
    }
}

fn stored_spec(
    stored: &kagi_hsm_core::records::profiles::StoredProfile,
) -> Result<crate::profile::ProfileSpec, CaError> {
    serde_json::from_value(stored.spec.clone()).map_err(|e| {
        CaError::Internal(format!(
            "custom profile '{}' (audit record {}) no longer reads as a profile: {e}",
            stored.name, stored.audit_seq
        ))
    })
}

fn compile_stored(
    stored: &kagi_hsm_core::records::profiles::StoredProfile,
) -> Result<Profile, CaError> {
    Profile::compile(stored_spec(stored)?).map_err(|e| {
        CaError::Internal(format!(
            "custom profile '{}' (audit record {}) no longer compiles: {e}",
            stored.name, stored.audit_seq
        ))
    })
}

fn custom_entry(
    stored: &kagi_hsm_core::records::profiles::StoredProfile,
) -> Result<ProfileEntry, CaError> {
    Ok(ProfileEntry {
        spec: stored_spec(stored)?,
        builtin: false,
        set_by: Some(stored.set_by.clone()),
        set_at: Some(stored.set_at),
        audit_seq: Some(stored.audit_seq),
    })
}

/// CA `ca`'s own key `ca.<CA>.<suffix>` (made on first use) as a signer in the CA's service
/// session: the OCSP responder's, the TSA's and the CT signer's keys.
pub fn ca_service_signer(
    hsm: &Hsm,
    ca: &Authority,
    suffix: &str,
    alg: Algorithm,
) -> Result<HsmSigner, CaError> {
    let session = ca.signer.session();
    match hsm.create_ca_service_key(session, ca.name(), suffix, alg) {
        Ok(_) | Err(HsmError::KeyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    HsmSigner::new(
        hsm,
        session,
        &format!(
            "{}{}.{suffix}",
            kagi_hsm_core::records::ca::CA_KEY_NAMESPACE,
            ca.name()
        ),
    )
}

/// The SignerInfo's signatureAlgorithm for a certificate's key and the digest in use
/// (ecdsa-with-SHA*, sha*WithRSAEncryption).
fn cms_signature_algorithm(
    cert_der: &[u8],
    digest: kagi_hsm_core::DigestAlg,
) -> Result<spki::AlgorithmIdentifierOwned, CaError> {
    use der::Decode;
    let cert = x509_cert::certificate::Certificate::from_der(cert_der)?;
    let key_oid = cert
        .tbs_certificate()
        .subject_public_key_info()
        .algorithm
        .oid;
    let family = crate::algorithms::key_family(&key_oid).ok_or_else(|| {
        CaError::BadRequest(format!(
            "a CMS signature needs an ECDSA or RSA key; this certificate's key is {key_oid}"
        ))
    })?;
    crate::algorithms::identifier(family, digest)
}

fn spki_of(cert_der: &[u8]) -> Option<Vec<u8>> {
    use der::{Decode, Encode};
    let cert = x509_cert::certificate::Certificate::from_der(cert_der).ok()?;
    cert.tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .ok()
}

/// Give a development instance its hierarchy, once: a root and the device, code-signing and
/// services intermediates. Returns false when nothing was done (they exist, or a quorum asks
/// for approvals first).
pub fn ensure_dev_hierarchy(
    hsm: &Hsm,
    admin: &Session,
    urls: &PublicUrls,
) -> Result<bool, CaError> {
    let existing: Vec<String> = hsm.list_cas()?.into_iter().map(|c| c.name).collect();
    let spec = |name: &str, cn: &str, days: i64| CaSpec {
        name: name.to_string(),
        subject: format!("CN={cn},O=kagi development"),
        alg: Algorithm::EcP256,
        validity_days: days,
    };
    let mut made = false;
    if !existing.iter().any(|n| n == DEV_ROOT) {
        match crate::hierarchy::create_root(
            hsm,
            admin,
            &spec(DEV_ROOT, "kagi Development Root CA", 7300),
            None,
        )? {
            Gated::Done(_) => made = true,
            Gated::Pending(_) => return Ok(false),
        }
    }
    for (name, cn) in [
        (DEV_DEVICES, "kagi Development Device CA"),
        (DEV_CODE_SIGNING, "kagi Development Code Signing CA"),
        (DEV_SERVICES, "kagi Development Services CA"),
    ] {
        if !existing.iter().any(|n| n == name) {
            match crate::hierarchy::create_intermediate(
                hsm,
                admin,
                &spec(name, cn, 3650),
                DEV_ROOT,
                urls,
                None,
            )? {
                Gated::Done(_) => made = true,
                Gated::Pending(_) => return Ok(false),
            }
        }
    }
    Ok(made)
}

/// SHA-256 of key `label`'s SubjectPublicKeyInfo: how certificate rows name the key they certify.
fn key_spki_sha256(hsm: &Hsm, session: &Session, label: &str) -> Result<[u8; 32], CaError> {
    let info = hsm.key_info(session, label)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &info.public_key_der);
    digest
        .as_ref()
        .try_into()
        .map_err(|_| CaError::Internal("SHA-256 is not 32 bytes".into()))
}
