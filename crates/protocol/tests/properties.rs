//! Property tests: long random sequences of valid and invalid transactions
//! from many accounts (transfers, staking, providers, jobs and generation
//! sessions delivered honestly or not, cancellations, audits, challenges, dispute moves,
//! governance, and forged, replayed or cross-chain envelopes). After every block:
//!
//! - total supply is conserved (balances + bonded + unbonding + withdrawable
//!   + escrow + challenge bonds + burned = genesis + issuance);
//! - the same blocks applied to a fresh state give the same root;
//! - the block without its rejected transactions gives the same root (a
//!   rejected transaction changes nothing);
//! - and at the end the incremental root equals a full rebuild.

use agentic_protocol::params::{ParamChange, ParamKey};
use agentic_protocol::state::{Block, DisputePhase, JobStatus, StagePhase};
use agentic_protocol::test_utils::{
    address_of, fast_params, generation_job, job_spec, key, offer, salt_for, GenesisBuilder,
    TestReferee, Trace,
};
use agentic_protocol::tx::{SignedTx, StageResult, Tx, TxBody};
use agentic_protocol::types::{
    Address, Amount, ChainId, Hash, Height, JobId, ProposalId, VerificationLevel,
};
use agentic_protocol::State;
use commonware_cryptography::{ed25519::PrivateKey, Signer as _};
use proptest::prelude::*;

#[path = "properties/offer_index.rs"]
mod offer_index;

const N: usize = 8;
const LAYERS: u32 = 5;

fn model() -> Hash {
    Hash([3; 32])
}
fn input() -> Hash {
    Hash([4; 32])
}
fn honest() -> Trace {
    Trace::honest(&model(), 0, LAYERS, input())
}
fn cheat() -> Trace {
    Trace::cheating(&model(), 0, LAYERS, input(), 1)
}
/// A one-stage generation session's result: the transcript in and out,
/// two steps; a cheat breaks the loop.
fn session(honest: bool) -> StageResult {
    let transcript = Hash([6; 32]);
    StageResult {
        input: transcript,
        output: if honest { transcript } else { Hash([7; 32]) },
        trace_root: Hash([8; 32]),
        steps: 2,
    }
}

#[derive(Clone, Debug)]
enum Action {
    Transfer(usize, usize, u64),
    Bond(usize, u64),
    Unbond(usize, u64),
    Withdraw(usize, u64),
    Register(usize, u8),
    Retire(usize),
    Submit(usize, u8, u8, u8),
    SubmitGeneration(usize, u8, u8, u32),
    Deliver(usize, bool),
    Audit(usize, bool),
    Challenge(usize),
    Move(usize),
    Propose(usize, u8),
    Vote(usize, bool),
    Cancel(usize, u8),
    BadNonce(usize),
    WrongChain(usize),
    Forged(usize),
    Replay,
    EndBlock,
}

fn action() -> impl Strategy<Value = Action> {
    let a = 0..N;
    prop_oneof![
        (a.clone(), a.clone(), 0u64..3_000_000).prop_map(|(x, y, v)| Action::Transfer(x, y, v)),
        (a.clone(), 0u64..40_000).prop_map(|(x, v)| Action::Bond(x, v)),
        (a.clone(), 0u64..20_000).prop_map(|(x, v)| Action::Unbond(x, v)),
        (a.clone(), 0u64..20_000).prop_map(|(x, v)| Action::Withdraw(x, v)),
        (a.clone(), 1u8..20).prop_map(|(x, p)| Action::Register(x, p)),
        a.clone().prop_map(Action::Retire),
        (a.clone(), 1u8..30, 0u8..3, 1u8..3).prop_map(|(x, o, v, r)| Action::Submit(x, o, v, r)),
        (a.clone(), 1u8..30, 0u8..3, 1u32..4)
            .prop_map(|(x, o, v, m)| Action::SubmitGeneration(x, o, v, m)),
        (a.clone(), prop::bool::weighted(0.8)).prop_map(|(x, h)| Action::Deliver(x, h)),
        (a.clone(), prop::bool::weighted(0.9)).prop_map(|(x, h)| Action::Audit(x, h)),
        a.clone().prop_map(Action::Challenge),
        a.clone().prop_map(Action::Move),
        (a.clone(), 0u8..4).prop_map(|(x, k)| Action::Propose(x, k)),
        (a.clone(), any::<bool>()).prop_map(|(x, y)| Action::Vote(x, y)),
        (a.clone(), any::<u8>()).prop_map(|(x, j)| Action::Cancel(x, j)),
        a.clone().prop_map(Action::BadNonce),
        a.clone().prop_map(Action::WrongChain),
        a.clone().prop_map(Action::Forged),
        Just(Action::Replay),
        Just(Action::EndBlock),
        Just(Action::EndBlock),
    ]
}

