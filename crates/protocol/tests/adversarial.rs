//! Attacks on the ledger, each asserting the safe outcome.
//!
//! One test per item of the adversarial review (issue #13), plus attacks of
//! our own. Every chain here checks, after every block, that the supply is
//! conserved and that the incremental state root equals a full rebuild
//! (`TestChain::check_invariants`).
//!
//! | item | attack | safe outcome |
//! |---|---|---|
//! | 1 | run the cheapest providers, hope to audit yourself; copy the revealed result | auditor drawn by stake at commit; commits before any reveal |
//! | 2 | unbond before losing a dispute | slash covers unbonding stake; no withdraw while disputed |
//! | 3 | retire while your own dispute is open | refused; slashed in full |
//! | 4 | replace a replica after reveals and echo | slot stays empty; no replacement |
//! | 5 | two wrong replicas, only one disputed | both slashed |
//! | 6 | fail a job to get honest stages for free | honest work paid; payer repaid from the slash |
//! | 7 | post jobs over unavailable data to farm penalties | providers claim; the payer compensates them |
//! | 8 | blame a downstream stage for an upstream dispute | its deadline waits |
//! | 9 | vote, unbond, vote again | voted stake locked until the vote ends |
//! | 10 | unbond below a job's `min_stake` while assigned | refused |
//! | 11 | huge jobs for a flat fee | fee per slot |
//! | 12 | cheat inside one unit of one training step | bisected to the step, then the unit; refereed; slashed |

use agentic_protocol::event::Event;
use agentic_protocol::params::{ParamChange, ParamKey, Params};
use agentic_protocol::state::{DisputePhase, JobStatus, StagePhase};
use agentic_protocol::test_utils::{
    address_of, fast_params, job_spec, key, layer_output, offer, salt_for, GenesisBuilder,
    TestChain, Trace,
};
use agentic_protocol::tx::{JobSpec, SignedTx, TxBody};
use agentic_protocol::types::{Amount, Hash, Height, JobId, VerificationLevel};
use agentic_protocol::{Address, DisputeId, TxError};
use commonware_cryptography::ed25519::PrivateKey;

const REQ: u64 = 1;
const OUTSIDER: u64 = 2;

fn model() -> Hash {
    Hash::digest("model", &[b"adversarial"])
}
fn input() -> Hash {
    Hash::digest("input", &[b"x"])
}
fn addr(seed: u64) -> Address {
    address_of(&key(seed))
}

/// A chain with a rich requester and outsider and the given providers
/// `(seed, price, stake)`, each with 100,000 spare balance, capacity 1,000.
fn net_with(params: Params, providers: &[(u64, u128, u128)]) -> TestChain {
    let mut g = GenesisBuilder::new(13).params(params);
    for seed in [REQ, OUTSIDER] {
        g = g.account(addr(seed), 100_000_000, 0);
    }
    for &(seed, _, stake) in providers {
        g = g.account(addr(seed), stake + 100_000, 0);
    }
    let mut chain = TestChain::new(&g.build());
    chain.check_invariants = true;
    for &(seed, price, stake) in providers {
        chain.push(
            &key(seed),
            TxBody::RegisterProvider {
                offer: offer(price, 1_000),
                stake: Amount(stake),
            },
        );
    }
    let out = chain.produce();
    assert!(out.receipts.iter().all(Result::is_ok), "{:?}", out.receipts);
    // Register the requester's and outsider's keys with the chain.
    chain.keys.insert(addr(REQ), key(REQ));
    chain.keys.insert(addr(OUTSIDER), key(OUTSIDER));
    chain
}

fn net(providers: &[(u64, u128, u128)]) -> TestChain {
    net_with(fast_params(), providers)
}

fn submit(chain: &mut TestChain, spec: JobSpec) -> JobId {
    let id = chain.state.meta().next_job;
    chain
        .step(&key(REQ), TxBody::SubmitJob { spec })
        .expect("job accepted");
    id
}

fn spec(stages: &[(u32, u64)], level: VerificationLevel) -> JobSpec {
    job_spec(model(), input(), stages, 10, level)
}

fn replicated(n: u8) -> JobSpec {
    let mut s = spec(&[(4, 1_000_000)], VerificationLevel::Optimistic);
    s.requirements.replicas = n;
    s
}

fn slot(chain: &TestChain, job: JobId, stage: usize, r: usize) -> Address {
    chain.state.job(job).unwrap().stages[stage].slots[r]
        .assignment
        .as_ref()
        .expect("assigned")
        .provider
}

fn key_at(chain: &TestChain, a: Address) -> PrivateKey {
    chain.keys.get(&a).cloned().expect("a key this chain knows")
}

fn commit(chain: &mut TestChain, who: Address, job: JobId, stage: u32, t: &Trace) {
    let k = key_at(chain, who);
    let salt = salt_for(&who, job, stage);
    chain.push(
        &k,
        TxBody::CommitResult {
            job,
            stage,
            commitment: t.result().commitment(job, stage, &salt, &who),
        },
    );
}

fn reveal(chain: &mut TestChain, who: Address, job: JobId, stage: u32, t: &Trace) {
    let k = key_at(chain, who);
    chain.push(
        &k,
        TxBody::RevealResult {
            job,
            stage,
            result: t.result(),
            salt: salt_for(&who, job, stage),
        },
    );
}

fn events(outs: &[agentic_protocol::BlockOutcome]) -> Vec<Event> {
    outs.iter()
        .flat_map(|o| o.events.iter().map(|e| e.event.clone()))
        .collect()
}

fn produce(chain: &mut TestChain) -> Vec<Event> {
    let out = chain.produce();
    assert!(out.receipts.iter().all(Result::is_ok), "{:?}", out.receipts);
    events(&[out])
}

fn honest(first: u32, layers: u32, input: Hash) -> Trace {
    Trace::honest(&model(), first, layers, input)
}

fn cheat(first: u32, layers: u32, input: Hash, bad: u32) -> Trace {
    Trace::cheating(&model(), first, layers, input, bad)
}

fn slashed(evs: &[Event], who: Address) -> Amount {
    evs.iter()
        .filter_map(|e| match e {
            Event::Slashed { who: w, amount, .. } if *w == who => Some(*amount),
            _ => None,
        })
        .fold(Amount::ZERO, Amount::saturating_add)
}

/// A stage whose worker cheats under an audit: returns the job, the
/// dispute and the events so far. The auditor is drawn among `others`.
fn audited_cheat(chain: &mut TestChain, worker: Address) -> (JobId, DisputeId, Vec<Event>) {
    let job = submit(chain, spec(&[(8, 10_000_000)], VerificationLevel::Audited));
    assert_eq!(slot(chain, job, 0, 0), worker);
    let bad = cheat(0, 8, input(), 2);
    let k = key_at(chain, worker);
    chain.deliver(&k, job, 0, &bad).unwrap();
    let dispute = chain.state.meta().next_dispute;
    chain.audit_report(job, 0).unwrap();
    assert!(chain.state.dispute(dispute).is_some());
    (job, dispute, Vec::new())
}

/// Plays a dispute where the challenger keeps moving with `honest` and the
/// defendant moves with `def` (or stays silent). Returns every event.
fn play(
    chain: &mut TestChain,
    id: DisputeId,
    def: Option<&Trace>,
    chal: &Trace,
    max_blocks: u64,
) -> Vec<Event> {
    let mut evs = Vec::new();
    for _ in 0..max_blocks {
        let d = chain.state.dispute(id).unwrap().clone();
        if d.phase == DisputePhase::Resolved {
            break;
        }
        if d.phase == DisputePhase::Bisecting {
            if let Some(mid) = d.game.midpoint() {
                if d.challenger_move.is_none() {
                    let (leaf, proof) = chal.open(mid).unwrap();
                    let k = key_at(chain, d.challenger);
                    chain.push(
                        &k,
                        TxBody::Bisect {
                            dispute: id,
                            leaf,
                            proof,
                        },
                    );
                }
                if let (Some(t), None) = (def, d.defendant_move) {
                    let (leaf, proof) = t.open(mid).unwrap();
                    let k = key_at(chain, d.defendant);
                    chain.push(
                        &k,
                        TxBody::Bisect {
                            dispute: id,
                            leaf,
                            proof,
                        },
                    );
                }
            }
        }
        evs.extend(produce(chain));
    }
    assert_eq!(
        chain.state.dispute(id).unwrap().phase,
        DisputePhase::Resolved,
        "dispute {id} did not end"
    );
    evs
}

