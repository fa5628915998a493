//! The offer index against the scan it replaced (kept as the oracle,
//! `State::select_by_scan`), on a seeded random market of 1,000 providers
//! whose prices, regions, capabilities, coordinates, stakes and track records
//! differ: every ranking query answers exactly what the scan answers, and the
//! stake draws name only qualified providers, with odds equal to their share
//! of the qualified stake.

use agentic_protocol::coord::Coord;
use agentic_protocol::test_utils::{
    address_of, fast_params, job_spec, key, salt_for, GenesisBuilder, TestChain,
};
use agentic_protocol::tx::{Offer, TxBody};
use agentic_protocol::types::{
    Address, Amount, Capabilities, Endpoint, Hash, JobId, Region, VerificationLevel,
};
use commonware_cryptography::ed25519::PrivateKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

const PROVIDERS: u64 = 1_000;

struct Market {
    chain: TestChain,
    providers: Vec<PrivateKey>,
    requester: PrivateKey,
    rng: ChaCha8Rng,
}

fn coord(rng: &mut ChaCha8Rng) -> Coord {
    Coord::new(
        rng.gen_range(-60_000..60_000),
        rng.gen_range(-60_000..60_000),
        rng.gen_range(0..8_000),
    )
}

impl Market {
    fn new(seed: u64) -> Market {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let providers: Vec<PrivateKey> = (0..PROVIDERS).map(|i| key(50_000 + i)).collect();
        let requester = key(7);
        let mut g = GenesisBuilder::new(1).params(fast_params());
        for k in &providers {
            g = g.account(address_of(k), 1_000_000, 0);
        }
        g = g.account(address_of(&requester), 1 << 100, 0);
        let mut chain = TestChain::new(&g.build());
        chain.check_invariants = true;
        for k in &providers {
            let offer = Offer {
                capabilities: Capabilities(rng.gen_range(1..16)),
                price: Amount(rng.gen_range(1..=2_000)),
                region: Region(rng.gen_range(1..=4)),
                coord: coord(&mut rng),
                capacity: rng.gen_range(1..=3),
                endpoint: Endpoint::NONE,
                speed: 0,
            };
            let stake = Amount(rng.gen_range(10_000..=60_000));
            chain.push(k, TxBody::RegisterProvider { offer, stake });
        }
        let out = chain.produce();
        assert!(out.receipts.iter().all(Result::is_ok));
        Market {
            chain,
            providers,
            requester,
            rng,
        }
    }

    /// Submits `n` single-stage jobs with random requirements in one block;
    /// returns their ids.
    fn submit(&mut self, n: usize, min_reputation: u32) -> Vec<JobId> {
        let first = self.chain.state.meta().next_job;
        for i in 0..n {
            let rng = &mut self.rng;
            let mut spec = job_spec(
                Hash::digest("model", &[]),
                Hash::digest("input", &[&(i as u64).to_be_bytes()]),
                &[(2, 1_000_000)],
                rng.gen_range(50..=2_500),
                VerificationLevel::Optimistic,
            );
            let r = &mut spec.requirements;
            let regions = rng.gen_range(0..=2);
            r.regions = (0..regions).map(|_| Region(rng.gen_range(1..=4))).collect();
            r.regions.sort();
            r.regions.dedup();
            r.capabilities = Capabilities(if rng.gen_bool(0.5) {
                0
            } else {
                1 << rng.gen_range(0..4)
            });
            r.min_stake = Amount([0, 0, 20_000, 40_000][rng.gen_range(0..4)]);
            r.min_reputation_ppm = if rng.gen_bool(0.3) { min_reputation } else { 0 };
            spec.coord = coord(rng);
            let requester = self.requester.clone();
            self.chain.push(&requester, TxBody::SubmitJob { spec });
        }
        let out = self.chain.produce();
        assert!(out.receipts.iter().all(Result::is_ok), "{:?}", out.receipts);
        (first.0..first.0 + n as u64).map(JobId).collect()
    }

    /// Lets the assigned provider of each matched job deliver (three in
    /// four) or miss its deadline, and runs the chain until every job
    /// settled: track records diverge.
    fn work(&mut self, jobs: &[JobId]) {
        let mut delivered = Vec::new();
        for &id in jobs {
            let Some(a) = self.assigned(id) else { continue };
            if !self.rng.gen_bool(0.75) {
                continue;
            }
            let k = self.key_of(&a);
            let trace = self.chain.honest_trace(id, 0).unwrap();
            let result = trace.result();
            let salt = salt_for(&a, id, 0);
            self.chain.push(
                &k,
                TxBody::CommitResult {
                    job: id,
                    stage: 0,
                    commitment: result.commitment(id, 0, &salt, &a),
                },
            );
            delivered.push((id, k, result, salt));
        }
        self.chain.produce();
        for (job, k, result, salt) in delivered {
            self.chain.push(
                &k,
                TxBody::RevealResult {
                    job,
                    stage: 0,
                    result,
                    salt,
                },
            );
        }
        self.chain.produce();
        self.chain.advance(25);
    }

