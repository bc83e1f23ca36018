//! The state every handler receives, and the settings it is made from.

use kagi_hsm_core::Hsm;
use std::sync::Arc;

use super::policy_gate;
use kagi_ca::service::Pki;

/// What each handler reaches through `web::Data<AppState>`.
pub struct AppState {
    pub hsm: Hsm,
    pub(super) policy: policy_gate::PolicyCache,
    pub pki: Arc<Pki>,
    pub est: EstSettings,
    /// The CA that certifies signing keys (`kagi key certify`).
    pub signing_ca: String,
    /// `/tsa` answers anonymous requests too (within a per-source rate limit).
    pub open_tsa: bool,
}

/// The EST CA and profile of this instance (configurable; the development hierarchy's device CA
/// by default).
pub struct EstSettings {
    pub ca: String,
    pub profile: String,
}
