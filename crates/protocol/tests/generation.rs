//! Generation jobs: a session across pipeline stages, committed, revealed,
//! checked as one chain and paid for the tokens actually generated. The
//! supply invariant and incremental root = full rebuild are checked after
//! every block.

use agentic_protocol::event::Event;
use agentic_protocol::state::{session_break, session_break_among, JobStatus, StagePhase};
use agentic_protocol::test_utils::{
    address_of, fast_params, generation_job, job_spec, key, offer, salt_for, session_results,
    GenesisBuilder, TestChain, Trace,
};
use agentic_protocol::tx::{JobSpec, StageResult, StageSpec, TxBody};
use agentic_protocol::types::{limits, Address, Amount, Hash, JobId, VerificationLevel};
use agentic_protocol::{State, TxError};
use commonware_cryptography::ed25519::PrivateKey;

const REQUESTER: u64 = 1;
/// Provider seeds and prices (per mega-op).
const PROVIDERS: [(u64, u128); 6] = [(11, 5), (12, 6), (13, 7), (14, 8), (15, 9), (16, 10)];
const STAKE: u128 = 20_000;
const PROMPT: u32 = 10;
const MAX_TOKENS: u32 = 20;
const PREFILL: u64 = 2_000_000;
const STEP_OPS: u64 = 100_000;
const KEY_OPS: u64 = 1_000;

fn model() -> Hash {
    Hash::digest("model", &[b"llama"])
}
fn input() -> Hash {
    Hash::digest("input", &[b"prompt, sampler, seed"])
}
fn transcript() -> Hash {
    Hash::digest("transcript", &[b"prompt and generated tokens"])
}

/// A requester and the first `n` providers of [`PROVIDERS`], registered.
fn network(n: usize) -> TestChain {
    let mut g = GenesisBuilder::new(7).params(fast_params()).account(
        address_of(&key(REQUESTER)),
        1_000_000,
        0,
    );
    for (seed, _) in PROVIDERS {
        g = g.account(address_of(&key(seed)), 100_000, 0);
    }
    let mut chain = TestChain::new(&g.build());
    chain.check_invariants = true;
    for &(seed, price) in &PROVIDERS[..n] {
        register(&mut chain, seed, price);
    }
    ok(&mut chain);
    chain
}

fn register(chain: &mut TestChain, seed: u64, price: u128) {
    chain.push(
        &key(seed),
        TxBody::RegisterProvider {
            offer: offer(price, 4),
            stake: Amount(STAKE),
        },
    );
}

/// Produces a block whose transactions must all be accepted; its events.
fn ok(chain: &mut TestChain) -> Vec<Event> {
    let out = chain.produce();
    assert!(out.receipts.iter().all(Result::is_ok), "{:?}", out.receipts);
    out.events.into_iter().map(|e| e.event).collect()
}

fn advance(chain: &mut TestChain, n: u64) -> Vec<Event> {
    (0..n).flat_map(|_| ok(chain)).collect()
}

/// A generation job over `stages` stages of 4 layers, prefill 2 M ops,
/// 100 k ops per step and 1 k per attended position, max price 10.
fn spec(stages: usize, level: VerificationLevel) -> JobSpec {
    generation_job(
        job_spec(model(), input(), &vec![(4, PREFILL); stages], 10, level),
        STEP_OPS,
        KEY_OPS,
        PROMPT,
        MAX_TOKENS,
    )
}

fn submit(chain: &mut TestChain, spec: JobSpec) -> JobId {
    let id = chain.state.meta().next_job;
    chain
        .step(&key(REQUESTER), TxBody::SubmitJob { spec })
        .expect("job accepted");
    id
}

fn provider_of(chain: &TestChain, job: JobId, stage: u32) -> (Address, Amount) {
    let a = chain.state.job(job).unwrap().stages[stage as usize].slots[0]
        .assignment
        .clone()
        .expect("assigned");
    (a.provider, a.price)
}

fn key_of(addr: Address) -> PrivateKey {
    PROVIDERS
        .iter()
        .map(|&(seed, _)| key(seed))
        .find(|k| address_of(k) == addr)
        .expect("a provider")
}

/// The stage holder's commitment to `result`: `CommitSession` with the result's
/// input claim for a generation stage, `CommitResult` for any other.
fn commit_body(chain: &TestChain, job: JobId, stage: u32, result: &StageResult) -> TxBody {
    let (p, _) = provider_of(chain, job, stage);
    let salt = salt_for(&p, job, stage);
    let commitment = result.commitment(job, stage, &salt, &p);
    let generation = chain.state.job(job).unwrap().is_generation();
    TxBody::commit(job, stage, commitment, generation.then_some(result.input))
}

fn commit(chain: &mut TestChain, job: JobId, stage: u32, result: &StageResult) {
    let (p, _) = provider_of(chain, job, stage);
    let body = commit_body(chain, job, stage, result);
    chain.push(&key_of(p), body);
}

fn reveal_body(chain: &TestChain, job: JobId, stage: u32, result: &StageResult) -> TxBody {
    let (p, _) = provider_of(chain, job, stage);
    TxBody::RevealResult {
        job,
        stage,
        result: *result,
        salt: salt_for(&p, job, stage),
    }
}

fn reveal(chain: &mut TestChain, job: JobId, stage: u32, result: &StageResult) {
    let (p, _) = provider_of(chain, job, stage);
    let body = reveal_body(chain, job, stage, result);
    chain.push(&key_of(p), body);
}

fn phase(chain: &TestChain, job: JobId, stage: usize) -> StagePhase {
    chain.state.job(job).unwrap().stages[stage].phase
}

/// Produces blocks until `extra` blocks past stage `stage`'s commit deadline; their
/// events.
fn past_commit_deadline(chain: &mut TestChain, job: JobId, stage: usize, extra: u64) -> Vec<Event> {
    let deadline = chain.state.job(job).unwrap().stages[stage].slots[0]
        .assignment
        .as_ref()
        .unwrap()
        .deadline;
    chain
        .advance_to(deadline.plus(extra))
        .into_iter()
        .flat_map(|o| o.events.into_iter().map(|e| e.event))
        .collect()
}

/// Every stage of the (three-stage) session has its reveal window open.
fn assert_reveals_open(chain: &TestChain, job: JobId) {
    for s in 0..3 {
        assert!(matches!(
            phase(chain, job, s),
            StagePhase::Running {
                reveal_deadline: Some(_)
            }
        ));
    }
}

/// Every provider is free again: no active assignment, nothing open.
fn all_released(chain: &TestChain) {
    for (seed, _) in PROVIDERS {
        if let Some(p) = chain.state.provider(&address_of(&key(seed))) {
            assert_eq!((p.active, p.open), (0, 0), "provider {seed} still held");
        }
    }
}

#[test]
fn generation_ops_follow_the_formula() {
    let s = StageSpec {
        step_ops: STEP_OPS,
        key_ops: KEY_OPS,
        ..StageSpec::layers(0, 4, PREFILL)
    };
    // One step is the prefill alone.
    assert_eq!(s.generation_ops(PROMPT, 1), Some(PREFILL));
    // 7 steps after 10 prompt tokens: 6 decode steps attending to
    // 10, 11, …, 15 earlier positions (6·10 + 6·7/2 = 81).
    assert_eq!(
        s.generation_ops(PROMPT, 7),
        Some(PREFILL + 6 * STEP_OPS + 81 * KEY_OPS)
    );
    assert_eq!(s.generation_ops(PROMPT, 20), Some(4_280_000));
    assert_eq!(s.generation_ops(PROMPT, 0), None);
    let huge = StageSpec {
        key_ops: u64::MAX,
        ..s
    };
    assert_eq!(huge.generation_ops(PROMPT, 1), Some(PREFILL));
    assert_eq!(huge.generation_ops(PROMPT, 2), None);
    let big_prefill = StageSpec {
        step_ops: 1,
        ..StageSpec::layers(0, 1, u64::MAX)
    };
    assert_eq!(big_prefill.generation_ops(1, 1), Some(u64::MAX));
    assert_eq!(big_prefill.generation_ops(1, 2), None);
    // Plain stages (no step or key ops) cost their prefill at any length.
    assert_eq!(
        StageSpec::layers(0, 1, u64::MAX).generation_ops(PROMPT, MAX_TOKENS),
        Some(u64::MAX)
    );
    // Inference stages of a plain job bill their ops whatever the steps.
    let plain = job_spec(
        model(),
        input(),
        &[(4, PREFILL)],
        10,
        VerificationLevel::Optimistic,
    );
    assert_eq!(plain.stage_max_ops(0), Some(PREFILL));
    assert_eq!(plain.stage_ops_for(0, 9), Some(PREFILL));
    assert_eq!(plain.stage_max_ops(1), None);
}

