//! What a provider measures about itself: its speed and its place in the network.
//!
//! * **Speed** — operations per second of the compute runtime, measured at start by
//!   running the shipped decoder on a fixed batch for a fixed wall time and dividing
//!   the metered operations by the elapsed time. Reported in the offer
//!   (`Offer::speed`), where requesters' partitioners read it.
//! * **Network coordinate** — Vivaldi ([`agentic_protocol::coord`]): the provider
//!   pings other providers' data planes (`GET /v1/ping`), takes the fastest of a few
//!   round trips to each, and feeds every sample to its [`VivaldiNode`]. The
//!   coordinate goes into the offer, so the ledger's matching can prefer providers near
//!   the requester and near each other without measuring every pair.

use std::time::{Duration, Instant};

use agentic_client::Client;
use agentic_compute::registry;
use agentic_protocol::coord::{Coord, VivaldiNode, VivaldiParams};

/// Measures the runtime's speed (operations per second) for about `budget`.
/// `slowdown` (≥ 1) divides the figure, matching the daemon's emulated slower hardware.
pub fn measure_speed(budget: Duration, slowdown: u32) -> u64 {
    let Ok(m) = registry::load("tiny-gpt") else {
        return 0;
    };
    let text = "The quick brown fox jumps over the lazy dog, again and again.";
    let batch: Vec<&str> = std::iter::repeat_n(text, 8).collect();
    let Ok(input) = m.encode(&batch) else {
        return 0;
    };
    let start = Instant::now();
    let mut ops: u64 = 0;
    while start.elapsed() < budget || ops == 0 {
        match m.model.run(input.clone()) {
            Ok(out) => ops += out.total_ops(),
            Err(_) => return 0,
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    ((ops as f64 / secs) as u64) / u64::from(slowdown.max(1))
}

/// One RTT probe result.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// Fastest round trip seen (µs).
    pub rtt_us: u64,
    /// The remote's Vivaldi state at the time.
    pub remote: VivaldiNode,
}

/// Pings `peer`'s data plane `samples` times; the fastest round trip and the remote's
/// coordinate. `own_delay` emulates this provider's own access-link delay.
pub async fn probe(peer: &Client, samples: usize, own_delay: Duration) -> Option<Probe> {
    let mut best: Option<Probe> = None;
    for _ in 0..samples.max(1) {
        let start = Instant::now();
        if !own_delay.is_zero() {
            tokio::time::sleep(own_delay).await;
        }
        let Ok(ping) = peer.ping().await else {
            continue;
        };
        let rtt_us = start.elapsed().as_micros().max(1) as u64;
        // Rebuilt through `Coord::new`: a peer's numbers are not trusted as they come.
        let c = ping.coord;
        let remote = VivaldiNode {
            coord: Coord::new(c.x, c.y, c.height),
            error_ppm: ping.error_ppm.min(1_000_000),
        };
        if best.is_none_or(|b| rtt_us < b.rtt_us) {
            best = Some(Probe { rtt_us, remote });
        }
    }
    best
}

/// Feeds `rounds` rounds of probes to every peer into `node`; returns the samples used.
pub async fn settle(
    node: &std::sync::Mutex<VivaldiNode>,
    peers: &[Client],
    rounds: usize,
    own_delay: Duration,
) -> usize {
    let params = VivaldiParams::default();
    let mut used = 0;
    for _ in 0..rounds {
        for p in peers {
            if let Some(pr) = probe(p, 3, own_delay).await {
                let mut n = node.lock().unwrap_or_else(|e| e.into_inner());
                if n.observe(&pr.remote, pr.rtt_us, &params) {
                    used += 1;
                }
            }
        }
    }
    used
}