// ---------------------------------------------------------------------------
// 1. Predictable auditor
// ---------------------------------------------------------------------------

/// The worker's partner runs the second-cheapest offer, which used to make
/// it the auditor of every job. Now the auditor is drawn by stake among the
/// qualified: the partner (one fifth of the eligible stake) audits about a
/// fifth of the jobs, and never all of them.
#[test]
fn item_1_the_cheapest_partner_does_not_become_the_auditor() {
    let (w, partner) = (10, 11);
    let mut providers = vec![(w, 1, 10_000), (partner, 2, 10_000)];
    providers.extend((12..16).map(|s| (s, 9, 10_000)));
    let mut chain = net(&providers);
    let jobs = 40;
    let mut by_partner = 0;
    let mut auditors = std::collections::BTreeSet::new();
    for _ in 0..jobs {
        let job = submit(
            &mut chain,
            spec(&[(4, 1_000_000)], VerificationLevel::Audited),
        );
        assert_eq!(slot(&chain, job, 0, 0), addr(w));
        let t = honest(0, 4, input());
        chain.deliver(&key(w), job, 0, &t).unwrap();
        let auditor = chain.auditor_of(job, 0).expect("audited");
        assert_ne!(auditor, addr(w), "a worker never audits itself");
        auditors.insert(auditor);
        if auditor == addr(partner) {
            by_partner += 1;
        }
        chain.audit_report(job, 0).unwrap();
    }
    chain.advance(5);
    // Five eligible providers of equal stake: the partner's share is 1/5.
    assert!(
        by_partner <= jobs / 5 + 8,
        "partner audited {by_partner} of {jobs}"
    );
    assert!(auditors.len() >= 4, "auditors drawn: {}", auditors.len());
    // All the jobs completed and every provider's load is back to zero.
    for (_, p) in chain.state.providers() {
        assert_eq!((p.active, p.open), (0, 0));
    }
    assert_eq!(chain.state.obligation_index_sizes(), (0, 0, 0));
}

/// A lazy auditor cannot copy: replicas reveal only after the auditor's
/// commitment, and its report must open that commitment. Copying the
/// revealed result is refused, and an auditor that never commits is
/// penalized and replaced by a fresh draw (the stage stays audited).
#[test]
fn item_1_a_lazy_auditor_cannot_copy_the_revealed_result() {
    let mut chain = net(&[(10, 1, 10_000), (11, 5, 10_000), (12, 5, 10_000)]);
    chain.auto_audit = false;
    let job = submit(
        &mut chain,
        spec(&[(4, 1_000_000)], VerificationLevel::Audited),
    );
    let w = slot(&chain, job, 0, 0);
    let t = honest(0, 4, input());
    commit(&mut chain, w, job, 0, &t);
    produce(&mut chain);
    let first = chain.auditor_of(job, 0).expect("drawn at commit");
    // No reveal before the auditor commits.
    let salt = salt_for(&w, job, 0);
    assert_eq!(
        chain.reject(
            &key_at(&chain, w),
            TxBody::RevealResult {
                job,
                stage: 0,
                result: t.result(),
                salt
            }
        ),
        TxError::RevealTooEarly
    );
    // The first auditor stays silent: penalized, excluded, replaced.
    let before = chain.state.slashable(&first);
    let evs = events(&chain.advance(fast_params().audit_window + 1));
    assert!(evs.contains(&Event::AuditMissed {
        job,
        stage: 0,
        auditor: first
    }));
    assert!(chain.state.slashable(&first) < before);
    let second = chain.auditor_of(job, 0).expect("a fresh draw");
    assert_ne!(second, first);
    // The second auditor commits blindly (garbage), then tries to report the
    // worker's revealed result: the commitment does not open.
    let garbage = cheat(0, 4, input(), 0);
    chain.audit_commit(job, 0, &garbage).unwrap();
    reveal(&mut chain, w, job, 0, &t);
    produce(&mut chain);
    assert!(matches!(
        chain.state.job(job).unwrap().stages[0].phase,
        StagePhase::Auditing { .. }
    ));
    let copied = TxBody::AuditReport {
        job,
        stage: 0,
        result: t.result(),
        salt: salt_for(&second, job, 0),
    };
    assert_eq!(
        chain.reject(&key_at(&chain, second), copied),
        TxError::AuditCommitmentMismatch
    );
}

/// Replicas beyond the first are drawn by stake too, never the worker, and
/// the auditor of a replicated stage is none of its replicas.
#[test]
fn item_1_replicas_and_auditors_are_drawn_and_independent() {
    let providers: Vec<(u64, u128, u128)> = (10..16).map(|s| (s, s as u128 - 9, 10_000)).collect();
    let mut chain = net(&providers);
    let mut seconds = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let mut s = spec(&[(4, 1_000_000)], VerificationLevel::Audited);
        s.requirements.replicas = 2;
        let job = submit(&mut chain, s);
        let (a, b) = (slot(&chain, job, 0, 0), slot(&chain, job, 0, 1));
        assert_eq!(a, addr(10), "replica 0 is the best offer");
        assert_ne!(a, b);
        seconds.insert(b);
        let t = honest(0, 4, input());
        commit(&mut chain, a, job, 0, &t);
        commit(&mut chain, b, job, 0, &t);
        produce(&mut chain);
        let auditor = chain.auditor_of(job, 0).expect("audited");
        assert!(auditor != a && auditor != b);
        chain.commit_pending_audit(job, 0).unwrap();
        reveal(&mut chain, a, job, 0, &t);
        reveal(&mut chain, b, job, 0, &t);
        produce(&mut chain);
        chain.audit_report(job, 0).unwrap();
    }
    assert!(seconds.len() >= 3, "second replicas: {seconds:?}");
}

// ---------------------------------------------------------------------------
// 2. Slash dodging by unbonding
// ---------------------------------------------------------------------------

#[test]
fn item_2_unbonding_does_not_dodge_a_slash() {
    let w = 10;
    let mut chain = net(&[(w, 1, 100_000), (11, 5, 10_000), (12, 5, 10_000)]);
    let (job, dispute, _) = audited_cheat(&mut chain, addr(w));
    // Caught: unbond 90,000 before the dispute ends (allowed: 10,000 stays).
    chain
        .step(
            &key(w),
            TxBody::Unbond {
                amount: Amount(90_000),
            },
        )
        .unwrap();
    // Nothing leaves the ledger's reach while the dispute is open.
    let evs = play(
        &mut chain,
        dispute,
        Some(&cheat(0, 8, input(), 2)),
        &honest(0, 8, input()),
        40,
    );
    // Slashed 50% of everything staked at the offence: 50,000, not 5,000.
    assert_eq!(slashed(&evs, addr(w)), Amount(50_000));
    assert_eq!(chain.state.slashable(&addr(w)), Amount(50_000));
    assert_eq!(chain.state.account(&addr(w)).bonded, Amount::ZERO);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Failed);
    // After the unbonding delay the rest can be withdrawn, and no more.
    chain.advance(fast_params().unbonding_delay + 1);
    assert_eq!(chain.state.account(&addr(w)).withdrawable, Amount(50_000));
}

#[test]
fn item_2_released_stake_cannot_be_withdrawn_during_a_dispute() {
    let w = 10;
    let mut chain = net(&[(w, 1, 40_000), (11, 5, 10_000), (12, 5, 10_000)]);
    // Stake unbonded (and released) before the offence is still slashable
    // until it is withdrawn.
    chain
        .step(
            &key(w),
            TxBody::Unbond {
                amount: Amount(20_000),
            },
        )
        .unwrap();
    chain.advance(fast_params().unbonding_delay + 1);
    assert_eq!(chain.state.account(&addr(w)).withdrawable, Amount(20_000));
    let (_job, dispute, _) = audited_cheat(&mut chain, addr(w));
    assert_eq!(
        chain.reject(
            &key(w),
            TxBody::Withdraw {
                amount: Amount(20_000)
            }
        ),
        TxError::OpenObligations {
            jobs: 1,
            disputes: 1
        }
    );
    let evs = play(&mut chain, dispute, None, &honest(0, 8, input()), 40);
    assert_eq!(slashed(&evs, addr(w)), Amount(20_000));
    assert_eq!(chain.state.slashable(&addr(w)), Amount(20_000));
}