#[test]
fn session_break_finds_the_first_bad_link() {
    let good = session_results(transcript(), 3, 7);
    assert_eq!(session_break(&good), None);
    assert_eq!(session_break(&session_results(transcript(), 1, 3)), None);
    assert_eq!(session_break(&[]), None);
    let mut steps = good.clone();
    steps[2].steps = 6;
    assert_eq!(session_break(&steps), Some(2));
    let mut link = good.clone();
    link[1].output = Hash([9; 32]);
    assert_eq!(session_break(&link), Some(1));
    let mut transcript_link = good.clone();
    transcript_link[2].output = Hash([9; 32]);
    assert_eq!(session_break(&transcript_link), Some(2));
    let mut first = good;
    first[0].input = Hash([9; 32]);
    assert_eq!(session_break(&first), Some(2));
    // Among the stages a salvage kept: links to a dropped stage are not checked.
    let mut kept: Vec<Option<StageResult>> = session_results(transcript(), 3, 7)
        .into_iter()
        .map(Some)
        .collect();
    kept[1] = None;
    assert_eq!(session_break_among(&kept), None);
    kept[0] = kept[0].map(|r| StageResult {
        output: Hash::ZERO,
        ..r
    });
    assert_eq!(session_break_among(&kept), None);
    kept[2] = kept[2].map(|r| StageResult {
        output: Hash::ZERO,
        ..r
    });
    assert_eq!(session_break_among(&kept), Some(2));
    kept[2] = kept[2].map(|r| StageResult { steps: 6, ..r });
    assert_eq!(session_break_among(&kept), Some(2));
    assert_eq!(session_break_among(&[None, None]), None);
}

#[test]
fn three_stage_session_commits_together_and_pays_for_tokens_generated() {
    let mut chain = network(3);
    let r = address_of(&key(REQUESTER));
    let before = chain.state.balance(&r);
    let spec = spec(3, VerificationLevel::Optimistic);
    // The escrow covers max_tokens steps at the max price: 4.28 M ops × 10
    // per mega-op = 42 per stage.
    assert_eq!(spec.stage_max_ops(0), Some(4_280_000));
    let escrow = State::escrow_for(&spec).unwrap();
    assert_eq!(escrow, Amount(3 * 42));
    let fee = chain
        .state
        .params()
        .required_fee(&TxBody::SubmitJob { spec: spec.clone() });
    let job = submit(&mut chain, spec.clone());
    assert_eq!(chain.state.job(job).unwrap().escrow, escrow);

    // Matched whole: every stage running, all with one deadline.
    let j = chain.state.job(job).unwrap();
    let deadlines: Vec<_> = j
        .stages
        .iter()
        .map(|s| s.slots[0].assignment.as_ref().unwrap().deadline)
        .collect();
    assert!(deadlines.iter().all(|d| *d == deadlines[0]));
    for s in 0..3 {
        assert!(matches!(phase(&chain, job, s), StagePhase::Running { .. }));
    }

    // All three commit in one block, the last stage first: nobody waits for
    // an earlier stage's reveal.
    let steps = 7;
    let results = session_results(transcript(), 3, steps);
    for s in [2, 0, 1] {
        commit(&mut chain, job, s, &results[s as usize]);
    }
    ok(&mut chain);
    assert_reveals_open(&chain, job);

    // Stages 2 and 0 reveal: their results are held while stage 1 is out.
    reveal(&mut chain, job, 2, &results[2]);
    reveal(&mut chain, job, 0, &results[0]);
    ok(&mut chain);
    let j = chain.state.job(job).unwrap();
    for s in [0, 2] {
        assert_eq!(j.stages[s].result, Some(results[s]));
        assert!(matches!(j.stages[s].phase, StagePhase::Running { .. }));
    }
    // The held stages are not late while they wait.
    advance(&mut chain, 2);
    assert!(chain
        .state
        .job(job)
        .unwrap()
        .stages
        .iter()
        .all(|s| matches!(s.phase, StagePhase::Running { .. })));

    // Stage 1 reveals: the session chains, every stage is verified together.
    reveal(&mut chain, job, 1, &results[1]);
    let events = ok(&mut chain);
    for s in 0..3u32 {
        assert!(matches!(
            phase(&chain, job, s as usize),
            StagePhase::Challengeable { .. }
        ));
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::ChallengeWindowOpened { stage, .. } if *stage == s)));
    }

    // Windows close: each provider is paid its ops over 7 steps × its price.
    let paid_before: Vec<_> = (0..3)
        .map(|s| {
            let (p, _) = provider_of(&chain, job, s);
            chain.state.balance(&p)
        })
        .collect();
    let window = chain.state.params().challenge_window;
    let events = advance(&mut chain, window + 1);
    let mut total = Amount::ZERO;
    for s in 0..3u32 {
        let (p, price) = provider_of(&chain, job, s);
        let ops = spec.stages[s as usize]
            .generation_ops(PROMPT, steps)
            .unwrap();
        assert_eq!(ops, 2_681_000);
        let bill = Amount::cost(ops, price).unwrap();
        assert!(
            events.contains(&Event::StagePaid {
                job,
                stage: s,
                provider: p,
                amount: bill,
            }),
            "{events:?}"
        );
        assert_eq!(
            chain.state.balance(&p),
            paid_before[s as usize].checked_add(bill).unwrap()
        );
        total = total.checked_add(bill).unwrap();
    }
    // Prices 5, 6, 7: 13 + 16 + 18.
    assert_eq!(total, Amount(47));
    let refund = escrow.saturating_sub(total);
    assert!(events.contains(&Event::JobCompleted { job, refund }));
    let j = chain.state.job(job).unwrap();
    assert_eq!(j.status, JobStatus::Completed);
    assert_eq!(j.escrow, Amount::ZERO);
    assert_eq!(chain.state.balance(&r).0, before.0 - fee.0 - total.0);
    all_released(&chain);
}

/// An audited session: every stage's auditor is drawn when its commitment
/// is final, commits before any reveal, and reports once the whole session
/// revealed; its fee is its price × the ops of the steps revealed.
#[test]
fn audited_session_pays_auditors_for_the_steps_revealed() {
    let mut chain = network(6);
    let r = address_of(&key(REQUESTER));
    let before = chain.state.balance(&r);
    let spec = spec(3, VerificationLevel::Audited);
    let escrow = State::escrow_for(&spec).unwrap();
    // One replica and one auditor reserved per stage.
    assert_eq!(escrow, Amount(3 * 42 * 2));
    let fee = chain
        .state
        .params()
        .required_fee(&TxBody::SubmitJob { spec: spec.clone() });
    let job = submit(&mut chain, spec.clone());
    let steps = 12;
    let results = session_results(transcript(), 3, steps);
    for s in 0..3 {
        commit(&mut chain, job, s, &results[s as usize]);
    }
    ok(&mut chain);
    // Three auditors drawn, outside the job; each commits the same result.
    let auditors: Vec<Address> = (0..3)
        .map(|s| chain.auditor_of(job, s).expect("audited"))
        .collect();
    for (s, a) in auditors.iter().enumerate() {
        assert!((0..3).all(|t| provider_of(&chain, job, t).0 != *a));
        let salt = salt_for(a, job, s as u32);
        chain.push(
            &key_of(*a),
            TxBody::AuditCommit {
                job,
                stage: s as u32,
                commitment: results[s].commitment(job, s as u32, &salt, a),
            },
        );
    }
    ok(&mut chain);
    for s in 0..3 {
        reveal(&mut chain, job, s, &results[s as usize]);
    }
    ok(&mut chain);
    let mut prices = Vec::new();
    for (s, a) in auditors.iter().enumerate() {
        let StagePhase::Auditing { auditor, price, .. } = phase(&chain, job, s) else {
            panic!("stage {s} not auditing");
        };
        assert_eq!(auditor, *a);
        prices.push(price);
    }
    for (s, a) in auditors.iter().enumerate() {
        chain.push(
            &key_of(*a),
            TxBody::AuditReport {
                job,
                stage: s as u32,
                result: results[s],
                salt: salt_for(a, job, s as u32),
            },
        );
    }
    let events = ok(&mut chain);
    let ops = spec.stages[0].generation_ops(PROMPT, steps).unwrap();
    let mut total = Amount::ZERO;
    for (s, a) in auditors.iter().enumerate() {
        let fee = Amount::cost(ops, prices[s]).unwrap();
        assert!(events.contains(&Event::AuditAgreed {
            job,
            stage: s as u32,
            auditor: *a,
            fee,
        }));
        total = total.checked_add(fee).unwrap();
    }
    let window = chain.state.params().challenge_window;
    let events = advance(&mut chain, window + 1);
    for s in 0..3u32 {
        let (p, price) = provider_of(&chain, job, s);
        let bill = Amount::cost(ops, price).unwrap();
        assert!(events.contains(&Event::StagePaid {
            job,
            stage: s,
            provider: p,
            amount: bill,
        }));
        total = total.checked_add(bill).unwrap();
    }
    let refund = escrow.saturating_sub(total);
    assert!(events.contains(&Event::JobCompleted { job, refund }));
    assert_eq!(chain.state.balance(&r).0, before.0 - fee.0 - total.0);
    all_released(&chain);
}