    fn assigned(&self, job: JobId) -> Option<Address> {
        let j = self.chain.state.job(job)?;
        j.stages[0].slots[0].assignment.as_ref().map(|a| a.provider)
    }

    fn key_of(&self, a: &Address) -> PrivateKey {
        self.providers
            .iter()
            .find(|k| address_of(k) == *a)
            .cloned()
            .unwrap()
    }

    /// A reputation threshold some providers pass and others do not.
    fn median_reputation(&self) -> u32 {
        let mut scores: Vec<u32> = self
            .providers
            .iter()
            .map(|k| self.chain.state.reputation_ppm(&address_of(k)))
            .collect();
        scores.sort_unstable();
        scores[scores.len() * 3 / 4]
    }
}

#[test]
fn the_index_ranks_exactly_as_the_scan_on_a_random_market() {
    let mut m = Market::new(11);
    for _ in 0..3 {
        let jobs = m.submit(150, 0);
        m.work(&jobs);
    }
    let threshold = m.median_reputation();
    let distinct: BTreeSet<u32> = m
        .providers
        .iter()
        .map(|k| m.chain.state.reputation_ppm(&address_of(k)))
        .collect();
    assert!(
        distinct.len() > 3,
        "track records should differ: {distinct:?}"
    );

    let jobs = m.submit(400, threshold);
    let mut examined = 0u64;
    let mut found = 0;
    for (i, &id) in jobs.iter().enumerate() {
        // Exclude a few providers, sometimes the scan's own choice.
        let mut exclude: Vec<Address> = (0..i % 4)
            .map(|_| address_of(&m.providers[m.rng.gen_range(0..PROVIDERS as usize)]))
            .collect();
        if i % 5 == 0 {
            exclude.extend(
                m.chain
                    .state
                    .select_by_scan(m.chain.state.job(id).unwrap(), &[])
                    .map(|x| x.0),
            );
        }
        let want = m
            .chain
            .state
            .select_by_scan(m.chain.state.job(id).unwrap(), &exclude);
        let (got, work) = m.chain.state.select_indexed(id, &exclude);
        assert_eq!(got, want, "job {id}: index and scan disagree");
        examined += work;
        found += usize::from(got.is_some());
    }
    assert!(found > 200, "most queries should find a provider ({found})");
    // The branch and bound stops early: far fewer offers than a scan.
    let mean = examined / jobs.len() as u64;
    assert!(mean < PROVIDERS / 5, "examined {mean} offers per query");
}

/// Stake draws, on the same kind of market: only qualified providers, a
/// coalition's odds equal to its share of the qualified stake, and the
/// exact fallback when the index's draws keep landing on unqualified offers.
#[test]
fn stake_draws_pick_qualified_providers_in_proportion_to_stake() {
    let mut m = Market::new(12);
    let jobs = m.submit(1, 0);
    m.work(&jobs);
    let broad = m.submit(1, 0)[0];
    // A job only a handful qualify for: a narrow group, much stake.
    let narrow = {
        let mut spec = job_spec(
            Hash::digest("model", &[]),
            Hash::digest("narrow", &[]),
            &[(2, 1_000_000)],
            2_500,
            VerificationLevel::Optimistic,
        );
        spec.requirements.capabilities = Capabilities(0b1111);
        spec.requirements.min_stake = Amount(57_000);
        let first = m.chain.state.meta().next_job;
        let requester = m.requester.clone();
        m.chain.push(&requester, TxBody::SubmitJob { spec });
        m.chain.produce();
        first
    };
    for (job, draws, coalition_size) in [(broad, 20_000u32, 100usize), (narrow, 4_000, 0)] {
        let qualified: Vec<(Address, u128)> = m
            .providers
            .iter()
            .map(address_of)
            .filter(|a| m.chain.state.qualifies_for(job, a))
            .map(|a| (a, m.chain.state.account(&a).bonded.0))
            .collect();
        assert!(!qualified.is_empty());
        let total: u128 = qualified.iter().map(|q| q.1).sum();
        let coalition: Vec<Address> = if coalition_size == 0 {
            vec![qualified[0].0]
        } else {
            qualified.iter().take(coalition_size).map(|q| q.0).collect()
        };
        let share: u128 = qualified
            .iter()
            .filter(|q| coalition.contains(&q.0))
            .map(|q| q.1)
            .sum();
        let expected = share as f64 / total as f64;
        let (mut hits, mut fallbacks) = (0u32, 0u32);
        for i in 0..draws {
            let seed = Hash::digest("draw test", &[&i.to_be_bytes()]).0;
            let (pick, work) = m.chain.state.draw_indexed(job, &[], &seed);
            let (a, _) = pick.expect("someone qualifies");
            assert!(
                qualified.iter().any(|q| q.0 == a),
                "drew an unqualified provider"
            );
            hits += u32::from(coalition.contains(&a));
            fallbacks += u32::from(work > u64::from(agentic_protocol::state::DRAW_ATTEMPTS));
        }
        let got = f64::from(hits) / f64::from(draws);
        let sigma = (expected * (1.0 - expected) / f64::from(draws)).sqrt();
        assert!(
            (got - expected).abs() < 5.0 * sigma + 1e-9,
            "job {job}: drawn {got:.4}, stake share {expected:.4} (σ {sigma:.4}, {} qualified)",
            qualified.len()
        );
        if job == narrow {
            assert!(qualified.len() < 20, "{} qualify", qualified.len());
            assert!(
                fallbacks > 0,
                "the narrow job never needed the exact fallback"
            );
        }
    }
}