// ---------------------------------------------------------------------------
// 3. Retire out of a dispute
// ---------------------------------------------------------------------------

/// A two-stage audited pipeline where both stages cheat. Stage 0's dispute
/// is played slowly by both parties; stage 1's defendant is silent, so its
/// dispute ends first and fails the job. Stage 0's defendant, whose own
/// dispute is still open, tries to leave.
#[test]
fn item_3_a_defendant_cannot_retire_out_of_its_dispute() {
    let (a, b) = (10, 11);
    // Rounds of 8 blocks: stage 0's dispute outlives stage 1's delivery.
    let params = Params {
        dispute_timeout: 8,
        unbonding_delay: 20,
        ..fast_params()
    };
    let mut chain = net_with(
        params,
        &[
            (a, 1, 20_000),
            (b, 2, 20_000),
            (12, 5, 10_000),
            (13, 5, 10_000),
        ],
    );
    let job = submit(
        &mut chain,
        spec(
            &[(32, 1_000_000), (4, 1_000_000)],
            VerificationLevel::Audited,
        ),
    );
    assert_eq!(slot(&chain, job, 0, 0), addr(a));
    assert_eq!(slot(&chain, job, 1, 0), addr(b));
    // 32 layers: 5 slow rounds, longer than stage 1's whole dispute.
    let bad0 = cheat(0, 32, input(), 1);
    chain.deliver(&key(a), job, 0, &bad0).unwrap();
    let d0 = chain.state.meta().next_dispute;
    chain.audit_report(job, 0).unwrap();
    let honest0 = chain.audits[&(job, 0)].clone();
    // Stage 1 works on stage 0's (wrong, but agreed) output, and cheats too.
    let bad1 = cheat(32, 4, bad0.result().output, 2);
    chain.deliver(&key(b), job, 1, &bad1).unwrap();
    let d1 = chain.state.meta().next_dispute;
    chain.audit_report(job, 1).unwrap();
    let honest1 = chain.audits[&(job, 1)].clone();
    // Each block: in d0 both parties move on the last block of the round;
    // in d1 only the challenger moves.
    for _ in 0..20 {
        if chain.state.dispute(d1).unwrap().phase == DisputePhase::Resolved {
            break;
        }
        let next = chain.state.height().plus(1);
        for (id, def, chal) in [(d0, Some(&bad0), &honest0), (d1, None, &honest1)] {
            let d = chain.state.dispute(id).unwrap().clone();
            let Some(mid) = d
                .game
                .midpoint()
                .filter(|_| d.phase == DisputePhase::Bisecting)
            else {
                continue;
            };
            if id == d0 && next != d.deadline {
                continue;
            }
            if d.challenger_move.is_some() {
                continue;
            }
            let mut moves = vec![(d.challenger, chal)];
            if let Some(t) = def {
                moves.push((d.defendant, t));
            }
            for (who, t) in moves {
                let (leaf, proof) = t.open(mid).unwrap();
                let k = key_at(&chain, who);
                chain.push(
                    &k,
                    TxBody::Bisect {
                        dispute: id,
                        leaf,
                        proof,
                    },
                );
            }
        }
        produce(&mut chain);
    }
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Failed);
    assert_eq!(
        chain.state.dispute(d0).unwrap().phase,
        DisputePhase::Bisecting
    );
    // Both parties of stage 0's dispute make this round's move now, so the
    // exits below are tried in the middle of a live game.
    let d = chain.state.dispute(d0).unwrap().clone();
    let mid = d.game.midpoint().unwrap();
    for (who, t) in [(d.defendant, &bad0), (d.challenger, &honest0)] {
        let (leaf, proof) = t.open(mid).unwrap();
        let k = key_at(&chain, who);
        chain.push(
            &k,
            TxBody::Bisect {
                dispute: d0,
                leaf,
                proof,
            },
        );
    }
    produce(&mut chain);
    // Stage 0's defendant tries every exit.
    assert!(matches!(
        chain.reject(&key(a), TxBody::Retire),
        TxError::OpenAssignments(_) | TxError::OpenObligations { disputes: 1, .. }
    ));
    assert_eq!(chain.state.open_disputes(&addr(a)), vec![d0]);
    assert!(matches!(
        chain.reject(
            &key(a),
            TxBody::Unbond {
                amount: Amount(20_000)
            }
        ),
        TxError::InsufficientStake { .. }
    ));
    chain
        .step(
            &key(a),
            TxBody::Unbond {
                amount: Amount(10_000),
            },
        )
        .unwrap();
    let evs = play(&mut chain, d0, Some(&bad0), &honest0, 40);
    // Slashed in full: half of the 20,000 it staked, unbonding included.
    assert_eq!(slashed(&evs, addr(a)), Amount(10_000));
    assert!(matches!(
        chain.state.dispute(d0).unwrap().phase,
        DisputePhase::Resolved
    ));
    // Now it may go.
    chain.step(&key(a), TxBody::Retire).unwrap();
}

// ---------------------------------------------------------------------------
// 4. Echo replica
// ---------------------------------------------------------------------------

#[test]
fn item_4_a_replica_missing_after_reveals_is_not_replaced() {
    let providers: Vec<(u64, u128, u128)> = (10..15).map(|s| (s, 1, 10_000)).collect();
    let mut chain = net(&providers);
    let job = submit(&mut chain, replicated(3));
    let reps: Vec<Address> = (0..3).map(|r| slot(&chain, job, 0, r)).collect();
    let t = honest(0, 4, input());
    for &r in &reps {
        commit(&mut chain, r, job, 0, &t);
    }
    produce(&mut chain);
    reveal(&mut chain, reps[0], job, 0, &t);
    reveal(&mut chain, reps[1], job, 0, &t);
    produce(&mut chain);
    // The third never reveals: once the others' results are public, a
    // replacement could only echo them, so nobody replaces it.
    let evs = events(&chain.advance(fast_params().reveal_window + 8));
    assert!(evs.iter().any(|e| matches!(e,
        Event::DeadlineMissed { provider, .. } if *provider == reps[2])));
    assert!(!evs.iter().any(|e| matches!(e, Event::StageAssigned { .. })));
    let j = chain.state.job(job).unwrap();
    assert_eq!(j.status, JobStatus::Completed);
    assert!(j.stages[0].slots[2].assignment.is_none());
    // The two that revealed were paid; the missing one's escrow came back.
    for r in &reps[..2] {
        assert!(evs.contains(&Event::StagePaid {
            job,
            stage: 0,
            provider: *r,
            amount: Amount(1)
        }));
    }
}

#[test]
fn item_4_before_any_reveal_a_missing_replica_is_replaced() {
    let providers: Vec<(u64, u128, u128)> = (10..15).map(|s| (s, 1, 10_000)).collect();
    let mut chain = net(&providers);
    let job = submit(&mut chain, replicated(2));
    let reps: Vec<Address> = (0..2).map(|r| slot(&chain, job, 0, r)).collect();
    let t = honest(0, 4, input());
    commit(&mut chain, reps[0], job, 0, &t);
    produce(&mut chain);
    // The second never commits: nothing is public, so it is replaced.
    let evs = events(&chain.advance(12));
    assert!(evs.iter().any(|e| matches!(e,
        Event::StageAssigned { replica: 1, provider, .. } if *provider != reps[1])));
}

// ---------------------------------------------------------------------------
// 5. Every wrong replica is slashed
// ---------------------------------------------------------------------------