/// Commits the three stages' `results` and reveals them all; returns the
/// events of the reveal block.
fn run_session(chain: &mut TestChain, job: JobId, results: &[StageResult]) -> Vec<Event> {
    for (s, r) in results.iter().enumerate() {
        commit(chain, job, s as u32, r);
    }
    ok(chain);
    for (s, r) in results.iter().enumerate() {
        reveal(chain, job, s as u32, r);
    }
    ok(chain)
}

/// A broken session fails the job: nobody paid, nobody slashed, and the
/// session's bill at the steps claimed (their upper median) burned, the rest
/// of the escrow refunded — a requester that breaks its own session through a
/// second identity pays as much as for an intact one. Returns the events.
fn assert_session_fails(results: Vec<StageResult>, broken_at: u32, steps: u32) -> Vec<Event> {
    let mut chain = network(3);
    let r = address_of(&key(REQUESTER));
    let before = chain.state.balance(&r);
    let spec = spec(3, VerificationLevel::Optimistic);
    let escrow = State::escrow_for(&spec).unwrap();
    let fee = chain
        .state
        .params()
        .required_fee(&TxBody::SubmitJob { spec: spec.clone() });
    let job = submit(&mut chain, spec.clone());
    let stakes: Vec<_> = PROVIDERS
        .iter()
        .map(|&(seed, _)| chain.state.account(&address_of(&key(seed))))
        .collect();
    let bill: u128 = (0..3u32)
        .map(|s| {
            let (_, price) = provider_of(&chain, job, s);
            let ops = spec.stages[s as usize]
                .generation_ops(PROMPT, steps)
                .unwrap();
            Amount::cost(ops, price).unwrap().0
        })
        .sum();
    let events = run_session(&mut chain, job, &results);
    assert!(
        events.contains(&Event::SessionBroken {
            job,
            stage: broken_at
        }),
        "{events:?}"
    );
    assert!(events.contains(&Event::SessionCharged {
        job,
        steps,
        burned: Amount(bill)
    }));
    assert!(events.contains(&Event::JobFailed {
        job,
        refund: Amount(escrow.0 - bill)
    }));
    let mut later = events.clone();
    later.extend(advance(&mut chain, 10));
    assert!(!later.iter().any(|e| matches!(
        e,
        Event::StagePaid { .. } | Event::Slashed { .. } | Event::AuditPaid { .. }
    )));
    let j = chain.state.job(job).unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.escrow, Amount::ZERO);
    assert!(j
        .stages
        .iter()
        .all(|s| matches!(s.phase, StagePhase::Cancelled)));
    // The requester paid its fee and the session's bill (burned).
    assert_eq!(chain.state.balance(&r).0, before.0 - fee.0 - bill);
    for (i, &(seed, _)) in PROVIDERS.iter().enumerate() {
        let now = chain.state.account(&address_of(&key(seed)));
        assert_eq!(now.bonded, stakes[i].bonded, "provider {seed} lost stake");
    }
    all_released(&chain);
    events
}

#[test]
fn broken_link_fails_the_job_and_burns_its_bill() {
    let mut results = session_results(transcript(), 3, 7);
    results[1].output = Hash::digest("forged", &[b"activations"]);
    assert_session_fails(results, 1, 7);
}

#[test]
fn transcript_link_must_close_the_loop() {
    let mut results = session_results(transcript(), 3, 7);
    results[2].output = Hash::digest("forged", &[b"transcript"]);
    assert_session_fails(results, 2, 7);
}

/// One stage that claims fewer steps (a requester's own, to cut the charge) or
/// more (to raise it) does not move it: the charge is at the others' steps.
#[test]
fn stages_disagreeing_on_steps_fail_the_job_charged_at_the_median() {
    let mut results = session_results(transcript(), 3, 7);
    results[1].steps = 1;
    assert_session_fails(results, 1, 7);
    let mut results = session_results(transcript(), 3, 7);
    results[2].steps = MAX_TOKENS;
    assert_session_fails(results, 2, 7);
}

#[test]
fn steps_out_of_range_are_refused() {
    let mut chain = network(3);
    let job = submit(&mut chain, spec(3, VerificationLevel::Optimistic));
    let mut results = session_results(transcript(), 3, 7);
    results[0].steps = 0;
    results[1].steps = MAX_TOKENS + 1;
    results[2].steps = MAX_TOKENS;
    for s in 0..3 {
        commit(&mut chain, job, s, &results[s as usize]);
    }
    ok(&mut chain);
    for (s, steps) in [(0u32, 0u32), (1, MAX_TOKENS + 1)] {
        let (p, _) = provider_of(&chain, job, s);
        let body = reveal_body(&chain, job, s, &results[s as usize]);
        assert_eq!(
            chain.reject(&key_of(p), body),
            TxError::InvalidSteps {
                steps,
                max: MAX_TOKENS
            }
        );
    }
    // max_tokens itself is fine.
    reveal(&mut chain, job, 2, &results[2]);
    ok(&mut chain);
    assert_eq!(
        chain.state.job(job).unwrap().stages[2].result,
        Some(results[2])
    );
}

#[test]
fn plain_jobs_reveal_no_steps() {
    let mut chain = network(1);
    let spec = job_spec(
        model(),
        input(),
        &[(4, PREFILL)],
        10,
        VerificationLevel::Optimistic,
    );
    let job = submit(&mut chain, spec);
    let trace = Trace::honest(&model(), 0, 4, input());
    let mut result = trace.result();
    result.steps = 1;
    commit(&mut chain, job, 0, &result);
    ok(&mut chain);
    let (p, _) = provider_of(&chain, job, 0);
    let body = reveal_body(&chain, job, 0, &result);
    assert_eq!(
        chain.reject(&key_of(p), body),
        TxError::InvalidSteps { steps: 1, max: 0 }
    );
}

/// A three-stage Optimistic generation job submitted on `network(providers)`: the
/// chain, the job, the requester's balance before it and the submission's fee.
fn optimistic_session(providers: usize) -> (TestChain, JobId, Amount, Amount) {
    let mut chain = network(providers);
    let before = chain.state.balance(&address_of(&key(REQUESTER)));
    let spec = spec(3, VerificationLevel::Optimistic);
    let fee = chain
        .state
        .params()
        .required_fee(&TxBody::SubmitJob { spec: spec.clone() });
    let job = submit(&mut chain, spec);
    (chain, job, before, fee)
}

/// Every stage commits `results`, then stages 0 and 2 reveal theirs; stage 1
/// keeps its reveal back.
fn all_but_stage_1_reveal(chain: &mut TestChain, job: JobId, results: &[StageResult]) {
    for s in 0..3 {
        commit(chain, job, s, &results[s as usize]);
    }
    ok(chain);
    reveal(chain, job, 0, &results[0]);
    reveal(chain, job, 2, &results[2]);
    ok(chain);
}