/// Turns abstract actions into signed transactions against the live state.
struct Driver {
    keys: Vec<PrivateKey>,
    addrs: Vec<Address>,
    state: State,
    twin: State,
    pending: Vec<SignedTx>,
    nonces: Vec<u64>,
    last: Option<SignedTx>,
    referee: TestReferee,
    /// Accepted `CancelJob` transactions so far.
    cancels: usize,
    /// Entities pruned so far, by kind (job, dispute, proposal, mandate).
    pruned: [usize; 4],
}

impl Driver {
    fn new() -> Driver {
        Driver::with_params(fast_params())
    }

    /// A driver whose chain prunes finished work after `retention` blocks.
    fn pruning(retention: u64) -> Driver {
        Driver::with_params(agentic_protocol::Params {
            retention,
            ..fast_params()
        })
    }

    fn with_params(params: agentic_protocol::Params) -> Driver {
        let keys: Vec<_> = (0..N as u64).map(|i| key(100 + i)).collect();
        let addrs: Vec<_> = keys.iter().map(address_of).collect();
        let mut g = GenesisBuilder::new(9).params(params);
        for (i, a) in addrs.iter().enumerate() {
            g = g.account(*a, 1_000_000, if i % 2 == 0 { 20_000 } else { 0 });
        }
        let state = State::new(&g.build()).unwrap();
        Driver {
            keys,
            addrs,
            twin: state.clone(),
            state,
            pending: Vec::new(),
            nonces: vec![0; N],
            last: None,
            referee: TestReferee::default(),
            cancels: 0,
            pruned: [0; 4],
        }
    }

    fn tx(&mut self, who: usize, body: TxBody) {
        let tx = Tx {
            chain_id: ChainId(9),
            nonce: self.nonces[who],
            fee: self.state.params().required_fee(&body),
            body,
        };
        self.nonces[who] += 1;
        let s = SignedTx::sign(&self.keys[who], tx);
        self.last = Some(s.clone());
        self.pending.push(s);
    }