#[test]
fn item_5_every_replica_with_a_refuted_output_is_slashed() {
    let providers: Vec<(u64, u128, u128)> = (10..15).map(|s| (s, 1, 10_000)).collect();
    let mut chain = net(&providers);
    let job = submit(&mut chain, replicated(3));
    let reps: Vec<Address> = (0..3).map(|r| slot(&chain, job, 0, r)).collect();
    let good = honest(0, 4, input());
    let bad = cheat(0, 4, input(), 1);
    for (r, t) in reps.iter().zip([&good, &bad, &bad]) {
        commit(&mut chain, *r, job, 0, t);
    }
    produce(&mut chain);
    for (r, t) in reps.iter().zip([&good, &bad, &bad]) {
        reveal(&mut chain, *r, job, 0, t);
    }
    let dispute = chain.state.meta().next_dispute;
    produce(&mut chain);
    let d = chain.state.dispute(dispute).unwrap().clone();
    assert_eq!((d.defendant, d.challenger), (reps[0], reps[1]));
    let evs = play(&mut chain, dispute, Some(&good), &bad, 40);
    // Both wrong replicas lose half their stake, not only the disputing one.
    assert_eq!(slashed(&evs, reps[1]), Amount(5_000));
    assert_eq!(slashed(&evs, reps[2]), Amount(5_000));
    assert_eq!(slashed(&evs, reps[0]), Amount::ZERO);
    let evs = events(&chain.advance(8));
    assert!(evs.contains(&Event::StagePaid {
        job,
        stage: 0,
        provider: reps[0],
        amount: Amount(1)
    }));
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
}

// ---------------------------------------------------------------------------
// 6. Honest work is paid when someone else cheats
// ---------------------------------------------------------------------------

#[test]
fn item_6_honest_co_replicas_are_paid_when_the_defendant_lied() {
    let providers: Vec<(u64, u128, u128)> = (10..15).map(|s| (s, 1, 10_000)).collect();
    let mut chain = net(&providers);
    let job = submit(&mut chain, replicated(3));
    let reps: Vec<Address> = (0..3).map(|r| slot(&chain, job, 0, r)).collect();
    let good = honest(0, 4, input());
    let bad = cheat(0, 4, input(), 1);
    for (r, t) in reps.iter().zip([&bad, &good, &good]) {
        commit(&mut chain, *r, job, 0, t);
    }
    produce(&mut chain);
    for (r, t) in reps.iter().zip([&bad, &good, &good]) {
        reveal(&mut chain, *r, job, 0, t);
    }
    let dispute = chain.state.meta().next_dispute;
    produce(&mut chain);
    let evs = play(&mut chain, dispute, Some(&bad), &good, 40);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Failed);
    assert_eq!(slashed(&evs, reps[0]), Amount(5_000));
    for r in &reps[1..] {
        assert!(
            evs.contains(&Event::StagePaid {
                job,
                stage: 0,
                provider: *r,
                amount: Amount(1)
            }),
            "honest replica {r} unpaid"
        );
    }
}

/// A requester names its own stand-in for the last stage, which gets caught,
/// hoping the failed job leaves the honest first stage unpaid. The honest
/// stage is paid its full bill, the payer is repaid from the stand-in's slash
/// first, and the coalition (requester + stand-in) loses money.
#[test]
fn item_6_a_stand_in_last_stage_does_not_get_the_pipeline_for_free() {
    let (honest_p, stand_in) = (10, 11);
    // A long challenge window: stage 0 is still challengeable when the job fails.
    let params = Params {
        challenge_window: 30,
        unbonding_delay: 40,
        ..fast_params()
    };
    let mut chain = net_with(
        params,
        &[
            (honest_p, 3, 10_000),
            (stand_in, 4, 10_000),
            (12, 5, 10_000),
            (13, 5, 10_000),
        ],
    );
    let mut s = spec(
        &[(4, 2_000_000), (4, 2_000_000)],
        VerificationLevel::Audited,
    );
    s.placement = vec![addr(honest_p), addr(stand_in)];
    let coalition = |c: &TestChain| {
        c.state.balance(&addr(REQ)).0
            + c.state.slashable(&addr(stand_in)).0
            + c.state.balance(&addr(stand_in)).0
    };
    let before = coalition(&chain);
    let hp_before = chain.state.balance(&addr(honest_p));
    let job = submit(&mut chain, s);
    let t0 = honest(0, 4, input());
    chain.deliver(&key(honest_p), job, 0, &t0).unwrap();
    chain.audit_report(job, 0).unwrap();
    let bad1 = cheat(4, 4, t0.result().output, 1);
    chain.deliver(&key(stand_in), job, 1, &bad1).unwrap();
    let d = chain.state.meta().next_dispute;
    chain.audit_report(job, 1).unwrap();
    let honest1 = chain.audits[&(job, 1)].clone();
    let mut evs = play(&mut chain, d, None, &honest1, 40);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Failed);
    assert!(matches!(
        chain.state.job(job).unwrap().stages[0].phase,
        StagePhase::Challengeable { .. }
    ));
    evs.extend(events(&chain.advance(32)));
    // Stage 0 finished its challenge window and was paid: 2 mega-ops × 3.
    assert!(evs.contains(&Event::StagePaid {
        job,
        stage: 0,
        provider: addr(honest_p),
        amount: Amount(6)
    }));
    assert_eq!(
        chain.state.balance(&addr(honest_p)).0,
        hp_before.0 + 6 - 2 * fast_params().min_fee.0
    );
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::PayerCompensated { amount, .. } if *amount == Amount(6))));
    assert!(evs.iter().any(|e| matches!(e, Event::JobSettled { .. })));
    assert_eq!(chain.state.job(job).unwrap().escrow, Amount::ZERO);
    assert!(coalition(&chain) < before, "the coalition profited");
}

// ---------------------------------------------------------------------------
// 7. Penalty farming
// ---------------------------------------------------------------------------

#[test]
fn item_7_zero_hashes_are_refused() {
    let mut chain = net(&[(10, 1, 10_000)]);
    let mut s = spec(&[(4, 1_000_000)], VerificationLevel::Optimistic);
    s.model = Hash::ZERO;
    assert_eq!(
        chain.reject(&key(REQ), TxBody::SubmitJob { spec: s.clone() }),
        TxError::ZeroHash("model".into())
    );
    s.model = model();
    s.input = Hash::ZERO;
    assert_eq!(
        chain.reject(&key(REQ), TxBody::SubmitJob { spec: s }),
        TxError::ZeroHash("input".into())
    );
}

#[test]
fn item_7_a_requester_whose_data_is_unavailable_pays_the_penalties() {
    let p = 10;
    let mut chain = net(&[(p, 1, 10_000), (11, 9, 10_000)]);
    chain.referee.unavailable_inputs.insert(input());
    let req_before = chain.state.balance(&addr(REQ));
    let p_before = chain.state.balance(&addr(p));
    // Escrow 300 (30 mega-ops × 10): enough to pay the provider's 100.
    let job = submit(
        &mut chain,
        spec(&[(4, 30_000_000)], VerificationLevel::Optimistic),
    );
    assert_eq!(slot(&chain, job, 0, 0), addr(p));
    // Only an assigned provider that has not committed may claim.
    assert_eq!(
        chain.reject(&key(OUTSIDER), TxBody::ClaimUnavailable { job }),
        TxError::NotClaimant
    );
    chain
        .step(&key(p), TxBody::ClaimUnavailable { job })
        .unwrap();
    assert_eq!(
        chain.reject(&key(p), TxBody::ClaimUnavailable { job }),
        TxError::ClaimPending
    );
    // The deadline passes while the claim is checked: no penalty.
    let evs = events(&chain.advance(fast_params().dispute_timeout + 12));
    assert!(!evs
        .iter()
        .any(|e| matches!(e, Event::DeadlineMissed { .. })));
    let comp = Amount(10_000).mul_ppm(fast_params().miss_penalty_ppm);
    assert!(
        evs.iter().any(|e| matches!(e,
        Event::DataUnavailable { job: j, compensation, .. } if *j == job && *compensation == comp))
    );
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Cancelled);
    // The provider came out ahead of its fee; the requester paid for it.
    let fee = fast_params().min_fee.0;
    assert_eq!(chain.state.balance(&addr(p)).0, p_before.0 + comp.0 - fee);
    let submit_fee = fee + fast_params().fee_per_slot.0;
    assert_eq!(
        chain.state.balance(&addr(REQ)).0,
        req_before.0 - submit_fee - comp.0
    );
}

