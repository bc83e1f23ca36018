//! Shared helpers for kagi's benchmarks. Every benchmark prints its result next to the raw
//! primitive measured in the same run, as a ratio, because these machines are shared and noisy:
//! a ratio survives a slow day, an absolute number does not.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// Run `op` on `threads` threads for about `dur`; returns operations per second.
pub fn rate<F>(threads: usize, dur: Duration, op: F) -> f64
where
    F: Fn(u64) + Sync,
{
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < dur {
                        op(((t as u64) << 40) | n);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

pub fn report(name: &str, ops: f64, baseline_name: &str, baseline: f64) {
    println!(
        "{name:<58} {ops:>10.0} ops/s   {:>6.3}x {baseline_name}",
        ops / baseline
    );
}
