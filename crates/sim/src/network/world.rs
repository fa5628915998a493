//! Who is where: the seeded cast of the network simulation (validators, providers and
//! requesters placed in cities, their prices, speeds, stakes, behaviours and churn times)
//! and the job arrival process. Everything here is drawn from one seeded stream, before
//! the simulation starts.

use std::time::Duration;

use agentic_protocol::coord::Coord;
use agentic_protocol::test_utils::{address_of, job_spec, key, offer};
use agentic_protocol::tx::{JobSpec, Offer};
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Hash};
use commonware_cryptography::ed25519::PrivateKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::NetworkConfig;
use crate::geo::{Cities, CityId};

/// Seeds of the agents' keys (providers from `PROVIDER_SEED`, requesters after them).
const PROVIDER_SEED: u64 = 1 << 32;
const REQUESTER_SEED: u64 = 1 << 40;

/// Layers per stage of the simulated model.
pub const LAYERS_PER_STAGE: u32 = 4;

/// What a provider does with the work it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Commits, reveals and audits on time.
    Honest,
    /// Takes assignments and audits and never acts on them (non-delivery).
    NoShow,
    /// Commits to its results and never reveals them (withholding).
    Withholder,
}

/// One provider of the cast.
#[derive(Clone, Debug)]
pub struct ProviderSpec {
    /// Signing key.
    pub key: PrivateKey,
    /// Its address.
    pub addr: Address,
    /// Where it runs.
    pub city: CityId,
    /// The validator it talks to (the nearest one).
    pub home: usize,
    /// Offer price per mega-op.
    pub price: u128,
    /// Bonded stake at genesis.
    pub stake: u128,
    /// Metered mega-ops it computes per second.
    pub mops_per_s: u64,
    /// How it behaves.
    pub behaviour: Behaviour,
    /// When it registers its offer by transaction; `None`: registered at genesis (the
    /// network starts with its sellers in place; only late joiners send
    /// `RegisterProvider`).
    pub join_at: Option<Duration>,
    /// When it retires (a leave), if it does.
    pub leave_at: Option<Duration>,
    /// When it crashes (stops acting forever), if it does.
    pub crash_at: Option<Duration>,
}

impl ProviderSpec {
    /// Its standing offer: CPU, two concurrent stages, its city's coordinate.
    pub fn offer(&self, cities: &Cities) -> Offer {
        Offer {
            coord: coord_of(cities, self.city),
            ..offer(self.price, 2)
        }
    }
}

/// One requester of the cast.
#[derive(Clone, Debug)]
pub struct RequesterSpec {
    /// Signing key.
    pub key: PrivateKey,
    /// Its address.
    pub addr: Address,
    /// Where it is.
    pub city: CityId,
    /// The validator it talks to.
    pub home: usize,
}

/// One job of the arrival process.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// When the requester decides to buy.
    pub at: Duration,
    /// Which requester.
    pub requester: usize,
    /// The job.
    pub spec: JobSpec,
}

/// The whole cast.
pub struct World {
    /// The city table.
    pub cities: Cities,
    /// Each validator's city.
    pub validator_cities: Vec<CityId>,
    /// The providers.
    pub providers: Vec<ProviderSpec>,
    /// The requesters.
    pub requesters: Vec<RequesterSpec>,
    /// The jobs, in arrival order.
    pub arrivals: Vec<Arrival>,
}

/// A planar coordinate for a region: an equirectangular projection scaled to one-way
/// fibre microseconds at the measured table's median route factor (what a converged
/// Vivaldi coordinate would roughly show).
pub fn coord_of(cities: &Cities, city: CityId) -> Coord {
    let c = cities.city(city);
    // One degree of great circle ≈ 111.2 km; at 2/3 c that is ≈ 556 µs, × the route factor.
    let us_per_degree = 111.2 / (299_792.458 * 2.0 / 3.0) * 1e6 * crate::geo::ROUTE_FACTOR;
    let x = c.lon * c.lat.to_radians().cos() * us_per_degree;
    let y = c.lat * us_per_degree;
    Coord {
        x: x as i32,
        y: y as i32,
        height: 1_000,
    }
}

