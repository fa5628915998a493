//! End-to-end protocol scenarios: each sets up a small network, acts, and
//! checks the amounts that matter to the token (exact payment, exact slash,
//! lost bond, single payment after a re-route, mandate caps, governance,
//! replay protection). The supply invariant is checked after every block.

use agentic_protocol::event::Event;
use agentic_protocol::params::{ParamChange, ParamKey};
use agentic_protocol::state::{DisputePhase, JobStatus, ProposalStatus, StagePhase};
use agentic_protocol::test_utils::{
    address_of, fast_params, job_spec, key, layer_output, offer, salt_for, GenesisBuilder,
    TestChain, Trace,
};
use agentic_protocol::tx::{JobSpec, MandateTerms, SignedTx, Tx, TxBody};
use agentic_protocol::types::{Amount, ChainId, DisputeId, Hash, Height, JobId, VerificationLevel};
use agentic_protocol::{State, TxError};
use commonware_cryptography::{ed25519::PrivateKey, Signer as _};

const REQUESTER: u64 = 1;
const P1: u64 = 11;
const P2: u64 = 12;
const P3: u64 = 13;
const OUTSIDER: u64 = 20;
const STAKE: u128 = 20_000;

fn model() -> Hash {
    Hash::digest("model", &[b"mlp"])
}
fn input() -> Hash {
    Hash::digest("input", &[b"x"])
}

/// A chain with a funded requester, an outsider and three registered
/// providers priced 5, 6 and 7 per mega-op.
fn network() -> TestChain {
    let mut g = GenesisBuilder::new(7).params(fast_params());
    for seed in [REQUESTER, OUTSIDER] {
        g = g.account(address_of(&key(seed)), 1_000_000, 0);
    }
    for seed in [P1, P2, P3] {
        g = g.account(address_of(&key(seed)), 100_000, 0);
    }
    let mut chain = TestChain::new(&g.build());
    for (seed, price) in [(P1, 5), (P2, 6), (P3, 7)] {
        chain.push(
            &key(seed),
            TxBody::RegisterProvider {
                offer: offer(price, 4),
                stake: Amount(STAKE),
            },
        );
    }
    let out = produce(&mut chain);
    assert!(out.receipts.iter().all(Result::is_ok), "{:?}", out.receipts);
    chain
}

fn produce(chain: &mut TestChain) -> agentic_protocol::BlockOutcome {
    let out = chain.produce();
    assert!(
        chain.state.total_supply_check(),
        "supply broken at {}",
        chain.state.height()
    );
    out
}

fn advance(chain: &mut TestChain, n: u64) -> Vec<Event> {
    (0..n)
        .flat_map(|_| produce(chain).events.into_iter().map(|e| e.event))
        .collect()
}

fn submit(chain: &mut TestChain, who: &PrivateKey, spec: JobSpec) -> JobId {
    let id = chain.state.meta().next_job;
    chain
        .step(who, TxBody::SubmitJob { spec })
        .expect("job accepted");
    id
}

fn assigned(chain: &TestChain, job: JobId, stage: usize) -> agentic_protocol::Address {
    chain.state.job(job).unwrap().stages[stage].slots[0]
        .assignment
        .as_ref()
        .expect("assigned")
        .provider
}

fn key_of(addr: agentic_protocol::Address) -> PrivateKey {
    for seed in [P1, P2, P3, REQUESTER, OUTSIDER] {
        if address_of(&key(seed)) == addr {
            return key(seed);
        }
    }
    panic!("unknown address")
}

