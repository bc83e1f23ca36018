//! The HSM's witnesses as HTTP clients (C2SP tlog-witness): `POST <url>/add-checkpoint`. The
//! HSM's worker threads call this, blocking, one request at a time per witness.

use std::time::Duration;

use kagi_hsm_core::witnessing::{AddCheckpoint, Witness, WitnessAnswer};

use crate::config::WitnessConfig;

/// Largest answer read from a witness: cosignature lines are a few hundred bytes.
const MAX_ANSWER: u64 = 64 * 1024;
/// How long each phase of a request (sending it, awaiting the answer, reading its body) may
/// take: a witness slower than this counts as unavailable for that request.
const PHASE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct HttpWitness {
    endpoint: String,
    name: String,
    public_key: [u8; 32],
    agent: ureq::Agent,
}

impl HttpWitness {
    pub fn new(cfg: &WitnessConfig) -> HttpWitness {
        // Per-phase timeouts, not a global one: with a global timeout ureq resolves the host on
        // a thread of its own for every request, kept-alive connection or not, which on a
        // busy host was a thread spawned per witness round. The name lookup keeps the system
        // resolver's own timeouts.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_send_request(Some(PHASE_TIMEOUT))
            .timeout_send_body(Some(PHASE_TIMEOUT))
            .timeout_recv_response(Some(PHASE_TIMEOUT))
            .timeout_recv_body(Some(PHASE_TIMEOUT))
            .build()
            .new_agent();
        HttpWitness {
            endpoint: format!("{}/add-checkpoint", cfg.url),
            name: cfg.name.clone(),
            public_key: cfg.public_key,
            agent,
        }
    }
}

impl Witness for HttpWitness {
    fn name(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    fn add_checkpoint(&self, req: &AddCheckpoint) -> Result<WitnessAnswer, String> {
        let mut resp = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", "text/plain; charset=utf-8")
            .send(req.to_body())
            .map_err(|e| format!("POST {}: {e}", self.endpoint))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| format!("reading the answer of {}: {e}", self.endpoint))?;
        Ok(WitnessAnswer::from_response(status, &body))
    }
}

/// The HSM's witness set from the settings; `None` without witnesses.
pub fn witness_set(
    witnesses: &[WitnessConfig],
    quorum: usize,
    timeout: Duration,
) -> Result<Option<kagi_hsm_core::WitnessSet>, kagi_hsm_core::HsmError> {
    if witnesses.is_empty() {
        return Ok(None);
    }
    let list: Vec<std::sync::Arc<dyn Witness>> = witnesses
        .iter()
        .map(|w| std::sync::Arc::new(HttpWitness::new(w)) as std::sync::Arc<dyn Witness>)
        .collect();
    kagi_hsm_core::WitnessSet::new(list, quorum, timeout).map(Some)
}
