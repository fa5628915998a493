//! No honest provider is ever slashed: 1,000 `Audited` jobs through the ledger, each
//! stage computed by its provider with the compute runtime on one thread count and
//! recomputed by its auditor on another, each submitting the real trace (input hash,
//! output hash, Merkle root) it got. Every audit must agree, every job complete and
//! pay ops × price per stage, and no `Slashed` event (nor dispute) may ever appear.
//!
//! ```text
//!   job j: model (tiny-gpt | small GPT | small BERT), 1 or 2 stages, its own input
//!     stage s ── provider, pool of THREADS[(j+s) % 3] ──▶ commit ─────────────┐ reveal (real trace)
//!             └─ auditor (drawn at the last commit), any other thread count ──┴▶ AuditCommit,
//!                                                      then AuditReport opening it (real trace)
//! ```
//!
//! A downstream stage commits once its upstream stage has an agreed result (the
//! ledger's rule), and its replicas reveal only after the auditor committed.
//!
//! Inputs are small so the suite stays quick; every 100th job is a 512-token tiny-gpt
//! batch large enough for the kernels to split work across threads (the gemm and GELU
//! parallel thresholds), so the thread count really changes how the work is scheduled.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::time::Instant;

use agentic_compute::models::gpt::SplitMix64;
use agentic_compute::registry::{self, LoadedModel};
use agentic_compute::{Activation, RunOutput};
use agentic_protocol::event::Event;
use agentic_protocol::state::{JobStatus, StagePhase};
use agentic_protocol::test_utils::{
    address_of, fast_params, job_spec, key, offer, salt_for, GenesisBuilder, TestChain,
};
use agentic_protocol::tx::StageResult;
use agentic_protocol::types::{Amount, VerificationLevel};
use agentic_protocol::{Hash, JobId, TxBody};
use rayon::ThreadPool;

const JOBS: usize = 1_000;
const JOBS_PER_BLOCK: usize = 50;
const THREADS: [usize; 3] = [1, 2, 3];
const PROVIDERS: u64 = 6;
/// Per mega-op: the test models are small, and a bill must not round to zero.
const PRICE: u128 = 10_000;

/// A model of the test and its byte vocabulary bound for inputs.
struct TestModel {
    name: &'static str,
    loaded: LoadedModel,
    hash: Hash,
    vocab: u32,
}

/// One planned job: which model, its input, and its stage layer ranges.
struct Plan {
    model: usize,
    input: Activation,
    stages: Vec<Range<usize>>,
}

fn models() -> Vec<TestModel> {
    [
        ("tiny-gpt", registry::load("tiny-gpt").unwrap(), 256),
        ("small-gpt", common::small_gpt(), 256),
        ("small-bert", common::small_bert(), 100),
    ]
    .into_iter()
    .map(|(name, loaded, vocab)| TestModel {
        name,
        hash: Hash::digest("agentic honest audits model", &[name.as_bytes()]),
        loaded,
        vocab,
    })
    .collect()
}

fn plan(j: usize, models: &[TestModel]) -> Plan {
    let mut rng = SplitMix64::new(0xa0d1 + j as u64);
    let large = j % 100 == 99;
    let model = if large { 0 } else { j % models.len() };
    let (lines, len) = if large {
        (16, 32)
    } else {
        (1 + (rng.next_u64() % 2) as usize, 0)
    };
    let seqs: Vec<Vec<u32>> = (0..lines)
        .map(|_| {
            let n = if large {
                len
            } else {
                2 + (rng.next_u64() % 11) as usize
            };
            (0..n)
                .map(|_| (rng.next_u64() % u64::from(models[model].vocab)) as u32)
                .collect()
        })
        .collect();
    let layers = models[model].loaded.model.layers();
    let stages = if j % 2 == 1 {
        vec![0..layers / 2, layers / 2..layers]
    } else {
        std::iter::once(0..layers).collect()
    };
    Plan {
        model,
        input: Activation::tokens(&seqs).unwrap(),
        stages,
    }
}

fn pools() -> Vec<ThreadPool> {
    THREADS
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        })
        .collect()
}

fn stage_result(run: &RunOutput) -> StageResult {
    StageResult {
        input: run.trace.input_hash,
        output: run.trace.output_hash(),
        trace_root: run.trace.root,
        steps: 0,
    }
}