impl World {
    /// Draws the cast and the arrivals of `config` from its seed.
    pub fn new(config: &NetworkConfig) -> World {
        let cities = Cities::embedded();
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let n_cities = cities.len();
        // Validators spread over the regions from a seeded offset.
        let offset = rng.gen_range(0..n_cities);
        let validator_cities = cities.spread(offset, config.validators);
        let nearest = |city: CityId| -> usize {
            (0..validator_cities.len())
                .min_by_key(|&v| (cities.rtt(city, validator_cities[v]), v))
                .unwrap_or(0)
        };
        let run = config.duration;
        let at = |rng: &mut ChaCha20Rng, from: Duration, to: Duration| -> Duration {
            let (a, b) = (from.as_millis() as u64, to.as_millis() as u64);
            Duration::from_millis(if b > a { rng.gen_range(a..b) } else { a })
        };
        let mut providers = Vec::with_capacity(config.providers);
        for i in 0..config.providers {
            let key = key(PROVIDER_SEED + i as u64);
            let addr = address_of(&key);
            let city = CityId(rng.gen_range(0..n_cities));
            let draw: f64 = rng.gen();
            let behaviour = if draw < config.no_show_share {
                Behaviour::NoShow
            } else if draw < config.no_show_share + config.withholder_share {
                Behaviour::Withholder
            } else {
                Behaviour::Honest
            };
            let late: f64 = rng.gen();
            let join_at = if late < config.join_share {
                Some(at(&mut rng, run / 10, run / 2))
            } else {
                // Registered at genesis. The draw is still taken (it was the start time
                // of a warm-up registration) so that a seed keeps the same cast.
                at(&mut rng, Duration::ZERO, config.warmup);
                None
            };
            let leave_at =
                (rng.gen::<f64>() < config.leave_share).then(|| at(&mut rng, run / 4, run));
            let crash_at =
                (rng.gen::<f64>() < config.crash_share).then(|| at(&mut rng, run / 4, run));
            providers.push(ProviderSpec {
                key,
                addr,
                city,
                home: nearest(city),
                price: rng.gen_range(50..=500),
                stake: rng.gen_range(10_000..=100_000),
                mops_per_s: rng.gen_range(1_000..=4_000),
                behaviour,
                join_at,
                leave_at,
                crash_at,
            });
        }
        let requesters: Vec<RequesterSpec> = (0..config.requesters)
            .map(|i| {
                let key = key(REQUESTER_SEED + i as u64);
                let addr = address_of(&key);
                let city = CityId(rng.gen_range(0..n_cities));
                RequesterSpec {
                    key,
                    addr,
                    city,
                    home: nearest(city),
                }
            })
            .collect();
        // Poisson arrivals after the warm-up, in the first `arrival_share` of the rest (so
        // the jobs can finish inside the run).
        let mut arrivals = Vec::new();
        let mut t = config.warmup.as_secs_f64();
        let end = config.warmup.as_secs_f64()
            + (run.as_secs_f64() - config.warmup.as_secs_f64()) * config.arrival_share;
        let model = Hash::digest("agentic sim model", &[]);
        let mut n = 0u64;
        loop {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            t += -u.ln() / config.jobs_per_second;
            if t >= end {
                break;
            }
            let requester = rng.gen_range(0..requesters.len().max(1));
            let stages = match rng.gen_range(0..10) {
                0..=6 => 1,
                7..=8 => 2,
                _ => 3,
            };
            let shape: Vec<(u32, u64)> = (0..stages)
                .map(|_| (LAYERS_PER_STAGE, rng.gen_range(200..=4_000) * 1_000_000))
                .collect();
            let input = Hash::digest("agentic sim input", &[&n.to_be_bytes()]);
            n += 1;
            let mut spec = job_spec(model, input, &shape, 1_000, VerificationLevel::Sampled);
            spec.deadline = 60;
            if let Some(r) = requesters.get(requester) {
                spec.coord = coord_of(&cities, r.city);
            }
            arrivals.push(Arrival {
                at: Duration::from_secs_f64(t),
                requester,
                spec,
            });
        }
        World {
            cities,
            validator_cities,
            providers,
            requesters,
            arrivals,
        }
    }
}
