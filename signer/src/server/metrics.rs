//! `/metrics`: Prometheus series, encoded by the `prometheus-client` crate.
//!
//! Two tiers, because a key's or an identity's name tells a stranger what to aim at:
//! - without a credential, the series that name nothing: seal and integrity state, log sizes,
//!   commit batch sizes and latency;
//! - with an auditor's bearer token (Prometheus: `authorization.credentials_file`), also the
//!   series labelled with keys, partitions, CAs, profiles, quotas and identities: signatures
//!   and issuances by result, key uses against their limits, quota uses against their quotas.
//!
//! A token that is sent must be good: a wrong one is refused (401/403), never quietly answered
//! with the smaller tier, so a misconfigured scraper shows up as down. While sealed no token
//! can be checked, and the public tier is served to everyone.
//!
//! Counters live as long as the process; gauges of stored state (uses, quotas, log sizes) are
//! read at scrape time with plain reads: a scrape writes no audit record.

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use kagi_hsm_core::{CommitObserver, Role};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

use super::auth::Caller;
use super::errors::ApiError;
use super::state::AppState;

type Labels = Vec<(&'static str, String)>;

/// What a label becomes when the request named something that may not exist: a caller must
/// not be able to grow the series without bound by inventing names.
const UNNAMED: &str = "-";

/// The process's counters and histograms, shared by the handlers and the committer.
pub struct Metrics {
    /// Series that name nothing (anyone may read them).
    public: Registry,
    /// Series labelled with names (auditors only).
    named: Registry,
    signatures: Family<Labels, Counter>,
    issuances: Family<Labels, Counter>,
    commit: Arc<CommitMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Feeds the committer's batches into histograms.
struct CommitMetrics {
    ops: Histogram,
    seconds: Histogram,
    failed: Counter,
}

impl CommitObserver for CommitMetrics {
    fn batch_done(&self, ops: usize, elapsed: Duration, committed: bool) {
        self.ops.observe(ops as f64);
        self.seconds.observe(elapsed.as_secs_f64());
        if !committed {
            self.failed.inc();
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut public = Registry::default();
        let mut named = Registry::default();
        let signatures = Family::<Labels, Counter>::default();
        let issuances = Family::<Labels, Counter>::default();
        named.register(
            "kagi_signatures",
            "Signature requests this process answered, by partition, key, format and result (ok or the error code)",
            signatures.clone(),
        );
        named.register(
            "kagi_issuances",
            "Certificates requested from this process, by CA, profile and result (ok or the error code)",
            issuances.clone(),
        );
        let commit = CommitMetrics {
            // 1 .. 512: the committer's largest batch.
            ops: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            // 0.5 ms .. about 16 s.
            seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            failed: Counter::default(),
        };
        public.register(
            "kagi_commit_batch_operations",
            "Operations per committed batch (group commit)",
            commit.ops.clone(),
        );
        public.register(
            "kagi_commit_batch_seconds",
            "Time one batch's transaction took (reservations, changes, audit records, checkpoint)",
            commit.seconds.clone(),
        );
        public.register(
            "kagi_commit_batch_failures",
            "Batches whose transaction failed (nothing in them was released)",
            commit.failed.clone(),
        );
        Metrics {
            public,
            named,
            signatures,
            issuances,
            commit: Arc::new(commit),
        }
    }

    /// The observer to hand to [`kagi_hsm_core::Hsm::observe_commits`].
    pub fn commit_observer(&self) -> Arc<dyn CommitObserver> {
        self.commit.clone()
    }

    /// Count one answered signature request. `key` is what the request named (`None`: a
    /// wrapped key); it is kept only when the answer shows the key exists.
    pub fn signature<T>(
        &self,
        partition: &str,
        key: Option<&str>,
        format: Option<&str>,
        result: &Result<T, ApiError>,
    ) {
        let named = names_kept(result);
        let key = match key {
            None => super::sign::WRAPPED_KEY_RESOURCE.to_string(),
            Some(k) if named => k.to_string(),
            Some(_) => UNNAMED.to_string(),
        };
        let format = match format.unwrap_or("raw") {
            f @ ("raw" | "cms" | "sigstore") => f.to_string(),
            _ => UNNAMED.to_string(),
        };
        self.signatures
            .get_or_create(&vec![
                ("partition", partition.to_string()),
                ("key", key),
                ("format", format),
                ("result", result_label(result)),
            ])
            .inc();
    }

    /// Count one certificate request that reached the CA.
    pub fn issuance<T>(&self, ca: &str, profile: &str, result: &Result<T, ApiError>) {
        let (ca, profile) = if names_kept(result) {
            (ca.to_string(), profile.to_string())
        } else {
            (UNNAMED.to_string(), UNNAMED.to_string())
        };
        self.issuances
            .get_or_create(&vec![
                ("ca", ca),
                ("profile", profile),
                ("result", result_label(result)),
            ])
            .inc();
    }
}

fn result_label<T>(result: &Result<T, ApiError>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.code().to_string(),
    }
}

/// Whether the names a request gave may label its series: yes when it succeeded or failed on
/// something only an existing object can fail on (a limit, a conflict, kagi itself); no when
/// it was malformed, refused before its object was looked at, or named nothing that exists.
fn names_kept<T>(result: &Result<T, ApiError>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => {
            let s = actix_web::ResponseError::status_code(e).as_u16();
            !matches!(s, 400 | 401 | 403 | 404 | 413 | 415)
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let auditor = if req.headers().contains_key(header::AUTHORIZATION) && !state.hsm.is_sealed() {
        let caller = Caller::extract(&req).await?;
        caller.0.require(Role::Auditor, "read the named metrics")?;
        true
    } else {
        false
    };
    let st = state.clone();
    let scraped = web::block(move || scrape(&st, auditor)).await?;
    let mut body = String::new();
    let encoded = encode_registry(&mut body, &state.metrics.public)
        .and_then(|_| encode_registry(&mut body, &scraped))
        .and_then(|_| {
            if auditor {
                encode_registry(&mut body, &state.metrics.named)
            } else {
                Ok(())
            }
        })
        .and_then(|_| encode_eof(&mut body));
    encoded.map_err(|_| ApiError::internal("the metrics could not be encoded"))?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(body))
}

/// The gauges of stored state, read now. What cannot be read (the store is down, sealed) is
/// left out rather than reported as zero.
fn scrape(state: &AppState, auditor: bool) -> Registry {
    let hsm = &state.hsm;
    let sealed = hsm.is_sealed();
    let gauge = |r: &mut Registry, name: &'static str, help: &'static str, v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        r.register(name, help, g);
    };
    let mut r = Registry::default();
    gauge(
        &mut r,
        "kagi_sealed",
        "1 while the HSM is sealed",
        i64::from(sealed),
    );
    gauge(
        &mut r,
        "kagi_integrity_failure",
        "1 once the audit log failed verification and kagi failed closed",
        i64::from(hsm.integrity_failure().is_some()),
    );
    gauge(
        &mut r,
        "kagi_rollback_detected",
        "1 once a witness showed the database was restored, forked or truncated and kagi stopped releasing results",
        i64::from(hsm.rollback_detected().is_some()),
    );
    if let Some(w) = hsm.witness_status() {
        gauge(
            &mut r,
            "kagi_witness_quorum",
            "Witness cosignatures a checkpoint needs before the results it covers are released",
            w.quorum as i64,
        );
        gauge(
            &mut r,
            "kagi_witnesses_answering",
            "Witnesses whose last request succeeded",
            w.witnesses
                .iter()
                .filter(|x| x.last_error.is_none())
                .count() as i64,
        );
        gauge(
            &mut r,
            "kagi_witnessed_log_size",
            "Newest transparency log size a quorum of witnesses cosigned",
            w.witnessed_size,
        );
        gauge(
            &mut r,
            "kagi_witness_held_results",
            "Results committed and waiting for the witnesses' quorum",
            w.held as i64,
        );
    }
    if let Ok(sizes) = hsm.log_sizes() {
        gauge(
            &mut r,
            "kagi_audit_log_records",
            "Records in the audit log",
            sizes.audit,
        );
        gauge(
            &mut r,
            "kagi_transparency_log_entries",
            "Entries in the transparency log",
            sizes.transparency,
        );
        if let Some(url) = &state.syslog_collector {
            // Records not yet known to have reached the collector (0 until forwarding starts
            // counts the whole log).
            if let Ok(cursor) = hsm.feed_cursor(url) {
                gauge(
                    &mut r,
                    "kagi_syslog_lag_records",
                    "Audit records not yet known to have reached the syslog collector",
                    (sizes.audit - cursor.unwrap_or(0)).max(0),
                );
            }
        }
    }
    if !auditor || sealed {
        return r;
    }
    if let Ok(keys) = hsm.key_usage() {
        let uses = Family::<Labels, Gauge>::default();
        let limits = Family::<Labels, Gauge>::default();
        for k in keys {
            let labels = vec![("partition", k.partition), ("key", k.label)];
            uses.get_or_create(&labels).set(k.uses);
            if let Some(l) = k.limit {
                limits.get_or_create(&labels).set(l);
            }
        }
        r.register("kagi_key_uses", "Uses of each key so far", uses);
        r.register(
            "kagi_key_usage_limit",
            "Each limited key's usage limit",
            limits,
        );
    }
    if let Ok(active) = state.policy.active(hsm) {
        let used = Family::<Labels, Gauge>::default();
        let limit = Family::<Labels, Gauge>::default();
        for q in &active.engine.document().quotas {
            let Ok(usage) = hsm.quota_usage(&q.name) else {
                continue;
            };
            for (window, quota, now) in [
                ("total", q.total, usage.total),
                ("hour", q.per_hour, usage.this_hour),
                ("day", q.per_day, usage.today),
            ] {
                let Some(quota) = quota else { continue };
                let labels = vec![
                    ("quota", q.name.clone()),
                    ("identity", q.identity.clone()),
                    ("window", window.to_string()),
                ];
                used.get_or_create(&labels).set(now);
                limit.get_or_create(&labels).set(quota);
            }
        }
        r.register(
            "kagi_quota_used",
            "Uses counted against each policy quota in its current window",
            used,
        );
        r.register(
            "kagi_quota_limit",
            "Each policy quota's limit per window",
            limit,
        );
    }
    r
}