/// Settles a session whose stages all revealed `results` (Optimistic): the
/// challenge windows close and every stage's holder at the end is paid its
/// ops over `steps` × its price, once; returns the total paid.
fn settle_and_check_pay(chain: &mut TestChain, job: JobId, steps: u32) -> Amount {
    let spec = chain.state.job(job).unwrap().spec.clone();
    let holders: Vec<_> = (0..3).map(|s| provider_of(chain, job, s)).collect();
    let before: Vec<_> = holders
        .iter()
        .map(|(p, _)| chain.state.balance(p))
        .collect();
    let window = chain.state.params().challenge_window;
    let events = advance(chain, window + 2);
    let mut total = Amount::ZERO;
    for (s, (p, price)) in holders.iter().enumerate() {
        let ops = spec.stages[s].generation_ops(PROMPT, steps).unwrap();
        let bill = Amount::cost(ops, *price).unwrap();
        let paid: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Event::StagePaid { job: j, stage, .. } if *j == job && *stage == s as u32))
            .collect();
        assert_eq!(
            paid,
            vec![&Event::StagePaid {
                job,
                stage: s as u32,
                provider: *p,
                amount: bill,
            }],
            "stage {s} paid once, to its holder"
        );
        assert_eq!(chain.state.balance(p), before[s].checked_add(bill).unwrap());
        total = total.checked_add(bill).unwrap();
    }
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
    total
}

/// A stage that lapses after the session ran to its end — here it committed
/// and never revealed, as a requester's second identity holding the stage
/// would — does not cost the honest stages their pay: it is penalized and
/// excluded, the stage goes back to matching, the replacement (which rebuilds
/// the trace from the transcript) commits and reveals, and every stage is
/// paid once; the requester pays exactly the bills.
#[test]
fn missed_reveal_requeues_the_stage_and_every_stage_is_paid() {
    let (mut chain, job, before, fee) = optimistic_session(4);
    let steps = 7;
    let results = session_results(transcript(), 3, steps);
    all_but_stage_1_reveal(&mut chain, job, &results);
    let (late, _) = provider_of(&chain, job, 1);
    let late_stake = chain.state.account(&late).bonded;
    let late_balance = chain.state.balance(&late);
    let window = chain.state.params().reveal_window;
    let events = advance(&mut chain, window + 2);
    let penalty = events
        .iter()
        .find_map(|e| match e {
            Event::DeadlineMissed {
                job: j,
                stage: 1,
                provider,
                penalty,
            } if *j == job && *provider == late => Some(*penalty),
            _ => None,
        })
        .expect("stage 1 missed its reveal");
    assert!(penalty.0 > 0);
    assert!(!events.iter().any(|e| matches!(e, Event::JobFailed { .. })));
    assert_eq!(
        chain.state.account(&late).bonded,
        late_stake.saturating_sub(penalty)
    );
    let j = chain.state.job(job).unwrap();
    assert_eq!(j.status, JobStatus::Active);
    assert!(j.excluded.contains(&late));
    // The fourth provider took stage 1; stages 0 and 2 keep their results.
    let (fresh, _) = provider_of(&chain, job, 1);
    assert_ne!(fresh, late);
    assert!(matches!(
        phase(&chain, job, 1),
        StagePhase::Running {
            reveal_deadline: None
        }
    ));
    for s in [0, 2] {
        assert_eq!(j.stages[s].result, Some(results[s]));
    }
    // Too early: its reveals open once it committed.
    let body = reveal_body(&chain, job, 1, &results[1]);
    assert_eq!(chain.reject(&key_of(fresh), body), TxError::RevealTooEarly);
    commit(&mut chain, job, 1, &results[1]);
    ok(&mut chain);
    reveal(&mut chain, job, 1, &results[1]);
    ok(&mut chain);
    for s in 0..3 {
        assert!(matches!(
            phase(&chain, job, s),
            StagePhase::Challengeable { .. }
        ));
    }
    let total = settle_and_check_pay(&mut chain, job, steps);
    // The lapsed provider is paid nothing; the requester pays the bills, less
    // its share of the penalty.
    assert_eq!(chain.state.balance(&late), late_balance);
    let share = penalty.mul_ppm(chain.state.params().slash_requester_ppm);
    assert_eq!(
        chain.state.balance(&address_of(&key(REQUESTER))).0,
        before.0 - fee.0 - total.0 + share.0
    );
    all_released(&chain);
}

/// A stage that never commits after the others did (the session ended) goes
/// back to matching the same way; reveals wait for the replacement's
/// commitment and then open together.
#[test]
fn missed_commit_after_the_session_requeues_the_stage() {
    let mut chain = network(4);
    let spec = spec(3, VerificationLevel::Optimistic);
    let job = submit(&mut chain, spec);
    let steps = 5;
    let results = session_results(transcript(), 3, steps);
    commit(&mut chain, job, 0, &results[0]);
    commit(&mut chain, job, 2, &results[2]);
    ok(&mut chain);
    // Reveals wait for the whole session's commitments.
    let (p0, _) = provider_of(&chain, job, 0);
    let body = reveal_body(&chain, job, 0, &results[0]);
    assert_eq!(chain.reject(&key_of(p0), body), TxError::RevealTooEarly);
    let (late, _) = provider_of(&chain, job, 1);
    let events = past_commit_deadline(&mut chain, job, 1, 2);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::DeadlineMissed { stage: 1, provider, .. } if *provider == late
    )));
    assert!(!events.iter().any(|e| matches!(e, Event::JobFailed { .. })));
    let (fresh, _) = provider_of(&chain, job, 1);
    assert_ne!(fresh, late);
    assert!(chain.state.job(job).unwrap().excluded.contains(&late));
    commit(&mut chain, job, 1, &results[1]);
    ok(&mut chain);
    assert_reveals_open(&chain, job);
    for s in 0..3 {
        reveal(&mut chain, job, s, &results[s as usize]);
    }
    ok(&mut chain);
    settle_and_check_pay(&mut chain, job, steps);
    all_released(&chain);
}

/// A session whose lapsed stage 1 nobody can take over (every provider that
/// qualifies holds a stage or lapsed) is salvaged once the match timeout
/// passes: `SessionSalvaged` keeps stages 0 and 2, the job fails with the
/// escrow refunded but for what they may still bill. Returns the events
/// from the lapse's requeue on.
fn salvage_after_lapse(chain: &mut TestChain, job: JobId, late: Address) -> Vec<Event> {
    let timeout = chain.state.params().match_timeout;
    let events = advance(chain, timeout + 2);
    assert!(
        events.contains(&Event::SessionSalvaged {
            job,
            stages: vec![0, 2]
        }),
        "{events:?}"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::JobCancelled { .. } | Event::StageAssigned { .. })));
    let j = chain.state.job(job).unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert!(matches!(j.stages[1].phase, StagePhase::Cancelled));
    assert!(j.excluded.contains(&late));
    // What is held back is exactly the two kept stages' bills: at the steps
    // revealed, or `max_tokens` before the reveal.
    let reserve: u128 = [0usize, 2]
        .iter()
        .map(|&s| {
            let (_, price) = provider_of(chain, job, s as u32);
            let ops = match j.stages[s].result {
                Some(r) => j.spec.stages[s].generation_ops(PROMPT, r.steps).unwrap(),
                None => j.spec.stage_max_ops(s).unwrap(),
            };
            Amount::cost(ops, price).unwrap().0
        })
        .sum();
    assert_eq!(j.escrow.0, reserve);
    events
}

/// The job failed and is settled: no escrow left, every provider released.
fn failed_and_settled(chain: &TestChain, job: JobId) {
    let j = chain.state.job(job).unwrap();
    assert_eq!((j.status, j.escrow), (JobStatus::Failed, Amount::ZERO));
    all_released(chain);
}

/// What a job's `JobFailed` and `JobSettled` events refunded, together.
fn refunds(events: &[Event], job: JobId) -> u128 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::JobFailed { job: j, refund } | Event::JobSettled { job: j, refund }
                if *j == job =>
            {
                Some(refund.0)
            }
            _ => None,
        })
        .sum()
}