    fn act(&mut self, a: &Action) {
        let st = &self.state;
        match *a {
            Action::Transfer(x, y, v) => self.tx(
                x,
                TxBody::Transfer {
                    to: self.addrs[y],
                    amount: Amount(v as u128),
                },
            ),
            Action::Bond(x, v) => self.tx(
                x,
                TxBody::Bond {
                    amount: Amount(v as u128),
                },
            ),
            Action::Unbond(x, v) => self.tx(
                x,
                TxBody::Unbond {
                    amount: Amount(v as u128),
                },
            ),
            Action::Withdraw(x, v) => self.tx(
                x,
                TxBody::Withdraw {
                    amount: Amount(v as u128),
                },
            ),
            Action::Register(x, p) => self.tx(
                x,
                TxBody::RegisterProvider {
                    offer: offer(p as u128, 2),
                    stake: Amount(10_000),
                },
            ),
            Action::Retire(x) => self.tx(x, TxBody::Retire),
            Action::Cancel(x, j) => {
                // Mostly one of the signer's own jobs (accepted only before a
                // commit), sometimes anyone's (refused unless its own).
                let n = st.meta().next_job.0.max(1);
                let own: Vec<JobId> = st
                    .jobs()
                    .filter(|(_, job)| job.requester == self.addrs[x])
                    .map(|(id, _)| *id)
                    .collect();
                let job = if j % 4 != 0 && !own.is_empty() {
                    own[j as usize % own.len()]
                } else {
                    JobId(u64::from(j) % n)
                };
                self.tx(x, TxBody::CancelJob { job });
            }
            Action::Submit(x, ops, v, r) => {
                let level = [
                    VerificationLevel::Optimistic,
                    VerificationLevel::Sampled,
                    VerificationLevel::Audited,
                ][v as usize];
                let mut spec = job_spec(
                    model(),
                    input(),
                    &[(LAYERS, ops as u64 * 1_000_000)],
                    15,
                    level,
                );
                spec.requirements.replicas = r;
                self.tx(x, TxBody::SubmitJob { spec });
            }
            Action::SubmitGeneration(x, ops, v, max_tokens) => {
                let level = [
                    VerificationLevel::Optimistic,
                    VerificationLevel::Sampled,
                    VerificationLevel::Audited,
                ][v as usize];
                let spec = generation_job(
                    job_spec(
                        model(),
                        input(),
                        &[(LAYERS, ops as u64 * 100_000)],
                        15,
                        level,
                    ),
                    50_000,
                    1_000,
                    8,
                    max_tokens,
                );
                self.tx(x, TxBody::SubmitJob { spec });
            }
            Action::Deliver(x, is_honest) => {
                let me = self.addrs[x];
                let trace = if is_honest { honest() } else { cheat() };
                let mut body = None;
                'find: for (id, j) in st.jobs() {
                    for (s, stage) in j.stages.iter().enumerate() {
                        let StagePhase::Running { reveal_deadline } = stage.phase else {
                            continue;
                        };
                        for slot in &stage.slots {
                            let Some(asg) = &slot.assignment else {
                                continue;
                            };
                            if asg.provider != me || s != 0 {
                                continue;
                            }
                            let salt = salt_for(&me, *id, 0);
                            let result = if j.spec.generation.is_some() {
                                session(is_honest)
                            } else {
                                trace.result()
                            };
                            if asg.commitment.is_none() {
                                let commitment = result.commitment(*id, 0, &salt, &me);
                                body = Some(if j.spec.generation.is_some() {
                                    TxBody::CommitSession {
                                        job: *id,
                                        stage: 0,
                                        commitment,
                                        input: result.input,
                                    }
                                } else {
                                    TxBody::CommitResult {
                                        job: *id,
                                        stage: 0,
                                        commitment,
                                    }
                                });
                            } else if reveal_deadline.is_some() && asg.result.is_none() {
                                // Reveal whichever trace was committed.
                                let result = [
                                    honest().result(),
                                    cheat().result(),
                                    session(true),
                                    session(false),
                                ]
                                .into_iter()
                                .find(|r| Some(r.commitment(*id, 0, &salt, &me)) == asg.commitment)
                                .unwrap_or(result);
                                body = Some(TxBody::RevealResult {
                                    job: *id,
                                    stage: 0,
                                    result,
                                    salt,
                                });
                            } else {
                                continue;
                            }
                            break 'find;
                        }
                    }
                }
                if let Some(b) = body {
                    self.tx(x, b);
                }
            }
            Action::Audit(x, is_honest) => {
                // A drawn auditor commits before the reveals, then opens
                // whichever trace it committed once the stage is auditing.
                let me = self.addrs[x];
                let found = st.jobs().find_map(|(id, j)| {
                    j.stages.iter().enumerate().find_map(|(s, stage)| {
                        let pending = stage
                            .audit
                            .as_ref()
                            .filter(|a| a.auditor == me)
                            .map(|a| a.commitment);
                        match (stage.phase, pending) {
                            (StagePhase::Auditing { auditor, .. }, Some(c)) if auditor == me => {
                                Some((*id, s as u32, c))
                            }
                            (StagePhase::Running { .. }, Some(None)) => Some((*id, s as u32, None)),
                            _ => None,
                        }
                    })
                });
                if let Some((job, stage, committed)) = found {
                    let salt = salt_for(&me, job, stage);
                    let t = if is_honest { honest() } else { cheat() };
                    let body = match committed {
                        None => TxBody::AuditCommit {
                            job,
                            stage,
                            commitment: t.result().commitment(job, stage, &salt, &me),
                        },
                        Some(c) => {
                            let result = [honest().result(), cheat().result()]
                                .into_iter()
                                .find(|r| r.commitment(job, stage, &salt, &me) == c)
                                .unwrap_or(t.result());
                            TxBody::AuditReport {
                                job,
                                stage,
                                result,
                                salt,
                            }
                        }
                    };
                    self.tx(x, body);
                }
            }
            Action::Challenge(x) => {
                let found = st.jobs().find_map(|(id, j)| {
                    j.stages.iter().enumerate().find_map(|(s, stage)| {
                        matches!(stage.phase, StagePhase::Challengeable { .. })
                            .then(|| (*id, s as u32, stage.result))
                    })
                });
                if let Some((job, stage, Some(r))) = found {
                    // Challenge with whichever trace differs from the stage's.
                    let t = if r.output == honest().result().output {
                        cheat()
                    } else {
                        honest()
                    };
                    self.tx(
                        x,
                        TxBody::Challenge {
                            job,
                            stage,
                            result: t.result(),
                        },
                    );
                }
            }
            Action::Move(x) => {
                let me = self.addrs[x];
                let found = st.disputes().find_map(|(id, d)| {
                    if d.phase != DisputePhase::Bisecting {
                        return None;
                    }
                    let root = if d.defendant == me && d.defendant_move.is_none() {
                        d.defendant_root
                    } else if d.challenger == me && d.challenger_move.is_none() {
                        d.challenger_root
                    } else {
                        return None;
                    };
                    Some((*id, root, d.game.midpoint()?))
                });
                if let Some((dispute, root, mid)) = found {
                    let t = if root == honest().result().trace_root {
                        honest()
                    } else {
                        cheat()
                    };
                    let (leaf, proof) = t.open(mid).unwrap();
                    self.tx(
                        x,
                        TxBody::Bisect {
                            dispute,
                            leaf,
                            proof,
                        },
                    );
                }
            }
            Action::Propose(x, k) => {
                let change = [
                    ParamChange {
                        key: ParamKey::ChallengeWindow,
                        value: 4,
                    },
                    ParamChange {
                        key: ParamKey::AuditPpm,
                        value: 500_000,
                    },
                    ParamChange {
                        key: ParamKey::IssuancePerBlock,
                        value: 3,
                    },
                    ParamChange {
                        key: ParamKey::SlashPpm,
                        value: 5_000_000,
                    },
                ][k as usize];
                self.tx(x, TxBody::Propose { change });
            }
            Action::Vote(x, yes) => {
                let n = st.meta().next_proposal.0;
                if n > 0 {
                    self.tx(
                        x,
                        TxBody::Vote {
                            proposal: ProposalId(n - 1),
                            approve: yes,
                        },
                    );
                }
            }
            Action::BadNonce(x) => {
                let tx = Tx {
                    chain_id: ChainId(9),
                    nonce: self.nonces[x] + 5,
                    fee: Amount(1),
                    body: TxBody::Bond { amount: Amount(1) },
                };
                self.pending.push(SignedTx::sign(&self.keys[x], tx));
            }
            Action::WrongChain(x) => {
                let tx = Tx {
                    chain_id: ChainId(10),
                    nonce: self.nonces[x],
                    fee: Amount(1),
                    body: TxBody::Bond { amount: Amount(1) },
                };
                self.pending.push(SignedTx::sign(&self.keys[x], tx));
            }
            Action::Forged(x) => {
                let real = SignedTx::sign(
                    &self.keys[x],
                    Tx {
                        chain_id: ChainId(9),
                        nonce: self.nonces[x],
                        fee: Amount(1),
                        body: TxBody::Bond { amount: Amount(1) },
                    },
                );
                let forged = SignedTx::from_parts(
                    self.keys[x].public_key(),
                    Tx {
                        chain_id: ChainId(9),
                        nonce: self.nonces[x],
                        fee: Amount(1),
                        body: TxBody::Transfer {
                            to: self.addrs[0],
                            amount: Amount(5),
                        },
                    },
                    real.signature().clone(),
                );
                self.pending.push(forged);
            }
            Action::Replay => {
                if let Some(t) = self.last.clone() {
                    self.pending.push(t);
                }
            }
            Action::EndBlock => self.end_block(),
        }
    }

    /// `rounds` actions from proptest's deterministic runner, favouring the
    /// job flow (deliver, audit and move often).
    fn deterministic_walk(&mut self, rounds: usize) {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        for round in 0..rounds {
            let a = action().new_tree(&mut runner).unwrap().current();
            let a = match round % 4 {
                1 => Action::Deliver(round % N, round % 13 != 0),
                2 => Action::Move(round % N),
                _ => a,
            };
            self.act(&a);
        }
    }

    fn end_block(&mut self) {
        let height = self.state.height().plus(1);
        let block = Block {
            height,
            beacon: Hash::digest("beacon", &[&height.0.to_be_bytes()]).0,
            txs: std::mem::take(&mut self.pending),
        };
        let mut without = self.state.clone();
        let out = self.state.apply_block(&block, &self.referee).unwrap();
        // Supply is conserved.
        let (held, expected) = self.state.supply();
        assert_eq!(held, expected, "supply at {height:?}");
        // The offer index equals one rebuilt from the providers.
        self.state.check_offer_index().unwrap();
        // What was pruned is gone from the state, and was final.
        for p in &out.pruned {
            use agentic_protocol::state::Pruned;
            match p {
                Pruned::Job { id, job } => {
                    assert!(self.state.job(*id).is_none());
                    assert!(job.status != JobStatus::Active && job.escrow.0 == 0);
                    self.pruned[0] += 1;
                }
                Pruned::Dispute { id, dispute } => {
                    assert!(self.state.dispute(*id).is_none());
                    assert_eq!(dispute.phase, DisputePhase::Resolved);
                    self.pruned[1] += 1;
                }
                Pruned::Proposal { id, .. } => {
                    assert!(self.state.proposal(*id).is_none());
                    self.pruned[2] += 1;
                }
                Pruned::Mandate { id, .. } => {
                    assert!(self.state.mandate(*id).is_none());
                    self.pruned[3] += 1;
                }
            }
        }
        // A fresh replica applying the same block gets the same root.
        let twin = self.twin.apply_block(&block, &self.referee).unwrap();
        assert_eq!(twin.root, out.root);
        assert_eq!(twin.receipts, out.receipts);
        self.cancels += block
            .txs
            .iter()
            .zip(&out.receipts)
            .filter(|(t, r)| r.is_ok() && matches!(t.tx().body, TxBody::CancelJob { .. }))
            .count();
        // Dropping the rejected transactions changes nothing.
        let kept: Vec<SignedTx> = block
            .txs
            .iter()
            .zip(&out.receipts)
            .filter(|(_, r)| r.is_ok())
            .map(|(t, _)| t.clone())
            .collect();
        let mask = vec![true; kept.len()];
        let b2 = Block {
            height,
            beacon: block.beacon,
            txs: kept,
        };
        let out2 = without
            .apply_block_preverified(&b2, &mask, &self.referee)
            .unwrap();
        assert_eq!(
            out2.root, out.root,
            "a rejected transaction changed the root"
        );
        assert!(out2.receipts.iter().all(Result::is_ok));
        // Nonces follow the chain (rejected transactions used none).
        for (i, a) in self.addrs.iter().enumerate() {
            self.nonces[i] = self.state.nonce(a);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_blocks_conserve_supply_and_agree(actions in prop::collection::vec(action(), 50..400), prune in any::<bool>()) {
        // Half the walks prune finished work after 6 blocks.
        let mut d = if prune { Driver::pruning(6) } else { Driver::new() };
        for a in &actions {
            d.act(a);
        }
        d.end_block();
        // Let every deadline and window run out.
        for _ in 0..30 {
            d.end_block();
        }
        prop_assert_eq!(d.state.root(), d.state.full_root());
        prop_assert!(d.state.height() > Height(0));
        for (a, p) in d.state.providers() {
            // Loads never underflow (saturation would hide it): open ≥ active.
            prop_assert!(p.open >= p.active, "{:?}", a);
        }
        // Once no job is active, every provider was released (by payout,
        // penalty, failure or cancellation) exactly once.
        if d.state.jobs().all(|(_, j)| j.status != JobStatus::Active) {
            for (a, p) in d.state.providers() {
                prop_assert_eq!((p.active, p.open), (0, 0), "{:?}", a);
            }
        }
    }
}

/// The random walk really exercises the job and dispute machinery (so the
/// properties above are not vacuous): with a fixed seed, jobs complete,
/// disputes resolve, providers get slashed, requesters cancel, and the
/// invariants hold.
#[test]
fn deterministic_walk_reaches_payouts_and_disputes() {
    let mut d = Driver::new();
    let (mut disputes, mut completed) = (0, 0);
    d.deterministic_walk(3000);
    // Let every window close.
    for _ in 0..40 {
        let height = d.state.height().plus(1);
        let block = Block {
            height,
            beacon: [1; 32],
            txs: std::mem::take(&mut d.pending),
        };
        d.state.apply_block(&block, &d.referee).unwrap();
    }
    let (mut sessions_paid, mut sessions_failed) = (0, 0);
    for (_, j) in d.state.jobs() {
        if j.status == JobStatus::Completed {
            completed += 1;
        }
        if j.spec.generation.is_some() {
            match j.status {
                JobStatus::Completed => sessions_paid += 1,
                JobStatus::Failed => sessions_failed += 1,
                _ => {}
            }
        }
    }
    for (_, x) in d.state.disputes() {
        if x.phase == DisputePhase::Resolved {
            disputes += 1;
        }
    }
    let slashed = d
        .state
        .providers()
        .filter(|(_, p)| p.reputation.failure > 0)
        .count();
    assert!(d.state.total_supply_check());
    assert_eq!(d.state.root(), d.state.full_root());
    assert!(completed > 0, "no job completed");
    assert!(disputes > 0, "no dispute resolved");
    assert!(slashed > 0, "no provider penalized");
    assert!(d.cancels > 0, "no job cancelled by its requester");
    assert!(sessions_paid > 0, "no generation job completed");
    assert!(sessions_failed > 0, "no generation job failed");
}

/// The same walk on a chain that prunes finished work after 5 blocks: jobs
/// and disputes really leave the state, with supply and roots intact.
#[test]
fn deterministic_walk_with_pruning_keeps_its_invariants() {
    let mut d = Driver::pruning(5);
    d.deterministic_walk(3000);
    for _ in 0..40 {
        d.end_block();
    }
    assert!(d.state.total_supply_check());
    assert_eq!(d.state.root(), d.state.full_root());
    assert!(d.pruned[0] > 10, "jobs pruned: {:?}", d.pruned);
    assert!(d.pruned[1] > 0, "no dispute pruned: {:?}", d.pruned);
    assert_eq!(
        d.state.jobs().count() + d.pruned[0],
        d.state.meta().next_job.0 as usize,
        "every job is either in the state or was pruned once"
    );
}

proptest! {
    /// The audit probability of a sampled stage always makes skipping the work
    /// unprofitable in expectation, even for a coalition holding `c =
    /// audit_collusion_ppm` of the qualified stake (its partner, drawn as the
    /// auditor with probability `c`, approves and earns the fee `F`):
    /// `p·(1 − c)·S ≥ (1 − p)·V + p·c·(V + F)` with `S = slash_ppm × stake`, for
    /// any value, fee, stake, reputation, slash share and collusion bound (always
    /// audited where no probability can make it hold); and it never drops below
    /// the reputation-discounted probability.
    #[test]
    fn audit_probability_makes_cheating_unprofitable(
        value in 0u128..1_000_000_000_000u128,
        fee in 0u128..1_000_000_000_000u128,
        stake in 0u128..1_000_000_000_000u128,
        score in 0u32..=1_000_000,
        slash_ppm in 1u32..=1_000_000,
        collusion in 0u32..500_000,
    ) {
        let params = agentic_protocol::Params {
            slash_ppm,
            audit_collusion_ppm: collusion,
            ..Default::default()
        };
        let p = State::audit_probability_for(&params, score, Amount(value), Amount(fee), Amount(stake));
        prop_assert!(p <= 1_000_000);
        prop_assert!(p >= State::audit_probability_for(&params, score, Amount(0), Amount(0), Amount(stake)));
        let s = Amount(stake).mul_ppm(slash_ppm).0;
        let (p, c, m) = (p as u128, collusion as u128, 1_000_000u128);
        // In ppm²: p·(m − c)·S ≥ (m − p)·m·V + p·c·(V + F). When even p = 1
        // cannot satisfy it ((1 − c)·S < c·(V + F): a stake too small for the
        // stage), the stage is always audited.
        let holds = p * (m - c) * s >= (m - p) * m * value + p * c * (value + fee);
        prop_assert!(
            holds || (p == m && (m - c) * s < c * (value + fee)),
            "p {} S {} V {} F {} c {}", p, s, value, fee, c
        );
    }
}
