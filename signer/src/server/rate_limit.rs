//! Per-source rate limits with back-off, for what an anonymous caller can make the service do
//! (refused logins, unseal and recovery shares, and any open route that wants one).
//!
//! A source is the TCP peer's address (an IPv6 address counts by its /64, since one host
//! usually holds the whole prefix). `X-Forwarded-For` is not trusted: behind a proxy every
//! caller shares the proxy's address, which is safe (the limit is per source, never per
//! credential) but coarse. Each source may spend `allowance` events; events drain at
//! `drain_every`, and every event over the allowance blocks the source for twice as long as the
//! last block, from `first_block` up to `max_block`. Memory is bounded: at `max_sources` the
//! idle entries are dropped, then the least recently seen.
//!
//! Use it from a handler:
//!
//! ```ignore
//! let ip = rate_limit::source(&req);
//! state.login_limit.admit(ip)?;            // 429 too_many_attempts while blocked
//! if refused { state.login_limit.record(ip); }
//! // or, to count every request: state.tsa_limit.take(ip)?;
//! ```

use actix_web::HttpRequest;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error_codes::Code;
use super::errors::ApiError;

/// How a [`RateLimiter`] counts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Events a source may spend before back-off starts.
    pub allowance: u32,
    /// One spent event is given back per this interval.
    pub drain_every: Duration,
    pub first_block: Duration,
    pub max_block: Duration,
    /// Sources remembered at once.
    pub max_sources: usize,
}

impl Limits {
    /// Refused logins: `allowance` of them, then back-off from 1 s doubling up to 15 min; one
    /// is forgiven every 6 s.
    pub fn logins(allowance: u32) -> Limits {
        Limits {
            allowance: allowance.max(1),
            drain_every: Duration::from_secs(6),
            first_block: Duration::from_secs(1),
            max_block: Duration::from_secs(15 * 60),
            max_sources: 65_536,
        }
    }

    /// Anonymous time-stamp requests to the opt-in open TSA, each of which signs, audits and
    /// logs: a burst of 60, then one a second, with back-off from 1 s up to 5 min.
    pub fn open_tsa() -> Limits {
        Limits {
            allowance: 60,
            drain_every: Duration::from_secs(1),
            first_block: Duration::from_secs(1),
            max_block: Duration::from_secs(5 * 60),
            max_sources: 65_536,
        }
    }

    /// Refused unseal and recovery shares: a holder mistypes rarely, a forger tries often.
    pub fn shares() -> Limits {
        Limits {
            allowance: 5,
            drain_every: Duration::from_secs(60),
            first_block: Duration::from_secs(5),
            max_block: Duration::from_secs(60 * 60),
            max_sources: 16_384,
        }
    }
}

struct Entry {
    /// Events spent, as of `at`.
    spent: f64,
    at: Instant,
    /// Blocks so far in this run of refusals (the back-off's exponent).
    strikes: u32,
    blocked_until: Option<Instant>,
}

/// A source is blocked: answer 429 and say when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl From<Throttled> for ApiError {
    fn from(t: Throttled) -> Self {
        let secs = t.retry_after.as_secs().max(1);
        ApiError::new(
            Code::TooManyAttempts,
            format!("too many failed attempts from this address: retry in {secs} s"),
        )
        .with_retry_after(secs)
    }
}

pub struct RateLimiter {
    limits: Limits,
    sources: Mutex<HashMap<IpAddr, Entry>>,
}