/// Stages 0 and 2 commit `results`, stage 1 never does and nobody can take it
/// over: the session is salvaged (`salvage_after_lapse`); the events since the
/// lapse.
fn stage_1_lapses_and_is_salvaged(
    chain: &mut TestChain,
    job: JobId,
    results: &[StageResult],
) -> Vec<Event> {
    commit(chain, job, 0, &results[0]);
    commit(chain, job, 2, &results[2]);
    ok(chain);
    let (late, _) = provider_of(chain, job, 1);
    past_commit_deadline(chain, job, 1, 2);
    salvage_after_lapse(chain, job, late)
}

/// Checks the end of a salvaged session whose stages 0 and 2 revealed
/// `steps`: each is paid its ops × price once (stage 1 nothing), the job
/// settles with the rest refunded, and the requester paid exactly the two
/// bills and its fee, less its share of the lapsed provider's penalty.
fn assert_salvage_pays(
    chain: &mut TestChain,
    job: JobId,
    steps: u32,
    before: Amount,
    fee: Amount,
    penalty: Amount,
) {
    let spec = chain.state.job(job).unwrap().spec.clone();
    let holders: Vec<_> = [0u32, 2]
        .iter()
        .map(|&s| provider_of(chain, job, s))
        .collect();
    let balances: Vec<_> = holders
        .iter()
        .map(|(p, _)| chain.state.balance(p))
        .collect();
    let window = chain.state.params().challenge_window;
    let events = advance(chain, window + 2);
    let mut bills = 0u128;
    for (i, (&s, (p, price))) in [0u32, 2].iter().zip(&holders).enumerate() {
        let bill = Amount::cost(
            spec.stages[s as usize]
                .generation_ops(PROMPT, steps)
                .unwrap(),
            *price,
        )
        .unwrap();
        let paid: Vec<_> = events
            .iter()
            .filter(
                |e| matches!(e, Event::StagePaid { job: j, stage, .. } if *j == job && *stage == s),
            )
            .collect();
        assert_eq!(
            paid,
            vec![&Event::StagePaid {
                job,
                stage: s,
                provider: *p,
                amount: bill
            }]
        );
        assert_eq!(
            chain.state.balance(p),
            balances[i].checked_add(bill).unwrap()
        );
        bills += bill.0;
    }
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::StagePaid { stage: 1, .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::JobSettled { job: j, .. } if *j == job)));
    let j = chain.state.job(job).unwrap();
    assert_eq!((j.status, j.escrow), (JobStatus::Failed, Amount::ZERO));
    let r = address_of(&key(REQUESTER));
    let share = penalty.mul_ppm(chain.state.params().slash_requester_ppm);
    assert_eq!(
        chain.state.balance(&r).0,
        before.0 - fee.0 - bills + share.0
    );
    all_released(chain);
}

/// The penalty of `late`'s missed deadline, from `events`.
fn penalty_of(events: &[Event], job: JobId, late: Address) -> Amount {
    events
        .iter()
        .find_map(|e| match e {
            Event::DeadlineMissed {
                job: j,
                provider,
                penalty,
                ..
            } if *j == job && *provider == late => Some(*penalty),
            _ => None,
        })
        .expect("the late stage missed its deadline")
}

/// The coalition exploit: a requester whose job only three providers can
/// serve, one of them its own second identity, lets that stage lapse after
/// the other two committed. Nobody can take the stage over, yet the job is
/// not cancelled with the whole escrow back: the committed stages reveal and
/// are paid for the steps they ran, the rest is refunded.
#[test]
fn a_lapsed_stage_nobody_can_take_over_still_pays_the_committed_stages() {
    let (mut chain, job, before, fee) = optimistic_session(3);
    let steps = 6;
    let results = session_results(transcript(), 3, steps);
    commit(&mut chain, job, 0, &results[0]);
    commit(&mut chain, job, 2, &results[2]);
    ok(&mut chain);
    let (late, _) = provider_of(&chain, job, 1);
    let events = past_commit_deadline(&mut chain, job, 1, 2);
    let penalty = penalty_of(&events, job, late);
    // Back to matching first: a fourth provider could still take it.
    assert!(matches!(phase(&chain, job, 1), StagePhase::Matching { .. }));
    salvage_after_lapse(&mut chain, job, late);
    // Reveals are open for the two kept stages; stage 1 takes no reveal.
    for s in [0, 2] {
        assert!(matches!(
            phase(&chain, job, s),
            StagePhase::Running {
                reveal_deadline: Some(_)
            }
        ));
    }
    reveal(&mut chain, job, 0, &results[0]);
    reveal(&mut chain, job, 2, &results[2]);
    ok(&mut chain);
    for s in [0, 2] {
        assert!(matches!(
            phase(&chain, job, s),
            StagePhase::Challengeable { .. }
        ));
    }
    assert_salvage_pays(&mut chain, job, steps, before, fee, penalty);
}

/// The same after a missed reveal: stages 0 and 2 already revealed, so the
/// salvage judges them at once.
#[test]
fn a_missed_reveal_nobody_can_take_over_still_pays_the_revealed_stages() {
    let (mut chain, job, before, fee) = optimistic_session(3);
    let steps = 9;
    let results = session_results(transcript(), 3, steps);
    all_but_stage_1_reveal(&mut chain, job, &results);
    let (late, _) = provider_of(&chain, job, 1);
    let window = chain.state.params().reveal_window;
    let events = advance(&mut chain, window + 2);
    let penalty = penalty_of(&events, job, late);
    let events = salvage_after_lapse(&mut chain, job, late);
    for s in [0u32, 2] {
        assert!(events.iter().any(
            |e| matches!(e, Event::ChallengeWindowOpened { job: j, stage, .. } if *j == job && *stage == s)
        ));
    }
    assert_salvage_pays(&mut chain, job, steps, before, fee, penalty);
}

/// The kept stages of a salvaged session are still checked against each
/// other: stage 2's transcript is not the one stage 0 was fed → broken, nobody
/// paid, the two kept stages' bill burned, the rest of the escrow back (in two
/// parts: at the salvage, and when the kept stages are dropped).
#[test]
fn a_salvaged_session_whose_kept_stages_disagree_pays_nobody() {
    let (mut chain, job, _, _) = optimistic_session(3);
    let spec = spec(3, VerificationLevel::Optimistic);
    let escrow = State::escrow_for(&spec).unwrap();
    let mut results = session_results(transcript(), 3, 4);
    results[2].output = Hash::digest("transcript", &[b"another"]);
    let mut events = stage_1_lapses_and_is_salvaged(&mut chain, job, &results);
    let bill: u128 = [0u32, 2]
        .iter()
        .map(|&s| {
            let (_, price) = provider_of(&chain, job, s);
            let ops = spec.stages[s as usize].generation_ops(PROMPT, 4).unwrap();
            Amount::cost(ops, price).unwrap().0
        })
        .sum();
    reveal(&mut chain, job, 0, &results[0]);
    reveal(&mut chain, job, 2, &results[2]);
    events.extend(ok(&mut chain));
    events.extend(advance(&mut chain, 10));
    assert!(events.contains(&Event::SessionBroken { job, stage: 2 }));
    assert!(events.contains(&Event::SessionCharged {
        job,
        steps: 4,
        burned: Amount(bill)
    }));
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::StagePaid { .. } | Event::Slashed { .. })));
    let refunded = refunds(&events, job);
    assert_eq!(refunded + bill, escrow.0);
    failed_and_settled(&chain, job);
}

/// A kept stage that then misses its reveal is dropped as well; the other is
/// judged alone and paid.
#[test]
fn a_kept_stage_that_lapses_is_dropped_and_the_other_is_paid() {
    let (mut chain, job, _, _) = optimistic_session(3);
    let spec = spec(3, VerificationLevel::Optimistic);
    let escrow = State::escrow_for(&spec).unwrap();
    let steps = 3;
    let results = session_results(transcript(), 3, steps);
    let mut events = stage_1_lapses_and_is_salvaged(&mut chain, job, &results);
    let (p0, price0) = provider_of(&chain, job, 0);
    reveal(&mut chain, job, 0, &results[0]);
    let window = chain.state.params().reveal_window + chain.state.params().challenge_window;
    events.extend(advance(&mut chain, window + 4));
    let bill = Amount::cost(
        spec.stages[0].generation_ops(PROMPT, steps).unwrap(),
        price0,
    )
    .unwrap();
    assert!(events.contains(&Event::StagePaid {
        job,
        stage: 0,
        provider: p0,
        amount: bill
    }));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::StagePaid { .. }))
            .count(),
        1
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::JobSettled { .. }))
            .count(),
        1
    );
    let refunded = refunds(&events, job);
    assert_eq!(refunded + bill.0, escrow.0);
    assert!(matches!(
        chain.state.job(job).unwrap().stages[2].phase,
        StagePhase::Cancelled
    ));
    failed_and_settled(&chain, job);
}