#[test]
fn item_7_a_false_unavailability_claim_costs_the_claimant() {
    let p = 10;
    let mut chain = net(&[(p, 1, 10_000), (11, 9, 10_000)]);
    let job = submit(
        &mut chain,
        spec(&[(4, 3_000_000)], VerificationLevel::Optimistic),
    );
    let deadline = chain.state.job(job).unwrap().stages[0].slots[0]
        .assignment
        .as_ref()
        .unwrap()
        .deadline;
    // The referee answers in the claim's own block: the data is there.
    chain.push(&key(p), TxBody::ClaimUnavailable { job });
    let evs = produce(&mut chain);
    let penalty = Amount(10_000).mul_ppm(fast_params().miss_penalty_ppm);
    assert!(evs.contains(&Event::ClaimRejected {
        job,
        claimant: addr(p),
        penalty
    }));
    // Its deadline moved by the wait, and the job goes on to completion.
    let moved = chain.state.job(job).unwrap().stages[0].slots[0]
        .assignment
        .as_ref()
        .unwrap()
        .deadline;
    // Answered in the claim's own block: no wait to add.
    assert_eq!(moved, deadline);
    chain
        .deliver(&key(p), job, 0, &honest(0, 4, input()))
        .unwrap();
    chain.advance(6);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
}

/// A claim the validators never answer (blocks without verdicts) does not
/// hold the job forever: it lapses `referee_timeout` blocks after its
/// patience, nobody penalized, and the job's deadline moves by the wait.
#[test]
fn item_7_an_unanswered_claim_lapses_without_a_penalty() {
    let p = 10;
    let params = Params {
        referee_timeout: 20,
        ..fast_params()
    };
    let mut chain = net_with(params.clone(), &[(p, 1, 10_000), (11, 9, 10_000)]);
    let job = submit(
        &mut chain,
        spec(&[(4, 3_000_000)], VerificationLevel::Optimistic),
    );
    let slot = |chain: &TestChain| {
        chain.state.job(job).unwrap().stages[0].slots[0]
            .assignment
            .clone()
            .unwrap()
    };
    let deadline = slot(&chain).deadline;
    let bonded = chain.state.account(&addr(p)).bonded;
    let claim = chain.sign(&key(p), TxBody::ClaimUnavailable { job });
    let run = |chain: &mut TestChain, txs: Vec<SignedTx>| {
        let block = agentic_protocol::Block {
            height: chain.state.height().plus(1),
            beacon: [5; 32],
            txs,
        };
        chain
            .state
            .apply_block(&block, &agentic_protocol::Verdicts(&[]))
            .unwrap()
    };
    let out = run(&mut chain, vec![claim]);
    assert!(out.receipts[0].is_ok(), "{:?}", out.receipts);
    let since = chain.state.height();
    let lapse = since.0 + params.dispute_timeout + params.referee_timeout;
    let mut lapsed = None;
    while chain.state.height().0 <= lapse {
        let out = run(&mut chain, Vec::new());
        let evs: Vec<Event> = out.events.into_iter().map(|r| r.event).collect();
        if evs.iter().any(|e| {
            matches!(e, Event::ClaimRejected { job: j, penalty, .. } if *j == job && penalty.0 == 0)
        }) {
            lapsed = Some(chain.state.height());
        }
    }
    assert_eq!(
        lapsed,
        Some(Height(lapse + 1)),
        "lapses right after the timeout"
    );
    assert!(chain.state.job(job).unwrap().claim.is_none());
    assert_eq!(chain.state.account(&addr(p)).bonded, bonded, "no penalty");
    assert_eq!(slot(&chain).deadline.0, deadline.0 + (lapse + 1 - since.0));
    assert_eq!(chain.state.root(), chain.state.full_root());
}

// ---------------------------------------------------------------------------
// 8. Downstream blamed for upstream
// ---------------------------------------------------------------------------

/// Stage 0 is honest but a (scripted) wrong auditor disputes it; the dispute
/// is played slowly, past stage 1's deadline. Stage 1 waits for the verdict
/// and is never penalized; once stage 0 is upheld its deadline restarts and
/// the job completes.
#[test]
fn item_8_a_downstream_stage_waits_out_an_upstream_dispute() {
    let (a, b) = (10, 11);
    let mut chain = net(&[
        (a, 1, 10_000),
        (b, 2, 10_000),
        (12, 5, 10_000),
        (13, 5, 10_000),
    ]);
    chain.auto_audit = false;
    let job = submit(
        &mut chain,
        spec(
            &[(8, 1_000_000), (4, 1_000_000)],
            VerificationLevel::Audited,
        ),
    );
    let t0 = honest(0, 8, input());
    commit(&mut chain, addr(a), job, 0, &t0);
    produce(&mut chain);
    let wrong = cheat(0, 8, input(), 5);
    chain.audit_commit(job, 0, &wrong).unwrap();
    reveal(&mut chain, addr(a), job, 0, &t0);
    produce(&mut chain);
    let d = chain.state.meta().next_dispute;
    chain.audit_report(job, 0).unwrap();
    // Slow play: each party moves on the last block of its round.
    let mut evs = Vec::new();
    loop {
        let dd = chain.state.dispute(d).unwrap().clone();
        if dd.phase != DisputePhase::Bisecting {
            break;
        }
        evs.extend(events(&chain.advance_to(Height(dd.deadline.0 - 1))));
        let mid = dd.game.midpoint().unwrap();
        for (who, t) in [(dd.defendant, &t0), (dd.challenger, &wrong)] {
            let (leaf, proof) = t.open(mid).unwrap();
            let k = key_at(&chain, who);
            chain.push(
                &k,
                TxBody::Bisect {
                    dispute: d,
                    leaf,
                    proof,
                },
            );
        }
        evs.extend(produce(&mut chain));
    }
    evs.extend(events(&chain.advance(2)));
    let dd = chain.state.dispute(d).unwrap();
    assert_eq!(dd.phase, DisputePhase::Resolved);
    let stage1_deadline_then = chain.state.job(job).unwrap().stages[1].slots[0]
        .assignment
        .as_ref()
        .unwrap()
        .deadline;
    assert!(stage1_deadline_then >= chain.state.height());
    assert!(
        !evs.iter()
            .any(|e| matches!(e, Event::DeadlineMissed { provider, .. } if *provider == addr(b))),
        "stage 1 was blamed for stage 0's dispute"
    );
    chain.auto_audit = true;
    chain
        .deliver(&key(b), job, 1, &honest(8, 4, t0.result().output))
        .unwrap();
    chain.audit_report(job, 1).unwrap();
    chain.advance(8);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
}

// ---------------------------------------------------------------------------
// 9. Double voting across parameter changes
// ---------------------------------------------------------------------------

#[test]
fn item_9_voted_stake_stays_locked_whatever_later_changes_say() {
    let params = Params {
        voting_period: 5,
        unbonding_delay: 20,
        activation_delay: 1,
        ..fast_params()
    };
    let voter = 30;
    let mut g = GenesisBuilder::new(13).params(params);
    g = g.account(addr(voter), 1_000, 100_000);
    g = g.account(addr(31), 1_000, 1_000);
    let mut chain = TestChain::new(&g.build());
    chain.check_invariants = true;
    // Y lowers the unbonding delay; X is proposed two blocks later.
    let y = ParamChange {
        key: ParamKey::UnbondingDelay,
        value: 6,
    };
    chain
        .step(&key(voter), TxBody::Propose { change: y })
        .unwrap();
    chain
        .step(
            &key(voter),
            TxBody::Vote {
                proposal: agentic_protocol::ProposalId(0),
                approve: true,
            },
        )
        .unwrap();
    let x = ParamChange {
        key: ParamKey::ChallengeWindow,
        value: 2,
    };
    chain.step(&key(31), TxBody::Propose { change: x }).unwrap();
    let xid = agentic_protocol::ProposalId(1);
    chain
        .step(
            &key(voter),
            TxBody::Vote {
                proposal: xid,
                approve: true,
            },
        )
        .unwrap();
    let x_ends = chain.state.proposal(xid).unwrap().voting_ends;
    // Y passes and takes effect while X is still open.
    while chain.state.params().unbonding_delay != 6 {
        chain.produce();
    }
    assert!(chain.state.height() <= x_ends);
    assert_eq!(
        chain.reject(
            &key(voter),
            TxBody::Unbond {
                amount: Amount(100_000)
            }
        ),
        TxError::StakeLocked(x_ends)
    );
    chain.advance_to(x_ends.plus(1));
    chain
        .step(
            &key(voter),
            TxBody::Unbond {
                amount: Amount(100_000),
            },
        )
        .unwrap();
}