#[test]
fn no_honest_provider_is_slashed_across_1000_audited_jobs_on_different_thread_counts() {
    let started = Instant::now();
    let models = models();
    let pools = pools();
    let plans: Vec<Plan> = (0..JOBS).map(|j| plan(j, &models)).collect();

    let requester = key(1);
    let providers: Vec<_> = (0..PROVIDERS).map(|i| key(10 + i)).collect();
    let mut genesis = GenesisBuilder::new(9).params(fast_params()).account(
        address_of(&requester),
        1_000_000_000_000_000,
        0,
    );
    for p in &providers {
        genesis = genesis.account(address_of(p), 1_000_000_000, 100_000);
    }
    let mut chain = TestChain::new(&genesis.build());
    for p in &providers {
        chain.push(
            p,
            TxBody::RegisterProvider {
                offer: offer(PRICE, 10_000),
                stake: Amount::ZERO,
            },
        );
    }
    let out = chain.produce();
    assert!(out.receipts.iter().all(Result::is_ok), "{:?}", out.receipts);
    let key_of: HashMap<_, _> = providers.iter().map(|k| (address_of(k), k)).collect();

    // Per (job, stage): the provider's run (its output activation feeds the next stage
    // and the auditor) and the thread-pool index it ran on.
    let mut runs: HashMap<(JobId, u32), (RunOutput, usize)> = HashMap::new();
    // Per (job, stage): the auditor's result, committed before the reveals.
    let mut audits: HashMap<(JobId, u32), StageResult> = HashMap::new();
    let mut by_id: HashMap<JobId, usize> = HashMap::new();
    let mut open: BTreeSet<JobId> = BTreeSet::new();
    let mut sent: BTreeSet<(JobId, u32, u8)> = BTreeSet::new();
    let mut thread_pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
    let (mut next, mut completed, mut audits_agreed, mut paid_stages) = (0usize, 0usize, 0, 0);
    let mut slashed = Vec::new();
    let mut disputes = Vec::new();

    for _block in 0..10_000 {
        // New jobs, each stage named to a distinct provider.
        let mut submitted = Vec::new();
        while next < JOBS && submitted.len() < JOBS_PER_BLOCK {
            let p = &plans[next];
            let m = &models[p.model];
            let meter = m.loaded.model.meter(&p.input.input_shape()).unwrap();
            let stages: Vec<(u32, u64)> = p
                .stages
                .iter()
                .map(|r| (r.len() as u32, meter[r.clone()].iter().sum()))
                .collect();
            let mut spec = job_spec(
                m.hash,
                p.input.hash(),
                &stages,
                PRICE,
                VerificationLevel::Audited,
            );
            spec.placement = (0..p.stages.len())
                .map(|s| address_of(&providers[(next + 3 * s) % providers.len()]))
                .collect();
            chain.push(&requester, TxBody::SubmitJob { spec });
            submitted.push(next);
            next += 1;
        }

        // Providers and auditors act on what the ledger says now.
        for &id in &open {
            let j = by_id[&id];
            let p = &plans[j];
            let model = &models[p.model].loaded.model;
            let job = chain.state.job(id).unwrap().clone();
            for (s, st) in job.stages.iter().enumerate() {
                let s32 = s as u32;
                // The auditor drawn when the stage's last replica committed recomputes it
                // from the agreed input (the job input, or the upstream stage's agreed
                // output, whose activation the upstream provider published) and commits.
                if let (
                    StagePhase::Running {
                        reveal_deadline: None,
                    },
                    Some(slot),
                ) = (st.phase, &st.audit)
                {
                    if slot.commitment.is_none() && sent.insert((id, s32, 2)) {
                        let input = if s == 0 {
                            p.input.clone()
                        } else {
                            runs[&(id, s32 - 1)].0.output.clone()
                        };
                        if s > 0 {
                            let agreed = job.stages[s - 1].result.unwrap().output;
                            assert_eq!(input.hash(), agreed);
                        }
                        let (ref provider_run, provider_pool) = runs[&(id, s32)];
                        let pool = (provider_pool + 1 + (j / 3) % 2) % THREADS.len();
                        assert_ne!(pool, provider_pool);
                        let audit = pools[pool]
                            .install(|| model.run_range(p.stages[s].clone(), input))
                            .unwrap();
                        assert_eq!(
                            audit.trace, provider_run.trace,
                            "job {j} ({}) stage {s}: {} threads and {} threads disagree",
                            models[p.model].name, THREADS[provider_pool], THREADS[pool]
                        );
                        thread_pairs.insert((THREADS[provider_pool], THREADS[pool]));
                        let result = stage_result(&audit);
                        let salt = salt_for(&slot.auditor, id, s32);
                        chain.push(
                            key_of[&slot.auditor],
                            TxBody::AuditCommit {
                                job: id,
                                stage: s32,
                                commitment: result.commitment(id, s32, &salt, &slot.auditor),
                            },
                        );
                        audits.insert((id, s32), result);
                    }
                }
                match st.phase {
                    StagePhase::Running { reveal_deadline } => {
                        let a = st.slots[0].assignment.clone().unwrap();
                        let who = key_of[&a.provider];
                        // The ledger takes a commitment once the input is agreed.
                        let input_ready = s == 0 || job.stages[s - 1].result.is_some();
                        if a.commitment.is_none() && input_ready && sent.insert((id, s32, 0)) {
                            let input = if s == 0 {
                                p.input.clone()
                            } else {
                                runs[&(id, s32 - 1)].0.output.clone()
                            };
                            let pool = (j + s) % THREADS.len();
                            let run = pools[pool]
                                .install(|| model.run_range(p.stages[s].clone(), input))
                                .unwrap();
                            let result = stage_result(&run);
                            let salt = salt_for(&a.provider, id, s32);
                            chain.push(
                                who,
                                TxBody::CommitResult {
                                    job: id,
                                    stage: s32,
                                    commitment: result.commitment(id, s32, &salt, &a.provider),
                                },
                            );
                            runs.insert((id, s32), (run, pool));
                        }
                        let upstream_agreed = s == 0 || job.stages[s - 1].result.is_some();
                        if reveal_deadline.is_some()
                            && a.result.is_none()
                            && upstream_agreed
                            && sent.insert((id, s32, 1))
                        {
                            chain.push(
                                who,
                                TxBody::RevealResult {
                                    job: id,
                                    stage: s32,
                                    result: stage_result(&runs[&(id, s32)].0),
                                    salt: salt_for(&a.provider, id, s32),
                                },
                            );
                        }
                    }
                    StagePhase::Auditing { auditor, .. } if sent.insert((id, s32, 3)) => {
                        // The auditor opens the commitment it made before the reveals.
                        let audit = audits[&(id, s32)];
                        assert_eq!(audit.input, st.result.unwrap().input);
                        chain.push(
                            key_of[&auditor],
                            TxBody::AuditReport {
                                job: id,
                                stage: s32,
                                result: audit,
                                salt: salt_for(&auditor, id, s32),
                            },
                        );
                    }
                    _ => {}
                }
            }
        }

        let out = chain.produce();
        for r in &out.receipts {
            assert!(r.is_ok(), "a transaction was rejected: {r:?}");
        }
        let mut new_ids = Vec::new();
        for rec in &out.events {
            match &rec.event {
                Event::JobSubmitted { job, .. } => new_ids.push(*job),
                Event::Slashed { who, amount, .. } => slashed.push((*who, *amount)),
                Event::DisputeOpened { job, stage, .. } => disputes.push((*job, *stage)),
                Event::AuditAgreed { .. } => audits_agreed += 1,
                Event::StagePaid {
                    job, stage, amount, ..
                } => {
                    let ops = chain.state.job(*job).unwrap().spec.stages[*stage as usize].ops;
                    assert_eq!(*amount, Amount::cost(ops, Amount(PRICE)).unwrap());
                    paid_stages += 1;
                }
                Event::JobCompleted { job, .. } => {
                    open.remove(job);
                    completed += 1;
                }
                Event::JobFailed { job, .. } | Event::JobCancelled { job, .. } => {
                    panic!("job {job:?} of honest providers did not complete")
                }
                _ => {}
            }
        }
        assert_eq!(new_ids.len(), submitted.len(), "every job was accepted");
        for (id, j) in new_ids.into_iter().zip(submitted) {
            by_id.insert(id, j);
            open.insert(id);
        }
        assert!(slashed.is_empty(), "honest providers slashed: {slashed:?}");
        assert!(disputes.is_empty(), "honest results disputed: {disputes:?}");
        if next == JOBS && open.is_empty() {
            break;
        }
    }

    let stages: usize = plans.iter().map(|p| p.stages.len()).sum();
    assert_eq!(completed, JOBS, "every job completed");
    assert_eq!(audits_agreed, stages, "every stage was audited and agreed");
    assert_eq!(paid_stages, stages, "every stage was paid ops × price");
    assert_eq!(by_id.len(), JOBS);
    for id in by_id.keys() {
        assert_eq!(chain.state.job(*id).unwrap().status, JobStatus::Completed);
    }
    assert!(chain.state.total_supply_check(), "supply conserved");
    let all_pairs: BTreeSet<(usize, usize)> = THREADS
        .iter()
        .flat_map(|&a| THREADS.iter().map(move |&b| (a, b)))
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        thread_pairs, all_pairs,
        "every ordered pair of thread counts"
    );
    eprintln!(
        "{JOBS} audited jobs ({stages} stages) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