#[test]
fn honest_job_pays_exact_amounts() {
    let mut chain = network();
    let req = key(REQUESTER);
    let r = address_of(&req);
    let fee = chain.state.params().min_fee.0;
    let before = chain.state.balance(&r);
    // One stage, 4 layers, 10 mega-ops at max price 10: escrow 100.
    let spec = job_spec(
        model(),
        input(),
        &[(4, 10_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    // One slot to match (one stage, one replica, no audit): min_fee + fee_per_slot.
    let submit_fee = chain
        .state
        .params()
        .required_fee(&TxBody::SubmitJob { spec: spec.clone() })
        .0;
    assert_eq!(submit_fee, fee + chain.state.params().fee_per_slot.0);
    let job = submit(&mut chain, &req, spec);
    assert_eq!(chain.state.job(job).unwrap().escrow, Amount(100));
    assert_eq!(chain.state.balance(&r).0, before.0 - submit_fee - 100);
    // The cheapest provider (price 5) took it.
    let p = assigned(&chain, job, 0);
    assert_eq!(p, address_of(&key(P1)));
    let p_before = chain.state.balance(&p);
    let trace = Trace::honest(&model(), 0, 4, input());
    chain.deliver(&key(P1), job, 0, &trace).unwrap();
    let events = advance(&mut chain, 5);
    assert!(events.contains(&Event::StagePaid {
        job,
        stage: 0,
        provider: p,
        amount: Amount(50),
    }));
    assert!(events.contains(&Event::JobCompleted {
        job,
        refund: Amount(50)
    }));
    let j = chain.state.job(job).unwrap();
    assert_eq!(j.status, JobStatus::Completed);
    assert_eq!(j.escrow, Amount::ZERO);
    // Provider: +ops × price, minus its two fees; requester: exactly the bill plus one fee.
    assert_eq!(chain.state.balance(&p).0, p_before.0 + 50 - 2 * fee);
    assert_eq!(chain.state.balance(&r).0, before.0 - submit_fee - 50);
    assert_eq!(chain.state.provider(&p).unwrap().open, 0);
    assert_eq!(chain.state.provider(&p).unwrap().active, 0);
    assert!(chain.state.provider(&p).unwrap().reputation.success > 0);
}

#[test]
fn pipeline_stages_get_distinct_providers_and_chain_inputs() {
    let mut chain = network();
    let req = key(REQUESTER);
    let spec = job_spec(
        model(),
        input(),
        &[(2, 1_000_000), (3, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    let job = submit(&mut chain, &req, spec);
    let a = assigned(&chain, job, 0);
    let b = assigned(&chain, job, 1);
    assert_ne!(a, b);
    let t0 = Trace::honest(&model(), 0, 2, input());
    // Stage 1 cannot commit before stage 0's output is agreed (the audit
    // drawn at its commitment must be computable from an agreed input).
    let t1 = Trace::honest(&model(), 2, 3, t0.result().output);
    let kb = key_of(b);
    let who = address_of(&kb);
    let salt = salt_for(&who, job, 1);
    assert_eq!(
        chain.step(
            &kb,
            TxBody::CommitResult {
                job,
                stage: 1,
                commitment: t1.result().commitment(job, 1, &salt, &who),
            },
        ),
        Err(TxError::PreviousStageUnrevealed)
    );
    chain.deliver(&key_of(a), job, 0, &t0).unwrap();
    chain.deliver(&kb, job, 1, &t1).unwrap();
    advance(&mut chain, 5);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
}

/// A job is several root entries: committing and revealing one stage of a
/// 3-stage job re-hashes that stage's entry only, not the whole job (nor its
/// spec, which never changes after submit).
#[test]
fn a_commit_rehashes_one_stage_not_the_whole_job() {
    let mut chain = network();
    let req = key(REQUESTER);
    let spec = job_spec(
        model(),
        input(),
        &[(2, 1_000_000), (3, 1_000_000), (1, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    let job = submit(&mut chain, &req, spec);
    let a = assigned(&chain, job, 0);
    let ka = key_of(a);
    let t0 = Trace::honest(&model(), 0, 2, input());
    let salt = salt_for(&a, job, 0);
    chain
        .step(
            &ka,
            TxBody::CommitResult {
                job,
                stage: 0,
                commitment: t0.result().commitment(job, 0, &salt, &a),
            },
        )
        .unwrap();
    let mut prefix = vec![0x04];
    prefix.extend_from_slice(&job.0.to_be_bytes());
    let job_keys: Vec<Vec<u8>> = chain
        .state
        .last_changed_keys()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    let mut stage0 = prefix.clone();
    stage0.push(0x02);
    stage0.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(job_keys, vec![stage0], "only stage 0's entry changed");
    assert_eq!(chain.state.root(), chain.state.full_root());
}

#[test]
fn a_stage_whose_input_does_not_chain_is_slashed_and_rerouted() {
    let mut chain = network();
    let req = key(REQUESTER);
    let r = address_of(&req);
    let spec = job_spec(
        model(),
        input(),
        &[(2, 1_000_000), (3, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    let job = submit(&mut chain, &req, spec);
    let a = assigned(&chain, job, 0);
    let b = assigned(&chain, job, 1);
    let t0 = Trace::honest(&model(), 0, 2, input());
    chain.deliver(&key_of(a), job, 0, &t0).unwrap();
    // Stage 1 built on an activation the chain never agreed on (a colluding
    // upstream pushed it something else than it revealed).
    let forged = Hash([0xee; 32]);
    let t1 = Trace::honest(&model(), 2, 3, forged);
    let (bond_before, req_before) = (chain.state.account(&b).bonded, chain.state.balance(&r));
    chain.deliver(&key_of(b), job, 1, &t1).unwrap();
    let p = chain.state.params().clone();
    let slash = Amount(bond_before.0).mul_ppm(p.slash_ppm);
    let to_req = slash.mul_ppm(p.slash_requester_ppm);
    assert_eq!(chain.state.account(&b).bonded.0, bond_before.0 - slash.0);
    assert_eq!(chain.state.balance(&r).0, req_before.0 + to_req.0);
    let j = chain.state.job(job).unwrap();
    assert!(j.excluded.contains(&b));
    // The stage goes back to matching and an honest provider finishes the job.
    advance(&mut chain, 1);
    let c = assigned(&chain, job, 1);
    assert_ne!(c, b);
    let honest = Trace::honest(&model(), 2, 3, t0.result().output);
    chain.deliver(&key_of(c), job, 1, &honest).unwrap();
    advance(&mut chain, 5);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
}

#[test]
fn named_placement_is_used_when_it_qualifies() {
    let mut chain = network();
    let req = key(REQUESTER);
    let mut spec = job_spec(
        model(),
        input(),
        &[(2, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    spec.placement = vec![address_of(&key(P3))];
    let job = submit(&mut chain, &req, spec.clone());
    assert_eq!(assigned(&chain, job, 0), address_of(&key(P3)));
    // A named provider priced above the job's max price is refused.
    spec.max_price = Amount(6);
    assert!(matches!(
        chain.step(&req, TxBody::SubmitJob { spec }),
        Err(TxError::PlacementUnqualified { stage: 0, .. })
    ));
}

/// Runs an audited job where P1 (cheapest) cheats at layer 2 and returns
/// (chain, job, dispute). The job's max price (6) leaves P2 the only other
/// qualified provider, so the stake-weighted draw makes it the auditor.
fn cheating_job_under_audit() -> (TestChain, JobId, DisputeId) {
    let mut chain = network();
    let req = key(REQUESTER);
    let spec = job_spec(
        model(),
        input(),
        &[(8, 10_000_000)],
        6,
        VerificationLevel::Audited,
    );
    let job = submit(&mut chain, &req, spec);
    assert_eq!(assigned(&chain, job, 0), address_of(&key(P1)));
    let bad = Trace::cheating(&model(), 0, 8, input(), 2);
    // The auditor commits the honest trace before P1 may reveal.
    chain.deliver(&key(P1), job, 0, &bad).unwrap();
    let StagePhase::Auditing { auditor, .. } = chain.state.job(job).unwrap().stages[0].phase else {
        panic!("stage should be audited");
    };
    assert_eq!(auditor, address_of(&key(P2)));
    let dispute = chain.state.meta().next_dispute;
    chain.audit_report(job, 0).unwrap();
    assert!(chain.state.dispute(dispute).is_some());
    (chain, job, dispute)
}

#[test]
fn cheating_provider_loses_dispute_and_is_slashed_exactly() {
    let (mut chain, job, dispute) = cheating_job_under_audit();
    let params = chain.state.params().clone();
    let p1 = address_of(&key(P1));
    let p2 = address_of(&key(P2));
    let r = address_of(&key(REQUESTER));
    let bonded_before = chain.state.account(&p1).bonded;
    let p2_before = chain.state.balance(&p2);
    let r_before = chain.state.balance(&r);
    let burned_before = chain.state.meta().burned;
    let escrow = chain.state.job(job).unwrap().escrow;
    let bad = Trace::cheating(&model(), 0, 8, input(), 2);
    let honest = Trace::honest(&model(), 0, 8, input());
    // 8 layers → 9 leaves → ⌈log2 8⌉ = 3 rounds.
    let fee = params.min_fee.0;
    let errors = chain.play_dispute(dispute, (&key(P1), &bad), (&key(P2), &honest));
    assert!(errors.is_empty(), "{errors:?}");
    let d = chain.state.dispute(dispute).unwrap();
    assert_eq!(d.phase, DisputePhase::Resolved);
    assert_eq!(d.game.round(), 3);
    // The disputed layer is the corrupted one.
    assert_eq!(d.game.lo(), 2);
    let slash = bonded_before.mul_ppm(params.slash_ppm);
    let to_winner = slash.mul_ppm(params.slash_winner_ppm);
    let to_requester = slash.mul_ppm(params.slash_requester_ppm);
    let burned = slash.0 - to_winner.0 - to_requester.0;
    assert_eq!(chain.state.account(&p1).bonded.0, bonded_before.0 - slash.0);
    // Auditor: winner share + its audit fee (10 mega-ops × 6), minus 3 bisect fees.
    let audit_fee = 60;
    assert_eq!(
        chain.state.balance(&p2).0,
        p2_before.0 + to_winner.0 + audit_fee - 3 * fee
    );
    // Requester: its share of the slash and every unpaid token of escrow back.
    assert_eq!(
        chain.state.balance(&r).0,
        r_before.0 + to_requester.0 + escrow.0 - audit_fee
    );
    // Burned: the slash remainder plus the six bisect fees.
    assert_eq!(
        chain.state.meta().burned.0,
        burned_before.0 + burned + 6 * fee
    );
    let j = chain.state.job(job).unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert!(j.excluded.contains(&p1));
    assert!(chain.state.provider(&p1).unwrap().reputation.failure > 0);
    assert_eq!(chain.state.provider(&p1).unwrap().open, 0);
    assert_eq!(chain.state.provider(&p2).unwrap().open, 0);
}

#[test]
fn silent_defendant_loses_by_timeout() {
    let (mut chain, job, dispute) = cheating_job_under_audit();
    let honest = Trace::honest(&model(), 0, 8, input());
    let d = chain.state.dispute(dispute).unwrap().clone();
    let mid = d.game.midpoint().unwrap();
    let (leaf, proof) = honest.open(mid).unwrap();
    chain
        .step(
            &key(P2),
            TxBody::Bisect {
                dispute,
                leaf,
                proof,
            },
        )
        .unwrap();
    let events = advance(&mut chain, 4);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::DisputeResolved {
            resolution: agentic_protocol::Resolution::Timeout,
            winner: Some(w),
            ..
        } if *w == address_of(&key(P2))
    )));
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Failed);
}

#[test]
fn unavailable_input_makes_the_defendant_lose() {
    let (mut chain, job, dispute) = cheating_job_under_audit();
    let honest = Trace::honest(&model(), 0, 8, input());
    let bad = Trace::cheating(&model(), 0, 8, input(), 2);
    // The activation after layer 1 (the disputed layer's input) is withheld.
    chain.referee.unavailable_inputs.insert(honest[2]);
    chain.play_dispute(dispute, (&key(P1), &bad), (&key(P2), &honest));
    // The parties get `dispute_timeout` blocks to publish it: the referee waits.
    let d = chain.state.dispute(dispute).unwrap();
    assert_eq!(d.phase, DisputePhase::AwaitingReferee);
    let patience = d.deadline.0 - chain.state.height().0;
    advance(&mut chain, patience);
    assert_eq!(
        chain.state.dispute(dispute).unwrap().phase,
        DisputePhase::AwaitingReferee
    );
    let events = advance(&mut chain, 1);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::DisputeResolved {
            resolution: agentic_protocol::Resolution::InputUnavailable,
            winner: Some(w),
            ..
        } if *w == address_of(&key(P2))
    )));
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Failed);
}

/// Applies `n` empty blocks whose referee is a (real) list of verdicts.
fn advance_with_verdicts(
    chain: &mut TestChain,
    n: u64,
    verdicts: &[agentic_protocol::Verdict],
) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..n {
        let block = agentic_protocol::Block {
            height: chain.state.height().plus(1),
            beacon: [3; 32],
            txs: Vec::new(),
        };
        let out = chain
            .state
            .apply_block(&block, &agentic_protocol::Verdicts(verdicts))
            .unwrap();
        events.extend(out.events.into_iter().map(|r| r.event));
    }
    events
}

/// The referee of a real node is the block's verdicts: a waiting dispute is
/// found by its question when a verdict answers it, and one the validators
/// never answer is annulled `referee_timeout` blocks past its deadline
/// instead of waiting forever.
#[test]
fn referee_questions_are_answered_by_question_or_time_out() {
    for answered in [true, false] {
        let (mut chain, job, dispute) = cheating_job_under_audit();
        let honest = Trace::honest(&model(), 0, 8, input());
        let bad = Trace::cheating(&model(), 0, 8, input(), 2);
        chain.referee.unavailable_inputs.insert(honest[2]);
        chain.play_dispute(dispute, (&key(P1), &bad), (&key(P2), &honest));
        let d = chain.state.dispute(dispute).unwrap().clone();
        assert_eq!(d.phase, DisputePhase::AwaitingReferee);
        let questions = chain.state.referee_questions();
        assert_eq!(questions.len(), 1);
        let (m, layer, agreed) = questions[0];
        // Blocks whose verdicts answer other questions leave it waiting.
        let other = agentic_protocol::Verdict {
            model: m,
            layer,
            input: Hash([0xee; 32]),
            finding: agentic_protocol::Finding::Output(Hash([1; 32])),
        };
        advance_with_verdicts(&mut chain, 3, &[other]);
        assert_eq!(
            chain.state.dispute(dispute).unwrap().phase,
            DisputePhase::AwaitingReferee
        );
        if answered {
            let verdict = agentic_protocol::Verdict {
                model: m,
                layer,
                input: agreed,
                finding: agentic_protocol::Finding::Output(layer_output(&m, layer, &agreed)),
            };
            let events = advance_with_verdicts(&mut chain, 1, &[other, verdict]);
            assert!(
                events.iter().any(|e| matches!(
                    e,
                    Event::DisputeResolved {
                        resolution: agentic_protocol::Resolution::Refereed { .. },
                        winner: Some(w),
                        ..
                    } if *w == address_of(&key(P2))
                )),
                "{events:?}"
            );
            assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Failed);
        } else {
            let timeout = chain.state.params().referee_timeout;
            let until = d.deadline.0 + timeout - chain.state.height().0;
            advance_with_verdicts(&mut chain, until, &[]);
            assert_eq!(
                chain.state.dispute(dispute).unwrap().phase,
                DisputePhase::AwaitingReferee,
                "still waiting at the referee timeout"
            );
            let events = advance_with_verdicts(&mut chain, 1, &[]);
            assert!(
                events.iter().any(|e| matches!(
                    e,
                    Event::DisputeResolved {
                        resolution: agentic_protocol::Resolution::Annulled,
                        ..
                    }
                )),
                "{events:?}"
            );
            assert!(chain.state.referee_questions().is_empty());
        }
        assert_eq!(chain.state.root(), chain.state.full_root());
    }
}

#[test]
fn bad_merkle_proof_is_rejected() {
    let (mut chain, _job, dispute) = cheating_job_under_audit();
    let honest = Trace::honest(&model(), 0, 8, input());
    let mid = chain
        .state
        .dispute(dispute)
        .unwrap()
        .game
        .midpoint()
        .unwrap();
    let (_, proof) = honest.open(mid).unwrap();
    let root = chain.state.root();
    assert_eq!(
        chain.step(
            &key(P2),
            TxBody::Bisect {
                dispute,
                leaf: Hash([9; 32]),
                proof
            }
        ),
        Err(TxError::BadProof { index: mid })
    );
    // Only the height and the block counters moved; the dispute is untouched.
    assert_ne!(root, chain.state.root());
    assert!(chain
        .state
        .dispute(dispute)
        .unwrap()
        .challenger_move
        .is_none());
    // Outsiders cannot move.
    let (leaf, proof) = honest.open(mid).unwrap();
    assert_eq!(
        chain.step(
            &key(P3),
            TxBody::Bisect {
                dispute,
                leaf,
                proof
            }
        ),
        Err(TxError::NotParty)
    );
}

#[test]
fn frivolous_challenger_loses_its_bond() {
    let mut chain = network();
    let params = chain.state.params().clone();
    let req = key(REQUESTER);
    let spec = job_spec(
        model(),
        input(),
        &[(4, 10_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    let job = submit(&mut chain, &req, spec);
    let honest = Trace::honest(&model(), 0, 4, input());
    chain.deliver(&key(P1), job, 0, &honest).unwrap();
    let outsider = key(OUTSIDER);
    let o = address_of(&outsider);
    let p1 = address_of(&key(P1));
    let r = address_of(&req);
    let bogus = Trace::cheating(&model(), 0, 4, input(), 1);
    let (o0, p0, r0) = (
        chain.state.balance(&o),
        chain.state.balance(&p1),
        chain.state.balance(&r),
    );
    let dispute = chain.state.meta().next_dispute;
    chain
        .step(
            &outsider,
            TxBody::Challenge {
                job,
                stage: 0,
                result: bogus.result(),
            },
        )
        .unwrap();
    let bond = params.challenge_bond;
    assert_eq!(chain.state.balance(&o).0, o0.0 - bond.0 - 1);
    let errors = chain.play_dispute(dispute, (&key(P1), &honest), (&outsider, &bogus));
    assert!(errors.is_empty(), "{errors:?}");
    let to_winner = bond.mul_ppm(params.slash_winner_ppm);
    let to_requester = bond.mul_ppm(params.slash_requester_ppm);
    let rounds = chain.state.dispute(dispute).unwrap().game.round() as u128;
    assert_eq!(chain.state.balance(&o).0, o0.0 - bond.0 - 1 - rounds);
    assert_eq!(chain.state.balance(&p1).0, p0.0 + to_winner.0 - rounds);
    assert_eq!(chain.state.balance(&r).0, r0.0 + to_requester.0);
    // The honest provider keeps its stake and is paid after a fresh window.
    assert_eq!(chain.state.account(&p1).bonded, Amount(STAKE));
    let events = advance(&mut chain, 5);
    assert!(events.contains(&Event::StagePaid {
        job,
        stage: 0,
        provider: p1,
        amount: Amount(50)
    }));
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
}

#[test]
fn challenge_rules() {
    let mut chain = network();
    let req = key(REQUESTER);
    let spec = job_spec(
        model(),
        input(),
        &[(4, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    let job = submit(&mut chain, &req, spec);
    let honest = Trace::honest(&model(), 0, 4, input());
    let body = |t: &Trace| TxBody::Challenge {
        job,
        stage: 0,
        result: t.result(),
    };
    // Before reveal the stage is not challengeable.
    assert_eq!(
        chain.step(&key(OUTSIDER), body(&honest)),
        Err(TxError::WrongPhase("challengeable".into()))
    );
    chain.deliver(&key(P1), job, 0, &honest).unwrap();
    assert_eq!(
        chain.step(&key(OUTSIDER), body(&honest)),
        Err(TxError::ChallengeAgrees)
    );
    let bogus = Trace::cheating(&model(), 0, 4, input(), 0);
    assert_eq!(
        chain.step(&key(P1), body(&bogus)),
        Err(TxError::SelfChallenge)
    );
    let other_input = Trace::honest(&model(), 0, 4, Hash([1; 32]));
    assert_eq!(
        chain.step(&key(OUTSIDER), body(&other_input)),
        Err(TxError::InputMismatch)
    );
    advance(&mut chain, 5);
    assert_eq!(
        chain.step(&key(OUTSIDER), body(&bogus)),
        Err(TxError::WrongPhase("challengeable".into()))
    );
}

#[test]
fn missed_deadline_reroutes_and_requester_pays_once() {
    let mut chain = network();
    let params = chain.state.params().clone();
    let req = key(REQUESTER);
    let r = address_of(&req);
    let before = chain.state.balance(&r);
    let spec = job_spec(
        model(),
        input(),
        &[(4, 10_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    let deadline_blocks = spec.deadline;
    let job = submit(&mut chain, &req, spec);
    let p1 = address_of(&key(P1));
    assert_eq!(assigned(&chain, job, 0), p1);
    let stake = chain.state.account(&p1).bonded;
    // P1 stays silent past its deadline.
    let events = advance(&mut chain, deadline_blocks + 1);
    let penalty = stake.mul_ppm(params.miss_penalty_ppm);
    assert!(events.contains(&Event::DeadlineMissed {
        job,
        stage: 0,
        provider: p1,
        penalty
    }));
    assert_eq!(chain.state.account(&p1).bonded.0, stake.0 - penalty.0);
    assert!(chain.state.provider(&p1).unwrap().reputation.failure > 0);
    // Re-routed to the next provider, who delivers.
    let p2 = assigned(&chain, job, 0);
    assert_eq!(p2, address_of(&key(P2)));
    chain
        .deliver(&key(P2), job, 0, &Trace::honest(&model(), 0, 4, input()))
        .unwrap();
    advance(&mut chain, 5);
    let j = chain.state.job(job).unwrap();
    assert_eq!(j.status, JobStatus::Completed);
    // Paid once, at P2's price (10 mega-ops × 6), plus its share of P1's penalty.
    let share = penalty.mul_ppm(params.slash_requester_ppm);
    // The SubmitJob fee: min_fee + one slot × fee_per_slot = 2.
    assert_eq!(chain.state.balance(&r).0, before.0 - 2 - 60 + share.0);
    assert_eq!(chain.state.provider(&p1).unwrap().open, 0);
    assert_eq!(chain.state.provider(&p1).unwrap().active, 0);
}

#[test]
fn downstream_stage_waits_for_a_rerouted_upstream_without_penalty() {
    let mut chain = network();
    let req = key(REQUESTER);
    let spec = job_spec(
        model(),
        input(),
        &[(2, 1_000_000), (3, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    let deadline_blocks = spec.deadline;
    let job = submit(&mut chain, &req, spec);
    let (p1, p2) = (address_of(&key(P1)), address_of(&key(P2)));
    assert_eq!(assigned(&chain, job, 0), p1);
    assert_eq!(assigned(&chain, job, 1), p2);
    // P1 (stage 0) stays silent; P2 has no input, so it is not late.
    let events = advance(&mut chain, deadline_blocks + 1);
    let missed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::DeadlineMissed { provider, .. } => Some(*provider),
            _ => None,
        })
        .collect();
    assert_eq!(missed, vec![p1]);
    let p3 = assigned(&chain, job, 0);
    assert_eq!(p3, address_of(&key(P3)));
    // Well past P2's original deadline, stage 0 is delivered by P3 ...
    advance(&mut chain, 3);
    let t0 = Trace::honest(&model(), 0, 2, input());
    chain.deliver(&key(P3), job, 0, &t0).unwrap();
    let now = chain.state.height();
    let slot = chain.state.job(job).unwrap().stages[1].slots[0]
        .assignment
        .clone()
        .unwrap();
    // ... which gives stage 1 the job's whole deadline from the reveal.
    assert_eq!(slot.provider, p2);
    assert!(slot.deadline.0 >= now.0 + deadline_blocks - 1, "{slot:?}");
    advance(&mut chain, deadline_blocks - 2);
    let t1 = Trace::honest(&model(), 2, 3, t0.result().output);
    chain.deliver(&key(P2), job, 1, &t1).unwrap();
    advance(&mut chain, 5);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
    let rep = &chain.state.provider(&p2).unwrap().reputation;
    assert_eq!(rep.failure, 0);
    assert!(rep.success > 0);
}

#[test]
fn unmatched_job_is_cancelled_and_refunded() {
    let mut chain = network();
    let req = key(REQUESTER);
    let r = address_of(&req);
    let before = chain.state.balance(&r);
    // Nobody is this cheap.
    let spec = job_spec(
        model(),
        input(),
        &[(4, 10_000_000)],
        4,
        VerificationLevel::Optimistic,
    );
    let job = submit(&mut chain, &req, spec);
    let wait = chain.state.params().match_timeout + 2;
    advance(&mut chain, wait);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Cancelled);
    // Only the SubmitJob fee (min_fee + one slot) is spent.
    assert_eq!(chain.state.balance(&r).0, before.0 - 2);
}

#[test]
fn replicas_that_disagree_open_a_dispute() {
    let mut chain = network();
    let req = key(REQUESTER);
    let mut spec = job_spec(
        model(),
        input(),
        &[(4, 10_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    spec.requirements.replicas = 2;
    let job = submit(&mut chain, &req, spec);
    let st = &chain.state.job(job).unwrap().stages[0];
    let a = st.slots[0].assignment.as_ref().unwrap().provider;
    let b = st.slots[1].assignment.as_ref().unwrap().provider;
    assert_ne!(a, b);
    let honest = Trace::honest(&model(), 0, 4, input());
    let bad = Trace::cheating(&model(), 0, 4, input(), 3);
    let (ka, kb) = (key_of(a), key_of(b));
    // Both commit before anyone reveals (a replica cannot copy).
    for (k, t) in [(&ka, &honest), (&kb, &bad)] {
        let who = address_of(k);
        let salt = salt_for(&who, job, 0);
        chain.push(
            k,
            TxBody::CommitResult {
                job,
                stage: 0,
                commitment: t.result().commitment(job, 0, &salt, &who),
            },
        );
    }
    produce(&mut chain);
    // Copying b's commitment under a's key does not open: the commitment binds the provider.
    let salt_b = salt_for(&b, job, 0);
    assert_eq!(
        chain.step(
            &ka,
            TxBody::RevealResult {
                job,
                stage: 0,
                result: bad.result(),
                salt: salt_b
            }
        ),
        Err(TxError::CommitmentMismatch)
    );
    for (k, t) in [(&ka, &honest), (&kb, &bad)] {
        let who = address_of(k);
        chain.push(
            k,
            TxBody::RevealResult {
                job,
                stage: 0,
                result: t.result(),
                salt: salt_for(&who, job, 0),
            },
        );
    }
    produce(&mut chain);
    let dispute = DisputeId(0);
    let d = chain.state.dispute(dispute).unwrap().clone();
    assert_eq!(d.defendant, a);
    let errors = chain.play_dispute(dispute, (&ka, &honest), (&kb, &bad));
    assert!(errors.is_empty());
    assert!(chain.state.account(&b).bonded.0 < STAKE);
    advance(&mut chain, 5);
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
}

#[test]
fn mandate_caps_and_expiry_are_enforced() {
    let mut chain = network();
    let principal = key(REQUESTER);
    let agent = key(OUTSIDER);
    let pa = address_of(&principal);
    let aa = address_of(&agent);
    let expiry = chain.state.height().plus(30);
    let terms = MandateTerms {
        agent: aa,
        total_cap: Amount(250),
        per_job_cap: Amount(150),
        max_unit_price: Amount(10),
        expiry,
        min_verification: VerificationLevel::Optimistic,
    };
    chain
        .step(
            &principal,
            TxBody::GrantMandate {
                terms: terms.clone(),
            },
        )
        .unwrap();
    let m = agentic_protocol::MandateId(0);
    let spec = |ops: u64, price: u128| {
        let mut s = job_spec(
            model(),
            input(),
            &[(4, ops)],
            price,
            VerificationLevel::Optimistic,
        );
        s.mandate = Some(m);
        s
    };
    let p_before = chain.state.balance(&pa);
    let a_before = chain.state.balance(&aa);
    // 100 of escrow from the principal; the agent pays only the fee.
    chain
        .step(
            &agent,
            TxBody::SubmitJob {
                spec: spec(10_000_000, 10),
            },
        )
        .unwrap();
    assert_eq!(chain.state.balance(&pa).0, p_before.0 - 100);
    assert_eq!(chain.state.balance(&aa).0, a_before.0 - 2);
    assert_eq!(chain.state.mandate(m).unwrap().spent, Amount(100));
    // Per-job cap.
    assert_eq!(
        chain.step(
            &agent,
            TxBody::SubmitJob {
                spec: spec(16_000_000, 10)
            }
        ),
        Err(TxError::MandatePerJobCapExceeded {
            escrow: Amount(160),
            cap: Amount(150)
        })
    );
    // Unit price.
    assert!(matches!(
        chain.step(
            &agent,
            TxBody::SubmitJob {
                spec: spec(1_000_000, 11)
            }
        ),
        Err(TxError::MandateUnitPriceExceeded { .. })
    ));
    // Total cap: 100 + 100 ok, then 100 more is over 250.
    chain
        .step(
            &agent,
            TxBody::SubmitJob {
                spec: spec(10_000_000, 10),
            },
        )
        .unwrap();
    assert!(matches!(
        chain.step(
            &agent,
            TxBody::SubmitJob {
                spec: spec(10_000_000, 10)
            }
        ),
        Err(TxError::MandateTotalCapExceeded { .. })
    ));
    // Only the agent may use it.
    assert_eq!(
        chain.step(
            &key(P3),
            TxBody::SubmitJob {
                spec: spec(1_000_000, 10)
            }
        ),
        Err(TxError::NotAgent)
    );
    // Refunds restore room: finish the first job (billed 50 of 100).
    let p1 = key_of(assigned(&chain, JobId(0), 0));
    chain
        .deliver(&p1, JobId(0), 0, &Trace::honest(&model(), 0, 4, input()))
        .unwrap();
    advance(&mut chain, 5);
    assert_eq!(
        chain.state.job(JobId(0)).unwrap().status,
        JobStatus::Completed
    );
    let spent = chain.state.mandate(m).unwrap().spent;
    assert_eq!(
        spent,
        Amount(200 - (100 - Amount::cost(10_000_000, Amount(5)).unwrap().0))
    );
    // Expiry.
    chain.advance_to(expiry);
    assert_eq!(
        chain.step(
            &agent,
            TxBody::SubmitJob {
                spec: spec(1_000_000, 10)
            }
        ),
        Err(TxError::MandateExpired(expiry))
    );
}

#[test]
fn revoked_mandate_stops_new_jobs() {
    let mut chain = network();
    let principal = key(REQUESTER);
    let agent = key(OUTSIDER);
    let terms = MandateTerms {
        agent: address_of(&agent),
        total_cap: Amount(1_000),
        per_job_cap: Amount(1_000),
        max_unit_price: Amount(10),
        expiry: Height(1_000),
        min_verification: VerificationLevel::Sampled,
    };
    chain
        .step(&principal, TxBody::GrantMandate { terms })
        .unwrap();
    let m = agentic_protocol::MandateId(0);
    let mut spec = job_spec(
        model(),
        input(),
        &[(4, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    spec.mandate = Some(m);
    assert_eq!(
        chain.step(&agent, TxBody::SubmitJob { spec: spec.clone() }),
        Err(TxError::MandateVerificationTooWeak)
    );
    assert_eq!(
        chain.step(&agent, TxBody::RevokeMandate { mandate: m }),
        Err(TxError::NotPrincipal)
    );
    chain
        .step(&principal, TxBody::RevokeMandate { mandate: m })
        .unwrap();
    spec.requirements.verification = VerificationLevel::Sampled;
    assert_eq!(
        chain.step(&agent, TxBody::SubmitJob { spec }),
        Err(TxError::MandateRevoked(m))
    );
}

fn governance_chain() -> TestChain {
    let mut g = GenesisBuilder::new(7).params(fast_params());
    for seed in 30..34u64 {
        g = g.account(address_of(&key(seed)), 10_000, 1_000);
    }
    g = g.account(address_of(&key(40)), 10_000, 0);
    TestChain::new(&g.build())
}

#[test]
fn passed_proposal_changes_the_parameter_at_its_height() {
    let mut chain = governance_chain();
    let change = ParamChange {
        key: ParamKey::ChallengeWindow,
        value: 7,
    };
    let old = chain.state.params().challenge_window;
    chain.step(&key(30), TxBody::Propose { change }).unwrap();
    let id = agentic_protocol::ProposalId(0);
    let ends = chain.state.proposal(id).unwrap().voting_ends;
    for seed in 30..33u64 {
        chain.push(
            &key(seed),
            TxBody::Vote {
                proposal: id,
                approve: true,
            },
        );
    }
    chain.push(
        &key(33),
        TxBody::Vote {
            proposal: id,
            approve: false,
        },
    );
    produce(&mut chain);
    assert_eq!(
        chain.step(
            &key(30),
            TxBody::Vote {
                proposal: id,
                approve: true
            }
        ),
        Err(TxError::AlreadyVoted)
    );
    assert!(matches!(
        chain.step(
            &key(40),
            TxBody::Vote {
                proposal: id,
                approve: true
            }
        ),
        Err(TxError::InsufficientStake { .. })
    ));
    let activates = ends.plus(chain.state.params().activation_delay);
    chain.advance_to(Height(activates.0 - 1));
    assert_eq!(
        chain.state.proposal(id).unwrap().status,
        ProposalStatus::Passed { activates }
    );
    assert_eq!(chain.state.params().challenge_window, old);
    produce(&mut chain);
    assert_eq!(chain.state.params().challenge_window, 7);
    assert_eq!(
        chain.state.proposal(id).unwrap().status,
        ProposalStatus::Enacted
    );
}

#[test]
fn failed_proposal_changes_nothing() {
    let mut chain = governance_chain();
    let change = ParamChange {
        key: ParamKey::SlashPpm,
        value: 1,
    };
    chain.step(&key(30), TxBody::Propose { change }).unwrap();
    let id = agentic_protocol::ProposalId(0);
    chain.push(
        &key(30),
        TxBody::Vote {
            proposal: id,
            approve: true,
        },
    );
    chain.push(
        &key(31),
        TxBody::Vote {
            proposal: id,
            approve: false,
        },
    );
    chain.push(
        &key(32),
        TxBody::Vote {
            proposal: id,
            approve: false,
        },
    );
    produce(&mut chain);
    let before = chain.state.params().clone();
    advance(&mut chain, 12);
    assert_eq!(
        chain.state.proposal(id).unwrap().status,
        ProposalStatus::Rejected
    );
    assert_eq!(chain.state.params(), &before);
    // Without quorum nothing passes either.
    chain.step(&key(30), TxBody::Propose { change }).unwrap();
    let id = agentic_protocol::ProposalId(1);
    chain
        .step(
            &key(30),
            TxBody::Vote {
                proposal: id,
                approve: true,
            },
        )
        .unwrap();
    advance(&mut chain, 12);
    assert_eq!(
        chain.state.proposal(id).unwrap().status,
        ProposalStatus::Rejected
    );
    // Invalid changes and non-stakers are refused up front.
    assert!(matches!(
        chain.step(
            &key(30),
            TxBody::Propose {
                change: ParamChange {
                    key: ParamKey::SlashPpm,
                    value: 2_000_000
                }
            }
        ),
        Err(TxError::InvalidParam(_))
    ));
    assert!(matches!(
        chain.step(&key(40), TxBody::Propose { change }),
        Err(TxError::InsufficientStake { .. })
    ));
}

#[test]
fn replayed_and_cross_chain_transactions_are_rejected() {
    let g = GenesisBuilder::new(7)
        .params(fast_params())
        .account(address_of(&key(1)), 1_000, 0)
        .build();
    let mut chain = TestChain::new(&g);
    let to = address_of(&key(2));
    let tx = chain.sign(
        &key(1),
        TxBody::Transfer {
            to,
            amount: Amount(10),
        },
    );
    chain.pending.push(tx.clone());
    let out = produce(&mut chain);
    assert_eq!(out.receipts, vec![Ok(())]);
    // Replay of the same signed bytes.
    chain.pending.push(tx.clone());
    let root = chain.state.root();
    let out = produce(&mut chain);
    assert_eq!(
        out.receipts,
        vec![Err(TxError::BadNonce {
            expected: 1,
            got: 0
        })]
    );
    assert_eq!(chain.state.balance(&to), Amount(10));
    assert_ne!(root, chain.state.root(), "height advanced");
    // Signed for another chain.
    let other = SignedTx::sign(
        &key(1),
        Tx {
            chain_id: ChainId(8),
            nonce: 1,
            fee: Amount(1),
            body: TxBody::Transfer {
                to,
                amount: Amount(10),
            },
        },
    );
    chain.pending.push(other);
    let out = produce(&mut chain);
    assert_eq!(
        out.receipts,
        vec![Err(TxError::WrongChain {
            expected: ChainId(7),
            got: ChainId(8)
        })]
    );
    // A forged signature (right key, other payload).
    let forged = SignedTx::from_parts(
        key(1).public_key(),
        Tx {
            chain_id: ChainId(7),
            nonce: 1,
            fee: Amount(1),
            body: TxBody::Transfer {
                to,
                amount: Amount(900),
            },
        },
        tx.signature().clone(),
    );
    chain.pending.push(forged);
    let out = produce(&mut chain);
    assert_eq!(out.receipts, vec![Err(TxError::BadSignature)]);
    assert_eq!(chain.state.balance(&to), Amount(10));
}

#[test]
fn state_root_is_incremental_and_matches_a_full_rebuild() {
    let (chain, _, _) = cheating_job_under_audit();
    assert_eq!(chain.state.root(), chain.state.full_root());
    let _: &State = &chain.state;
    assert_eq!(
        layer_output(&model(), 0, &input()),
        Trace::honest(&model(), 0, 1, input())[1]
    );
}