/// The sequence: X opens with a long vote; governance then shortens
/// the voting period; a change that would shorten the unbonding delay below
/// what is left of X's vote is refused (cross-parameter rules hold against
/// every open vote), and X's voters stay locked anyway.
#[test]
fn item_9_parameter_changes_are_checked_against_open_votes() {
    let params = Params {
        voting_period: 20,
        unbonding_delay: 20,
        activation_delay: 1,
        ..fast_params()
    };
    let voter = 30;
    let mut g = GenesisBuilder::new(13).params(params);
    g = g.account(addr(voter), 1_000, 100_000);
    let mut chain = TestChain::new(&g.build());
    chain.check_invariants = true;
    let propose = |chain: &mut TestChain, key_: ParamKey, value: u128| {
        chain.step(
            &key(voter),
            TxBody::Propose {
                change: ParamChange { key: key_, value },
            },
        )
    };
    // Y: voting period 20 → 5; X: a long vote opened ten blocks later, so it
    // is still open, with 10 blocks to run, when Y takes effect.
    propose(&mut chain, ParamKey::VotingPeriod, 5).unwrap();
    chain.advance(10);
    propose(&mut chain, ParamKey::ChallengeWindow, 2).unwrap();
    for id in [0, 1] {
        chain
            .step(
                &key(voter),
                TxBody::Vote {
                    proposal: agentic_protocol::ProposalId(id),
                    approve: true,
                },
            )
            .unwrap();
    }
    let x_ends = chain
        .state
        .proposal(agentic_protocol::ProposalId(1))
        .unwrap()
        .voting_ends;
    while chain.state.params().voting_period != 5 {
        chain.produce();
    }
    // Now an unbonding delay of 6 passes the old rules (≥ voting period 5,
    // ≥ challenge window + dispute timeout) but X's vote has longer to run.
    assert!(x_ends.0 - chain.state.height().0 > 6);
    assert_eq!(
        chain.reject(
            &key(voter),
            TxBody::Propose {
                change: ParamChange {
                    key: ParamKey::UnbondingDelay,
                    value: 6
                }
            }
        ),
        TxError::InvalidParam(agentic_protocol::params::ParamError::VotingOutlastsUnbonding)
    );
    assert_eq!(
        chain.reject(&key(voter), TxBody::Unbond { amount: Amount(1) }),
        TxError::StakeLocked(x_ends)
    );
}

// ---------------------------------------------------------------------------
// 10. min_stake held while assigned
// ---------------------------------------------------------------------------

#[test]
fn item_10_min_stake_is_held_while_assigned() {
    let w = 10;
    let mut chain = net(&[(w, 1, 50_000)]);
    let mut s = spec(&[(4, 1_000_000)], VerificationLevel::Optimistic);
    s.requirements.min_stake = Amount(40_000);
    let job = submit(&mut chain, s);
    assert_eq!(slot(&chain, job, 0, 0), addr(w));
    assert_eq!(
        chain.reject(
            &key(w),
            TxBody::Unbond {
                amount: Amount(20_000)
            }
        ),
        TxError::InsufficientStake {
            need: Amount(60_000),
            have: Amount(50_000)
        }
    );
    chain
        .step(
            &key(w),
            TxBody::Unbond {
                amount: Amount(10_000),
            },
        )
        .unwrap();
    chain
        .deliver(&key(w), job, 0, &honest(0, 4, input()))
        .unwrap();
    chain.advance(6);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
    // The job settled: only the provider minimum binds now.
    chain
        .step(
            &key(w),
            TxBody::Unbond {
                amount: Amount(30_000),
            },
        )
        .unwrap();
}

// ---------------------------------------------------------------------------
// 11. Work is priced
// ---------------------------------------------------------------------------

#[test]
fn item_11_fees_grow_with_the_slots_and_bytes_a_job_asks_for() {
    let mut chain = net(&[(10, 1, 10_000)]);
    let stages: Vec<(u32, u64)> = (0..64).map(|_| (1, 1_000)).collect();
    let mut s = job_spec(
        model(),
        input(),
        &stages,
        1_000_000,
        VerificationLevel::Sampled,
    );
    s.requirements.replicas = 8;
    let body = TxBody::SubmitJob { spec: s.clone() };
    // 64 stages × (8 replicas + 1 auditor) slots, and a body under 1 KiB... no:
    // 64 stage specs are 1 KiB+ of bytes.
    let p = chain.state.params().clone();
    let bytes = {
        use commonware_codec::EncodeSize;
        body.encode_size()
    };
    let required =
        Amount(p.min_fee.0 + 64 * 9 * p.fee_per_slot.0 + (bytes / 1024) as u128 * p.fee_per_kib.0);
    assert_eq!(p.required_fee(&body), required);
    assert!(required.0 > 577, "{required:?}");
    // Signed at the minimum fee, it is refused and changes nothing.
    let tx = agentic_protocol::SignedTx::sign(
        &key(REQ),
        agentic_protocol::Tx {
            chain_id: chain.state.chain_id(),
            nonce: chain.state.nonce(&addr(REQ)),
            fee: p.min_fee,
            body: body.clone(),
        },
    );
    let root = chain.state.root();
    let mut copy = chain.state.clone();
    let out = copy
        .apply_block(
            &agentic_protocol::Block {
                height: chain.state.height().plus(1),
                beacon: [0; 32],
                txs: vec![tx],
            },
            &chain.referee,
        )
        .unwrap();
    assert_eq!(
        out.receipts[0],
        Err(TxError::FeeBelowWork {
            fee: p.min_fee,
            required
        })
    );
    assert_eq!(copy.balance(&addr(REQ)), chain.state.balance(&addr(REQ)));
    let _ = root;
    // At the required fee it is accepted.
    chain.step(&key(REQ), body).unwrap();
}

// ---------------------------------------------------------------------------
// Attacks of our own
// ---------------------------------------------------------------------------

/// A worker that committed a wrong result, sees the audit drawn and keeps
/// its result back is slashed like a loser, not charged the miss penalty.
#[test]
fn own_hiding_a_result_from_a_drawn_audit_is_slashed() {
    let w = 10;
    let mut chain = net(&[(w, 1, 10_000), (11, 5, 10_000)]);
    let job = submit(
        &mut chain,
        spec(&[(4, 1_000_000)], VerificationLevel::Audited),
    );
    commit(&mut chain, addr(w), job, 0, &cheat(0, 4, input(), 1));
    produce(&mut chain);
    chain.commit_pending_audit(job, 0).expect("auditor commits");
    let evs = events(&chain.advance(fast_params().reveal_window + 2));
    assert_eq!(slashed(&evs, addr(w)), Amount(5_000));
}

/// The auditor of a stage is never one of the job's providers, and over
/// many draws the only other qualified provider audits every job; a
/// provider that is not qualified (price above the job's maximum) never does.
#[test]
fn own_an_unqualified_provider_is_never_drawn() {
    let mut chain = net(&[(10, 1, 10_000), (11, 5, 10_000), (12, 50, 1_000_000)]);
    for _ in 0..10 {
        let job = submit(
            &mut chain,
            spec(&[(4, 1_000_000)], VerificationLevel::Audited),
        );
        commit(&mut chain, addr(10), job, 0, &honest(0, 4, input()));
        produce(&mut chain);
        assert_eq!(chain.auditor_of(job, 0), Some(addr(11)));
        chain.commit_pending_audit(job, 0).unwrap();
        reveal(&mut chain, addr(10), job, 0, &honest(0, 4, input()));
        produce(&mut chain);
        chain.audit_report(job, 0).unwrap();
    }
}

