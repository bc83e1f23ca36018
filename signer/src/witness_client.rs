//! The HSM's witnesses as HTTP clients (C2SP tlog-witness): `POST <url>/add-checkpoint`. The
//! HSM's worker threads call this, blocking, one request at a time per witness.

use std::time::Duration;

use kagi_hsm_core::witnessing::{AddCheckpoint, Witness, WitnessAnswer};

use crate::config::WitnessConfig;

/// Largest answer read from a witness: cosignature lines are a few hundred bytes.
const MAX_ANSWER: u64 = 64 * 1024;
/// How long one request may take: a witness slower than this counts as unavailable for it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct HttpWitness {
    endpoint: String,
    name: String,
    public_key: [u8; 32],
    agent: ureq::Agent,
}

impl HttpWitness {
    pub fn new(cfg: &WitnessConfig) -> HttpWitness {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(REQUEST_TIMEOUT))
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