/// Nobody committed: the session never finished, so there is nothing to
/// rebuild from — the job fails with its whole escrow refunded.
#[test]
fn missed_commits_before_any_commitment_fail_the_session() {
    let mut chain = network(4);
    let spec = spec(3, VerificationLevel::Optimistic);
    let escrow = State::escrow_for(&spec).unwrap();
    let job = submit(&mut chain, spec);
    let events = past_commit_deadline(&mut chain, job, 1, 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::DeadlineMissed { .. }))
            .count(),
        3
    );
    assert!(events.contains(&Event::JobFailed {
        job,
        refund: escrow
    }));
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Failed);
    all_released(&chain);
}

/// Every auditor drawn for the job and not yet committed commits the stage's
/// result, in one block.
fn commit_audits(chain: &mut TestChain, job: JobId, results: &[StageResult]) {
    let mut any = false;
    for (s, r) in results.iter().enumerate() {
        let j = chain.state.job(job).unwrap();
        let Some(a) = j.stages[s]
            .audit
            .as_ref()
            .filter(|a| a.commitment.is_none())
        else {
            continue;
        };
        let auditor = a.auditor;
        let salt = salt_for(&auditor, job, s as u32);
        chain.push(
            &key_of(auditor),
            TxBody::AuditCommit {
                job,
                stage: s as u32,
                commitment: r.commitment(job, s as u32, &salt, &auditor),
            },
        );
        any = true;
    }
    if any {
        ok(chain);
    }
}

/// Under `Sampled` verification a stage re-filled after the others revealed
/// is always audited: its new provider saw the hashes it must chain to.
#[test]
fn a_stage_refilled_after_reveals_is_always_audited() {
    let mut chain = network(6);
    let job = submit(&mut chain, spec(3, VerificationLevel::Sampled));
    let results = session_results(transcript(), 3, 6);
    for s in 0..3 {
        commit(&mut chain, job, s, &results[s as usize]);
    }
    ok(&mut chain);
    // Auditors drawn at commit time (if any) commit before reveals open.
    commit_audits(&mut chain, job, &results);
    reveal(&mut chain, job, 0, &results[0]);
    reveal(&mut chain, job, 2, &results[2]);
    ok(&mut chain);
    let had_audit = chain.state.job(job).unwrap().stages[1].audit.is_some();
    let window = chain.state.params().reveal_window;
    advance(&mut chain, window + 2);
    let (fresh, _) = provider_of(&chain, job, 1);
    commit(&mut chain, job, 1, &results[1]);
    ok(&mut chain);
    let j = chain.state.job(job).unwrap();
    let audit = j.stages[1]
        .audit
        .as_ref()
        .expect("the re-filled stage is audited");
    assert_ne!(audit.auditor, fresh);
    if !had_audit {
        // Freshly drawn: reveals wait for its commitment.
        assert!(matches!(
            j.stages[1].phase,
            StagePhase::Running {
                reveal_deadline: None
            }
        ));
    }
}

#[test]
fn a_session_is_matched_whole_or_not_at_all() {
    let mut chain = network(2);
    let job = submit(&mut chain, spec(3, VerificationLevel::Optimistic));
    // Two providers for three stages: nobody is assigned yet.
    let j = chain.state.job(job).unwrap();
    assert!(
        j.stages
            .iter()
            .all(|s| s.slots[0].assignment.is_none()
                && matches!(s.phase, StagePhase::Matching { .. }))
    );
    let (seed, price) = PROVIDERS[2];
    register(&mut chain, seed, price);
    let now = chain.state.height().plus(1);
    ok(&mut chain);
    let j = chain.state.job(job).unwrap();
    let d = chain.state.job(job).unwrap().spec.deadline;
    for s in &j.stages {
        let a = s.slots[0].assignment.as_ref().expect("assigned");
        assert_eq!(a.deadline, now.plus(d));
        assert!(matches!(s.phase, StagePhase::Running { .. }));
    }
}

#[test]
fn generation_submissions_are_checked() {
    let mut chain = network(3);
    let req = key(REQUESTER);
    let base = spec(3, VerificationLevel::Optimistic);
    let cases: Vec<(JobSpec, TxError)> = vec![
        (
            {
                let mut s = base.clone();
                s.requirements.replicas = 2;
                s
            },
            TxError::GenerationReplicas(2),
        ),
        (
            generation_job(base.clone(), STEP_OPS, KEY_OPS, PROMPT, 0),
            TxError::InvalidJob("generation needs max_tokens of at least 1".into()),
        ),
        (
            generation_job(base.clone(), STEP_OPS, KEY_OPS, 0, MAX_TOKENS),
            TxError::InvalidJob("generation needs a prompt".into()),
        ),
        (
            generation_job(
                base.clone(),
                STEP_OPS,
                KEY_OPS,
                limits::MAX_GENERATION_TOKENS,
                1,
            ),
            TxError::InvalidJob("prompt plus max_tokens above MAX_GENERATION_TOKENS".into()),
        ),
        (
            generation_job(base.clone(), STEP_OPS, u64::MAX / 2, PROMPT, MAX_TOKENS),
            TxError::InvalidJob("generation ops over max_tokens overflow".into()),
        ),
        (
            {
                let mut s = base.clone();
                s.stages[1].step_units = 4;
                s
            },
            TxError::InvalidJob("a generation job has no training stage".into()),
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(chain.reject(&req, TxBody::SubmitJob { spec }), want);
    }
    // The largest token budget is accepted.
    let fits = generation_job(
        base,
        STEP_OPS,
        KEY_OPS,
        1,
        limits::MAX_GENERATION_TOKENS - 1,
    );
    assert!(State::escrow_for(&fits).is_some());
}

/// `ReplaceStage`: a stage whose provider dropped out of the session (reported
/// by another stage's provider) is matched again; the reported provider pays
/// the miss penalty (burned whole), leaves the job and is paid nothing; every running stage
/// gets the replacement's deadline; the session then commits and each stage
/// is paid once, to the provider holding it at the end.
#[test]
fn a_replaced_stage_is_matched_again_and_the_session_pays_once() {
    let mut chain = network(4);
    let r = address_of(&key(REQUESTER));
    let before = chain.state.balance(&r);
    let spec = spec(3, VerificationLevel::Optimistic);
    let escrow = State::escrow_for(&spec).unwrap();
    let fee = chain
        .state
        .params()
        .required_fee(&TxBody::SubmitJob { spec: spec.clone() });
    let job = submit(&mut chain, spec.clone());
    let holders: Vec<Address> = (0..3).map(|s| provider_of(&chain, job, s).0).collect();
    let spare = address_of(&key(PROVIDERS[3].0));
    assert!(!holders.contains(&spare));
    let old_deadline = chain.state.job(job).unwrap().stages[0].slots[0]
        .assignment
        .as_ref()
        .unwrap()
        .deadline;
    advance(&mut chain, 3);

    // Stage 2's provider reports stage 1's.
    let bonded = chain.state.account(&holders[1]).bonded;
    let replace = TxBody::ReplaceStage {
        job,
        stage: 1,
        provider: holders[1],
    };
    let rfee = chain.state.params().required_fee(&replace);
    chain.push(&key_of(holders[2]), replace);
    let events = ok(&mut chain);
    let penalty = events
        .iter()
        .find_map(|e| match e {
            Event::StageReplaced {
                job: j,
                stage: 1,
                provider,
                by,
                penalty,
            } if *j == job && *provider == holders[1] && *by == holders[2] => Some(*penalty),
            _ => None,
        })
        .expect("StageReplaced");
    assert!(penalty > Amount::ZERO);
    assert_eq!(
        chain.state.account(&holders[1]).bonded.0,
        bonded.0 - penalty.0,
        "the miss penalty, from stake"
    );
    let p1 = chain.state.provider(&holders[1]).unwrap();
    assert_eq!((p1.active, p1.open), (0, 0), "released");
    let j = chain.state.job(job).unwrap();
    assert!(j.excluded.contains(&holders[1]));
    assert!(
        matches!(phase(&chain, job, 1), StagePhase::Matching { .. })
            || provider_of(&chain, job, 1).0 == spare
    );

    // The next block matches the spare; every stage's deadline moves with it.
    ok(&mut chain);
    assert_eq!(provider_of(&chain, job, 1).0, spare);
    let j = chain.state.job(job).unwrap();
    let deadlines: Vec<_> = j
        .stages
        .iter()
        .map(|s| s.slots[0].assignment.as_ref().unwrap().deadline)
        .collect();
    assert!(deadlines[1] > old_deadline);
    assert!(
        deadlines.iter().all(|d| *d == deadlines[1]),
        "{deadlines:?}"
    );
    // Past the old deadline nobody is late.
    chain.advance_to(old_deadline.plus(2));
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Active);

    // The session ends; each stage is paid once, by its final provider.
    let steps = 9;
    let results = session_results(transcript(), 3, steps);
    for s in 0..3 {
        commit(&mut chain, job, s, &results[s as usize]);
    }
    ok(&mut chain);
    for s in 0..3 {
        reveal(&mut chain, job, s, &results[s as usize]);
    }
    ok(&mut chain);
    let window = chain.state.params().challenge_window;
    let events = advance(&mut chain, window + 1);
    let mut total = Amount::ZERO;
    for s in 0..3u32 {
        let (p, price) = provider_of(&chain, job, s);
        let bill = Amount::cost(
            spec.stages[s as usize]
                .generation_ops(PROMPT, steps)
                .unwrap(),
            price,
        )
        .unwrap();
        let paid: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Event::StagePaid { stage, .. } if *stage == s))
            .collect();
        assert_eq!(
            paid,
            vec![&Event::StagePaid {
                job,
                stage: s,
                provider: p,
                amount: bill
            }]
        );
        total = total.checked_add(bill).unwrap();
    }
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::StagePaid { provider, .. } if *provider == holders[1])));
    assert_eq!(chain.state.job(job).unwrap().status, JobStatus::Completed);
    // The penalty of a report is burned whole: nobody, the requester included,
    // earns from reporting a stage.
    assert_eq!(
        chain.state.balance(&r).0,
        before.0 - fee.0 - total.0,
        "the requester pays exactly the bills"
    );
    let _ = (escrow, rfee);
    all_released(&chain);
}

