//! The service's view of the active policy: compiled once per version, refreshed when another
//! process activates a newer one, and asked before every signature and issuance.
//!
//! With no active policy the built-in bootstrap policy (version 0) decides: pipelines and lines
//! are denied, persons act by their roles. So "no policy" is never "no decision": a database
//! that lost its active version falls back to denial, not to roles alone.

use kagi_hsm_core::{Hsm, QuotaCharge, Session};
use kagi_policy::{
    Action, CertificateRequest, Context, Decision, Engine, Principal, PrincipalKind, Resource,
};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::error_codes::Code;
use super::errors::ApiError;

/// How stale the cached version may get before the store is asked again: bounds how long a
/// policy activated by another kagi process takes to apply here.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct PolicyCache {
    inner: Mutex<Option<Cached>>,
}

struct Cached {
    active: Active,
    checked: Instant,
}

/// The policy in force, compiled: a stored version, or the bootstrap policy (version 0).
#[derive(Clone)]
pub struct Active {
    pub version: i64,
    pub engine: Arc<Engine>,
}

/// The bootstrap policy, compiled once per process.
pub fn bootstrap() -> Result<Active, ApiError> {
    static ENGINE: OnceLock<Result<Arc<Engine>, String>> = OnceLock::new();
    let engine = ENGINE
        .get_or_init(|| Engine::bootstrap().map(Arc::new).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| {
            ApiError::internal(format!(
                "the built-in bootstrap policy does not compile: {e}"
            ))
        })?;
    Ok(Active {
        version: kagi_policy::BOOTSTRAP_VERSION,
        engine: engine.clone(),
    })
}

impl PolicyCache {
    /// The policy in force if this process checked its version within [`RECHECK`]: no I/O, so
    /// a handler decides on its event loop (a decision is microseconds) instead of paying a
    /// hand-off to the blocking pool on every request. `None`: ask [`PolicyCache::active`]
    /// from the blocking pool.
    pub fn fresh(&self) -> Option<Active> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|c| c.checked.elapsed() < RECHECK)
            .map(|c| c.active.clone())
    }

    /// Blocking (reads the store): call from the blocking pool.
    pub fn active(&self, hsm: &Hsm) -> Result<Active, ApiError> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = guard.as_ref() {
            if c.checked.elapsed() < RECHECK {
                return Ok(c.active.clone());
            }
        }
        let version = hsm.active_policy_version()?;
        let reuse = guard
            .as_ref()
            .filter(|c| Some(c.active.version) == version)
            .map(|c| c.active.clone());
        let active = match (version, reuse) {
            (None, _) => bootstrap()?,
            (Some(_), Some(a)) => a,
            // The audit log names an active version; a missing or altered document is an
            // integrity error from hsm-core, which fails the request rather than deciding.
            (Some(_), None) => match hsm.active_policy()? {
                None => bootstrap()?,
                Some(stored) => Active {
                    version: stored.version,
                    engine: Arc::new(Engine::from_text(&stored.text).map_err(|e| {
                        ApiError::internal(format!(
                            "the active policy (version {}) no longer compiles: {e}",
                            stored.version
                        ))
                    })?),
                },
            },
        };
        *guard = Some(Cached {
            active: active.clone(),
            checked: Instant::now(),
        });
        Ok(active)
    }

    /// Forget the cached version (after an activation in this process).
    pub fn invalidate(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

pub fn principal_kind(s: &Session) -> PrincipalKind {
    match s.kind() {
        kagi_hsm_core::IdentityKind::Person => PrincipalKind::Person,
        kagi_hsm_core::IdentityKind::Pipeline => PrincipalKind::Pipeline,
        kagi_hsm_core::IdentityKind::Line => PrincipalKind::Line,
    }
}

/// What the gate decided for one request.
pub struct Verdict {
    pub decision: Decision,
    pub quotas: Vec<QuotaCharge>,
    pub version: i64,
}

/// Ask the policy about `session` doing `action` on `resource`.
pub fn decide(
    active: &Active,
    session: &Session,
    action: Action,
    resource: &Resource<'_>,
    format: Option<&str>,
    source_ip: Option<IpAddr>,
) -> Verdict {
    decide_with(active, session, action, resource, format, source_ip, None)
}

/// Ask the policy about `session` issuing under `profile` what `certificate` asks for: rules
/// see its subject and SANs (`context.subject`, `context.sans`).
pub fn decide_issue(
    active: &Active,
    session: &Session,
    profile: &str,
    certificate: &CertificateRequest,
    source_ip: Option<IpAddr>,
) -> Verdict {
    decide_with(
        active,
        session,
        Action::Issue,
        &Resource::Profile(profile),
        None,
        source_ip,
        Some(certificate),
    )
}

/// What a verified CSR asks for, as the policy sees it. A subject that repeats an attribute
/// rules can test is refused: a rule about `serialNumber` must judge the only one there is.
pub fn certificate_request(csr: &kagi_ca::csr::Csr) -> Result<CertificateRequest, ApiError> {
    let mut subject: Vec<(String, String)> = Vec::new();
    for a in &csr.subject_attrs {
        let name = kagi_ca::profile::attribute_name(&a.oid);
        if !kagi_policy::SUBJECT_ATTRIBUTES.contains(&name.as_str()) {
            continue;
        }
        if subject.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::new(
                Code::BadCsr,
                format!(
                    "the CSR's subject has {name} more than once; kagi issues for one {name} per certificate"
                ),
            ));
        }
        subject.push((name, a.value.clone()));
    }
    let mut out = CertificateRequest {
        subject,
        ..CertificateRequest::default()
    };
    for san in &csr.sans {
        use kagi_ca::csr::San;
        match san {
            San::Dns(d) => out.dns.push(d.clone()),
            San::Ip(ip) => out.ip.push(ip.to_string()),
            San::Uri(u) => out.uri.push(u.clone()),
            San::Email(e) => out.email.push(e.clone()),
        }
    }
    Ok(out)
}

fn decide_with(
    active: &Active,
    session: &Session,
    action: Action,
    resource: &Resource<'_>,
    format: Option<&str>,
    source_ip: Option<IpAddr>,
    certificate: Option<&CertificateRequest>,
) -> Verdict {
    let principal = Principal {
        kind: principal_kind(session),
        name: session.name(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let ctx = Context {
        format,
        source_ip,
        now,
        certificate,
    };
    let decision = active.engine.decide(&principal, action, resource, &ctx);
    let quotas = if decision.allowed {
        active
            .engine
            .quotas_for(&principal, action, resource)
            .into_iter()
            .map(|q| QuotaCharge {
                name: q.name.clone(),
                total: q.total,
                per_hour: q.per_hour,
                per_day: q.per_day,
            })
            .collect()
    } else {
        Vec::new()
    };
    Verdict {
        decision,
        quotas,
        version: active.version,
    }
}
