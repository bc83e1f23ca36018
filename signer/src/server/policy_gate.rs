//! The service's view of the active policy: compiled once per version, refreshed when another
//! process activates a newer one, and asked before every signature.
//!
//! With no active policy, hsm-core's roles alone decide (a fresh instance must be usable before
//! anyone writes a policy); once one is active, a caller no rule allows is denied.

use kagi_hsm_core::{Hsm, QuotaCharge, Session};
use kagi_policy::{Action, Context, Decision, Engine, Principal, PrincipalKind, Resource};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::errors::ApiError;

/// How stale the cached version may get before the store is asked again: bounds how long a
/// policy activated by another kagi process takes to apply here.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct PolicyCache {
    inner: Mutex<Option<Cached>>,
}

struct Cached {
    version: Option<i64>,
    engine: Option<Arc<Engine>>,
    checked: Instant,
}

/// The active policy, compiled. `None`: no policy is active.
pub struct Active {
    pub version: i64,
    pub engine: Arc<Engine>,
}

impl PolicyCache {
    /// Blocking (reads the store): call from the blocking pool.
    pub fn active(&self, hsm: &Hsm) -> Result<Option<Active>, ApiError> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = guard.as_ref() {
            if c.checked.elapsed() < RECHECK {
                return Ok(c
                    .version
                    .zip(c.engine.clone())
                    .map(|(version, engine)| Active { version, engine }));
            }
        }
        let version = hsm.active_policy_version()?;
        let reuse = guard
            .as_ref()
            .filter(|c| c.version == version)
            .and_then(|c| c.engine.clone());
        let engine = match (version, reuse) {
            (None, _) => None,
            (Some(_), Some(e)) => Some(e),
            (Some(_), None) => match hsm.active_policy()? {
                None => None,
                Some(stored) => Some(Arc::new(Engine::from_text(&stored.text).map_err(|e| {
                    ApiError::internal(format!(
                        "the active policy (version {}) no longer compiles: {e}",
                        stored.version
                    ))
                })?)),
            },
        };
        *guard = Some(Cached {
            version,
            engine: engine.clone(),
            checked: Instant::now(),
        });
        Ok(version
            .zip(engine)
            .map(|(version, engine)| Active { version, engine }))
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