/// A false report earns nothing and the requester's costs nobody stake: a
/// requester that reports an honest, running stage pays its fee and evicts it, but
/// the reported provider keeps its stake and its record (a requester sees no link;
/// a penalty would let any buyer burn a competitor's stake for a fee). A neighbour's
/// report costs the miss penalty (`a_replaced_stage_is_matched_again_…`), burned
/// whole, none of it credited to the reporter.
#[test]
fn a_report_pays_nobody() {
    let mut chain = network(4);
    let r = address_of(&key(REQUESTER));
    let job = submit(&mut chain, spec(3, VerificationLevel::Optimistic));
    let honest = provider_of(&chain, job, 1).0;
    advance(&mut chain, 2);
    let before = chain.state.balance(&r);
    let bonded = chain.state.account(&honest).bonded;
    let record = chain.state.provider(&honest).unwrap().reputation;
    let replace = TxBody::ReplaceStage {
        job,
        stage: 1,
        provider: honest,
    };
    let rfee = chain.state.params().required_fee(&replace);
    chain.push(&key(REQUESTER), replace);
    let events = ok(&mut chain);
    let penalty = events
        .iter()
        .find_map(|e| match e {
            Event::StageReplaced { penalty, by, .. } if *by == r => Some(*penalty),
            _ => None,
        })
        .expect("StageReplaced");
    assert_eq!(
        penalty,
        Amount::ZERO,
        "the requester's report costs no stake"
    );
    assert_eq!(chain.state.account(&honest).bonded, bonded);
    assert_eq!(
        chain.state.provider(&honest).unwrap().reputation,
        record,
        "nor a failure on the record"
    );
    let j = chain.state.job(job).unwrap();
    assert!(j.excluded.contains(&honest), "but it is evicted");
    let p = chain.state.provider(&honest).unwrap();
    assert_eq!((p.active, p.open), (0, 0), "and released");
    assert_eq!(
        chain.state.balance(&r).0,
        before.0 - rfee.0,
        "the reporter pays its fee and earns nothing"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Transferred { to, .. } if *to == r)),
        "nothing credited to the requester"
    );
}

/// `ReplaceStage` refusals leave the state untouched.
#[test]
fn replace_stage_refuses_what_it_must() {
    let mut chain = network(4);
    let job = submit(&mut chain, spec(3, VerificationLevel::Optimistic));
    let holders: Vec<Address> = (0..3).map(|s| provider_of(&chain, job, s).0).collect();
    let outsider = address_of(&key(PROVIDERS[3].0));
    let body = |stage: u32, provider: Address| TxBody::ReplaceStage {
        job,
        stage,
        provider,
    };
    // (`reject` checks each refusal changed nothing.)
    // Not a member of the session, or the reported provider itself.
    assert_eq!(
        chain.reject(&key_of(outsider), body(1, holders[1])),
        TxError::NotSessionMember
    );
    assert_eq!(
        chain.reject(&key_of(holders[1]), body(1, holders[1])),
        TxError::NotSessionMember
    );
    // Not the stage's provider; no such stage; no such job.
    assert_eq!(
        chain.reject(&key_of(holders[0]), body(1, holders[2])),
        TxError::NotReplaceable { stage: 1 }
    );
    assert_eq!(
        chain.reject(&key_of(holders[0]), body(7, holders[1])),
        TxError::UnknownStage { job, stage: 7 }
    );
    assert_eq!(
        chain.reject(
            &key_of(holders[0]),
            TxBody::ReplaceStage {
                job: JobId(99),
                stage: 0,
                provider: holders[1]
            }
        ),
        TxError::UnknownJob(JobId(99))
    );
    // A committed stage cannot be replaced.
    let results = session_results(transcript(), 3, 4);
    commit(&mut chain, job, 1, &results[1]);
    ok(&mut chain);
    assert_eq!(
        chain.reject(&key_of(holders[0]), body(1, holders[1])),
        TxError::NotReplaceable { stage: 1 }
    );
    // Nor, once a stage committed (the session ended), one that has not: the
    // requester could otherwise evict a stage that finished and is about to commit.
    assert_eq!(
        chain.reject(&key(REQUESTER), body(2, holders[2])),
        TxError::NotReplaceable { stage: 2 }
    );
    // Not a generation job.
    let single = submit(
        &mut chain,
        job_spec(
            model(),
            input(),
            &[(4, PREFILL)],
            10,
            VerificationLevel::Optimistic,
        ),
    );
    let p = provider_of(&chain, single, 0).0;
    assert_eq!(
        chain.reject(
            &key(REQUESTER),
            TxBody::ReplaceStage {
                job: single,
                stage: 0,
                provider: p
            }
        ),
        TxError::NotGeneration(single)
    );
    // The requester may report a stage of a session nobody committed to yet.
    let fresh = submit(&mut chain, spec(3, VerificationLevel::Optimistic));
    let reported = provider_of(&chain, fresh, 2).0;
    chain
        .step(
            &key(REQUESTER),
            TxBody::ReplaceStage {
                job: fresh,
                stage: 2,
                provider: reported,
            },
        )
        .expect("the requester reports");
}

/// A generation stage's assignment: the provider's published input claim and
/// whether it committed.
fn published(chain: &TestChain, job: JobId, stage: u32) -> (Option<Hash>, bool) {
    let a = chain.state.job(job).unwrap().stages[stage as usize].slots[0]
        .assignment
        .clone()
        .expect("assigned");
    (a.input, a.commitment.is_some())
}