/// Twelve jobs, audited and sampled, a third of them cheated and disputed:
/// the supply is conserved after every block, every job ends with its
/// escrow settled and every provider released, and the obligation indexes
/// (which gate `Retire`, `Withdraw` and `Unbond`) hold open work only —
/// empty once everything settled, so they do not grow with history.
#[test]
fn own_supply_is_conserved_through_a_busy_adversarial_run() {
    let providers: Vec<(u64, u128, u128)> = (10..16)
        .map(|s| (s, 1 + (s % 3) as u128, 10_000 + 1_000 * s as u128))
        .collect();
    let mut chain = net(&providers);
    for i in 0..12u32 {
        let level = if i % 2 == 0 {
            VerificationLevel::Audited
        } else {
            VerificationLevel::Sampled
        };
        let job = submit(&mut chain, spec(&[(4, 1_000_000)], level));
        let w = slot(&chain, job, 0, 0);
        let t = if i % 3 == 0 {
            cheat(0, 4, input(), i % 4)
        } else {
            honest(0, 4, input())
        };
        let k = key_at(&chain, w);
        chain.deliver(&k, job, 0, &t).unwrap();
        if matches!(
            chain.state.job(job).unwrap().stages[0].phase,
            StagePhase::Auditing { .. }
        ) {
            let d = chain.state.meta().next_dispute;
            chain.audit_report(job, 0).unwrap();
            if chain.state.dispute(d).is_some() {
                let h = chain.audits[&(job, 0)].clone();
                play(&mut chain, d, Some(&t), &h, 40);
            }
        }
    }
    chain.advance(10);
    for (_, j) in chain.state.jobs() {
        assert_ne!(j.status, JobStatus::Active);
        assert_eq!(j.escrow, Amount::ZERO);
    }
    for (_, p) in chain.state.providers() {
        assert_eq!((p.active, p.open), (0, 0));
    }
    assert_eq!(chain.state.obligation_index_sizes(), (0, 0, 0));
}

// ---------------------------------------------------------------------------
// Coalitions audit themselves at most in proportion to their stake
// ---------------------------------------------------------------------------

mod coalition {
    use agentic_protocol::coord::Coord;
    use agentic_protocol::matching::{draw_by_stake, Candidate, Requirement};
    use agentic_protocol::state::auditor_seed;
    use agentic_protocol::types::{Hash, JobId};
    use proptest::prelude::*;

    /// `(stake, price)` of each identity.
    fn identities(max: usize) -> impl Strategy<Value = Vec<(u128, u128)>> {
        prop::collection::vec((10_000u128..1_000_000, 1u128..20), 1..=max)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// A coalition of up to 4 identities with random stakes and prices,
        /// one of which does the work, among up to 12 honest providers: over
        /// 10,000 beacon draws, the share of audits its other identities win
        /// is at most its share of the qualified stake + 0.02.
        #[test]
        fn a_coalition_audits_itself_at_most_in_proportion_to_its_stake(
            coalition in identities(4),
            honest in identities(12),
            max_price in 5u128..20,
            job in 0u64..1_000,
        ) {
            let mut candidates = Vec::new();
            for (i, &(stake, price)) in coalition.iter().chain(honest.iter()).enumerate() {
                candidates.push(Candidate {
                    id: i as u32,
                    price,
                    reputation_ppm: 0,
                    coord: Coord::default(),
                    stake,
                    free_capacity: 1,
                    region: 1,
                    capabilities: 0,
                });
            }
            let req = Requirement { max_price, ..Requirement::default() };
            let members = coalition.len() as u32;
            let worker = 0u32;
            let qualified = |c: &Candidate<u32>| c.id != worker && c.price <= max_price;
            let total: u128 = candidates.iter().filter(|c| qualified(c)).map(|c| c.stake).sum();
            let ours: u128 = candidates
                .iter()
                .filter(|c| qualified(c) && c.id < members)
                .map(|c| c.stake)
                .sum();
            prop_assume!(total > 0);
            let share = ours as f64 / total as f64;
            let draws = 10_000u32;
            let mut self_audits = 0u32;
            for i in 0..draws {
                let beacon = Hash::digest("coalition beacon", &[&i.to_be_bytes()]).0;
                let seed = auditor_seed(&beacon, JobId(job), 0);
                let drawn = draw_by_stake(&candidates, &req, &[worker], &seed)
                    .expect("someone qualifies");
                prop_assert!(drawn != worker);
                prop_assert!(candidates[drawn as usize].price <= max_price);
                if drawn < members {
                    self_audits += 1;
                }
            }
            let freq = self_audits as f64 / draws as f64;
            prop_assert!(freq <= share + 0.02, "coalition audited itself {freq} with stake share {share}");
            prop_assert!(freq >= share - 0.02, "draw not proportional: {freq} vs {share}");
        }
    }
}

// ---------------------------------------------------------------------------
// 12. Training disputes: step, then unit
// ---------------------------------------------------------------------------

/// Units per training step in these tests (2 blocks: 2·2 + 5).
const UNITS: u32 = 9;

/// A training stage's traces: the step-level trace over the states (leaf
/// `t` = the state after `t` steps) and, per step, the trace over its unit
/// carries (leaf 0 = the state before the step, leaf `UNITS` = after). Unit
/// `k` of absolute step `t` is the test referee's layer `t · UNITS + k`.
struct TrainTrace {
    states: Trace,
    steps: Vec<Trace>,
}

/// Steps `first..first + steps` from `input`, corrupting the output of unit
/// `bad.1` of stage-relative step `bad.0` when given.
fn train(first: u32, steps: u32, input: Hash, bad: Option<(u32, u32)>) -> TrainTrace {
    let mut state = input;
    let mut states = vec![input];
    let mut per_step = Vec::new();
    for t in 0..steps {
        let mut leaves = vec![state];
        let mut x = state;
        for k in 0..UNITS {
            x = layer_output(&model(), (first + t) * UNITS + k, &x);
            if bad == Some((t, k)) {
                x = Hash::digest("agentic test corruption", &[&x.0]);
            }
            leaves.push(x);
        }
        state = x;
        states.push(state);
        per_step.push(Trace::new(leaves));
    }
    TrainTrace {
        states: Trace::new(states),
        steps: per_step,
    }
}

/// A one-stage training job of `steps` steps with two replicas.
fn training_job(chain: &mut TestChain, steps: u32) -> JobId {
    let mut s = spec(&[(steps, 1_000_000)], VerificationLevel::Optimistic);
    s.requirements.replicas = 2;
    s.stages[0].step_units = UNITS;
    submit(chain, s)
}

fn step_root_tx(id: DisputeId, t: &Trace) -> TxBody {
    TxBody::StepRoot {
        dispute: id,
        root: t.result().trace_root,
        first_proof: t.open(0).unwrap().1,
        last_proof: t.open(UNITS).unwrap().1,
    }
}

/// Plays a training dispute with both parties answering from their traces
/// (`def = None`: the defendant stays silent). Returns every event and the
/// step the step-level game isolated.
fn play_training(
    chain: &mut TestChain,
    id: DisputeId,
    def: Option<&TrainTrace>,
    chal: &TrainTrace,
    max_blocks: u64,
) -> (Vec<Event>, Option<u32>) {
    let mut evs = Vec::new();
    let mut isolated = None;
    for _ in 0..max_blocks {
        let d = chain.state.dispute(id).unwrap().clone();
        let parties = [
            (d.challenger, Some(chal), d.challenger_move),
            (d.defendant, def, d.defendant_move),
        ];
        match d.phase {
            DisputePhase::Resolved => break,
            DisputePhase::StepRoots => {
                let t = d.step.expect("a step once the step level is done");
                isolated = Some(t);
                for (who, trace, moved) in parties {
                    if let (Some(tr), None) = (trace, moved) {
                        let k = key_at(chain, who);
                        chain.push(&k, step_root_tx(id, &tr.steps[t as usize]));
                    }
                }
            }
            DisputePhase::Bisecting => {
                if let Some(mid) = d.game.midpoint() {
                    for (who, trace, moved) in parties {
                        if let (Some(tr), None) = (trace, moved) {
                            let level = match d.step {
                                None => &tr.states,
                                Some(t) => &tr.steps[t as usize],
                            };
                            let (leaf, proof) = level.open(mid).unwrap();
                            let k = key_at(chain, who);
                            chain.push(
                                &k,
                                TxBody::Bisect {
                                    dispute: id,
                                    leaf,
                                    proof,
                                },
                            );
                        }
                    }
                }
            }
            DisputePhase::AwaitingReferee => {}
        }
        evs.extend(produce(chain));
    }
    assert_eq!(
        chain.state.dispute(id).unwrap().phase,
        DisputePhase::Resolved,
        "dispute {id} did not end"
    );
    (evs, isolated)
}