impl RateLimiter {
    pub fn new(limits: Limits) -> RateLimiter {
        RateLimiter {
            limits,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// `Err` while `ip` is blocked; counts nothing.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Throttled> {
        let now = Instant::now();
        let Ok(mut sources) = self.sources.lock() else {
            return Ok(());
        };
        match sources.get_mut(&key(ip)).and_then(|e| e.blocked_until) {
            Some(until) if until > now => Err(Throttled {
                retry_after: until - now,
            }),
            _ => Ok(()),
        }
    }

    /// Count one event (a refusal) from `ip`; over the allowance it starts or lengthens a
    /// block.
    pub fn record(&self, ip: IpAddr) {
        let now = Instant::now();
        let Ok(mut sources) = self.sources.lock() else {
            return;
        };
        let k = key(ip);
        if !sources.contains_key(&k) && sources.len() >= self.limits.max_sources {
            self.make_room(&mut sources, now);
        }
        let l = self.limits;
        let e = sources.entry(k).or_insert(Entry {
            spent: 0.0,
            at: now,
            strikes: 0,
            blocked_until: None,
        });
        e.spent = drained(e, &l, now);
        e.at = now;
        if e.spent == 0.0 {
            e.strikes = 0;
        }
        e.spent += 1.0;
        if e.spent > f64::from(l.allowance) {
            let block = l
                .first_block
                .saturating_mul(1u32 << e.strikes.min(20))
                .min(l.max_block);
            e.strikes = e.strikes.saturating_add(1);
            e.blocked_until = Some(now + block);
        }
    }

    /// [`admit`](Self::admit), then [`record`](Self::record): for limits on every request
    /// rather than on refusals.
    pub fn take(&self, ip: IpAddr) -> Result<(), Throttled> {
        self.admit(ip)?;
        self.record(ip);
        Ok(())
    }

    fn make_room(&self, sources: &mut HashMap<IpAddr, Entry>, now: Instant) {
        let l = self.limits;
        sources
            .retain(|_, e| drained(e, &l, now) > 0.0 || e.blocked_until.is_some_and(|u| u > now));
        if sources.len() >= l.max_sources {
            if let Some(oldest) = sources.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| *k) {
                sources.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.lock().map(|s| s.len()).unwrap_or(0)
    }
}

fn drained(e: &Entry, l: &Limits, now: Instant) -> f64 {
    let gone = now.duration_since(e.at).as_secs_f64() / l.drain_every.as_secs_f64().max(1e-3);
    (e.spent - gone).max(0.0)
}

/// The key a source counts under: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The request's source: the TCP peer's address (never a forwarded-for header).
pub fn source(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn quick() -> Limits {
        Limits {
            allowance: 3,
            drain_every: Duration::from_secs(3600),
            first_block: Duration::from_secs(3600),
            max_block: Duration::from_secs(7200),
            max_sources: 4,
        }
    }

    #[test]
    fn a_source_is_blocked_after_its_allowance_and_others_are_not() {
        let r = RateLimiter::new(quick());
        for _ in 0..3 {
            r.admit(ip("10.0.0.1")).unwrap();
            r.record(ip("10.0.0.1"));
        }
        r.admit(ip("10.0.0.1")).unwrap();
        r.record(ip("10.0.0.1"));
        let t = r.admit(ip("10.0.0.1")).unwrap_err();
        assert!(t.retry_after > Duration::from_secs(3000));
        r.admit(ip("10.0.0.2")).unwrap();
    }

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_ipv4_as_ipv4() {
        let r = RateLimiter::new(quick());
        for i in 0..4 {
            r.record(ip(&format!("2001:db8::{i}")));
        }
        assert!(r.admit(ip("2001:db8::ffff")).is_err());
        assert!(r.admit(ip("2001:db8:0:1::1")).is_ok());
        for _ in 0..4 {
            r.record(ip("::ffff:10.0.0.9"));
        }
        assert!(r.admit(ip("10.0.0.9")).is_err());
    }

    #[test]
    fn memory_stays_bounded() {
        let r = RateLimiter::new(quick());
        for i in 0..100u8 {
            r.record(ip(&format!("10.1.0.{i}")));
        }
        assert!(r.tracked() <= 4);
    }

    #[test]
    fn take_counts_every_call() {
        let r = RateLimiter::new(quick());
        for _ in 0..4 {
            let _ = r.take(ip("10.0.0.3"));
        }
        assert!(r.take(ip("10.0.0.3")).is_err());
    }
}