/// A job nobody can serve sleeps: it is not looked at again until an offer
/// that could serve it appears, and then it is matched in that block.
#[test]
fn a_waiting_job_is_matched_when_a_qualifying_offer_appears() {
    let provider = key(1);
    let late = key(2);
    let requester = key(3);
    let g = GenesisBuilder::new(1)
        .params(agentic_protocol::params::Params {
            match_timeout: 1_000,
            ..fast_params()
        })
        .account(address_of(&provider), 1_000_000, 0)
        .account(address_of(&late), 1_000_000, 0)
        .account(address_of(&requester), 1 << 60, 0)
        .build();
    let mut chain = TestChain::new(&g);
    chain.check_invariants = true;
    let cpu = |price| Offer {
        capabilities: Capabilities::CPU,
        price: Amount(price),
        region: Region(1),
        coord: Coord::ORIGIN,
        capacity: 1,
        endpoint: Endpoint::NONE,
        speed: 0,
    };
    chain
        .step(
            &provider,
            TxBody::RegisterProvider {
                offer: cpu(100),
                stake: Amount(20_000),
            },
        )
        .unwrap();
    // Wants a GPU: nobody offers one.
    let mut spec = job_spec(
        Hash::digest("model", &[]),
        Hash::digest("input", &[]),
        &[(2, 1_000_000)],
        1_000,
        VerificationLevel::Optimistic,
    );
    spec.requirements.capabilities = Capabilities::GPU;
    // A stake nobody could ever bond is refused at once, nothing charged.
    let before = chain.state.account(&address_of(&requester));
    let mut impossible = spec.clone();
    impossible.requirements.min_stake = Amount(u128::MAX);
    let err = chain.reject(&requester, TxBody::SubmitJob { spec: impossible });
    assert!(
        matches!(err, agentic_protocol::TxError::InvalidJob(_)),
        "{err:?}"
    );
    assert_eq!(chain.state.account(&address_of(&requester)), before);
    let job = chain.state.meta().next_job;
    chain.step(&requester, TxBody::SubmitJob { spec }).unwrap();
    assert_eq!(
        chain.state.matching_queues(),
        (0, 1),
        "tried once, then waiting"
    );
    chain.advance(5);
    assert_eq!(chain.state.matching_queues(), (0, 1));
    // A CPU offer appearing does not wake it; the same provider offering a
    // GPU does.
    chain
        .step(
            &late,
            TxBody::RegisterProvider {
                offer: cpu(50),
                stake: Amount(20_000),
            },
        )
        .unwrap();
    assert_eq!(chain.state.matching_queues(), (0, 1));
    let gpu = Offer {
        capabilities: Capabilities(Capabilities::CPU.0 | Capabilities::GPU.0),
        ..cpu(900)
    };
    chain
        .step(&late, TxBody::UpdateProvider { offer: gpu })
        .unwrap();
    assert_eq!(chain.state.matching_queues(), (0, 0));
    let j = chain.state.job(job).unwrap();
    let a = j.stages[0].slots[0].assignment.as_ref().expect("matched");
    assert_eq!(a.provider, address_of(&late));
}