/// Opens the dispute of a training job whose replicas deliver `traces`.
fn training_dispute(
    chain: &mut TestChain,
    steps: u32,
    traces: [&TrainTrace; 2],
) -> (JobId, [Address; 2], DisputeId) {
    let job = training_job(chain, steps);
    let reps = [slot(chain, job, 0, 0), slot(chain, job, 0, 1)];
    for (r, t) in reps.iter().zip(traces) {
        commit(chain, *r, job, 0, &t.states);
    }
    produce(chain);
    for (r, t) in reps.iter().zip(traces) {
        reveal(chain, *r, job, 0, &t.states);
    }
    let dispute = chain.state.meta().next_dispute;
    produce(chain);
    let d = chain
        .state
        .dispute(dispute)
        .expect("the replicas disagree")
        .clone();
    assert_eq!((d.defendant, d.challenger), (reps[0], reps[1]));
    assert_eq!((d.step_units, d.step), (UNITS, None));
    (job, reps, dispute)
}

/// A replica that corrupts one unit of one step — as defendant or as
/// challenger — is bisected first to that step (over the state hashes), then
/// to that unit (over the step's carries); the referee re-executes exactly
/// unit `step · units + unit` and the cheater alone is slashed.
#[test]
fn item_12_a_training_cheat_is_bisected_to_one_unit_of_one_step_and_slashed() {
    for cheater_first in [true, false] {
        for (bad_step, bad_unit) in [(2u32, 3u32), (0, 0), (4, UNITS - 1)] {
            let providers: Vec<(u64, u128, u128)> = (10..14).map(|s| (s, 1, 10_000)).collect();
            let mut chain = net(&providers);
            let good = train(0, 5, input(), None);
            let bad = train(0, 5, input(), Some((bad_step, bad_unit)));
            let traces = if cheater_first {
                [&bad, &good]
            } else {
                [&good, &bad]
            };
            let (job, reps, id) = training_dispute(&mut chain, 5, traces);
            let (cheater, honest_rep) = if cheater_first {
                (reps[0], reps[1])
            } else {
                (reps[1], reps[0])
            };
            let (def, chal) = (traces[0], traces[1]);
            let (evs, isolated) = play_training(&mut chain, id, Some(def), chal, 60);
            assert_eq!(
                isolated,
                Some(bad_step),
                "the step-level game found the step"
            );
            let d = chain.state.dispute(id).unwrap().clone();
            assert_eq!(d.step, Some(bad_step));
            assert_eq!(d.game.leaves(), UNITS + 1, "the unit-level game");
            assert_eq!(d.game.lo(), bad_unit, "the unit-level game found the unit");
            let layer = bad_step * UNITS + bad_unit;
            assert!(
                evs.contains(&Event::DisputeResolved {
                    dispute: id,
                    winner: Some(honest_rep),
                    resolution: agentic_protocol::event::Resolution::Refereed { layer },
                }),
                "{evs:#?}"
            );
            assert_eq!(slashed(&evs, cheater), Amount(5_000));
            assert_eq!(slashed(&evs, honest_rep), Amount::ZERO);
            // The wrong state never completes the job.
            let j = chain.state.job(job).unwrap();
            let bad_out = *bad.states.last().unwrap();
            assert!(
                j.status != JobStatus::Completed || j.stages[0].result.unwrap().output != bad_out
            );
        }
    }
}

/// The unit-level roots are checked: a root whose leaf 0 is not the agreed
/// state, one whose last leaf is not the party's own state after the step
/// (the cheater posting the honest party's carries), a second root, an
/// outsider's root and a root before the step is isolated are each refused
/// with nothing changed; a party that posts no root loses by timeout.
#[test]
fn item_12_step_roots_are_checked_and_a_silent_party_loses() {
    let providers: Vec<(u64, u128, u128)> = (10..14).map(|s| (s, 1, 10_000)).collect();
    // Rounds long enough for the refused attempts below (each takes a block).
    let params = Params {
        dispute_timeout: 12,
        unbonding_delay: 30,
        ..fast_params()
    };
    let mut chain = net_with(params, &providers);
    let good = train(0, 4, input(), None);
    let bad = train(0, 4, input(), Some((1, 5)));
    let (_, reps, id) = training_dispute(&mut chain, 4, [&bad, &good]);
    let (cheater, honest_rep) = (reps[0], reps[1]);
    let ck = key_at(&chain, cheater);
    // Too early: still at the step level.
    assert!(matches!(
        chain.reject(&ck, step_root_tx(id, &bad.steps[1])),
        TxError::WrongPhase(_)
    ));
    // Play the step level to its end.
    for _ in 0..20 {
        let d = chain.state.dispute(id).unwrap().clone();
        if d.phase != DisputePhase::Bisecting {
            break;
        }
        let mid = d.game.midpoint().unwrap();
        for (who, tr) in [(cheater, &bad), (honest_rep, &good)] {
            let (leaf, proof) = tr.states.open(mid).unwrap();
            let k = key_at(&chain, who);
            chain.push(
                &k,
                TxBody::Bisect {
                    dispute: id,
                    leaf,
                    proof,
                },
            );
        }
        produce(&mut chain);
    }
    let d = chain.state.dispute(id).unwrap().clone();
    assert_eq!((d.phase, d.step), (DisputePhase::StepRoots, Some(1)));
    // Another step's carries: leaf 0 is not the agreed state.
    assert_eq!(
        chain.reject(&ck, step_root_tx(id, &bad.steps[2])),
        TxError::BadProof { index: 0 }
    );
    // The honest party's carries: the last leaf is not the cheater's state.
    assert_eq!(
        chain.reject(&ck, step_root_tx(id, &good.steps[1])),
        TxError::BadProof { index: UNITS }
    );
    // An outsider.
    assert_eq!(
        chain.reject(&key(OUTSIDER), step_root_tx(id, &good.steps[1])),
        TxError::NotParty
    );
    // The honest party posts; a second post is refused.
    let hk = key_at(&chain, honest_rep);
    chain.step(&hk, step_root_tx(id, &good.steps[1])).unwrap();
    assert_eq!(
        chain.reject(&hk, step_root_tx(id, &good.steps[1])),
        TxError::AlreadyMoved
    );
    // The cheater stays silent past the deadline and loses.
    let evs = events(&chain.advance(16));
    assert!(
        evs.contains(&Event::DisputeResolved {
            dispute: id,
            winner: Some(honest_rep),
            resolution: agentic_protocol::event::Resolution::Timeout,
        }),
        "{evs:#?}"
    );
    assert_eq!(slashed(&evs, cheater), Amount(5_000));
}

/// A training stage's step units are bounded, and steps × units must fit the
/// referee's index.
#[test]
fn item_12_step_units_are_bounded() {
    let providers: Vec<(u64, u128, u128)> = (10..14).map(|s| (s, 1, 10_000)).collect();
    let mut chain = net(&providers);
    let mut s = spec(&[(4, 1_000_000)], VerificationLevel::Optimistic);
    s.stages[0].step_units = agentic_protocol::types::limits::MAX_STEP_UNITS + 1;
    assert!(matches!(
        chain.reject(&key(REQ), TxBody::SubmitJob { spec: s.clone() }),
        TxError::InvalidJob(_)
    ));
    s.stages[0].first_layer = u32::MAX / 4_000;
    s.stages[0].step_units = 4_096;
    assert!(matches!(
        chain.reject(&key(REQ), TxBody::SubmitJob { spec: s }),
        TxError::InvalidJob(_)
    ));
}