/// A generation stage commits with `CommitSession`: `CommitResult` (no input
/// claim in the clear) is refused and changes nothing — no fee, no nonce, the
/// stage still uncommitted; `CommitSession` then stores the claim with the
/// commitment.
#[test]
fn a_generation_stage_cannot_commit_without_its_input_claim() {
    let mut chain = network(3);
    let job = submit(&mut chain, spec(3, VerificationLevel::Optimistic));
    let results = session_results(transcript(), 3, 5);
    let (p, _) = provider_of(&chain, job, 1);
    let balance = chain.state.balance(&p);
    let nonce = chain.state.account(&p).nonce;
    let salt = salt_for(&p, job, 1);
    let plain = TxBody::CommitResult {
        job,
        stage: 1,
        commitment: results[1].commitment(job, 1, &salt, &p),
    };
    // (`reject` checks the state root is that of an empty block.)
    assert_eq!(
        chain.reject(&key_of(p), plain),
        TxError::SessionCommitNeeded
    );
    assert_eq!(chain.state.balance(&p), balance);
    assert_eq!(chain.state.account(&p).nonce, nonce);
    assert_eq!(published(&chain, job, 1), (None, false));
    assert!(matches!(
        phase(&chain, job, 1),
        StagePhase::Running {
            reveal_deadline: None
        }
    ));
    // The session commitment is accepted and publishes the claim.
    commit(&mut chain, job, 1, &results[1]);
    ok(&mut chain);
    assert_eq!(published(&chain, job, 1), (Some(results[1].input), true));
}

/// `CommitSession` is for generation stages: a plain job's stage refuses it
/// (nothing changes) and commits with `CommitResult`, publishing no input.
#[test]
fn a_plain_stage_refuses_a_session_commitment() {
    let mut chain = network(1);
    let job = submit(
        &mut chain,
        job_spec(
            model(),
            input(),
            &[(4, PREFILL)],
            10,
            VerificationLevel::Optimistic,
        ),
    );
    let result = Trace::honest(&model(), 0, 4, input()).result();
    let (p, _) = provider_of(&chain, job, 0);
    let salt = salt_for(&p, job, 0);
    let session = TxBody::CommitSession {
        job,
        stage: 0,
        commitment: result.commitment(job, 0, &salt, &p),
        input: result.input,
    };
    assert_eq!(chain.reject(&key_of(p), session), TxError::NotASession);
    assert_eq!(published(&chain, job, 0), (None, false));
    commit(&mut chain, job, 0, &result);
    ok(&mut chain);
    assert_eq!(published(&chain, job, 0), (None, true));
}

/// A reveal must claim the input its stage published with the commitment: one
/// that opens the commitment but claims another input is refused
/// (`CommitmentMismatch`, nothing changes), so the provider cannot reveal and
/// misses its reveal deadline — penalized, excluded, the stage re-filled.
#[test]
fn a_reveal_must_claim_the_published_input() {
    let mut chain = network(4);
    let job = submit(&mut chain, spec(3, VerificationLevel::Optimistic));
    let results = session_results(transcript(), 3, 5);
    // Stage 1 publishes the honest input claim but commits to a result built
    // on another input.
    let forged = StageResult {
        input: Hash::digest("forged", &[b"input rows"]),
        ..results[1]
    };
    let (p, _) = provider_of(&chain, job, 1);
    let salt = salt_for(&p, job, 1);
    commit(&mut chain, job, 0, &results[0]);
    commit(&mut chain, job, 2, &results[2]);
    chain.push(
        &key_of(p),
        TxBody::CommitSession {
            job,
            stage: 1,
            commitment: forged.commitment(job, 1, &salt, &p),
            input: results[1].input,
        },
    );
    ok(&mut chain);
    assert_reveals_open(&chain, job);
    assert_eq!(published(&chain, job, 1), (Some(results[1].input), true));
    // The forged result opens the commitment but not the published claim; the
    // honest one does not open the commitment.
    for r in [forged, results[1]] {
        let body = reveal_body(&chain, job, 1, &r);
        assert_eq!(chain.reject(&key_of(p), body), TxError::CommitmentMismatch);
    }
    reveal(&mut chain, job, 0, &results[0]);
    reveal(&mut chain, job, 2, &results[2]);
    ok(&mut chain);
    assert_eq!(
        chain.state.job(job).unwrap().stages[1].slots[0]
            .assignment
            .as_ref()
            .unwrap()
            .result,
        None
    );
    let window = chain.state.params().reveal_window;
    let events = advance(&mut chain, window + 2);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::DeadlineMissed { job: j, stage: 1, provider, .. } if *j == job && *provider == p
        )),
        "{events:?}"
    );
    let j = chain.state.job(job).unwrap();
    assert!(j.excluded.contains(&p));
    assert_ne!(
        j.stages[1].slots[0].assignment.as_ref().map(|a| a.provider),
        Some(p)
    );
}

/// An auditor of a generation stage must replay it: one that reports the
/// provider's (public) output over another trace root does not agree — the
/// audit opens a dispute, as a differing output does — while the stages whose
/// auditors report the same output, root and steps are agreed.
#[test]
fn an_audit_with_the_output_but_another_root_opens_a_dispute() {
    let mut chain = network(6);
    let job = submit(&mut chain, spec(3, VerificationLevel::Audited));
    let results = session_results(transcript(), 3, 8);
    for s in 0..3 {
        commit(&mut chain, job, s, &results[s as usize]);
    }
    ok(&mut chain);
    let auditors: Vec<Address> = (0..3)
        .map(|s| chain.auditor_of(job, s).expect("audited"))
        .collect();
    // Stage 1's auditor copies the output (stage 2's published input) without
    // replaying: its trace root is its own.
    assert_eq!(published(&chain, job, 2).0, Some(results[1].output));
    let copied = StageResult {
        trace_root: Hash::digest("lazy", &[b"root"]),
        ..results[1]
    };
    let claimed = |s: usize| if s == 1 { copied } else { results[s] };
    for (s, a) in auditors.iter().enumerate() {
        let salt = salt_for(a, job, s as u32);
        chain.push(
            &key_of(*a),
            TxBody::AuditCommit {
                job,
                stage: s as u32,
                commitment: claimed(s).commitment(job, s as u32, &salt, a),
            },
        );
    }
    ok(&mut chain);
    for s in 0..3 {
        reveal(&mut chain, job, s, &results[s as usize]);
    }
    ok(&mut chain);
    for (s, a) in auditors.iter().enumerate() {
        chain.push(
            &key_of(*a),
            TxBody::AuditReport {
                job,
                stage: s as u32,
                result: claimed(s),
                salt: salt_for(a, job, s as u32),
            },
        );
    }
    let events = ok(&mut chain);
    let agreed: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::AuditAgreed { job: j, stage, .. } if *j == job => Some(*stage),
            _ => None,
        })
        .collect();
    assert_eq!(agreed, vec![0, 2]);
    let (p1, _) = provider_of(&chain, job, 1);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::DisputeOpened { job: j, stage: 1, defendant, challenger, .. }
                if *j == job && *defendant == p1 && *challenger == auditors[1]
        )),
        "{events:?}"
    );
    assert!(matches!(phase(&chain, job, 1), StagePhase::Disputed { .. }));
}

/// An outside challenge of a generation stage must differ somewhere: the same
/// output, root and steps agree (`ChallengeAgrees`); the same output over
/// another root is a challenge.
#[test]
fn a_challenge_of_a_generation_stage_may_keep_the_output() {
    let mut chain = network(3);
    let job = submit(&mut chain, spec(3, VerificationLevel::Optimistic));
    let results = session_results(transcript(), 3, 6);
    run_session(&mut chain, job, &results);
    assert!(matches!(
        phase(&chain, job, 1),
        StagePhase::Challengeable { .. }
    ));
    let challenger = key(PROVIDERS[3].0);
    assert_eq!(
        chain.reject(
            &challenger,
            TxBody::Challenge {
                job,
                stage: 1,
                result: results[1],
            }
        ),
        TxError::ChallengeAgrees
    );
    let other_root = StageResult {
        trace_root: Hash::digest("challenger", &[b"root"]),
        ..results[1]
    };
    chain
        .step(
            &challenger,
            TxBody::Challenge {
                job,
                stage: 1,
                result: other_root,
            },
        )
        .expect("the challenge is accepted");
    assert!(matches!(phase(&chain, job, 1), StagePhase::Disputed { .. }));
}