/// Matching work per block is bounded: when one block's jobs need more than
/// the budget, the rest are matched in the next blocks, in id order.
#[test]
fn matching_beyond_the_block_budget_carries_over() {
    use agentic_protocol::types::limits::MATCH_WORK_PER_BLOCK;
    // Equal offers: the branch and bound cannot stop early, so every job
    // examines every offer.
    const N: u64 = 1_000;
    let providers: Vec<PrivateKey> = (0..N).map(|i| key(80_000 + i)).collect();
    let requester = key(3);
    let mut g = GenesisBuilder::new(1).params(fast_params());
    for k in &providers {
        g = g.account(address_of(k), 1_000_000, 0);
    }
    let mut chain = TestChain::new(&g.account(address_of(&requester), 1 << 100, 0).build());
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for k in &providers {
        let offer = Offer {
            capabilities: Capabilities::CPU,
            price: Amount(100),
            region: Region(1),
            coord: coord(&mut rng),
            capacity: 1,
            endpoint: Endpoint::NONE,
            speed: 0,
        };
        chain.push(
            k,
            TxBody::RegisterProvider {
                offer,
                stake: Amount(20_000),
            },
        );
    }
    chain.produce();
    let jobs = (MATCH_WORK_PER_BLOCK / N) as usize + 100;
    let first = chain.state.meta().next_job.0;
    for i in 0..jobs {
        let spec = job_spec(
            Hash::digest("model", &[]),
            Hash::digest("input", &[&(i as u64).to_be_bytes()]),
            &[(2, 1_000_000)],
            1_000,
            VerificationLevel::Optimistic,
        );
        chain.push(&requester, TxBody::SubmitJob { spec });
    }
    chain.produce();
    let matched = |chain: &TestChain| {
        (first..first + jobs as u64)
            .filter(|&j| {
                chain.state.job(JobId(j)).unwrap().stages[0].slots[0]
                    .assignment
                    .is_some()
            })
            .count()
    };
    let after_one = matched(&chain);
    assert!(
        after_one > 0 && after_one < jobs,
        "{after_one} of {jobs} matched in the first block"
    );
    // The lowest ids went first.
    assert!(chain.state.job(JobId(first)).unwrap().stages[0].slots[0]
        .assignment
        .is_some());
    assert_eq!(chain.state.matching_queues().0, jobs - after_one);
    chain.produce();
    assert_eq!(
        matched(&chain),
        jobs,
        "the rest are matched in the next block"
    );
}

/// Timers are bounded per block: when more come due at one height than
/// `MAX_TIMERS_PER_BLOCK`, the rest fire in the next block, in order. Here
/// the match timeouts of more jobs than that, all submitted in one block that
/// nobody can serve.
#[test]
fn timers_beyond_the_block_cap_fire_in_the_next_block() {
    use agentic_protocol::event::Event;
    use agentic_protocol::types::limits::MAX_TIMERS_PER_BLOCK;
    let jobs = MAX_TIMERS_PER_BLOCK + 500;
    let requesters: Vec<PrivateKey> = (0..8).map(|i| key(90_000 + i)).collect();
    let mut g = GenesisBuilder::new(1).params(agentic_protocol::params::Params {
        match_timeout: 3,
        ..fast_params()
    });
    for k in &requesters {
        g = g.account(address_of(k), 1 << 100, 0);
    }
    let mut chain = TestChain::new(&g.build());
    for i in 0..jobs {
        let mut spec = job_spec(
            Hash::digest("model", &[]),
            Hash::digest("input", &[&(i as u64).to_be_bytes()]),
            &[(2, 1_000_000)],
            1_000,
            VerificationLevel::Optimistic,
        );
        spec.requirements.capabilities = Capabilities::GPU;
        let k = requesters[i % requesters.len()].clone();
        chain.push(&k, TxBody::SubmitJob { spec });
    }
    let out = chain.produce();
    assert!(out.receipts.iter().all(Result::is_ok));
    assert_eq!(
        chain.state.matching_queues(),
        (0, jobs),
        "all tried, all waiting"
    );
    let cancelled = |out: &agentic_protocol::BlockOutcome| {
        out.events
            .iter()
            .filter(|e| matches!(e.event, Event::JobCancelled { .. }))
            .count()
    };
    let mut per_block = Vec::new();
    for _ in 0..6 {
        let out = chain.produce();
        per_block.push(cancelled(&out));
    }
    // Nothing before the timeout, the capped batch, then the rest.
    assert_eq!(
        per_block,
        vec![0, 0, 0, MAX_TIMERS_PER_BLOCK, 500, 0],
        "cancellations per block"
    );
    assert_eq!(chain.state.matching_queues(), (0, 0));
    assert_eq!(chain.state.root(), chain.state.full_root());
}
