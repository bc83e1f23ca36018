//! The state every handler receives, and the settings it is made from.

use kagi_hsm_core::Hsm;
use std::sync::Arc;

use super::policy_gate;
use super::rate_limit::RateLimiter;
use kagi_ca::service::Pki;

/// What each handler reaches through `web::Data<AppState>`.
pub struct AppState {
    pub hsm: Hsm,
    pub(super) policy: policy_gate::PolicyCache,
    pub pki: Arc<Pki>,
    pub est: EstSettings,
    /// The CA that certifies signing keys (`kagi key certify`).
    pub signing_ca: String,
    /// Refused logins, per source address.
    pub login_limit: RateLimiter,
    /// Refused unseal and recovery shares, per source address.
    pub share_limit: RateLimiter,
    /// Log entry bodies for anyone (an open-source project's log); otherwise an auditor, or
    /// the identity an entry names, reads them.
    pub log_entries_public: bool,
    /// `/tsa` answers anonymous requests too (within a per-source rate limit).
    pub open_tsa: bool,
    /// Anonymous requests to the open TSA, per source address.
    pub tsa_limit: RateLimiter,
    /// Counters and histograms for `/metrics`.
    pub(super) metrics: super::metrics::Metrics,
    /// The syslog collector audit records are forwarded to (its URL names its cursor), for
    /// the forwarding lag in `/metrics`.
    pub syslog_collector: Option<String>,
}

/// How the service treats failed authentication.
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    /// Refused logins one source address may make before back-off starts.
    pub failed_logins_per_source: u32,
}

/// The EST CA and profile of this instance (configurable; the development hierarchy's device CA
/// by default).
pub struct EstSettings {
    pub ca: String,
    pub profile: String,
}
